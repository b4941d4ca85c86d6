//! A file written in batches: records pile up in memory and go to the OS in
//! one `write` when the session has handled a batch of input.
//!
//! A `BufWriter` would keep a fixed buffer per file for the life of the
//! session; with thousands of idle connections that is most of the memory. This
//! buffer is empty between batches and shrinks back after a large one.

use std::fs::File;
use std::io::{self, Write};

/// Capacity kept between batches.
const KEEP: usize = 4096;

pub struct BatchedFile {
    file: File,
    pending: Vec<u8>,
}

impl BatchedFile {
    pub fn new(file: File) -> BatchedFile {
        BatchedFile {
            file,
            pending: Vec::new(),
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
        self.pending.clear();
        self.pending.shrink_to(KEEP);
        result
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}
