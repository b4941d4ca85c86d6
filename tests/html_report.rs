//! The HTML report of `latrine analyze` (DIR/html/), opened in a real
//! headless Chromium driven by selenium (tests/html/check_report.py): every
//! page loads without a console error, the dashboard shows report.json's
//! figures, tables sort and filter, and the view of a spam full of remote
//! content makes no network request (a recording proxy on loopback). Also,
//! without a browser: a CSP on every page, nothing referenced outside DIR,
//! byte-identical reruns and `--no-html`.
//!
//! The spool: sessions generated over real SMTP by scripts/gen_spool.py,
//! the spam (tests/html/spam_remote_content.eml) replayed by it, and a few
//! sessions from addresses in MaxMind's test databases (countries, ASNs),
//! some of them started over the last 60 hours.
//!
//! Needs Debian's chromium and chromium-driver and a Python venv with
//! selenium: `$LATRINE_VENV`, or target/venv (.ci/run makes it). Under
//! CI=true a missing piece fails the test. With `LATRINE_SCREENSHOT=FILE`
//! the dashboard's screenshot is written there (README's picture).

mod analyze_common;
mod support;

use analyze_common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const SPAM_SUBJECT: &str = "<img src=\"http://subject.tracker.example/s.gif\"> You won!";

/// The venv's python with selenium, chromium and chromedriver, or None
/// (a skip, which under CI=true is a failure).
fn browser_tools() -> Option<PathBuf> {
    let venv = std::env::var_os("LATRINE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/venv"));
    let python = venv.join("bin/python");
    let selenium = Command::new(&python)
        .args(["-c", "import selenium"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let missing = if !selenium {
        Some(format!(
            "a venv with selenium at {} (set LATRINE_VENV; .ci/run makes target/venv)",
            venv.display()
        ))
    } else if !support::require_tool("chromium") || !support::require_tool("chromedriver") {
        return None;
    } else {
        None
    };
    if let Some(what) = missing {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{what} is required under CI=true but is missing");
        }
        eprintln!("skipping: no {what}");
        return None;
    }
    Some(python)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

fn gen_spool(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(root().join("scripts/gen_spool.py"))
        .args(["--latrine", env!("CARGO_BIN_EXE_latrine")])
        .args(args)
        .output()
        .expect("run gen_spool.py");
    assert!(
        out.status.success(),
        "gen_spool.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Three spools: generated, the spam, and sessions from known countries.
fn spools(dir: &Path) -> Vec<String> {
    let generated = dir.join("generated");
    let sent = gen_spool(&[
        "--spool",
        generated.to_str().unwrap(),
        "--sessions",
        "200",
        "--parallel",
        "2",
        "--seed",
        "html-test",
        "--clients",
        "20",
    ]);
    let sent: serde_json::Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(sent["failures"], 0);
    let spam = dir.join("spam");
    gen_spool(&[
        "--spool",
        spam.to_str().unwrap(),
        "--sensor",
        "spam-sensor",
        "--replay",
        root()
            .join("tests/html/spam_remote_content.eml")
            .to_str()
            .unwrap(),
    ]);
    let geo = dir.join("geo");
    let w = Writer::open(&geo, "geo-sensor");
    let hostile = "From: <x@example.org>\r\nSubject: <script src=\"http://subject.tracker.example/x.js\"></script>\r\n\r\nhello\r\n";
    for (i, ip) in [
        "89.160.20.112",
        "89.160.20.128",
        "81.2.69.142",
        "216.160.83.56",
        "2.125.160.216",
        "2001:480::1",
    ]
    .iter()
    .enumerate()
    {
        for _ in 0..=i {
            w.session(
                ip,
                1000 + i as u16,
                &[Msg {
                    from: "<b onmouseover=alert(1)>@example.org",
                    rcpt: &["victim@honeypot.example"],
                    body: hostile.as_bytes(),
                }],
            );
        }
    }
    // Sessions over the last 60 hours (a timeline with some shape).
    let history = dir.join("history");
    let w = Writer::open(&history, "history-sensor");
    let now = latrine::timestamp::now();
    for hour in 0..60i64 {
        let ip = ["89.160.20.112", "81.2.69.142", "216.160.83.56"][hour as usize % 3];
        for _ in 0..(hour * 7 % 11 + 1) {
            let connect: latrine::events::Event = serde_json::from_value(serde_json::json!({
                "event": "session.connect",
                "client": {"ip": ip, "port": 2000},
                "server": {"ip": "192.0.2.25", "port": 25},
                "hostname": "mx.example.com",
                "listener": "smtp",
            }))
            .unwrap();
            let at = now - time::Duration::hours(60 - hour);
            let mut s = w.spool.begin(at, ip.into(), connect, None).unwrap();
            s.record(
                serde_json::from_value(serde_json::json!({
                    "event": "smtp.helo", "verb": "EHLO", "name": "scanner.example"
                }))
                .unwrap(),
            )
            .unwrap();
            s.close_and_seal(latrine::events::EndReason::Quit, 2)
                .unwrap();
        }
    }
    [generated, spam, geo, history]
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

fn run_analyze(spools: &[String], out: &Path, extra: &[&str]) {
    let mut args: Vec<&str> = spools.iter().map(String::as_str).collect();
    let city = geoip("GeoLite2-City-Test.mmdb");
    let asn = geoip("GeoLite2-ASN-Test.mmdb");
    args.extend([
        "--out",
        out.to_str().unwrap(),
        "--geoip-city",
        &city,
        "--geoip-asn",
        &asn,
        "-q",
    ]);
    args.extend(extra);
    analyze(&args);
}

#[test]
fn html_report_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let spools = spools(dir.path());
    let out = dir.path().join("out");
    run_analyze(&spools, &out, &[]);
    let html = out.join("html");
    let listing = files(&html);
    assert!(
        listing.contains(&PathBuf::from("index.html")),
        "{listing:?}"
    );
    assert!(!out.join(".html.partial").exists());

    // Every page has the CSP; nothing in the pages or assets points outside
    // DIR (the data files hold attackers' URLs, but only as JSON strings).
    let csp = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';";
    let mut pages = 0;
    for f in &listing {
        let text = std::fs::read_to_string(html.join(f)).unwrap();
        let name = f.to_string_lossy();
        if name.ends_with(".html") {
            pages += 1;
            assert!(text.contains(csp), "{name}: no CSP");
            assert!(!text.contains("<style"), "{name}: inline style");
            assert_eq!(
                text.matches("<script").count(),
                text.matches("<script src=\"").count(),
                "{name}: inline script"
            );
        }
        if !name.starts_with("data/") && !name.starts_with("sessions/") {
            for reference in [
                "src=\"http",
                "href=\"http",
                "url(http",
                "src=\"//",
                "href=\"//",
            ] {
                assert!(!text.contains(reference), "{name}: {reference}");
            }
        }
    }
    assert!(pages >= 11, "{listing:?}");

    // Byte-identical rerun; --no-html writes none.
    let again = dir.path().join("again");
    run_analyze(&spools, &again, &[]);
    assert_eq!(files(&again.join("html")), listing);
    for f in &listing {
        assert!(
            std::fs::read(html.join(f)).unwrap()
                == std::fs::read(again.join("html").join(f)).unwrap(),
            "html/{} differs between two runs",
            f.display()
        );
    }
    let plain = dir.path().join("plain");
    run_analyze(&spools, &plain, &["--no-html"]);
    assert!(plain.join("report.json").exists());
    assert!(!plain.join("html").exists());

    let Some(python) = browser_tools() else {
        return;
    };
    let mut check = Command::new(python);
    check
        .arg(root().join("tests/html/check_report.py"))
        .arg("--out")
        .arg(&out)
        .args(["--spam-subject", SPAM_SUBJECT, "--filter", "mailbox"]);
    if let Some(shot) = std::env::var_os("LATRINE_SCREENSHOT") {
        check.arg("--screenshot").arg(shot);
    }
    let result = check.output().expect("run check_report.py");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success(),
        "check_report.py failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}\n{stderr}");
    eprintln!("{stdout}");
}
