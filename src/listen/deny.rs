//! Deny lists: client addresses and countries whose connections are closed
//! at once, before any session work (no greeting, no session directory, no
//! TLS), and counted ([`crate::spool::denials`]).
//!
//! A deny file holds one IPv4 or IPv6 address or CIDR block a line; `#` and
//! `;` start a comment (so that lists like Spamhaus DROP load as they are),
//! blank lines are skipped. A bad line refuses the whole list with its file,
//! line number and reason: a sensor never runs with half a list.
//!
//! Lookups cost one hash probe per distinct prefix length in the lists, so
//! a list of a million blocks is as fast to match as a list of ten.

use maxminddb::{Reader, geoip2};
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// geoipupdate's usual database, used for country rules when none is given.
pub const DEFAULT_COUNTRY_DB: &str = "/var/lib/GeoIP/GeoLite2-Country.mmdb";

/// Largest deny file read: far above any published list.
const MAX_FILE: u64 = 256 << 20;

/// ISO 3166-1 alpha-2, the officially assigned codes.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ \
BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ \
DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT \
GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY \
KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX \
MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS \
RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN \
TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// What the lists say of one client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Country rules are on and the database does not know the address:
    /// allowed, and counted under [`crate::spool::denials::ALLOWED_UNKNOWN_COUNTRY`].
    AllowUnknownCountry,
    /// Closed, under this rule (`cidr:192.0.2.0/24`, `country:NL`).
    Deny(Arc<str>),
}

/// Blocks of one address family, by prefix length.
#[derive(Debug, Default)]
struct Blocks {
    /// Prefix length to (network bits to rule), longest first when matching.
    by_length: Vec<(u8, HashMap<u128, Arc<str>>)>,
}

impl Blocks {
    fn insert(&mut self, network: u128, length: u8, rule: Arc<str>) {
        match self.by_length.iter_mut().find(|(l, _)| *l == length) {
            Some((_, map)) => {
                map.entry(network).or_insert(rule);
            }
            None => {
                self.by_length
                    .push((length, HashMap::from([(network, rule)])));
                self.by_length.sort_by_key(|b| std::cmp::Reverse(b.0));
            }
        }
    }

    /// The most specific block holding `bits` (an address of `width` bits).
    fn find(&self, bits: u128, width: u8) -> Option<&Arc<str>> {
        self.by_length
            .iter()
            .find_map(|(length, map)| map.get(&mask(bits, *length, width)))
    }

    fn len(&self) -> usize {
        self.by_length.iter().map(|(_, m)| m.len()).sum()
    }
}

fn mask(bits: u128, length: u8, width: u8) -> u128 {
    if length == 0 {
        return 0;
    }
    let keep = u128::MAX << (128 - u32::from(length));
    // Addresses sit in the low `width` bits: shift the mask there.
    ((bits << (128 - u32::from(width))) & keep) >> (128 - u32::from(width))
}

/// Country rules and the database that decides them.
struct Countries {
    codes: BTreeSet<String>,
    reader: Reader<Vec<u8>>,
    database: PathBuf,
}

/// The deny lists in force: address blocks and countries.
#[derive(Default)]
pub struct DenyList {
    v4: Blocks,
    v6: Blocks,
    countries: Option<Countries>,
}

impl std::fmt::Debug for DenyList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DenyList({})", self.describe())
    }
}

/// What the deny lists are made from (the `[deny]` table or the options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenySources {
    pub files: Vec<PathBuf>,
    /// Upper-case alpha-2 codes.
    pub countries: Vec<String>,
    /// The country database: given, or the default when it exists.
    pub geoip_country: Option<PathBuf>,
}

impl DenyList {
    /// Reads every file and opens the country database. The error names
    /// the file and line, or the database, and says what is wrong.
    pub fn load(sources: &DenySources) -> Result<DenyList, String> {
        let mut list = DenyList::default();
        for file in &sources.files {
            list.read_file(file)?;
        }
        if !sources.countries.is_empty() {
            let Some(database) = &sources.geoip_country else {
                return Err(format!(
                    "deny countries need a country database: give --geoip-country FILE \
                     (a MaxMind City or Country database; {DEFAULT_COUNTRY_DB} is used when it exists)"
                ));
            };
            list.countries = Some(open_country_db(database, &sources.countries)?);
        }
        Ok(list)
    }

