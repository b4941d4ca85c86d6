//! Stage 5: reports. One table per entity, written as CSV (RFC 4180: a
//! header row, quotes where needed, CRLF), NDJSON (one object a line) and
//! inside `report.json`, from the same rows.
//!
//! Everything is written under temporary names in the output directory and
//! renamed into place at the end, so a report set is never half old, half
//! new. `sessions` and `errors` stream out in walk order while the spool is
//! read; the aggregated tables are written at the end, sorted (most counted
//! first, then by key). Nothing depends on timing or thread count, so the
//! same spools and databases give the same bytes; only `generated_at` in
//! `report.json` changes, and `SOURCE_DATE_EPOCH` pins it.
//!
//! Cells: JSON keeps every string exactly; CSV shows control characters
//! other than tab and line breaks as `\xHH` (some CSV readers choke on NUL).
//! Lists are JSON arrays in CSV too, except lists of plain tokens (sensors,
//! flags, limits), which are space-separated.

use super::aggregate::{
    AttachmentRow, CampaignRow, ClientRow, CredentialRow, DomainRow, MessageRow, RecipientRow,
    Stats, Tables, UrlRow,
};
use super::denied::DeniedRow;
use super::load::{LoadedSession, Problem};
use super::osint::{Facts, Findings, Kind, Lookup, Service};
use super::walk::WalkProblem;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// One value in a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Str(String),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
    /// Words without spaces: space-separated in CSV.
    Tokens(Vec<String>),
    /// Any strings: a JSON array, in CSV too.
    List(Vec<String>),
}

impl Cell {
    fn opt(s: &Option<String>) -> Cell {
        s.as_ref().map_or(Cell::Null, |s| Cell::Str(s.clone()))
    }

    fn csv(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Str(s) => csv_text(s),
            Cell::Int(i) => i.to_string(),
            Cell::Uint(u) => u.to_string(),
            Cell::Float(f) if f.is_finite() => f.to_string(),
            Cell::Float(_) => String::new(),
            Cell::Bool(b) => b.to_string(),
            Cell::Tokens(t) => csv_text(&t.join(" ")),
            Cell::List(l) => csv_text(&serde_json::to_string(l).unwrap_or_default()),
        }
    }

    /// The cell as JSON, appended to `out`.
    pub fn json(&self, out: &mut Vec<u8>) {
        let _ = match self {
            Cell::Null => out.write_all(b"null"),
            Cell::Str(s) => serde_json::to_writer(&mut *out, s).map_err(io::Error::other),
            Cell::Int(i) => write!(out, "{i}"),
            Cell::Uint(u) => write!(out, "{u}"),
            Cell::Float(f) if f.is_finite() => {
                serde_json::to_writer(&mut *out, f).map_err(io::Error::other)
            }
            Cell::Float(_) => out.write_all(b"null"),
            Cell::Bool(b) => write!(out, "{b}"),
            Cell::Tokens(l) | Cell::List(l) => {
                serde_json::to_writer(&mut *out, l).map_err(io::Error::other)
            }
        };
    }
}

