//! Shared by the `analyze` and `verify` tests: sessions written with the
//! listener's own spool writer (so that the client address can be chosen),
//! running `latrine analyze`, and reading its CSV files back.
#![allow(dead_code)]

use latrine::events::{EndReason, Event, StoredMessage};
use latrine::spool::{Durability, Spool};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn geoip(name: &str) -> String {
    root()
        .join("tests/data/geoip")
        .join(name)
        .display()
        .to_string()
}

/// One message to write: envelope and content.
pub struct Msg<'a> {
    pub from: &'a str,
    pub rcpt: &'a [&'a str],
    pub body: &'a [u8],
}

/// Events are built from JSON so that fields the format gains later (with
/// defaults) do not break these tests.
fn event(value: serde_json::Value) -> Event {
    serde_json::from_value(value).expect("event")
}

/// A spool written through `latrine::spool`, as the listener writes it.
pub struct Writer {
    pub spool: Arc<Spool>,
}

impl Writer {
    pub fn open(root: &Path, sensor: &str) -> Writer {
        Writer {
            spool: Arc::new(Spool::open(root, sensor, Durability::None).expect("open spool")),
        }
    }

    /// Writes and seals one session from `ip`; returns its directory.
    pub fn session(&self, ip: &str, port: u16, messages: &[Msg]) -> PathBuf {
        let connect = event(serde_json::json!({
            "event": "session.connect",
            "client": {"ip": ip, "port": port},
            "server": {"ip": "192.0.2.25", "port": 25},
            "hostname": "mx.example.com",
            "listener": "smtp",
        }));
        let mut w = self
            .spool
            .begin(latrine::timestamp::now(), ip.to_string(), connect, None)
            .expect("begin");
        let mut commands = 1;
        w.record(event(serde_json::json!({
            "event": "smtp.helo", "verb": "EHLO", "name": "client.example"
        })))
        .unwrap();
        for m in messages {
            w.record(event(serde_json::json!({
                "event": "smtp.mail", "address": m.from, "params": []
            })))
            .unwrap();
            for r in m.rcpt {
                w.record(event(
                    serde_json::json!({"event": "smtp.rcpt", "address": r}),
                ))
                .unwrap();
            }
            w.begin_message().unwrap();
            w.message_content(m.body);
            let stored: StoredMessage = serde_json::from_value(serde_json::json!({
                "index": 0, "file": "", "size": 0, "sha256": "",
                "received_size": m.body.len(), "truncated": false,
                "bare_lf": false, "bare_cr": false, "smuggling": false,
                "accepted": true, "queue_id": "4XYZ123"
            }))
            .unwrap();
            let (stored, _file) = w.end_message(stored).unwrap();
            w.record(Event::MessageStored(stored)).unwrap();
            commands += 3 + m.rcpt.len() as u64;
        }
        w.close_and_seal(EndReason::Quit, commands + 1)
            .expect("seal")
    }
}

/// Variables that turn on OSINT lookups (and proxies that would carry
/// them): never inherited by a test's run, so that a developer's own keys
/// cannot send a test's indicators to the real services.
pub const OSINT_ENV: &[&str] = &[
    "LATRINE_VT_KEY",
    "LATRINE_ABUSEIPDB_KEY",
    "LATRINE_OTX_KEY",
    "LATRINE_VT_URL",
    "LATRINE_ABUSEIPDB_URL",
    "LATRINE_OTX_URL",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
];

/// Runs `latrine` with `args`; fails the test past `limit`.
pub fn latrine_within(args: &[&str], limit: Duration) -> Output {
    latrine_with_env(args, &[], limit)
}

/// Runs `latrine` with `args` and the variables `env` (after removing
/// [`OSINT_ENV`]); fails the test past `limit`.
pub fn latrine_with_env(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latrine"));
    for name in OSINT_ENV {
        command.env_remove(name);
    }
    let mut child = command
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1800000000")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run latrine");
    // Read both pipes while waiting, so that a full pipe cannot stall it.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("latrine {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs `latrine analyze` with `args`; fails the test past `limit`.
pub fn analyze_within(args: &[&str], limit: Duration) -> Output {
    let all: Vec<&str> = std::iter::once("analyze")
        .chain(args.iter().copied())
        .collect();
    latrine_within(&all, limit)
}

/// Runs `latrine analyze` and expects success.
pub fn analyze(args: &[&str]) -> Output {
    let out = analyze_within(args, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "latrine analyze {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A CSV file as rows of column name to value.
pub fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut reader =
        csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The row of `rows` whose `key` column is `value`.
pub fn row<'a>(
    rows: &'a [BTreeMap<String, String>],
    key: &str,
    value: &str,
) -> &'a BTreeMap<String, String> {
    rows.iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no row with {key} = {value:?} in {rows:#?}"))
}

/// `(column, value)` pairs of a row, for comparing a chosen set at once.
pub fn pick(row: &BTreeMap<String, String>, columns: &[&str]) -> Vec<(String, String)> {
    columns
        .iter()
        .map(|c| {
            (
                c.to_string(),
                row.get(*c)
                    .cloned()
                    .unwrap_or_else(|| panic!("no column {c}")),
            )
        })
        .collect()
}

pub fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    latrine::escape::hex(&sha2::Sha256::digest(bytes))
}

/// Copies a directory tree (files and directories only).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Edits a sealed session's manifest as JSON (to add what a newer format
/// carries, or to break it).
pub fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

/// Replaces message `index` (from 1) of a sealed session with `content`,
/// and its size and sha256 in the manifest, as if it had been received so.
/// (Writing such a message through the writer would parse it while sealing.)
pub fn replace_message(dir: &Path, index: usize, content: &[u8]) {
    let file = format!("messages/{index}.eml");
    std::fs::write(dir.join(&file), content).unwrap();
    let sha = sha256_hex(content);
    let size = content.len();
    edit_manifest(dir, |m| {
        let message = &mut m["messages"][index - 1];
        message["size"] = size.into();
        message["received_size"] = size.into();
        message["sha256"] = sha.clone().into();
        for f in m["files"].as_array_mut().unwrap() {
            if f["path"] == file.as_str() {
                f["size"] = size.into();
                f["sha256"] = sha.clone().into();
            }
        }
    });
}
