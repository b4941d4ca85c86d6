//! Deny lists, SIGHUP and the privilege drop, on real sockets from several
//! loopback source addresses (Linux routes all of 127/8 to `lo`).

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Dialog, Honeypot, mmdb};

/// A connection to `to` from `from` (any port).
fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    Dialog::connect_from(from, to).stream
}

/// What the server says first: the greeting, or "" when it just closes.
fn first_words(from: IpAddr, to: SocketAddr) -> String {
    let mut stream = connect_from(from, to);
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Runs `latrine ARGS`; returns (status, stdout, stderr).
fn latrine(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_latrine"))
        .args(args)
        .env("RUST_LOG", "latrine=info")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `denied.csv` as (ip, rule) → connections, after `latrine analyze --offline`.
fn analyze_denied(spool: &Path) -> (Vec<(String, String, u64)>, serde_json::Value) {
    let out = spool.with_file_name("report");
    let (status, _, err) = latrine(&[
        "analyze",
        spool.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--offline",
        "--quiet",
    ]);
    assert_eq!(status, Some(0), "analyze failed: {err}");
    let csv = std::fs::read_to_string(out.join("denied.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("ip,rule,connections,first_seen,last_seen,sensors")
    );
    let rows = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap())
        })
        .collect();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    (rows, report["summary"]["totals"].clone())
}

fn log_has(h: &Honeypot, needle: &str, times: usize) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if h.log.lock().unwrap().matches(needle).count() >= times {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn denied_clients_get_no_greeting_no_session_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let deny = dir.path().join("deny.txt");
    write(
        &deny,
        "# scanners\n127.0.0.2\n\n127.0.0.16/28   # a CIDR rule\n::1 ; IPv6\n",
    );
    let events = dir.path().join("events.jsonl");
    let spool = dir.path().join("spool");
    let mut h = Honeypot::start_on(
        &spool,
        &[
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "[::1]:0",
            "--no-fsync",
            "--deny-file",
            deny.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
        ],
    );
    let addresses = h.listening_addresses(2);
    let (v4, v6) = (addresses[0], addresses[1]);
    assert!(
        h.log
            .lock()
            .unwrap()
            .contains("deny lists: 3 address blocks")
    );

    let mut made = std::collections::BTreeMap::new();
    for (from, to, times) in [
        ("127.0.0.2", v4, 3u64),
        ("127.0.0.20", v4, 2),
        ("::1", v6, 1),
    ] {
        for _ in 0..times {
            assert_eq!(first_words(ip(from), to), "", "{from} must get no greeting");
        }
        made.insert(from.to_string(), times);
    }
    // Outside the blocks: 127.0.0.3, and 127.0.0.32 just past the /28.
    for from in ["127.0.0.3", "127.0.0.32"] {
        let mut d = Dialog::connect_from(ip(from), v4);
        assert!(d.reply().starts_with("220 "), "{from} is served");
        assert!(d.cmd("QUIT").starts_with("221"));
    }
    let sealed = h.wait_sealed(2);
    assert_eq!(h.terminate(), Some(0));
    // Only the allowed clients became sessions.
    let clients: Vec<String> = sealed.iter().map(|(_, m)| m.client.ip.clone()).collect();
    assert_eq!(clients.len(), 2, "{clients:?}");
    assert!(
        clients
            .iter()
            .all(|c| c == "127.0.0.3" || c == "127.0.0.32")
    );
    if unsafe_euid() == 0 {
        assert!(h.log.lock().unwrap().contains("running as root"));
    }

    // Each denial is an event, with no session id.
    let denied_events: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["event"] == "session.denied")
        .collect();
    assert_eq!(denied_events.len(), 6);
    assert!(denied_events.iter().all(|e| e["session_id"] == ""));
    assert!(
        denied_events
            .iter()
            .any(|e| e["rule"] == "cidr:127.0.0.16/28" && e["client_ip"] == "127.0.0.20")
    );
    assert!(
        denied_events
            .iter()
            .any(|e| e["rule"] == "cidr:::1/128" && e["server"]["ip"] == "::1")
    );

    // The day file verifies, and analyze counts exactly what was made.
    let (status, out, _) = latrine(&["verify", spool.to_str().unwrap()]);
    assert_eq!(status, Some(0), "{out}");
    assert!(
        out.ends_with("2 sessions checked, 1 denial files, 0 problems\n"),
        "{out}"
    );
    let (rows, totals) = analyze_denied(&spool);
    let counted: std::collections::BTreeMap<String, u64> =
        rows.iter().map(|(ip, _, n)| (ip.clone(), *n)).collect();
    assert_eq!(counted, made);
    assert!(rows.contains(&("127.0.0.20".into(), "cidr:127.0.0.16/28".into(), 2)));
    assert_eq!(totals["denied_connections"], 6);
    assert_eq!(totals["denied_clients"], 3);
    assert_eq!(totals["sessions"], 2);

    // A damaged line and a torn last one are named by verify, and analyze
    // counts the good lines only.
    let day = only_day_file(&spool);
    let good_lines = std::fs::read_to_string(&day).unwrap().lines().count();
    let mut f = std::fs::OpenOptions::new().append(true).open(&day).unwrap();
    f.write_all(b"2026-12-07T10:6Z 127.0.0.2 cidr:127.0.0.2/32 1\n2026-12-07T10:06Z 127.0")
        .unwrap();
    drop(f);
    let (status, out, _) = latrine(&["verify", spool.to_str().unwrap()]);
    assert_eq!(status, Some(1), "{out}");
    let bad = format!(
        "BAD-DENIALS {}:{}: \"2026-12-07T10:6Z\" is not a minute",
        day.display(),
        good_lines + 1
    );
    assert!(out.contains(&bad), "{out}");
    assert!(
        out.contains(&format!(
            "TORN-DENIALS {}: last line incomplete",
            day.display()
        )),
        "{out}"
    );
    assert!(
        out.ends_with("2 sessions checked, 1 denial files, 2 problems\n"),
        "{out}"
    );
    let (rows, totals) = analyze_denied(&spool);
    assert_eq!(rows.iter().map(|r| r.2).sum::<u64>(), 6);
    assert_eq!(totals["denied_connections"], 6);
}

