//! Real corpora through a real client: every file of `tests/corpus/` is sent
//! with Python's `smtplib` (`scripts/replay_corpus.py`), one session per
//! file, and the spool must hold exactly what went on the wire, unstuffed.
//! Attachments are checked against an independent extraction by Python's
//! `email` package.
//!
//! Each file is sent twice: once as it is (`--eol raw`: most of the corpus
//! has bare LF line endings, which smtplib sends unchanged for bytes) and
//! once with smtplib's own `_fix_eols` applied (`--eol crlf`), where the
//! stored message must be the file itself, byte for byte.
//!
//! The replay runs once (both passes, 2 sessions a file) and its findings are
//! shared by the tests below, each of which asserts one property.

mod support;

use latrine::spool::Manifest;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use support::Honeypot;

/// One line of the script's output.
#[derive(Debug)]
struct Sent {
    file: String,
    eol: String,
    local_port: u16,
    sent_sha256: String,
    size: u64,
    /// The DATA bytes on the wire, final `.\r\n` included.
    wire_sha256: String,
    wire_size: u64,
    equals_file: bool,
    parse_error: Option<String>,
    attachments: Vec<PyAttachment>,
}

#[derive(Debug)]
struct PyAttachment {
    filename: Option<String>,
    content_type: String,
    cte: Option<String>,
    sha256: String,
    text_sha256: Option<String>,
    depth: u64,
    /// Defects Python's parser found on the part or above it.
    defects: Vec<String>,
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The corpus files, relative to the crate root, sorted.
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
    let root = root();
    let mut mail_parser = Vec::new();
    walk(&root.join("tests/corpus/mail-parser"), &mut mail_parser);
    mail_parser.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    let mut cpython = Vec::new();
    walk(&root.join("tests/corpus/cpython"), &mut cpython);
    cpython.retain(|p| {
        let name = p.file_name().unwrap().to_string_lossy();
        name.starts_with("msg_") && name.ends_with(".txt")
    });
    let mut files: Vec<String> = mail_parser
        .iter()
        .chain(&cpython)
        .map(|p| {
            p.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    files
}

fn parse_line(line: &str) -> Sent {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"));
    let s = |key: &str| {
        v[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} in {line}"))
            .to_string()
    };
    Sent {
        file: s("file"),
        eol: s("eol"),
        local_port: v["local_port"].as_u64().unwrap() as u16,
        sent_sha256: s("sent_sha256"),
        size: v["size"].as_u64().unwrap(),
        wire_sha256: s("wire_sha256"),
        wire_size: v["wire_size"].as_u64().unwrap(),
        equals_file: v["equals_file"].as_bool().unwrap(),
        parse_error: v["parse_error"].as_str().map(str::to_string),
        attachments: v["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| PyAttachment {
                filename: a["filename"].as_str().map(str::to_string),
                content_type: a["content_type"].as_str().unwrap().to_string(),
                cte: a["cte"].as_str().map(str::to_string),
                sha256: a["sha256"].as_str().unwrap().to_string(),
                text_sha256: a["text_sha256"].as_str().map(str::to_string),
                depth: a["depth"].as_u64().unwrap(),
                defects: a["defects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_str().unwrap().to_string())
                    .collect(),
            })
            .collect(),
    }
}

/// Runs the script over `files`; one record per file, in order.
fn replay(h: &Honeypot, eol: &str, files: &[String]) -> Vec<Sent> {
    let out = Command::new("python3")
        .arg(root().join("scripts/replay_corpus.py"))
        .args(["--eol", eol])
        .arg(h.addr.ip().to_string())
        .arg(h.addr.port().to_string())
        .args(files)
        .current_dir(root())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "replay_corpus.py --eol {eol} failed: {}\nstderr:\n{}\nlatrine log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        h.log.lock().unwrap()
    );
    let sent: Vec<Sent> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(parse_line)
        .collect();
    assert_eq!(sent.len(), files.len(), "one record per file");
    for (s, f) in sent.iter().zip(files) {
        assert_eq!(&s.file, f);
        assert_eq!(s.eol, eol);
    }
    sent
}

/// Whether `data` has a LF not preceded by CR / a CR not followed by LF.
fn bare_lf_cr(data: &[u8]) -> (bool, bool) {
    let lf = data
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || data[i - 1] != b'\r'));
    let cr = data
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && data.get(i + 1) != Some(&b'\n'));
    (lf, cr)
}

