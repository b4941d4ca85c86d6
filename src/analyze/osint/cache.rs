//! The lookup cache: one plain JSON file per service and indicator,
//! `<dir>/<service>/<kind>-<indicator>.json`, holding the facts kept from
//! the answer, the HTTP status and the time of the query. An answer ("found"
//! or "not found") is kept; a failure is not, so that the next run asks
//! again. An entry older than the service's time-to-live is ignored (and
//! replaced by the next answer). A file that cannot be read or parsed is a
//! miss: the cache is an optimisation, never a source of errors.
//!
//! The directory is never inside a spool (the spool is evidence, read-only
//! to `analyze`): [`super::settings`] refuses such a place.

use super::{Facts, Kind, Service};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;

/// One cached answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub service: Service,
    pub kind: Kind,
    pub indicator: String,
    /// RFC 3339 UTC.
    pub queried_at: String,
    pub http_status: u16,
    /// None for "not found".
    pub facts: Option<Facts>,
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that
/// a reader never sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.partial", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creating, private to the user) the cache directory.
    pub fn open(dir: &Path) -> Result<Cache, String> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create the OSINT cache {}: {e}", dir.display()))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of an entry. `indicator` is already canonical (a lower-case
    /// sha256 or an address as `IpAddr` prints it), never a client's text.
    fn path(&self, service: Service, kind: Kind, indicator: &str) -> PathBuf {
        let name: String = indicator
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        self.dir
            .join(service.name())
            .join(format!("{}-{name}.json", kind.name()))
    }

    /// The entry for `indicator` if there is one younger than `ttl`.
    pub fn get(
        &self,
        service: Service,
        kind: Kind,
        indicator: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Option<Entry> {
        let bytes = std::fs::read(self.path(service, kind, indicator)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        if entry.service != service || entry.kind != kind || entry.indicator != indicator {
            return None;
        }
        let at = crate::timestamp::parse_rfc3339(&entry.queried_at)?;
        let age = now - at;
        // An entry from the future (a clock set back) is not trusted.
        if age.is_negative() || age >= ttl {
            return None;
        }
        Some(entry)
    }

    pub fn put(&self, entry: &Entry) -> Result<(), String> {
        let path = self.path(entry.service, entry.kind, &entry.indicator);
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let text = serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?;
            write_atomically(&path, &text)
        };
        write().map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::osint::otx::Pulses as OtxPulses;

    #[test]
    fn entries_live_for_their_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c")).unwrap();
        let at = time::macros::datetime!(2026-11-27 12:00:00 UTC);
        let entry = Entry {
            service: Service::Otx,
            kind: Kind::Ip,
            indicator: "2001:db8::1".into(),
            queried_at: crate::timestamp::rfc3339(at),
            http_status: 200,
            facts: Some(Facts::Otx(OtxPulses {
                pulses: 3,
                top_pulses: vec!["a".into()],
            })),
        };
        cache.put(&entry).unwrap();
        assert!(dir.path().join("c/otx/ip-2001-db8--1.json").is_file());
        let hour = Duration::from_secs(3600);
        let get = |now| cache.get(Service::Otx, Kind::Ip, "2001:db8::1", now, hour);
        assert_eq!(get(at + hour / 2), Some(entry.clone()));
        assert_eq!(get(at + hour), None);
        assert_eq!(get(at - hour), None, "from the future");
        assert_eq!(
            cache.get(Service::Otx, Kind::File, "2001:db8::1", at, hour),
            None
        );
        std::fs::write(dir.path().join("c/otx/ip-2001-db8--1.json"), "{").unwrap();
        assert_eq!(get(at), None);
    }
}
