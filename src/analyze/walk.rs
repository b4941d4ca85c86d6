//! Stage 1: finding sealed sessions under the spools given, without reading
//! them. Shared by `analyze` and `verify`.
//!
//! A session directory is recognised by its name (a session id) and is not
//! opened, so the walk reads only the sensor and date directories: no `stat`
//! or read per session or evidence file, whatever the size of the spool. A
//! directory with another name that holds a `manifest.json` (a session copied
//! under a new name) is found too. `.incoming` is skipped, symbolic links are
//! never followed (each one is reported), and entries come in file-name order
//! so that every run sees the same sequence.

use crate::spool::denials;
use crate::spool::writer::{INCOMING, MANIFEST};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Deeper than any spool layout (`sensor/YYYY/MM/DD/id` is 5); a directory at
/// this depth is reported rather than walked.
const MAX_DEPTH: usize = 24;

/// A sealed session's directory.
#[derive(Debug, Clone)]
pub struct SessionDir {
    /// Index of the spool (in the order given) it was found under.
    pub spool: usize,
    pub dir: PathBuf,
    /// Path relative to the spool, `/`-separated; `.` when the spool given
    /// is the session itself.
    pub rel: String,
}

/// Something the walk could not take as a session or a directory.
#[derive(Debug, Clone)]
pub struct WalkProblem {
    pub spool: usize,
    pub path: PathBuf,
    pub rel: String,
    pub kind: WalkProblemKind,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkProblemKind {
    /// A symbolic link: not followed.
    Symlink,
    /// A directory that could not be read, or was too deep.
    Unreadable,
}

/// A sensor's denial counts for one day (`<sensor>/denials/<date>.log`).
#[derive(Debug, Clone)]
pub struct DenialsFile {
    pub spool: usize,
    pub path: PathBuf,
    pub rel: String,
    /// The name of the directory above `denials/`.
    pub sensor: String,
    /// `YYYY-MM-DD`, from the file name.
    pub date: String,
}

#[derive(Debug, Clone)]
pub enum Found {
    Session(SessionDir),
    Denials(Box<DenialsFile>),
    Problem(WalkProblem),
}

/// Whether `name` looks like a session id: `YYYYMMDDTHHMMSS.ffffffZ-` and 16
/// hex digits.
pub fn is_session_id(name: &[u8]) -> bool {
    if name.len() != 40 {
        return false;
    }
    name.iter().enumerate().all(|(i, &b)| match i {
        8 => b == b'T',
        15 => b == b'.',
        22 => b == b'Z',
        23 => b == b'-',
        24.. => b.is_ascii_hexdigit(),
        _ => b.is_ascii_digit(),
    })
}

/// The path of `path` relative to `root`, for reports.
fn relative(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => crate::escape::escape_text(rel.as_os_str().as_bytes()),
        Err(_) => crate::escape::escape_text(path.as_os_str().as_bytes()),
    }
}

/// Walks every root in order and hands each session and problem to `emit`,
/// which returns false to stop early.
pub fn walk(roots: &[PathBuf], emit: &mut dyn FnMut(Found) -> bool) {
    for (index, root) in roots.iter().enumerate() {
        if !walk_root(index, root, emit) {
            return;
        }
    }
}

/// One directory's entries, sorted by name: (name, type).
type Listing = std::vec::IntoIter<(OsString, std::fs::FileType)>;

