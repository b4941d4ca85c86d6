//! The reports load where analysts load them: every CSV file in Python's
//! `csv` module and in DuckDB, every NDJSON file in DuckDB, with the row
//! counts of `report.json`. The spool mixes a generated one (the real
//! listener, driven by `scripts/gen_spool.py` from 40 loopback addresses,
//! password guesses included) and sessions whose subjects, addresses and file
//! names hold quotes, commas, line breaks, NUL and non-ASCII text.

mod analyze_common;

use analyze_common::*;
use std::process::Command;

/// Whether `python3 -c "import <module>"` works; under CI=true a missing
/// module fails the test (CI installs duckdb with pip).
fn python_module(module: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("python3 module {module} is required under CI=true (pip install {module})");
        }
        eprintln!("skipping: python3 module {module} is not installed");
    }
    found
}

const LOADER: &str = r#"
import csv, duckdb, json, sys
out = sys.argv[1]
report = json.load(open(f"{out}/report.json", encoding="utf-8"))
tables = ["sessions", "messages", "campaigns", "attachments", "clients", "credentials",
          "recipients", "urls", "domains", "errors"]
for t in tables:
    want = len(report[t])
    path = f"{out}/{t}.csv"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, strict=True)
        header = next(reader)
        rows = list(reader)
    assert all(len(r) == len(header) for r in rows), t
    dict_rows = list(csv.DictReader(open(path, newline="", encoding="utf-8")))
    explicit = duckdb.sql(
        f"SELECT count(*) FROM read_csv('{path}', header=true, delim=',', quote='\"', "
        f"escape='\"', all_varchar=true)").fetchall()[0][0]
    if rows:
        sniffed = duckdb.sql(f"SELECT count(*) FROM read_csv('{path}')").fetchall()[0][0]
        columns = [c[0] for c in duckdb.sql(f"DESCRIBE SELECT * FROM read_csv('{path}')").fetchall()]
        assert columns == header, (t, columns, header)
    else:
        sniffed = 0
    ndjson = duckdb.sql(
        f"SELECT count(*) FROM read_json('{out}/{t}.ndjson', format='newline_delimited')"
    ).fetchall()[0][0] if want else 0
    print(t, want, len(rows), len(dict_rows), explicit, sniffed, ndjson)
    assert want == len(rows) == len(dict_rows) == explicit == sniffed == ndjson, t
# A value that needs quoting survives the round trip.
subjects = [r["subject"] for r in csv.DictReader(open(f"{out}/messages.csv", newline="", encoding="utf-8"))]
assert 'Re: "quotes", commas\r\nand a second line \\x00 é' in subjects, subjects
got = duckdb.sql(
    f"SELECT subject FROM read_csv('{out}/messages.csv', all_varchar=true) WHERE subject LIKE '%quotes%commas%'"
).fetchall()[0][0]
assert got == 'Re: "quotes", commas\r\nand a second line \\x00 é', repr(got)
print("ok")
"#;

#[test]
fn csv_and_ndjson_load_in_python_and_duckdb() {
    if !python_module("duckdb") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("generated");
    let gen_out = Command::new("python3")
        .arg(root().join("scripts/gen_spool.py"))
        .args(["--latrine", env!("CARGO_BIN_EXE_latrine"), "--spool"])
        .arg(&generated)
        .args([
            "--sessions",
            "300",
            "--parallel",
            "3",
            "--seed",
            "csv-test",
            "--clients",
            "40",
        ])
        .output()
        .expect("run gen_spool.py");
    assert!(
        gen_out.status.success(),
        "{}",
        String::from_utf8_lossy(&gen_out.stderr)
    );
    let sent: serde_json::Value = serde_json::from_slice(&gen_out.stdout).unwrap();
    assert_eq!(sent["sessions"], 300);
    assert_eq!(sent["failures"], 0);

    let hostile = dir.path().join("hostile");
    let w = Writer::open(&hostile, "hostile-sensor");
    let body = "From: \"Doe, John\" <j@example.org>\r\n\
Subject: =?utf-8?q?Re=3A_=22quotes=22=2C_commas=0D=0Aand_a_second_line_=00_=C3=A9?=\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\
Content-Type: text/plain\r\n\r\n=cmd|' /C calc'!A0 see http://x.example/\"a,b\"\r\n--B\r\n\
Content-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"=HYPERLINK(\\\"x\\\"), \\\"a\\\";b\r\n\tc.txt\"\r\n\r\nAAAA\r\n--B--\r\n";
    w.session(
        "89.160.20.112",
        1,
        &[Msg {
            from: "\"a,b\"@example.org",
            rcpt: &["x\"y@example.net", "é@example.net"],
            body: body.as_bytes(),
        }],
    );
    w.session("2001:480::1", 2, &[]);

    let out = dir.path().join("out");
    analyze(&[
        generated.to_str().unwrap(),
        hostile.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        "csv,json,ndjson",
        "--geoip-city",
        &geoip("GeoLite2-City-Test.mmdb"),
        "--geoip-asn",
        &geoip("GeoLite2-ASN-Test.mmdb"),
        "-q",
    ]);
    // What the generator sent is what was analysed.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let totals = &report["summary"]["totals"];
    assert_eq!(totals["sessions"], 302);
    assert_eq!(
        totals["messages"].as_u64(),
        sent["messages"].as_u64().map(|m| m + 1)
    );
    assert_eq!(
        totals["recipients"].as_u64(),
        sent["recipients"].as_u64().map(|r| r + 2)
    );
    assert_eq!(totals["auth_attempts"], sent["auth_attempts"]);
    // Password guesses through the real listener's AUTH, as the bot sent them.
    let credentials: serde_json::Map<String, serde_json::Value> =
        csv_rows(&out.join("credentials.csv"))
            .iter()
            .map(|c| {
                let key = format!("{}:{}:{}", c["username"], c["password"], c["mechanism"]);
                (key, c["count"].parse::<u64>().unwrap().into())
            })
            .collect();
    assert!(!credentials.is_empty());
    assert_eq!(serde_json::Value::Object(credentials), sent["credentials"]);
    let clients = csv_rows(&out.join("clients.csv")).len();
    assert!((30..=42).contains(&clients), "{clients} clients");

    let load = Command::new("python3")
        .args(["-c", LOADER])
        .arg(&out)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&load.stdout);
    assert!(
        load.status.success() && stdout.ends_with("ok\n"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&load.stderr)
    );
}
