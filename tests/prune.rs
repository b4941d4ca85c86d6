//! `latrine prune` and scripts/ship.sh on spools written by the real
//! listener and copied with the real rsync.

mod analyze_common;
mod support;

use analyze_common::{copy_tree, latrine_within};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use support::{Dialog, Honeypot, SENSOR, require_tool};

/// A spool of four sessions from the real listener, each with a message,
/// today's denial counts (one connection from a denied address), and one
/// session left in `.incoming` (as if being written).
fn clean_spool() -> &'static Path {
    static SPOOL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &SPOOL
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let spool = dir.path().join("spool");
            let deny = dir.path().join("deny.txt");
            std::fs::write(&deny, "127.0.0.2\n").unwrap();
            let mut h = Honeypot::start_on(
                &spool,
                &["--no-fsync", "--deny-file", deny.to_str().unwrap()],
            );
            let mut denied = Dialog::connect_from("127.0.0.2".parse().unwrap(), h.addr).stream;
            let mut nothing = Vec::new();
            denied.read_to_end(&mut nothing).unwrap();
            assert!(nothing.is_empty(), "a denied client got {nothing:?}");
            for i in 0..4 {
                let mut d = Dialog::open(&h);
                d.cmd("EHLO client.example");
                d.cmd("MAIL FROM:<a@example.org>");
                d.cmd("RCPT TO:<v@example.net>");
                d.cmd("DATA");
                let reply = d.cmd(&format!("Subject: number {i}\r\n\r\nbody {i}\r\n."));
                assert!(reply.starts_with("250 "), "{reply}");
                d.cmd("QUIT");
            }
            h.wait_sealed(4);
            assert_eq!(h.terminate(), Some(0));
            let today = spool.join(SENSOR).join(format!("denials/{}.log", day(0)));
            assert!(today.is_file(), "no {}", today.display());
            let open = spool.join(".incoming/20260101T000000.000000Z-0000000000000000");
            std::fs::create_dir_all(&open).unwrap();
            std::fs::write(open.join("transcript.log"), b"being written").unwrap();
            (dir, spool)
        })
        .1
}

/// A fresh copy of the clean spool in a new directory, and its sessions.
fn fresh() -> (tempfile::TempDir, PathBuf, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    copy_tree(clean_spool(), &spool);
    let sessions = support::sealed_sessions(&spool)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    (dir, spool, sessions)
}

fn rsync(from: &Path, to: &Path) {
    let status = Command::new("rsync")
        .args(["-a", "--exclude=.incoming"])
        .arg(format!("{}/", from.display()))
        .arg(format!("{}/", to.display()))
        .status()
        .expect("run rsync");
    assert!(status.success(), "rsync failed");
}

