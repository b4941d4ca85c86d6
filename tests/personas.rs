//! The personas against the real servers they imitate, over sockets.
//!
//! * Differential: the corpus `tests/reference/dialogs.txt` (211 dialogs) is
//!   played by `scripts/reference/replay.py` against a real Debian Postfix 3.7
//!   (`scripts/reference/postfix.sh`) and a real Debian Exim 4.96
//!   (`scripts/reference/exim.sh`), and against `latrine listen` with the
//!   matching persona, all on loopback; replies are compared after
//!   normalising queue ids and dates only. The share of identical replies is
//!   printed; Postfix must match but for the deliberate DATA difference,
//!   Exim in at least 95% of the replies.
//! * nmap: `-sV` names each persona's product, `smtp-commands` lists its
//!   EHLO keywords, `smtp-open-relay` finds an open relay in all 16 tests,
//!   `smtp-enum-users` says what it says against the real server, and
//!   `smtp-ntlm-info` prints the Exchange persona's Windows names.
//! * Honeypot detectors: the SMTP checks of public detectors (potsnitch's:
//!   greeting delay, extensions, VRFY, replies to distinct garbage, AUTH with
//!   default and garbage credentials) find nothing to flag.
//!
//! The real servers need root (they run as their own users); under CI=true
//! (where `.ci/run` installs them) a missing server fails the test.

mod support;

use serde::Deserialize;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Honeypot, require_tool};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skips (or, under CI, fails) when the real servers cannot be run here.
fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(!ci(), "the reference servers need root under CI=true");
        eprintln!("skipping: the reference servers need root");
    }
    root
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real reference server started by one of the scripts, stopped on drop.
struct Reference {
    script: &'static str,
    dir: PathBuf,
    port: u16,
}

