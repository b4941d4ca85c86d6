//! latrine's own log: which lines, in which shape, and where they go.
//!
//! - Lines: `--log-level` (`latrine=LEVEL`), or RUST_LOG when set; ureq-proto
//!   is always off, whatever RUST_LOG says, because it traces API keys.
//! - Shape: human text (default) or one JSON object a line (`--log-format json`).
//! - Destination: standard error (default; journald takes it under systemd),
//!   a file (`--log-file`, opened for append and reopened on SIGUSR1 once
//!   logrotate has renamed it), or syslog (`--syslog`: one RFC 5424 datagram
//!   per record on /dev/log, with `--syslog-facility`).
//!
//! Client bytes are escaped (`crate::escape`) before they reach a log call.
//! Nothing here unescapes them, and a record cannot be split: JSON encodes
//! control characters, a syslog record is one datagram whose raw CR and LF
//! are written as `\r` and `\n`, and a file or stderr record is one write.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Where syslog listens on every Linux system (journald's socket under systemd).
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// The shape of a log record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `TIMESTAMP LEVEL message fields`, for people.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, message and the fields.
    Json,
}

/// Where log records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stderr,
    /// Appended to this file, reopened by [`LogHandle::reopen`].
    File(PathBuf),
    /// RFC 5424 datagrams to a Unix socket (normally [`SYSLOG_SOCKET`]).
    Syslog {
        facility: Facility,
        socket: PathBuf,
    },
}

/// A syslog facility (RFC 5424 section 6.2.1), by its usual name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facility(u8);

/// The facilities a program may log to, with their codes. `kern` (0) is
/// the kernel's alone.
const FACILITIES: &[(&str, u8)] = &[
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

impl Facility {
    pub const DAEMON: Facility = Facility(3);

    /// The numeric code: PRI is code * 8 + severity.
    pub fn code(self) -> u8 {
        self.0
    }
}

impl Default for Facility {
    fn default() -> Self {
        Facility::DAEMON
    }
}

impl FromStr for Facility {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        let lower = name.to_ascii_lowercase();
        FACILITIES
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|&(_, code)| Facility(code))
            .ok_or_else(|| {
                let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown syslog facility {:?}; expected one of {}",
                    crate::escape::escape_text(name.as_bytes()),
                    names.join(", ")
                )
            })
    }
}

/// What `init` needs to know.
#[derive(Debug, Clone)]
pub struct Options {
    /// `error`, `warn`, `info`, `debug` or `trace`, for latrine's own lines.
    pub level: String,
    pub format: LogFormat,
    pub destination: Destination,
}

/// Installs the global subscriber. The handle reopens the log file.
pub fn init(options: &Options) -> Result<LogHandle, String> {
    let filter = filter(&options.level);
    match &options.destination {
        Destination::Stderr => {
            let ansi = std::io::stderr().is_terminal();
            install(filter, options.format, std::io::stderr, ansi, true)?;
            Ok(LogHandle { file: None })
        }
        Destination::File(path) => {
            let file = LogFile::open(path)
                .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
            install(filter, options.format, file.clone(), false, true)?;
            Ok(LogHandle { file: Some(file) })
        }
        Destination::Syslog { facility, socket } => {
            let syslog = Syslog::connect(socket, *facility).map_err(|e| {
                format!(
                    "cannot log to syslog: cannot connect to {}: {e}",
                    socket.display()
                )
            })?;
            // The datagram's header carries the time and the severity; a
            // text record is just the message and its fields.
            let stamped = options.format == LogFormat::Json;
            install(
                filter,
                options.format,
                SyslogWriter(Arc::new(syslog)),
                false,
                stamped,
            )?;
            Ok(LogHandle { file: None })
        }
    }
}

fn filter(level: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("latrine={level}")));
    // ureq-proto traces every byte sent and received, API key headers
    // included: never, whatever RUST_LOG says. (ureq's own log hides them.)
    for directive in ["ureq_proto=off", "ureq_proto::util=off"] {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

fn install<W>(
    filter: EnvFilter,
    format: LogFormat,
    writer: W,
    ansi: bool,
    stamped: bool,
) -> Result<(), String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(ansi);
    let installed = match (format, stamped) {
        (LogFormat::Text, true) => builder.try_init(),
        (LogFormat::Text, false) => builder.without_time().with_level(false).try_init(),
        (LogFormat::Json, _) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|e| format!("cannot set up logging: {e}"))
}

/// Reopens the log file on request (SIGUSR1).
#[derive(Clone)]
pub struct LogHandle {
    file: Option<LogFile>,
}

impl LogHandle {
    /// Whether records go to a file, which [`reopen`](Self::reopen) reopens.
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    /// Opens the log file's path anew (logrotate has renamed the old one):
    /// later records go there. On failure the old file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        match &self.file {
            Some(file) => file.reopen(),
            None => Ok(()),
        }
    }

    /// Reopens on every SIGUSR1, in a task on `runtime`. The handler is in
    /// place when this returns, so a SIGUSR1 can no longer kill the process
    /// (its default action), even when not logging to a file.
    pub fn reopen_on_sigusr1(&self, runtime: &tokio::runtime::Handle) -> io::Result<()> {
        let signals = {
            let _context = runtime.enter();
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?
        };
        runtime.spawn(reopen_on_each(self.clone(), signals));
        Ok(())
    }

    /// The same for a command without a runtime of its own: a small one, on
    /// a thread of its own.
    pub fn reopen_on_sigusr1_in_thread(&self) -> io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        self.reopen_on_sigusr1(runtime.handle())?;
        std::thread::Builder::new()
            .name("log-reopen".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        Ok(())
    }
}