fn unsafe_euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

#[test]
fn country_rules_use_a_maxmind_database_and_count_unknown_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("Test-Country.mmdb");
    mmdb::write(
        &db,
        "GeoLite2-Country",
        &[
            (
                Ipv4Addr::new(127, 0, 0, 4),
                32,
                mmdb::country("NL", "Netherlands"),
            ),
            (
                Ipv4Addr::new(127, 0, 0, 5),
                32,
                mmdb::country("DE", "Germany"),
            ),
            (
                Ipv4Addr::new(127, 0, 1, 0),
                24,
                mmdb::country("RU", "Russia"),
            ),
        ],
    );
    let spool = dir.path().join("spool");
    let mut h = Honeypot::start_on(
        &spool,
        &[
            "--no-fsync",
            "--deny-country",
            "nl,ru",
            "--geoip-country",
            db.to_str().unwrap(),
        ],
    );
    assert!(h.log.lock().unwrap().contains("countries NL,RU"));
    assert_eq!(first_words(ip("127.0.0.4"), h.addr), "");
    assert_eq!(first_words(ip("127.0.1.77"), h.addr), "");
    assert_eq!(first_words(ip("127.0.1.78"), h.addr), "");
    // Germany is not denied; 127.0.0.6 is not in the database: allowed, counted.
    for from in ["127.0.0.5", "127.0.0.6", "127.0.0.6"] {
        assert!(first_words(ip(from), h.addr).starts_with("220 "), "{from}");
    }
    h.wait_sealed(3);
    assert_eq!(h.terminate(), Some(0));
    let (rows, totals) = analyze_denied(&spool);
    assert_eq!(
        rows,
        vec![
            ("127.0.0.4".to_string(), "country:NL".to_string(), 1),
            ("127.0.1.77".to_string(), "country:RU".to_string(), 1),
            ("127.0.1.78".to_string(), "country:RU".to_string(), 1),
        ]
    );
    assert_eq!(totals["denied_connections"], 3);
    assert_eq!(totals["allowed_unknown_country"], 2);
}

