//! One HTTP GET with ureq: the status, the body (at most 16 MiB) and the
//! headers the rate limits need. Any status is an answer (the caller sorts
//! them out); a timeout, a refused connection or a body that is not text is
//! an error. Redirects are not followed, so that a key sent in a header
//! never goes to another host. Proxies come from the usual environment
//! variables (`HTTPS_PROXY`, `NO_PROXY`...), as ureq reads them.

use std::time::Duration;
use time::OffsetDateTime;

/// Largest response body read.
const MAX_BODY: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
    /// `Retry-After`, in seconds or as an HTTP date.
    pub retry_after: Option<Duration>,
    /// `X-RateLimit-Remaining` (AbuseIPDB: checks left today).
    pub rate_limit_remaining: Option<u64>,
}

pub struct Client {
    agent: ureq::Agent,
    timeout: Duration,
}

impl Client {
    /// A client whose every request, body included, ends within `timeout`.
    pub fn new(timeout: Duration) -> Client {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("latrine/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            timeout,
        }
    }

    /// GET `url` with `headers`; `now` dates a `Retry-After` given as a date.
    pub fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        now: OffsetDateTime,
    ) -> Result<Response, String> {
        let mut request = self.agent.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.call().map_err(|e| self.describe(e))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
        };
        let status = response.status().as_u16();
        let retry_after = header("retry-after").and_then(|v| retry_after(&v, now));
        let rate_limit_remaining = header("x-ratelimit-remaining").and_then(|v| v.parse().ok());
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| self.describe(e))?;
        Ok(Response {
            status,
            body,
            retry_after,
            rate_limit_remaining,
        })
    }

    fn describe(&self, e: ureq::Error) -> String {
        match e {
            ureq::Error::Timeout(_) => format!("timeout after {} s", self.timeout.as_secs_f64()),
            ureq::Error::Io(io) => io.to_string(),
            ureq::Error::HostNotFound => "host not found".into(),
            other => other.to_string(),
        }
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110, section 10.2.3).
pub fn retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    Some(super::clock::since(at, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_both_forms() {
        let now = time::macros::datetime!(2026-11-27 12:00:00 UTC);
        assert_eq!(retry_after("30", now), Some(Duration::from_secs(30)));
        assert_eq!(
            retry_after("Fri, 27 Nov 2026 12:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after("Fri, 27 Nov 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }
}
