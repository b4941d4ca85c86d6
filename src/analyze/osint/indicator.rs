//! The indicators looked up, and the form they are sent in: a lower-case
//! sha256, or a public address as `IpAddr` prints it. A client's text never
//! goes into a URL or a file name as such.

use super::Kind;
use std::net::IpAddr;

/// The indicators of a run, most urgent first.
#[derive(Debug, Default, Clone)]
pub struct Indicators {
    /// Attachment sha256s, most seen first.
    pub files: Vec<String>,
    /// Client addresses, most sessions first.
    pub ips: Vec<String>,
}

impl Indicators {
    pub(super) fn of(&self, kind: Kind) -> &[String] {
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
}
