//! OSINT lookups in `latrine analyze`: VirusTotal, AbuseIPDB and AlienVault
//! OTX, played by HTTP servers on loopback that answer as the documented
//! APIs do (success, not found, 429 with `Retry-After`, 401, a timeout,
//! malformed JSON), and count every request they get. The real binary runs
//! over spools written by the listener's own spool writer (to choose client
//! addresses); the rate limits are checked through the library over a
//! stubbed clock, without waiting for minutes.

mod analyze_common;

use analyze_common::*;
use base64::Engine;
use latrine::analyze::osint::clock::Clock;
use latrine::analyze::osint::settings::{self, CommandLine, OsintConfig};
use latrine::analyze::osint::{Indicators, Osint, Progress};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

// Keys whose every 6-character piece is unlike anything else in the output,
// so that a key cut in pieces (a hex dump of 16 bytes a row) is found too.
const VT_KEY: &str = "vtQ7xZ2kP9mW4rT8sY1uN6";
const ABUSE_KEY: &str = "abQ3jH8vL5cX2nB7fD9gK4";
const OTX_KEY: &str = "otQ5wE1rT7yU3iO9pA2sD6";
const KEYS: [&str; 3] = [VT_KEY, ABUSE_KEY, OTX_KEY];

// ---------------------------------------------------------------------------
// A fake API: a real HTTP/1.1 server on loopback.

#[derive(Debug, Clone)]
struct Request {
    path: String,
    query: String,
    /// Names in lower case.
    headers: HashMap<String, String>,
}

enum Reply {
    Answer {
        status: u16,
        body: String,
        headers: Vec<(&'static str, String)>,
    },
    /// Read the request, answer nothing for this long, then close.
    Hang(Duration),
}

fn answer(status: u16, body: impl Into<String>) -> Reply {
    Reply::Answer {
        status,
        body: body.into(),
        headers: Vec::new(),
    }
}

fn answer_json(status: u16, body: Value) -> Reply {
    answer(status, body.to_string())
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

struct FakeApi {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeApi {
    /// `handler` gets the request and how many times the same path and
    /// query were asked before.
    fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = Arc::clone(&seen);
                let handler = Arc::clone(&handler);
                std::thread::spawn(move || serve(stream, &seen, &*handler));
            }
        });
        FakeApi { url, requests }
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, seen: &Mutex<Vec<Request>>, handler: &Handler) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let request = Request {
        path: path.to_string(),
        query: query.to_string(),
        headers,
    };
    let before = {
        let mut seen = seen.lock().unwrap();
        let n = seen
            .iter()
            .filter(|r| r.path == request.path && r.query == request.query)
            .count();
        seen.push(request.clone());
        n
    };
    match handler(&request, before) {
        Reply::Hang(d) => std::thread::sleep(d),
        Reply::Answer {
            status,
            body,
            headers,
        } => {
            let reason = match status {
                200 => "OK",
                401 => "Unauthorized",
                404 => "Not Found",
                429 => "Too Many Requests",
                500 => "Internal Server Error",
                _ => "Other",
            };
            let mut out = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&body);
            let _ = stream.write_all(out.as_bytes());
        }
    }
}

// ---------------------------------------------------------------------------
// Spools, runs and checks.

const IP1: &str = "89.160.20.112";
const IP2: &str = "2001:480::1";
const IP3: &str = "216.160.83.57";
const P1: &[u8] = b"MZ\x90\x00\x03 a fake dropper, seen three times";
const P2: &[u8] = b"%PDF-1.4 a fake invoice";
const P3: &[u8] = b"PK\x03\x04 a zip VirusTotal never saw";

/// A message with `payload` attached (base64, so stored byte for byte).
fn with_attachment(name: &str, payload: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
    format!(
        "From: a@sender.example\r\nTo: x@victim.example\r\nSubject: {name}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
         --b\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
    )
    .into_bytes()
}

/// IP1: three sessions, each with P1; IP2: two sessions, with P2 and P3;
/// IP3 and 127.0.0.1: one session each, no message.
fn spool(root: &Path) -> PathBuf {
    let spool = root.join("spool");
    let w = Writer::open(&spool, "osint-sensor");
    let one = |name: &str, payload: &[u8]| with_attachment(name, payload);
    let (m1, m2, m3) = (
        one("invoice.exe", P1),
        one("invoice.pdf", P2),
        one("photos.zip", P3),
    );
    let msg = |body: &[u8]| -> Vec<u8> { body.to_vec() };
    for body in [&m1, &m1, &m1] {
        let b = msg(body);
        w.session(
            IP1,
            40000,
            &[Msg {
                from: "a@sender.example",
                rcpt: &["x@victim.example"],
                body: &b,
            }],
        );
    }
    for body in [&m2, &m3] {
        w.session(
            IP2,
            40001,
            &[Msg {
                from: "a@sender.example",
                rcpt: &["x@victim.example"],
                body,
            }],
        );
    }
    w.session(IP3, 40002, &[]);
    w.session("127.0.0.1", 40003, &[]);
    spool
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            out.insert(
                entry.path().to_path_buf(),
                std::fs::read(entry.path()).unwrap(),
            );
        }
    }
    out
}

