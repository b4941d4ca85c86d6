//! Request budgets: a sliding one-minute window per service (VirusTotal's
//! public API allows 4 requests a minute) and a count per UTC day
//! ([`QuotaLedger`], kept on disk beside the cache so that two runs on the
//! same day share one day's quota). Time comes from a [`Clock`], so tests
//! can check the limits over a stubbed clock.

use super::clock::{Clock, day, since};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use time::OffsetDateTime;

/// The per-minute window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// A service's budget; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub per_minute: Option<u32>,
    pub per_day: Option<u32>,
}

/// One service's use of one UTC day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayUsage {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// Requests sent that day.
    pub requests: u64,
    /// The service said the day's quota is spent (a long `Retry-After`,
    /// `X-RateLimit-Remaining: 0`).
    #[serde(default)]
    pub exhausted: bool,
}

/// Requests per service and day, saved as plain JSON after each change.
#[derive(Debug, Default)]
pub struct QuotaLedger {
    path: Option<PathBuf>,
    days: Mutex<BTreeMap<String, DayUsage>>,
}

impl QuotaLedger {
    /// Reads `path` if it exists. A missing or unreadable ledger starts
    /// empty: at worst the service answers 429 and the run stops asking.
    pub fn load(path: PathBuf) -> QuotaLedger {
        let days = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        QuotaLedger {
            path: Some(path),
            days: Mutex::new(days),
        }
    }

    /// A ledger that is not saved.
    pub fn in_memory() -> QuotaLedger {
        QuotaLedger::default()
    }

    fn update(&self, service: &str, today: &str, change: impl FnOnce(&mut DayUsage)) {
        let mut days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        let usage = days.entry(service.to_string()).or_default();
        if usage.day != today {
            *usage = DayUsage {
                day: today.to_string(),
                ..DayUsage::default()
            };
        }
        change(usage);
        if let Some(path) = &self.path
            && let Ok(text) = serde_json::to_vec_pretty(&*days)
        {
            // Best effort: losing the count costs at most a 429 later.
            let _ = super::cache::write_atomically(path, &text);
        }
    }

    /// Requests made on `today` and whether the service said it was spent.
    pub fn used(&self, service: &str, today: &str) -> (u64, bool) {
        let days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        match days.get(service) {
            Some(u) if u.day == today => (u.requests, u.exhausted),
            _ => (0, false),
        }
    }

    pub fn count(&self, service: &str, today: &str) {
        self.update(service, today, |u| u.requests += 1);
    }

    pub fn exhaust(&self, service: &str, today: &str) {
        self.update(service, today, |u| u.exhausted = true);
    }
}

/// What [`RateLimiter::acquire`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Send the request now (after waiting this long for the window).
    Granted { waited: Duration },
    /// The day's quota is spent.
    QuotaSpent,
}

/// One service's limiter, used by the one thread that asks that service.
pub struct RateLimiter<'a> {
    service: &'static str,
    limits: Limits,
    /// Times of the requests in the last [`WINDOW`].
    recent: VecDeque<OffsetDateTime>,
    ledger: &'a QuotaLedger,
}

