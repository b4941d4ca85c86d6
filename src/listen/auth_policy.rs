//! Whether to "accept" the credentials a client offers.
//!
//! The default, accept after 5 failures per client IP, serves both goals of
//! a honeypot: a brute-forcer is refused long enough to show its list (the
//! first 5 pairs from each IP are recorded as failures), then "succeeds", and
//! a spammer holding stolen credentials goes on to send mail, which is what
//! we want to capture. Counts are kept across sessions, in a bounded table.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

/// The configured policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPolicy {
    Accept,
    Reject,
    /// Reject the first `failures` complete attempts from an IP, then accept.
    AcceptAfter {
        failures: u32,
    },
}

impl AuthPolicy {
    pub const DEFAULT: AuthPolicy = AuthPolicy::AcceptAfter { failures: 5 };

    /// `accept`, `reject` or `accept-after:N`.
    pub fn parse(text: &str) -> Option<AuthPolicy> {
        match text {
            "accept" => Some(AuthPolicy::Accept),
            "reject" => Some(AuthPolicy::Reject),
            _ => text
                .strip_prefix("accept-after:")
                .and_then(|n| n.parse().ok())
                .map(|failures| AuthPolicy::AcceptAfter { failures }),
        }
    }
}

impl std::fmt::Display for AuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthPolicy::Accept => f.write_str("accept"),
            AuthPolicy::Reject => f.write_str("reject"),
            AuthPolicy::AcceptAfter { failures } => write!(f, "accept-after:{failures}"),
        }
    }
}

/// IPs remembered at most; the oldest is forgotten first.
const REMEMBERED_IPS: usize = 100_000;

/// Failure counts per client IP, shared by all sessions.
#[derive(Debug)]
pub struct AuthJudge {
    policy: AuthPolicy,
    state: Mutex<(HashMap<IpAddr, u32>, VecDeque<IpAddr>)>,
    capacity: usize,
}

impl AuthJudge {
    pub fn new(policy: AuthPolicy) -> AuthJudge {
        AuthJudge::with_capacity(policy, REMEMBERED_IPS)
    }

    pub fn with_capacity(policy: AuthPolicy, capacity: usize) -> AuthJudge {
        AuthJudge {
            policy,
            state: Mutex::new((HashMap::new(), VecDeque::new())),
            capacity: capacity.max(1),
        }
    }

    /// Decides one complete attempt from `ip`.
    pub fn decide(&self, ip: IpAddr) -> bool {
        let limit = match self.policy {
            AuthPolicy::Accept => return true,
            AuthPolicy::Reject => return false,
            AuthPolicy::AcceptAfter { failures } => failures,
        };
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (counts, order) = &mut *guard;
        if !counts.contains_key(&ip) {
            if counts.len() >= self.capacity
                && let Some(oldest) = order.pop_front()
            {
                counts.remove(&oldest);
            }
            order.push_back(ip);
        }
        let seen = counts.entry(ip).or_insert(0);
        if *seen >= limit {
            return true;
        }
        *seen += 1;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_after_counts_per_ip_and_forgets_the_oldest() {
        let judge = AuthJudge::with_capacity(AuthPolicy::AcceptAfter { failures: 2 }, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        assert!(!judge.decide(a));
        assert!(!judge.decide(a));
        assert!(judge.decide(a));
        assert!(judge.decide(a));
        assert!(!judge.decide(b));
        assert!(!judge.decide(c)); // forgets a
        assert!(!judge.decide(a));
    }

    #[test]
    fn parse_policies() {
        assert_eq!(AuthPolicy::parse("accept"), Some(AuthPolicy::Accept));
        assert_eq!(
            AuthPolicy::parse("accept-after:3"),
            Some(AuthPolicy::AcceptAfter { failures: 3 })
        );
        assert_eq!(AuthPolicy::parse("maybe"), None);
        assert_eq!(AuthPolicy::DEFAULT.to_string(), "accept-after:5");
    }
}
