//! The summary: totals, time span and top-10 lists, for `report.json` and
//! for the terminal. Terminal output escapes every string that came from a
//! client or a message, so a hostile subject cannot drive the terminal.

use super::aggregate::{Tables, Totals};
use super::enrich::SourceInfo;
use crate::escape::escape_text;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};

const TOP: usize = 10;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub totals: Totals,
    pub errors: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// Why geo or ASN columns are empty, if they are.
    pub enrichment_gaps: Vec<String>,
    pub top_countries: Vec<CountryTop>,
    pub top_asns: Vec<AsnTop>,
    pub top_clients: Vec<ClientTop>,
    pub top_credentials: Vec<CredentialTop>,
    pub top_attachments: Vec<AttachmentTop>,
    pub top_campaigns: Vec<CampaignTop>,
    pub top_domains: Vec<DomainTop>,
}

#[derive(Debug, Serialize)]
pub struct CountryTop {
    pub country_iso: String,
    pub country: Option<String>,
    pub sessions: u64,
    pub clients: u64,
}

#[derive(Debug, Serialize)]
pub struct AsnTop {
    pub asn: u32,
    pub as_org: Option<String>,
    pub sessions: u64,
    pub clients: u64,
}

#[derive(Debug, Serialize)]
pub struct ClientTop {
    pub ip: String,
    pub sessions: u64,
    pub messages: u64,
    pub country_iso: Option<String>,
    pub asn: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct CredentialTop {
    pub username: String,
    pub password: String,
    pub mechanism: String,
    pub count: u64,
    pub client_ips: u64,
}

#[derive(Debug, Serialize)]
pub struct AttachmentTop {
    pub sha256: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub size: u64,
    pub count: u64,
    pub client_ips: u64,
}

#[derive(Debug, Serialize)]
pub struct CampaignTop {
    pub campaign: String,
    pub subject: Option<String>,
    pub count: u64,
    pub distinct_messages: u64,
    pub client_ips: u64,
}

#[derive(Debug, Serialize)]
pub struct DomainTop {
    pub domain: String,
    pub count: u64,
    pub distinct_urls: u64,
}

impl Summary {
    pub fn new(t: &Tables, errors: u64, gaps: Vec<String>) -> Summary {
        // Countries and ASNs by sessions of their clients.
        let mut countries: BTreeMap<&str, CountryTop> = BTreeMap::new();
        let mut asns: BTreeMap<u32, AsnTop> = BTreeMap::new();
        for c in &t.clients {
            if let Some(iso) = &c.facts.country_iso {
                let e = countries.entry(iso).or_insert_with(|| CountryTop {
                    country_iso: iso.clone(),
                    country: c.facts.country.clone(),
                    sessions: 0,
                    clients: 0,
                });
                e.sessions += c.stats.count;
                e.clients += 1;
            }
            if let Some(asn) = c.facts.asn {
                let e = asns.entry(asn).or_insert_with(|| AsnTop {
                    asn,
                    as_org: c.facts.as_org.clone(),
                    sessions: 0,
                    clients: 0,
                });
                e.sessions += c.stats.count;
                e.clients += 1;
            }
        }
        let mut top_countries: Vec<CountryTop> = countries.into_values().collect();
        top_countries.sort_by(|a, b| {
            b.sessions
                .cmp(&a.sessions)
                .then(a.country_iso.cmp(&b.country_iso))
        });
        top_countries.truncate(TOP);
        let mut top_asns: Vec<AsnTop> = asns.into_values().collect();
        top_asns.sort_by(|a, b| b.sessions.cmp(&a.sessions).then(a.asn.cmp(&b.asn)));
        top_asns.truncate(TOP);
        Summary {
            totals: t.totals.clone(),
            errors,
            first_seen: t.first_seen.clone(),
            last_seen: t.last_seen.clone(),
            enrichment_gaps: gaps,
            top_countries,
            top_asns,
            top_clients: t
                .clients
                .iter()
                .take(TOP)
                .map(|c| ClientTop {
                    ip: c.ip.clone(),
                    sessions: c.stats.count,
                    messages: c.messages,
                    country_iso: c.facts.country_iso.clone(),
                    asn: c.facts.asn,
                })
                .collect(),
            top_credentials: t
                .credentials
                .iter()
                .take(TOP)
                .map(|c| CredentialTop {
                    username: c.username.clone(),
                    password: c.password.clone(),
                    mechanism: c.mechanism.clone(),
                    count: c.stats.count,
                    client_ips: c.stats.client_ips,
                })
                .collect(),
            top_attachments: t
                .attachments
                .iter()
                .take(TOP)
                .map(|a| AttachmentTop {
                    sha256: a.sha256.clone(),
                    filename: a.filenames.first().cloned(),
                    content_type: a.content_types.first().cloned(),
                    size: a.size,
                    count: a.stats.count,
                    client_ips: a.stats.client_ips,
                })
                .collect(),
            top_campaigns: t
                .campaigns
                .iter()
                .take(TOP)
                .map(|c| CampaignTop {
                    campaign: c.campaign.clone(),
                    subject: c.subject.clone(),
                    count: c.stats.count,
                    distinct_messages: c.distinct_messages,
                    client_ips: c.stats.client_ips,
                })
                .collect(),
            top_domains: t
                .domains
                .iter()
                .take(TOP)
                .map(|d| DomainTop {
                    domain: d.domain.clone(),
                    count: d.stats.count,
                    distinct_urls: d.distinct_urls,
                })
                .collect(),
        }
    }