async fn reopen_on_each(handle: LogHandle, mut signals: tokio::signal::unix::Signal) {
    while signals.recv().await.is_some() {
        match (&handle.file, handle.reopen()) {
            (Some(file), Ok(())) => {
                tracing::info!("SIGUSR1: reopened the log file {}", file.path.display())
            }
            (Some(file), Err(e)) => tracing::error!(
                "SIGUSR1: cannot reopen the log file {}, still writing to the old one: {e}",
                file.path.display()
            ),
            (None, _) => tracing::info!("SIGUSR1: not logging to a file, nothing to reopen"),
        }
    }
}

/// The log file: each record is one `write` on a file opened with
/// O_APPEND, so records from several threads never interleave.
#[derive(Clone)]
struct LogFile {
    path: Arc<PathBuf>,
    current: Arc<RwLock<Arc<File>>>,
}

impl LogFile {
    fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile {
            path: Arc::new(path.to_path_buf()),
            current: Arc::new(RwLock::new(Arc::new(open_append(path)?))),
        })
    }

    fn reopen(&self) -> io::Result<()> {
        let file = open_append(&self.path)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(file);
        Ok(())
    }
}

/// Client addresses are in the log: not for every local user (0640).
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

struct LogFileWriter(Arc<File>);

impl Write for LogFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter;
    fn make_writer(&'a self) -> LogFileWriter {
        LogFileWriter(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// A connected datagram socket to syslog, and what every header repeats.
struct Syslog {
    path: PathBuf,
    socket: Mutex<UnixDatagram>,
    facility: Facility,
    hostname: String,
    pid: u32,
}

/// Largest datagram sent: a longer record is cut here rather than lost
/// (rsyslog's default maximum message size is 8 KiB; journald takes more).
const MAX_DATAGRAM: usize = 64 * 1024;

impl Syslog {
    fn connect(path: &Path, facility: Facility) -> io::Result<Syslog> {
        Ok(Syslog {
            path: path.to_path_buf(),
            socket: Mutex::new(connect_datagram(path)?),
            facility,
            hostname: crate::config::system_hostname(),
            pid: std::process::id(),
        })
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME latrine PID - - MSG` (RFC 5424; no
    /// MSGID, no structured data; MSG without BOM, i.e. MSG-ANY).
    fn datagram(&self, severity: u8, record: &[u8]) -> Vec<u8> {
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        let mut out = format!(
            "<{}>1 {} {} latrine {} - - ",
            u16::from(self.facility.code()) * 8 + u16::from(severity),
            crate::timestamp::rfc3339(crate::timestamp::now()),
            self.hostname,
            self.pid
        )
        .into_bytes();
        for &b in record {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                _ => out.push(b),
            }
        }
        out.truncate(MAX_DATAGRAM);
        out
    }

    fn send(&self, severity: u8, record: &[u8]) {
        let datagram = self.datagram(severity, record);
        let mut socket = self.socket.lock().unwrap_or_else(PoisonError::into_inner);
        if socket.send(&datagram).is_ok() {
            return;
        }
        // syslogd or journald restarted: its socket is a new one.
        if let Ok(fresh) = connect_datagram(&self.path) {
            *socket = fresh;
            if socket.send(&datagram).is_ok() {
                return;
            }
        }
        // Nothing is lost: standard error is the journal under systemd.
        let mut stderr = io::stderr().lock();
        let _ = stderr.write_all(&datagram);
        let _ = stderr.write_all(b"\n");
    }
}

fn connect_datagram(path: &Path) -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path)?;
    // A stuck syslog daemon must not stall the sensor for long.
    socket.set_write_timeout(Some(Duration::from_secs(1)))?;
    Ok(socket)
}

/// RFC 5424 severities: err 3, warning 4, info 6, debug 7.
fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

#[derive(Clone)]
struct SyslogWriter(Arc<Syslog>);

/// One record, sent as one datagram when the formatter is done with it.
struct SyslogRecord<'a> {
    syslog: &'a Syslog,
    severity: u8,
    buf: Vec<u8>,
}

impl Write for SyslogRecord<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogRecord<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.syslog.send(self.severity, &self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = SyslogRecord<'a>;
    fn make_writer(&'a self) -> SyslogRecord<'a> {
        SyslogRecord {
            syslog: &self.0,
            severity: severity(&Level::INFO),
            buf: Vec::new(),
        }
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogRecord<'a> {
        SyslogRecord {
            syslog: &self.0,
            severity: severity(meta.level()),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facility_names() {
        assert_eq!("daemon".parse::<Facility>().unwrap().code(), 3);
        assert_eq!("LOCAL7".parse::<Facility>().unwrap().code(), 23);
        let e = "kern".parse::<Facility>().unwrap_err();
        assert!(e.contains("unknown syslog facility \"kern\""), "{e}");
        assert!(e.contains("local0"), "{e}");
    }

    #[test]
    fn a_syslog_record_is_one_line_of_bounded_size() {
        let syslog = Syslog {
            path: PathBuf::from("/nonexistent"),
            socket: Mutex::new(UnixDatagram::unbound().unwrap()),
            facility: "local7".parse().unwrap(),
            hostname: "mx.example.com".into(),
            pid: 42,
        };
        let d = syslog.datagram(severity(&Level::WARN), b"two\nlines\r\n");
        let text = String::from_utf8(d).unwrap();
        assert!(text.starts_with("<188>1 "), "{text}");
        assert!(
            text.ends_with(" mx.example.com latrine 42 - - two\\nlines\\r"),
            "{text}"
        );
        let long = vec![b'x'; MAX_DATAGRAM * 2];
        assert_eq!(syslog.datagram(7, &long).len(), MAX_DATAGRAM);
    }
}
