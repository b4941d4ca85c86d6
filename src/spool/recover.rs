//! Sealing what a crash left in `.incoming/`.
//!
//! A session directory still in `.incoming` at start-up belongs to a listener
//! that died (kill -9, power cut, panic). It is sealed, never deleted: its
//! journal (`events.jsonl`) is folded into a manifest exactly as a live
//! session's events are, message files that the journal does not finish are
//! hashed and kept as truncated, and the session is marked
//! `end_reason: "recovered"`.

use super::manifest::ManifestBuilder;
use super::writer::{JOURNAL, MANIFEST, Spool, hash_file, seal};
use crate::events::{EndReason, Event, EventRecord, StoredMessage, Truncation};
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Outcome of recovering one directory.
#[derive(Debug)]
pub struct Recovered {
    pub incoming: PathBuf,
    pub result: io::Result<PathBuf>,
}

/// Seals every session left in `.incoming`. Call before accepting connections.
pub fn recover(spool: &Arc<Spool>) -> io::Result<Vec<Recovered>> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(spool.incoming())? {
        let entry = entry?;
        // Only real directories: a symlink planted here is not followed.
        if entry.file_type()?.is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    for dir in dirs {
        let result = recover_one(spool, &dir);
        out.push(Recovered {
            incoming: dir,
            result,
        });
    }
    Ok(out)
}

fn recover_one(spool: &Arc<Spool>, dir: &Path) -> io::Result<PathBuf> {
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut builder = ManifestBuilder::new(&id, spool.sensor());
    builder.flag("recovered");
    let mut last_at = None;
    match fs::File::open(dir.join(JOURNAL)) {
        Ok(file) => {
            for line in BufReader::new(file).split(b'\n') {
                let line = line?;
                match serde_json::from_slice::<EventRecord>(&line) {
                    Ok(record) => {
                        last_at = Some(record.at.clone());
                        builder.apply(&record);
                    }
                    // A torn last line is expected after kill -9; anything
                    // else is worth flagging too.
                    Err(_) => builder.flag("journal_damaged"),
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => builder.flag("journal_missing"),
        Err(e) => return Err(e),
    }
    let at = last_at.unwrap_or_else(|| fallback_time(dir, &id));
    keep_unfinished_messages(dir, &mut builder, &at)?;
    builder.apply(&EventRecord {
        at: at.clone(),
        sensor: spool.sensor().into(),
        session_id: id.clone(),
        client_ip: String::new(),
        event: Event::Closed {
            reason: EndReason::Recovered,
            commands: 0,
        },
    });
    {
        let m = builder.manifest_mut();
        if m.started_at.is_empty() {
            m.started_at = at.clone();
        }
        m.session_id = id;
    }
    // A manifest torn by a crash during sealing is kept, under another name.
    let partial = dir.join(MANIFEST);
    if partial.exists() {
        fs::rename(&partial, dir.join("manifest.partial.json"))?;
        builder.flag("manifest_partial");
    }
    seal(spool, dir, builder)
}

/// Message files whose `message.stored` event never came are kept as
/// truncated, with their real size and hash.
fn keep_unfinished_messages(dir: &Path, builder: &mut ManifestBuilder, at: &str) -> io::Result<()> {
    let messages = dir.join("messages");
    let Ok(entries) = fs::read_dir(&messages) else {
        return Ok(());
    };
    let mut found: Vec<(u32, String)> = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let index = name
            .strip_suffix(".eml")
            .and_then(|n| n.parse::<u32>().ok());
        if let (Some(index), true) = (index, entry.file_type()?.is_file()) {
            found.push((index, format!("messages/{name}")));
        }
    }
    found.sort();
    let manifest_files: Vec<String> = builder
        .manifest_mut()
        .messages
        .iter()
        .map(|m| m.file.clone())
        .collect();
    for (index, file) in found {
        if manifest_files.contains(&file) {
            continue;
        }
        let (size, sha256) = hash_file(&dir.join(&file))?;
        let record = EventRecord {
            at: at.into(),
            sensor: String::new(),
            session_id: String::new(),
            client_ip: String::new(),
            event: Event::MessageStored(StoredMessage {
                index,
                file,
                size,
                sha256,
                received_size: size,
                truncated: true,
                truncated_reason: Some(Truncation::Interrupted),
                bare_lf: false,
                bare_cr: false,
                smuggling: false,
                chunked: false,
                undoubled_dots: Vec::new(),
                accepted: false,
                queue_id: None,
                reply: None,
            }),
        };
        builder.apply(&record);
    }
    Ok(())
}

/// When the journal has no time at all: the id's own timestamp, else the
/// directory's modification time.
fn fallback_time(dir: &Path, id: &str) -> String {
    let from_id = id.get(..23).and_then(|t| {
        // 20261127T162231.123456Z
        let s = format!(
            "{}-{}-{}T{}:{}:{}Z",
            t.get(0..4)?,
            t.get(4..6)?,
            t.get(6..8)?,
            t.get(9..11)?,
            t.get(11..13)?,
            t.get(13..22)?
        );
        crate::timestamp::parse_rfc3339(&s)
    });
    let t = from_id.or_else(|| {
        fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .map(time::OffsetDateTime::from)
    });
    crate::timestamp::rfc3339(t.unwrap_or(time::OffsetDateTime::UNIX_EPOCH))
}