/// What the replay found, shared by the tests.
/// The DATA bytes rebuilt from a stored message as the spool format says:
/// a `.` put back before every line (at the start or after CRLF) that begins
/// with `.`, and before the lines at the `undoubled_dots` offsets, then
/// `.\r\n`.
fn rebuild_wire(eml: &[u8], undoubled_dots: &[u64]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(eml.len() + 16);
    for (i, &b) in eml.iter().enumerate() {
        let line_start = i == 0 || eml[..i].ends_with(b"\r\n");
        if (line_start && b == b'.') || undoubled_dots.contains(&(i as u64)) {
            wire.push(b'.');
        }
        wire.push(b);
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

#[derive(Default)]
struct Report {
    files: usize,
    sessions: usize,
    bytes: u64,
    py_attachments: usize,
    /// Of those, in `malformed/` files, and how many of them matched.
    py_malformed: usize,
    matched_malformed: usize,
    /// Python's decoded bytes found among latrine's attachments.
    matched_bytes: usize,
    latrine_attachments: usize,
    /// Python attachments latrine has only as the part's text re-encoded as
    /// UTF-8, not as the bytes that were sent: (well-formed, description).
    transcoded: Vec<(bool, String)>,
    /// Python attachments latrine does not have at all: (well-formed, description).
    missing: Vec<(bool, String)>,
    /// Malformed files where latrine extracted attachments Python did not.
    latrine_only_malformed: Vec<String>,
    /// Files whose stored message differs from the file (smtplib quoting).
    not_file: Vec<String>,
}

/// A message counts as well-formed, for comparing MIME parsers, when it is
/// not in `malformed/` and Python's parser found no defect on the way to the
/// part (a base64 body that is not base64, a missing boundary...).
fn well_formed(sent: &Sent, p: &PyAttachment) -> bool {
    !sent.file.contains("/malformed/") && p.defects.is_empty() && sent.parse_error.is_none()
}

fn check_session(sent: &Sent, dir: &Path, m: &Manifest, report: &mut Report) {
    let what = format!(
        "{} (--eol {}, session {})",
        sent.file, sent.eol, m.session_id
    );
    assert_eq!(
        m.client.port, sent.local_port,
        "{what}: sessions out of order"
    );
    assert_eq!(m.messages.len(), 1, "{what}: one message");
    let msg = &m.messages[0];
    assert!(msg.accepted, "{what}: not accepted");
    assert!(!msg.truncated, "{what}: truncated");

    // The message, byte for byte.
    let eml = std::fs::read(dir.join(&msg.file)).unwrap();
    let stored = hex_sha256(&eml);
    assert_eq!(
        stored, sent.sent_sha256,
        "{what}: stored .eml differs from what was sent"
    );
    assert_eq!(msg.sha256, stored, "{what}: manifest sha256");
    assert_eq!(msg.size, eml.len() as u64, "{what}: manifest size");
    assert_eq!(eml.len() as u64, sent.size, "{what}: size");
    assert_eq!(msg.received_size, sent.size, "{what}: received_size");
    let (lf, cr) = bare_lf_cr(&eml);
    assert_eq!(
        (msg.bare_lf, msg.bare_cr),
        (lf, cr),
        "{what}: bare_lf, bare_cr"
    );
    assert!(!msg.smuggling, "{what}: smtplib does not smuggle");
    let wire = rebuild_wire(&eml, &msg.undoubled_dots);
    assert_eq!(
        (hex_sha256(&wire), wire.len() as u64),
        (sent.wire_sha256.clone(), sent.wire_size),
        "{what}: the wire bytes rebuilt from the spool differ from what smtplib sent"
    );
    if sent.eol == "crlf" {
        assert!(
            sent.equals_file,
            "{what}: CRLF content must come back as the file"
        );
    } else if !sent.equals_file {
        report.not_file.push(sent.file.clone());
    }
    report.sessions += 1;
    report.bytes += eml.len() as u64;

    // Every attachment file hashes to its name.
    let mut latrine: BTreeSet<&str> = BTreeSet::new();
    for a in &msg.attachments {
        assert_eq!(a.file, format!("attachments/{}", a.sha256), "{what}");
        let content =
            std::fs::read(dir.join(&a.file)).unwrap_or_else(|e| panic!("{what}: {}: {e}", a.file));
        assert_eq!(hex_sha256(&content), a.sha256, "{what}: {} content", a.file);
        assert_eq!(content.len() as u64, a.size, "{what}: {} size", a.file);
        latrine.insert(&a.sha256);
    }
    report.latrine_attachments += msg.attachments.len();

    // Python's attachments among latrine's.
    let python: BTreeSet<&str> = sent
        .attachments
        .iter()
        .flat_map(|p| std::iter::once(p.sha256.as_str()).chain(p.text_sha256.as_deref()))
        .collect();
    let extra: Vec<String> = msg
        .attachments
        .iter()
        .filter(|a| !python.contains(a.sha256.as_str()))
        .map(|a| a.content_type.clone())
        .collect();
    if sent.file.contains("/malformed/") && !extra.is_empty() {
        report
            .latrine_only_malformed
            .push(format!("{} [{}]: {extra:?}", sent.file, sent.eol));
    }
    if let Some(e) = &sent.parse_error {
        report.missing.push((
            false,
            format!("{} [{}]: Python could not parse: {e}", sent.file, sent.eol),
        ));
    }
    for p in &sent.attachments {
        report.py_attachments += 1;
        let malformed = sent.file.contains("/malformed/");
        report.py_malformed += usize::from(malformed);
        let describe = |why: &str| {
            format!(
                "{} [{}] {} {:?} (cte {}, depth {}, sha256 {}{}): {why}",
                sent.file,
                sent.eol,
                p.content_type,
                p.filename.as_deref().unwrap_or("(no name)"),
                p.cte.as_deref().unwrap_or("none"),
                p.depth,
                &p.sha256[..12],
                if p.defects.is_empty() {
                    String::new()
                } else {
                    format!(", Python defects {}", p.defects.join(","))
                }
            )
        };
        if latrine.contains(p.sha256.as_str()) {
            report.matched_bytes += 1;
            report.matched_malformed += usize::from(malformed);
        } else if p
            .text_sha256
            .as_deref()
            .is_some_and(|t| latrine.contains(t))
        {
            report.transcoded.push((
                well_formed(sent, p),
                describe("latrine stored the text re-encoded as UTF-8, not the bytes sent"),
            ));
        } else {
            let has: Vec<String> = msg
                .attachments
                .iter()
                .map(|a| format!("{}:{}", a.content_type, &a.sha256[..12]))
                .collect();
            let why = format!(
                "not among latrine's {has:?}{}",
                msg.parse_error
                    .as_deref()
                    .map(|e| format!(" (parse_error {e})"))
                    .unwrap_or_default()
            );
            report.missing.push((well_formed(sent, p), describe(&why)));
        }
    }
}

/// Replays the corpus once for all the tests; None when python3 is missing
/// (and CI is not set).
fn report() -> Option<&'static Report> {
    static REPORT: OnceLock<Option<Report>> = OnceLock::new();
    REPORT.get_or_init(run_replay).as_ref()
}

fn run_replay() -> Option<Report> {
    if !support::require_tool("python3") {
        return None;
    }
    let files = corpus_files();
    assert!(files.len() >= 150, "corpus missing? {} files", files.len());
    let h = Honeypot::start(&[]);

    let raw = replay(&h, "raw", &files);
    let crlf = replay(&h, "crlf", &files);
    let sessions = h.wait_sealed(2 * files.len());
    assert_eq!(
        sessions.len(),
        2 * files.len(),
        "one session per file and pass"
    );

    let mut report = Report {
        files: files.len(),
        ..Report::default()
    };
    for (sent, (dir, m)) in raw.iter().chain(&crlf).zip(&sessions) {
        check_session(sent, dir, m, &mut report);
    }

    for line in &report.not_file {
        eprintln!(
            "stored != file, as expected (smtplib doubles a '.' after a bare LF; SMTP unstuffs CRLF lines only): {line}"
        );
    }
    for line in &report.latrine_only_malformed {
        eprintln!("malformed, only latrine (mail-parser) found attachments: {line}");
    }
    for (strict, line) in &report.transcoded {
        let tag = if *strict { "well-formed" } else { "defective" };
        eprintln!("text attachment transcoded [{tag}]: {line}");
    }
    for (strict, line) in &report.missing {
        let tag = if *strict { "well-formed" } else { "defective" };
        eprintln!("attachment disagreement [{tag}]: {line}");
    }
    eprintln!(
        "corpus_replay: {} files replayed ({} sessions, {} bytes stored, all byte-identical); \
         Python found {} attachments: {} matched byte for byte, {} only as UTF-8 text, \
         {} not found ({} in well-formed parts); in malformed/: {} of {} matched; latrine recorded {}",
        report.files,
        report.sessions,
        report.bytes,
        report.py_attachments,
        report.matched_bytes,
        report.transcoded.len(),
        report.missing.len(),
        report.missing.iter().filter(|(strict, _)| *strict).count(),
        report.matched_malformed,
        report.py_malformed,
        report.latrine_attachments
    );
    Some(report)
}

fn strict(list: &[(bool, String)]) -> Vec<&str> {
    list.iter()
        .filter(|(s, _)| *s)
        .map(|(_, l)| l.as_str())
        .collect()
}

/// Every stored `.eml` is exactly the unstuffed DATA smtplib sent, its
/// manifest says so, and every attachment file hashes to its name.
#[test]
fn stored_messages_are_what_smtplib_sent() {
    let Some(report) = report() else { return };
    assert_eq!(report.sessions, 2 * report.files);
}

/// Each attachment Python's `email` finds in a well-formed part is among
/// latrine's (as the transfer-decoded bytes, or at least as its text).
#[test]
fn attachments_agree_with_python_email() {
    let Some(report) = report() else { return };
    let missing = strict(&report.missing);
    assert!(
        missing.is_empty(),
        "{} attachments of well-formed messages that latrine does not have:\n{missing:#?}",
        missing.len()
    );
}

/// A text attachment is evidence like any other: its sha256 must be that of
/// the bytes the sender attached, not of their conversion to UTF-8.
#[test]
fn text_attachments_are_stored_as_sent() {
    let Some(report) = report() else { return };
    let transcoded = strict(&report.transcoded);
    assert!(
        transcoded.is_empty(),
        "{} text attachments stored re-encoded as UTF-8 instead of as sent:\n{transcoded:#?}",
        transcoded.len()
    );
}
