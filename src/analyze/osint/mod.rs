//! Stage 3b: OSINT lookups over the network, after aggregation, on each
//! distinct indicator once: VirusTotal ([`virustotal`]) and AlienVault OTX
//! ([`otx`]) for attachment hashes, AbuseIPDB ([`abuseipdb`]) and OTX for
//! client addresses.
//!
//! - A service is on when it has a key ([`settings`]); off, its columns say
//!   `off` and the provenance says why.
//! - Answers are kept in a plain-JSON [`cache`] outside the spool, per
//!   service and indicator, for a time-to-live per service: a second run
//!   over the same spool sends no request. `--refresh` ignores the cache;
//!   `--offline` sends nothing and uses the cache only.
//! - Each service has its own thread and [`rate_limit`]er (free-tier
//!   defaults), and a daily quota shared by the runs of the day. On `429` it
//!   waits as `Retry-After` says and asks again; once the day's quota is
//!   spent, the rest is `skipped: quota`. The most seen attachments and the
//!   clients with the most sessions go first (the order of the tables).
//! - Every failure (timeout, 5xx, 401, malformed JSON) is recorded in its
//!   lookup and counted in the provenance; the run goes on. After a 401 or
//!   403 the service is not asked again in this run (`skipped: key refused`).
//! - Files are never uploaded, redirects never followed, keys never written:
//!   every text recorded from an error or an answer has the keys removed.

pub mod abuseipdb;
pub mod cache;
pub mod clock;
pub mod http;
mod json;
pub mod otx;
pub mod rate_limit;
pub mod settings;
pub mod virustotal;

use cache::{Cache, Entry};
use clock::Clock;
use rate_limit::{Permit, QuotaLedger, RateLimiter};
use serde::{Deserialize, Serialize};
use settings::{OsintSettings, ServiceSettings};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

/// A 429 whose `Retry-After` is longer than this means the day's quota.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(15 * 60);
/// 429s in a row for one lookup before the service is taken as spent.
pub const MAX_RETRIES: u32 = 3;
/// Distinct error texts kept per service in the provenance.
const ERROR_SAMPLES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Service {
    #[serde(rename = "virustotal")]
    VirusTotal,
    #[serde(rename = "abuseipdb")]
    AbuseIpdb,
    #[serde(rename = "otx")]
    Otx,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::VirusTotal, Service::AbuseIpdb, Service::Otx];

    pub fn name(self) -> &'static str {
        match self {
            Service::VirusTotal => "virustotal",
            Service::AbuseIpdb => "abuseipdb",
            Service::Otx => "otx",
        }
    }

    /// The middle of its environment variables: `LATRINE_VT_KEY`...
    pub fn env_name(self) -> &'static str {
        match self {
            Service::VirusTotal => "VT",
            Service::AbuseIpdb => "ABUSEIPDB",
            Service::Otx => "OTX",
        }
    }

    /// What it is asked about, most urgent first.
    pub fn kinds(self) -> &'static [Kind] {
        match self {
            Service::VirusTotal => &[Kind::File],
            Service::AbuseIpdb => &[Kind::Ip],
            Service::Otx => &[Kind::File, Kind::Ip],
        }
    }

    fn key_header(self) -> &'static str {
        match self {
            Service::VirusTotal => virustotal::KEY_HEADER,
            Service::AbuseIpdb => abuseipdb::KEY_HEADER,
            Service::Otx => otx::KEY_HEADER,
        }
    }

    fn url(self, s: &ServiceSettings, kind: Kind, indicator: &str) -> String {
        match self {
            Service::VirusTotal => virustotal::url(&s.base_url, indicator),
            Service::AbuseIpdb => abuseipdb::url(&s.base_url, indicator, s.max_age_days),
            Service::Otx => otx::url(&s.base_url, kind, indicator),
        }
    }

    fn parse(self, indicator: &str, body: &str) -> Result<Facts, String> {
        match self {
            Service::VirusTotal => virustotal::parse(indicator, body).map(Facts::VirusTotal),
            Service::AbuseIpdb => abuseipdb::parse(body).map(Facts::AbuseIpdb),
            Service::Otx => otx::parse(body).map(Facts::Otx),
        }
    }

    fn error_message(self, body: &str) -> Option<String> {
        match self {
            Service::VirusTotal => virustotal::error_message(body),
            Service::AbuseIpdb => abuseipdb::error_message(body),
            Service::Otx => otx::error_message(body),
        }
    }

    /// Whether a 404 means "never heard of it" (AbuseIPDB knows every
    /// address; a 404 there is an error).
    fn not_found_is_an_answer(self) -> bool {
        self != Service::AbuseIpdb
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An attachment, by sha256.
    File,
    /// A client address.
    Ip,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Ip => "ip",
        }
    }
}

