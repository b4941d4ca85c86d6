//! The time as the OSINT stage sees it, behind a trait so that tests can
//! run the rate limits and `Retry-After` waits over a stubbed clock instead
//! of sleeping for minutes.

use std::time::Duration;
use time::OffsetDateTime;

pub trait Clock: Send + Sync {
    /// The current time, UTC.
    fn now(&self) -> OffsetDateTime;
    /// Blocks the calling thread for `duration`.
    fn sleep(&self, duration: Duration);
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// `later - earlier`, zero if `later` is not later.
pub fn since(later: OffsetDateTime, earlier: OffsetDateTime) -> Duration {
    Duration::try_from(later - earlier).unwrap_or(Duration::ZERO)
}

/// The UTC day of `t`, `YYYY-MM-DD` (free-tier quotas reset at midnight UTC).
pub fn day(t: OffsetDateTime) -> String {
    let d = t.to_offset(time::UtcOffset::UTC).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}
