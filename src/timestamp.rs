//! Timestamps as the spool writes them: RFC 3339, UTC, microseconds.

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

const RFC3339_MICROS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The current time in UTC.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// `2026-11-27T16:22:31.123456Z`: fixed width, so that strings sort by time.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(RFC3339_MICROS)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".into())
}

/// Parses any RFC 3339 timestamp (the reader accepts more than the writer emits).
pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_round_trip() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.000007 UTC);
        let s = rfc3339(t);
        assert_eq!(s, "2026-01-02T03:04:05.000007Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
    }
}