/// What a service said about an indicator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Facts {
    #[serde(rename = "virustotal")]
    VirusTotal(virustotal::FileReport),
    #[serde(rename = "abuseipdb")]
    AbuseIpdb(abuseipdb::Check),
    #[serde(rename = "otx")]
    Otx(otx::Pulses),
}

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
    fn new(service: Service, kind: Kind, indicator: &str, outcome: Outcome) -> Lookup {
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
    index: HashMap<(Service, Kind, String), usize>,
    pub services: Vec<ServiceReport>,
    pub cache_dir: Option<String>,
    pub refresh: bool,
}

impl Findings {
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

/// The indicators of a run, most urgent first.
#[derive(Debug, Default, Clone)]
pub struct Indicators {
    /// Attachment sha256s, most seen first.
    pub files: Vec<String>,
    /// Client addresses, most sessions first.
    pub ips: Vec<String>,
}

impl Indicators {
    fn of(&self, kind: Kind) -> &[String] {
        match kind {
            Kind::File => &self.files,
            Kind::Ip => &self.ips,
        }
    }
}

/// Whether an address is worth asking about: not private, loopback,
/// link-local, documentation, shared (CGNAT), benchmarking, multicast or
/// reserved. The services know nothing of those, and quotas are short.
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_broadcast()
                || a.is_documentation()
                || a.is_multicast()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18))
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0))
        }
    }
}

/// The form sent to services and used in cache file names; never a
/// client's text as such.
pub fn canonical(kind: Kind, value: &str) -> Result<String, &'static str> {
    match kind {
        Kind::File => {
            if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(value.to_ascii_lowercase())
            } else {
                Err("not a sha256")
            }
        }
        Kind::Ip => {
            let ip = value
                .parse::<IpAddr>()
                .map_err(|_| "not an IP address")?
                .to_canonical();
            if is_public(ip) {
                Ok(ip.to_string())
            } else {
                Err("not a public address")
            }
        }
    }
}

/// Removes every key from a text that goes into a report.
#[derive(Debug, Default, Clone)]
struct Redactor(Vec<String>);

impl Redactor {
    fn clean(&self, text: &str) -> String {
        let mut out = text.to_string();
        for key in &self.0 {
            if !key.is_empty() {
                out = out.replace(key.as_str(), "<key>");
            }
        }
        let mut out = crate::escape::escape_text(out.as_bytes());
        if out.chars().count() > 200 {
            out = out.chars().take(197).collect::<String>() + "...";
        }
        out
    }
}

/// Progress for a person: a bar per service on a terminal, and a line on
/// standard error saying how much there is to do and how long the rate
/// limits will make it wait.
pub struct Progress {
    bars: Option<indicatif::MultiProgress>,
    plan: bool,
}

impl Progress {
    pub fn new(bars: bool, plan: bool) -> Progress {
        Progress {
            bars: bars.then(indicatif::MultiProgress::new),
            plan,
        }
    }

    pub fn hidden() -> Progress {
        Progress::new(false, false)
    }

    fn bar(&self, service: Service, len: usize) -> indicatif::ProgressBar {
        let Some(multi) = &self.bars else {
            return indicatif::ProgressBar::hidden();
        };
        let bar = multi.add(indicatif::ProgressBar::new(len as u64));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} {msg} [{elapsed}]",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(service.name());
        bar.enable_steady_tick(Duration::from_millis(500));
        bar
    }
}

