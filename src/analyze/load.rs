//! Stage 2: loading one session, on a worker thread: its manifest (through
//! the writer's own [`Manifest`] type), each message file (hashed, then
//! parsed for its body) and the client's enrichment.
//!
//! Nothing here follows a symbolic link: every file is opened with
//! `O_NOFOLLOW` after checking that no directory on its way is a link, and
//! `O_NONBLOCK` so that a planted FIFO cannot block the run. Whatever cannot
//! be read becomes a [`Problem`] and the rest of the session is still used.

use super::enrich::{Enrichment, IpFacts};
use super::parse::{BodyFacts, Guarded};
use super::walk::SessionDir;
use crate::escape::hex;
use crate::spool::Manifest;
use crate::spool::writer::MANIFEST;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path};

/// Largest manifest read (a session lists at most 100 messages of at most
/// 1000 attachments each).
const MAX_MANIFEST: u64 = 64 * 1024 * 1024;

/// Something wrong with a session or one of its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file in the session (`messages/1.eml`), empty for the session.
    pub file: String,
    /// `manifest`, `message`, `parse`, `enrich`...
    pub stage: &'static str,
    pub reason: String,
}

/// One message of the manifest, as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedMessage {
    /// Its position in `manifest.messages`.
    pub position: usize,
    /// sha256 of the file as read; the manifest's when it could not be read.
    pub sha256: String,
    pub size: u64,
    /// None when the body could not be read or parsed (see the problems).
    pub body: Option<BodyFacts>,
}

#[derive(Debug)]
pub struct LoadedSession {
    pub dir: SessionDir,
    pub manifest: Manifest,
    pub messages: Vec<LoadedMessage>,
    pub client: IpFacts,
    pub problems: Vec<Problem>,
}

/// A worker's result for one session.
#[derive(Debug)]
pub enum Loaded {
    Session(Box<LoadedSession>),
    /// Nothing usable (no manifest, or not a valid one).
    Unreadable {
        dir: SessionDir,
        problems: Vec<Problem>,
    },
}

/// Limits and shared state for loading.
pub struct LoadOptions<'a> {
    pub enrichment: &'a Enrichment,
    /// Messages bigger than this are hashed but not parsed.
    pub max_parse: u64,
}

/// Opens `rel` under `dir` for reading without following any symbolic link,
/// and only if it is a regular file.
pub fn open_in(dir: &Path, rel: &str) -> Result<File, String> {
    let components: Vec<Component> = Path::new(rel).components().collect();
    if components.is_empty() || !components.iter().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("{rel:?} is not a path inside the session"));
    }
    let link = |at: &Path| {
        let target = std::fs::read_link(at)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        format!("symbolic link to {target:?}, not followed")
    };
    // O_NOFOLLOW guards the last component only: check the directories.
    let mut at = dir.to_path_buf();
    for component in &components[..components.len() - 1] {
        at.push(component);
        let meta = std::fs::symlink_metadata(&at).map_err(|e| e.to_string())?;
        if meta.file_type().is_symlink() {
            return Err(link(&at));
        }
        if !meta.is_dir() {
            return Err("not a directory on the way".into());
        }
    }
    if let Some(last) = components.last() {
        at.push(last);
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&at)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                link(&at)
            } else {
                e.to_string()
            }
        })?;
    // A FIFO or device opens (O_NONBLOCK) but is never read.
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(file),
        Ok(_) => Err("not a regular file".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads a whole file, hashing it, keeping at most `keep` bytes.
fn read_hashed(file: File, keep: u64) -> std::io::Result<(Vec<u8>, u64, String)> {
    let expected = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut kept = Vec::with_capacity(expected.min(keep) as usize);
    let mut file = file.take(keep);
    file.read_to_end(&mut kept)?;
    let mut hasher = Sha256::new();
    hasher.update(&kept);
    let mut size = kept.len() as u64;
    // Past `keep`: hashed, not kept.
    let mut file = file.into_inner();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((kept, size, hex(&hasher.finalize())))
}

/// Loads the session in `dir`.
pub fn load(dir: &SessionDir, options: &LoadOptions, parser: &mut Guarded) -> Loaded {
    let unreadable = |reason: String| Loaded::Unreadable {
        dir: dir.clone(),
        problems: vec![Problem {
            file: MANIFEST.into(),
            stage: "manifest",
            reason,
        }],
    };
    let bytes = match open_in(&dir.dir, MANIFEST) {
        Ok(file) => {
            let mut bytes = Vec::new();
            match file.take(MAX_MANIFEST + 1).read_to_end(&mut bytes) {
                Ok(_) if bytes.len() as u64 > MAX_MANIFEST => {
                    return unreadable(format!("larger than {MAX_MANIFEST} bytes"));
                }
                Ok(_) => bytes,
                Err(e) => return unreadable(format!("cannot read: {e}")),
            }
        }
        Err(e) => return unreadable(format!("cannot open: {e}")),
    };
    let manifest = match Manifest::from_json(&bytes) {
        Ok(m) => m,
        Err(e) => return unreadable(e),
    };
    drop(bytes);
    let mut problems = Vec::new();
    let mut messages = Vec::with_capacity(manifest.messages.len());
    for (position, record) in manifest.messages.iter().enumerate() {
        let mut problem = |stage, reason| {
            problems.push(Problem {
                file: record.file.clone(),
                stage,
                reason,
            })
        };
        let mut loaded = LoadedMessage {
            position,
            sha256: record.sha256.clone(),
            size: record.size,
            body: None,
        };
        let read = open_in(&dir.dir, &record.file)
            .and_then(|f| read_hashed(f, options.max_parse).map_err(|e| e.to_string()));
        let (eml, size, sha256) = match read {
            Ok(read) => read,
            Err(e) => {
                problem("message", format!("cannot read: {e}"));
                messages.push(loaded);
                continue;
            }
        };
        if sha256 != record.sha256 || size != record.size {
            problem(
                "message",
                format!(
                    "differs from the manifest (size {size}, sha256 {sha256}; the manifest \
                     says {}, {}): counted as read; run latrine verify",
                    record.size, record.sha256
                ),
            );
        }
        loaded.sha256 = sha256;
        loaded.size = size;
        if size > options.max_parse {
            problem(
                "parse",
                format!(
                    "{size} bytes, over --max-parse-size {}: body not analysed",
                    options.max_parse
                ),
            );
        } else {
            match parser.parse(eml) {
                Ok(mut body) => {
                    if let Some(note) = body.note.take() {
                        problem("parse", note);
                    }
                    loaded.body = Some(body);
                }
                Err(e) => problem("parse", e),
            }
        }
        messages.push(loaded);
    }
    let (client, errors) = options.enrichment.ip(&manifest.client.ip);
    for reason in errors {
        problems.push(Problem {
            file: String::new(),
            stage: "enrich",
            reason,
        });
    }
    Loaded::Session(Box::new(LoadedSession {
        dir: dir.clone(),
        manifest,
        messages,
        client,
        problems,
    }))
}
