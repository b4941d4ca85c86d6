//! `latrine analyze` on spools written by the real listener (the corpora of
//! `tests/corpus/` replayed with Python's smtplib) and by the listener's own
//! spool writer (to choose client addresses, for GeoIP with MaxMind's test
//! databases): exact counts, hashes and values, and byte-identical reruns.

mod analyze_common;
mod support;

use analyze_common::*;
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The corpus files, relative to the crate root, sorted (as corpus_replay.rs).
fn corpus_files() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("tests/corpus"), &mut files);
    let mut files: Vec<String> = files
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".eml") || (name.starts_with("msg_") && name.ends_with(".txt"))
        })
        .map(|p| {
            p.strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    files
}

/// What the listener stores for a file sent by smtplib after its
/// `_fix_eols` (every CR, LF and CRLF made CRLF; CRLF added at the end).
fn stored_form(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn corpus_through_the_real_listener() {
    if !support::require_tool("python3") {
        return;
    }
    let files = corpus_files();
    assert_eq!(files.len(), 155, "corpus changed?");
    let mut h = support::Honeypot::start(&[]);
    let out = Command::new("python3")
        .arg(root().join("scripts/gen_spool.py"))
        .args(["--port", &h.addr.port().to_string(), "--replay"])
        .args(&files)
        .current_dir(root())
        .output()
        .expect("run gen_spool.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.wait_sealed(files.len());
    assert_eq!(h.terminate(), Some(0));

    // What was sent, computed here and by the script.
    let mut expected: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    let script: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (file, sent) in files.iter().zip(&script) {
        let stored = stored_form(&std::fs::read(root().join(file)).unwrap());
        let sha = sha256_hex(&stored);
        assert_eq!(sent["sha256"], sha.as_str(), "{file}");
        expected.entry(sha).or_insert((stored.len() as u64, 0)).1 += 1;
    }
    assert_eq!(
        expected.len(),
        154,
        "one file of the corpus is another's copy"
    );

    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let spool = h.spool.display().to_string();
    let run = analyze(&[&spool, "--out", reports.to_str().unwrap(), "--no-geoip"]);
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(
        stdout.starts_with("155 sessions (155 with messages) from 1 clients, 1 sensors; "),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n155 messages (154 distinct, 155 accepted, "),
        "{stdout}"
    );
    assert!(
        stdout.contains("geoip-city: disabled: --no-geoip\n"),
        "{stdout}"
    );

    let sessions = csv_rows(&reports.join("sessions.csv"));
    assert_eq!(sessions.len(), 155);
    assert!(sessions.iter().all(|s| s["sensor"] == support::SENSOR
        && s["client_ip"] == "127.0.0.1"
        && s["messages"] == "1"
        && s["recipients"] == "1"
        && s["end_reason"] == "quit"
        && s["helo"] == "replay.example"
        && s["problems"] == "0"));

    // Messages: deduplicated by the sha256 of the .eml.
    let messages = csv_rows(&reports.join("messages.csv"));
    let got: BTreeMap<String, (u64, usize)> = messages
        .iter()
        .map(|m| {
            assert_eq!(m["count"], m["sessions"]);
            assert_eq!(m["mail_from"], "corpus@replay.example");
            (
                m["sha256"].clone(),
                (m["size"].parse().unwrap(), m["count"].parse().unwrap()),
            )
        })
        .collect();
    assert_eq!(got, expected);

    // Attachments: every one the listener extracted, counted per message.
    let mut listed: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut total = 0;
    for (_, m) in h.manifests() {
        let mut seen = BTreeSet::new();
        for a in &m.messages[0].attachments {
            total += 1;
            if seen.insert(a.sha256.clone()) {
                listed.entry(a.sha256.clone()).or_insert((a.size, 0)).1 += 1;
            }
        }
    }
    assert_eq!((total, listed.len()), (177, 91));
    let attachments = csv_rows(&reports.join("attachments.csv"));
    let got: BTreeMap<String, (u64, u64)> = attachments
        .iter()
        .map(|a| {
            (
                a["sha256"].clone(),
                (a["size"].parse().unwrap(), a["count"].parse().unwrap()),
            )
        })
        .collect();
    assert_eq!(got, listed);

    // URLs in text and HTML bodies, attached messages included; not headers.
    let urls = csv_rows(&reports.join("urls.csv"));
    let got: Vec<(String, String, String)> = urls
        .iter()
        .map(|u| (u["url"].clone(), u["domain"].clone(), u["count"].clone()))
        .collect();
    let want = [
        (
            "http://www.zzz.org/mailman/listinfo/ppp",
            "www.zzz.org",
            "2",
        ),
        (
            "http://www.1one1yp1anet.com/dest/sam/graphics/map-arg.htm",
            "www.1one1yp1anet.com",
            "1",
        ),
        (
            "http://www.apple.com/DTDs/PropertyList-1.0.dtd",
            "www.apple.com",
            "1",
        ),
        ("http://www.socal-raves.org/", "www.socal-raves.org", "1"),
    ];
    assert_eq!(
        got,
        want.iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(csv_rows(&reports.join("domains.csv")).len(), 4);

    // Campaigns: the same text in different encodings and headers.
    let campaigns = csv_rows(&reports.join("campaigns.csv"));
    assert_eq!(campaigns.len(), 67);
    let like = row(
        &campaigns,
        "campaign",
        &sha256_hex(b"do you like this message? -me"),
    );
    assert_eq!(
        pick(like, &["count", "distinct_messages", "sample"]),
        pairs(&[
            ("count", "4"),
            ("distinct_messages", "4"),
            ("sample", "do you like this message? -me"),
        ])
    );
    let like_files: BTreeSet<String> = messages
        .iter()
        .filter(|m| m["campaign"] == like["campaign"])
        .map(|m| m["sha256"].clone())
        .collect();
    let want_files: BTreeSet<String> = ["msg_01", "msg_03", "msg_20", "msg_29"]
        .iter()
        .map(|f| {
            sha256_hex(&stored_form(
                &std::fs::read(root().join(format!("tests/corpus/cpython/{f}.txt"))).unwrap(),
            ))
        })
        .collect();
    assert_eq!(like_files, want_files);
    let tortoise = campaigns
        .iter()
        .find(|c| c["sample"].starts_with("the hare and the tortoise a hare one day"))
        .unwrap();
    assert_eq!(
        (
            tortoise["count"].as_str(),
            tortoise["distinct_messages"].as_str()
        ),
        ("13", "13")
    );

    let recipients = csv_rows(&reports.join("recipients.csv"));
    assert_eq!(recipients.len(), 1);
    assert_eq!(
        pick(&recipients[0], &["address", "domain", "count", "sessions"]),
        pairs(&[
            ("address", "victim@honeypot.example"),
            ("domain", "honeypot.example"),
            ("count", "155"),
            ("sessions", "155"),
        ])
    );
    let clients = csv_rows(&reports.join("clients.csv"));
    assert_eq!(clients.len(), 1);
    assert_eq!(
        pick(
            &clients[0],
            &[
                "ip",
                "sessions",
                "messages",
                "recipients",
                "country_iso",
                "asn"
            ]
        ),
        pairs(&[
            ("ip", "127.0.0.1"),
            ("sessions", "155"),
            ("messages", "155"),
            ("recipients", "155"),
            ("country_iso", ""),
            ("asn", ""),
        ])
    );
    assert_eq!(csv_rows(&reports.join("credentials.csv")).len(), 0);
    assert_eq!(csv_rows(&reports.join("errors.csv")).len(), 0);

    // report.json holds the same rows, a summary and the provenance.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["format"], "latrine.report/1");
    assert_eq!(report["provenance"]["latrine"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        report["provenance"]["generated_at"],
        "2027-01-15T08:00:00.000000Z"
    );
    assert_eq!(report["provenance"]["spools"][0]["path"], spool.as_str());
    assert_eq!(report["provenance"]["spools"][0]["sessions"], 155);
    assert_eq!(report["summary"]["totals"]["distinct_messages"], 154);
    assert_eq!(report["summary"]["totals"]["campaigns"], 67);
    assert_eq!(report["summary"]["top_campaigns"][0]["count"], 26);
    for (table, rows) in [
        ("sessions", 155),
        ("messages", 154),
        ("attachments", 91),
        ("urls", 4),
    ] {
        assert_eq!(report[table].as_array().unwrap().len(), rows, "{table}");
    }
    assert_eq!(
        report["messages"][0]["sha256"],
        messages[0]["sha256"].as_str()
    );
}

/// Sessions from addresses chosen in MaxMind's test databases.
fn geo_spool(root: &Path) -> PathBuf {
    let spool = root.join("spool");
    let w = Writer::open(&spool, "geo-sensor");
    let body: &[u8] = b"Subject: hi\r\n\r\nhello\r\n";
    let m = [Msg {
        from: "a@b.example",
        rcpt: &["x@y.example"],
        body,
    }];
    for ip in [
        "89.160.20.112",
        "2.125.160.216",
        "89.160.20.112",
        "216.160.83.57",
        "2001:480::1",
        "1.128.0.1",
        "127.0.0.1",
    ] {
        w.session(ip, 40000, &m);
    }
    spool
}

const GEO_COLUMNS: &[&str] = &[
    "sessions",
    "country_iso",
    "country",
    "continent",
    "eu",
    "city",
    "subdivision",
    "postal",
    "latitude",
    "longitude",
    "accuracy_km",
    "time_zone",
    "asn",
    "as_org",
];

#[test]
fn geo_and_asn_from_the_maxmind_test_databases() {
    let dir = tempfile::tempdir().unwrap();
    let spool = geo_spool(dir.path());
    let out = dir.path().join("out");
    let run = analyze(&[
        spool.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--geoip-city",
        &geoip("GeoLite2-City-Test.mmdb"),
        "--geoip-asn",
        &geoip("GeoLite2-ASN-Test.mmdb"),
    ]);
    let clients = csv_rows(&out.join("clients.csv"));
    let expect = |ip: &str, values: [&str; 14]| {
        let want: Vec<(String, String)> = GEO_COLUMNS
            .iter()
            .zip(values)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(pick(row(&clients, "ip", ip), GEO_COLUMNS), want, "{ip}");
    };
    expect(
        "89.160.20.112",
        [
            "2",
            "SE",
            "Sweden",
            "EU",
            "true",
            "Linköping",
            "Östergötland County",
            "",
            "58.4167",
            "15.6167",
            "76",
            "Europe/Stockholm",
            "29518",
            "Bredband2 AB",
        ],
    );
    expect(
        "2.125.160.216",
        [
            "1",
            "GB",
            "United Kingdom",
            "EU",
            "false",
            "Boxford",
            "England",
            "OX1",
            "51.75",
            "-1.25",
            "100",
            "Europe/London",
            "",
            "",
        ],
    );
    expect(
        "216.160.83.57",
        [
            "1",
            "US",
            "United States",
            "NA",
            "false",
            "Milton",
            "Washington",
            "98354",
            "47.2513",
            "-122.3149",
            "22",
            "America/Los_Angeles",
            "209",
            "",
        ],
    );
    expect(
        "2001:480::1",
        [
            "1",
            "US",
            "United States",
            "NA",
            "false",
            "San Diego",
            "California",
            "92101",
            "32.7203",
            "-117.1552",
            "50",
            "America/Los_Angeles",
            "",
            "",
        ],
    );
    expect(
        "1.128.0.1",
        [
            "1",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "1221",
            "Telstra Pty Ltd",
        ],
    );
    expect(
        "127.0.0.1",
        ["1", "", "", "", "", "", "", "", "", "", "", "", "", ""],
    );
    // Most sessions first, then addresses in numeric order.
    let order: Vec<&str> = clients.iter().map(|c| c["ip"].as_str()).collect();
    assert_eq!(
        order,
        [
            "89.160.20.112",
            "1.128.0.1",
            "2.125.160.216",
            "127.0.0.1",
            "216.160.83.57",
            "2001:480::1"
        ]
    );
    let sessions = csv_rows(&out.join("sessions.csv"));
    let se = sessions
        .iter()
        .find(|s| s["client_ip"] == "89.160.20.112")
        .unwrap();
    assert_eq!(
        pick(se, &["country_iso", "asn", "as_org"]),
        pairs(&[
            ("country_iso", "SE"),
            ("asn", "29518"),
            ("as_org", "Bredband2 AB")
        ])
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let sources = &report["provenance"]["enrichment"];
    for (i, (name, kind)) in [
        ("geoip-city", "GeoLite2-City"),
        ("geoip-asn", "GeoLite2-ASN"),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(sources[i]["name"], name);
        assert_eq!(sources[i]["status"], "loaded");
        assert_eq!(sources[i]["database_type"], kind);
        assert_eq!(sources[i]["build_epoch"], 1770245369);
        assert_eq!(sources[i]["build_date"], "2026-02-04T22:49:29.000000Z");
    }
    let summary = &report["summary"];
    assert_eq!(summary["enrichment_gaps"], serde_json::json!([]));
    assert_eq!(
        summary["top_countries"],
        serde_json::json!([
            {"country_iso": "SE", "country": "Sweden", "sessions": 2, "clients": 1},
            {"country_iso": "US", "country": "United States", "sessions": 2, "clients": 2},
            {"country_iso": "GB", "country": "United Kingdom", "sessions": 1, "clients": 1},
        ])
    );
    assert_eq!(
        summary["top_asns"],
        serde_json::json!([
            {"asn": 29518, "as_org": "Bredband2 AB", "sessions": 2, "clients": 1},
            {"asn": 209, "as_org": null, "sessions": 1, "clients": 1},
            {"asn": 1221, "as_org": "Telstra Pty Ltd", "sessions": 1, "clients": 1},
        ])
    );
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(stdout.contains("geoip-city: GeoLite2-City built 2026-02-04T22:49:29.000000Z\n"));
    assert!(stdout.contains("\nTop countries\n  country            sessions  clients\n  SE Sweden                 2        1\n"), "{stdout}");

    // A Country database gives the country only.
    let out2 = dir.path().join("out2");
    analyze(&[
        spool.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
        "--geoip-city",
        &geoip("GeoLite2-Country-Test.mmdb"),
        "--geoip-dir",
        "/nonexistent",
        "-q",
    ]);
    let clients = csv_rows(&out2.join("clients.csv"));
    assert_eq!(
        pick(row(&clients, "ip", "89.160.20.112"), GEO_COLUMNS),
        pairs(&[
            ("sessions", "2"),
            ("country_iso", "SE"),
            ("country", "Sweden"),
            ("continent", "EU"),
            ("eu", "true"),
            ("city", ""),
            ("subdivision", ""),
            ("postal", ""),
            ("latitude", ""),
            ("longitude", ""),
            ("accuracy_km", ""),
            ("time_zone", ""),
            ("asn", ""),
            ("as_org", ""),
        ])
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out2.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        report["provenance"]["enrichment"][0]["database_type"],
        "GeoLite2-Country"
    );
    assert_eq!(report["provenance"]["enrichment"][1]["status"], "missing");

    // A database of the wrong kind is a usage error.
    let wrong = analyze_within(
        &[
            spool.to_str().unwrap(),
            "--out",
            out2.to_str().unwrap(),
            "--geoip-city",
            &geoip("GeoLite2-ASN-Test.mmdb"),
        ],
        std::time::Duration::from_secs(60),
    );
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&wrong.stderr)
            .contains("is a GeoLite2-ASN database, not a City or Country one")
    );
}

#[test]
fn without_databases_the_geo_columns_are_empty_and_the_report_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let spool = geo_spool(dir.path());
    let out = dir.path().join("out");
    let cfg = dir.path().join("latrine.toml");
    std::fs::write(&cfg, "[analyze]\ngeoip_dirs = [\"no-such-dir\"]\n").unwrap();
    let run = analyze(&[
        spool.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let clients = csv_rows(&out.join("clients.csv"));
    assert_eq!(clients.len(), 6);
    assert!(
        clients
            .iter()
            .all(|c| GEO_COLUMNS[1..].iter().all(|k| c[*k].is_empty()))
    );
    let tried = dir.path().join("no-such-dir");
    let note = format!(
        "no database given (--geoip-city or the config file) and none found at {0}/GeoLite2-City.mmdb, \
         {0}/GeoIP2-City.mmdb, {0}/GeoLite2-Country.mmdb, {0}/GeoIP2-Country.mmdb",
        tried.display()
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["provenance"]["enrichment"][0]["status"], "missing");
    assert_eq!(report["provenance"]["enrichment"][0]["note"], note.as_str());
    assert_eq!(
        report["summary"]["enrichment_gaps"][0],
        format!("geoip-city: missing ({note})").as_str()
    );
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(
        stdout.contains(&format!("geoip-city: missing: {note}\n")),
        "{stdout}"
    );

    // The config file names the databases; the command line wins.
    std::fs::write(
        &cfg,
        format!(
            "[listener]\nx = 1\n[analyze]\ngeoip_city = \"{}\"\ngeoip_asn = \"{}\"\n",
            geoip("GeoLite2-City-Test.mmdb"),
            geoip("GeoLite2-ASN-Test.mmdb")
        ),
    )
    .unwrap();
    analyze(&[
        spool.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "-q",
    ]);
    let clients = csv_rows(&out.join("clients.csv"));
    assert_eq!(row(&clients, "ip", "2.125.160.216")["city"], "Boxford");
    analyze(&[
        spool.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--geoip-city",
        &geoip("GeoLite2-Country-Test.mmdb"),
        "-q",
    ]);
    let clients = csv_rows(&out.join("clients.csv"));
    assert_eq!(row(&clients, "ip", "2.125.160.216")["city"], "");
    assert_eq!(row(&clients, "ip", "89.160.20.112")["asn"], "29518");
}

#[test]
fn campaigns_credentials_attachments_and_urls() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let w = Writer::open(&spool, "s1");
    let phish = |greeting: &str, account: &str, user: &str| {
        format!(
            "From: Bank <bank@example.com>\r\nSubject: Account {account} suspended\r\n\r\n\
             {greeting}\r\n\r\nYour account {account} at support@bank.example is suspended.\r\n\
             Visit http://phish.example/login?id={account}&u={user} now.\r\n"
        )
        .into_bytes()
    };
    let a = phish("Dear Alice,", "12345", "alice");
    let b = phish("Hello Bob!", "678", "bob");
    let c = phish("Hi Carol", "9", "carol");
    let html = b"From: x@example.org\r\nSubject: html\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/html\r\n\r\n\
<p>Click <a href=\"HTTPS://Cdn.Example.NET/a?x=1&amp;y=2\">here</a> or \
<img src=h&#116;tp://img.example.org/t.png></p>\r\n--B\r\n\
Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"a,b\\\"c.exe\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=\r\n--B--\r\n";
    let s1 = w.session(
        "198.51.100.7",
        1111,
        &[
            Msg {
                from: "bank@example.com",
                rcpt: &["alice@victim.example"],
                body: &a,
            },
            Msg {
                from: "bank@example.com",
                rcpt: &["bob@victim.example", "carol@victim.example"],
                body: &b,
            },
        ],
    );
    let s2 = w.session(
        "198.51.100.8",
        2222,
        &[
            Msg {
                from: "bank@example.com",
                rcpt: &["carol@victim.example"],
                body: &c,
            },
            Msg {
                from: "x@example.org",
                rcpt: &["bob@victim.example"],
                body: html,
            },
            Msg {
                from: "bank@example.com",
                rcpt: &["alice@victim.example"],
                body: &a,
            },
        ],
    );
    // AUTH exchanges, as the listener records them in the manifest.
    let auth = |at: &str, mechanism: &str, user: &str, password: Option<&str>, accepted: bool| {
        serde_json::json!({
            "at": at, "mechanism": mechanism, "username": user, "password": password,
            "raw": "x", "outcome": "complete", "accepted": accepted
        })
    };
    edit_manifest(&s1, |m| {
        m["auth"] = serde_json::json!([
            auth(
                "2026-01-01T00:00:01.000000Z",
                "PLAIN",
                "admin",
                Some("123456"),
                false
            ),
            auth(
                "2026-01-01T00:00:02.000000Z",
                "LOGIN",
                "admin",
                Some("123456"),
                true
            ),
        ]);
    });
    edit_manifest(&s2, |m| {
        m["auth"] = serde_json::json!([
            auth(
                "2026-01-01T00:00:03.000000Z",
                "PLAIN",
                "admin",
                Some("123456"),
                false
            ),
            auth(
                "2026-01-01T00:00:04.000000Z",
                "CRAM-MD5",
                "root",
                None,
                false
            ),
        ]);
    });
    let out = dir.path().join("out");
    analyze(&[
        spool.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-geoip",
        "--format",
        "csv",
        "-q",
    ]);

    let normalised =
        "your account # at <email> is suspended. visit http://phish.example/login?<q> now.";
    let campaigns = csv_rows(&out.join("campaigns.csv"));
    assert_eq!(campaigns.len(), 2);
    assert_eq!(
        pick(
            &campaigns[0],
            &[
                "campaign",
                "count",
                "sessions",
                "client_ips",
                "distinct_messages",
                "subject",
                "sample",
                "first_message"
            ]
        ),
        pairs(&[
            ("campaign", &sha256_hex(normalised.as_bytes())),
            ("count", "4"),
            ("sessions", "2"),
            ("client_ips", "2"),
            ("distinct_messages", "3"),
            ("subject", "Account 12345 suspended"),
            ("sample", normalised),
            ("first_message", &sha256_hex(&a)),
        ])
    );
    let messages = csv_rows(&out.join("messages.csv"));
    assert_eq!(messages.len(), 4);
    assert_eq!(
        pick(
            &messages[0],
            &[
                "sha256",
                "count",
                "sessions",
                "client_ips",
                "recipients",
                "urls",
                "subject"
            ]
        ),
        pairs(&[
            ("sha256", &sha256_hex(&a)),
            ("count", "2"),
            ("sessions", "2"),
            ("client_ips", "2"),
            ("recipients", "2"),
            ("urls", "1"),
            ("subject", "Account 12345 suspended"),
        ])
    );
    assert_eq!(
        messages[0]["first_file"],
        format!(
            "{}/{}/messages/1.eml",
            spool.display(),
            s1.strip_prefix(&spool).unwrap().display()
        )
    );

    let urls = csv_rows(&out.join("urls.csv"));
    let got: Vec<(&str, &str, &str)> = urls
        .iter()
        .map(|u| (u["url"].as_str(), u["domain"].as_str(), u["count"].as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "http://phish.example/login?id=12345&u=alice",
                "phish.example",
                "2"
            ),
            ("http://img.example.org/t.png", "img.example.org", "1"),
            (
                "http://phish.example/login?id=678&u=bob",
                "phish.example",
                "1"
            ),
            (
                "http://phish.example/login?id=9&u=carol",
                "phish.example",
                "1"
            ),
            ("https://cdn.example.net/a?x=1&y=2", "cdn.example.net", "1"),
        ]
    );
    let domains = csv_rows(&out.join("domains.csv"));
    assert_eq!(
        pick(
            &domains[0],
            &["domain", "count", "sessions", "distinct_urls"]
        ),
        pairs(&[
            ("domain", "phish.example"),
            ("count", "4"),
            ("sessions", "2"),
            ("distinct_urls", "3")
        ])
    );

    let attachments = csv_rows(&out.join("attachments.csv"));
    assert_eq!(attachments.len(), 1);
    let exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00\xb8\x00\x00\x00\x00\x00\x00\x00@\x00\x00\x00\x00\x00\x00\x00";
    assert_eq!(
        pick(
            &attachments[0],
            &[
                "sha256",
                "md5",
                "sha1",
                "size",
                "content_types",
                "filenames",
                "count"
            ]
        ),
        pairs(&[
            ("sha256", &sha256_hex(exe)),
            ("md5", &latrine::escape::hex(&md5::Md5::digest(exe))),
            ("sha1", &latrine::escape::hex(&sha1::Sha1::digest(exe))),
            ("size", "32"),
            ("content_types", "[\"application/octet-stream\"]"),
            ("filenames", "[\"a,b\\\"c.exe\"]"),
            ("count", "1"),
        ])
    );

    let credentials = csv_rows(&out.join("credentials.csv"));
    let got: Vec<Vec<(String, String)>> = credentials
        .iter()
        .map(|c| {
            pick(
                c,
                &[
                    "username",
                    "password",
                    "mechanism",
                    "count",
                    "client_ips",
                    "accepted",
                    "first_seen",
                ],
            )
        })
        .collect();
    assert_eq!(
        got[0],
        pairs(&[
            ("username", "admin"),
            ("password", "123456"),
            ("mechanism", "PLAIN"),
            ("count", "2"),
            ("client_ips", "2"),
            ("accepted", "0"),
            ("first_seen", "2026-01-01T00:00:01.000000Z"),
        ])
    );
    assert_eq!(
        got[1][..6],
        pairs(&[
            ("username", "admin"),
            ("password", "123456"),
            ("mechanism", "LOGIN"),
            ("count", "1"),
            ("client_ips", "1"),
            ("accepted", "1"),
        ])[..]
    );
    assert_eq!(
        got[2][..3],
        pairs(&[
            ("username", "root"),
            ("password", ""),
            ("mechanism", "CRAM-MD5")
        ])[..]
    );
    assert_eq!(credentials.len(), 3);
    let clients = csv_rows(&out.join("clients.csv"));
    assert_eq!(row(&clients, "ip", "198.51.100.8")["auth_attempts"], "2");

    let recipients = csv_rows(&out.join("recipients.csv"));
    let got: Vec<(&str, &str, &str)> = recipients
        .iter()
        .map(|r| {
            (
                r["address"].as_str(),
                r["count"].as_str(),
                r["sessions"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("alice@victim.example", "2", "2"),
            ("bob@victim.example", "2", "2"),
            ("carol@victim.example", "2", "2"),
        ]
    );

    assert_eq!(csv_rows(&out.join("errors.csv")).len(), 0);
}

/// Every file of a report directory (html/ included), by relative path.
fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let name = e.path().strip_prefix(dir).unwrap();
            (
                name.to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_same_spools_give_the_same_bytes_and_merge_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let spool_a = geo_spool(dir.path());
    let spool_b = dir.path().join("spool-b");
    let w = Writer::open(&spool_b, "sensor-b");
    let body: &[u8] = b"Subject: hi\r\n\r\nhello\r\n";
    w.session(
        "89.160.20.112",
        1,
        &[Msg {
            from: "a@b.example",
            rcpt: &["x@y.example"],
            body,
        }],
    );
    w.session("192.0.2.1", 2, &[]);
    let (a, b) = (spool_a.to_str().unwrap(), spool_b.to_str().unwrap());
    let city = geoip("GeoLite2-City-Test.mmdb");
    let asn = geoip("GeoLite2-ASN-Test.mmdb");
    let run = |out: &Path, jobs: &str| {
        analyze(&[
            a,
            b,
            a,
            "--out",
            out.to_str().unwrap(),
            "--format",
            "csv,json,ndjson",
            "--jobs",
            jobs,
            "--geoip-city",
            &city,
            "--geoip-asn",
            &asn,
            "-q",
        ])
    };
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    run(&one, "1");
    run(&two, "2");
    let (first, second) = (files_of(&one), files_of(&two));
    // 12 tables in CSV and NDJSON, and report.json; the HTML report.
    let top = first.keys().filter(|k| !k.starts_with("html/")).count();
    assert_eq!(top, 25, "{:?}", first.keys());
    assert!(first.contains_key("html/index.html"), "{:?}", first.keys());
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &first {
        assert!(bytes == &second[name], "{name} differs between runs");
    }

    // Two sensors merge; the spool given twice is counted once.
    let sessions = csv_rows(&one.join("sessions.csv"));
    assert_eq!(sessions.len(), 9);
    let errors = csv_rows(&one.join("errors.csv"));
    assert_eq!(errors.len(), 7);
    assert!(errors.iter().all(|e| e["spool"] == a
        && e["reason"] == "same sensor and session id as a session already read: skipped"));
    let clients = csv_rows(&one.join("clients.csv"));
    let se = row(&clients, "ip", "89.160.20.112");
    assert_eq!(
        pick(se, &["sessions", "sensors"]),
        pairs(&[("sessions", "3"), ("sensors", "geo-sensor sensor-b")])
    );
    let report: serde_json::Value = serde_json::from_slice(&first["report.json"]).unwrap();
    assert_eq!(
        report["provenance"]["spools"],
        serde_json::json!([{"path": a, "sessions": 7}, {"path": b, "sessions": 2}, {"path": a, "sessions": 0}])
    );
    assert_eq!(report["summary"]["totals"]["duplicate_sessions"], 7);

    // NDJSON and report.json carry the CSV rows.
    for table in ["sessions", "messages", "clients", "errors", "credentials"] {
        let csv = csv_rows(&one.join(format!("{table}.csv"))).len();
        let ndjson = String::from_utf8(first[&format!("{table}.ndjson")].clone()).unwrap();
        assert_eq!(ndjson.lines().count(), csv, "{table}");
        for line in ndjson.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap()
                    .is_object()
            );
        }
        assert_eq!(report[table].as_array().unwrap().len(), csv, "{table}");
    }
    let line = String::from_utf8(first["clients.ndjson"].clone()).unwrap();
    let first_client: serde_json::Value =
        serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(first_client["latitude"], 58.4167);
    assert_eq!(first_client["eu"], true);
    assert_eq!(first_client["asn"], 29518);
    assert_eq!(
        first_client["sensors"],
        serde_json::json!(["geo-sensor", "sensor-b"])
    );
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for args in [
        vec!["/nonexistent/spool", "--out", out.to_str().unwrap()],
        vec![
            dir.path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--format",
            "xml",
        ],
        vec![
            dir.path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--jobs",
            "0",
        ],
        vec![
            dir.path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--geoip-asn",
            "/nonexistent.mmdb",
        ],
        vec![dir.path().to_str().unwrap()],
    ] {
        let run = analyze_within(&args, std::time::Duration::from_secs(60));
        assert_eq!(
            run.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    // An empty spool is no error.
    let run = analyze(&[
        dir.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-geoip",
    ]);
    assert!(String::from_utf8_lossy(&run.stdout).starts_with("0 sessions (0 with messages)"));
    assert_eq!(csv_rows(&out.join("sessions.csv")).len(), 0);
}
