//! VirusTotal API v3, file reports by hash: `GET /api/v3/files/{sha256}`
//! with the key in `x-apikey`. Files are never uploaded: a hash VirusTotal
//! has not seen is answered 404 (`NotFoundError`), which is a result.
//!
//! The answer is a file object (`data.attributes`): of it we keep
//! `last_analysis_stats` (malicious, suspicious, undetected, harmless, and
//! the total of every category, engines that timed out or could not handle
//! the type included), `meaningful_name`, `type_description`,
//! `first_submission_date` (a Unix time), and
//! `popular_threat_classification.suggested_threat_label`.

use super::json::{self, At, Json};
use serde::{Deserialize, Serialize};

pub const DEFAULT_URL: &str = "https://www.virustotal.com";
pub const KEY_HEADER: &str = "x-apikey";
/// The page a person opens, whatever API base URL was used.
pub const PERMALINK: &str = "https://www.virustotal.com/gui/file/";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReport {
    pub malicious: u64,
    pub suspicious: u64,
    pub undetected: u64,
    pub harmless: u64,
    pub total: u64,
    pub meaningful_name: Option<String>,
    pub type_description: Option<String>,
    /// RFC 3339 UTC.
    pub first_submission: Option<String>,
    pub threat_label: Option<String>,
    pub permalink: String,
}

pub fn url(base: &str, sha256: &str) -> String {
    format!("{base}/api/v3/files/{sha256}")
}

/// The facts in a 200 answer.
pub fn parse(sha256: &str, body: &str) -> Result<FileReport, String> {
    let root = json::parse(body)?;
    let attributes = root
        .at(&["data", "attributes"])
        .filter(|a| a.is_object())
        .ok_or("no data.attributes in the answer")?;
    let stats = attributes.at(&["last_analysis_stats"]);
    let count = |name: &str| stats.and_then(|s| s.at(&[name])).and_then(Json::as_u64);
    let total = stats
        .and_then(Json::as_object)
        .map_or(0, |s| s.values().filter_map(Json::as_u64).sum());
    Ok(FileReport {
        malicious: count("malicious").unwrap_or(0),
        suspicious: count("suspicious").unwrap_or(0),
        undetected: count("undetected").unwrap_or(0),
        harmless: count("harmless").unwrap_or(0),
        total,
        meaningful_name: json::text(attributes.at(&["meaningful_name"])),
        type_description: json::text(attributes.at(&["type_description"])),
        first_submission: attributes
            .at(&["first_submission_date"])
            .and_then(Json::as_i64)
            .and_then(json::unix_time),
        threat_label: json::text(
            attributes.at(&["popular_threat_classification", "suggested_threat_label"]),
        ),
        permalink: format!("{PERMALINK}{sha256}"),
    })
}

/// `code: message` from an error answer (`{"error": {"code", "message"}}`).
pub fn error_message(body: &str) -> Option<String> {
    let root = json::parse(body).ok()?;
    let code = json::text(root.at(&["error", "code"]));
    let message = json::text(root.at(&["error", "message"]));
    match (code, message) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (c, m) => c.or(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of VirusTotal's documented file object, trimmed.
    const FOUND: &str = r#"{"data": {"type": "file", "id": "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
      "links": {"self": "https://www.virustotal.com/api/v3/files/275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"},
      "attributes": {"type_description": "Text", "meaningful_name": "eicar.com",
        "first_submission_date": 1148301722, "names": ["eicar.com", "eicar.txt"],
        "last_analysis_stats": {"harmless": 0, "type-unsupported": 8, "suspicious": 0,
          "confirmed-timeout": 0, "timeout": 1, "failure": 0, "malicious": 62, "undetected": 5},
        "popular_threat_classification": {"suggested_threat_label": "virus.eicar/test",
          "popular_threat_category": [{"count": 21, "value": "virus"}]}}}}"#;

    #[test]
    fn a_file_report() {
        let sha = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
        let r = parse(sha, FOUND).unwrap();
        assert_eq!(
            r,
            FileReport {
                malicious: 62,
                suspicious: 0,
                undetected: 5,
                harmless: 0,
                total: 76,
                meaningful_name: Some("eicar.com".into()),
                type_description: Some("Text".into()),
                first_submission: Some("2006-05-22T12:42:02.000000Z".into()),
                threat_label: Some("virus.eicar/test".into()),
                permalink: format!("{PERMALINK}{sha}"),
            }
        );
        assert!(parse(sha, "{\"data\": 5}").is_err());
        assert!(
            parse(sha, "<html>")
                .unwrap_err()
                .starts_with("malformed JSON")
        );
        assert_eq!(
            error_message(r#"{"error": {"code": "NotFoundError", "message": "File not found"}}"#)
                .as_deref(),
            Some("NotFoundError: File not found")
        );
    }
}
