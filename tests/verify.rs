//! `latrine verify` on a spool written by the real listener, then on copies
//! of it tampered with in every way the check must catch.

mod analyze_common;
mod support;

use analyze_common::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use support::{Dialog, Honeypot};

const ATTACHED: &[u8] = b"not really a zip";

/// A spool of two sessions from the real listener, one with an attachment.
fn clean_spool() -> &'static Path {
    static SPOOL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &SPOOL
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let spool = dir.path().join("spool");
            let mut h = Honeypot::start_on(&spool, &[]);
            let mut d = Dialog::open(&h);
            d.cmd("EHLO client.example");
            d.cmd("MAIL FROM:<a@example.org>");
            d.cmd("RCPT TO:<v@example.net>");
            d.cmd("DATA");
            let attached = base64(ATTACHED);
            let reply = d.cmd(&format!(
                "Subject: evidence\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n\
                 --B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--B\r\n\
                 Content-Type: application/zip\r\nContent-Disposition: attachment; filename=\"x.zip\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{attached}\r\n--B--\r\n."
            ));
            assert!(reply.starts_with("250 "), "{reply}");
            d.cmd("QUIT");
            let mut d = Dialog::open(&h);
            d.cmd("EHLO other.example");
            d.cmd("QUIT");
            h.wait_sealed(2);
            assert_eq!(h.terminate(), Some(0));
            (dir, spool)
        })
        .1
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A fresh copy of the clean spool, and its sessions (the one with the
/// message first).
fn copy() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    copy_tree(clean_spool(), &spool);
    let mut sessions: Vec<PathBuf> = support::sealed_sessions(&spool)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    sessions.sort_by_key(|p| !p.join("messages").exists());
    let (with, without) = (sessions[0].clone(), sessions[1].clone());
    (dir, spool, with, without)
}