#[test]
fn a_flood_of_denied_connections_does_not_slow_a_normal_client() {
    const FLOOD: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let deny = dir.path().join("deny.txt");
    write(&deny, "127.0.0.2\n");
    let spool = dir.path().join("spool");
    let mut h = Honeypot::start_on(
        &spool,
        &["--no-fsync", "--deny-file", deny.to_str().unwrap()],
    );
    let addr = h.addr;
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..FLOOD / 4 {
                    let mut s = connect_from(ip("127.0.0.2"), addr);
                    let mut buf = [0u8; 64];
                    assert_eq!(
                        s.read(&mut buf).unwrap_or(0),
                        0,
                        "a denied client got bytes"
                    );
                }
            })
        })
        .collect();
    // Meanwhile a normal client from 127.0.0.3, one full dialog after another.
    let flag = std::sync::Arc::clone(&flooding);
    let normal = std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        let mut dialogs = 0;
        while flag.load(std::sync::atomic::Ordering::Relaxed) || dialogs < 3 {
            let start = Instant::now();
            let mut d = Dialog::connect_from(ip("127.0.0.3"), addr);
            assert!(d.reply().starts_with("220 "));
            assert!(d.cmd("EHLO client.example").starts_with("250"));
            assert!(d.cmd("QUIT").starts_with("221"));
            worst = worst.max(start.elapsed());
            dialogs += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        (worst, dialogs)
    });
    let flood_start = Instant::now();
    for f in flooders {
        f.join().unwrap();
    }
    let flood_time = flood_start.elapsed();
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let (worst, dialogs) = normal.join().unwrap();
    eprintln!(
        "{FLOOD} denied connections in {flood_time:?}; {dialogs} normal dialogs meanwhile, the slowest {worst:?}"
    );
    assert!(
        worst < Duration::from_secs(1),
        "a normal client waited {worst:?} during the flood"
    );
    assert_eq!(h.terminate(), Some(0));
    // Every denial is counted, in few lines (coalesced per second).
    let day = only_day_file(&spool);
    let text = std::fs::read_to_string(&day).unwrap();
    let counted: u64 = text
        .lines()
        .skip(1)
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, FLOOD as u64);
    let lines = text.lines().count() - 1;
    eprintln!("{FLOOD} denials counted in {lines} lines");
    assert!(
        lines as f64 <= flood_time.as_secs_f64() + 3.0,
        "{lines} lines for a {flood_time:?} flood"
    );
    // No session directory for any of them.
    assert_eq!(support::sealed_sessions(&spool).len(), dialogs);
}

