//! AbuseIPDB API v2, `GET /api/v2/check?ipAddress=…&maxAgeInDays=…` with the
//! key in `Key`. The answer's `data` holds `abuseConfidenceScore`,
//! `countryCode`, `usageType`, `isp`, `domain`, `totalReports`,
//! `numDistinctUsers`, `lastReportedAt` and `isTor`; every address gets one
//! (a score of 0 when nobody reported it). Each answer carries
//! `X-RateLimit-Remaining`, the checks left today.

use super::json::{self, At, Json};
use serde::{Deserialize, Serialize};

pub const DEFAULT_URL: &str = "https://api.abuseipdb.com";
pub const KEY_HEADER: &str = "Key";
/// Reports older than this are not counted (AbuseIPDB's default is 30).
pub const DEFAULT_MAX_AGE_DAYS: u32 = 90;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub score: Option<u64>,
    pub country: Option<String>,
    pub usage_type: Option<String>,
    pub isp: Option<String>,
    pub domain: Option<String>,
    pub reports: Option<u64>,
    pub reporters: Option<u64>,
    pub last_reported: Option<String>,
    pub tor: Option<bool>,
}

/// `ip` is canonical (digits, hex, dots and colons); the colons of IPv6
/// are percent-encoded, as AbuseIPDB asks.
pub fn url(base: &str, ip: &str, max_age_days: u32) -> String {
    format!(
        "{base}/api/v2/check?ipAddress={}&maxAgeInDays={max_age_days}",
        ip.replace(':', "%3A")
    )
}

pub fn parse(body: &str) -> Result<Check, String> {
    let root = json::parse(body)?;
    let data = root
        .at(&["data"])
        .filter(|d| d.is_object())
        .ok_or("no data in the answer")?;
    let field = |name: &str| data.at(&[name]);
    Ok(Check {
        score: field("abuseConfidenceScore").and_then(Json::as_u64),
        country: json::text(field("countryCode")),
        usage_type: json::text(field("usageType")),
        isp: json::text(field("isp")),
        domain: json::text(field("domain")),
        reports: field("totalReports").and_then(Json::as_u64),
        reporters: field("numDistinctUsers").and_then(Json::as_u64),
        last_reported: json::text(field("lastReportedAt")),
        tor: field("isTor").and_then(Json::as_bool),
    })
}

/// The `detail` of the first error (`{"errors": [{"detail", "status"}]}`).
pub fn error_message(body: &str) -> Option<String> {
    let root = json::parse(body).ok()?;
    json::text(root.at(&["errors"])?.as_array()?.first()?.at(&["detail"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check() {
        // The example answer of AbuseIPDB's documentation.
        let body = r#"{"data": {"ipAddress": "118.25.6.39", "isPublic": true, "ipVersion": 4,
            "isWhitelisted": false, "abuseConfidenceScore": 100, "countryCode": "CN",
            "usageType": "Data Center/Web Hosting/Transit", "isp": "Tencent Cloud Computing (Beijing) Co. Ltd",
            "domain": "tencent.com", "hostnames": [], "isTor": false, "totalReports": 1,
            "numDistinctUsers": 1, "lastReportedAt": "2018-12-20T20:55:14+00:00"}}"#;
        assert_eq!(
            parse(body).unwrap(),
            Check {
                score: Some(100),
                country: Some("CN".into()),
                usage_type: Some("Data Center/Web Hosting/Transit".into()),
                isp: Some("Tencent Cloud Computing (Beijing) Co. Ltd".into()),
                domain: Some("tencent.com".into()),
                reports: Some(1),
                reporters: Some(1),
                last_reported: Some("2018-12-20T20:55:14+00:00".into()),
                tor: Some(false),
            }
        );
        assert_eq!(
            url("http://h", "2001:db8::1", 90),
            "http://h/api/v2/check?ipAddress=2001%3Adb8%3A%3A1&maxAgeInDays=90"
        );
        let error = r#"{"errors": [{"detail": "Daily rate limit of 1000 requests exceeded for this endpoint.", "status": 429}]}"#;
        assert_eq!(
            error_message(error).as_deref(),
            Some("Daily rate limit of 1000 requests exceeded for this endpoint.")
        );
    }
}
