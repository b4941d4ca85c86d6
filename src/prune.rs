//! `latrine prune --verified-in DEST SPOOL`: frees a sensor's disk of the
//! evidence already shipped, and of nothing else.
//!
//! A sealed session `<sensor>/<YYYY>/<MM>/<DD>/<id>/` of SPOOL is deleted
//! only when the same path under DEST is a directory (no link on the way)
//! whose copy verifies against its manifest ([`crate::verify::check_session`]),
//! the local copy verifies too, and both `manifest.json` are byte-identical.
//! The manifest lists every other file with its sha256, and verification
//! allows no unlisted file, so the two copies then hold the same files with
//! the same bytes. A denial-count file `<sensor>/denials/YYYY-MM-DD.log` is
//! deleted only when its day is over (UTC) and DEST holds a byte-identical
//! copy. Everything else is kept: `.incoming/`, links (never followed),
//! sessions missing or different at DEST, names outside the layout.
//!
//! Emptied day, month and year directories are removed, except those of
//! today and yesterday (UTC): the listener may be about to seal a session
//! into them.
//!
//! Without `--yes` nothing is deleted: what would be is listed. The kept
//! entries are summarised by reason (`--verbose` lists each). Exit status 0,
//! 1 when a deletion failed, 2 for bad input.

use crate::analyze::pipeline;
use crate::analyze::walk::is_session_id;
use crate::escape::escape_text;
use crate::spool::denials::{DENIALS, is_day_file};
use crate::spool::writer::{INCOMING, MANIFEST};
use crate::verify::check_session;
use clap::Args;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of `latrine prune`.
#[derive(Debug, Args)]
#[command(
    after_help = "Typical use, after `rsync -a --exclude=.incoming SPOOL/ DEST/` and \
    `latrine verify DEST`: `latrine prune --verified-in DEST SPOOL`, check the list, \
    then again with --yes. scripts/ship.sh does all three."
)]
pub struct PruneArgs {
    /// The copy of the spool (a local directory) that must hold a verified,
    /// byte-identical copy of every session deleted.
    #[arg(long, value_name = "DEST")]
    pub verified_in: PathBuf,

    /// The sensor's spool to prune.
    #[arg(value_name = "SPOOL")]
    pub spool: PathBuf,

    /// Delete. Without it, only list what would be deleted.
    #[arg(long)]
    pub yes: bool,

    /// List every entry kept, with the reason (otherwise counted by reason).
    #[arg(long, short = 'v')]
    pub verbose: bool,

    /// Sessions checked in parallel. Default: one per CPU.
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
}

/// Something found in SPOOL that prune considers.
#[derive(Debug, Clone)]
enum Candidate {
    /// A sealed session: its path relative to the spool.
    Session(PathBuf),
    /// A denial-count file and its day (`YYYY-MM-DD`).
    Denied(PathBuf, String),
    /// Anything else, kept without a look inside.
    Other(PathBuf, &'static str),
}

/// What to do with a candidate.
#[derive(Debug)]
enum Verdict {
    Delete,
    Keep(String),
}

pub fn run(args: PruneArgs) -> ExitCode {
    match prune(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("latrine prune: {e}");
            ExitCode::from(2)
        }
    }
}

fn shown(path: &Path) -> String {
    escape_text(path.as_os_str().as_bytes())
}

/// SPOOL and DEST must be real, distinct directories, and SPOOL a spool.
fn check_inputs(spool: &Path, dest: &Path) -> Result<(), String> {
    for (what, path) in [("SPOOL", spool), ("DEST (--verified-in)", dest)] {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{what} {}: not a directory", shown(path))),
            Err(e) => return Err(format!("{what} {}: {e}", shown(path))),
        }
    }
    let (s, d) = (std::fs::metadata(spool), std::fs::metadata(dest));
    if let (Ok(s), Ok(d)) = (s, d)
        && (s.dev(), s.ino()) == (d.dev(), d.ino())
    {
        return Err(format!(
            "{} and {} are the same directory: a spool cannot be its own copy",
            shown(spool),
            shown(dest)
        ));
    }
    if let (Ok(s), Ok(d)) = (spool.canonicalize(), dest.canonicalize())
        && (d.starts_with(&s) || s.starts_with(&d))
    {
        return Err(format!(
            "{} and {} are inside one another: give DEST outside the spool",
            shown(spool),
            shown(dest)
        ));
    }
    if !looks_like_spool(spool) {
        return Err(format!(
            "{}: not a spool (no {INCOMING}/ and no <sensor>/<YYYY>/ directory)",
            shown(spool)
        ));
    }
    Ok(())
}

