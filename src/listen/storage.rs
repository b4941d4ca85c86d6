//! Watching free space on the spool's file system.
//!
//! Past the low mark, new transactions are refused with `452 4.3.1
//! Insufficient system storage` (as Postfix does when its queue file system
//! fills) while sessions are still recorded; mail is taken again once free
//! space is back above the high mark. The gap between the two marks keeps
//! the state from flapping around one value.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often free space is checked.
const INTERVAL: Duration = Duration::from_secs(1);

/// Whether the spool is short of space, shared by all sessions.
#[derive(Debug, Default)]
pub struct StorageGauge {
    full: AtomicBool,
}

impl StorageGauge {
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Updates the state from a free-space reading; returns whether it changed.
    pub fn update(&self, free: u64, min_free: u64, resume_free: u64) -> bool {
        let was_full = self.is_full();
        let full = if was_full {
            free < resume_free
        } else {
            free < min_free
        };
        self.full.store(full, Ordering::Relaxed);
        full != was_full
    }
}

/// Bytes available to an unprivileged writer on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other("path contains a NUL byte"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is NUL-terminated and stat points to writable memory of
    // the right type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so the struct is initialised.
    let stat = unsafe { stat.assume_init() };
    // The field types differ between platforms; u64 holds both here.
    #[allow(clippy::unnecessary_cast)]
    let free = (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64);
    Ok(free)
}

/// Checks free space every second until the process ends.
pub async fn watch(
    gauge: std::sync::Arc<StorageGauge>,
    spool: PathBuf,
    min_free: u64,
    resume_free: u64,
) {
    let mut ticker = tokio::time::interval(INTERVAL);
    loop {
        ticker.tick().await;
        let Ok(free) = free_bytes(&spool) else {
            continue;
        };
        if gauge.update(free, min_free, resume_free) {
            if gauge.is_full() {
                tracing::error!(
                    "spool short of space ({} MiB free): refusing mail with 452 until {} MiB are free",
                    free >> 20,
                    resume_free >> 20
                );
            } else {
                tracing::warn!("spool has {} MiB free again: taking mail", free >> 20);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_between_the_marks() {
        let g = StorageGauge::default();
        assert!(!g.update(300, 100, 200));
        assert!(g.update(50, 100, 200) && g.is_full());
        assert!(!g.update(150, 100, 200) && g.is_full());
        assert!(g.update(250, 100, 200) && !g.is_full());
        assert!(free_bytes(Path::new("/")).unwrap() > 0);
    }
}