/// A duration for a person: `45 s`, `14 min`, `2 h 5 min`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs < 60 {
        format!("{secs} s")
    } else if secs < 3600 {
        format!("{} min", secs.div_ceil(60))
    } else {
        let minutes = secs.div_ceil(60);
        format!("{} h {} min", minutes / 60, minutes % 60)
    }
}

/// A URL without user name or password, for the provenance.
fn shown_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

/// One indicator of the report, for one service: its lookup once known.
struct Slot {
    kind: Kind,
    /// As in the report.
    value: String,
    lookup: Option<Lookup>,
}

/// What a service's progress bar says.
struct Shown<'a> {
    bar: &'a indicatif::ProgressBar,
    /// The rate limit's wait for the lookup in hand and the rest.
    left: Duration,
}

impl Shown<'_> {
    fn say(&self, message: String) {
        if !self.bar.is_hidden() {
            self.bar.set_message(message);
        }
    }

    /// `left` in all, `next` before the next request.
    fn waiting(&self, left: Duration, next: Duration) {
        self.say(match (left.is_zero(), next.is_zero()) {
            (true, _) => String::new(),
            (false, true) => format!("about {} of waiting for the rate limit", human(left)),
            (false, false) => format!(
                "about {} of waiting for the rate limit, next request in {}",
                human(left),
                human(next)
            ),
        });
    }
}

/// A lookup still to be made: where its result goes, and what to ask.
struct Pending {
    slots: Vec<usize>,
    kind: Kind,
    indicator: String,
}

/// Counts kept while asking.
#[derive(Default)]
struct Tally {
    requests: u64,
    retries: u64,
    waited: Duration,
    quota_exhausted: bool,
    errors: Vec<String>,
}

impl Tally {
    fn error(&mut self, text: &str) {
        if self.errors.len() < ERROR_SAMPLES && !self.errors.iter().any(|e| e == text) {
            self.errors.push(text.to_string());
        }
    }
}

/// The OSINT stage, ready to run: settings, cache, quota ledger.
pub struct Osint {
    settings: OsintSettings,
    cache: Option<Cache>,
    ledger: QuotaLedger,
    redactor: Redactor,
}

impl Osint {
    /// Opens the cache (creating its directory) when a service is on.
    pub fn new(settings: OsintSettings) -> Result<Osint, String> {
        let cache = match (&settings.cache_dir, settings.any_on()) {
            (Some(dir), true) => Some(Cache::open(dir)?),
            _ => None,
        };
        let ledger = match &cache {
            Some(c) => QuotaLedger::load(c.dir().join("quota.json")),
            None => QuotaLedger::in_memory(),
        };
        let redactor = Redactor(
            settings
                .services
                .iter()
                .filter_map(|s| s.key.as_ref().map(|k| k.expose().to_string()))
                .collect(),
        );
        Ok(Osint {
            settings,
            cache,
            ledger,
            redactor,
        })
    }