impl Reference {
    fn start(script: &'static str, dir: &str) -> Option<Reference> {
        let port = free_port();
        let out = Command::new(format!("{ROOT}/scripts/reference/{script}"))
            .arg("start")
            .env("REF_PORT", port.to_string())
            .env("REF_DIR", dir)
            .output()
            .expect("run the reference script");
        if !out.status.success() {
            let why = format!(
                "{script} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!ci(), "{why}");
            eprintln!("skipping: {why}");
            return None;
        }
        Some(Reference {
            script,
            dir: dir.into(),
            port,
        })
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = Command::new(format!("{ROOT}/scripts/reference/{}", self.script))
            .arg("stop")
            .env("REF_PORT", self.port.to_string())
            .env("REF_DIR", &self.dir)
            .output();
    }
}

#[derive(Debug, Deserialize)]
struct Dialog {
    name: String,
    steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
struct Step {
    send: Option<String>,
    replies: Vec<String>,
}

/// Plays the whole corpus against `port` with replay.py (16 dialogs at once).
fn replay(port: u16, out: &Path) -> std::process::Child {
    Command::new("python3")
        .arg(format!("{ROOT}/scripts/reference/replay.py"))
        // A step that gets no reply (Exim in DATA where Postfix refused it)
        // waits this long; the tarpit's longest wait is 1 s a line.
        .args([
            "--port",
            &port.to_string(),
            "--jobs",
            "16",
            "--step-timeout",
            "15",
        ])
        .arg("-o")
        .arg(out)
        .arg(format!("{ROOT}/tests/reference/dialogs.txt"))
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 replay.py")
}

/// Only what must differ: queue ids (Postfix's `queued as`, Exim's `id=`)
/// and dates.
fn normalize(line: &str) -> String {
    let mut line = line.to_string();
    for marker in ["queued as ", " OK id="] {
        if let Some(at) = line.find(marker) {
            line = format!("{}{marker}<id>", &line[..at]);
        }
    }
    for day in [
        "Mon, ", "Tue, ", "Wed, ", "Thu, ", "Fri, ", "Sat, ", "Sun, ",
    ] {
        if let Some(at) = line.find(day)
            && line.is_char_boundary((at + 31).min(line.len()))
        {
            line = format!(
                "{}<date>{}",
                &line[..at],
                &line[(at + 31).min(line.len())..]
            );
        }
    }
    line
}

/// Plays the corpus against the real server and the persona at once and
/// compares every reply. Returns (identical, total, the dialogs that differ).
fn differential(real_port: u16, persona: &str) -> (usize, usize, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let honeypot = Honeypot::start(&["--persona", persona]);
    let (real_out, ours_out) = (dir.path().join("real.json"), dir.path().join("ours.json"));
    let mut real = replay(real_port, &real_out);
    let mut ours = replay(honeypot.addr.port(), &ours_out);
    assert!(
        real.wait().unwrap().success(),
        "replay against the real server"
    );
    assert!(ours.wait().unwrap().success(), "replay against latrine");
    let load = |p: &Path| -> Vec<Dialog> {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (real, ours) = (load(&real_out), load(&ours_out));
    assert_eq!(real.len(), ours.len());
    let (mut same, mut total) = (0, 0);
    let mut differing = Vec::new();
    for (r, o) in real.iter().zip(&ours) {
        assert_eq!(r.name, o.name);
        let mut differs = false;
        for (i, step) in r.steps.iter().enumerate() {
            total += 1;
            let want: Vec<String> = step.replies.iter().map(|l| normalize(l)).collect();
            let have: Vec<String> = o
                .steps
                .get(i)
                .map(|s| s.replies.iter().map(|l| normalize(l)).collect())
                .unwrap_or_default();
            if want == have {
                same += 1;
            } else {
                differs = true;
                let sent = step.send.as_deref().unwrap_or("<connect>");
                eprintln!(
                    "{persona}: {} step {i} {:?}\n  real:    {:.200?}\n  latrine: {:.200?}",
                    r.name,
                    &sent[..sent.len().min(60)],
                    want,
                    have
                );
            }
        }
        if differs {
            differing.push(r.name.clone());
        }
    }
    (same, total, differing)
}

/// Dialogs where latrine differs from both servers on purpose: DATA ends
/// only at <CRLF>.<CRLF> (bare-LF endings are kept as smuggling evidence).
const BARE_LF_DIALOGS: [&str; 3] = [
    "bare-lf",
    "data-bare-lf-body",
    "data-bare-lf-dot-crlf-terminated",
];

#[test]
fn postfix_persona_answers_like_the_real_postfix() {
    if !require_root() || !require_tool("postfix") || !require_tool("python3") {
        return;
    }
    let Some(real) = Reference::start("postfix.sh", "/var/lib/latrine-persona-test-postfix-diff")
    else {
        return;
    };
    let (same, total, differing) = differential(real.port, "postfix");
    eprintln!(
        "postfix persona vs Debian Postfix 3.7, over sockets: {same}/{total} replies identical ({:.1}%)",
        100.0 * same as f64 / total as f64
    );
    for name in &differing {
        assert!(
            BARE_LF_DIALOGS.contains(&name.as_str()),
            "{name} differs from the real Postfix"
        );
    }
}

#[test]
fn exim_persona_answers_like_the_real_exim() {
    if !require_root() || !require_tool("python3") {
        return;
    }
    let Some(real) = Reference::start("exim.sh", "/var/lib/latrine-persona-test-exim-diff") else {
        return;
    };
    let (same, total, _) = differential(real.port, "exim");
    let share = 100.0 * same as f64 / total as f64;
    eprintln!(
        "exim persona vs Debian Exim 4.96, over sockets: {same}/{total} replies identical ({share:.1}%)"
    );
    assert!(share >= 95.0, "only {share:.1}% identical");
}

// ---------------------------------------------------------------------------
// nmap
// ---------------------------------------------------------------------------

/// nmap's service detection and SMTP scripts against one loopback port.
fn nmap(port: u16, scripts: &str) -> String {
    let out = Command::new("nmap")
        .args([
            "-Pn",
            "-n",
            "-sV",
            "--version-light",
            "-p",
            &port.to_string(),
        ])
        .args(["--script", scripts, "--script-timeout", "120s", "127.0.0.1"])
        .output()
        .expect("run nmap");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines of a script's output in nmap's report.
fn script_output<'a>(report: &'a str, script: &str) -> Vec<&'a str> {
    let mut lines = report.lines().skip_while(|l| {
        !l.contains(&format!("| {script}:")) && !l.contains(&format!("|_{script}:"))
    });
    let mut out = Vec::new();
    if let Some(first) = lines.next() {
        out.push(first);
        if first.starts_with("|_") {
            return out;
        }
        for l in lines {
            out.push(l);
            if l.starts_with("|_") || !l.starts_with('|') {
                break;
            }
            if l.starts_with("| ")
                && l[2..].contains(':')
                && !l.starts_with("|   ")
                && out.len() > 1
            {
                // The next script's first line.
                out.pop();
                break;
            }
        }
    }
    out
}

const NMAP_SCRIPTS: &str = "smtp-commands,smtp-open-relay,smtp-enum-users,smtp-ntlm-info";

fn write_nmap_output(name: &str, report: &str) {
    // Kept for the closing note and for whoever reads the CI log.
    let dir = Path::new(ROOT).join("target/nmap");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.txt")), report);
    eprintln!("--- nmap against the {name} persona ---\n{report}");
}

/// The VRFY/EXPN/RCPT verdict lines of smtp-enum-users.
fn enum_users(report: &str) -> Vec<String> {
    script_output(report, "smtp-enum-users")
        .iter()
        .map(|l| l.trim_start_matches(['|', '_', ' ']).to_string())
        .collect()
}

/// smtp-open-relay's verdict line.
fn open_relay(report: &str) -> String {
    script_output(report, "smtp-open-relay").join("\n")
}

fn nmap_persona(persona: &str, product: &str, keywords: &[&str]) -> String {
    let honeypot = Honeypot::start(&["--persona", persona]);
    let report = nmap(honeypot.addr.port(), NMAP_SCRIPTS);
    write_nmap_output(persona, &report);
    let service = report
        .lines()
        .find(|l| l.contains("/tcp"))
        .unwrap_or_default()
        .to_string();
    assert!(
        service.contains("open") && service.contains(product),
        "-sV: {service}"
    );
    // Exim's parser refuses most of the tricks, as the real one does (below).
    if persona != "exim" {
        assert_open_relay_16(&report);
    }
    let commands = script_output(&report, "smtp-commands").join("\n");
    for keyword in keywords {
        assert!(
            commands.contains(keyword),
            "smtp-commands lacks {keyword}: {commands}"
        );
    }
    report
}

fn assert_open_relay_16(report: &str) {
    let relay = open_relay(report);
    assert!(
        relay.contains("Server is an open relay (16/16 tests)"),
        "smtp-open-relay: {relay}"
    );
}

#[test]
fn nmap_sees_postfix_like_the_real_postfix() {
    if !require_tool("nmap") {
        return;
    }
    let report = nmap_persona(
        "postfix",
        "Postfix smtpd",
        &[
            "PIPELINING",
            "SIZE 10240000",
            "VRFY",
            "ETRN",
            "STARTTLS",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "DSN",
            "SMTPUTF8",
            "CHUNKING",
        ],
    );
    if require_root()
        && require_tool("postfix")
        && let Some(real) =
            Reference::start("postfix.sh", "/var/lib/latrine-persona-test-postfix-nmap")
    {
        let theirs = nmap(real.port, "smtp-enum-users");
        assert_eq!(enum_users(&report), enum_users(&theirs), "smtp-enum-users");
    }
}

#[test]
fn nmap_sees_exim_like_the_real_exim() {
    if !require_tool("nmap") {
        return;
    }
    let report = nmap_persona(
        "exim",
        "Exim smtpd",
        &[
            "SIZE 52428800",
            "8BITMIME",
            "PIPELINING",
            "PIPECONNECT",
            "CHUNKING",
            "STARTTLS",
            "PRDR",
            "HELP",
        ],
    );
    assert!(report.contains("4.96"), "-sV gives Exim's version");
    // Exim's own parser refuses most of smtp-open-relay's tricks (domain
    // literals, `%` and `!` in local parts) whatever its relay settings, so
    // the persona relays in exactly the tests the real Exim relays in.
    if require_root()
        && let Some(real) = Reference::start("exim.sh", "/var/lib/latrine-persona-test-exim-nmap")
    {
        let theirs = nmap(real.port, "smtp-enum-users,smtp-open-relay");
        eprintln!("--- nmap against the real Exim ---\n{theirs}");
        assert_eq!(enum_users(&report), enum_users(&theirs), "smtp-enum-users");
        assert_eq!(open_relay(&report), open_relay(&theirs), "smtp-open-relay");
    }
}

#[test]
fn nmap_sees_exchange_and_its_windows_names() {
    if !require_tool("nmap") {
        return;
    }
    let report = nmap_persona(
        "exchange",
        "Microsoft Exchange smtpd",
        &[
            "SIZE 37748736",
            "PIPELINING",
            "DSN",
            "ENHANCEDSTATUSCODES",
            "STARTTLS",
            "X-ANONYMOUSTLS",
            "AUTH NTLM",
            "X-EXPS GSSAPI NTLM",
            "8BITMIME",
            "BINARYMIME",
            "CHUNKING",
            "SMTPUTF8",
        ],
    );
    let ntlm = script_output(&report, "smtp-ntlm-info").join("\n");
    for line in [
        "Target_Name: EXAMPLE",
        "NetBIOS_Domain_Name: EXAMPLE",
        "NetBIOS_Computer_Name: MX",
        "DNS_Domain_Name: example.com",
        "DNS_Computer_Name: mx.example.com",
        "Product_Version: 10.0.17763",
    ] {
        assert!(ntlm.contains(line), "smtp-ntlm-info lacks {line:?}: {ntlm}");
    }
}

// ---------------------------------------------------------------------------
// Honeypot detectors
// ---------------------------------------------------------------------------

fn connect(addr: SocketAddr) -> (TcpStream, Vec<u8>, Duration) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut banner = vec![0; 1024];
    let n = s.read(&mut banner).unwrap();
    banner.truncate(n);
    (s, banner, start.elapsed())
}

/// One command on a fresh connection, as the detectors probe: the reply
/// bytes (or `TIMEOUT` when none came within a second).
fn probe(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (mut s, _, _) = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s.write_all(payload).unwrap();
    let mut reply = vec![0; 4096];
    match s.read(&mut reply) {
        Ok(n) => {
            reply.truncate(n);
            reply
        }
        Err(_) => b"TIMEOUT".to_vec(),
    }
}

fn command(s: &mut TcpStream, line: &[u8]) -> Vec<u8> {
    s.write_all(line).unwrap();
    let mut reply = vec![0; 4096];
    let n = s.read(&mut reply).unwrap_or(0);
    reply.truncate(n);
    reply
}

fn auth_login(addr: SocketAddr, user: &str, password: &str) -> bool {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let (mut s, _, _) = connect(addr);
    command(&mut s, b"EHLO test.example.org\r\n");
    if !command(&mut s, b"AUTH LOGIN\r\n").starts_with(b"334") {
        return false;
    }
    command(&mut s, format!("{}\r\n", b64(user)).as_bytes());
    command(&mut s, format!("{}\r\n", b64(password)).as_bytes()).starts_with(b"235")
}

/// The SMTP checks of honeypot detectors (potsnitch's detectors/smtp.py:
/// banner, timing, EHLO, VRFY, invalid payloads, credentials), run against
/// each persona on a submission listener (where AUTH is offered) with a host
/// name that is not an example. Open relaying is the one indicator left on
/// purpose: a spam honeypot must look like one (and so does the real
/// Postfix configured as an open relay).
#[test]
fn honeypot_detectors_find_nothing() {
    for persona in ["postfix", "exim", "exchange"] {
        let h = Honeypot::start(&[
            "--persona",
            persona,
            "--hostname",
            "mail.northwind-traders.net",
            "--listen",
            "127.0.0.1:0",
            "--listen-submission",
            "127.0.0.1:0",
        ]);
        let addrs = h.listening_addresses(2);
        let (smtp, submission) = (addrs[0], addrs[1]);
        // Banner: no known honeypot banner or default host name.
        let (_, banner, _) = connect(smtp);
        let banner = String::from_utf8_lossy(&banner).to_lowercase();
        for bad in [
            "mail.example.com",
            "microsoft esmtp mail\r",
            "honeypot",
            "localhost",
            "mailoney",
            "qeeqbox",
        ] {
            assert!(
                !banner.contains(bad),
                "{persona}: banner {banner:?} has {bad:?}"
            );
        }
        // Timing: the banner never comes within 5 ms.
        for _ in 0..10 {
            let (_, _, elapsed) = connect(smtp);
            assert!(
                elapsed >= Duration::from_millis(5),
                "{persona}: banner in {elapsed:?}"
            );
        }
        // EHLO: the common extensions are there (flagged when 4 of 5 miss),
        // and AUTH is not LOGIN/PLAIN alone.
        let (mut s, _, _) = connect(submission);
        let ehlo =
            String::from_utf8_lossy(&command(&mut s, b"EHLO test.example.com\r\n")).to_lowercase();
        let missing = ["auth", "starttls", "size", "pipelining", "8bitmime"]
            .iter()
            .filter(|e| !ehlo.contains(*e))
            .count();
        assert!(missing < 4, "{persona}: EHLO {ehlo:?}");
        assert!(
            !(ehlo.contains("login") && !ehlo.contains("cram-md5") && !ehlo.contains("ntlm")),
            "{persona}: weak AUTH only: {ehlo:?}"
        );
        // VRFY: not one reply for every user, and not every user valid.
        let vrfy: Vec<Vec<u8>> = ["admin", "root", "nonexistent_user_xyz", "${jndi:ldap://x}"]
            .iter()
            .map(|u| probe(smtp, format!("VRFY {u}\r\n").as_bytes()))
            .collect();
        let distinct: std::collections::HashSet<&Vec<u8>> = vrfy.iter().collect();
        let valid = vrfy
            .iter()
            .filter(|r| r.starts_with(b"250") || r.starts_with(b"252"))
            .count();
        // Exchange answers every VRFY with "252 2.1.5 Cannot VRFY user", so
        // a detector flags the real product too; the persona does the same.
        if persona != "exchange" {
            assert!(
                distinct.len() > 1 && valid < vrfy.len(),
                "{persona}: VRFY {vrfy:?}"
            );
        }
        // Distinct garbage gets distinct replies.
        let payloads: Vec<Vec<u8>> = vec![
            b"INVALID\r\n".to_vec(),
            b"HELO \x00\r\n".to_vec(),
            [b"MAIL FROM:<".to_vec(), vec![b'a'; 1000], b">\r\n".to_vec()].concat(),
            b"RCPT TO:<${jndi:ldap://x}>\r\n".to_vec(),
            b"\xff\xff\xff\xff".to_vec(),
        ];
        let replies: std::collections::HashSet<Vec<u8>> =
            payloads.iter().map(|p| probe(smtp, p)).collect();
        assert!(replies.len() > 1, "{persona}: one reply to all garbage");
        // Credentials: default and garbage ones are refused (the default
        // policy accepts only after five failures from the same address).
        for (user, password) in [
            ("admin", "admin"),
            ("admin", "password"),
            ("root", "root"),
            ("xkwqpzmt", "Hf7#nK2$pLmQ"),
            ("zjrnvlbx", "9Yx!mN4@wRtP"),
        ] {
            assert!(
                !auth_login(submission, user, password),
                "{persona}: {user}:{password} accepted"
            );
        }
    }
}