/// Control characters but tab, CR and LF, as `\xHH`.
fn csv_text(s: &str) -> String {
    if !s
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && !matches!(c, '\t' | '\r' | '\n') {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub type Row = Vec<(&'static str, Cell)>;

/// The tables, in the order of `report.json`, with their columns.
pub const TABLES: &[(&str, &[&str])] = &[
    ("sessions", SESSION_COLUMNS),
    ("messages", MESSAGE_COLUMNS),
    ("campaigns", CAMPAIGN_COLUMNS),
    ("attachments", ATTACHMENT_COLUMNS),
    ("clients", CLIENT_COLUMNS),
    ("credentials", CREDENTIAL_COLUMNS),
    ("recipients", RECIPIENT_COLUMNS),
    ("urls", URL_COLUMNS),
    ("domains", DOMAIN_COLUMNS),
    ("lookups", LOOKUP_COLUMNS),
    ("denied", DENIED_COLUMNS),
    ("errors", ERROR_COLUMNS),
];

const SESSION_COLUMNS: &[&str] = &[
    "spool",
    "path",
    "sensor",
    "session_id",
    "started_at",
    "ended_at",
    "duration_ms",
    "end_reason",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "listener",
    "helo",
    "helo_total",
    "commands",
    "protocol_errors",
    "limits_hit",
    "messages",
    "accepted_messages",
    "recipients",
    "attachments",
    "auth_attempts",
    "flags",
    "country_iso",
    "asn",
    "as_org",
    "problems",
];

const STATS_COLUMNS: [&str; 6] = [
    "count",
    "sessions",
    "client_ips",
    "sensors",
    "first_seen",
    "last_seen",
];

macro_rules! with_stats {
    ($($before:literal),* ; $($after:literal),*) => {
        &[$($before,)* "count", "sessions", "client_ips", "sensors", "first_seen", "last_seen", $($after),*]
    };
}

const MESSAGE_COLUMNS: &[&str] = with_stats!("sha256", "size"; "recipients", "subject", "from",
    "mail_from", "campaign", "urls", "attachments", "truncated", "parse_error", "first_file");
const CAMPAIGN_COLUMNS: &[&str] =
    with_stats!("campaign"; "distinct_messages", "subject", "first_message", "sample");
const ATTACHMENT_COLUMNS: &[&str] = with_stats!("sha256", "md5", "sha1", "size", "content_types",
    "filenames"; "distinct_messages", "vt_status", "vt_malicious", "vt_suspicious", "vt_undetected",
    "vt_harmless", "vt_total", "vt_meaningful_name", "vt_type_description", "vt_first_submission",
    "vt_threat_label", "vt_permalink", "otx_status", "otx_pulses", "otx_top_pulses");
const CREDENTIAL_COLUMNS: &[&str] = with_stats!("username", "password", "mechanism"; "accepted");
const RECIPIENT_COLUMNS: &[&str] = with_stats!("address", "domain";);
const URL_COLUMNS: &[&str] = with_stats!("url", "domain"; "distinct_messages");
const DOMAIN_COLUMNS: &[&str] = with_stats!("domain"; "distinct_urls");
const CLIENT_COLUMNS: &[&str] = &[
    "ip",
    "sessions",
    "messages",
    "recipients",
    "auth_attempts",
    "first_seen",
    "last_seen",
    "sensors",
    "country_iso",
    "country",
    "continent",
    "eu",
    "city",
    "subdivision",
    "postal",
    "latitude",
    "longitude",
    "accuracy_km",
    "time_zone",
    "asn",
    "as_org",
    "abuseipdb_status",
    "abuseipdb_score",
    "abuseipdb_country",
    "abuseipdb_usage_type",
    "abuseipdb_isp",
    "abuseipdb_domain",
    "abuseipdb_reports",
    "abuseipdb_reporters",
    "abuseipdb_last_reported",
    "abuseipdb_tor",
    "otx_status",
    "otx_pulses",
    "otx_top_pulses",
];
const LOOKUP_COLUMNS: &[&str] = &[
    "service",
    "kind",
    "indicator",
    "status",
    "http_status",
    "queried_at",
    "from_cache",
    "requests",
];
const ERROR_COLUMNS: &[&str] = &["spool", "path", "session_id", "file", "stage", "reason"];

fn stats(row: &mut Row, s: &Stats) {
    let cells = [
        Cell::Uint(s.count),
        Cell::Uint(s.sessions),
        Cell::Uint(s.client_ips),
        Cell::Tokens(s.sensors.clone()),
        Cell::opt(&s.first_seen),
        Cell::opt(&s.last_seen),
    ];
    row.extend(STATS_COLUMNS.iter().copied().zip(cells));
}

/// A `sessions` row.
pub fn session_row(spool: &str, s: &LoadedSession) -> Row {
    let m = &s.manifest;
    let micros =
        |t: &str| crate::timestamp::parse_rfc3339(t).map(|t| t.unix_timestamp_nanos() / 1000);
    let duration = match (micros(&m.started_at), micros(&m.ended_at)) {
        (Some(a), Some(b)) => i64::try_from((b - a) / 1000).map_or(Cell::Null, Cell::Int),
        _ => Cell::Null,
    };
    let end_reason = serde_json::to_value(m.end_reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let recipients: usize = m.messages.iter().map(|r| r.rcpt_to.len()).sum();
    let attachments: usize = m.messages.iter().map(|r| r.attachments.len()).sum();
    vec![
        ("spool", Cell::Str(spool.into())),
        ("path", Cell::Str(s.dir.rel.clone())),
        ("sensor", Cell::Str(m.sensor.clone())),
        ("session_id", Cell::Str(m.session_id.clone())),
        ("started_at", Cell::Str(m.started_at.clone())),
        ("ended_at", Cell::Str(m.ended_at.clone())),
        ("duration_ms", duration),
        ("end_reason", Cell::Str(end_reason)),
        ("client_ip", Cell::Str(m.client.ip.clone())),
        ("client_port", Cell::Uint(u64::from(m.client.port))),
        ("server_ip", Cell::Str(m.server.ip.clone())),
        ("server_port", Cell::Uint(u64::from(m.server.port))),
        ("listener", Cell::Str(m.server.listener.clone())),
        ("helo", Cell::opt(&m.helo.first().cloned())),
        ("helo_total", Cell::Uint(m.helo_total)),
        ("commands", Cell::Uint(m.commands)),
        ("protocol_errors", Cell::Uint(m.protocol_errors_total)),
        ("limits_hit", Cell::Tokens(m.limits_hit.clone())),
        ("messages", Cell::Uint(m.messages.len() as u64)),
        (
            "accepted_messages",
            Cell::Uint(m.messages.iter().filter(|r| r.accepted).count() as u64),
        ),
        ("recipients", Cell::Uint(recipients as u64)),
        ("attachments", Cell::Uint(attachments as u64)),
        ("auth_attempts", Cell::Uint(m.auth.len() as u64)),
        ("flags", Cell::Tokens(m.flags.clone())),
        ("country_iso", Cell::opt(&s.client.country_iso)),
        (
            "asn",
            s.client
                .asn
                .map_or(Cell::Null, |a| Cell::Uint(u64::from(a))),
        ),
        ("as_org", Cell::opt(&s.client.as_org)),
        ("problems", Cell::Uint(s.problems.len() as u64)),
    ]
}

/// An `errors` row for a problem in a session.
pub fn problem_row(spool: &str, rel: &str, session_id: Option<&str>, p: &Problem) -> Row {
    vec![
        ("spool", Cell::Str(spool.into())),
        ("path", Cell::Str(rel.into())),
        (
            "session_id",
            session_id.map_or(Cell::Null, |s| Cell::Str(s.into())),
        ),
        ("file", Cell::Str(p.file.clone())),
        ("stage", Cell::Str(p.stage.into())),
        ("reason", Cell::Str(p.reason.clone())),
    ]
}

/// An `errors` row for a problem met while walking.
pub fn walk_row(spool: &str, p: &WalkProblem) -> Row {
    let problem = Problem {
        file: String::new(),
        stage: "walk",
        reason: p.reason.clone(),
    };
    problem_row(spool, &p.rel, None, &problem)
}

fn message_row(r: &MessageRow) -> Row {
    let mut row = vec![
        ("sha256", Cell::Str(r.sha256.clone())),
        ("size", Cell::Uint(r.size)),
    ];
    stats(&mut row, &r.stats);
    row.extend([
        ("recipients", Cell::Uint(r.recipients)),
        ("subject", Cell::opt(&r.subject)),
        ("from", Cell::opt(&r.from)),
        ("mail_from", Cell::Str(r.mail_from.clone())),
        ("campaign", Cell::opt(&r.campaign)),
        ("urls", Cell::Uint(r.urls)),
        ("attachments", Cell::Uint(r.attachments)),
        ("truncated", Cell::Bool(r.truncated)),
        ("parse_error", Cell::opt(&r.parse_error)),
        ("first_file", Cell::Str(r.first_file.clone())),
    ]);
    row
}

fn campaign_row(r: &CampaignRow) -> Row {
    let mut row = vec![("campaign", Cell::Str(r.campaign.clone()))];
    stats(&mut row, &r.stats);
    row.extend([
        ("distinct_messages", Cell::Uint(r.distinct_messages)),
        ("subject", Cell::opt(&r.subject)),
        ("first_message", Cell::Str(r.first_message.clone())),
        ("sample", Cell::Str(r.sample.clone())),
    ]);
    row
}

fn uint(v: Option<u64>) -> Cell {
    v.map_or(Cell::Null, Cell::Uint)
}

/// The OTX columns of an attachment or a client.
fn otx_cells(row: &mut Row, findings: &Findings, kind: Kind, indicator: &str) {
    let status = findings.status(Service::Otx, kind, indicator);
    let pulses = match findings
        .get(Service::Otx, kind, indicator)
        .and_then(Lookup::facts)
    {
        Some(Facts::Otx(p)) => Some(p),
        _ => None,
    };
    row.extend([
        ("otx_status", Cell::Str(status)),
        ("otx_pulses", uint(pulses.map(|p| p.pulses))),
        (
            "otx_top_pulses",
            pulses.map_or(Cell::Null, |p| Cell::List(p.top_pulses.clone())),
        ),
    ]);
}

fn attachment_row(r: &AttachmentRow, findings: &Findings) -> Row {
    let mut row = vec![
        ("sha256", Cell::Str(r.sha256.clone())),
        ("md5", Cell::Str(r.md5.clone())),
        ("sha1", Cell::Str(r.sha1.clone())),
        ("size", Cell::Uint(r.size)),
        ("content_types", Cell::List(r.content_types.clone())),
        ("filenames", Cell::List(r.filenames.clone())),
    ];
    stats(&mut row, &r.stats);
    row.push(("distinct_messages", Cell::Uint(r.distinct_messages)));
    let vt = match findings
        .get(Service::VirusTotal, Kind::File, &r.sha256)
        .and_then(Lookup::facts)
    {
        Some(Facts::VirusTotal(v)) => Some(v),
        _ => None,
    };
    let count = |f: fn(&super::osint::virustotal::FileReport) -> u64| uint(vt.map(f));
    let text =
        |f: fn(&super::osint::virustotal::FileReport) -> Option<String>| Cell::opt(&vt.and_then(f));
    row.extend([
        (
            "vt_status",
            Cell::Str(findings.status(Service::VirusTotal, Kind::File, &r.sha256)),
        ),
        ("vt_malicious", count(|v| v.malicious)),
        ("vt_suspicious", count(|v| v.suspicious)),
        ("vt_undetected", count(|v| v.undetected)),
        ("vt_harmless", count(|v| v.harmless)),
        ("vt_total", count(|v| v.total)),
        ("vt_meaningful_name", text(|v| v.meaningful_name.clone())),
        ("vt_type_description", text(|v| v.type_description.clone())),
        ("vt_first_submission", text(|v| v.first_submission.clone())),
        ("vt_threat_label", text(|v| v.threat_label.clone())),
        ("vt_permalink", text(|v| Some(v.permalink.clone()))),
    ]);
    otx_cells(&mut row, findings, Kind::File, &r.sha256);
    row
}

fn client_row(r: &ClientRow, findings: &Findings) -> Row {
    let f = &r.facts;
    let float = |v: Option<f64>| v.map_or(Cell::Null, Cell::Float);
    let mut row = vec![
        ("ip", Cell::Str(r.ip.clone())),
        ("sessions", Cell::Uint(r.stats.count)),
        ("messages", Cell::Uint(r.messages)),
        ("recipients", Cell::Uint(r.recipients)),
        ("auth_attempts", Cell::Uint(r.auth_attempts)),
        ("first_seen", Cell::opt(&r.stats.first_seen)),
        ("last_seen", Cell::opt(&r.stats.last_seen)),
        ("sensors", Cell::Tokens(r.stats.sensors.clone())),
        ("country_iso", Cell::opt(&f.country_iso)),
        ("country", Cell::opt(&f.country)),
        ("continent", Cell::opt(&f.continent)),
        ("eu", f.eu.map_or(Cell::Null, Cell::Bool)),
        ("city", Cell::opt(&f.city)),
        ("subdivision", Cell::opt(&f.subdivision)),
        ("postal", Cell::opt(&f.postal)),
        ("latitude", float(f.latitude)),
        ("longitude", float(f.longitude)),
        (
            "accuracy_km",
            f.accuracy_km
                .map_or(Cell::Null, |a| Cell::Uint(u64::from(a))),
        ),
        ("time_zone", Cell::opt(&f.time_zone)),
        (
            "asn",
            f.asn.map_or(Cell::Null, |a| Cell::Uint(u64::from(a))),
        ),
        ("as_org", Cell::opt(&f.as_org)),
    ];
    let abuse = match findings
        .get(Service::AbuseIpdb, Kind::Ip, &r.ip)
        .and_then(Lookup::facts)
    {
        Some(Facts::AbuseIpdb(c)) => Some(c),
        _ => None,
    };
    let a = abuse.cloned().unwrap_or_default();
    row.extend([
        (
            "abuseipdb_status",
            Cell::Str(findings.status(Service::AbuseIpdb, Kind::Ip, &r.ip)),
        ),
        ("abuseipdb_score", uint(a.score)),
        ("abuseipdb_country", Cell::opt(&a.country)),
        ("abuseipdb_usage_type", Cell::opt(&a.usage_type)),
        ("abuseipdb_isp", Cell::opt(&a.isp)),
        ("abuseipdb_domain", Cell::opt(&a.domain)),
        ("abuseipdb_reports", uint(a.reports)),
        ("abuseipdb_reporters", uint(a.reporters)),
        ("abuseipdb_last_reported", Cell::opt(&a.last_reported)),
        ("abuseipdb_tor", a.tor.map_or(Cell::Null, Cell::Bool)),
    ]);
    otx_cells(&mut row, findings, Kind::Ip, &r.ip);
    row
}

/// A `lookups` row: one indicator asked of one service.
fn lookup_row(l: &Lookup) -> Row {
    vec![
        ("service", Cell::Str(l.service.name().into())),
        ("kind", Cell::Str(l.kind.name().into())),
        ("indicator", Cell::Str(l.indicator.clone())),
        ("status", Cell::Str(l.status())),
        ("http_status", uint(l.http_status.map(u64::from))),
        ("queried_at", Cell::opt(&l.queried_at)),
        ("from_cache", Cell::Bool(l.from_cache)),
        ("requests", Cell::Uint(u64::from(l.requests))),
    ]
}

fn credential_row(r: &CredentialRow) -> Row {
    let mut row = vec![
        ("username", Cell::Str(r.username.clone())),
        ("password", Cell::Str(r.password.clone())),
        ("mechanism", Cell::Str(r.mechanism.clone())),
    ];
    stats(&mut row, &r.stats);
    row.push(("accepted", Cell::Uint(r.accepted)));
    row
}

fn recipient_row(r: &RecipientRow) -> Row {
    let mut row = vec![
        ("address", Cell::Str(r.address.clone())),
        ("domain", Cell::Str(r.domain.clone())),
    ];
    stats(&mut row, &r.stats);
    row
}

fn url_row(r: &UrlRow) -> Row {
    let mut row = vec![
        ("url", Cell::Str(r.url.clone())),
        ("domain", Cell::Str(r.domain.clone())),
    ];
    stats(&mut row, &r.stats);
    row.push(("distinct_messages", Cell::Uint(r.distinct_messages)));
    row
}

const DENIED_COLUMNS: &[&str] = &[
    "ip",
    "rule",
    "connections",
    "first_seen",
    "last_seen",
    "sensors",
];

fn denied_row(r: &DeniedRow) -> Row {
    vec![
        ("ip", Cell::Str(r.ip.clone())),
        ("rule", Cell::Str(r.rule.clone())),
        ("connections", Cell::Uint(r.connections)),
        ("first_seen", Cell::Str(r.first_seen.clone())),
        ("last_seen", Cell::Str(r.last_seen.clone())),
        ("sensors", Cell::Tokens(r.sensors.clone())),
    ]
}

fn domain_row(r: &DomainRow) -> Row {
    let mut row = vec![("domain", Cell::Str(r.domain.clone()))];
    stats(&mut row, &r.stats);
    row.push(("distinct_urls", Cell::Uint(r.distinct_urls)));
    row
}

/// Which files to write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Formats {
    pub csv: bool,
    pub json: bool,
    pub ndjson: bool,
}

impl Formats {
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.csv, "csv"),
            (self.json, "json"),
            (self.ndjson, "ndjson"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// A file written under a temporary name, renamed at the end.
struct Pending {
    temp: PathBuf,
    /// None for a fragment of `report.json`, deleted at the end.
    target: Option<PathBuf>,
}

struct Sink {
    name: &'static str,
    columns: &'static [&'static str],
    csv: Option<csv::Writer<BufWriter<File>>>,
    ndjson: Option<BufWriter<File>>,
    /// Rows for `report.json`, one a line.
    json: Option<BufWriter<File>>,
    rows: u64,
    line: Vec<u8>,
}

/// The report files being written.
pub struct Output {
    dir: PathBuf,
    formats: Formats,
    sinks: Vec<Sink>,
    pending: Vec<Pending>,
    /// The HTML report, fed every row written (none with `--no-html`).
    pub html: Option<super::html::HtmlReport>,
}

fn create(path: &Path) -> io::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(256 * 1024, File::create(path)?))
}

impl Output {
    /// Opens every table's files in `dir` (created if needed).
    pub fn open(dir: &Path, formats: Formats) -> io::Result<Output> {
        std::fs::create_dir_all(dir)?;
        let mut out = Output {
            dir: dir.to_path_buf(),
            formats,
            sinks: Vec::new(),
            pending: Vec::new(),
            html: None,
        };
        for &(name, columns) in TABLES {
            let mut file = |ext: &str, keep: bool| -> io::Result<BufWriter<File>> {
                let temp = dir.join(format!(".{name}.{ext}.partial"));
                let target = keep.then(|| dir.join(format!("{name}.{ext}")));
                let w = create(&temp)?;
                out.pending.push(Pending { temp, target });
                Ok(w)
            };
            let csv = if formats.csv {
                let mut w = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(file("csv", true)?);
                w.write_record(columns).map_err(io::Error::other)?;
                Some(w)
            } else {
                None
            };
            let ndjson = formats.ndjson.then(|| file("ndjson", true)).transpose()?;
            let json = formats.json.then(|| file("json-rows", false)).transpose()?;
            out.sinks.push(Sink {
                name,
                columns,
                csv,
                ndjson,
                json,
                rows: 0,
                line: Vec::new(),
            });
        }
        Ok(out)
    }

    /// Rows written so far to `table`.
    pub fn rows(&self, table: &str) -> u64 {
        self.sinks
            .iter()
            .find(|s| s.name == table)
            .map_or(0, |s| s.rows)
    }

    /// Writes one row to `table`.
    pub fn write(&mut self, table: &str, row: &Row) -> io::Result<()> {
        let sink = self
            .sinks
            .iter_mut()
            .find(|s| s.name == table)
            .ok_or_else(|| io::Error::other(format!("no table {table}")))?;
        debug_assert_eq!(
            row.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            sink.columns,
            "columns of {table}"
        );
        if let Some(csv) = &mut sink.csv {
            csv.write_record(row.iter().map(|(_, c)| c.csv()))
                .map_err(io::Error::other)?;
        }
        if sink.ndjson.is_some() || sink.json.is_some() {
            let line = &mut sink.line;
            line.clear();
            line.push(b'{');
            for (i, (key, cell)) in row.iter().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                line.push(b'"');
                line.extend_from_slice(key.as_bytes());
                line.extend_from_slice(b"\":");
                cell.json(line);
            }
            line.extend_from_slice(b"}\n");
            if let Some(w) = &mut sink.ndjson {
                w.write_all(line)?;
            }
            if let Some(w) = &mut sink.json {
                w.write_all(line)?;
            }
        }
        sink.rows += 1;
        if let Some(html) = &mut self.html {
            html.row(table, row)?;
        }
        Ok(())
    }

    /// Writes the aggregated tables, with the OSINT findings.
    pub fn write_tables(&mut self, t: &Tables, findings: &Findings) -> io::Result<()> {
        for r in &t.messages {
            self.write("messages", &message_row(r))?;
        }
        for r in &t.campaigns {
            self.write("campaigns", &campaign_row(r))?;
        }
        for r in &t.attachments {
            self.write("attachments", &attachment_row(r, findings))?;
        }
        for r in &t.clients {
            self.write("clients", &client_row(r, findings))?;
        }
        for r in &t.credentials {
            self.write("credentials", &credential_row(r))?;
        }
        for r in &t.recipients {
            self.write("recipients", &recipient_row(r))?;
        }
        for r in &t.urls {
            self.write("urls", &url_row(r))?;
        }
        for r in &t.domains {
            self.write("domains", &domain_row(r))?;
        }
        for l in &findings.lookups {
            self.write("lookups", &lookup_row(l))?;
        }
        for r in &t.denied {
            self.write("denied", &denied_row(r))?;
        }
        Ok(())
    }

    /// Flushes everything, writes `report.json` around `head` (its
    /// provenance and summary members) and the rows, and renames the files
    /// into place.
    pub fn finish(mut self, head: &[(&str, serde_json::Value)]) -> io::Result<Vec<PathBuf>> {
        let result = self.finish_inner(head);
        if result.is_err() {
            for p in &self.pending {
                let _ = std::fs::remove_file(&p.temp);
            }
        }
        result
    }

    fn finish_inner(&mut self, head: &[(&str, serde_json::Value)]) -> io::Result<Vec<PathBuf>> {
        for sink in &mut self.sinks {
            if let Some(mut csv) = sink.csv.take() {
                csv.flush()?;
                csv.into_inner()
                    .map_err(|e| io::Error::other(e.to_string()))?
                    .into_inner()
                    .map_err(|e| e.into_error())?
                    .sync_all()?;
            }
            for w in [sink.ndjson.take(), sink.json.take()].into_iter().flatten() {
                w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            }
        }
        if self.formats.json {
            let temp = self.dir.join(".report.json.partial");
            let mut w = create(&temp)?;
            self.pending.push(Pending {
                temp,
                target: Some(self.dir.join("report.json")),
            });
            w.write_all(b"{\n")?;
            for (key, value) in head {
                let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
                writeln!(w, "  \"{key}\": {},", text.replace('\n', "\n  "))?;
            }
            for (i, sink) in self.sinks.iter().enumerate() {
                write!(w, "  \"{}\": [", sink.name)?;
                let rows = self.dir.join(format!(".{}.json-rows.partial", sink.name));
                let mut first = true;
                let reader = io::BufReader::with_capacity(256 * 1024, File::open(&rows)?);
                for line in io::BufRead::split(reader, b'\n') {
                    let line = line?;
                    w.write_all(if first { b"\n    " } else { b",\n    " })?;
                    w.write_all(&line)?;
                    first = false;
                }
                w.write_all(if first { b"]" } else { b"\n  ]" })?;
                w.write_all(if i + 1 < self.sinks.len() {
                    b",\n"
                } else {
                    b"\n"
                })?;
            }
            w.write_all(b"}\n")?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        let mut written = Vec::new();
        for p in &self.pending {
            match &p.target {
                Some(target) => {
                    std::fs::rename(&p.temp, target)?;
                    written.push(target.clone());
                }
                None => std::fs::remove_file(&p.temp)?,
            }
        }
        self.pending.clear();
        written.sort();
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells() {
        assert_eq!(Cell::Str("a\u{0}b\r\n".into()).csv(), "a\\x00b\r\n");
        assert_eq!(Cell::Float(51.75).csv(), "51.75");
        assert_eq!(Cell::Float(f64::NAN).csv(), "");
        assert_eq!(
            Cell::List(vec!["a b".into(), "\"".into()]).csv(),
            r#"["a b","\""]"#
        );
        assert_eq!(Cell::Tokens(vec!["s1".into(), "s2".into()]).csv(), "s1 s2");
        let mut j = Vec::new();
        Cell::Str("\u{0}\"".into()).json(&mut j);
        assert_eq!(j, br#""\u0000\"""#);
    }

    #[test]
    fn rows_match_their_columns() {
        let stats = Stats {
            count: 1,
            sessions: 1,
            client_ips: 1,
            sensors: vec![],
            first_seen: None,
            last_seen: None,
        };
        let names = |row: Row| row.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let columns = |table: &str| TABLES.iter().find(|t| t.0 == table).unwrap().1.to_vec();
        let m = MessageRow {
            sha256: String::new(),
            size: 0,
            stats: stats.clone(),
            recipients: 0,
            truncated: false,
            subject: None,
            from: None,
            mail_from: String::new(),
            campaign: None,
            urls: 0,
            attachments: 0,
            parse_error: None,
            first_file: String::new(),
        };
        assert_eq!(names(message_row(&m)), columns("messages"));
        let c = CampaignRow {
            campaign: String::new(),
            stats: stats.clone(),
            distinct_messages: 0,
            subject: None,
            sample: String::new(),
            first_message: String::new(),
        };
        assert_eq!(names(campaign_row(&c)), columns("campaigns"));
        let a = AttachmentRow {
            sha256: String::new(),
            md5: String::new(),
            sha1: String::new(),
            size: 0,
            content_types: vec![],
            filenames: vec![],
            stats: stats.clone(),
            distinct_messages: 0,
        };
        let none = Findings::default();
        assert_eq!(names(attachment_row(&a, &none)), columns("attachments"));
        let cl = ClientRow {
            ip: String::new(),
            stats: stats.clone(),
            messages: 0,
            recipients: 0,
            auth_attempts: 0,
            facts: Default::default(),
        };
        assert_eq!(names(client_row(&cl, &none)), columns("clients"));
        let l = Lookup {
            service: Service::Otx,
            kind: Kind::Ip,
            indicator: String::new(),
            outcome: super::super::osint::Outcome::NotFound,
            http_status: Some(404),
            queried_at: None,
            from_cache: false,
            requests: 1,
        };
        assert_eq!(names(lookup_row(&l)), columns("lookups"));
        let cr = CredentialRow {
            username: String::new(),
            password: String::new(),
            mechanism: String::new(),
            accepted: 0,
            stats: stats.clone(),
        };
        assert_eq!(names(credential_row(&cr)), columns("credentials"));
        let r = RecipientRow {
            address: String::new(),
            domain: String::new(),
            stats: stats.clone(),
        };
        assert_eq!(names(recipient_row(&r)), columns("recipients"));
        let u = UrlRow {
            url: String::new(),
            domain: String::new(),
            stats: stats.clone(),
            distinct_messages: 0,
        };
        assert_eq!(names(url_row(&u)), columns("urls"));
        let d = DomainRow {
            domain: String::new(),
            stats,
            distinct_urls: 0,
        };
        assert_eq!(names(domain_row(&d)), columns("domains"));
        let p = Problem {
            file: String::new(),
            stage: "walk",
            reason: String::new(),
        };
        assert_eq!(names(problem_row("", "", None, &p)), columns("errors"));
        let session = LoadedSession {
            dir: super::super::walk::SessionDir {
                spool: 0,
                dir: "s".into(),
                rel: "s".into(),
            },
            manifest: crate::spool::ManifestBuilder::new("id", "sensor").finish(),
            messages: vec![],
            client: Default::default(),
            problems: vec![],
        };
        assert_eq!(names(session_row("", &session)), columns("sessions"));
    }
}
