//! The data behind `session.html`: one JSON object per session, in shards
//! of [`PER_SHARD`] sessions (`sessions/s<n>.js`, loaded by `<script src>`
//! since a page opened from the file system cannot fetch JSON).
//!
//! Bounded: a view holds at most [`TRANSCRIPT_BYTES`] of transcript and,
//! for each of its first [`MESSAGES`] messages, [`HEADER_BYTES`] of header
//! and [`BODY_BYTES`] of body source; past [`TOTAL_BYTES`] for the whole
//! report, views keep the manifest's facts only. Everything is data for
//! `textContent`: nothing here is ever parsed as HTML.

use crate::analyze::load::{LoadedSession, open_in};
use serde_json::{Value, json};
use std::io::{self, Read, Write};
use std::path::PathBuf;

pub const PER_SHARD: usize = 100;
const TRANSCRIPT_BYTES: u64 = 16 * 1024;
const MESSAGES: usize = 10;
const HEADER_BYTES: usize = 6 * 1024;
const BODY_BYTES: usize = 8 * 1024;
const TOTAL_BYTES: u64 = 768 * 1024 * 1024;

pub struct Shards {
    dir: PathBuf,
    buffer: Vec<u8>,
    in_shard: usize,
    shard: usize,
    written: u64,
    pub sessions: u64,
}

/// Up to `limit` bytes of `rel` in the session, and whether there was more.
fn read_prefix(s: &LoadedSession, rel: &str, limit: u64) -> Result<(Vec<u8>, bool), String> {
    let file = open_in(&s.dir.dir, rel)?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{rel}: {e}"))?;
    let more = bytes.len() as u64 > limit;
    bytes.truncate(limit as usize);
    Ok((bytes, more))
}

/// Text for display: invalid UTF-8 replaced, CR dropped, other control
/// characters but tab and LF shown as U+FFFD.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|&c| c != '\r')
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

fn transcript(s: &LoadedSession) -> Value {
    match read_prefix(s, "transcript.log", TRANSCRIPT_BYTES) {
        Err(e) => json!({"error": e}),
        Ok((bytes, more)) => {
            let text = String::from_utf8_lossy(&bytes);
            let mut lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
            if more {
                lines.pop(); // cut in the middle
            }
            let records: Vec<Value> = lines
                .iter()
                .map(|line| {
                    let (offset, rest) = line.split_once(' ').unwrap_or((line, ""));
                    let (dir, bytes) = rest.split_once(' ').unwrap_or((rest, ""));
                    json!([offset, dir, bytes])
                })
                .collect();
            json!({"records": records, "truncated": more})
        }
    }
}

fn message(s: &LoadedSession, i: usize) -> Value {
    let r = &s.manifest.messages[i];
    let mut m = json!({
        "index": r.index,
        "file": r.file,
        "mail_from": r.mail_from,
        "rcpt_to": r.rcpt_to.iter().take(100).collect::<Vec<_>>(),
        "rcpt_total": r.rcpt_to.len(),
        "received_at": r.received_at,
        "size": r.size,
        "accepted": r.accepted,
        "truncated": r.truncated,
        "queue_id": r.queue_id,
        "parse_error": r.parse_error,
        "attachments": r.attachments.iter().take(100).map(|a| json!({
            "sha256": a.sha256, "md5": a.md5, "content_type": a.content_type,
            "size": a.size, "filename": a.filename, "depth": a.depth,
        })).collect::<Vec<_>>(),
        "attachments_total": r.attachments.len(),
    });
    let limit = (HEADER_BYTES + BODY_BYTES) as u64 * 4;
    match read_prefix(s, &r.file, limit) {
        Err(e) => m["error"] = e.into(),
        Ok((bytes, more)) => {
            let split = memchr::memmem::find(&bytes, b"\r\n\r\n")
                .map(|p| (p, p + 4))
                .or_else(|| memchr::memmem::find(&bytes, b"\n\n").map(|p| (p, p + 2)))
                .unwrap_or((bytes.len(), bytes.len()));
            let head = &bytes[..split.0];
            let body = &bytes[split.1..];
            m["headers"] = text(&head[..head.len().min(HEADER_BYTES)]).into();
            m["headers_cut"] = (head.len() > HEADER_BYTES).into();
            m["body"] = text(&body[..body.len().min(BODY_BYTES)]).into();
            m["body_cut"] = (more || body.len() > BODY_BYTES).into();
        }
    }
    m
}

impl Shards {
    pub fn new(dir: PathBuf) -> Shards {
        Shards {
            dir,
            buffer: Vec::new(),
            in_shard: 0,
            shard: 0,
            written: 0,
            sessions: 0,
        }
    }

    pub fn add(&mut self, s: &LoadedSession) -> io::Result<()> {
        let m = &s.manifest;
        let mut view = json!({
            "session_id": m.session_id,
            "sensor": m.sensor,
            "path": s.dir.rel,
            "started_at": m.started_at,
            "ended_at": m.ended_at,
            "end_reason": m.end_reason,
            "client": format!("{}:{}", m.client.ip, m.client.port),
            "server": format!("{}:{} ({})", m.server.ip, m.server.port, m.server.listener),
            "country_iso": s.client.country_iso,
            "asn": s.client.asn,
            "as_org": s.client.as_org,
            "helo": m.helo,
            "commands": m.commands,
            "flags": m.flags,
            "limits_hit": m.limits_hit,
            "tls": m.tls,
            "auth": m.auth.iter().take(100).collect::<Vec<_>>(),
            "protocol_errors": m.protocol_errors.iter().take(50).collect::<Vec<_>>(),
            "problems": s.problems.iter().map(|p| format!("{} {}: {}", p.stage, p.file, p.reason)).collect::<Vec<_>>(),
        });
        if self.written < TOTAL_BYTES {
            view["transcript"] = transcript(s);
            view["messages"] = (0..m.messages.len().min(MESSAGES))
                .map(|i| message(s, i))
                .collect::<Vec<_>>()
                .into();
            view["messages_total"] = m.messages.len().into();
        } else {
            view["omitted"] =
                "transcript and messages left out: the report's budget for session views is spent"
                    .into();
        }
        let start = self.buffer.len();
        self.buffer
            .extend_from_slice(if self.in_shard == 0 { b"[\n" } else { b",\n" });
        serde_json::to_writer(&mut self.buffer, &view).map_err(io::Error::other)?;
        self.written += (self.buffer.len() - start) as u64;
        self.in_shard += 1;
        self.sessions += 1;
        if self.in_shard == PER_SHARD {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if self.in_shard == 0 {
            return Ok(());
        }
        let path = self.dir.join(format!("s{}.js", self.shard));
        let mut f = io::BufWriter::new(std::fs::File::create(path)?);
        write!(f, "LATRINE.sessions({},", self.shard)?;
        f.write_all(&self.buffer)?;
        f.write_all(b"\n]);\n")?;
        f.flush()?;
        self.buffer.clear();
        self.in_shard = 0;
        self.shard += 1;
        Ok(())
    }
}
