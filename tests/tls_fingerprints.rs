//! The JA3 and JA4 latrine records equal what independent implementations
//! compute from a packet capture of the same handshakes: Wireshark's
//! `tshark` (field `tls.handshake.ja3`) for JA3, and the `ja4plus` Python
//! package (PyPI; BSD-3 for JA4, its own TLS parser on scapy) for JA4; and
//! likewise the JA3S (`tls.handshake.ja3s`) and JA4S of what latrine sent.
//!
//! Needs root (capturing on `lo`), tshark, the clients (openssl, curl,
//! python3, swaks, msmtp, php with PHPMailer) and a venv with ja4plus:
//! `$LATRINE_VENV`, or target/venv (.ci/run makes both). Under CI=true
//! anything missing fails the test.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Honeypot, require_tool};

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/clients");

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn euid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

/// The venv's python with ja4plus, or None (a failure under CI).
fn ja4plus_python() -> Option<PathBuf> {
    let venv = std::env::var_os("LATRINE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv"));
    let python = venv.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import ja4plus"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    let what = format!(
        "a venv with ja4plus at {} (set LATRINE_VENV; .ci/run makes target/venv)",
        venv.display()
    );
    if ci() {
        panic!("{what} is required under CI=true");
    }
    eprintln!("skipping: no {what}");
    None
}

/// tshark writing everything on `lo` to and from `port` into `pcap`,
/// once it says it is capturing.
fn start_capture(port: u16, pcap: &Path) -> std::process::Child {
    let mut child = Command::new("tshark")
        .args(["-i", "lo", "-q", "-f", &format!("tcp port {port}"), "-w"])
        .arg(pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tshark");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Capturing on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("tshark did not start capturing");
    child
}

fn run(command: &mut Command) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each client makes one STARTTLS handshake with `addr`.
fn handshakes(addr: SocketAddr, dir: &Path) -> Vec<&'static str> {
    let host = addr.ip().to_string();
    let port = addr.port().to_string();
    let target = addr.to_string();
    for version in ["-tls1_2", "-tls1_3"] {
        run(Command::new("timeout").args([
            "20",
            "openssl",
            "s_client",
            "-connect",
            &target,
            "-starttls",
            "smtp",
            version,
        ]));
    }
    run(Command::new("curl").args([
        "-sS",
        "-k",
        "--ssl-reqd",
        "--max-time",
        "20",
        &format!("smtp://{target}/client.example"),
        "-X",
        "NOOP",
    ]));
    run(Command::new("python3").args([
        "-c",
        "import smtplib, ssl, sys\n\
         c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE\n\
         s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=20); s.starttls(context=c); s.quit()",
        &host,
        &port,
    ]));
    run(Command::new("swaks").args([
        "--server",
        &target,
        "--tls",
        "--quit-after",
        "TLS",
        "--timeout",
        "20",
    ]));
    run(Command::new("msmtp").args([
        "--serverinfo",
        &format!("--host={host}"),
        &format!("--port={port}"),
        "--tls=on",
        "--tls-starttls=on",
        "--tls-certcheck=off",
        "--timeout=20",
    ]));
    let config = serde_json::json!({
        "host": host, "port": addr.port(), "security": "tls", "autotls": false,
        "auth": null, "user": "", "pass": "", "helo": "client.example",
        "from": "a@client.example", "to": ["b@example.net"], "subject": "ja3",
        "text": "Hello.\n",
        "wire_out": dir.join("php.wire"), "message_out": dir.join("php.msg"),
    });
    let config_path = dir.join("php.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    run(Command::new("php")
        .arg(Path::new(SCRIPTS).join("phpmailer_send.php"))
        .arg(&config_path));
    vec![
        "openssl -tls1_2",
        "openssl -tls1_3",
        "curl",
        "python ssl",
        "swaks",
        "msmtp",
        "PHPMailer",
    ]
}

/// tshark's JA3 of every ClientHello in `pcap`, by client port, decoding
/// `port` as SMTP so that it follows STARTTLS.
fn tshark_ja3(pcap: &Path, port: u16) -> BTreeMap<u16, String> {
    tshark_field(pcap, port, 1, "tcp.srcport", "tls.handshake.ja3")
}

/// tshark's JA3S of every ServerHello, by client port.
fn tshark_ja3s(pcap: &Path, port: u16) -> BTreeMap<u16, String> {
    tshark_field(pcap, port, 2, "tcp.dstport", "tls.handshake.ja3s")
}

