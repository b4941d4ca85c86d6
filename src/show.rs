//! `latrine show SESSION`: one session in the terminal, for an analyst.
//!
//! SESSION is a session directory, or a session id looked up under
//! `--spool` in `<sensor>/<YYYY>/<MM>/<DD>/<id>` (the id starts with the
//! UTC date, so only the day directory of each sensor is looked at).
//!
//! By default: the transcript, one record a line with its time (since the
//! connect, or `--absolute` UTC), `C` client and `S` server lines and `M`
//! notes told apart by colour, then the summary from the manifest. Record
//! bytes are shown as the transcript escapes them (`\r`, `\xHH`...), minus
//! the CRLF that ends a line, so a bare LF or CR stays visible. Whatever is
//! printed goes through [`terminal_safe`]: no control byte from a session
//! (or a tampered file) ever reaches the terminal. Colour: `--color auto`
//! (the default) colours only a terminal and honours `NO_COLOR`; each
//! coloured span is closed on its line, so `less -R` shows it right.
//!
//! `--json` prints manifest.json as stored; `--message N` the headers and
//! text of message N (mail-parser, escaped); `--raw` the bytes the client
//! sent, rebuilt from the transcript and the messages (refused on a
//! terminal: those bytes are not escaped). A closed pipe (`| head`) ends
//! the output quietly.