fn prune(dest: &Path, spool: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec![
        "prune",
        "--verified-in",
        dest.to_str().unwrap(),
        spool.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = latrine_within(&args, Duration::from_secs(60));
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `<sensor>/<YYYY>/<MM>/<DD>/<id>` of a session under `spool`.
fn rel(spool: &Path, session: &Path) -> PathBuf {
    session.strip_prefix(spool).unwrap().to_path_buf()
}

/// Today's and an earlier UTC date, `YYYY-MM-DD`.
fn day(days_ago: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::days(days_ago);
    format!("{:04}-{:02}-{:02}", t.year(), t.month() as u8, t.day())
}

#[test]
fn a_dry_run_lists_and_deletes_nothing() {
    if !require_tool("rsync") {
        return;
    }
    let (dir, spool, sessions) = fresh();
    let dest = dir.path().join("dest");
    rsync(&spool, &dest);
    let before = support::sealed_sessions(&spool);
    let (code, out, err) = prune(&dest, &spool, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    for s in &sessions {
        let line = format!("would delete {}\n", rel(&spool, s).display());
        assert!(out.contains(&line), "{line} not in:\n{out}");
        assert!(s.join("manifest.json").is_file());
    }
    assert!(
        out.contains(
            "4 sessions and 0 denial files would be deleted (run again with --yes to delete them), 1 kept"
        ),
        "{out}"
    );
    assert_eq!(support::sealed_sessions(&spool), before);
    assert!(spool.join(".incoming").read_dir().unwrap().next().is_some());
}

#[test]
fn only_sessions_identical_at_dest_are_deleted() {
    if !require_tool("rsync") {
        return;
    }
    let (dir, spool, sessions) = fresh();
    // An old day's session, to see its emptied directories go.
    let old = spool
        .join(SENSOR)
        .join("2020/01/02")
        .join(sessions[3].file_name().unwrap());
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::rename(&sessions[3], &old).unwrap();
    // Denial counts: an old day's, yesterday's, today's (still written).
    let denied = spool.join(SENSOR).join("denials");
    std::fs::create_dir_all(&denied).unwrap();
    for days_ago in [0, 1, 2] {
        let date = day(days_ago);
        let file = format!(
            "# latrine denials v1 sensor={SENSOR} date={date}\n\
             {date}T10:00Z 127.0.0.2 cidr:127.0.0.2/32 7\n"
        );
        std::fs::write(denied.join(format!("{date}.log")), file).unwrap();
    }
    let dest = dir.path().join("dest");
    rsync(&spool, &dest);

    // Session 0: one byte of its message changed at DEST.
    let eml = dest.join(rel(&spool, &sessions[0])).join("messages/1.eml");
    let mut bytes = std::fs::read(&eml).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&eml, bytes).unwrap();
    // Session 1: missing at DEST.
    std::fs::remove_dir_all(dest.join(rel(&spool, &sessions[1]))).unwrap();
    // Session 2: an extra file in the local copy.
    std::fs::write(sessions[2].join("planted"), b"x").unwrap();
    // The two-days-old denial file differs at DEST.
    let old_denied = format!("{SENSOR}/denials/{}.log", day(2));
    std::fs::write(dest.join(&old_denied), b"other\n").unwrap();

    let (code, out, err) = prune(&dest, &spool, &["--yes", "--verbose"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("1 sessions and 1 denial files deleted, 5 kept\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("deleted {}\n", rel(&spool, &old).display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("deleted {SENSOR}/denials/{}.log\n", day(1))),
        "{out}"
    );
    for (session, why) in [
        (&sessions[0], "the copy at DEST does not verify: ALTERED"),
        (&sessions[1], "missing at DEST"),
        (&sessions[2], "the local copy does not verify: UNLISTED"),
    ] {
        let line = format!("keep {}: {why}", rel(&spool, session).display());
        assert!(out.contains(&line), "{line} not in:\n{out}");
        assert!(session.join("manifest.json").is_file());
    }
    assert!(out.contains(&format!("keep {old_denied}: differs from the copy at DEST")));
    assert!(out.contains("today's denial counts, still being written"));
    assert!(!old.exists());
    // The emptied 2020/01/02, 2020/01 and 2020 are gone; today's day stays.
    assert!(!spool.join(SENSOR).join("2020").exists());
    assert!(sessions[0].parent().unwrap().is_dir());
    assert!(denied.join(format!("{}.log", day(0))).is_file());
    assert!(!denied.join(format!("{}.log", day(1))).exists());
    assert!(spool.join(&old_denied).is_file());
    // .incoming is never touched.
    let open = spool.join(".incoming/20260101T000000.000000Z-0000000000000000/transcript.log");
    assert_eq!(std::fs::read(open).unwrap(), b"being written");
    // DEST is never touched.
    assert!(dest.join(rel(&spool, &old)).join("manifest.json").is_file());

    // Once more: nothing left to delete.
    let (code, out, _) = prune(&dest, &spool, &["--yes"]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with("0 sessions and 0 denial files deleted, 5 kept\n"),
        "{out}"
    );
}

#[test]
fn a_link_at_dest_back_into_the_spool_is_not_a_copy() {
    let (dir, spool, sessions) = fresh();
    // DEST's sensor directory is a link to the spool's: every session
    // "verifies" there because it is the same one.
    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::os::unix::fs::symlink(spool.join(SENSOR), dest.join(SENSOR)).unwrap();
    let (code, out, err) = prune(&dest, &spool, &["--yes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("0 sessions and 0 denial files deleted, 5 kept"),
        "{out}"
    );
    assert!(out.contains("kept 4: a symbolic link at DEST"), "{out}");
    for s in &sessions {
        assert!(s.join("manifest.json").is_file());
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let (dir, spool, sessions) = fresh();
    let missing = dir.path().join("nowhere");
    let (code, _, err) = prune(&missing, &spool, &["--yes"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("DEST (--verified-in)") && err.contains("nowhere"),
        "{err}"
    );
    // The spool as its own copy: everything would "verify".
    let (code, _, err) = prune(&spool, &spool, &["--yes"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("the same directory"), "{err}");
    // A directory that is not a spool.
    let other = dir.path().join("other");
    std::fs::create_dir_all(other.join("photos")).unwrap();
    let (code, _, err) = prune(&spool, &other, &["--yes"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("not a spool"), "{err}");
    for s in &sessions {
        assert!(s.join("manifest.json").is_file());
    }
}

fn ship(spool: &Path, dest: &Path) -> (Option<i32>, String, String) {
    ship_with(&[], spool, dest, env!("CARGO_BIN_EXE_latrine"))
}

/// scripts/ship.sh with `options`, and `LATRINE` set to `latrine_env`.
fn ship_with(
    options: &[&str],
    spool: &Path,
    dest: &Path,
    latrine_env: &str,
) -> (Option<i32>, String, String) {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ship.sh"))
        .args(options)
        .arg(spool)
        .arg(dest)
        .env("LATRINE", latrine_env)
        .output()
        .expect("run scripts/ship.sh");
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn ship_copies_verifies_and_prunes() {
    if !require_tool("rsync") {
        return;
    }
    let (dir, spool, sessions) = fresh();
    let dest = dir.path().join("evidence");
    // --dry-run copies and verifies, and deletes nothing.
    let bin = env!("CARGO_BIN_EXE_latrine");
    let (code, out, err) = ship_with(&["--dry-run"], &spool, &dest, bin);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("4 sessions and 0 denial files would be deleted"),
        "{out}"
    );
    assert_eq!(support::sealed_sessions(&spool).len(), sessions.len());
    assert_eq!(support::sealed_sessions(&dest).len(), sessions.len());
    let (code, out, err) = ship(&spool, &dest);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(support::sealed_sessions(&spool).is_empty(), "{out}");
    assert_eq!(support::sealed_sessions(&dest).len(), sessions.len());
    assert!(!dest.join(".incoming").exists());
    // Today's denial counts are shipped (and verified at DEST), not pruned.
    let today = format!("{SENSOR}/denials/{}.log", day(0));
    assert!(out.contains("kept 1: today's denial counts"), "{out}");
    assert_eq!(
        std::fs::read(spool.join(&today)).unwrap(),
        std::fs::read(dest.join(&today)).unwrap()
    );
    assert!(out.contains("1 denial files"), "{out}");
    assert!(spool.join(".incoming").read_dir().unwrap().next().is_some());
    let verified = latrine_within(&["verify", dest.to_str().unwrap()], Duration::from_secs(60));
    assert_eq!(verified.status.code(), Some(0));
    // A second ship has nothing to do (the binary given by --latrine,
    // which wins over LATRINE).
    let before = support::sealed_sessions(&dest);
    let bin = env!("CARGO_BIN_EXE_latrine");
    let (code, out, err) = ship_with(&["--latrine", bin], &spool, &dest, "/nonexistent");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("0 sessions and 0 denial files deleted"),
        "{out}"
    );
    assert_eq!(support::sealed_sessions(&dest), before);
}

#[test]
fn ship_stops_when_dest_does_not_verify() {
    if !require_tool("rsync") {
        return;
    }
    let (dir, spool, sessions) = fresh();
    let dest = dir.path().join("evidence");
    // A file planted at DEST in one session: rsync leaves it, verify fails.
    let planted = dest.join(rel(&spool, &sessions[0]));
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::write(planted.join("planted"), b"x").unwrap();
    let (code, out, err) = ship(&spool, &dest);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(out.contains("UNLISTED"), "{out}");
    assert!(err.contains("nothing pruned"), "{err}");
    assert_eq!(support::sealed_sessions(&spool).len(), sessions.len());
}
