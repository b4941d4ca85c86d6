//! Shared by the integration tests: start the real `latrine` binary on a
//! free loopback port with its own spool, and read that spool back as an
//! analyst would.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latrine::spool::Manifest;

pub mod mmdb;

/// A running `latrine listen` with a temporary spool.
pub struct Honeypot {
    pub child: Child,
    pub addr: SocketAddr,
    pub spool: PathBuf,
    /// Everything the process wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
    _dir: Option<tempfile::TempDir>,
}

pub const SENSOR: &str = "test-sensor";
pub const HOSTNAME: &str = "mx.example.com";

/// The default (postfix) persona's replies that the socket suites expect.
pub const MAIL_OK: &str = "250 2.1.0 Ok";
pub const RCPT_OK: &str = "250 2.1.5 Ok";
pub const DATA_GO: &str = "354 End data with <CR><LF>.<CR><LF>";
pub const OK: &str = "250 2.0.0 Ok";
pub const BYE: &str = "221 2.0.0 Bye";
pub const QUEUED: &str = "250 2.0.0 Ok: queued as ";

impl Honeypot {
    /// Starts on 127.0.0.1:0 with a fresh spool and the given extra arguments.
    pub fn start(extra: &[&str]) -> Honeypot {
        let dir = tempfile::tempdir().expect("temp dir");
        let spool = dir.path().join("spool");
        let mut h = Honeypot::start_on(&spool, extra);
        h._dir = Some(dir);
        h
    }