/// No key in the output streams, nor in any file under `dirs`.
fn assert_no_key(run: &std::process::Output, dirs: &[&Path]) {
    let mut texts: Vec<(String, Vec<u8>)> = vec![
        ("stdout".into(), run.stdout.clone()),
        ("stderr".into(), run.stderr.clone()),
    ];
    for dir in dirs {
        for (path, bytes) in files(dir) {
            texts.push((path.display().to_string(), bytes));
        }
    }
    assert!(dirs.is_empty() || texts.len() > 2, "nothing to check");
    for (name, bytes) in &texts {
        let text = String::from_utf8_lossy(bytes);
        for key in KEYS {
            for piece in key.as_bytes().windows(6) {
                let piece = std::str::from_utf8(piece).unwrap();
                assert!(
                    !text.contains(piece),
                    "{piece:?} of a key in {name}:\n{text}"
                );
            }
        }
    }
}

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let all: Vec<&str> = std::iter::once("analyze")
        .chain(args.iter().copied())
        .collect();
    latrine_with_env(&all, env, Duration::from_secs(60))
}

fn ok(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn report(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

fn service<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["provenance"]["osint"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == name)
        .unwrap()
}

// ---------------------------------------------------------------------------
// The three APIs, answering as documented.

fn vt_file(sha: &str, stats: [u64; 4], name: &str, kind: &str, label: Option<&str>) -> Value {
    let mut attributes = json!({
        "type_description": kind,
        "meaningful_name": name,
        "names": [name],
        "first_submission_date": 1_700_000_000,
        "last_analysis_date": 1_760_000_000,
        "last_analysis_stats": {
            "malicious": stats[0], "suspicious": stats[1], "undetected": stats[2],
            "harmless": stats[3], "type-unsupported": 4, "timeout": 0,
            "confirmed-timeout": 0, "failure": 0
        },
        "sha256": sha,
    });
    if let Some(label) = label {
        attributes["popular_threat_classification"] = json!({
            "suggested_threat_label": label,
            "popular_threat_category": [{"count": 9, "value": "trojan"}]
        });
    }
    json!({"data": {"type": "file", "id": sha,
        "links": {"self": format!("https://www.virustotal.com/api/v3/files/{sha}")},
        "attributes": attributes}})
}

fn vt_error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

fn virustotal() -> FakeApi {
    let (p1, p2) = (sha256_hex(P1), sha256_hex(P2));
    FakeApi::start(move |r, _| {
        if r.headers.get("x-apikey").map(String::as_str) != Some(VT_KEY) {
            return answer_json(401, vt_error("WrongCredentialsError", "Wrong API key"));
        }
        let sha = r.path.strip_prefix("/api/v3/files/").unwrap_or("");
        if sha == p1 {
            let body = vt_file(
                sha,
                [12, 1, 50, 3],
                "invoice.exe",
                "Win32 EXE",
                Some("trojan.agent/tesla"),
            );
            answer_json(200, body)
        } else if sha == p2 {
            answer_json(200, vt_file(sha, [0, 0, 60, 0], "invoice.pdf", "PDF", None))
        } else {
            let message = format!("File \"{sha}\" not found");
            answer_json(404, vt_error("NotFoundError", &message))
        }
    })
}

fn abuse_data(ip: &str) -> Value {
    match ip {
        IP1 => json!({"ipAddress": ip, "isPublic": true, "ipVersion": 4, "isWhitelisted": false,
            "abuseConfidenceScore": 87, "countryCode": "SE",
            "usageType": "Data Center/Web Hosting/Transit", "isp": "Bredband2 AB",
            "domain": "bredband2.com", "hostnames": [], "isTor": false, "totalReports": 41,
            "numDistinctUsers": 17, "lastReportedAt": "2026-11-26T10:00:00+00:00"}),
        IP2 => json!({"ipAddress": ip, "isPublic": true, "ipVersion": 6, "isWhitelisted": null,
            "abuseConfidenceScore": 0, "countryCode": "US", "usageType": null, "isp": "Example Net",
            "domain": null, "hostnames": [], "isTor": false, "totalReports": 0,
            "numDistinctUsers": 0, "lastReportedAt": null}),
        _ => json!({"ipAddress": ip, "isPublic": true, "ipVersion": 4, "isWhitelisted": false,
            "abuseConfidenceScore": 100, "countryCode": "US", "usageType": "Reserved",
            "isp": "Tor exit", "domain": "tor.example", "hostnames": [], "isTor": true,
            "totalReports": 900, "numDistinctUsers": 120,
            "lastReportedAt": "2026-11-27T01:02:03+00:00"}),
    }
}

/// The address asked about, from `ipAddress=` (percent-decoded colons).
fn asked_ip(r: &Request) -> String {
    r.query
        .split('&')
        .find_map(|p| p.strip_prefix("ipAddress="))
        .unwrap_or("")
        .replace("%3A", ":")
}

fn abuseipdb() -> FakeApi {
    FakeApi::start(|r, _| {
        if r.headers.get("key").map(String::as_str) != Some(ABUSE_KEY) {
            return answer_json(
                401,
                json!({"errors": [{"detail": "Authentication failed.", "status": 401}]}),
            );
        }
        assert_eq!(r.path, "/api/v2/check");
        assert_eq!(r.headers["accept"], "application/json");
        answer_json(200, json!({"data": abuse_data(&asked_ip(r))}))
    })
}

fn otx_general(indicator: &str, pulses: &[&str]) -> Value {
    let listed: Vec<Value> = pulses
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"id": format!("p{i}"), "name": name, "tags": ["spam"]}))
        .collect();
    json!({"indicator": indicator, "reputation": 0, "sections": ["general", "geo"],
        "pulse_info": {"count": pulses.len(), "pulses": listed, "references": [], "related": {}}})
}

