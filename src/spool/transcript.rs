//! `transcript.log`: both directions of the dialog, lossless.
//!
//! One record a line: `<seconds since connect> <direction> <escaped bytes>`,
//! with direction `C` (client), `S` (server) or `M` (a note from latrine).
//! Client bytes are cut into records after each LF, so a command is one
//! record; the bytes are escaped with [`escape_ascii`], so `\r\n` at the end
//! of a record shows the line ending the client really used. Message content
//! is not repeated: `M message N begin` and `M message N end ...` mark where
//! it went, and the message file holds it.

use super::batched::BatchedFile;
use crate::escape::escape_ascii;
use std::fs::File;
use std::io::{self, Write};
use std::time::Instant;

pub const HEADER: &str = "# latrine transcript v1";

pub struct TranscriptWriter {
    out: BatchedFile,
    started: Instant,
}

impl TranscriptWriter {
    pub fn new(file: File, started: Instant, session_id: &str) -> io::Result<TranscriptWriter> {
        let mut out = BatchedFile::new(file);
        writeln!(out.pending_mut(), "{HEADER} session={session_id}")?;
        Ok(TranscriptWriter { out, started })
    }

    /// Bytes received from the client, as received.
    pub fn client(&mut self, bytes: &[u8]) -> io::Result<()> {
        for record in bytes.split_inclusive(|&b| b == b'\n') {
            self.record('C', record)?;
        }
        Ok(())
    }

    /// Bytes sent to the client.
    pub fn server(&mut self, bytes: &[u8]) -> io::Result<()> {
        for record in bytes.split_inclusive(|&b| b == b'\n') {
            self.record('S', record)?;
        }
        Ok(())
    }

    /// A note from latrine itself (never client text unless escaped by the caller).
    pub fn note(&mut self, text: &str) -> io::Result<()> {
        self.record('M', text.as_bytes())
    }

    fn record(&mut self, direction: char, bytes: &[u8]) -> io::Result<()> {
        let elapsed = self.started.elapsed();
        let line = self.out.pending_mut();
        write!(
            line,
            "{}.{:06} {direction} ",
            elapsed.as_secs(),
            elapsed.subsec_micros()
        )?;
        line.extend_from_slice(escape_ascii(bytes).as_bytes());
        line.push(b'\n');
        Ok(())
    }

    /// Hands buffered records to the OS, so that a killed process loses none.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Lets the file be parked ([`BatchedFile::park`]).
    pub fn reopenable(mut self, path: std::path::PathBuf) -> TranscriptWriter {
        self.out = self.out.reopenable(path);
        self
    }

    /// A second handle to the file (to sync it elsewhere).
    pub fn handle(&mut self) -> io::Result<File> {
        self.out.handle()
    }

    /// Writes what is pending and closes the file until the next record.
    pub fn park(&mut self) -> io::Result<()> {
        self.out.park()
    }

    /// Size and sha256 of what was written, unless a write failed.
    pub fn digest(&self) -> Option<(u64, String)> {
        self.out.digest()
    }
}

/// One parsed transcript record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: String,
    pub direction: char,
    pub bytes: Vec<u8>,
}

/// Parses a transcript line (not the header).
pub fn parse_record(line: &str) -> Option<Record> {
    let (offset, rest) = line.split_once(' ')?;
    let (direction, escaped) = rest.split_once(' ').unwrap_or((rest, ""));
    let direction = direction.chars().next()?;
    Some(Record {
        offset: offset.into(),
        direction,
        bytes: crate::escape::unescape(escaped).ok()?,
    })
}

/// The DATA bytes as they went over the wire, rebuilt from a stored message:
/// a `.` before every line (after CRLF, or at the start) that begins with
/// `.`, and before the lines at `undoubled_dots`, then the end marker.
pub fn data_wire_bytes(eml: &[u8], undoubled_dots: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(eml.len() + 8);
    let mut line_start = true;
    let mut dots = undoubled_dots.iter().peekable();
    for (i, &b) in eml.iter().enumerate() {
        let undoubled = dots.peek() == Some(&&(i as u64));
        if undoubled {
            dots.next();
        }
        if (line_start && b == b'.') || undoubled {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n' && i > 0 && eml[i - 1] == b'\r';
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Every byte the client sent in a sealed session, rebuilt from the
/// transcript's `C` records and, where `M message N end` stands, from the
/// stored message N (DATA only; BDAT chunks and content past the size limit
/// are not in the transcript and cannot be rebuilt).
pub fn client_wire_bytes(
    dir: &std::path::Path,
    manifest: &super::Manifest,
) -> std::io::Result<Vec<u8>> {
    let text = std::fs::read_to_string(dir.join(super::writer::TRANSCRIPT))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(record) = parse_record(line) else {
            return Err(std::io::Error::other(format!(
                "unreadable transcript record {line:?}"
            )));
        };
        match record.direction {
            'C' => out.extend_from_slice(&record.bytes),
            'M' => {
                let note = String::from_utf8_lossy(&record.bytes);
                let words: Vec<&str> = note.split(' ').collect();
                if let ["message", index, "end", ..] = words[..]
                    && let Some(msg) = manifest
                        .messages
                        .iter()
                        .find(|m| index.parse() == Ok(m.index) && !m.chunked)
                {
                    let eml = std::fs::read(dir.join(&msg.file))?;
                    out.extend_from_slice(&data_wire_bytes(&eml, &msg.undoubled_dots));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_wire_restores_stuffing_and_undoubled_dots() {
        // Wire: "..a\r\n.b\r\nc\r\n.\r\n" is stored as ".a\r\nb\r\nc\r\n" with the
        // undoubled dot of ".b" at offset 4.
        assert_eq!(
            data_wire_bytes(b".a\r\nb\r\nc\r\n", &[4]),
            b"..a\r\n.b\r\nc\r\n.\r\n"
        );
        // A dot removed before a bare LF (offset 3) is put back too.
        assert_eq!(
            data_wire_bytes(b"x\r\n\ny\r\n", &[3]),
            b"x\r\n.\ny\r\n.\r\n"
        );
    }

    #[test]
    fn client_bytes_round_trip_through_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let sent: &[u8] = b"EHLO x\r\nMAIL FROM:<\x00\xff>\nhalf";
        {
            let mut t =
                TranscriptWriter::new(File::create(&path).unwrap(), Instant::now(), "id").unwrap();
            t.client(sent).unwrap();
            t.server(b"250 ok\r\n").unwrap();
            t.flush().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with(HEADER));
        let records: Vec<Record> = lines.map(|l| parse_record(l).unwrap()).collect();
        let rebuilt: Vec<u8> = records
            .iter()
            .filter(|r| r.direction == 'C')
            .flat_map(|r| r.bytes.clone())
            .collect();
        assert_eq!(rebuilt, sent);
        assert_eq!(records.len(), 4);
    }
}
