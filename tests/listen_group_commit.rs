//! Group commit under kill -9: every message answered `250` by a listener
//! whose syncs are shared between concurrent sessions is there after the
//! process is killed and restarted, byte for byte, as accepted; and the
//! sharing really happens (fewer directory syncs than requests for them).

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use support::{Dialog, Honeypot, sealed_sessions};

const CLIENTS: usize = 20;

/// One message over a fresh connection; returns its queue id. With `quit`
/// false the connection stays open (the session is not sealed).
fn send_one(h: &Honeypot, body: &str, quit: bool) -> (String, Option<Dialog>) {
    let mut d = Dialog::open(h);
    assert!(d.cmd("EHLO group.example").starts_with("250-"));
    assert_eq!(d.cmd("MAIL FROM:<g@spam.example>"), "250 2.1.0 Ok");
    assert_eq!(d.cmd("RCPT TO:<v@victim.example>"), "250 2.1.5 Ok");
    assert!(d.cmd("DATA").starts_with("354 "));
    d.send(format!("{body}.\r\n").as_bytes());
    let reply = d.reply();
    let id = reply
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .unwrap_or_else(|| panic!("not a 250: {reply:?}"))
        .to_string();
    if quit {
        assert_eq!(d.cmd("QUIT"), "221 2.0.0 Bye");
        return (id, None);
    }
    (id, Some(d))
}

/// Sends `per_client` messages from each of CLIENTS threads at once; the
/// last one of each thread stays in an open session when `keep_last_open`.
fn burst(
    h: &Arc<Honeypot>,
    per_client: usize,
    keep_last_open: bool,
) -> (BTreeMap<String, String>, Vec<Dialog>) {
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let open = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (h, acked, open) = (Arc::clone(h), Arc::clone(&acked), Arc::clone(&open));
            std::thread::spawn(move || {
                for i in 0..per_client {
                    let body = format!("Subject: client {c} message {i}\r\n\r\nbody {c}/{i}\r\n");
                    let last = i + 1 == per_client;
                    let (id, dialog) = send_one(&h, &body, !(last && keep_last_open));
                    acked.lock().unwrap().insert(id, body);
                    open.lock().unwrap().extend(dialog);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let open = std::mem::take(&mut *open.lock().unwrap());
    (acked, open)
}

#[test]
fn group_committed_messages_acknowledged_with_250_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let h = Arc::new(Honeypot::start_on(&spool, &[]));
    let (acked, open) = burst(&h, 4, true);
    assert_eq!(acked.len(), CLIENTS * 4);
    // kill -9 as soon as the last 250 is read: sessions are still open,
    // others are being sealed.
    let mut h = Arc::try_unwrap(h).ok().expect("no other owner");
    h.child.kill().expect("SIGKILL");
    h.child.wait().expect("reap");
    drop(open);

    let h2 = Honeypot::start_on(&spool, &[]);
    let sessions = sealed_sessions(&spool);
    let mut found = BTreeMap::new();
    for (dir, m) in &sessions {
        support::check_session(dir, m);
        for msg in &m.messages {
            if let Some(id) = &msg.queue_id {
                assert!(msg.accepted, "{id} has a queue id but is not accepted");
                let bytes = std::fs::read(dir.join(&msg.file)).unwrap();
                found.insert(id.clone(), String::from_utf8(bytes).unwrap());
            }
        }
    }
    for (id, body) in &acked {
        assert_eq!(
            found.get(id),
            Some(body),
            "message {id}, answered 250 before kill -9, is missing or differs"
        );
    }
    // The sessions left open at the kill were recovered, not lost.
    let recovered = sessions
        .iter()
        .filter(|(_, m)| m.flags.contains(&"recovered".to_string()))
        .count();
    assert!(recovered >= CLIENTS, "only {recovered} sessions recovered");
    drop(h2);
}

#[test]
fn concurrent_sessions_share_directory_syncs() {
    let h = Arc::new(Honeypot::start(&[]));
    let (acked, _) = burst(&h, 3, false);
    assert_eq!(acked.len(), CLIENTS * 3);
    let mut h = Arc::try_unwrap(h).ok().expect("no other owner");
    assert_eq!(h.terminate(), Some(0));
    let log = h.log.lock().unwrap().clone();
    let line = log
        .lines()
        .find(|l| l.contains("group commit:"))
        .unwrap_or_else(|| panic!("no group commit statistics in the log:\n{log}"));
    let numbers: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [syncs, served] = numbers[..] else {
        panic!("unexpected statistics line {line:?}")
    };
    // Each message is the first of its session: for its 250, messages/, the
    // session directory and .incoming were each asked for once; for the
    // seal, the session directory, the day's directory and .incoming; and
    // the first seal of a day syncs the day's four parents up to the spool.
    let n = acked.len();
    assert!(
        (6 * n..=6 * n + 8).contains(&served),
        "expected {} directory targets (+4 per day): {line}",
        6 * n
    );
    // .incoming, asked for by every session, is synced for many at once.
    assert!(syncs < served, "no directory sync was shared: {line}");
}
