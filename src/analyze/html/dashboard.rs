//! The dashboard, index.html: the run's figures (from the summary, the
//! same numbers as report.json) and charts of counters kept from the rows
//! of the report tables and the sessions' TLS facts.

use super::charts;
use super::pages::{escape, page};
use crate::analyze::load::LoadedSession;
use crate::analyze::report::{Cell, Row};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

const TOP: usize = 10;

/// Counts per key; ties are broken by key, so the top lists are stable.
#[derive(Default)]
struct Counter(HashMap<String, u64>);

impl Counter {
    fn add(&mut self, key: &str, n: u64) {
        if let Some(v) = self.0.get_mut(key) {
            *v += n;
        } else {
            self.0.insert(key.to_string(), n);
        }
    }

    fn top(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.0.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(TOP);
        v
    }
}

#[derive(Default)]
pub struct Dashboard {
    /// Sessions and messages per minute (Unix time / 60).
    minutes: BTreeMap<i64, (u64, u64)>,
    countries: Counter,
    asns: Counter,
    helos: Counter,
    senders: Counter,
    recipients: Counter,
    subjects: Counter,
    usernames: Counter,
    passwords: Counter,
    attachment_types: Counter,
    tls: Counter,
    ja3: Counter,
    ja4: Counter,
    osint: Counter,
}

fn get<'a>(row: &'a Row, key: &str) -> Option<&'a Cell> {
    row.iter().find(|(k, _)| *k == key).map(|(_, c)| c)
}

fn text<'a>(row: &'a Row, key: &str) -> Option<&'a str> {
    match get(row, key) {
        Some(Cell::Str(s)) => Some(s),
        _ => None,
    }
}

