//! AlienVault OTX API v1, the `general` section of an indicator:
//! `GET /api/v1/indicators/{IPv4|IPv6}/{ip}/general` for client addresses
//! and `GET /api/v1/indicators/file/{sha256}/general` for attachments, with
//! the key in `X-OTX-API-KEY`. Of the answer we keep `pulse_info.count` and
//! the names of the first pulses of `pulse_info.pulses`, in OTX's order.

use super::Kind;
use super::json::{self, At, Json};
use serde::{Deserialize, Serialize};

pub const DEFAULT_URL: &str = "https://otx.alienvault.com";
pub const KEY_HEADER: &str = "X-OTX-API-KEY";
/// Pulse names kept.
pub const TOP_PULSES: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pulses {
    pub pulses: u64,
    pub top_pulses: Vec<String>,
}

/// `indicator` is canonical: a lower-case sha256, or an address as
/// `IpAddr` prints it.
pub fn url(base: &str, kind: Kind, indicator: &str) -> String {
    let section = match kind {
        Kind::File => "file",
        Kind::Ip if indicator.contains(':') => "IPv6",
        Kind::Ip => "IPv4",
    };
    format!("{base}/api/v1/indicators/{section}/{indicator}/general")
}

pub fn parse(body: &str) -> Result<Pulses, String> {
    let root = json::parse(body)?;
    let info = root
        .at(&["pulse_info"])
        .filter(|p| p.is_object())
        .ok_or("no pulse_info in the answer")?;
    let listed = info.at(&["pulses"]).and_then(Json::as_array);
    let top_pulses = listed
        .into_iter()
        .flatten()
        .filter_map(|p| json::text(p.at(&["name"])))
        .take(TOP_PULSES)
        .collect();
    let pulses = info
        .at(&["count"])
        .and_then(Json::as_u64)
        .unwrap_or_else(|| listed.map_or(0, |l| l.len() as u64));
    Ok(Pulses { pulses, top_pulses })
}

/// OTX's `detail` in an error answer.
pub fn error_message(body: &str) -> Option<String> {
    json::text(json::parse(body).ok()?.at(&["detail"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn general_sections() {
        let body = r#"{"indicator": "8.8.8.8", "type": "IPv4", "reputation": 0, "asn": "AS15169 google llc",
            "pulse_info": {"count": 7, "references": [], "related": {},
              "pulses": [{"id": "1", "name": "Spam wave", "tags": []}, {"id": "2", "name": "Brute force"},
                         {"id": "3", "name": "c"}, {"id": "4", "name": "d"}, {"id": "5", "name": "e"},
                         {"id": "6", "name": "f"}]},
            "sections": ["general", "geo"]}"#;
        assert_eq!(
            parse(body).unwrap(),
            Pulses {
                pulses: 7,
                top_pulses: ["Spam wave", "Brute force", "c", "d", "e"]
                    .map(String::from)
                    .to_vec(),
            }
        );
        assert!(parse("{}").is_err());
        assert_eq!(
            url("http://h", Kind::Ip, "2001:db8::1"),
            "http://h/api/v1/indicators/IPv6/2001:db8::1/general"
        );
        assert_eq!(
            url("http://h", Kind::Ip, "192.0.2.1"),
            "http://h/api/v1/indicators/IPv4/192.0.2.1/general"
        );
        assert_eq!(
            url("http://h", Kind::File, "ab"),
            "http://h/api/v1/indicators/file/ab/general"
        );
    }
}
