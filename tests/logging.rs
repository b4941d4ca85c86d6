//! latrine's own log, as an operator receives it: JSON lines on stderr, a
//! log file that logrotate renames (SIGUSR1 reopens it), and RFC 5424
//! datagrams on a Unix socket standing in for /dev/log. The real binary,
//! `latrine listen` on 127.0.0.1:0, and real loopback sessions.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A client line with what must never reach a log raw: ESC (a terminal
/// escape), CR, a quote, a backslash and bytes that are not UTF-8.
const HOSTILE_HELO: &[u8] = b"HELO ev\x1b[31mil\r\"q\\ \xff\xfe\r\n";
/// How `crate::escape` writes that line (the core logs each command line
/// at debug level).
const HOSTILE_ESCAPED: &str = r#"HELO ev\x1b[31mil\r"q\\ \xff\xfe\r\n"#;

/// A `latrine` with the given arguments; standard error is piped.
struct Latrine {
    child: Child,
}

impl Latrine {
    fn start(global: &[&str], spool: &Path) -> Latrine {
        let child = Command::new(env!("CARGO_BIN_EXE_latrine"))
            .args(global)
            .args(["listen", "--listen", "127.0.0.1:0", "--sensor", "s1"])
            .args(["--hostname", "mx.example.com", "--spool"])
            .arg(spool)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start latrine");
        Latrine { child }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// SIGTERM; waits for the exit and returns standard error.
    fn stop(mut self) -> String {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "latrine ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        stderr
    }
}

impl Drop for Latrine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `... listening on 127.0.0.1:PORT (...` in the start-up record.
fn listening_address(text: &str) -> Option<SocketAddr> {
    let rest = text.split("listening on ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// One session: the hostile HELO, then QUIT. Returns once the server said Bye.
fn hostile_session(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 "), "greeting: {line:?}");
    s.write_all(HOSTILE_HELO).unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    s.write_all(b"QUIT\r\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("221 "), "QUIT: {line:?}");
}

/// Waits until `file` holds `needle`; returns its content.
fn wait_in_file(file: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never got {needle:?}; it holds:\n{text}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn json_records_are_one_object_a_line_with_level_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut latrine = Latrine::start(
        &["--log-format", "json", "--log-level", "debug"],
        &dir.path().join("spool"),
    );
    // The start-up record, read as the first line of standard error.
    let mut stderr = BufReader::new(latrine.child.stderr.take().unwrap());
    let mut first = Vec::new();
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "exited: {first:?}"
        );
        first.push(line.clone());
        if let Some(addr) = listening_address(&line) {
            break addr;
        }
    };
    hostile_session(addr);
    latrine.child.stderr = Some(stderr.into_inner());
    let rest = latrine.stop();
    let text = first.concat() + &rest;

    assert!(!text.contains('\x1b'), "a raw ESC reached the log:\n{text}");
    let mut levels = Vec::new();
    let mut saw_hostile = false;
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line:?}"));
        let level = record["level"].as_str().expect("a level");
        let message = record["message"].as_str().expect("a message");
        let timestamp = record["timestamp"].as_str().expect("a timestamp");
        assert!(
            latrine::timestamp::parse_rfc3339(timestamp).is_some(),
            "{timestamp:?}"
        );
        levels.push(level.to_string());
        if message.contains("HELO ev") {
            assert_eq!(level, "DEBUG");
            assert_eq!(message, HOSTILE_ESCAPED, "the client line, escaped");
            assert!(record["session"].is_string(), "{line}");
            saw_hostile = true;
        }
    }
    assert!(saw_hostile, "no record of the client's line:\n{text}");
    assert!(levels.iter().any(|l| l == "INFO"), "{levels:?}");
    assert!(
        text.contains(r#""level":"INFO","message":"sealed "#),
        "the sealed record:\n{text}"
    );
}

#[test]
fn log_file_is_reopened_on_sigusr1_after_a_rename() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("latrine.log");
    let rotated = dir.path().join("latrine.log.1");
    let latrine = Latrine::start(
        &["--log-file", log.to_str().unwrap()],
        &dir.path().join("spool"),
    );
    let before = wait_in_file(&log, "listening on ");
    let addr = listening_address(&before).expect("the listening address");

    // What logrotate does (without copytruncate): rename, then postrotate.
    std::fs::rename(&log, &rotated).unwrap();
    latrine.signal("USR1");
    let after = wait_in_file(&log, "reopened the log file");
    assert!(!after.contains("listening on"), "{after}");

    hostile_session(addr);
    let after = wait_in_file(&log, "sealed ");
    assert!(after.contains("client=127.0.0.1:"), "{after}");
    let stderr = latrine.stop();
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        !old.contains("sealed "),
        "a later record went to the old file:\n{old}"
    );
    assert!(old.contains("listening on "), "{old}");
    let new = std::fs::read_to_string(&log).unwrap();
    assert!(new.contains("all sessions sealed"), "{new}");
    assert_eq!(stderr, "", "records went to standard error too");

    // Client addresses are in it: not for every local user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o007, 0, "mode {mode:o}");
}