fn otx() -> FakeApi {
    let p1 = sha256_hex(P1);
    FakeApi::start(move |r, _| {
        if r.headers.get("x-otx-api-key").map(String::as_str) != Some(OTX_KEY) {
            return answer_json(403, json!({"detail": "Authentication required"}));
        }
        let parts: Vec<&str> = r.path.split('/').collect();
        let (section, indicator) = (parts[4], parts[5]);
        assert_eq!(parts.last(), Some(&"general"), "{}", r.path);
        let pulses: &[&str] = match (section, indicator) {
            ("file", i) if i == p1 => &["Dropper campaign", "Invoice lures"],
            ("IPv4", IP1) => &["SMTP brute force", "Spam senders", "Botnet C2"],
            ("IPv6", IP2) => &["IPv6 spam"],
            ("file" | "IPv4", _) => &[],
            other => panic!("unexpected OTX request {other:?}"),
        };
        answer_json(200, otx_general(indicator, pulses))
    })
}

// ---------------------------------------------------------------------------

#[test]
fn lookups_fill_the_reports_then_come_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path());
    let before = files(&spool);
    let (vt, abuse, otx) = (virustotal(), abuseipdb(), otx());
    let xdg = dir.path().join("xdg");
    let cache = xdg.join("latrine/osint");
    // Keys and URLs from both places: the file and the environment.
    let config = dir.path().join("latrine.toml");
    std::fs::write(
        &config,
        format!(
            "[analyze.osint]\ntimeout_secs = 10\n[analyze.osint.virustotal]\nkey = \"{VT_KEY}\"\n\
             [analyze.osint.abuseipdb]\nurl = \"{}/\"\n",
            abuse.url
        ),
    )
    .unwrap();
    let env = [
        ("LATRINE_VT_URL", vt.url.as_str()),
        ("LATRINE_ABUSEIPDB_KEY", ABUSE_KEY),
        ("LATRINE_OTX_KEY", OTX_KEY),
        ("LATRINE_OTX_URL", otx.url.as_str()),
        ("XDG_CACHE_HOME", xdg.to_str().unwrap()),
    ];
    let out = dir.path().join("out");
    let (spool_s, out_s, config_s) = (
        spool.to_str().unwrap(),
        out.to_str().unwrap(),
        config.to_str().unwrap(),
    );
    let args = ["--no-geoip", spool_s, "--out", out_s, "--config", config_s];
    let first = ok(run(&args, &env));
    let (p1, p2, p3) = (sha256_hex(P1), sha256_hex(P2), sha256_hex(P3));

    // Each distinct indicator once, the most seen first; nothing about
    // 127.0.0.1.
    let vt_asked: Vec<String> = vt.requests().iter().map(|r| r.path.clone()).collect();
    let mut rest = [p2.clone(), p3.clone()];
    rest.sort();
    assert_eq!(
        vt_asked,
        [&p1, &rest[0], &rest[1]]
            .iter()
            .map(|s| format!("/api/v3/files/{s}"))
            .collect::<Vec<_>>()
    );
    let abuse_asked: Vec<String> = abuse.requests().iter().map(asked_ip).collect();
    assert_eq!(abuse_asked, [IP1, IP2, IP3]);
    assert!(
        abuse.requests()[1]
            .query
            .contains("ipAddress=2001%3A480%3A%3A1&maxAgeInDays=90"),
        "{:?}",
        abuse.requests()[1]
    );
    let otx_asked: Vec<String> = otx.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(otx_asked.len(), 6, "{otx_asked:?}");
    assert_eq!(
        otx_asked[0],
        format!("/api/v1/indicators/file/{p1}/general")
    );
    assert_eq!(
        otx_asked[3..],
        [
            format!("/api/v1/indicators/IPv4/{IP1}/general"),
            format!("/api/v1/indicators/IPv6/{IP2}/general"),
            format!("/api/v1/indicators/IPv4/{IP3}/general"),
        ]
    );

    // The columns.
    let attachments = csv_rows(&out.join("attachments.csv"));
    assert_eq!(attachments.len(), 3);
    let vt_columns = [
        "count",
        "vt_status",
        "vt_malicious",
        "vt_suspicious",
        "vt_undetected",
        "vt_harmless",
        "vt_total",
        "vt_meaningful_name",
        "vt_type_description",
        "vt_first_submission",
        "vt_threat_label",
        "vt_permalink",
        "otx_status",
        "otx_pulses",
        "otx_top_pulses",
    ];
    let permalink = format!("https://www.virustotal.com/gui/file/{p1}");
    assert_eq!(
        pick(row(&attachments, "sha256", &p1), &vt_columns),
        pairs(&[
            ("count", "3"),
            ("vt_status", "ok"),
            ("vt_malicious", "12"),
            ("vt_suspicious", "1"),
            ("vt_undetected", "50"),
            ("vt_harmless", "3"),
            ("vt_total", "70"),
            ("vt_meaningful_name", "invoice.exe"),
            ("vt_type_description", "Win32 EXE"),
            ("vt_first_submission", "2023-11-14T22:13:20.000000Z"),
            ("vt_threat_label", "trojan.agent/tesla"),
            ("vt_permalink", &permalink),
            ("otx_status", "ok"),
            ("otx_pulses", "2"),
            ("otx_top_pulses", r#"["Dropper campaign","Invoice lures"]"#),
        ])
    );
    let p2_row = row(&attachments, "sha256", &p2);
    assert_eq!(
        pick(
            p2_row,
            &["vt_status", "vt_malicious", "vt_threat_label", "otx_pulses"]
        ),
        pairs(&[
            ("vt_status", "ok"),
            ("vt_malicious", "0"),
            ("vt_threat_label", ""),
            ("otx_pulses", "0"),
        ])
    );
    assert_eq!(
        pick(
            row(&attachments, "sha256", &p3),
            &[
                "vt_status",
                "vt_malicious",
                "vt_total",
                "vt_permalink",
                "otx_status"
            ]
        ),
        pairs(&[
            ("vt_status", "not found"),
            ("vt_malicious", ""),
            ("vt_total", ""),
            ("vt_permalink", ""),
            ("otx_status", "ok"),
        ])
    );
    let clients = csv_rows(&out.join("clients.csv"));
    let abuse_columns = [
        "sessions",
        "abuseipdb_status",
        "abuseipdb_score",
        "abuseipdb_country",
        "abuseipdb_usage_type",
        "abuseipdb_isp",
        "abuseipdb_domain",
        "abuseipdb_reports",
        "abuseipdb_reporters",
        "abuseipdb_last_reported",
        "abuseipdb_tor",
        "otx_status",
        "otx_pulses",
        "otx_top_pulses",
    ];
    assert_eq!(
        pick(row(&clients, "ip", IP1), &abuse_columns),
        pairs(&[
            ("sessions", "3"),
            ("abuseipdb_status", "ok"),
            ("abuseipdb_score", "87"),
            ("abuseipdb_country", "SE"),
            ("abuseipdb_usage_type", "Data Center/Web Hosting/Transit"),
            ("abuseipdb_isp", "Bredband2 AB"),
            ("abuseipdb_domain", "bredband2.com"),
            ("abuseipdb_reports", "41"),
            ("abuseipdb_reporters", "17"),
            ("abuseipdb_last_reported", "2026-11-26T10:00:00+00:00"),
            ("abuseipdb_tor", "false"),
            ("otx_status", "ok"),
            ("otx_pulses", "3"),
            (
                "otx_top_pulses",
                r#"["SMTP brute force","Spam senders","Botnet C2"]"#
            ),
        ])
    );
    assert_eq!(
        pick(
            row(&clients, "ip", IP2),
            &[
                "abuseipdb_score",
                "abuseipdb_usage_type",
                "abuseipdb_last_reported",
                "otx_pulses"
            ]
        ),
        pairs(&[
            ("abuseipdb_score", "0"),
            ("abuseipdb_usage_type", ""),
            ("abuseipdb_last_reported", ""),
            ("otx_pulses", "1"),
        ])
    );
    assert_eq!(row(&clients, "ip", IP3)["abuseipdb_tor"], "true");
    assert_eq!(
        pick(
            row(&clients, "ip", "127.0.0.1"),
            &["abuseipdb_status", "abuseipdb_score", "otx_status"]
        ),
        pairs(&[
            ("abuseipdb_status", "skipped: not a public address"),
            ("abuseipdb_score", ""),
            ("otx_status", "skipped: not a public address"),
        ])
    );

    // report.json: each lookup with its service, time, status and source.
    let r1 = report(&out);
    let lookups = r1["lookups"].as_array().unwrap();
    assert_eq!(lookups.len(), 3 + 4 + 7);
    for l in lookups {
        if l["status"] == "skipped: not a public address" {
            assert_eq!(
                (&l["http_status"], &l["requests"]),
                (&Value::Null, &json!(0))
            );
            continue;
        }
        assert_eq!(l["from_cache"], false, "{l}");
        assert_eq!(l["requests"], 1, "{l}");
        assert!(l["queried_at"].as_str().unwrap().ends_with('Z'), "{l}");
        let want = if l["status"] == "not found" { 404 } else { 200 };
        assert_eq!(l["http_status"], want, "{l}");
    }
    let vt_report = service(&r1, "virustotal");
    assert_eq!(vt_report["status"], "on");
    assert_eq!(vt_report["key_source"], "config file");
    assert_eq!(vt_report["url"], vt.url.as_str());
    assert_eq!(
        (&vt_report["per_minute"], &vt_report["per_day"]),
        (&json!(4), &json!(500))
    );
    assert_eq!(
        (
            &vt_report["requests"],
            &vt_report["ok"],
            &vt_report["not_found"]
        ),
        (&json!(3), &json!(2), &json!(1))
    );
    assert_eq!(
        service(&r1, "abuseipdb")["key_source"],
        "LATRINE_ABUSEIPDB_KEY"
    );
    assert_eq!(
        service(&r1, "abuseipdb")["skipped"],
        json!({"not a public address": 1})
    );
    assert_eq!(
        r1["provenance"]["osint"]["cache_dir"],
        cache.to_str().unwrap()
    );
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.contains(
            "\nvirustotal: 3 lookups, 0 from the cache, 3 requests: 2 ok, 1 not found, 0 errors\n"
        ),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(!stderr.contains("DEBUG"), "{stderr}");
    assert!(
        stderr.contains("latrine analyze: virustotal: 3 lookups to make; 500 left today\n"),
        "{stderr}"
    );
    assert!(cache.join("virustotal").is_dir());
    assert_no_key(&first, &[&out, &cache]);
    assert_eq!(files(&spool), before, "the spool was changed");

    // Second run: not one request, the same columns.
    let attachments_csv = std::fs::read(out.join("attachments.csv")).unwrap();
    let clients_csv = std::fs::read(out.join("clients.csv")).unwrap();
    let counts = (vt.count(), abuse.count(), otx.count());
    assert_eq!(counts, (3, 3, 6));
    let second = ok(run(&args, &env));
    assert_eq!((vt.count(), abuse.count(), otx.count()), counts);
    assert_eq!(
        std::fs::read(out.join("attachments.csv")).unwrap(),
        attachments_csv
    );
    assert_eq!(std::fs::read(out.join("clients.csv")).unwrap(), clients_csv);
    let r2 = report(&out);
    for (a, b) in r1["lookups"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r2["lookups"].as_array().unwrap())
    {
        if a["requests"] == 1 {
            assert_eq!(b["from_cache"], true, "{b}");
            assert_eq!(b["requests"], 0, "{b}");
            assert_eq!(a["queried_at"], b["queried_at"]);
            assert_eq!(a["http_status"], b["http_status"]);
        }
    }
    assert_eq!(service(&r2, "otx")["from_cache"], 6);
    assert_no_key(&second, &[&out, &cache]);

    // --refresh asks again.
    ok(run(&[&args[..], &["--refresh"]].concat(), &env));
    assert_eq!((vt.count(), abuse.count(), otx.count()), (6, 6, 12));

    // --offline: nothing sent; answers from the cache only.
    let offline = ok(run(&[&args[..], &["--offline"]].concat(), &env));
    let r = report(&out);
    assert_eq!(service(&r, "virustotal")["status"], "offline");
    assert_eq!(service(&r, "virustotal")["from_cache"], 3);
    assert_eq!(
        row(&csv_rows(&out.join("attachments.csv")), "sha256", &p1)["vt_malicious"],
        "12"
    );
    let elsewhere = dir.path().join("empty-cache");
    let elsewhere_s = elsewhere.to_str().unwrap();
    ok(run(
        &[&args[..], &["--offline", "--osint-cache", elsewhere_s]].concat(),
        &env,
    ));
    assert_eq!(
        row(&csv_rows(&out.join("attachments.csv")), "sha256", &p1)["vt_status"],
        "skipped: offline"
    );
    assert_eq!((vt.count(), abuse.count(), otx.count()), (6, 6, 12));
    assert_no_key(&offline, &[&out, &cache]);

    // No key: every service off, and the report says so; no cache made.
    let bare_xdg = dir.path().join("bare-xdg");
    let bare = ok(run(
        &["--no-geoip", spool_s, "--out", out_s],
        &[("XDG_CACHE_HOME", bare_xdg.to_str().unwrap())],
    ));
    let stdout = String::from_utf8_lossy(&bare.stdout);
    assert!(
        stdout.contains(
            "virustotal: off: no key (set LATRINE_VT_KEY, or key in [analyze.osint.virustotal])\n"
        ),
        "{stdout}"
    );
    let r = report(&out);
    for name in ["virustotal", "abuseipdb", "otx"] {
        assert_eq!(service(&r, name)["status"], "off");
    }
    assert_eq!(r["lookups"], json!([]));
    assert_eq!(
        row(&csv_rows(&out.join("attachments.csv")), "sha256", &p1)["vt_status"],
        "off"
    );
    assert!(!bare_xdg.exists());
    assert_eq!((vt.count(), abuse.count(), otx.count()), (6, 6, 12));

    // A broken config file: the error names the place, never the key.
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        format!("[analyze.osint.virustotal]\nkey = {VT_KEY}\n"),
    )
    .unwrap();
    let refused = run(
        &[
            "--no-geoip",
            spool_s,
            "--out",
            out_s,
            "--config",
            broken.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("broken.toml: ") && stderr.contains("(line 2)"),
        "{stderr}"
    );
    assert_no_key(&refused, &[]);

    // The cache is never put in the spool.
    let inside = spool.join("osint-sensor/cache");
    let refused = run(
        &[&args[..], &["--osint-cache", inside.to_str().unwrap()]].concat(),
        &env,
    );
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is inside the spool"), "{stderr}");
    assert_no_key(&refused, &[]);
    assert_eq!(files(&spool), before, "the spool was changed");
}