use crate::analyze::walk::is_session_id;
use crate::escape::escape_ascii;
use crate::spool::Manifest;
use crate::spool::attachments::{MAX_EXTRACT_SIZE, header_block, teardown, too_many_parts};
use crate::spool::transcript::{HEADER, client_wire_bytes, parse_record};
use crate::spool::writer::{MANIFEST, TRANSCRIPT};
use clap::{Args, ValueEnum};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of `latrine show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A session directory, or a session id (looked up under --spool).
    #[arg(value_name = "SESSION")]
    pub session: PathBuf,

    /// Spool to look a session id up in.
    #[arg(long, value_name = "DIR", default_value = "spool")]
    pub spool: PathBuf,

    /// Colour client and server lines: auto (on a terminal, unless
    /// NO_COLOR is set), always, never.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub color: ColorWhen,

    /// Times as UTC RFC 3339 instead of seconds since the connect.
    #[arg(long)]
    pub absolute: bool,

    /// Print manifest.json as stored.
    #[arg(long, conflicts_with_all = ["message", "raw"])]
    pub json: bool,

    /// Print message N's headers and text part.
    #[arg(long, value_name = "N", conflicts_with = "raw")]
    pub message: Option<u32>,

    /// Write the exact bytes the client sent (not to a terminal).
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

/// Largest manifest read.
const MAX_MANIFEST: u64 = 64 * 1024 * 1024;
/// Hex digits of a TLS ClientHello shown in a note (the transcript has all).
const HELLO_SHOWN: usize = 64;

pub fn run(args: ShowArgs) -> ExitCode {
    let dir = match find_session(&args.session, &args.spool) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("latrine show: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let color = match args.color {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    if args.raw && stdout.is_terminal() {
        eprintln!(
            "latrine show: --raw writes the client's bytes unescaped: \
             redirect it to a file or a pipe, not a terminal"
        );
        return ExitCode::from(2);
    }
    let mut out = Out {
        w: std::io::BufWriter::new(stdout.lock()),
        color,
    };
    let done = show(&args, &dir, &mut out).and_then(|()| out.w.flush().map_err(Failure::Io));
    match done {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): not an error.
        Err(Failure::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Io(e)) => {
            eprintln!("latrine show: cannot write: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::Session(e)) => {
            eprintln!("latrine show: {}: {e}", terminal_safe(&shown(&dir)));
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    /// Writing the output failed.
    Io(std::io::Error),
    /// The session could not be read.
    Session(String),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Io(e)
    }
}

fn shown(path: &Path) -> String {
    crate::escape::escape_text(path.as_os_str().as_bytes())
}

/// The session directory SESSION names.
fn find_session(session: &Path, spool: &Path) -> Result<PathBuf, String> {
    if std::fs::metadata(session).is_ok_and(|m| m.is_dir()) {
        if !session.join(MANIFEST).is_file() {
            return Err(format!(
                "{}: not a sealed session (no {MANIFEST})",
                shown(session)
            ));
        }
        return Ok(session.to_path_buf());
    }
    let id = session.as_os_str().as_bytes();
    if !is_session_id(id) {
        return Err(format!(
            "{}: neither a session directory nor a session id (like 20261127T162231.123456Z-9f3a0c1b2d4e5f60)",
            shown(session)
        ));
    }
    let id = String::from_utf8_lossy(id).into_owned();
    let day = format!("{}/{}/{}", &id[0..4], &id[4..6], &id[6..8]);
    let sensors = std::fs::read_dir(spool).map_err(|e| format!("spool {}: {e}", shown(spool)))?;
    let mut found: Vec<PathBuf> = sensors
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().as_bytes().starts_with(b"."))
        .map(|e| e.path().join(&day).join(&id))
        .filter(|dir| std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()))
        .collect();
    found.sort();
    match found.len() {
        0 => Err(format!(
            "no session {id} under {} (looked in <sensor>/{day}/)",
            shown(spool)
        )),
        1 => Ok(found.remove(0)),
        _ => Err(format!(
            "session {id} is under several sensors: give its directory ({})",
            found
                .iter()
                .map(|p| shown(p))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Opens a file of the session without following a link or blocking on a FIFO.
fn open(path: &Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let name = path
        .file_name()
        .map(|n| crate::escape::escape_text(n.as_bytes()))
        .unwrap_or_default();
    let file = open(path).map_err(|e| format!("cannot open {name}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{name} is larger than {limit} bytes"));
    }
    Ok(bytes)
}

fn show<W: Write>(args: &ShowArgs, dir: &Path, out: &mut Out<W>) -> Result<(), Failure> {
    let bytes = read_bounded(&dir.join(MANIFEST), MAX_MANIFEST).map_err(Failure::Session)?;
    let manifest = Manifest::from_json(&bytes).map_err(Failure::Session)?;
    if args.json {
        // As stored: JSON escapes every control character.
        out.w.write_all(&bytes)?;
        return Ok(());
    }
    if args.raw {
        let raw = client_wire_bytes(dir, &manifest).map_err(|e| Failure::Session(e.to_string()))?;
        for m in &manifest.messages {
            if m.chunked {
                eprintln!(
                    "latrine show: message {} came by BDAT: its chunks are not in the transcript, nor in this output",
                    m.index
                );
            } else if m.received_size > m.size {
                eprintln!(
                    "latrine show: message {}: {} bytes past the size limit were not kept, nor in this output",
                    m.index,
                    m.received_size - m.size
                );
            }
        }
        out.w.write_all(&raw)?;
        return Ok(());
    }
    if let Some(n) = args.message {
        return show_message(dir, &manifest, n, out);
    }
    show_transcript(dir, &manifest, args.absolute, out)?;
    out.line(&[])?;
    show_summary(&manifest, out)
}

/// Colours of the output.
#[derive(Clone, Copy)]
enum Style {
    Plain,
    Time,
    Client,
    Server,
    Note,
    Label,
    Warn,
}

impl Style {
    fn ansi(self) -> Option<&'static str> {
        match self {
            Style::Plain => None,
            Style::Time => Some("2"),
            Style::Client => Some("32"),
            Style::Server => Some("36"),
            Style::Note => Some("35"),
            Style::Label => Some("1"),
            Style::Warn => Some("31"),
        }
    }
}

struct Out<W: Write> {
    w: W,
    color: bool,
}

impl<W: Write> Out<W> {
    /// One line of spans; the text is made terminal-safe here, and each
    /// colour is closed before the line ends.
    fn line(&mut self, spans: &[(Style, &str)]) -> std::io::Result<()> {
        let mut text = String::new();
        for (style, span) in spans {
            let safe = terminal_safe(span);
            match style.ansi().filter(|_| self.color) {
                Some(code) => {
                    let _ = write!(text, "\x1b[{code}m{safe}\x1b[0m");
                }
                None => text.push_str(&safe),
            }
        }
        text.push('\n');
        self.w.write_all(text.as_bytes())
    }

    fn field(&mut self, label: &str, value: &str) -> std::io::Result<()> {
        self.line(&[
            (Style::Label, &format!("  {label:<11}")),
            (Style::Plain, value),
        ])
    }
}

/// `text` with every control character (C0, DEL, C1) and bidirectional
/// override escaped as `\xHH`: nothing in it can drive a terminal. Text
/// that is already escaped (the transcript, the manifest) passes unchanged.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `<seconds>.<micros>` since the connect, as a duration.
fn offset(text: &str) -> Option<time::Duration> {
    let (secs, micros) = text.split_once('.')?;
    let secs: i64 = secs.parse().ok()?;
    let micros: i64 = micros.parse().ok()?;
    Some(time::Duration::seconds(secs) + time::Duration::microseconds(micros))
}

/// A note, with a long ClientHello cut (the transcript keeps it whole).
fn note_shown(note: &str) -> Cow<'_, str> {
    let Some(at) = note.find("client_hello=") else {
        return Cow::Borrowed(note);
    };
    let start = at + "client_hello=".len();
    let hex = &note[start..];
    let hex_len = hex.find(' ').unwrap_or(hex.len());
    if hex_len <= HELLO_SHOWN {
        return Cow::Borrowed(note);
    }
    Cow::Owned(format!(
        "{}{}... ({} bytes){}",
        &note[..start],
        &hex[..HELLO_SHOWN],
        hex_len / 2,
        &hex[hex_len..]
    ))
}

fn show_transcript<W: Write>(
    dir: &Path,
    manifest: &Manifest,
    absolute: bool,
    out: &mut Out<W>,
) -> Result<(), Failure> {
    let file = open(&dir.join(TRANSCRIPT))
        .map_err(|e| Failure::Session(format!("cannot open {TRANSCRIPT}: {e}")))?;
    let started = crate::timestamp::parse_rfc3339(&manifest.started_at);
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Failure::Session(format!("cannot read {TRANSCRIPT}: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if number == 1 && text.starts_with(HEADER.as_bytes()) {
            continue;
        }
        let record = std::str::from_utf8(text).ok().and_then(parse_record);
        let Some(record) = record else {
            out.line(&[
                (
                    Style::Warn,
                    &format!("{TRANSCRIPT} line {number} unreadable: "),
                ),
                (Style::Plain, &escape_ascii(text)),
            ])?;
            continue;
        };
        let when = match (absolute, started, offset(&record.offset)) {
            (true, Some(start), Some(off)) => crate::timestamp::rfc3339(start + off),
            _ => format!("{:>12}", format!("+{}", record.offset)),
        };
        let (style, bytes) = match record.direction {
            'C' => (Style::Client, &record.bytes[..]),
            'S' => (Style::Server, &record.bytes[..]),
            _ => (Style::Note, &record.bytes[..]),
        };
        // The CRLF that ends a line is implied; any other ending is shown.
        let shown_bytes = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
        let escaped = escape_ascii(shown_bytes);
        let body = if record.direction == 'M' {
            note_shown(&escaped).into_owned()
        } else {
            escaped
        };
        let direction = match record.direction {
            'C' => "C ",
            'S' => "S ",
            'M' => "M -- ",
            _ => "? ",
        };
        out.line(&[
            (Style::Time, &when),
            (Style::Plain, " "),
            (style, direction),
            (style, &body),
        ])?;
    }
}

fn opt(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

fn show_summary<W: Write>(m: &Manifest, out: &mut Out<W>) -> Result<(), Failure> {
    out.line(&[
        (Style::Label, "Session "),
        (Style::Plain, &m.session_id),
        (
            Style::Plain,
            &format!(" (sensor {}, latrine {})", m.sensor, m.latrine),
        ),
    ])?;
    out.field("client", &format!("{}:{}", m.client.ip, m.client.port))?;
    out.field(
        "server",
        &format!(
            "{}:{} {} (listener {})",
            m.server.ip, m.server.port, m.server.hostname, m.server.listener
        ),
    )?;
    let span = match (
        crate::timestamp::parse_rfc3339(&m.started_at),
        crate::timestamp::parse_rfc3339(&m.ended_at),
    ) {
        (Some(a), Some(b)) => format!(" ({:.3} s)", (b - a).as_seconds_f64()),
        _ => String::new(),
    };
    out.field("started", &m.started_at)?;
    out.field("ended", &format!("{}{span}", m.ended_at))?;
    let reason = serde_json::to_value(m.end_reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    out.field("end reason", &reason)?;
    let helo = if m.helo.is_empty() {
        "-".to_string()
    } else {
        format!("{} ({} in all)", m.helo.join(", "), m.helo_total)
    };
    out.field("HELO", &helo)?;
    out.field(
        "commands",
        &format!(
            "{}, protocol errors {}",
            m.commands, m.protocol_errors_total
        ),
    )?;
    if !m.limits_hit.is_empty() {
        out.field("limits hit", &m.limits_hit.join(", "))?;
    }
    if !m.flags.is_empty() {
        out.line(&[
            (Style::Label, &format!("  {:<11}", "flags")),
            (Style::Warn, &m.flags.join(", ")),
        ])?;
    }
    match &m.tls {
        None => out.field("TLS", "none")?,
        Some(tls) => {
            let mut text = format!("{} {} {}", tls.mode, opt(&tls.version), opt(&tls.cipher));
            for (key, value) in [
                ("sni", &tls.sni),
                ("alpn", &tls.alpn),
                ("ja3", &tls.ja3),
                ("ja4", &tls.ja4),
                ("error", &tls.error),
            ] {
                if let Some(v) = value {
                    let _ = write!(text, " {key}={v}");
                }
            }
            out.field("TLS", &text)?;
        }
    }
    if m.starttls_injection_bytes > 0 {
        out.field(
            "injection",
            &format!(
                "{} bytes pipelined after STARTTLS, not executed",
                m.starttls_injection_bytes
            ),
        )?;
    }
    out.field("AUTH", &format!("{} attempts", m.auth.len()))?;
    for a in &m.auth {
        let r = &a.attempt;
        let mut text = format!("    {} {}", a.at, r.mechanism);
        for (key, value) in [
            ("user", &r.username),
            ("password", &r.password),
            ("authzid", &r.authzid),
            ("domain", &r.domain),
            ("workstation", &r.workstation),
        ] {
            if let Some(v) = value {
                let _ = write!(text, " {key}={v}");
            }
        }
        let _ = write!(
            text,
            " {}{}",
            r.outcome,
            if r.accepted {
                ", accepted"
            } else {
                ", refused"
            }
        );
        out.line(&[(Style::Plain, &text)])?;
    }
    out.field("messages", &m.messages.len().to_string())?;
    for msg in &m.messages {
        let mut text = format!(
            "    {} {} {} bytes sha256 {}",
            msg.index, msg.file, msg.size, msg.sha256
        );
        if msg.received_size != msg.size {
            let _ = write!(text, " (received {})", msg.received_size);
        }
        let _ = write!(
            text,
            ", {}",
            match (&msg.accepted, &msg.queue_id) {
                (true, Some(q)) => format!("accepted, queued as {q}"),
                (true, None) => "accepted".into(),
                (false, _) => "not accepted".into(),
            }
        );
        out.line(&[(Style::Plain, &text)])?;
        let rcpt = match msg.rcpt_to.len() {
            0..=3 => msg.rcpt_to.join(", "),
            n => format!("{} and {} more", msg.rcpt_to[..3].join(", "), n - 3),
        };
        out.line(&[(
            Style::Plain,
            &format!("      from <{}> to {rcpt}", msg.mail_from),
        )])?;
        let mut notes = Vec::new();
        if msg.truncated {
            let why = msg
                .truncated_reason
                .and_then(|r| serde_json::to_value(r).ok())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            notes.push(format!("truncated ({why})"));
        }
        for (set, name) in [
            (msg.bare_lf, "bare LF"),
            (msg.bare_cr, "bare CR"),
            (msg.smuggling, "smuggling"),
            (msg.chunked, "BDAT"),
        ] {
            if set {
                notes.push(name.into());
            }
        }
        if !notes.is_empty() {
            out.line(&[(Style::Warn, &format!("      {}", notes.join(", ")))])?;
        }
        let h = &msg.headers;
        for (key, value) in [
            ("subject", &h.subject),
            ("from", &h.from),
            ("date", &h.date),
            ("message-id", &h.message_id),
            ("x-mailer", &h.x_mailer),
        ] {
            if let Some(v) = value {
                out.line(&[(Style::Plain, &format!("      {key}: {v}"))])?;
            }
        }
        if let Some(e) = &msg.parse_error {
            out.line(&[(Style::Warn, &format!("      parse error: {e}"))])?;
        }
        for a in &msg.attachments {
            out.line(&[(
                Style::Plain,
                &format!(
                    "      attachment {:?} {} {} bytes sha256 {}{}",
                    opt(&a.filename),
                    a.content_type,
                    a.size,
                    a.sha256,
                    if a.depth > 0 {
                        format!(" (nested {})", a.depth)
                    } else {
                        String::new()
                    }
                ),
            )])?;
        }
    }
    Ok(())
}

fn show_message<W: Write>(
    dir: &Path,
    manifest: &Manifest,
    n: u32,
    out: &mut Out<W>,
) -> Result<(), Failure> {
    let Some(msg) = manifest.messages.iter().find(|m| m.index == n) else {
        return Err(Failure::Session(format!(
            "no message {n} (the session has {})",
            manifest.messages.len()
        )));
    };
    // Our own name for the file, never the manifest's text.
    let path = dir.join("messages").join(format!("{n}.eml"));
    let eml = read_bounded(&path, u64::MAX - 1).map_err(Failure::Session)?;
    out.line(&[
        (Style::Label, &format!("Message {n}")),
        (
            Style::Plain,
            &format!(" ({} bytes, sha256 {})", msg.size, msg.sha256),
        ),
    ])?;
    // The header block as sent (unfolded lines kept apart), escaped.
    for line in header_block(&eml).split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        out.line(&[(Style::Server, &crate::escape::escape_text(line))])?;
    }
    out.line(&[])?;
    if eml.len() as u64 > MAX_EXTRACT_SIZE || too_many_parts(&eml) {
        out.line(&[(
            Style::Warn,
            "(the body is not parsed: the message is over 32 MiB or has too many MIME parts)",
        )])?;
        return Ok(());
    }
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let message = mail_parser::MessageParser::default().parse(&eml[..])?;
        let subject = message.subject().map(str::to_string);
        let text = message.body_text(0).map(|t| t.into_owned());
        teardown(message);
        Some((subject, text))
    }));
    let (subject, text) = match parsed {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            out.line(&[(Style::Warn, "(not a parseable message)")])?;
            return Ok(());
        }
        Err(_) => {
            out.line(&[(Style::Warn, "(the MIME parser panicked on this message)")])?;
            return Ok(());
        }
    };
    if let Some(subject) = subject {
        out.line(&[
            (Style::Label, "Subject (decoded): "),
            (
                Style::Plain,
                &crate::escape::escape_text(subject.as_bytes()),
            ),
        ])?;
    }
    match text {
        None => out.line(&[(Style::Warn, "(no text part)")])?,
        Some(text) => {
            out.line(&[(Style::Label, "Text part (decoded):")])?;
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                out.line(&[(Style::Plain, &crate::escape::escape_text(line.as_bytes()))])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_unsafe_reaches_the_terminal() {
        assert_eq!(terminal_safe("EHLO x\\r"), "EHLO x\\r");
        assert_eq!(terminal_safe("a\x1b[31mb"), "a\\x1b[31mb");
        assert_eq!(terminal_safe("\u{9b}2J\0"), "\\xc2\\x9b2J\\x00");
        assert_eq!(terminal_safe("x\u{202E}y"), "x\\xe2\\x80\\xaey");
        assert_eq!(terminal_safe("café"), "café");
    }

    #[test]
    fn long_client_hellos_are_cut_in_notes() {
        let hex = "ab".repeat(100);
        let note = format!("tls starttls established TLSv1.3 X client_hello={hex}");
        let shown = note_shown(&note);
        assert!(shown.ends_with("... (100 bytes)"), "{shown}");
        assert_eq!(note_shown("message 1 begin"), "message 1 begin");
    }

    #[test]
    fn colour_spans_close_on_their_line() {
        let mut out = Out {
            w: Vec::new(),
            color: true,
        };
        out.line(&[(Style::Client, "EHLO \x1b")]).unwrap();
        assert_eq!(out.w, b"\x1b[32mEHLO \\x1b\x1b[0m\n");
    }
}
