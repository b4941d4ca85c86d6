//! A file written in batches: records pile up in memory and go to the OS in
//! one `write` when the session has handled a batch of input.
//!
//! A `BufWriter` would keep a fixed buffer per file for the life of the
//! session; with thousands of idle connections that is most of the memory. This
//! buffer is empty between batches and shrinks back after a large one.
//!
//! The sha256 and size of what was written are kept as it goes, so that
//! sealing need not read the file back to list it in the manifest.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Write};

/// Capacity kept between batches.
const KEEP: usize = 4096;

pub struct BatchedFile {
    file: File,
    pending: Vec<u8>,
    sha256: Sha256,
    written: u64,
    /// A write failed: what is on disk is unknown, the digest is not used.
    damaged: bool,
}

impl BatchedFile {
    pub fn new(file: File) -> BatchedFile {
        BatchedFile {
            file,
            pending: Vec::new(),
            sha256: Sha256::new(),
            written: 0,
            damaged: false,
        }
    }

    pub fn append(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The buffer, to format records into without a temporary.
    pub fn pending_mut(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    /// Hands the batch to the OS: after this a killed process loses nothing.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.pending);
        match result {
            Ok(()) => {
                self.sha256.update(&self.pending);
                self.written += self.pending.len() as u64;
            }
            Err(_) => self.damaged = true,
        }
        self.pending.clear();
        self.pending.shrink_to(KEEP);
        result
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn into_file(self) -> File {
        self.file
    }

    /// Size and sha256 (hex) of everything written, unless a write failed.
    pub fn digest(&self) -> Option<(u64, String)> {
        (!self.damaged).then(|| {
            (
                self.written,
                crate::escape::hex(&self.sha256.clone().finalize()),
            )
        })
    }
}