fn tshark_field(
    pcap: &Path,
    port: u16,
    handshake_type: u8,
    client_port: &str,
    field: &str,
) -> BTreeMap<u16, String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-d", &format!("tcp.port=={port},smtp")])
        .args(["-Y", &format!("tls.handshake.type == {handshake_type}")])
        .args(["-T", "fields", "-e", client_port, "-e", field])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (port, ja3) = l.split_once('\t')?;
            Some((port.parse().ok()?, ja3.to_string()))
        })
        .collect()
}

#[test]
fn ja3_and_ja4_equal_tshark_and_ja4plus_on_a_capture() {
    if euid() != 0 {
        if ci() {
            panic!("CI runs as root: capturing on lo for this test needs it");
        }
        eprintln!("skipping: capturing on lo needs root");
        return;
    }
    let tools = [
        "tshark", "openssl", "curl", "python3", "swaks", "msmtp", "php",
    ];
    if !tools.iter().all(|t| require_tool(t)) {
        return;
    }
    let Some(python) = ja4plus_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let h = Honeypot::start(&["--no-fsync"]);
    let pcap = dir.path().join("handshakes.pcap");
    let mut tshark = start_capture(h.addr.port(), &pcap);
    let clients = handshakes(h.addr, dir.path());
    let sealed = h.wait_sealed(clients.len());
    // dumpcap writes packets in batches: wait until every ClientHello is
    // in the file, then SIGINT, on which tshark writes out the rest and exits.
    let start = Instant::now();
    while tshark_ja3(&pcap, h.addr.port()).len() < clients.len()
        && start.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    run(Command::new("kill").args(["-INT", &tshark.id().to_string()]));
    let start = Instant::now();
    while tshark.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "tshark did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // latrine's view: client port → (ja3, ja4), and what it sent (ja3s, ja4s).
    let ours: BTreeMap<u16, (String, String)> = sealed
        .iter()
        .filter_map(|(_, m)| {
            let tls = m.tls.as_ref()?;
            Some((m.client.port, (tls.ja3.clone()?, tls.ja4.clone()?)))
        })
        .collect();
    let ours_sent: BTreeMap<u16, (String, String)> = sealed
        .iter()
        .filter_map(|(_, m)| {
            let tls = m.tls.as_ref()?;
            Some((m.client.port, (tls.ja3s.clone()?, tls.ja4s.clone()?)))
        })
        .collect();
    assert_eq!(ours_sent.len(), clients.len(), "{ours_sent:?}");
    assert_eq!(
        ours.len(),
        clients.len(),
        "a fingerprint per client: {ours:?}"
    );

    let tshark_ja3 = tshark_ja3(&pcap, h.addr.port());
    let tshark_ja3s = tshark_ja3s(&pcap, h.addr.port());

    // ja4plus's JA4 and JA4S of the same capture, by client port.
    let out = Command::new(python.with_file_name("ja4plus"))
        .args(["--format", "json", "--types", "ja4,ja4s", "analyze"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ja4plus: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let by = |kind: &str, port: &str| -> BTreeMap<u16, String> {
        lines
            .iter()
            .filter(|v| v["type"] == kind)
            .filter_map(|v| {
                Some((
                    v[port].as_u64()? as u16,
                    v["fingerprint"].as_str()?.to_string(),
                ))
            })
            .collect()
    };
    let ja4plus = by("ja4", "src_port");
    let ja4plus_s = by("ja4s", "dst_port");

    let mut report = Vec::new();
    for (port, (ja3, ja4)) in &ours {
        report.push(format!(
            "port {port}: ja3 {ja3} (tshark {:?}), ja4 {ja4} (ja4plus {:?})",
            tshark_ja3.get(port),
            ja4plus.get(port)
        ));
    }
    for (port, (ja3s, ja4s)) in &ours_sent {
        report.push(format!(
            "port {port}: sent ja3s {ja3s} (tshark {:?}), ja4s {ja4s} (ja4plus {:?})",
            tshark_ja3s.get(port),
            ja4plus_s.get(port)
        ));
    }
    let report = report.join("\n");
    eprintln!("{report}");
    for (port, (ja3, ja4)) in &ours {
        assert_eq!(tshark_ja3.get(port), Some(ja3), "JA3 differs:\n{report}");
        assert_eq!(ja4plus.get(port), Some(ja4), "JA4 differs:\n{report}");
    }
    for (port, (ja3s, ja4s)) in &ours_sent {
        assert_eq!(tshark_ja3s.get(port), Some(ja3s), "JA3S differs:\n{report}");
        assert_eq!(ja4plus_s.get(port), Some(ja4s), "JA4S differs:\n{report}");
    }
    // Seven clients, and they are not all alike.
    let distinct: std::collections::BTreeSet<&String> = ours.values().map(|(j, _)| j).collect();
    assert!(distinct.len() >= 4, "{report}");
}
