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

#[cfg(test)]
mod tests {
    use super::*;

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
