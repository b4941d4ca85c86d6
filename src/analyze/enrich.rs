//! Stage 3: enrichment, facts about indicators that come from elsewhere than
//! the spool.
//!
//! Each source implements [`IpSource`] and describes itself with a
//! [`SourceInfo`], which goes into the report's provenance whether the source
//! could be used or not (a missing database says why its columns are empty).
//!
//! These sources are offline: the MaxMind databases ([`super::geo`]),
//! looked up once per session by the workers, in parallel. A source that
//! needs the network reports [`IpSource::network`] true and is dropped under
//! `--offline`. The slow, rate-limited network services (VirusTotal,
//! AbuseIPDB, OTX) are not `IpSource`s: they run after aggregation, on each
//! distinct indicator once, in [`super::osint`], with their cache and
//! quotas.

use serde::Serialize;
use std::net::IpAddr;

/// Where a fact came from, for the report's provenance.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceInfo {
    /// `geoip-city`, `geoip-asn`, ...
    pub name: String,
    /// `loaded`, `missing`, `disabled` or `failed`.
    pub status: String,
    pub path: Option<String>,
    /// As the database says (`GeoLite2-City`, `GeoLite2-ASN`...).
    pub database_type: Option<String>,
    /// When the database was built, RFC 3339 UTC.
    pub build_date: Option<String>,
    pub build_epoch: Option<u64>,
    /// How the source was chosen, or why it is not used.
    pub note: String,
    /// Whether using it needs the network.
    pub network: bool,
}

/// What is known about a client address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpFacts {
    pub country_iso: Option<String>,
    pub country: Option<String>,
    /// Continent code: `EU`, `NA`, `AS`...
    pub continent: Option<String>,
    pub eu: Option<bool>,
    pub city: Option<String>,
    pub subdivision: Option<String>,
    pub postal: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub accuracy_km: Option<u16>,
    pub time_zone: Option<String>,
    pub asn: Option<u32>,
    pub as_org: Option<String>,
}

/// A source of facts about IP addresses.
pub trait IpSource: Send + Sync {
    fn info(&self) -> &SourceInfo;

    /// Whether the source needs the network (skipped under `--offline`).
    fn network(&self) -> bool {
        false
    }

    /// Adds what the source knows about `ip` to `facts`.
    fn annotate(&self, ip: IpAddr, facts: &mut IpFacts) -> Result<(), String>;
}

/// The sources in use and the description of every source considered.
#[derive(Default)]
pub struct Enrichment {
    /// `--offline`: no source may use the network.
    offline: bool,
    sources: Vec<Box<dyn IpSource>>,
    described: Vec<SourceInfo>,
}

impl Enrichment {
    pub fn new(offline: bool) -> Enrichment {
        Enrichment {
            offline,
            ..Enrichment::default()
        }
    }

    /// Adds a usable source; under `--offline`, a network source is
    /// described as disabled instead.
    pub fn add(&mut self, source: Box<dyn IpSource>) {
        if self.offline && source.network() {
            let mut info = source.info().clone();
            info.status = "disabled".into();
            info.note = "needs the network; --offline".into();
            self.described.push(info);
            return;
        }
        self.described.push(source.info().clone());
        self.sources.push(source);
    }

    /// Records a source that could not be used, and why.
    pub fn add_unavailable(&mut self, info: SourceInfo) {
        self.described.push(info);
    }

    pub fn sources(&self) -> &[SourceInfo] {
        &self.described
    }

    /// Whether any source can say something about IP addresses.
    pub fn has_ip_sources(&self) -> bool {
        !self.sources.is_empty()
    }

    /// Facts about `ip` (the manifest's text); errors name the source.
    pub fn ip(&self, ip: &str) -> (IpFacts, Vec<String>) {
        let mut facts = IpFacts::default();
        let mut errors = Vec::new();
        let Ok(addr) = ip.parse::<IpAddr>() else {
            if !self.sources.is_empty() {
                errors.push(format!("client address {ip:?} is not an IP address"));
            }
            return (facts, errors);
        };
        for source in &self.sources {
            if let Err(e) = source.annotate(addr, &mut facts) {
                errors.push(format!("{}: {e}", source.info().name));
            }
        }
        (facts, errors)
    }

    /// Why some geo columns are empty, if they are.
    pub fn gaps(&self) -> Vec<String> {
        self.described
            .iter()
            .filter(|s| s.status != "loaded")
            .map(|s| format!("{}: {} ({})", s.name, s.status, s.note))
            .collect()
    }
}
