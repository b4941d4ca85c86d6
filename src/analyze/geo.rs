//! Offline GeoIP and ASN: MaxMind databases (GeoLite2 or GeoIP2, City or
//! Country, and ASN or ISP), read whole into memory once and shared by the
//! workers. Names are the English ones.

use super::enrich::{Enrichment, IpFacts, IpSource, SourceInfo};
use maxminddb::{Reader, geoip2};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where geoipupdate puts the databases by default (Debian, Fedora, and
/// the upstream default).
pub const DEFAULT_DIRS: &[&str] = &[
    "/var/lib/GeoIP",
    "/usr/share/GeoIP",
    "/usr/local/share/GeoIP",
];
/// Location databases, best first: a City database also has the country.
const LOCATION_NAMES: &[&str] = &[
    "GeoLite2-City.mmdb",
    "GeoIP2-City.mmdb",
    "GeoLite2-Country.mmdb",
    "GeoIP2-Country.mmdb",
];
const ASN_NAMES: &[&str] = &["GeoLite2-ASN.mmdb", "GeoIP2-ISP.mmdb"];

/// Which question a database answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// City or Country: `--geoip-city`.
    Location,
    /// ASN or ISP: `--geoip-asn`.
    Asn,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Location => "geoip-city",
            Role::Asn => "geoip-asn",
        }
    }
}

/// How the databases are chosen: an explicit path (from the command line or
/// the config file) or a search of `dirs`.
#[derive(Debug, Clone, Default)]
pub struct GeoOptions {
    pub city: Option<PathBuf>,
    pub asn: Option<PathBuf>,
    pub dirs: Vec<PathBuf>,
    /// `--no-geoip`.
    pub disabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    City,
    Country,
    Asn,
}

pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    record: Record,
    info: SourceInfo,
}

impl GeoDb {
    /// Opens `path` for `role`; the error says what is wrong.
    pub fn open(path: &Path, role: Role, note: &str) -> Result<GeoDb, String> {
        let shown = path.display();
        let reader =
            Reader::open_readfile(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
        let meta = reader.metadata();
        let kind = meta.database_type.clone();
        let record = if kind.contains("City") || kind.contains("Enterprise") {
            Record::City
        } else if kind.contains("Country") {
            Record::Country
        } else if kind.contains("ASN") || kind.contains("ISP") {
            Record::Asn
        } else {
            return Err(format!("{shown} is a {kind:?} database, not a MaxMind one"));
        };
        let fits = match role {
            Role::Location => record != Record::Asn,
            Role::Asn => record == Record::Asn,
        };
        if !fits {
            let wanted = match role {
                Role::Location => "a City or Country",
                Role::Asn => "an ASN or ISP",
            };
            return Err(format!("{shown} is a {kind} database, not {wanted} one"));
        }
        let epoch = meta.build_epoch;
        let info = SourceInfo {
            name: role.name().into(),
            status: "loaded".into(),
            path: Some(path.display().to_string()),
            database_type: Some(kind),
            build_date: build_date(epoch),
            build_epoch: Some(epoch),
            note: note.into(),
            network: false,
        };
        Ok(GeoDb {
            reader,
            record,
            info,
        })
    }
}

fn build_date(epoch: u64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(epoch).ok()?).ok()?;
    Some(crate::timestamp::rfc3339(t))
}

impl IpSource for GeoDb {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn annotate(&self, ip: IpAddr, facts: &mut IpFacts) -> Result<(), String> {
        let found = self.reader.lookup(ip).map_err(|e| e.to_string())?;
        match self.record {
            Record::City => {
                let Some(r) = found.decode::<geoip2::City>().map_err(|e| e.to_string())? else {
                    return Ok(());
                };
                country(facts, &r.country, &r.continent);
                facts.city = r.city.names.english.map(str::to_string);
                if let Some(sub) = r.subdivisions.first() {
                    facts.subdivision = sub.names.english.map(str::to_string);
                }
                facts.postal = r.postal.code.map(str::to_string);
                facts.latitude = r.location.latitude;
                facts.longitude = r.location.longitude;
                facts.accuracy_km = r.location.accuracy_radius;
                facts.time_zone = r.location.time_zone.map(str::to_string);
            }
            Record::Country => {
                let Some(r) = found
                    .decode::<geoip2::Country>()
                    .map_err(|e| e.to_string())?
                else {
                    return Ok(());
                };
                country(facts, &r.country, &r.continent);
            }
            Record::Asn => {
                let Some(r) = found.decode::<geoip2::Asn>().map_err(|e| e.to_string())? else {
                    return Ok(());
                };
                facts.asn = r.autonomous_system_number;
                facts.as_org = r.autonomous_system_organization.map(str::to_string);
            }
        }
        Ok(())
    }
}

fn country(
    facts: &mut IpFacts,
    c: &geoip2::country::Country<'_>,
    continent: &geoip2::country::Continent<'_>,
) {
    facts.country_iso = c.iso_code.map(str::to_string);
    facts.country = c.names.english.map(str::to_string);
    facts.continent = continent.code.map(str::to_string);
    // MaxMind sets the flag only for members; absent means not a member.
    if c.iso_code.is_some() {
        facts.eu = Some(c.is_in_european_union.unwrap_or(false));
    }
}

/// Adds the location and ASN sources to `enrichment`. An explicitly given
/// database that cannot be used is an error (the caller stops); one found
/// by the search that cannot be used is described and skipped.
pub fn add_sources(options: &GeoOptions, enrichment: &mut Enrichment) -> Result<(), String> {
    for (role, given, names) in [
        (Role::Location, &options.city, LOCATION_NAMES),
        (Role::Asn, &options.asn, ASN_NAMES),
    ] {
        let unavailable = |status: &str, path: Option<&Path>, note: String| SourceInfo {
            name: role.name().into(),
            status: status.into(),
            path: path.map(|p| p.display().to_string()),
            note,
            ..SourceInfo::default()
        };
        if options.disabled {
            enrichment.add_unavailable(unavailable("disabled", None, "--no-geoip".into()));
            continue;
        }
        if let Some(path) = given {
            let db =
                GeoDb::open(path, role, "given").map_err(|e| format!("--{}: {e}", role.name()))?;
            enrichment.add(Box::new(db));
            continue;
        }
        let candidates: Vec<PathBuf> = names
            .iter()
            .flat_map(|name| options.dirs.iter().map(move |dir| dir.join(name)))
            .collect();
        match candidates.iter().find(|p| p.is_file()) {
            Some(path) => match GeoDb::open(path, role, "found in a default location") {
                Ok(db) => enrichment.add(Box::new(db)),
                Err(e) => enrichment.add_unavailable(unavailable("failed", Some(path), e)),
            },
            None => {
                let tried: Vec<String> =
                    candidates.iter().map(|p| p.display().to_string()).collect();
                let note = format!(
                    "no database given (--{} or the config file) and none found at {}",
                    role.name(),
                    tried.join(", ")
                );
                enrichment.add_unavailable(unavailable("missing", None, note));
            }
        }
    }
    Ok(())
}