#[test]
fn failures_are_recorded_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path());
    let (p1, p2, p3) = (sha256_hex(P1), sha256_hex(P2), sha256_hex(P3));
    // VirusTotal: a 429 with Retry-After before the answer, a body that is
    // not JSON, a 500.
    let (vt_p1, vt_p2) = (p1.clone(), p2.clone());
    let vt = FakeApi::start(move |r, before| {
        let sha = r.path.strip_prefix("/api/v3/files/").unwrap_or("");
        if sha == vt_p1 && before == 0 {
            let body = vt_error("QuotaExceededError", "Quota exceeded").to_string();
            Reply::Answer {
                status: 429,
                body,
                headers: vec![("Retry-After", "1".into())],
            }
        } else if sha == vt_p1 {
            answer_json(200, vt_file(sha, [3, 0, 60, 0], "x.exe", "Win32 EXE", None))
        } else if sha == vt_p2 {
            answer(200, "<html>Bad gateway</html>")
        } else {
            answer(500, "")
        }
    });
    // AbuseIPDB: no answer in time, then the day's last check.
    let abuse = FakeApi::start(|r, _| match asked_ip(r).as_str() {
        IP1 => Reply::Hang(Duration::from_secs(3)),
        ip => Reply::Answer {
            status: 200,
            body: json!({"data": abuse_data(ip)}).to_string(),
            headers: vec![
                ("X-RateLimit-Limit", "1000".into()),
                ("X-RateLimit-Remaining", "0".into()),
            ],
        },
    });
    // OTX: the key is refused, and the error repeats it.
    let otx = FakeApi::start(|r, _| {
        let key = r.headers.get("x-otx-api-key").cloned().unwrap_or_default();
        answer_json(401, json!({"detail": format!("Invalid API key {key}")}))
    });
    let xdg = dir.path().join("xdg");
    let cache = xdg.join("latrine/osint");
    let config = dir.path().join("latrine.toml");
    std::fs::write(&config, "[analyze.osint]\ntimeout_secs = 1\n").unwrap();
    let env = [
        ("LATRINE_VT_KEY", VT_KEY),
        ("LATRINE_VT_URL", vt.url.as_str()),
        ("LATRINE_ABUSEIPDB_KEY", ABUSE_KEY),
        ("LATRINE_ABUSEIPDB_URL", abuse.url.as_str()),
        ("LATRINE_OTX_KEY", OTX_KEY),
        ("LATRINE_OTX_URL", otx.url.as_str()),
        ("XDG_CACHE_HOME", xdg.to_str().unwrap()),
        // Whatever the libraries log, keys included if they did.
        ("RUST_LOG", "trace"),
    ];
    let out = dir.path().join("out");
    let args = [
        "--no-geoip",
        spool.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let first = ok(run(&args, &env));
    let log = String::from_utf8_lossy(&first.stderr);
    assert!(
        log.contains("GET http://127.0.0.1:"),
        "no trace from the HTTP client:\n{log}"
    );

    let lookups: BTreeMap<(String, String), Value> = report(&out)["lookups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let key = (
                l["service"].as_str().unwrap().to_string(),
                l["indicator"].as_str().unwrap().to_string(),
            );
            (key, l.clone())
        })
        .collect();
    let get = |service: &str, indicator: &str| {
        let l = &lookups[&(service.to_string(), indicator.to_string())];
        (
            l["status"].as_str().unwrap().to_string(),
            l["http_status"].clone(),
            l["requests"].clone(),
        )
    };
    assert_eq!(get("virustotal", &p1), ("ok".into(), json!(200), json!(2)));
    let (status, http, _) = get("virustotal", &p2);
    assert!(status.starts_with("error: malformed JSON: "), "{status}");
    assert_eq!(http, 200);
    assert_eq!(
        get("virustotal", &p3),
        ("error: HTTP 500".into(), json!(500), json!(1))
    );
    assert_eq!(
        get("abuseipdb", IP1),
        ("error: timeout after 1 s".into(), Value::Null, json!(1))
    );
    assert_eq!(get("abuseipdb", IP2), ("ok".into(), json!(200), json!(1)));
    assert_eq!(
        get("abuseipdb", IP3),
        ("skipped: quota".into(), Value::Null, json!(0))
    );
    assert_eq!(
        get("otx", &p1),
        (
            "error: HTTP 401: key refused: Invalid API key <key>".into(),
            json!(401),
            json!(1)
        )
    );
    for other in [
        &p2,
        &p3,
        &IP1.to_string(),
        &IP2.to_string(),
        &IP3.to_string(),
    ] {
        assert_eq!(get("otx", other).0, "skipped: key refused");
    }
    assert_eq!((vt.count(), abuse.count(), otx.count()), (4, 2, 1));

    // Everything else is there, and the provenance counts the failures.
    let attachments = csv_rows(&out.join("attachments.csv"));
    assert_eq!(attachments.len(), 3);
    assert_eq!(row(&attachments, "sha256", &p1)["vt_malicious"], "3");
    assert_eq!(
        row(&csv_rows(&out.join("clients.csv")), "ip", IP2)["abuseipdb_country"],
        "US"
    );
    assert_eq!(csv_rows(&out.join("sessions.csv")).len(), 7);
    let r = report(&out);
    let vt_report = service(&r, "virustotal");
    assert_eq!(
        (
            &vt_report["requests"],
            &vt_report["errors"],
            &vt_report["retries_after_429"]
        ),
        (&json!(4), &json!(2), &json!(1))
    );
    assert!(vt_report["waited_s"].as_f64().unwrap() >= 1.0);
    assert_eq!(vt_report["error_samples"].as_array().unwrap().len(), 2);
    let abuse_report = service(&r, "abuseipdb");
    assert_eq!(abuse_report["quota_exhausted"], true, "{abuse_report}");
    assert_eq!(
        abuse_report["skipped"],
        json!({"quota": 1, "not a public address": 1})
    );
    assert_eq!(
        service(&r, "otx")["skipped"],
        json!({"key refused": 5, "not a public address": 1})
    );
    assert_no_key(&first, &[&out, &cache]);

    // Again: answers come from the cache, failures are asked again, and the
    // spent AbuseIPDB quota is remembered for the day.
    let second = ok(run(&args, &env));
    assert_eq!((vt.count(), abuse.count(), otx.count()), (6, 2, 2));
    let r = report(&out);
    assert_eq!(service(&r, "virustotal")["from_cache"], 1);
    let abuse_report = service(&r, "abuseipdb");
    assert_eq!(
        (
            &abuse_report["from_cache"],
            &abuse_report["skipped"]["quota"]
        ),
        (&json!(1), &json!(2))
    );
    assert_no_key(&second, &[&out, &cache]);
}