    fn read_file(&mut self, path: &Path) -> Result<(), String> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("deny file {shown}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("deny file {shown}: not a regular file"));
        }
        if meta.len() > MAX_FILE {
            return Err(format!(
                "deny file {shown}: {} bytes, more than the {MAX_FILE} read",
                meta.len()
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("deny file {shown}: {e}"))?;
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            let at = |reason: String| format!("{shown}:{}: {reason}", i + 1);
            let text = std::str::from_utf8(line).map_err(|_| at("not UTF-8 text".into()))?;
            let entry = text.split(['#', ';']).next().unwrap_or_default().trim();
            if entry.is_empty() {
                continue;
            }
            let (address, length) = parse_block(entry).map_err(at)?;
            let rule: Arc<str> = format!("cidr:{address}/{length}").into();
            match address {
                IpAddr::V4(a) => self.v4.insert(u128::from(u32::from(a)), length, rule),
                IpAddr::V6(a) => self.v6.insert(u128::from(a), length, rule),
            }
        }
        Ok(())
    }

    /// Decides one client address. IPv4-mapped IPv6 addresses
    /// (`::ffff:192.0.2.1`, what a dual-stack socket reports) count as IPv4.
    pub fn check(&self, ip: IpAddr) -> Verdict {
        let ip = ip.to_canonical();
        let block = match ip {
            IpAddr::V4(a) => self.v4.find(u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => self.v6.find(u128::from(a), 128),
        };
        if let Some(rule) = block {
            return Verdict::Deny(Arc::clone(rule));
        }
        let Some(countries) = &self.countries else {
            return Verdict::Allow;
        };
        match country_of(&countries.reader, ip) {
            Some(code) if countries.codes.contains(code.as_str()) => {
                Verdict::Deny(format!("country:{code}").into())
            }
            Some(_) => Verdict::Allow,
            None => Verdict::AllowUnknownCountry,
        }
    }

    /// Whether any rule is set (so that the accept path can skip the lookup).
    pub fn is_empty(&self) -> bool {
        self.v4.len() == 0 && self.v6.len() == 0 && self.countries.is_none()
    }

    /// `3 blocks, countries CN,RU (db)` for the log.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("{} address blocks", self.v4.len() + self.v6.len())];
        if let Some(c) = &self.countries {
            let codes: Vec<&str> = c.codes.iter().map(String::as_str).collect();
            parts.push(format!(
                "countries {} (database {})",
                codes.join(","),
                c.database.display()
            ));
        }
        parts.join(", ")
    }
}

