//! `latrine show` on sessions recorded by the real listener from known
//! bytes sent over a raw TCP stream.

mod analyze_common;
mod support;

use analyze_common::{latrine_with_env, latrine_within};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use support::{Dialog, Honeypot, require_tool};

/// The message's content as sent in DATA: dot-stuffed lines, a bare LF,
/// hostile bytes in the subject and the text.
const DATA: &[u8] = b"Subject: hello \x1b[2J world\r\nFrom: <a@example.org>\r\n\r\n\
..leading dot, stuffed\r\nplain text \x9b\x00 line\r\n.\r\n";

struct Recorded {
    _dir: tempfile::TempDir,
    spool: PathBuf,
    /// The session with the message, and every byte its client sent.
    mail: PathBuf,
    sent: Vec<u8>,
    /// A session of many commands (a long transcript).
    long: PathBuf,
}

fn recorded() -> &'static Recorded {
    static RECORDED: OnceLock<Recorded> = OnceLock::new();
    RECORDED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let mut h = Honeypot::start_on(&spool, &["--no-fsync"]);
        let mut sent = Vec::new();
        let mut d = Dialog::open(&h);
        let mut step = |d: &mut Dialog, bytes: &[u8]| {
            d.send(bytes);
            sent.extend_from_slice(bytes);
            d.reply()
        };
        step(&mut d, b"EHLO evil\x1b]0;owned\x07\x9b\x00.example\r\n");
        step(&mut d, b"EHLO client.example\r\n");
        assert!(step(&mut d, b"MAIL FROM:<a@example.org>\r\n").starts_with("250"));
        assert!(step(&mut d, b"RCPT TO:<v@example.net>\r\n").starts_with("250"));
        assert!(step(&mut d, b"DATA\r\n").starts_with("354"));
        let reply = step(&mut d, DATA);
        assert!(reply.starts_with("250 "), "{reply}");
        step(&mut d, b"QUIT\r\n");
        let mail = h.wait_sealed(1)[0].0.clone();

        let mut d = Dialog::open(&h);
        d.cmd("EHLO long.example");
        // Six transactions of 900 pipelined recipients: a transcript of
        // about 11,000 records.
        for _ in 0..6 {
            d.cmd("MAIL FROM:<bulk@example.org>");
            let rcpts: String = (0..900)
                .map(|i| format!("RCPT TO:<u{i}@example.net>\r\n"))
                .collect();
            d.send(rcpts.as_bytes());
            for _ in 0..900 {
                assert!(d.reply().starts_with("250"));
            }
            d.cmd("DATA");
            assert!(d.cmd("Subject: bulk\r\n\r\nx\r\n.").starts_with("250"));
        }
        d.cmd("QUIT");
        let sessions = h.wait_sealed(2);
        let long = sessions
            .into_iter()
            .map(|(p, _)| p)
            .find(|p| *p != mail)
            .unwrap();
        assert_eq!(h.terminate(), Some(0));
        Recorded {
            _dir: dir,
            spool,
            mail,
            sent,
            long,
        }
    })
}

fn show(args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    show_env(args, &[])
}