fn verify(args: &[&str]) -> (Option<i32>, String) {
    let all: Vec<&str> = std::iter::once("verify")
        .chain(args.iter().copied())
        .collect();
    let out = latrine_within(&all, Duration::from_secs(60));
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

fn attachment(session: &Path) -> PathBuf {
    session.join("attachments").join(sha256_hex(ATTACHED))
}

#[test]
fn a_clean_spool_passes() {
    let (_dir, spool, with, _) = copy();
    assert!(attachment(&with).is_file());
    // Sessions being written are not checked.
    std::fs::create_dir_all(spool.join(".incoming/20260101T000000.000000Z-0000000000000000"))
        .unwrap();
    std::fs::write(
        spool.join(".incoming/20260101T000000.000000Z-0000000000000000/junk"),
        b"x",
    )
    .unwrap();
    assert_eq!(
        verify(&[spool.to_str().unwrap()]),
        (Some(0), "2 sessions checked, 0 problems\n".into())
    );
    // One session, given directly.
    assert_eq!(
        verify(&[with.to_str().unwrap(), "--jobs", "1"]),
        (Some(0), "1 sessions checked, 0 problems\n".into())
    );
}

#[test]
fn a_changed_byte_is_altered() {
    let (_dir, spool, with, _) = copy();
    let eml = with.join("messages/1.eml");
    let before = std::fs::read(&eml).unwrap();
    let mut after = before.clone();
    after[3] ^= 0x20;
    std::fs::write(&eml, &after).unwrap();
    let (code, out) = verify(&[spool.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert_eq!(
        out,
        format!(
            "ALTERED {}: sha256 expected {} got {}\n2 sessions checked, 1 problems\n",
            eml.display(),
            sha256_hex(&before),
            sha256_hex(&after)
        )
    );
    // A grown file: size and hash.
    let transcript = with.join("transcript.log");
    let before = std::fs::read(&transcript).unwrap();
    let mut after = before.clone();
    after.extend_from_slice(b"x");
    std::fs::write(&transcript, &after).unwrap();
    let (code, out) = verify(&[spool.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains(&format!(
            "ALTERED {}: size expected {} got {}, sha256 expected {} got {}\n",
            transcript.display(),
            before.len(),
            after.len(),
            sha256_hex(&before),
            sha256_hex(&after)
        )),
        "{out}"
    );
    assert!(out.ends_with("2 sessions checked, 2 problems\n"), "{out}");
}

#[test]
fn a_removed_file_is_missing_and_an_added_one_unlisted() {
    let (_dir, spool, with, without) = copy();
    std::fs::remove_file(attachment(&with)).unwrap();
    std::fs::write(without.join("notes.txt"), b"hello").unwrap();
    let (code, out) = verify(&[spool.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.pop(), Some("2 sessions checked, 2 problems"));
    lines.sort();
    let mut want = vec![
        format!(
            "MISSING {}: listed in the manifest, not found",
            attachment(&with).display()
        ),
        format!(
            "UNLISTED {}: not in the manifest (5 bytes)",
            without.join("notes.txt").display()
        ),
    ];
    want.sort();
    assert_eq!(lines, want);
}

#[test]
fn a_broken_manifest_is_reported() {
    let (_dir, spool, with, without) = copy();
    let manifest = with.join("manifest.json");
    let text = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    edit_manifest(&without, |m| m["schema"] = "latrine.session/2".into());
    let (code, out) = verify(&[spool.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains(&format!(
            "BAD-MANIFEST {}: not valid JSON: EOF while parsing",
            with.display()
        )),
        "{out}"
    );
    assert!(out.contains(&format!(
        "BAD-MANIFEST {}: unsupported schema \"latrine.session/2\", expected \"latrine.session/1\"\n",
        without.display()
    )), "{out}");
    assert!(out.ends_with("2 sessions checked, 2 problems\n"), "{out}");

    // A manifest deleted, or listing a path outside its session.
    let (_dir, spool, with, without) = copy();
    std::fs::remove_file(with.join("manifest.json")).unwrap();
    edit_manifest(&without, |m| {
        m["files"].as_array_mut().unwrap().push(serde_json::json!({
            "path": "../../../../../../etc/passwd", "size": 1, "sha256": "00"
        }));
    });
    let (code, out) = verify(&[spool.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.pop(), Some("2 sessions checked, 2 problems"));
    lines.sort();
    let mut want = vec![
        format!("BAD-MANIFEST {}: manifest.json is missing", with.display()),
        format!(
            "BAD-MANIFEST {}: lists \"../../../../../../etc/passwd\", which is not a file of the session",
            without.display()
        ),
    ];
    want.sort();
    assert_eq!(lines, want);
}

#[test]
fn links_and_fifos_are_reported_never_followed() {
    let (dir, spool, with, without) = copy();
    // A link to a FIFO outside: following it would block verify forever.
    let fifo = dir.path().join("outside.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let eml = with.join("messages/1.eml");
    std::fs::remove_file(&eml).unwrap();
    std::os::unix::fs::symlink(&fifo, &eml).unwrap();
    let local = without.join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&local)
            .status()
            .unwrap()
            .success()
    );
    let (code, out) = verify(&[spool.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.pop(), Some("2 sessions checked, 2 problems"));
    lines.sort();
    let mut want = vec![
        format!(
            "SYMLINK {}: symbolic link to {}, not followed",
            eml.display(),
            fifo.display()
        ),
        format!(
            "SPECIAL {}: not a regular file (fifo, socket, device...), not read",
            local.display()
        ),
    ];
    want.sort();
    assert_eq!(lines, want);

    // A session directory replaced by a link, and one renamed.
    let (dir, spool, with, without) = copy();
    let moved = dir.path().join("moved");
    std::fs::rename(&with, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &with).unwrap();
    let renamed = without.with_file_name("renamed");
    std::fs::rename(&without, &renamed).unwrap();
    let (code, out) = verify(&[spool.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    let id = without.file_name().unwrap().to_string_lossy();
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.pop(), Some("1 sessions checked, 2 problems"));
    lines.sort();
    let mut want = vec![
        format!(
            "SYMLINK {}: symbolic link to {}, not followed",
            with.display(),
            moved.display()
        ),
        format!(
            "MISPLACED {}: the manifest is for session {id}",
            renamed.display()
        ),
    ];
    want.sort();
    assert_eq!(lines, want);
}

#[test]
fn usage_errors_exit_2() {
    let (code, _) = verify(&["/nonexistent/spool"]);
    assert_eq!(code, Some(2));
    let (code, _) = verify(&[]);
    assert_eq!(code, Some(2));
}
