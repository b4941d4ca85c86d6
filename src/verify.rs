//! `latrine verify`: checks sealed sessions against their manifests, the
//! chain-of-custody check to run after every copy of the evidence.
//!
//! For every session under the spools given (`.incoming` skipped): every
//! file the manifest lists must be there as a regular file with the recorded
//! size and sha256, and no other file may be there but `manifest.json`. One
//! line per problem, on standard output, in walk order:
//!
//! ```text
//! ALTERED <session>/<file>: sha256 expected <hex> got <hex>
//! MISSING <session>/<file>: listed in the manifest, not found
//! UNLISTED <session>/<file>: not in the manifest (<n> bytes)
//! SYMLINK <path>: symbolic link to <target>, not followed
//! SPECIAL <session>/<file>: not a regular file (fifo, socket, device...), not read
//! UNREADABLE <path>: <reason>
//! BAD-MANIFEST <session>: <reason>
//! MISPLACED <session>: the manifest is for session <id>
//! BAD-DENIALS <sensor>/denials/<date>.log:<line>: <reason>
//! TORN-DENIALS <sensor>/denials/<date>.log: last line incomplete (the sensor stopped while writing it)
//! ```
//!
//! then `N sessions checked, M problems` (`N sessions checked, K denial
//! files, M problems` when there are denial files). Exit status 0 when there is no
//! problem, 1 otherwise, 2 for a usage error. Symbolic links are never
//! followed and special files never opened, so a planted link cannot make
//! `verify` read outside the spool or block on a FIFO.

use crate::analyze::pipeline;
use crate::analyze::walk::{self, Found, WalkProblemKind};
use crate::escape::escape_text;
use crate::spool::writer::{MANIFEST, hash_file};
use crate::spool::{Manifest, denials};
use clap::Args;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

/// Largest manifest read.
const MAX_MANIFEST: u64 = 64 * 1024 * 1024;
/// Directory levels inside a session (it has one: `messages/`, `attachments/`).
const MAX_DEPTH: usize = 8;

/// Options of `latrine verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Spool directories to check (or sensors, days, single sessions).
    #[arg(required = true, value_name = "SPOOL")]
    pub spools: Vec<PathBuf>,

    /// Sessions checked in parallel. Default: one per CPU.
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
}

/// What can be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Altered,
    Missing,
    Unlisted,
    Symlink,
    Special,
    Unreadable,
    BadManifest,
    Misplaced,
    BadDenials,
    TornDenials,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Altered => "ALTERED",
            Kind::Missing => "MISSING",
            Kind::Unlisted => "UNLISTED",
            Kind::Symlink => "SYMLINK",
            Kind::Special => "SPECIAL",
            Kind::Unreadable => "UNREADABLE",
            Kind::BadManifest => "BAD-MANIFEST",
            Kind::Misplaced => "MISPLACED",
            Kind::BadDenials => "BAD-DENIALS",
            Kind::TornDenials => "TORN-DENIALS",
        }
    }
}

/// One problem: its kind, the path concerned, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub path: PathBuf,
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names in a tampered spool may hold anything: escape them.
        let path = escape_text(self.path.as_os_str().as_bytes());
        write!(f, "{} {path}: {}", self.kind.label(), self.detail)
    }
}