fn number(row: &Row, key: &str) -> u64 {
    match get(row, key) {
        Some(Cell::Uint(n)) => *n,
        Some(Cell::Int(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}

fn domain(address: &str) -> &str {
    match address.rsplit_once('@') {
        Some((_, d)) if !d.is_empty() => d,
        _ => "(none)",
    }
}

impl Dashboard {
    pub fn row(&mut self, table: &str, row: &Row) {
        match table {
            "sessions" => {
                if let Some(t) = text(row, "started_at").and_then(crate::timestamp::parse_rfc3339) {
                    let e = self
                        .minutes
                        .entry(t.unix_timestamp().div_euclid(60))
                        .or_default();
                    e.0 += 1;
                    e.1 += number(row, "messages");
                }
                if let Some(h) = text(row, "helo") {
                    self.helos.add(h, 1);
                }
            }
            "clients" => {
                let sessions = number(row, "sessions");
                if let Some(c) = text(row, "country_iso") {
                    self.countries.add(c, sessions);
                }
                if let Some(Cell::Uint(asn)) = get(row, "asn") {
                    let org = text(row, "as_org").unwrap_or("");
                    self.asns.add(&format!("AS{asn} {org}"), sessions);
                }
                if let Some(s) = text(row, "abuseipdb_status").filter(|s| !s.is_empty()) {
                    let verdict = match get(row, "abuseipdb_score") {
                        Some(Cell::Uint(n)) if *n >= 50 => "client: AbuseIPDB score ≥ 50".into(),
                        Some(Cell::Uint(_)) => "client: AbuseIPDB score < 50".into(),
                        _ => format!("client: AbuseIPDB {s}"),
                    };
                    self.osint.add(&verdict, 1);
                }
            }
            "messages" => {
                let n = number(row, "count");
                if let Some(from) = text(row, "mail_from") {
                    self.senders.add(domain(from), n);
                }
                self.subjects
                    .add(text(row, "subject").unwrap_or("(no subject)"), n);
            }
            "recipients" => {
                if let Some(d) = text(row, "domain") {
                    self.recipients.add(d, number(row, "count"));
                }
            }
            "credentials" => {
                let n = number(row, "count");
                if let Some(u) = text(row, "username") {
                    self.usernames.add(u, n);
                }
                if let Some(p) = text(row, "password") {
                    self.passwords.add(p, n);
                }
            }
            "attachments" => {
                if let Some(Cell::List(types)) = get(row, "content_types") {
                    for t in types {
                        self.attachment_types.add(t, number(row, "count"));
                    }
                }
                if let Some(s) = text(row, "vt_status").filter(|s| !s.is_empty()) {
                    let verdict = match get(row, "vt_malicious") {
                        Some(Cell::Uint(n)) if *n > 0 => "file: VirusTotal malicious".into(),
                        Some(Cell::Uint(_)) => "file: VirusTotal clean".into(),
                        _ => format!("file: VirusTotal {s}"),
                    };
                    self.osint.add(&verdict, 1);
                }
            }
            _ => {}
        }
    }

    pub fn session(&mut self, s: &LoadedSession) {
        match &s.manifest.tls {
            Some(t) => {
                let state = if t.version.is_some() {
                    "TLS"
                } else {
                    "TLS failed"
                };
                self.tls.add(state, 1);
                if let Some(j) = &t.ja3 {
                    self.ja3.add(j, 1);
                }
                if let Some(j) = &t.ja4 {
                    self.ja4.add(j, 1);
                }
            }
            None => self.tls.add("plaintext", 1),
        }
    }

    /// Buckets of a minute for up to three hours of data, of an hour for
    /// up to three days, of a day past that.
    fn timeline(&self) -> (String, Vec<(String, u64, u64)>) {
        let (Some(&first), Some(&last)) =
            (self.minutes.keys().next(), self.minutes.keys().next_back())
        else {
            return ("Sessions and messages".into(), Vec::new());
        };
        let (step, unit) = match last - first {
            0..=180 => (1, "minute"),
            181..=4320 => (60, "hour"),
            _ => (1440, "day"),
        };
        let mut points = Vec::new();
        let mut bucket = first.div_euclid(step) * step;
        while bucket <= last && points.len() < 5000 {
            let (mut s, mut m) = (0, 0);
            for (a, b) in self.minutes.range(bucket..bucket + step).map(|(_, v)| v) {
                s += a;
                m += b;
            }
            let label = time::OffsetDateTime::from_unix_timestamp(bucket * 60)
                .map(|t| {
                    let (month, day) = (u8::from(t.month()), t.day());
                    match step {
                        1 => format!("{month:02}-{day:02} {:02}:{:02}", t.hour(), t.minute()),
                        60 => format!("{month:02}-{day:02} {:02}h", t.hour()),
                        _ => format!("{}-{month:02}-{day:02}", t.year()),
                    }
                })
                .unwrap_or_default();
            points.push((label, s, m));
            bucket += step;
        }
        (format!("Sessions and messages per {unit} (UTC)"), points)
    }

    pub fn page(
        &self,
        summary: &serde_json::Value,
        tables: &[&str],
        lookups: u64,
    ) -> Result<String, String> {
        let totals = &summary["totals"];
        let figures = [
            ("sessions", "Sessions"),
            ("messages", "Messages"),
            ("clients", "Distinct clients"),
            ("distinct_credentials", "Credentials"),
            ("attachments", "Attachments"),
            ("campaigns", "Campaigns"),
        ];
        let mut body = String::from("<h1>Dashboard</h1>\n<section class=\"figures\">\n");
        for (key, name) in figures {
            let value = totals[key].as_u64().unwrap_or(0);
            let _ = writeln!(
                body,
                "<div class=\"figure\" data-key=\"{key}\"><span class=\"value\">{value}</span>\
                 <span class=\"name\">{}</span></div>",
                escape(name)
            );
        }
        let span = |k: &str| {
            summary[k]
                .as_str()
                .map(escape)
                .unwrap_or_else(|| "–".into())
        };
        let _ = writeln!(
            body,
            "</section>\n<p class=\"span\">From {} to {}; {} errors (see Errors).</p>",
            span("first_seen"),
            span("last_seen"),
            summary["errors"].as_u64().unwrap_or(0)
        );
        let (title, points) = self.timeline();
        body.push_str("<section class=\"charts\">\n");
        if !points.is_empty() {
            let _ = writeln!(
                body,
                "<figure class=\"wide\">{}</figure>",
                charts::timeline(&title, &points)?
            );
        }
        let mut bar = |title: &str, c: &Counter| -> Result<(), String> {
            let top = c.top();
            if !top.is_empty() {
                let _ = writeln!(body, "<figure>{}</figure>", charts::bars(title, &top)?);
            }
            Ok(())
        };
        bar("Top countries (sessions)", &self.countries)?;
        bar("Top ASNs (sessions)", &self.asns)?;
        bar("Top HELO names (sessions)", &self.helos)?;
        bar("Top sender domains (messages)", &self.senders)?;
        bar("Top recipient domains (recipients)", &self.recipients)?;
        bar("Top subjects (messages)", &self.subjects)?;
        bar("Top user names tried", &self.usernames)?;
        bar("Top passwords tried", &self.passwords)?;
        bar("Attachment types", &self.attachment_types)?;
        bar("TLS share (sessions)", &self.tls)?;
        bar("Top JA3 (sessions)", &self.ja3)?;
        bar("Top JA4 (sessions)", &self.ja4)?;
        if lookups > 0 {
            bar("OSINT verdicts", &self.osint)?;
        }
        body.push_str("</section>");
        Ok(page("Dashboard", "Dashboard", tables, "", &body, &[]))
    }
}
