//! A file written in batches: records pile up in memory and go to the OS in
//! one `write` when the session has handled a batch of input.
//!
//! A `BufWriter` would keep a fixed buffer per file for the life of the
//! session; with thousands of idle connections that is most of the memory. This
//! buffer is empty between batches and shrinks back after a large one.
//!
//! The sha256 and size of what was written are kept as it goes, so that
//! sealing need not read the file back to list it in the manifest.
//!
//! An idle session can [`park`](BatchedFile::park) the file: it is closed,
//! and opened again (append only, never created, links not followed) when
//! the next batch is written. Ten thousand idle connections then hold one
//! descriptor each, their sockets, instead of three.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// Capacity kept between batches.
const KEEP: usize = 4096;

pub struct BatchedFile {
    /// `None` while parked.
    file: Option<File>,
    /// Where to open it again; without it the file is never parked.
    path: Option<PathBuf>,
    pending: Vec<u8>,
    sha256: Sha256,
    written: u64,
    /// A write failed: what is on disk is unknown, the digest is not used.
    damaged: bool,
}

impl BatchedFile {
    pub fn new(file: File) -> BatchedFile {
        BatchedFile {
            file: Some(file),
            path: None,
            pending: Vec::new(),
            sha256: Sha256::new(),
            written: 0,
            damaged: false,
        }
    }

    /// Lets the file be parked, and opened again at `path`.
    pub fn reopenable(mut self, path: PathBuf) -> BatchedFile {
        self.path = Some(path);
        self
    }

    /// Writes what is pending, then closes the file and frees the buffer
    /// until the next batch. A no-op without a path to open it again.
    pub fn park(&mut self) -> io::Result<()> {
        if self.path.is_none() {
            return Ok(());
        }
        self.flush()?;
        self.file = None;
        self.pending = Vec::new();
        Ok(())
    }

    /// The open file, opened again if parked.
    fn open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let path = self
                .path
                .as_ref()
                .ok_or_else(|| io::Error::other("file closed"))?;
            let file = OpenOptions::new()
                .append(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)?;
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("just opened"))
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
        let pending = std::mem::take(&mut self.pending);
        let result = self.open().and_then(|f| f.write_all(&pending));
        self.pending = pending;
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

    /// A second handle to the file (to sync it elsewhere).
    pub fn handle(&mut self) -> io::Result<File> {
        self.open()?.try_clone()
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