fn looks_like_spool(spool: &Path) -> bool {
    if is_real_dir(&spool.join(INCOMING)) {
        return true;
    }
    entries(spool).into_iter().any(|(name, kind)| {
        kind.is_dir()
            && !name.as_bytes().starts_with(b".")
            && entries(&spool.join(&name))
                .into_iter()
                .any(|(n, k)| k.is_dir() && is_digits(n.as_bytes(), 4))
    })
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn is_digits(name: &[u8], len: usize) -> bool {
    name.len() == len && name.iter().all(u8::is_ascii_digit)
}

/// A directory's entries, sorted, with their types (not following links).
fn entries(dir: &Path) -> Vec<(std::ffi::OsString, std::fs::FileType)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name(), e.file_type().ok()?)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every candidate under SPOOL, in name order, following the layout strictly.
fn candidates(spool: &Path, push: &mut dyn FnMut(Candidate) -> bool) {
    // Levels below a sensor: YYYY (4 digits), MM, DD (2), then session ids.
    fn walk(
        spool: &Path,
        rel: &Path,
        level: usize,
        push: &mut dyn FnMut(Candidate) -> bool,
    ) -> bool {
        for (name, kind) in entries(&spool.join(rel)) {
            let path = rel.join(&name);
            let bytes = name.as_bytes();
            let candidate = if kind.is_symlink() {
                Candidate::Other(path, "symbolic link, not followed")
            } else if !kind.is_dir() {
                Candidate::Other(path, "not part of the spool layout")
            } else if level == 3 {
                if is_session_id(bytes) {
                    Candidate::Session(path)
                } else {
                    Candidate::Other(path, "not part of the spool layout")
                }
            } else if is_digits(bytes, if level == 0 { 4 } else { 2 }) {
                if !walk(spool, &path, level + 1, push) {
                    return false;
                }
                continue;
            } else {
                Candidate::Other(path, "not part of the spool layout")
            };
            if !push(candidate) {
                return false;
            }
        }
        true
    }
    for (sensor, kind) in entries(spool) {
        let rel = PathBuf::from(&sensor);
        if sensor == INCOMING {
            continue;
        }
        if kind.is_symlink() {
            if !push(Candidate::Other(rel, "symbolic link, not followed")) {
                return;
            }
            continue;
        }
        if !kind.is_dir() {
            continue;
        }
        for (name, kind) in entries(&spool.join(&rel)) {
            let path = rel.join(&name);
            let keep = if name == DENIALS && kind.is_dir() {
                for (file, kind) in entries(&spool.join(&path)) {
                    let day = denied_day(file.as_bytes());
                    let candidate = match day {
                        Some(day) if kind.is_file() => Candidate::Denied(path.join(&file), day),
                        _ if kind.is_symlink() => {
                            Candidate::Other(path.join(&file), "symbolic link, not followed")
                        }
                        _ => Candidate::Other(path.join(&file), "not part of the spool layout"),
                    };
                    if !push(candidate) {
                        return;
                    }
                }
                continue;
            } else if kind.is_symlink() {
                Candidate::Other(path, "symbolic link, not followed")
            } else if kind.is_dir() && is_digits(name.as_bytes(), 4) {
                if !walk(spool, &path, 1, push) {
                    return;
                }
                continue;
            } else {
                Candidate::Other(path, "not part of the spool layout")
            };
            if !push(keep) {
                return;
            }
        }
    }
}

/// `YYYY-MM-DD.log` → `YYYY-MM-DD`.
fn denied_day(name: &[u8]) -> Option<String> {
    is_day_file(name).then(|| String::from_utf8_lossy(&name[..10]).into_owned())
}

/// Whether every directory from DEST down to DEST/rel is a real directory
/// (a link on the way could lead out of DEST).
fn dest_path_is_real(dest: &Path, rel: &Path) -> Result<(), String> {
    let mut path = dest.to_path_buf();
    for part in rel.components() {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("a symbolic link at DEST: {}", shown(&path)));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err("missing at DEST".into());
            }
            Err(e) => return Err(format!("unreadable at DEST: {}: {e}", shown(&path))),
        }
    }
    Ok(())
}

fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let mut bytes = Vec::new();
    file.take(64 * 1024 * 1024).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn judge_session(spool: &Path, dest: &Path, rel: &Path) -> Verdict {
    if let Err(reason) = dest_path_is_real(dest, rel) {
        return Verdict::Keep(reason);
    }
    let (local, there) = (spool.join(rel), dest.join(rel));
    if !is_real_dir(&there) {
        return Verdict::Keep("not a directory at DEST".into());
    }
    if let Some(f) = check_session(&there).first() {
        return Verdict::Keep(format!("the copy at DEST does not verify: {f}"));
    }
    if let Some(f) = check_session(&local).first() {
        return Verdict::Keep(format!("the local copy does not verify: {f}"));
    }
    match (
        read_small(&local.join(MANIFEST)),
        read_small(&there.join(MANIFEST)),
    ) {
        (Ok(a), Ok(b)) if a == b => Verdict::Delete,
        (Ok(_), Ok(_)) => Verdict::Keep("manifest.json differs from DEST's".into()),
        (Err(e), _) | (_, Err(e)) => Verdict::Keep(format!("cannot read manifest.json: {e}")),
    }
}

/// Size and sha256 of a regular file, without following a link or blocking
/// on a FIFO.
fn hash_regular(path: &Path) -> std::io::Result<(u64, Vec<u8>)> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hasher.finalize().to_vec()))
}