fn show_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Vec<u8>, String) {
    let all: Vec<&str> = std::iter::once("show")
        .chain(args.iter().copied())
        .collect();
    let out = latrine_with_env(&all, env, Duration::from_secs(60));
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// No byte that could drive a terminal: no NUL, no C1 0x9b, no ESC other
/// than the colour codes latrine writes itself.
fn assert_terminal_safe(out: &[u8]) {
    let mut text = out.to_vec();
    for code in [
        &b"\x1b[0m"[..],
        b"\x1b[1m",
        b"\x1b[2m",
        b"\x1b[31m",
        b"\x1b[32m",
        b"\x1b[35m",
        b"\x1b[36m",
    ] {
        while let Some(at) = text.windows(code.len()).position(|w| w == code) {
            text.drain(at..at + code.len());
        }
    }
    // Valid UTF-8 (a raw 0x9b is not), and no control character (C0, C1)
    // but the line ends.
    let text = String::from_utf8(text).expect("output is UTF-8");
    for c in text.chars() {
        assert!(
            c == '\n' || c == '\r' || !c.is_control(),
            "control character {c:?} in:\n{text}"
        );
    }
}

#[test]
fn piped_output_has_no_colour_and_escapes_hostile_bytes() {
    let r = recorded();
    let (code, out, err) = show(&[path(&r.mail)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains(&0x1b), "ANSI in piped output");
    assert_terminal_safe(&out);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(" C EHLO evil\\x1b]0;owned\\x07\\x9b\\x00.example\n"),
        "{text}"
    );
    assert!(text.contains(" S 250 2.1.0 Ok\n"), "{text}");
    assert!(
        text.contains(" M -- message 1 begin messages/1.eml\n"),
        "{text}"
    );
    // The summary follows the transcript.
    let id = r.mail.file_name().unwrap().to_str().unwrap();
    let summary = text.find(&format!("Session {id}")).expect("summary");
    assert!(text.find(" C QUIT").unwrap() < summary);
    assert!(text[summary..].contains("end reason quit"), "{text}");
    assert!(
        text[summary..].contains("subject: hello \\x1b[2J world"),
        "{text}"
    );
    // Relative times by default, UTC with --absolute.
    assert!(text.contains("   +0."), "{text}");
    let (_, out, _) = show(&[path(&r.mail), "--absolute"]);
    let text = String::from_utf8(out).unwrap();
    let day = &id[..4];
    assert!(
        text.lines().next().unwrap().starts_with(day),
        "{}",
        text.lines().next().unwrap()
    );
}

#[test]
fn colour_always_and_no_color() {
    let r = recorded();
    let (code, out, _) = show(&[path(&r.mail), "--color", "always"]);
    assert_eq!(code, Some(0));
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("\x1b[32mC \x1b[0m\x1b[32mEHLO client.example\x1b[0m"),
        "{text}"
    );
    assert!(text.contains("\x1b[36mS \x1b[0m"), "{text}");
    assert_terminal_safe(&out);
    // Every line closes what it opened (for less -R).
    for line in text.lines() {
        if let Some(last) = line.rfind('\x1b') {
            assert!(line[last..].starts_with("\x1b[0m"), "{line:?}");
        }
    }
    let (_, out, _) = show(&[path(&r.mail), "--color", "never"]);
    assert!(!out.contains(&0x1b));
}