impl<'a> RateLimiter<'a> {
    pub fn new(service: &'static str, limits: Limits, ledger: &'a QuotaLedger) -> RateLimiter<'a> {
        RateLimiter {
            service,
            limits,
            recent: VecDeque::new(),
            ledger,
        }
    }

    /// Requests left today, if there is a daily limit (0 once the service
    /// said the quota is spent).
    pub fn remaining_today(&self, now: OffsetDateTime) -> Option<u64> {
        let (used, exhausted) = self.ledger.used(self.service, &day(now));
        if exhausted {
            return Some(0);
        }
        self.limits
            .per_day
            .map(|limit| u64::from(limit).saturating_sub(used))
    }

    /// Marks today's quota as spent, as the service said.
    pub fn exhaust(&self, now: OffsetDateTime) {
        self.ledger.exhaust(self.service, &day(now));
    }

    fn forget_old(&mut self, now: OffsetDateTime) {
        while self.recent.front().is_some_and(|&t| t + WINDOW <= now) {
            self.recent.pop_front();
        }
    }

    /// Waits (on `clock`) until a request is allowed, then counts it.
    /// `waiting` is told, at least every second, how long is left to wait.
    pub fn acquire(&mut self, clock: &dyn Clock, waiting: &mut dyn FnMut(Duration)) -> Permit {
        let mut waited = Duration::ZERO;
        loop {
            let now = clock.now();
            if self.remaining_today(now) == Some(0) {
                return Permit::QuotaSpent;
            }
            self.forget_old(now);
            if let (Some(limit), Some(&oldest)) = (self.limits.per_minute, self.recent.front())
                && self.recent.len() >= limit as usize
            {
                // At least a millisecond, so that a clock that does not move
                // cannot spin.
                let wait = since(oldest + WINDOW, now).max(Duration::from_millis(1));
                waiting(wait);
                let step = wait.min(Duration::from_secs(1));
                clock.sleep(step);
                waited += step;
                continue;
            }
            self.recent.push_back(now);
            self.ledger.count(self.service, &day(now));
            return Permit::Granted { waited };
        }
    }

    /// How long `n` more requests will wait for the per-minute window,
    /// counting only those today's quota still allows.
    pub fn estimate(&self, now: OffsetDateTime, n: usize) -> Duration {
        let Some(limit) = self.limits.per_minute.map(|l| l.max(1) as usize) else {
            return Duration::ZERO;
        };
        let n = match self.remaining_today(now) {
            Some(left) => n.min(usize::try_from(left).unwrap_or(usize::MAX)),
            None => n,
        };
        let mut times: Vec<OffsetDateTime> = self
            .recent
            .iter()
            .copied()
            .filter(|&t| t + WINDOW > now)
            .collect();
        let mut at = now;
        for _ in 0..n {
            if times.len() >= limit {
                at = at.max(times[times.len() - limit] + WINDOW);
            }
            times.push(at);
        }
        since(at, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A clock that moves only when slept on.
    struct Stub(Mutex<OffsetDateTime>);

    impl Clock for Stub {
        fn now(&self) -> OffsetDateTime {
            *self.0.lock().unwrap()
        }
        fn sleep(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }

    fn start() -> OffsetDateTime {
        time::macros::datetime!(2026-11-27 23:58:00 UTC)
    }

    #[test]
    fn four_a_minute_then_the_day_runs_out() {
        let clock = Stub(Mutex::new(start()));
        let ledger = QuotaLedger::in_memory();
        let limits = Limits {
            per_minute: Some(4),
            per_day: Some(6),
        };
        let mut limiter = RateLimiter::new("virustotal", limits, &ledger);
        assert_eq!(limiter.estimate(clock.now(), 6), Duration::from_secs(60));
        let mut granted = Vec::new();
        while let Permit::Granted { .. } = limiter.acquire(&clock, &mut |_| {}) {
            granted.push(clock.now() - start());
        }
        let secs: Vec<i64> = granted.iter().map(|d| d.whole_seconds()).collect();
        assert_eq!(secs, [0, 0, 0, 0, 60, 60]);
        assert_eq!(limiter.remaining_today(clock.now()), Some(0));
        assert_eq!(ledger.used("virustotal", "2026-11-27"), (6, false));
        // A new UTC day, a new quota.
        clock.sleep(Duration::from_secs(60));
        assert_eq!(limiter.remaining_today(clock.now()), Some(6));
        assert!(matches!(
            limiter.acquire(&clock, &mut |_| {}),
            Permit::Granted { .. }
        ));
        assert_eq!(ledger.used("virustotal", "2026-11-28"), (1, false));
        limiter.exhaust(clock.now());
        assert_eq!(limiter.acquire(&clock, &mut |_| {}), Permit::QuotaSpent);
    }

    #[test]
    fn the_estimate_counts_the_windows() {
        let ledger = QuotaLedger::in_memory();
        let limits = Limits {
            per_minute: Some(4),
            per_day: Some(500),
        };
        let limiter = RateLimiter::new("virustotal", limits, &ledger);
        let now = start();
        assert_eq!(limiter.estimate(now, 0), Duration::ZERO);
        assert_eq!(limiter.estimate(now, 4), Duration::ZERO);
        assert_eq!(limiter.estimate(now, 5), Duration::from_secs(60));
        assert_eq!(limiter.estimate(now, 40), Duration::from_secs(9 * 60));
        // Past the day's quota nothing is waited for.
        assert_eq!(limiter.estimate(now, 10_000), Duration::from_secs(124 * 60));
        let free = RateLimiter::new("otx", Limits::default(), &ledger);
        assert_eq!(free.estimate(now, 10_000), Duration::ZERO);
    }

    #[test]
    fn the_ledger_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quota.json");
        let ledger = QuotaLedger::load(path.clone());
        ledger.count("abuseipdb", "2026-11-27");
        ledger.count("abuseipdb", "2026-11-27");
        ledger.exhaust("virustotal", "2026-11-27");
        let again = QuotaLedger::load(path.clone());
        assert_eq!(again.used("abuseipdb", "2026-11-27"), (2, false));
        assert_eq!(again.used("virustotal", "2026-11-27"), (0, true));
        assert_eq!(again.used("abuseipdb", "2026-11-28"), (0, false));
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(
            QuotaLedger::load(path).used("abuseipdb", "2026-11-27"),
            (0, false)
        );
    }
}