    /// Looks up every indicator with every service that is on.
    pub fn run(&self, clock: &dyn Clock, indicators: &Indicators, progress: &Progress) -> Findings {
        let mut findings = Findings {
            cache_dir: self.cache.as_ref().map(|c| c.dir().display().to_string()),
            refresh: self.settings.refresh,
            ..Findings::default()
        };
        let client = http::Client::new(self.settings.timeout);
        let mut plans = Vec::new();
        for s in &self.settings.services {
            let (report, slots, pending) = self.plan(s, clock, indicators);
            plans.push((s, report, slots, pending));
        }
        let results: Vec<(Vec<(usize, Lookup)>, Tally)> = std::thread::scope(|scope| {
            let handles: Vec<_> = plans
                .iter()
                .map(|(s, _, _, pending)| {
                    let client = &client;
                    (!pending.is_empty()).then(|| {
                        let bar = progress.bar(s.service, pending.len());
                        if progress.plan {
                            eprintln!(
                                "latrine analyze: {}",
                                self.plan_line(s, clock, pending.len())
                            );
                        }
                        scope.spawn(move || self.ask(s, client, clock, pending, bar))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h {
                    Some(h) => h.join().unwrap_or_else(|_| {
                        let mut tally = Tally::default();
                        tally.error("internal error: the lookup thread stopped");
                        (Vec::new(), tally)
                    }),
                    None => (Vec::new(), Tally::default()),
                })
                .collect()
        });
        for ((s, mut report, mut slots, _), (done, tally)) in plans.into_iter().zip(results) {
            for (slot, mut lookup) in done {
                if let Some(slot) = slots.get_mut(slot) {
                    lookup.indicator.clone_from(&slot.value);
                    slot.lookup = Some(lookup);
                }
            }
            report.requests = tally.requests;
            report.retries_after_429 = tally.retries;
            report.waited_s = tally.waited.as_secs_f64();
            report.quota_exhausted = tally.quota_exhausted;
            report.error_samples = tally.errors;
            for slot in slots {
                let lookup = slot.lookup.unwrap_or_else(|| {
                    // Only if the thread stopped: say so rather than drop it.
                    let why = Outcome::Skipped("internal error".into());
                    Lookup::new(s.service, slot.kind, &slot.value, why)
                });
                report.lookups += 1;
                report.from_cache += u64::from(lookup.from_cache);
                match &lookup.outcome {
                    Outcome::Found(_) => report.ok += 1,
                    Outcome::NotFound => report.not_found += 1,
                    Outcome::Failed(_) => report.errors += 1,
                    Outcome::Skipped(why) => *report.skipped.entry(why.clone()).or_default() += 1,
                }
                findings.index.insert(
                    (lookup.service, lookup.kind, lookup.indicator.clone()),
                    findings.lookups.len(),
                );
                findings.lookups.push(lookup);
            }
            findings.services.push(report);
        }
        findings
    }

    /// The service's report so far, a slot per lookup (filled from the
    /// cache or skipped, or left for the network), and what to ask.
    fn plan(
        &self,
        s: &ServiceSettings,
        clock: &dyn Clock,
        indicators: &Indicators,
    ) -> (ServiceReport, Vec<Slot>, Vec<Pending>) {
        let mut report = ServiceReport {
            service: s.service.name(),
            key_source: s.key_source.clone(),
            url: shown_url(&s.base_url),
            per_minute: s.limits.per_minute,
            per_day: s.limits.per_day,
            cache_ttl_hours: s.ttl.as_secs() / 3600,
            ..ServiceReport::default()
        };
        let mut slots = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        if s.key.is_none() {
            report.status = "off";
            report.note = format!(
                "no key (set LATRINE_{}_KEY, or key in [analyze.osint.{}])",
                s.service.env_name(),
                s.service.name()
            );
            return (report, slots, pending);
        }
        let offline = self.settings.offline;
        report.status = if offline { "offline" } else { "on" };
        report.note = match (&self.cache, offline) {
            (None, true) => "--offline and no cache: nothing to answer from".into(),
            (_, true) => "--offline: answers from the cache only".into(),
            _ if self.settings.refresh => "--refresh: the cache is not read".into(),
            _ => String::new(),
        };
        let now = clock.now();
        let mut asked: HashMap<(Kind, String), usize> = HashMap::new();
        for &kind in s.service.kinds() {
            for value in indicators.of(kind) {
                let slot = slots.len();
                slots.push(Slot {
                    kind,
                    value: value.clone(),
                    lookup: None,
                });
                let indicator = match canonical(kind, value) {
                    Ok(c) => c,
                    Err(why) => {
                        let l = Lookup::new(s.service, kind, value, Outcome::Skipped(why.into()));
                        slots[slot].lookup = Some(l);
                        continue;
                    }
                };
                if let Some(&p) = asked.get(&(kind, indicator.clone())) {
                    pending[p].slots.push(slot);
                    continue;
                }
                let cached = match &self.cache {
                    Some(c) if !self.settings.refresh => {
                        c.get(s.service, kind, &indicator, now, s.ttl)
                    }
                    _ => None,
                };
                if let Some(entry) = cached {
                    let outcome = entry.facts.map_or(Outcome::NotFound, Outcome::Found);
                    let mut l = Lookup::new(s.service, kind, value, outcome);
                    l.http_status = Some(entry.http_status);
                    l.queried_at = Some(entry.queried_at);
                    l.from_cache = true;
                    slots[slot].lookup = Some(l);
                } else if offline {
                    let l = Lookup::new(s.service, kind, value, Outcome::Skipped("offline".into()));
                    slots[slot].lookup = Some(l);
                } else {
                    asked.insert((kind, indicator.clone()), pending.len());
                    pending.push(Pending {
                        slots: vec![slot],
                        kind,
                        indicator,
                    });
                }
            }
        }
        (report, slots, pending)
    }

    /// "57 lookups to make, 4 a minute: about 14 min of waiting".
    fn plan_line(&self, s: &ServiceSettings, clock: &dyn Clock, n: usize) -> String {
        let limiter = RateLimiter::new(s.service.name(), s.limits, &self.ledger);
        let now = clock.now();
        let mut line = format!("{}: {n} lookups to make", s.service.name());
        let wait = limiter.estimate(now, n);
        if let (Some(m), false) = (s.limits.per_minute, wait.is_zero()) {
            line.push_str(&format!(", {m} a minute: about {} of waiting", human(wait)));
        }
        if let Some(left) = limiter.remaining_today(now) {
            line.push_str(&format!("; {left} left today"));
            if (n as u64) > left {
                line.push_str(&format!(", {} will be skipped (quota)", n as u64 - left));
            }
        }
        line
    }

    /// Asks `s` about each pending indicator, in order, on this thread.
    fn ask(
        &self,
        s: &ServiceSettings,
        client: &http::Client,
        clock: &dyn Clock,
        pending: &[Pending],
        bar: indicatif::ProgressBar,
    ) -> (Vec<(usize, Lookup)>, Tally) {
        let mut limiter = RateLimiter::new(s.service.name(), s.limits, &self.ledger);
        let mut tally = Tally::default();
        let mut stop: Option<&'static str> = None;
        let mut done = Vec::new();
        for (i, p) in pending.iter().enumerate() {
            // This one and the rest: the wait the rate limit will make.
            let shown = Shown {
                bar: &bar,
                left: limiter.estimate(clock.now(), pending.len() - i),
            };
            if stop.is_none() {
                shown.waiting(shown.left, Duration::ZERO);
            }
            let lookup = match stop {
                Some(why) => Lookup::new(
                    s.service,
                    p.kind,
                    &p.indicator,
                    Outcome::Skipped(why.into()),
                ),
                None => self.one(
                    s,
                    client,
                    clock,
                    p,
                    &mut limiter,
                    &mut tally,
                    &mut stop,
                    &shown,
                ),
            };
            for &slot in &p.slots {
                done.push((slot, lookup.clone()));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        (done, tally)
    }

    /// One lookup, retried after 429s.
    #[allow(clippy::too_many_arguments)]
    fn one(
        &self,
        s: &ServiceSettings,
        client: &http::Client,
        clock: &dyn Clock,
        p: &Pending,
        limiter: &mut RateLimiter,
        tally: &mut Tally,
        stop: &mut Option<&'static str>,
        shown: &Shown,
    ) -> Lookup {
        let service = s.service;
        let mut lookup = Lookup::new(
            service,
            p.kind,
            &p.indicator,
            Outcome::Skipped("quota".into()),
        );
        let Some(key) = &s.key else {
            return lookup;
        };
        let url = service.url(s, p.kind, &p.indicator);
        let headers = [
            (service.key_header(), key.expose()),
            ("Accept", "application/json"),
        ];
        let mut retries = 0;
        loop {
            let mut first_wait = None;
            let permit = limiter.acquire(clock, &mut |wait| {
                let first = *first_wait.get_or_insert(wait);
                shown.waiting(shown.left.saturating_sub(first.saturating_sub(wait)), wait);
            });
            match permit {
                Permit::QuotaSpent => {
                    tally.quota_exhausted = true;
                    *stop = Some("quota");
                    return lookup;
                }
                Permit::Granted { waited } => tally.waited += waited,
            }
            lookup.requests += 1;
            tally.requests += 1;
            let at = clock.now();
            lookup.queried_at = Some(crate::timestamp::rfc3339(at));
            let response = match client.get(&url, &headers, at) {
                Ok(r) => r,
                Err(e) => {
                    let e = self.redactor.clean(&e);
                    tally.error(&e);
                    lookup.outcome = Outcome::Failed(e);
                    return lookup;
                }
            };
            lookup.http_status = Some(response.status);
            let detail = || {
                service
                    .error_message(&response.body)
                    .map(|m| format!(": {}", self.redactor.clean(&m)))
                    .unwrap_or_default()
            };
            if service == Service::AbuseIpdb && response.rate_limit_remaining == Some(0) {
                // This answer was the day's last.
                limiter.exhaust(clock.now());
            }
            lookup.outcome = match response.status {
                200 => match service.parse(&p.indicator, &response.body) {
                    Ok(facts) => Outcome::Found(facts),
                    Err(e) => Outcome::Failed(self.redactor.clean(&e)),
                },
                404 if service.not_found_is_an_answer() => Outcome::NotFound,
                429 => {
                    retries += 1;
                    tally.retries += 1;
                    let wait = response.retry_after.unwrap_or(rate_limit::WINDOW);
                    if wait > MAX_RETRY_WAIT || retries > MAX_RETRIES {
                        limiter.exhaust(clock.now());
                        tally.quota_exhausted = true;
                        *stop = Some("quota");
                        lookup.outcome = Outcome::Skipped("quota".into());
                        return lookup;
                    }
                    shown.say(format!("429: waiting {} as Retry-After says", human(wait)));
                    clock.sleep(wait);
                    tally.waited += wait;
                    continue;
                }
                401 | 403 => {
                    *stop = Some("key refused");
                    Outcome::Failed(format!("HTTP {}: key refused{}", response.status, detail()))
                }
                status => Outcome::Failed(format!("HTTP {status}{}", detail())),
            };
            match &lookup.outcome {
                Outcome::Found(facts) => self.keep(&lookup, Some(facts.clone()), tally),
                Outcome::NotFound => self.keep(&lookup, None, tally),
                Outcome::Failed(e) => tally.error(e),
                Outcome::Skipped(_) => {}
            }
            return lookup;
        }
    }

    fn keep(&self, lookup: &Lookup, facts: Option<Facts>, tally: &mut Tally) {
        let (Some(cache), Some(status), Some(at)) =
            (&self.cache, lookup.http_status, &lookup.queried_at)
        else {
            return;
        };
        let entry = Entry {
            service: lookup.service,
            kind: lookup.kind,
            indicator: lookup.indicator.clone(),
            queried_at: at.clone(),
            http_status: status,
            facts,
        };
        if let Err(e) = cache.put(&entry) {
            tally.error(&e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_asked_about() {
        for ip in [
            "89.160.20.112",
            "2001:480::1",
            "::ffff:89.160.20.112",
            "8.8.8.8",
        ] {
            assert!(canonical(Kind::Ip, ip).is_ok(), "{ip}");
        }
        assert_eq!(
            canonical(Kind::Ip, "::ffff:89.160.20.112").unwrap(),
            "89.160.20.112"
        );
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "0.1.2.3",
            "::1",
            "fe80::1",
            "fd00::1",
            "2001:db8::1",
            "::",
        ] {
            assert_eq!(canonical(Kind::Ip, ip), Err("not a public address"), "{ip}");
        }
        assert_eq!(canonical(Kind::Ip, "../../etc"), Err("not an IP address"));
        assert_eq!(
            canonical(Kind::File, "AB".repeat(32).as_str()),
            Ok("ab".repeat(32))
        );
        assert_eq!(canonical(Kind::File, "../x"), Err("not a sha256"));
    }

    #[test]
    fn keys_are_removed_from_texts() {
        let r = Redactor(vec!["s3cr3t-key".into()]);
        assert_eq!(r.clean("bad key s3cr3t-key\r\n"), "bad key <key>\\r\\n");
        assert_eq!(r.clean(&"x".repeat(300)).chars().count(), 200);
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human(Duration::from_millis(1500)), "2 s");
        assert_eq!(human(Duration::from_secs(60)), "1 min");
        assert_eq!(human(Duration::from_secs(14 * 60 - 5)), "14 min");
        assert_eq!(human(Duration::from_secs(2 * 3600 + 5 * 60)), "2 h 5 min");
        assert_eq!(
            shown_url("https://u:p@proxy.example/vt"),
            "https://proxy.example/vt"
        );
    }
}