fn judge_denied(spool: &Path, dest: &Path, rel: &Path, day: &str, today: &str) -> Verdict {
    if day >= today {
        return Verdict::Keep("today's denial counts, still being written".into());
    }
    if let Err(reason) = dest_path_is_real(dest, rel) {
        return Verdict::Keep(reason);
    }
    let there = match hash_regular(&dest.join(rel)) {
        Ok(h) => h,
        Err(e) => return Verdict::Keep(format!("the copy at DEST cannot be read: {e}")),
    };
    match hash_regular(&spool.join(rel)) {
        Ok(here) if here == there => Verdict::Delete,
        Ok(_) => Verdict::Keep("differs from the copy at DEST".into()),
        Err(e) => Verdict::Keep(format!("cannot be read: {e}")),
    }
}

/// Today's UTC date, `YYYY-MM-DD`, and the day before.
fn today_and_yesterday() -> (String, String) {
    let now = crate::timestamp::now();
    let day = |t: time::OffsetDateTime| crate::timestamp::rfc3339(t)[..10].to_string();
    (day(now), day(now - time::Duration::days(1)))
}

/// Removes `rel`'s day, month and year directories if they are empty, and
/// not today's or yesterday's day.
fn remove_empty_parents(spool: &Path, rel: &Path, recent: &[String; 2]) {
    let Some(day_rel) = rel.parent() else { return };
    let parts: Vec<String> = day_rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if let [_, y, m, d] = &parts[..]
        && recent.iter().any(|r| *r == format!("{y}-{m}-{d}"))
    {
        return;
    }
    let mut dir = day_rel;
    // Day, month, year: three levels, never the sensor directory.
    for _ in 0..3 {
        if std::fs::remove_dir(spool.join(dir)).is_err() {
            return;
        }
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return,
        }
    }
}

fn prune(args: &PruneArgs) -> Result<ExitCode, String> {
    let (spool, dest) = (&args.spool, &args.verified_in);
    check_inputs(spool, dest)?;
    let jobs = match args.jobs {
        Some(0) => return Err("--jobs must be at least 1".into()),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
    };
    let (today, yesterday) = today_and_yesterday();
    let recent = [today.clone(), yesterday];
    let mut out = std::io::stdout().lock();
    let mut write_failed = false;
    let mut kept: BTreeMap<String, u64> = BTreeMap::new();
    let (mut sessions, mut denied, mut failed) = (0u64, 0u64, 0u64);
    let verb = if args.yes { "deleted" } else { "would delete" };
    pipeline::ordered(
        jobs,
        (jobs * 16).max(16),
        |push| candidates(spool, push),
        || (),
        |_, candidate| match candidate {
            Candidate::Session(rel) => (candidate.clone(), judge_session(spool, dest, rel)),
            Candidate::Denied(rel, day) => (
                candidate.clone(),
                judge_denied(spool, dest, rel, day, &today),
            ),
            Candidate::Other(_, why) => (candidate.clone(), Verdict::Keep((*why).into())),
        },
        |outcome| {
            let (candidate, verdict) = match outcome {
                Ok((candidate, verdict)) => (candidate, verdict),
                Err((candidate, panic)) => {
                    (candidate, Verdict::Keep(format!("internal error: {panic}")))
                }
            };
            let (rel, is_session) = match &candidate {
                Candidate::Session(rel) => (rel, true),
                Candidate::Denied(rel, _) | Candidate::Other(rel, _) => (rel, false),
            };
            let reason = match verdict {
                Verdict::Keep(reason) => reason,
                Verdict::Delete if !args.yes => {
                    write_failed |= writeln!(out, "{verb} {}", shown(rel)).is_err();
                    *if is_session {
                        &mut sessions
                    } else {
                        &mut denied
                    } += 1;
                    return;
                }
                Verdict::Delete => {
                    let path = spool.join(rel);
                    let removed = if is_session {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    match removed {
                        Ok(()) => {
                            write_failed |= writeln!(out, "{verb} {}", shown(rel)).is_err();
                            *if is_session {
                                &mut sessions
                            } else {
                                &mut denied
                            } += 1;
                            if is_session {
                                remove_empty_parents(spool, rel, &recent);
                            }
                            return;
                        }
                        Err(e) => {
                            failed += 1;
                            eprintln!("latrine prune: cannot delete {}: {e}", shown(rel));
                            format!("deletion failed: {e}")
                        }
                    }
                }
            };
            // The words before the first colon name the reason; the rest
            // is this entry's detail.
            let key = reason.split(':').next().unwrap_or(&reason).to_string();
            *kept.entry(key).or_default() += 1;
            if args.verbose {
                write_failed |= writeln!(out, "keep {}: {reason}", shown(rel)).is_err();
            }
        },
    );
    let kept_total: u64 = kept.values().sum();
    write_failed |= writeln!(
        out,
        "{sessions} sessions and {denied} denial files {}, {kept_total} kept",
        if args.yes {
            "deleted"
        } else {
            "would be deleted (run again with --yes to delete them)"
        }
    )
    .is_err();
    for (reason, n) in &kept {
        write_failed |= writeln!(out, "  kept {n}: {reason}").is_err();
    }
    write_failed |= out.flush().is_err();
    Ok(if failed > 0 || write_failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