/// `192.0.2.0/24`, `2001:db8::/32` or a single address. A block with bits
/// set past its prefix is refused: it is usually a typo for another block.
fn parse_block(entry: &str) -> Result<(IpAddr, u8), String> {
    let (address, length) = match entry.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (entry, None),
    };
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("{entry:?} is not an IP address or CIDR block"))?;
    let width: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let length = match length {
        None => width,
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= width)
            .ok_or_else(|| format!("{entry:?}: prefix length {l:?} is not 0 to {width}"))?,
    };
    let bits = match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    if mask(bits, length, width) != bits {
        let network = match ip {
            IpAddr::V4(_) => IpAddr::V4((mask(bits, length, width) as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(mask(bits, length, width).into()),
        };
        return Err(format!(
            "{entry:?} has bits set past its /{length} prefix (did you mean {network}/{length}?)"
        ));
    }
    Ok((ip, length))
}

/// Checks and normalises country codes: `cn, RU` to `CN`, `RU`.
pub fn country_codes(given: &[String]) -> Result<Vec<String>, String> {
    let known: BTreeSet<&str> = COUNTRIES.split_whitespace().collect();
    let mut codes = Vec::new();
    for item in given.iter().flat_map(|g| g.split(',')) {
        let code = item.trim().to_ascii_uppercase();
        if code.is_empty() {
            continue;
        }
        if !known.contains(code.as_str()) {
            return Err(format!(
                "{item:?} is not an ISO 3166 alpha-2 country code (like CN, RU, US)"
            ));
        }
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    Ok(codes)
}

fn open_country_db(path: &Path, codes: &[String]) -> Result<Countries, String> {
    let shown = path.display();
    let reader = Reader::open_readfile(path)
        .map_err(|e| format!("country database {shown}: cannot open: {e}"))?;
    let kind = &reader.metadata().database_type;
    if !(kind.contains("Country") || kind.contains("City") || kind.contains("Enterprise")) {
        return Err(format!(
            "country database {shown}: a {kind:?} database, not a MaxMind City or Country one"
        ));
    }
    Ok(Countries {
        codes: codes.iter().cloned().collect(),
        reader,
        database: path.to_path_buf(),
    })
}

/// The country of an address: where it is, else where its network is registered.
fn country_of(reader: &Reader<Vec<u8>>, ip: IpAddr) -> Option<String> {
    let found = reader.lookup(ip).ok()?;
    let record = found.decode::<geoip2::Country>().ok()??;
    record
        .country
        .iso_code
        .or(record.registered_country.iso_code)
        .map(str::to_ascii_uppercase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn list(lines: &str) -> Result<DenyList, String> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(lines.as_bytes()).unwrap();
        DenyList::load(&DenySources {
            files: vec![file.path().to_path_buf()],
            ..DenySources::default()
        })
    }

    #[test]
    fn blocks_match_most_specific_first() {
        let l = list("# drop\n10.0.0.0/8 ; SBL1\n10.1.2.3\n\n2001:db8::/32\n::1\n").unwrap();
        let deny = |ip: &str| l.check(ip.parse().unwrap());
        assert_eq!(deny("10.1.2.3"), Verdict::Deny("cidr:10.1.2.3/32".into()));
        assert_eq!(deny("10.200.0.1"), Verdict::Deny("cidr:10.0.0.0/8".into()));
        assert_eq!(
            deny("::ffff:10.9.9.9"),
            Verdict::Deny("cidr:10.0.0.0/8".into())
        );
        assert_eq!(
            deny("2001:db8:1::5"),
            Verdict::Deny("cidr:2001:db8::/32".into())
        );
        assert_eq!(deny("::1"), Verdict::Deny("cidr:::1/128".into()));
        assert_eq!(deny("11.0.0.1"), Verdict::Allow);
        assert_eq!(deny("2001:db9::1"), Verdict::Allow);
        assert_eq!(
            list("0.0.0.0/0\n")
                .unwrap()
                .check("8.8.8.8".parse().unwrap()),
            Verdict::Deny("cidr:0.0.0.0/0".into())
        );
    }

    #[test]
    fn bad_lines_name_file_line_and_reason() {
        let e = list("10.0.0.0/8\n10.0.0.1/8\n").unwrap_err();
        assert!(
            e.ends_with(
                ":2: \"10.0.0.1/8\" has bits set past its /8 prefix (did you mean 10.0.0.0/8?)"
            ),
            "{e}"
        );
        let e = list("10.0.0.0/33\n").unwrap_err();
        assert!(
            e.contains(":1: \"10.0.0.0/33\": prefix length \"33\" is not 0 to 32"),
            "{e}"
        );
        let e = list("\n\nexample.com\n").unwrap_err();
        assert!(
            e.contains(":3: \"example.com\" is not an IP address"),
            "{e}"
        );
        let e = DenyList::load(&DenySources {
            files: vec!["/nonexistent/deny.txt".into()],
            ..DenySources::default()
        })
        .unwrap_err();
        assert!(e.starts_with("deny file /nonexistent/deny.txt: "), "{e}");
    }

    #[test]
    fn country_codes_are_checked() {
        assert_eq!(
            country_codes(&["cn, RU".into(), "CN".into()]).unwrap(),
            vec!["CN", "RU"]
        );
        let e = country_codes(&["XX".into()]).unwrap_err();
        assert!(e.contains("\"XX\" is not an ISO 3166 alpha-2"), "{e}");
        assert_eq!(COUNTRIES.split_whitespace().count(), 249);
    }
}