    /// The end-of-run summary for a person: totals, then the top-10 tables
    /// that have anything in them.
    pub fn print(
        &self,
        out: &mut dyn Write,
        sources: &[SourceInfo],
        osint: &[String],
        reports: &str,
    ) -> io::Result<()> {
        let t = &self.totals;
        writeln!(
            out,
            "{} sessions ({} with messages) from {} clients, {} sensors; {} to {}",
            t.sessions,
            t.sessions_with_messages,
            t.clients,
            t.sensors,
            self.first_seen.as_deref().unwrap_or("-"),
            self.last_seen.as_deref().unwrap_or("-"),
        )?;
        writeln!(
            out,
            "{} messages ({} distinct, {} accepted, {} bytes) in {} campaigns; {} recipients ({} distinct)",
            t.messages,
            t.distinct_messages,
            t.accepted_messages,
            t.message_bytes,
            t.campaigns,
            t.recipients,
            t.distinct_recipients,
        )?;
        writeln!(
            out,
            "{} attachments ({} distinct), {} URLs on {} domains, {} auth attempts ({} distinct credentials)",
            t.attachments,
            t.distinct_attachments,
            t.urls,
            t.domains,
            t.auth_attempts,
            t.distinct_credentials,
        )?;
        for s in sources {
            match s.status.as_str() {
                "loaded" => writeln!(
                    out,
                    "{}: {} built {}",
                    s.name,
                    s.database_type.as_deref().unwrap_or("?"),
                    s.build_date.as_deref().unwrap_or("?")
                )?,
                _ => writeln!(out, "{}: {}: {}", s.name, s.status, s.note)?,
            }
        }
        for line in osint {
            writeln!(out, "{line}")?;
        }
        if t.denied_connections > 0 || t.allowed_unknown_country > 0 {
            writeln!(
                out,
                "{} connections denied from {} addresses (see denied); {} allowed with an unknown country",
                t.denied_connections, t.denied_clients, t.allowed_unknown_country,
            )?;
        }
        if t.duplicate_sessions > 0 {
            writeln!(
                out,
                "{} sessions seen twice were counted once",
                t.duplicate_sessions
            )?;
        }
        writeln!(
            out,
            "{} problems{}; reports: {reports}",
            self.errors,
            if self.errors > 0 { " (see errors)" } else { "" }
        )?;
        table(
            out,
            "Top countries",
            &["country", "sessions", "clients"],
            1,
            self.top_countries.iter().map(|c| {
                vec![
                    format!("{} {}", c.country_iso, c.country.as_deref().unwrap_or("")),
                    c.sessions.to_string(),
                    c.clients.to_string(),
                ]
            }),
        )?;
        table(
            out,
            "Top ASNs",
            &["asn", "sessions", "clients"],
            1,
            self.top_asns.iter().map(|a| {
                vec![
                    format!("AS{} {}", a.asn, a.as_org.as_deref().unwrap_or("")),
                    a.sessions.to_string(),
                    a.clients.to_string(),
                ]
            }),
        )?;
        table(
            out,
            "Top clients",
            &["ip", "sessions", "messages", "country", "asn"],
            1,
            self.top_clients.iter().map(|c| {
                vec![
                    c.ip.clone(),
                    c.sessions.to_string(),
                    c.messages.to_string(),
                    c.country_iso.clone().unwrap_or_default(),
                    c.asn.map(|a| format!("AS{a}")).unwrap_or_default(),
                ]
            }),
        )?;
        table(
            out,
            "Top credentials",
            &["username", "password", "mechanism", "count", "ips"],
            3,
            self.top_credentials.iter().map(|c| {
                vec![
                    c.username.clone(),
                    c.password.clone(),
                    c.mechanism.clone(),
                    c.count.to_string(),
                    c.client_ips.to_string(),
                ]
            }),
        )?;
        table(
            out,
            "Top attachments",
            &["sha256", "name", "type", "count", "ips"],
            3,
            self.top_attachments.iter().map(|a| {
                vec![
                    a.sha256.chars().take(16).collect(),
                    a.filename.clone().unwrap_or_default(),
                    a.content_type.clone().unwrap_or_default(),
                    a.count.to_string(),
                    a.client_ips.to_string(),
                ]
            }),
        )?;
        table(
            out,
            "Top campaigns",
            &["campaign", "subject", "messages", "distinct", "ips"],
            2,
            self.top_campaigns.iter().map(|c| {
                vec![
                    c.campaign.chars().take(16).collect(),
                    c.subject.clone().unwrap_or_default(),
                    c.count.to_string(),
                    c.distinct_messages.to_string(),
                    c.client_ips.to_string(),
                ]
            }),
        )?;
        table(
            out,
            "Top URL domains",
            &["domain", "messages", "urls"],
            1,
            self.top_domains.iter().map(|d| {
                vec![
                    d.domain.clone(),
                    d.count.to_string(),
                    d.distinct_urls.to_string(),
                ]
            }),
        )?;
        Ok(())
    }
}

/// Widest text cell shown, in characters.
const CELL: usize = 40;

/// Escaped, cut to [`CELL`] characters.
fn cell_text(s: &str) -> String {
    let escaped = escape_text(s.as_bytes());
    if escaped.chars().count() <= CELL {
        return escaped;
    }
    let mut cut: String = escaped.chars().take(CELL - 3).collect();
    cut.push_str("...");
    cut
}

/// Prints a table whose first `text` columns are text (left-aligned) and
/// the rest numbers (right-aligned); nothing when there are no rows.
fn table(
    out: &mut dyn Write,
    title: &str,
    headers: &[&str],
    text: usize,
    rows: impl Iterator<Item = Vec<String>>,
) -> io::Result<()> {
    let rows: Vec<Vec<String>> = rows
        .map(|r| r.iter().map(|c| cell_text(c)).collect())
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    writeln!(out, "\n{title}")?;
    let line = |cells: &[String]| {
        let mut shown = String::from(" ");
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w - c.chars().count();
            if i < text {
                shown.push_str(&format!(" {c}{}", " ".repeat(pad)));
            } else {
                shown.push_str(&format!("  {}{c}", " ".repeat(pad)));
            }
        }
        shown.trim_end().to_string()
    };
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    writeln!(out, "{}", line(&header))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    Ok(())
}
