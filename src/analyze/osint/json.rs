//! Reading the services' JSON answers: paths into a `serde_json::Value`,
//! missing or mistyped members read as absent, so that a field a service
//! drops or renames empties a column instead of failing the lookup.

pub use serde_json::Value as Json;

pub trait At {
    /// The value at `path` (object members), if every step is there.
    fn at(&self, path: &[&str]) -> Option<&Json>;
}

impl At for Json {
    fn at(&self, path: &[&str]) -> Option<&Json> {
        path.iter().try_fold(self, |v, key| v.get(key))
    }
}

pub fn parse(body: &str) -> Result<Json, String> {
    serde_json::from_str(body).map_err(|e| format!("malformed JSON: {e}"))
}

/// A non-empty string.
pub fn text(value: Option<&Json>) -> Option<String> {
    value?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A Unix time as RFC 3339 UTC.
pub fn unix_time(secs: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .map(crate::timestamp::rfc3339)
}