pub fn run(args: VerifyArgs) -> ExitCode {
    for spool in &args.spools {
        if !spool.is_dir() {
            eprintln!("latrine verify: {}: not a directory", spool.display());
            return ExitCode::from(2);
        }
    }
    let jobs = match args.jobs {
        Some(0) => {
            eprintln!("latrine verify: --jobs must be at least 1");
            return ExitCode::from(2);
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
    };
    let mut sessions = 0u64;
    let mut denial_files = 0u64;
    let mut problems = 0u64;
    let mut out = std::io::stdout().lock();
    let mut write_failed = false;
    pipeline::ordered(
        jobs,
        (jobs * 16).max(16),
        |push| walk::walk(&args.spools, &mut |found| push(found)),
        || (),
        |_, found| match found {
            Found::Session(s) => (Checked::Session, check_session(&s.dir)),
            Found::Denials(d) => (Checked::DenialFile, check_denials(d)),
            Found::Problem(p) => {
                let kind = match p.kind {
                    WalkProblemKind::Symlink => Kind::Symlink,
                    WalkProblemKind::Unreadable => Kind::Unreadable,
                };
                let finding = Finding {
                    kind,
                    path: p.path.clone(),
                    detail: p.reason.clone(),
                };
                (Checked::Nothing, vec![finding])
            }
        },
        |outcome| {
            let (session, findings) = match outcome {
                Ok(result) => result,
                Err((found, panic)) => {
                    let path = match found {
                        Found::Session(s) => s.dir,
                        Found::Denials(d) => d.path,
                        Found::Problem(p) => p.path,
                    };
                    let detail = format!("internal error while checking: {panic}");
                    (
                        Checked::Nothing,
                        vec![Finding {
                            kind: Kind::Unreadable,
                            path,
                            detail,
                        }],
                    )
                }
            };
            match session {
                Checked::Session => sessions += 1,
                Checked::DenialFile => denial_files += 1,
                Checked::Nothing => {}
            }
            problems += findings.len() as u64;
            for finding in findings {
                write_failed |= writeln!(out, "{finding}").is_err();
            }
        },
    );
    let denials = if denial_files > 0 {
        format!(", {denial_files} denial files")
    } else {
        String::new()
    };
    write_failed |= writeln!(
        out,
        "{sessions} sessions checked{denials}, {problems} problems"
    )
    .is_err();
    write_failed |= out.flush().is_err();
    if problems > 0 || write_failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What one item of the walk was.
enum Checked {
    Session,
    DenialFile,
    Nothing,
}

/// A denial day file: its header, every line, and a torn last line.
fn check_denials(file: &walk::DenialsFile) -> Vec<Finding> {
    let day = match denials::read_day_path(&file.path, &file.sensor, &file.date) {
        Ok(day) => day,
        Err(e) => {
            return vec![Finding {
                kind: Kind::Unreadable,
                path: file.path.clone(),
                detail: format!("cannot read: {e}"),
            }];
        }
    };
    let mut findings: Vec<Finding> = day
        .problems
        .iter()
        .map(|(line, reason)| {
            let mut path = file.path.clone().into_os_string();
            path.push(format!(":{line}"));
            Finding {
                kind: Kind::BadDenials,
                path: path.into(),
                detail: reason.clone(),
            }
        })
        .collect();
    if day.incomplete_tail {
        findings.push(Finding {
            kind: Kind::TornDenials,
            path: file.path.clone(),
            detail: "last line incomplete (the sensor stopped while writing it); \
                     the lines before it are good"
                .into(),
        });
    }
    findings
}

/// What is in a session directory, without following links.
#[derive(Default)]
struct Listing {
    /// Regular files, by path relative to the session, with their size.
    files: BTreeMap<String, u64>,
    findings: Vec<Finding>,
}

fn list(dir: &Path) -> Listing {
    let mut listing = Listing::default();
    let entries = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .max_depth(MAX_DEPTH)
        .sort_by_file_name()
        .min_depth(1);
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                listing.findings.push(Finding {
                    kind: Kind::Unreadable,
                    path: e.path().unwrap_or(dir).to_path_buf(),
                    detail: e
                        .io_error()
                        .map_or_else(|| e.to_string(), |io| format!("cannot list: {io}")),
                });
                continue;
            }
        };
        let path = entry.path().to_path_buf();
        let kind = entry.file_type();
        if kind.is_symlink() {
            let target = std::fs::read_link(&path)
                .map(|t| escape_text(t.as_os_str().as_bytes()))
                .unwrap_or_else(|e| format!("(unreadable: {e})"));
            listing.findings.push(Finding {
                kind: Kind::Symlink,
                path,
                detail: format!("symbolic link to {target}, not followed"),
            });
        } else if kind.is_dir() {
            if entry.depth() == MAX_DEPTH {
                listing.findings.push(Finding {
                    kind: Kind::Unlisted,
                    path,
                    detail: format!("directory nested {MAX_DEPTH} deep, not checked"),
                });
            }
        } else if kind.is_file() {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let key = String::from_utf8_lossy(rel.as_os_str().as_bytes()).into_owned();
            listing.files.insert(key, size);
        } else {
            listing.findings.push(Finding {
                kind: Kind::Special,
                path,
                detail: "not a regular file (fifo, socket, device...), not read".into(),
            });
        }
    }
    listing
}

