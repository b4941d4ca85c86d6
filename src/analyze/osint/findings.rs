//! What the lookups found: one [`Lookup`] per service and indicator, and
//! per service a [`ServiceReport`] for the provenance and the summary.

use super::{Facts, Kind, Service};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Found(Facts),
    NotFound,
    Failed(String),
    Skipped(String),
}

/// One indicator asked of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub service: Service,
    pub kind: Kind,
    /// As in the report (attachment sha256, client address).
    pub indicator: String,
    pub outcome: Outcome,
    /// The status of the last answer (of the cached one, from the cache).
    pub http_status: Option<u16>,
    /// When the answer was obtained, RFC 3339 UTC.
    pub queried_at: Option<String>,
    pub from_cache: bool,
    /// HTTP requests sent for it in this run (retries after 429 included).
    pub requests: u32,
}

impl Lookup {
    pub(super) fn new(service: Service, kind: Kind, indicator: &str, outcome: Outcome) -> Lookup {
        Lookup {
            service,
            kind,
            indicator: indicator.to_string(),
            outcome,
            http_status: None,
            queried_at: None,
            from_cache: false,
            requests: 0,
        }
    }

    /// `ok`, `not found`, `error: …` or `skipped: …`.
    pub fn status(&self) -> String {
        match &self.outcome {
            Outcome::Found(_) => "ok".into(),
            Outcome::NotFound => "not found".into(),
            Outcome::Failed(e) => format!("error: {e}"),
            Outcome::Skipped(why) => format!("skipped: {why}"),
        }
    }

    pub fn facts(&self) -> Option<&Facts> {
        match &self.outcome {
            Outcome::Found(f) => Some(f),
            _ => None,
        }
    }
}

/// What one service did in the run, for the provenance and the summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceReport {
    pub service: &'static str,
    /// `on`, `off` (no key) or `offline` (cache only).
    pub status: &'static str,
    pub note: String,
    /// Where the key came from (never the key).
    pub key_source: Option<String>,
    pub url: String,
    pub per_minute: Option<u32>,
    pub per_day: Option<u32>,
    pub cache_ttl_hours: u64,
    pub lookups: u64,
    pub from_cache: u64,
    /// HTTP requests sent.
    pub requests: u64,
    pub ok: u64,
    pub not_found: u64,
    pub errors: u64,
    /// Skipped lookups by reason (`quota`, `offline`, `not a public address`...).
    pub skipped: BTreeMap<String, u64>,
    pub retries_after_429: u64,
    /// Time spent waiting for the rate limit and `Retry-After`.
    pub waited_s: f64,
    pub quota_exhausted: bool,
    /// The first distinct errors.
    pub error_samples: Vec<String>,
}

/// Every lookup of the run.
#[derive(Debug, Default)]
pub struct Findings {
    pub lookups: Vec<Lookup>,
    /// Position in `lookups` by service, kind and indicator.
    index: HashMap<(Service, Kind, String), usize>,
    pub services: Vec<ServiceReport>,
    pub cache_dir: Option<String>,
    pub refresh: bool,
}

impl Findings {
    pub(super) fn push(&mut self, lookup: Lookup) {
        let key = (lookup.service, lookup.kind, lookup.indicator.clone());
        self.index.insert(key, self.lookups.len());
        self.lookups.push(lookup);
    }

    /// The lookup of `indicator` by `service`, if there was one.
    pub fn get(&self, service: Service, kind: Kind, indicator: &str) -> Option<&Lookup> {
        self.index
            .get(&(service, kind, indicator.to_string()))
            .map(|&i| &self.lookups[i])
    }

    /// The status column: the lookup's, else the service's state (`off`).
    pub fn status(&self, service: Service, kind: Kind, indicator: &str) -> String {
        if let Some(l) = self.get(service, kind, indicator) {
            return l.status();
        }
        match self.services.iter().find(|s| s.service == service.name()) {
            Some(s) if s.status != "on" => s.status.to_string(),
            Some(_) => String::new(),
            None => "off".into(),
        }
    }

    /// `provenance.osint` of `report.json`.
    pub fn provenance(&self) -> serde_json::Value {
        serde_json::json!({
            "cache_dir": self.cache_dir,
            "refresh": self.refresh,
            "services": self.services,
        })
    }

    /// One line per service for the summary.
    pub fn summary_lines(&self) -> Vec<String> {
        self.services
            .iter()
            .map(|s| {
                if s.status == "off" {
                    return format!("{}: off: {}", s.service, s.note);
                }
                let skipped: Vec<String> = s
                    .skipped
                    .iter()
                    .map(|(why, n)| format!("{n} skipped ({why})"))
                    .collect();
                let mut line = format!(
                    "{}: {} lookups, {} from the cache, {} requests: {} ok, {} not found, {} errors",
                    s.service, s.lookups, s.from_cache, s.requests, s.ok, s.not_found, s.errors
                );
                for part in skipped {
                    line.push_str(", ");
                    line.push_str(&part);
                }
                if s.status == "offline" {
                    line.push_str(" (--offline: cache only)");
                }
                line
            })
            .collect()
    }
}