fn only_day_file(spool: &Path) -> PathBuf {
    let dir = spool.join(support::SENSOR).join("denials");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

fn hup(h: &Honeypot) {
    let status = Command::new("kill")
        .args(["-HUP", &h.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sighup_reloads_without_dropping_a_session_and_refuses_a_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let deny = dir.path().join("deny.txt");
    write(&deny, "127.0.0.9\n");
    let config = dir.path().join("latrine.toml");
    let file = |banner: &str, extra: &str| {
        format!(
            "banner = \"{banner}\"\n{extra}\n[deny]\nfiles = [{:?}]\n\n\
             [[listener]]\naddress = \"127.0.0.1:0\"\n",
            deny.to_str().unwrap()
        )
    };
    write(&config, &file("mx.old.example ESMTP Postfix", ""));
    let spool = dir.path().join("spool");
    let config_arg = format!("--config={}", config.display());
    let h = Honeypot::start_on(&spool, &[&config_arg, "--no-fsync"]);
    let addr = h.addr;

    // A session opened under the old settings...
    let mut open = Dialog::connect_from(ip("127.0.0.3"), addr);
    assert_eq!(open.reply(), "220 mx.old.example ESMTP Postfix");
    assert!(open.cmd("EHLO client.example").starts_with("250"));

    // ...stays open across a reload that denies its address and renames the server.
    write(&deny, "127.0.0.9\n127.0.0.3\n");
    write(&config, &file("mx.new.example ESMTP Postfix", ""));
    hup(&h);
    assert!(
        log_has(&h, "configuration reloaded", 1),
        "{}",
        h.log.lock().unwrap()
    );
    assert_eq!(
        first_words(ip("127.0.0.3"), addr),
        "",
        "the new deny list is in force"
    );
    assert_eq!(
        first_words(ip("127.0.0.7"), addr),
        "220 mx.new.example ESMTP Postfix\r\n"
    );
    assert!(open.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(open.cmd("RCPT TO:<b@example.net>").starts_with("250"));
    assert!(open.cmd("DATA").starts_with("354"));
    open.send(b"Subject: across a reload\r\n\r\nbody\r\n.\r\n");
    assert!(open.reply().starts_with("250 2.0.0 Ok: queued as "));
    assert!(open.cmd("QUIT").starts_with("221"));

    // A bad deny file is refused with its file and line; the old lists stay.
    write(&deny, "127.0.0.9\n127.0.0.300\n");
    hup(&h);
    assert!(log_has(&h, "reload refused", 1));
    let shown = format!("{}:2: \"127.0.0.300\" is not an IP address", deny.display());
    assert!(
        h.log.lock().unwrap().contains(&shown),
        "{}",
        h.log.lock().unwrap()
    );
    assert_eq!(first_words(ip("127.0.0.3"), addr), "");

    // So is a bad key, named; and a changed listener needs a restart.
    write(
        &config,
        &file("mx.new.example ESMTP Postfix", "no_such_key = 1"),
    );
    hup(&h);
    assert!(log_has(&h, "reload refused", 2));
    assert!(h.log.lock().unwrap().contains("no_such_key"));
    write(&deny, "127.0.0.9\n");
    write(
        &config,
        &file("mx.third.example ESMTP Postfix", "").replace("127.0.0.1:0", "127.0.0.1:1"),
    );
    hup(&h);
    assert!(log_has(&h, "configuration reloaded", 2));
    assert!(
        h.log
            .lock()
            .unwrap()
            .contains("reload: listeners (the listening sockets) changed, which needs a restart")
    );
    assert_eq!(
        first_words(ip("127.0.0.3"), addr),
        "220 mx.third.example ESMTP Postfix\r\n"
    );
    // The session open across the reload was stored whole, under the old name.
    let sealed = h.wait_sealed(3);
    let across = sealed
        .iter()
        .find(|(_, m)| m.messages.len() == 1)
        .expect("the message sent across the reload");
    assert_eq!(across.1.client.ip, "127.0.0.3");
    let transcript = std::fs::read_to_string(across.0.join("transcript.log")).unwrap();
    assert!(transcript.contains("mx.old.example"));
    assert!(!transcript.contains("mx.new.example"));
}

#[test]
fn bad_deny_input_and_unknown_users_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let spool = spool.to_str().unwrap();
    let deny = dir.path().join("deny.txt");
    write(&deny, "192.0.2.0/24\n# fine so far\n192.0.2.0/33\n");
    let deny = deny.to_str().unwrap();
    let db = dir.path().join("Test-ASN.mmdb");
    mmdb::write(&db, "GeoLite2-ASN", &[]);
    let not_a_db = dir.path().join("garbage.mmdb");
    write(&not_a_db, "not a database");
    let listen = ["listen", "--listen", "127.0.0.1:0", "--spool", spool];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--deny-file", deny],
            ":3: \"192.0.2.0/33\": prefix length \"33\" is not 0 to 32",
        ),
        (
            vec!["--deny-file", "/nonexistent/deny.txt"],
            "deny file /nonexistent/deny.txt: No such file",
        ),
        (vec!["--deny-country", "NL,XX"], "XX"),
        (
            vec![
                "--deny-country",
                "NL",
                "--geoip-country",
                "/nonexistent/c.mmdb",
            ],
            "country database /nonexistent/c.mmdb: cannot open",
        ),
        (
            vec![
                "--deny-country",
                "NL",
                "--geoip-country",
                not_a_db.to_str().unwrap(),
            ],
            "cannot open",
        ),
        (
            vec![
                "--deny-country",
                "NL",
                "--geoip-country",
                db.to_str().unwrap(),
            ],
            "not a MaxMind City or Country one",
        ),
        (
            vec!["--user", "no-such-user-latrine"],
            "unknown user \"no-such-user-latrine\"",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = listen.to_vec();
        args.extend(&extra);
        let (status, _, err) = latrine(&args);
        assert!(
            status.is_some_and(|s| s != 0),
            "{extra:?} must fail to start: {err}"
        );
        assert!(err.contains(expected), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `uid`, `gid` of the user `name` from /etc/passwd.
fn passwd(name: &str) -> Option<(u32, u32)> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
}

#[test]
fn binds_port_25_as_root_then_runs_as_nobody() {
    if unsafe_euid() != 0 {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI runs as root: the privilege drop test must run there");
        }
        eprintln!("skipping: the privilege drop needs root");
        return;
    }
    let (uid, gid) = passwd("nobody").expect("the nobody user");
    let dir = tempfile::tempdir().unwrap();
    // The temporary directory is root's 0700: let nobody through it.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let spool = dir.path().join("spool");
    let h = Honeypot::start_on(&spool, &["--listen", "127.0.0.1:25", "--user", "nobody"]);
    assert_eq!(h.addr.port(), 25);
    let log = h.log.lock().unwrap().clone();
    assert!(
        log.contains(&format!("running as user nobody (uid {uid}, gid {gid})")),
        "{log}"
    );
    assert!(!log.contains("running as root"), "{log}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", h.child.id())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(field("Uid:"), vec![uid.to_string(); 4], "{status}");
    assert_eq!(field("Gid:"), vec![gid.to_string(); 4], "{status}");
    assert_eq!(field("Groups:"), vec![gid.to_string()], "{status}");

    let mut d = Dialog::open_at(h.addr);
    assert!(d.cmd("EHLO client.example").starts_with("250"));
    assert!(d.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(d.cmd("RCPT TO:<b@example.net>").starts_with("250"));
    assert!(d.cmd("DATA").starts_with("354"));
    d.send(b"Subject: as nobody\r\n\r\nbody\r\n.\r\n");
    assert!(d.reply().starts_with("250 2.0.0 Ok: queued as "));
    assert!(d.cmd("QUIT").starts_with("221"));
    let sealed = h.wait_sealed(1);
    let (session, manifest) = &sealed[0];
    assert_eq!(manifest.messages.len(), 1);
    // The spool and state directories were made for nobody, 0700; files 0600.
    let state = dir.path().join("spool.state");
    for made in [&spool, &state] {
        let meta = std::fs::metadata(made).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{}", made.display());
        assert_eq!(meta.mode() & 0o777, 0o700, "{}", made.display());
    }
    let eml = std::fs::metadata(session.join(&manifest.messages[0].file)).unwrap();
    assert_eq!(eml.uid(), uid);
    assert_eq!(eml.mode() & 0o777, 0o600);
    let mut s = TcpStream::connect(h.addr).unwrap();
    let _ = s.write_all(b"QUIT\r\n");
}