/// Runs `latrine show ARGS` on a pseudo-terminal (util-linux `script`).
fn on_terminal(args: &str, no_color: Option<&str>) -> String {
    let mut command = Command::new("script");
    command
        .arg("-qec")
        .arg(format!("{} show {args}", env!("CARGO_BIN_EXE_latrine")))
        .arg("/dev/null")
        .stdin(Stdio::null());
    match no_color {
        Some(v) => command.env("NO_COLOR", v),
        None => command.env_remove("NO_COLOR"),
    };
    let out = command.output().expect("run script");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_terminal_gets_colour_unless_no_color() {
    if !require_tool("script") {
        return;
    }
    let r = recorded();
    let dir = path(&r.mail);
    assert!(on_terminal(dir, None).contains("\x1b[32m"));
    // NO_COLOR wins over auto; an empty NO_COLOR does not count.
    let plain = on_terminal(dir, Some("1"));
    assert!(plain.contains("EHLO client.example"), "{plain}");
    assert!(!plain.contains('\x1b'), "{plain:?}");
    assert!(on_terminal(dir, Some("")).contains("\x1b[32m"));
    // --raw never writes the client's bytes to a terminal.
    let raw = on_terminal(&format!("{dir} --raw"), None);
    assert!(raw.contains("not a terminal"), "{raw}");
    assert!(!raw.contains("EHLO"), "{raw}");
}

#[test]
fn raw_is_exactly_what_the_client_sent() {
    let r = recorded();
    let (code, out, err) = show(&[path(&r.mail), "--raw"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        r.sent,
        "\n{}\n{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&r.sent)
    );
}

#[test]
fn json_is_the_manifest() {
    let r = recorded();
    let (code, out, _) = show(&[path(&r.mail), "--json"]);
    assert_eq!(code, Some(0));
    let stored = std::fs::read(r.mail.join("manifest.json")).unwrap();
    assert_eq!(out, stored);
    let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let expected: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(parsed, expected);
}

#[test]
fn a_message_shows_its_headers_and_text() {
    let r = recorded();
    let (code, out, err) = show(&[path(&r.mail), "--message", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_terminal_safe(&out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Subject: hello \\x1b[2J world\n"), "{text}");
    assert!(text.contains("From: <a@example.org>\n"), "{text}");
    assert!(
        text.contains("Subject (decoded): hello \\x1b[2J world\n"),
        "{text}"
    );
    // The stored message is unstuffed: one leading dot.
    assert!(text.contains("\n.leading dot, stuffed\n"), "{text}");
    assert!(text.contains("plain text "), "{text}");
    let (code, _, err) = show(&[path(&r.mail), "--message", "2"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no message 2"), "{err}");
}

#[test]
fn a_session_id_is_found_under_the_spool() {
    let r = recorded();
    let id = r.mail.file_name().unwrap().to_str().unwrap();
    let (code, out, err) = show(&[id, "--spool", path(&r.spool), "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, std::fs::read(r.mail.join("manifest.json")).unwrap());
    // An unknown id, and something that is neither.
    let unknown = "20200101T000000.000000Z-0123456789abcdef";
    let (code, out, err) = show(&[unknown, "--spool", path(&r.spool)]);
    assert_eq!(code, Some(2));
    assert!(out.is_empty());
    assert!(
        err.contains(&format!("no session {unknown} under"))
            && err.contains("<sensor>/2020/01/01/"),
        "{err}"
    );
    let (code, _, err) = show(&["not-a-session", "--spool", path(&r.spool)]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("neither a session directory nor a session id"),
        "{err}"
    );
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let r = recorded();
    let mut child = Command::new(env!("CARGO_BIN_EXE_latrine"))
        .args(["show", path(&r.long)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Like `| head -c 100`: read a little, then close.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    // The whole transcript when read to the end.
    let out = latrine_within(&["show", path(&r.long)], Duration::from_secs(60));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches(" C RCPT TO:<u").count(), 5400);
}

#[test]
fn a_tampered_session_cannot_drive_the_terminal() {
    let r = recorded();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(r.mail.file_name().unwrap());
    analyze_common::copy_tree(&r.mail, &copy);
    // Raw control bytes where the spool has only escaped text: in the
    // transcript (valid and invalid UTF-8) and in a manifest string.
    let mut transcript = std::fs::read(copy.join("transcript.log")).unwrap();
    transcript
        .extend_from_slice(b"9.000001 C \x1b[2J\xc2\x9b\x07\r\n\n9.000002 S \xff\x1b]0;x\x07\n");
    std::fs::write(copy.join("transcript.log"), transcript).unwrap();
    analyze_common::edit_manifest(&copy, |m| {
        m["helo"] = serde_json::json!(["\u{1b}[31mred\u{9b}\u{202e}"]);
    });
    for color in ["always", "never"] {
        let (code, out, err) = show(&[path(&copy), "--color", color]);
        assert_eq!(code, Some(0), "{err}");
        assert_terminal_safe(&out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\\x1b[2J\\xc2\\x9b\\x07"), "{text}");
        assert!(
            text.contains("unreadable: ") && text.contains("9.000002 S \\xff\\x1b]0;x\\x07"),
            "{text}"
        );
        assert!(
            text.contains("\\x1b[31mred\\xc2\\x9b\\xe2\\x80\\xae"),
            "{text}"
        );
    }
}