    /// Starts on an existing spool (to test restarts and recovery).
    pub fn start_on(spool: &Path, extra: &[&str]) -> Honeypot {
        let mut args: Vec<String> = vec![
            "listen".into(),
            "--spool".into(),
            spool.display().to_string(),
            "--sensor".into(),
            SENSOR.into(),
        ];
        if !extra.contains(&"--hostname") {
            args.push("--hostname".into());
            args.push(HOSTNAME.into());
        }
        if !extra
            .iter()
            .any(|a| *a == "--listen" || a.starts_with("--config"))
        {
            args.push("--listen".into());
            args.push("127.0.0.1:0".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_latrine"))
            .args(&args)
            .env("RUST_LOG", "latrine=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start latrine");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
                if !sent && let Some(addr) = listening_address(&line) {
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("latrine did not start; log:\n{}", log.lock().unwrap());
            }
        };
        Honeypot {
            child,
            addr,
            spool: spool.to_path_buf(),
            log,
            _dir: None,
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    /// Sealed sessions' manifests, sorted by session id.
    pub fn manifests(&self) -> Vec<(PathBuf, Manifest)> {
        sealed_sessions(&self.spool)
    }

    /// Waits until at least `n` sessions are sealed; returns them.
    pub fn wait_sealed(&self, n: usize) -> Vec<(PathBuf, Manifest)> {
        let start = Instant::now();
        loop {
            let found = self.manifests();
            if found.len() >= n {
                return found;
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!(
                    "only {} of {n} sessions sealed after 60 s; log:\n{}",
                    found.len(),
                    self.log.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        unsafe_kill(self.child.id(), 15);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("latrine did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the listener, in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// A `/proc/<pid>/status` field in KiB (`VmHWM` is the peak resident size).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.child.id()))
    }

    /// Resets the peak resident size (`VmHWM`) to the current one. Where the
    /// kernel refuses, the peak stays the lifetime one: a stricter check.
    pub fn reset_peak(&self) {
        if let Err(e) = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5") {
            eprintln!("cannot reset VmHWM ({e}); using the lifetime peak");
        }
    }
}

impl Drop for Honeypot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, signal: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// `... listening on 127.0.0.1:PORT (...` in the start-up log line.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Every sealed session under `spool`, skipping `.incoming`.
pub fn sealed_sessions(spool: &Path) -> Vec<(PathBuf, Manifest)> {
    let mut out = Vec::new();
    let mut stack = vec![spool.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name() == ".incoming" || !path.is_dir() {
                continue;
            }
            let manifest = path.join("manifest.json");
            if manifest.is_file() {
                let bytes = std::fs::read(&manifest).unwrap();
                out.push((path, Manifest::from_json(&bytes).expect("valid manifest")));
            } else {
                stack.push(path);
            }
        }
    }
    out.sort_by(|a, b| a.1.session_id.cmp(&b.1.session_id));
    out
}

/// A raw SMTP dialog over TCP: send bytes, read replies.
pub struct Dialog {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Dialog {
    pub fn open(h: &Honeypot) -> Dialog {
        let mut d = Dialog {
            stream: h.connect(),
            buf: Vec::new(),
        };
        let greeting = d.reply();
        assert!(greeting.starts_with("220 "), "greeting: {greeting:?}");
        d
    }

    /// A dialog with any address (e.g. another listener of the same process),
    /// past the greeting.
    pub fn open_at(addr: SocketAddr) -> Dialog {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut d = Dialog {
            stream,
            buf: Vec::new(),
        };
        let greeting = d.reply();
        assert!(greeting.starts_with("220 "), "greeting: {greeting:?}");
        d
    }

    /// A connection to `addr` from the local address `from` (any of
    /// 127/8 on Linux), before the greeting: read it with `reply`.
    pub fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> Dialog {
        let domain = if addr.is_ipv4() {
            socket2::Domain::IPV4
        } else {
            socket2::Domain::IPV6
        };
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("socket");
        socket
            .bind(&SocketAddr::new(from, 0).into())
            .unwrap_or_else(|e| panic!("bind {from}: {e}"));
        socket.connect(&addr.into()).expect("connect");
        let stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Dialog {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one complete reply (all its lines), without the final CRLF.
    pub fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    /// Sends `command` + CRLF and returns the reply.
    pub fn cmd(&mut self, command: &str) -> String {
        self.send(format!("{command}\r\n").as_bytes());
        self.reply()
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                return String::from_utf8_lossy(&line[..end]).into_owned();
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read reply");
            assert!(
                n > 0,
                "connection closed while waiting for a reply; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the server closes; returns what came.
    pub fn rest(&mut self) -> String {
        let mut all = std::mem::take(&mut self.buf);
        let _ = self.stream.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    }
}

/// Under CI=true a missing external tool is a failure; elsewhere the test is
/// skipped with a message.
pub fn require_tool(name: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} is required under CI=true but is not installed (.ci/run installs it)");
        }
        eprintln!("skipping: {name} is not installed");
    }
    found
}

impl Honeypot {
    /// Starts a honeypot with one listener of each mode (smtp, submission,
    /// smtps) and returns their addresses in that order. Three loopback
    /// addresses, because `listen` refuses the same address twice even with
    /// port 0; the client's address is 127.0.0.1 for all three.
    pub fn start_all_modes(extra: &[&str]) -> (Honeypot, [SocketAddr; 3]) {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--listen-submission",
            "127.0.0.2:0",
            "--listen-smtps",
            "127.0.0.3:0",
        ];
        args.extend_from_slice(extra);
        let h = Honeypot::start(&args);
        let a = h.listening_addresses(3);
        (h, [a[0], a[1], a[2]])
    }

    /// Every address the process listens on, in the order of its start-up
    /// log lines: one `listening on ADDR` line per listener, the `--listen`
    /// ones first, then `--listen-submission`, then `--listen-smtps`. Waits
    /// (at most 30 s) until `n` of them are logged.
    pub fn listening_addresses(&self, n: usize) -> Vec<SocketAddr> {
        let start = Instant::now();
        loop {
            let found: Vec<SocketAddr> = self
                .log
                .lock()
                .unwrap()
                .lines()
                .filter_map(listening_address)
                .collect();
            if found.len() >= n {
                return found;
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!(
                    "only {} of {n} listening addresses logged; log:\n{}",
                    found.len(),
                    self.log.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    latrine::escape::hex(&Sha256::digest(bytes))
}

/// The self-check of the spool specification: every entry of `files` exists
/// with that size and sha256, and nothing else exists but `manifest.json`.
/// Also: the messages and attachments the manifest names are among `files`,
/// with the same hashes, and the directory is named after the session.
pub fn check_session(dir: &Path, m: &Manifest) {
    assert_eq!(m.schema, latrine::spool::SCHEMA);
    assert!(
        m.started_at <= m.ended_at,
        "{} > {}",
        m.started_at,
        m.ended_at
    );
    for msg in &m.messages {
        assert!(m.started_at <= msg.received_at && msg.received_at <= m.ended_at);
    }
    assert_eq!(
        dir.file_name().unwrap().to_string_lossy(),
        m.session_id,
        "directory named after the session"
    );
    let mut listed = BTreeSet::new();
    for f in &m.files {
        assert!(
            !f.path.starts_with('/')
                && !f
                    .path
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == ".."),
            "{}: odd path in files: {:?}",
            m.session_id,
            f.path
        );
        assert_ne!(f.path, "manifest.json", "the manifest does not list itself");
        let meta = std::fs::symlink_metadata(dir.join(&f.path))
            .unwrap_or_else(|e| panic!("{}: listed file {} is missing: {e}", m.session_id, f.path));
        assert!(
            meta.file_type().is_file(),
            "{} is not a regular file",
            f.path
        );
        let bytes = std::fs::read(dir.join(&f.path)).unwrap();
        assert_eq!(
            bytes.len() as u64,
            f.size,
            "{}: size of {}",
            m.session_id,
            f.path
        );
        assert_eq!(
            sha256_hex(&bytes),
            f.sha256,
            "{}: sha256 of {}",
            m.session_id,
            f.path
        );
        assert!(listed.insert(f.path.clone()), "{} listed twice", f.path);
    }
    let mut on_disk = BTreeSet::new();
    walk_files(dir, Path::new(""), &mut on_disk);
    let mut expected = listed.clone();
    expected.insert("manifest.json".to_string());
    assert_eq!(
        on_disk, expected,
        "{}: files on disk vs. manifest",
        m.session_id
    );

    assert!(listed.contains("transcript.log"));
    assert!(listed.contains("events.jsonl"));
    let entry = |path: &str| m.files.iter().find(|f| f.path == path);
    for msg in &m.messages {
        let f = entry(&msg.file).unwrap_or_else(|| panic!("{} not in files", msg.file));
        assert_eq!((f.size, &f.sha256), (msg.size, &msg.sha256), "{}", msg.file);
        for a in &msg.attachments {
            assert_eq!(a.file, format!("attachments/{}", a.sha256));
            let f = entry(&a.file).unwrap_or_else(|| panic!("{} not in files", a.file));
            assert_eq!((f.size, &f.sha256), (a.size, &a.sha256), "{}", a.file);
        }
    }
}

/// Every non-directory entry under `dir`, as relative paths with `/`.
fn walk_files(root: &Path, rel: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(root.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let rel_path = rel.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            walk_files(root, &rel_path, out);
        } else {
            out.insert(rel_path.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The records of `transcript.log` (header checked and skipped).
pub fn transcript_records(dir: &Path, m: &Manifest) -> Vec<latrine::spool::transcript::Record> {
    let text = std::fs::read_to_string(dir.join("transcript.log")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!(
            "{} session={}",
            latrine::spool::transcript::HEADER,
            m.session_id
        )
    );
    lines
        .map(|l| {
            latrine::spool::transcript::parse_record(l)
                .unwrap_or_else(|| panic!("bad record {l:?}"))
        })
        .collect()
}