/// One RFC 5424 record: `<PRI>1 TIMESTAMP HOSTNAME APP PROCID MSGID SD MSG`.
#[derive(Debug)]
struct Rfc5424 {
    pri: u16,
    timestamp: String,
    hostname: String,
    app: String,
    procid: String,
    msgid: String,
    structured_data: String,
    msg: String,
}

fn parse_rfc5424(datagram: &[u8]) -> Rfc5424 {
    let text = std::str::from_utf8(datagram)
        .unwrap_or_else(|_| panic!("not UTF-8: {:?}", String::from_utf8_lossy(datagram)));
    let rest = text.strip_prefix('<').unwrap_or_else(|| panic!("{text:?}"));
    let (pri, rest) = rest.split_once(">1 ").unwrap_or_else(|| panic!("{text:?}"));
    let mut header = rest.splitn(7, ' ');
    let mut field = || header.next().unwrap_or_else(|| panic!("short: {text:?}"));
    let record = Rfc5424 {
        pri: pri.parse().unwrap_or_else(|_| panic!("PRI {pri:?}")),
        timestamp: field().into(),
        hostname: field().into(),
        app: field().into(),
        procid: field().into(),
        msgid: field().into(),
        structured_data: field().into(),
        msg: field().into(),
    };
    assert!(
        pri.len() <= 3 && pri.bytes().all(|b| b.is_ascii_digit()),
        "{text:?}"
    );
    record
}

fn receive(socket: &UnixDatagram, records: &mut Vec<Rfc5424>, until: &str) {
    let mut buf = vec![0u8; 70 * 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !records.iter().any(|r| r.msg.contains(until)) {
        assert!(
            Instant::now() < deadline,
            "no record with {until:?}: {records:#?}"
        );
        match socket.recv(&mut buf) {
            Ok(n) => records.push(parse_rfc5424(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
}

#[test]
fn syslog_gets_rfc5424_datagrams_with_the_facility_in_pri() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let latrine = Latrine::start(
        &[
            "--syslog",
            "--syslog-facility",
            "local3",
            "--syslog-socket",
            path.to_str().unwrap(),
            "--log-level",
            "debug",
        ],
        &dir.path().join("spool"),
    );
    let mut records = Vec::new();
    receive(&socket, &mut records, "listening on ");
    let addr = records
        .iter()
        .find_map(|r| listening_address(&r.msg))
        .unwrap();
    hostile_session(addr);
    receive(&socket, &mut records, "sealed ");
    let pid = latrine.child.id().to_string();
    let stderr = latrine.stop();
    receive(&socket, &mut records, "all sessions sealed");
    assert_eq!(stderr, "", "records went to standard error too");

    // local3 is facility 19: PRI = 19 * 8 + severity.
    let info = 19 * 8 + 6;
    let debug = 19 * 8 + 7;
    for r in &records {
        assert!((19 * 8..19 * 8 + 8).contains(&r.pri), "{r:?}");
        assert!(
            latrine::timestamp::parse_rfc3339(&r.timestamp).is_some(),
            "{r:?}"
        );
        assert!(
            !r.hostname.is_empty() && r.hostname.bytes().all(|b| b.is_ascii_graphic()),
            "{r:?}"
        );
        assert_eq!(
            (r.app.as_str(), r.procid.as_str()),
            ("latrine", pid.as_str())
        );
        assert_eq!((r.msgid.as_str(), r.structured_data.as_str()), ("-", "-"));
        assert!(
            !r.msg.contains(['\n', '\r', '\x1b']),
            "a raw control character: {r:?}"
        );
        // The header has the time and severity: the text record has neither.
        assert!(
            !r.msg.starts_with("20") && !r.msg.contains(" INFO "),
            "{r:?}"
        );
    }
    let listening = records
        .iter()
        .find(|r| r.msg.contains("listening on "))
        .unwrap();
    assert_eq!(listening.pri, info, "{listening:?}");
    let hostile = records
        .iter()
        .find(|r| r.msg.contains("HELO ev"))
        .unwrap_or_else(|| panic!("no record of the client's line: {records:#?}"));
    assert_eq!(hostile.pri, debug, "{hostile:?}");
    assert!(hostile.msg.starts_with(HOSTILE_ESCAPED), "{hostile:?}");
}

#[test]
fn bad_logging_options_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_latrine"))
            .args(args)
            .args(["verify", dir.path().to_str().unwrap()])
            .stdin(Stdio::null())
            .output()
            .expect("run latrine");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stderr) = run(&["--syslog", "--syslog-facility", "kern"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--syslog-facility")
            && stderr.contains("unknown syslog facility \"kern\"")
            && stderr.contains("local7"),
        "{stderr}"
    );

    let missing = dir.path().join("no-such.sock");
    let (code, stderr) = run(&["--syslog", "--syslog-socket", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot log to syslog") && stderr.contains("no-such.sock"),
        "{stderr}"
    );

    let unwritable = dir.path().join("no-such-dir").join("latrine.log");
    let (code, stderr) = run(&["--log-file", unwritable.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot open the log file") && stderr.contains("no-such-dir"),
        "{stderr}"
    );

    let (code, stderr) = run(&["--log-format", "xml"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--log-format"), "{stderr}");
}