// ---------------------------------------------------------------------------
// Rate limits over a stubbed clock, through the library.

/// A clock that moves only when a lookup waits.
struct StubClock(Mutex<OffsetDateTime>);

impl Clock for StubClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
    fn sleep(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

fn hashes(n: usize, salt: &str) -> Vec<String> {
    (0..n)
        .map(|i| sha256_hex(format!("{salt} {i}").as_bytes()))
        .collect()
}

/// Settings for one service, as `analyze` resolves them.
fn osint_for(config: &str, env: &[(&str, &str)], cache: &Path) -> Osint {
    let config: OsintConfig = toml::from_str(config).unwrap();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cli = CommandLine {
        cache_dir: Some(cache.to_path_buf()),
        ..CommandLine::default()
    };
    let settings = settings::resolve(&config, &|k| env.get(k).cloned(), &cli, &[]).unwrap();
    Osint::new(settings).unwrap()
}

#[test]
fn virustotal_four_a_minute_and_the_daily_quota() {
    let dir = tempfile::tempdir().unwrap();
    let start = time::macros::datetime!(2026-11-27 10:00:00 UTC);
    let clock = Arc::new(StubClock(Mutex::new(start)));
    let at = Arc::new(Mutex::new(Vec::new()));
    let (seen_clock, seen_at) = (Arc::clone(&clock), Arc::clone(&at));
    let vt = FakeApi::start(move |r, _| {
        seen_at.lock().unwrap().push(seen_clock.now());
        let sha = r.path.rsplit('/').next().unwrap().to_string();
        answer_json(200, vt_file(&sha, [1, 0, 0, 0], "f", "Text", None))
    });
    let osint = osint_for(
        "[virustotal]\nper_day = 10\n",
        &[("LATRINE_VT_KEY", VT_KEY), ("LATRINE_VT_URL", &vt.url)],
        &dir.path().join("cache"),
    );
    let indicators = Indicators {
        files: hashes(14, "a"),
        ips: vec![],
    };
    let findings = osint.run(&*clock, &indicators, &Progress::hidden());

    // Ten requests (the day's quota), four a minute, in priority order.
    let offsets: Vec<i64> = at
        .lock()
        .unwrap()
        .iter()
        .map(|t| (*t - start).whole_seconds())
        .collect();
    assert_eq!(offsets, [0, 0, 0, 0, 60, 60, 60, 60, 120, 120]);
    for (i, t) in offsets.iter().enumerate() {
        let in_window = offsets[..=i].iter().filter(|u| t - *u < 60).count();
        assert!(in_window <= 4, "{offsets:?}");
    }
    let asked: Vec<String> = vt
        .requests()
        .iter()
        .map(|r| r.path.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(asked, indicators.files[..10]);
    let statuses: Vec<String> = findings.lookups.iter().map(|l| l.status()).collect();
    assert_eq!(statuses[..10], vec!["ok".to_string(); 10]);
    assert_eq!(statuses[10..], vec!["skipped: quota".to_string(); 4]);
    let report = &findings.services[0];
    assert_eq!((report.requests, report.waited_s), (10, 120.0));
    assert!(report.quota_exhausted);

    // Later the same day, in another run: the quota is still spent.
    clock.sleep(Duration::from_secs(3600));
    let again = osint_for(
        "[virustotal]\nper_day = 10\n",
        &[("LATRINE_VT_KEY", VT_KEY), ("LATRINE_VT_URL", &vt.url)],
        &dir.path().join("cache"),
    );
    let fresh = Indicators {
        files: hashes(3, "b"),
        ips: vec![],
    };
    let findings = again.run(&*clock, &fresh, &Progress::hidden());
    assert_eq!(vt.count(), 10);
    assert!(
        findings
            .lookups
            .iter()
            .all(|l| l.status() == "skipped: quota")
    );
    // The next UTC day brings a new quota.
    clock.sleep(Duration::from_secs(14 * 3600));
    let findings = again.run(&*clock, &fresh, &Progress::hidden());
    assert_eq!(vt.count(), 13);
    assert!(findings.lookups.iter().all(|l| l.status() == "ok"));
}

#[test]
fn otx_waits_as_retry_after_says_and_stops_at_a_long_one() {
    let dir = tempfile::tempdir().unwrap();
    let start = time::macros::datetime!(2026-11-27 10:00:00 UTC);
    let clock = Arc::new(StubClock(Mutex::new(start)));
    let at = Arc::new(Mutex::new(Vec::new()));
    let (seen_clock, seen_at) = (Arc::clone(&clock), Arc::clone(&at));
    let files = hashes(5, "c");
    let (first, third) = (files[0].clone(), files[2].clone());
    let otx = FakeApi::start(move |r, before| {
        seen_at.lock().unwrap().push(seen_clock.now());
        let sha = r.path.split('/').nth(5).unwrap().to_string();
        let retry = |after: &str| Reply::Answer {
            status: 429,
            body: String::new(),
            headers: vec![("Retry-After", after.into())],
        };
        if sha == first && before == 0 {
            retry("120")
        } else if sha == third {
            // A day's quota: longer than any wait.
            retry("Sat, 28 Nov 2026 00:00:00 GMT")
        } else {
            answer_json(200, otx_general(&sha, &["p"]))
        }
    });
    let osint = osint_for(
        "",
        &[("LATRINE_OTX_KEY", OTX_KEY), ("LATRINE_OTX_URL", &otx.url)],
        &dir.path().join("cache"),
    );
    let indicators = Indicators {
        files: files.clone(),
        ips: vec!["198.51.100.7".into()],
    };
    let findings = osint.run(&*clock, &indicators, &Progress::hidden());
    let offsets: Vec<i64> = at
        .lock()
        .unwrap()
        .iter()
        .map(|t| (*t - start).whole_seconds())
        .collect();
    assert_eq!(offsets, [0, 120, 120, 120]);
    let statuses: Vec<(String, u32)> = findings
        .lookups
        .iter()
        .map(|l| (l.status(), l.requests))
        .collect();
    let s = |text: &str, n: u32| (text.to_string(), n);
    assert_eq!(
        statuses,
        [
            s("ok", 2),
            s("ok", 1),
            s("skipped: quota", 1),
            s("skipped: quota", 0),
            s("skipped: quota", 0),
            s("skipped: not a public address", 0),
        ]
    );
    assert_eq!(findings.lookups[2].http_status, Some(429));
    let report = &findings.services[2];
    assert_eq!((report.retries_after_429, report.waited_s), (2, 120.0));
    assert!(report.quota_exhausted);
}