/// Whether a manifest's `path` names a file inside the session.
fn safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn read_manifest(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("cannot open manifest.json: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read manifest.json: {e}"))?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(format!("manifest.json is larger than {MAX_MANIFEST} bytes"));
    }
    Ok(bytes)
}

/// Every problem with one session directory.
pub fn check_session(dir: &Path) -> Vec<Finding> {
    let listing = list(dir);
    let mut findings = listing.findings;
    let bad = |detail: String| Finding {
        kind: Kind::BadManifest,
        path: dir.to_path_buf(),
        detail,
    };
    if !listing.files.contains_key(MANIFEST) {
        // A link or special file named manifest.json is already reported.
        if !findings.iter().any(|f| f.path == dir.join(MANIFEST)) {
            findings.push(bad("manifest.json is missing".into()));
        }
        return findings;
    }
    let manifest = match read_manifest(&dir.join(MANIFEST)).and_then(|b| Manifest::from_json(&b)) {
        Ok(m) => m,
        Err(e) => {
            findings.push(bad(e));
            return findings;
        }
    };
    let name = dir.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
    if name != manifest.session_id.as_bytes() {
        findings.push(Finding {
            kind: Kind::Misplaced,
            path: dir.to_path_buf(),
            detail: format!(
                "the manifest is for session {}",
                escape_text(manifest.session_id.as_bytes())
            ),
        });
    }
    // Links and special files are reported once, by the listing.
    let reported: BTreeSet<PathBuf> = findings.iter().map(|f| f.path.clone()).collect();
    let mut listed = BTreeSet::new();
    for record in &manifest.files {
        let shown = escape_text(record.path.as_bytes());
        if !safe_path(&record.path) || record.path == MANIFEST {
            findings.push(bad(format!(
                "lists {shown:?}, which is not a file of the session"
            )));
            continue;
        }
        if !listed.insert(record.path.as_str()) {
            findings.push(bad(format!("lists {shown} twice")));
            continue;
        }
        let path = dir.join(&record.path);
        if !listing.files.contains_key(&record.path) {
            if !reported.contains(&path) {
                findings.push(Finding {
                    kind: Kind::Missing,
                    path,
                    detail: "listed in the manifest, not found".into(),
                });
            }
            continue;
        }
        match hash_file(&path) {
            Ok((size, sha256)) => {
                let mut wrong = Vec::new();
                if size != record.size {
                    wrong.push(format!("size expected {} got {size}", record.size));
                }
                if sha256 != record.sha256 {
                    wrong.push(format!(
                        "sha256 expected {} got {sha256}",
                        escape_text(record.sha256.as_bytes())
                    ));
                }
                if !wrong.is_empty() {
                    findings.push(Finding {
                        kind: Kind::Altered,
                        path,
                        detail: wrong.join(", "),
                    });
                }
            }
            Err(e) => findings.push(Finding {
                kind: Kind::Unreadable,
                path,
                detail: format!("cannot read: {e}"),
            }),
        }
    }
    for (file, size) in &listing.files {
        if file != MANIFEST && !listed.contains(file.as_str()) {
            findings.push(Finding {
                kind: Kind::Unlisted,
                path: dir.join(file),
                detail: format!("not in the manifest ({size} bytes)"),
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_must_stay_inside() {
        assert!(safe_path("messages/1.eml"));
        assert!(safe_path("attachments/ab"));
        for bad in ["", "/etc/passwd", "../x", "messages/../../x", "./x", "a\\b"] {
            assert!(!safe_path(bad), "{bad}");
        }
    }
}