fn list(dir: &Path) -> std::io::Result<(Listing, Vec<(OsString, std::io::Error)>)> {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // From the directory entry itself (d_type) where the file system
        // gives it: no stat per entry.
        match entry.file_type() {
            Ok(kind) => entries.push((entry.file_name(), kind)),
            Err(e) => errors.push((entry.file_name(), e)),
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((entries.into_iter(), errors))
}

/// Lists `dir` onto the stack; what cannot be read is reported.
fn enter(
    dir: &Path,
    stack: &mut Vec<(PathBuf, Listing)>,
    emit: &mut dyn FnMut(Found) -> bool,
    unreadable: &dyn Fn(&Path, std::io::Error) -> Found,
) -> bool {
    match list(dir) {
        Ok((entries, errors)) => {
            for (name, e) in errors {
                if !emit(unreadable(&dir.join(name), e)) {
                    return false;
                }
            }
            stack.push((dir.to_path_buf(), entries));
            true
        }
        Err(e) => emit(unreadable(dir, e)),
    }
}

// Not walkdir: it opens and reads every directory it yields, even one
// skipped at once, which here is every session (3 s per 100,000 sessions on
// the test machine against 0.1 s for this).
fn walk_root(index: usize, root: &Path, emit: &mut dyn FnMut(Found) -> bool) -> bool {
    let session = |path: &Path| {
        Found::Session(SessionDir {
            spool: index,
            dir: path.to_path_buf(),
            rel: relative(root, path),
        })
    };
    let problem = |path: &Path, kind, reason: String| {
        Found::Problem(WalkProblem {
            spool: index,
            path: path.to_path_buf(),
            rel: relative(root, path),
            kind,
            reason,
        })
    };
    // The root itself may be one session (`latrine verify spool/s/2026/.../<id>`).
    let root_name = root.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
    if root.is_dir() && (is_session_id(root_name) || root.join(MANIFEST).is_file()) {
        return emit(session(root));
    }
    let unreadable = |path: &Path, e: std::io::Error| {
        problem(
            path,
            WalkProblemKind::Unreadable,
            format!("cannot read: {e}"),
        )
    };
    // Depth-first, in name order: a stack of the directories being listed.
    let mut stack: Vec<(PathBuf, Listing)> = Vec::new();
    if !enter(root, &mut stack, emit, &unreadable) {
        return false;
    }
    loop {
        let depth = stack.len();
        let Some((dir, entries)) = stack.last_mut() else {
            break;
        };
        let Some((name, kind)) = entries.next() else {
            stack.pop();
            continue;
        };
        let path = dir.join(&name);
        let name = name.as_bytes();
        let found = if kind.is_symlink() {
            let target = std::fs::read_link(&path)
                .map(|t| crate::escape::escape_text(t.as_os_str().as_bytes()))
                .unwrap_or_else(|e| format!("(unreadable: {e})"));
            let reason = format!("symbolic link to {target}, not followed");
            Some(problem(&path, WalkProblemKind::Symlink, reason))
        } else if kind.is_dir() {
            if name == INCOMING.as_bytes() {
                None
            } else if is_session_id(name) {
                Some(session(&path))
            } else if depth >= MAX_DEPTH {
                let reason = format!("more than {MAX_DEPTH} levels deep, not walked");
                Some(problem(&path, WalkProblemKind::Unreadable, reason))
            } else {
                if !enter(&path, &mut stack, emit, &unreadable) {
                    return false;
                }
                None
            }
        } else if kind.is_file()
            && denials::is_day_file(name)
            && dir.file_name().is_some_and(|d| d == denials::DENIALS)
        {
            let sensor = dir
                .parent()
                .and_then(Path::file_name)
                .map(|s| crate::escape::escape_text(s.as_bytes()))
                .unwrap_or_default();
            Some(Found::Denials(Box::new(DenialsFile {
                spool: index,
                path: path.clone(),
                rel: relative(root, &path),
                sensor,
                // is_day_file: 10 ASCII characters then `.log`.
                date: String::from_utf8_lossy(&name[..10]).into_owned(),
            })))
        } else if kind.is_file() && name == MANIFEST.as_bytes() {
            // A session under another name; what else is in it is walked
            // too, which costs little and finds nothing more.
            path.parent().map(session)
        } else {
            None
        };
        if let Some(found) = found
            && !emit(found)
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids() {
        assert!(is_session_id(b"20261127T162231.123456Z-9f3a0c1b2d4e5f60"));
        assert!(!is_session_id(b"20261127T162231.123456Z-9f3a0c1b2d4e5f6"));
        assert!(!is_session_id(b"20261127X162231.123456Z-9f3a0c1b2d4e5f60"));
        assert!(!is_session_id(b"20261127T162231.123456Z-9f3a0c1b2d4e5fzz"));
        assert!(!is_session_id(b".incoming"));
    }
}
