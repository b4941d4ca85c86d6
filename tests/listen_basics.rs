//! The embedded default and the basic capture path, over real sockets.

mod support;
use support::{Dialog, HOSTNAME, Honeypot, SENSOR};

#[test]
fn a_message_becomes_a_sealed_session() {
    let h = Honeypot::start(&[]);
    let mut d = Dialog::open(&h);
    assert!(
        d.cmd("EHLO client.example")
            .starts_with(&format!("250-{HOSTNAME}"))
    );
    assert_eq!(d.cmd("MAIL FROM:<spammer@example.org>"), "250 2.1.0 Ok");
    assert_eq!(d.cmd("RCPT TO:<victim@example.net>"), "250 2.1.5 Ok");
    assert_eq!(d.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    d.send(b"Subject: hello\r\n\r\nbody\r\n..dotted\r\n.\r\n");
    assert!(d.reply().starts_with("250 2.0.0 Ok: queued as "));
    assert_eq!(d.cmd("QUIT"), "221 2.0.0 Bye");

    let sessions = h.wait_sealed(1);
    let (dir, m) = &sessions[0];
    assert_eq!(m.sensor, SENSOR);
    assert_eq!(m.end_reason, latrine::events::EndReason::Quit);
    assert_eq!(m.client.ip, "127.0.0.1");
    assert_eq!(m.helo, vec!["client.example"]);
    assert_eq!(m.messages.len(), 1);
    let msg = &m.messages[0];
    assert_eq!(msg.mail_from, "spammer@example.org");
    assert_eq!(msg.rcpt_to, vec!["victim@example.net"]);
    assert_eq!(msg.headers.subject.as_deref(), Some("hello"));
    let eml = std::fs::read(dir.join(&msg.file)).unwrap();
    assert_eq!(eml, b"Subject: hello\r\n\r\nbody\r\n.dotted\r\n");
    // The session's directory is <spool>/<sensor>/<YYYY>/<MM>/<DD>/<id>.
    let rel = dir.strip_prefix(&h.spool).unwrap();
    let parts: Vec<_> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(parts[0], SENSOR);
    assert_eq!(parts[1], &m.started_at[..4]);
    assert_eq!(parts[4], m.session_id);
    assert!(
        std::fs::read_dir(h.spool.join(".incoming"))
            .unwrap()
            .next()
            .is_none()
    );
}

/// Past the free-space mark, MAIL gets Postfix's 452 and the session is
/// still recorded. (A mark of a petabyte is always past.)
#[test]
fn a_full_spool_refuses_mail_but_keeps_recording() {
    let h = Honeypot::start(&[
        "--min-free-mb",
        "1073741824",
        "--resume-free-mb",
        "1073741824",
    ]);
    let mut d = Dialog::open(&h);
    assert!(d.cmd("EHLO client.example").starts_with("250-"));
    assert_eq!(
        d.cmd("MAIL FROM:<spammer@example.org>"),
        "452 4.3.1 Insufficient system storage"
    );
    assert_eq!(d.cmd("QUIT"), "221 2.0.0 Bye");
    let sessions = h.wait_sealed(1);
    let m = &sessions[0].1;
    assert_eq!(m.helo, vec!["client.example"]);
    assert_eq!(
        m.protocol_errors[0].reply,
        "452 4.3.1 Insufficient system storage"
    );
    assert!(m.messages.is_empty());
}
