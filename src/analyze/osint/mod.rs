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
//!
//! Also here: [`indicator`] (what is asked, in which form), [`findings`]
//! (what came back), [`progress`], [`http`] (ureq), [`clock`] (a trait, so
//! that tests can stub the time).

pub mod abuseipdb;
pub mod cache;
pub mod clock;
pub mod findings;
pub mod http;
pub mod indicator;
mod json;
pub mod otx;
pub mod progress;
pub mod rate_limit;
pub mod settings;
pub mod virustotal;

pub use findings::{Findings, Lookup, Outcome, ServiceReport};
pub use indicator::{Indicators, canonical, is_public};
pub use progress::Progress;

use cache::{Cache, Entry};
use clock::Clock;
use progress::{Shown, human};
use rate_limit::{Permit, QuotaLedger, RateLimiter};
use serde::{Deserialize, Serialize};
use settings::{OsintSettings, ServiceSettings};
use std::collections::HashMap;
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
        let mut findings = Findings::default();
        findings.cache_dir = self.cache.as_ref().map(|c| c.dir().display().to_string());
        findings.refresh = self.settings.refresh;
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
                findings.push(lookup);
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
    fn keys_are_removed_from_texts() {
        let r = Redactor(vec!["s3cr3t-key".into()]);
        assert_eq!(r.clean("bad key s3cr3t-key\r\n"), "bad key <key>\\r\\n");
        assert_eq!(r.clean(&"x".repeat(300)).chars().count(), 200);
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            shown_url("https://u:p@proxy.example/vt"),
            "https://proxy.example/vt"
        );
        assert_eq!(shown_url("http://127.0.0.1:9"), "http://127.0.0.1:9");
    }
}
