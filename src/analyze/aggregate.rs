//! Stage 4: aggregation, on the consumer thread, one session at a time in
//! walk order.
//!
//! Memory grows with the number of distinct things (client IPs, message and
//! attachment hashes, campaigns, recipients, URLs, domains, credentials):
//! sessions are not kept, only a 16-byte key each to skip a session met twice
//! (the same spool given twice, or overlapping paths). Per distinct thing:
//! a count, how many sessions it was in (counted by remembering the last
//! session that touched it, as sessions come one at a time), the set of
//! client IPs (as small integers), the sensors, and first and last seen.
//!
//! "Count" means: sessions for a client, occurrences for a message,
//! messages (each occurrence) for a campaign, an attachment, a URL, a domain
//! or a recipient, attempts for a credential. The first occurrence (earliest
//! time, then first in walk order) gives a message or campaign its subject.

use super::denied::{DeniedAggregate, DeniedRow};
use super::load::LoadedSession;
use crate::spool::denials::DenialLine;
use crate::timestamp::{parse_rfc3339, rfc3339};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

/// Distinct file names kept per attachment.
const MAX_FILENAMES: usize = 20;

/// Microseconds since the epoch, from an RFC 3339 time.
fn micros(text: &str) -> Option<i64> {
    let t = parse_rfc3339(text)?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

fn time_text(micros: Option<i64>) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros?) * 1000).ok()?;
    Some(rfc3339(t))
}

/// Who and when, for one sighting.
#[derive(Debug, Clone, Copy)]
struct Hit {
    session: u64,
    ip: u32,
    sensor: u16,
    at: Option<i64>,
}

#[derive(Debug, Default)]
struct Seen {
    count: u64,
    sessions: u64,
    /// 1 + the sequence number of the last session counted.
    last_session: u64,
    ips: HashSet<u32>,
    sensors: Vec<u16>,
    first: Option<i64>,
    last: Option<i64>,
}

impl Seen {
    /// Counts a sighting; returns whether it is the earliest so far.
    fn hit(&mut self, hit: &Hit) -> bool {
        self.hit_span(hit, hit.at, hit.at)
    }

    fn hit_span(&mut self, hit: &Hit, first: Option<i64>, last: Option<i64>) -> bool {
        self.count += 1;
        if self.last_session != hit.session + 1 {
            self.sessions += 1;
            self.last_session = hit.session + 1;
        }
        self.ips.insert(hit.ip);
        if !self.sensors.contains(&hit.sensor) {
            self.sensors.push(hit.sensor);
        }
        let earliest =
            self.count == 1 || (first.is_some() && (self.first.is_none() || first < self.first));
        if earliest && first.is_some() {
            self.first = first;
        }
        if last.is_some() && (self.last.is_none() || last > self.last) {
            self.last = last;
        }
        earliest
    }
}

/// The common columns of every entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub count: u64,
    pub sessions: u64,
    pub client_ips: u64,
    pub sensors: Vec<String>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

#[derive(Debug)]
struct Client {
    ip: String,
    facts: super::enrich::IpFacts,
    seen: Seen,
    messages: u64,
    recipients: u64,
    auth_attempts: u64,
}

#[derive(Debug)]
struct Message {
    sha256: String,
    size: u64,
    seen: Seen,
    recipients: u64,
    truncated: bool,
    subject: Option<String>,
    from: Option<String>,
    mail_from: String,
    campaign: Option<String>,
    urls: u64,
    attachments: u64,
    parse_error: Option<String>,
    first_file: String,
}

#[derive(Debug, Default)]
struct Campaign {
    seen: Seen,
    messages: HashSet<u32>,
    subject: Option<String>,
    sample: String,
    first_message: String,
}

#[derive(Debug, Default)]
struct Attachment {
    seen: Seen,
    messages: HashSet<u32>,
    md5: String,
    sha1: String,
    size: u64,
    content_types: BTreeSet<String>,
    filenames: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Credential {
    seen: Seen,
    accepted: u64,
}

#[derive(Debug, Default)]
struct Url {
    seen: Seen,
    messages: HashSet<u32>,
}

#[derive(Debug, Default)]
struct Domain {
    seen: Seen,
    urls: HashSet<u32>,
}

/// Totals for the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub sessions: u64,
    pub sessions_with_messages: u64,
    pub messages: u64,
    pub accepted_messages: u64,
    pub message_bytes: u64,
    pub distinct_messages: u64,
    pub campaigns: u64,
    pub recipients: u64,
    pub distinct_recipients: u64,
    pub attachments: u64,
    pub distinct_attachments: u64,
    pub clients: u64,
    pub sensors: u64,
    pub auth_attempts: u64,
    pub distinct_credentials: u64,
    pub urls: u64,
    pub domains: u64,
    pub duplicate_sessions: u64,
    /// Connections the deny lists closed, and from how many addresses.
    pub denied_connections: u64,
    pub denied_clients: u64,
    /// Connections allowed because the country database did not know them.
    pub allowed_unknown_country: u64,
}

#[derive(Default)]
pub struct Aggregator {
    seen_sessions: HashSet<[u8; 16]>,
    sequence: u64,
    sensors: Vec<String>,
    client_ids: HashMap<String, u32>,
    clients: Vec<Client>,
    message_ids: HashMap<String, u32>,
    messages: Vec<Message>,
    campaigns: HashMap<String, Campaign>,
    attachments: HashMap<String, Attachment>,
    credentials: HashMap<(String, String, String), Credential>,
    recipients: HashMap<String, Seen>,
    url_ids: HashMap<String, u32>,
    urls: Vec<Url>,
    domains: HashMap<String, Domain>,
    totals: Totals,
    first: Option<i64>,
    last: Option<i64>,
    denied: DeniedAggregate,
}

impl Aggregator {
    pub fn new() -> Aggregator {
        Aggregator::default()
    }

    /// Adds one sensor's denial counts for one day.
    pub fn add_denials(&mut self, sensor: &str, date: &str, lines: Vec<DenialLine>) {
        self.denied.add(sensor, date, lines);
    }

    /// Adds a session found in `spool`; false (and nothing added) when a
    /// session with the same sensor and id was added before.
    pub fn add(&mut self, s: &LoadedSession, spool: &str) -> bool {
        let m = &s.manifest;
        let mut key = [0u8; 16];
        let digest = Sha256::new()
            .chain_update(m.sensor.as_bytes())
            .chain_update([0])
            .chain_update(m.session_id.as_bytes())
            .finalize();
        key.copy_from_slice(&digest[..16]);
        if !self.seen_sessions.insert(key) {
            self.totals.duplicate_sessions += 1;
            return false;
        }
        let session = self.sequence;
        self.sequence += 1;
        let sensor = match self.sensors.iter().position(|x| *x == m.sensor) {
            Some(i) => i as u16,
            None => {
                self.sensors.push(m.sensor.clone());
                (self.sensors.len() - 1).min(usize::from(u16::MAX)) as u16
            }
        };
        let started = micros(&m.started_at);
        let ended = micros(&m.ended_at).or(started);
        if started.is_some() && (self.first.is_none() || started < self.first) {
            self.first = started;
        }
        if ended.is_some() && (self.last.is_none() || ended > self.last) {
            self.last = ended;
        }
        let ip = match self.client_ids.get(&m.client.ip) {
            Some(&id) => id,
            None => {
                let id = self.clients.len() as u32;
                self.client_ids.insert(m.client.ip.clone(), id);
                self.clients.push(Client {
                    ip: m.client.ip.clone(),
                    facts: s.client.clone(),
                    seen: Seen::default(),
                    messages: 0,
                    recipients: 0,
                    auth_attempts: 0,
                });
                id
            }
        };
        let session_hit = Hit {
            session,
            ip,
            sensor,
            at: started,
        };
        self.totals.sessions += 1;
        if !m.messages.is_empty() {
            self.totals.sessions_with_messages += 1;
        }
        let client = &mut self.clients[ip as usize];
        client.seen.hit_span(&session_hit, started, ended);
        client.messages += m.messages.len() as u64;
        client.auth_attempts += m.auth.len() as u64;

        for entry in &m.auth {
            let attempt = &entry.attempt;
            let hit = Hit {
                at: micros(&entry.at).or(started),
                ..session_hit
            };
            let key = (
                attempt.username.clone().unwrap_or_default(),
                attempt.password.clone().unwrap_or_default(),
                attempt.mechanism.clone(),
            );
            let credential = self.credentials.entry(key).or_default();
            credential.seen.hit(&hit);
            credential.accepted += u64::from(attempt.accepted);
            self.totals.auth_attempts += 1;
        }

        for loaded in &s.messages {
            let Some(record) = m.messages.get(loaded.position) else {
                continue;
            };
            let hit = Hit {
                at: micros(&record.received_at).or(started),
                ..session_hit
            };
            self.totals.messages += 1;
            self.totals.accepted_messages += u64::from(record.accepted);
            self.totals.message_bytes += loaded.size;
            let rcpts: BTreeSet<&String> = record.rcpt_to.iter().collect();
            self.totals.recipients += rcpts.len() as u64;
            self.clients[ip as usize].recipients += rcpts.len() as u64;
            for rcpt in rcpts {
                if let Some(seen) = self.recipients.get_mut(rcpt) {
                    seen.hit(&hit);
                } else {
                    let mut seen = Seen::default();
                    seen.hit(&hit);
                    self.recipients.insert(rcpt.clone(), seen);
                }
            }

            let body = loaded.body.as_ref();
            let message_id = match self.message_ids.get(&loaded.sha256) {
                Some(&id) => id,
                None => {
                    let id = self.messages.len() as u32;
                    self.message_ids.insert(loaded.sha256.clone(), id);
                    self.messages.push(Message {
                        sha256: loaded.sha256.clone(),
                        size: loaded.size,
                        seen: Seen::default(),
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
                    });
                    id
                }
            };
            let message = &mut self.messages[message_id as usize];
            message.recipients += record.rcpt_to.len() as u64;
            message.truncated |= record.truncated;
            if message.seen.hit(&hit) {
                message.subject = record.headers.subject.clone();
                message.from = record.headers.from.clone();
                message.mail_from = record.mail_from.clone();
                message.attachments = record.attachments.len() as u64;
                message.parse_error = record.parse_error.clone();
                message.first_file = format!("{spool}/{}/{}", s.dir.rel, record.file);
                if let Some(body) = body {
                    message.campaign = body.campaign.as_ref().map(|c| c.id.clone());
                    message.urls = body.urls.len() as u64;
                }
            }

            if let Some(c) = body.and_then(|b| b.campaign.as_ref()) {
                let campaign = self.campaigns.entry(c.id.clone()).or_default();
                campaign.messages.insert(message_id);
                if campaign.seen.hit(&hit) {
                    campaign.subject = record.headers.subject.clone();
                    campaign.sample = c.sample.clone();
                    campaign.first_message = loaded.sha256.clone();
                }
            }

            let mut listed = HashSet::new();
            for a in &record.attachments {
                self.totals.attachments += 1;
                if !listed.insert(&a.sha256) {
                    continue;
                }
                let attachment = self.attachments.entry(a.sha256.clone()).or_default();
                attachment.seen.hit(&hit);
                attachment.messages.insert(message_id);
                if attachment.md5.is_empty() {
                    attachment.md5.clone_from(&a.md5);
                    attachment.sha1.clone_from(&a.sha1);
                    attachment.size = a.size;
                }
                attachment.content_types.insert(a.content_type.clone());
                if let Some(name) = &a.filename
                    && attachment.filenames.len() < MAX_FILENAMES
                {
                    attachment.filenames.insert(name.clone());
                }
            }

            let mut domains_hit = BTreeSet::new();
            for url in body.map(|b| b.urls.as_slice()).unwrap_or_default() {
                let url_id = match self.url_ids.get(url) {
                    Some(&id) => id,
                    None => {
                        let id = self.urls.len() as u32;
                        self.url_ids.insert(url.clone(), id);
                        self.urls.push(Url::default());
                        id
                    }
                };
                let entry = &mut self.urls[url_id as usize];
                entry.seen.hit(&hit);
                entry.messages.insert(message_id);
                if let Some(host) = super::urls::host(url) {
                    let domain = self.domains.entry(host.clone()).or_default();
                    domain.urls.insert(url_id);
                    if domains_hit.insert(host) {
                        domain.seen.hit(&hit);
                    }
                }
            }
        }
        true
    }

    fn stats(&self, seen: &Seen) -> Stats {
        let mut sensors: Vec<String> = seen
            .sensors
            .iter()
            .filter_map(|&i| self.sensors.get(usize::from(i)).cloned())
            .collect();
        sensors.sort();
        Stats {
            count: seen.count,
            sessions: seen.sessions,
            client_ips: seen.ips.len() as u64,
            sensors,
            first_seen: time_text(seen.first),
            last_seen: time_text(seen.last),
        }
    }

    /// The tables, sorted: most counted first, then by key.
    pub fn finish(mut self) -> Tables {
        let mut t = Tables::default();
        for c in &self.clients {
            t.clients.push(ClientRow {
                ip: c.ip.clone(),
                stats: self.stats(&c.seen),
                messages: c.messages,
                recipients: c.recipients,
                auth_attempts: c.auth_attempts,
                facts: c.facts.clone(),
            });
        }
        t.clients.sort_by(|a, b| {
            b.stats
                .count
                .cmp(&a.stats.count)
                .then_with(|| ip_order(&a.ip).cmp(&ip_order(&b.ip)))
        });
        for m in &self.messages {
            t.messages.push(MessageRow {
                sha256: m.sha256.clone(),
                size: m.size,
                stats: self.stats(&m.seen),
                recipients: m.recipients,
                truncated: m.truncated,
                subject: m.subject.clone(),
                from: m.from.clone(),
                mail_from: m.mail_from.clone(),
                campaign: m.campaign.clone(),
                urls: m.urls,
                attachments: m.attachments,
                parse_error: m.parse_error.clone(),
                first_file: m.first_file.clone(),
            });
        }
        sort_by_count(&mut t.messages, |r| (r.stats.count, r.sha256.clone()));
        for (id, c) in &self.campaigns {
            t.campaigns.push(CampaignRow {
                campaign: id.clone(),
                stats: self.stats(&c.seen),
                distinct_messages: c.messages.len() as u64,
                subject: c.subject.clone(),
                sample: c.sample.clone(),
                first_message: c.first_message.clone(),
            });
        }
        sort_by_count(&mut t.campaigns, |r| (r.stats.count, r.campaign.clone()));
        for (sha256, a) in &self.attachments {
            t.attachments.push(AttachmentRow {
                sha256: sha256.clone(),
                md5: a.md5.clone(),
                sha1: a.sha1.clone(),
                size: a.size,
                content_types: a.content_types.iter().cloned().collect(),
                filenames: a.filenames.iter().cloned().collect(),
                stats: self.stats(&a.seen),
                distinct_messages: a.messages.len() as u64,
            });
        }
        sort_by_count(&mut t.attachments, |r| (r.stats.count, r.sha256.clone()));
        for ((username, password, mechanism), c) in &self.credentials {
            t.credentials.push(CredentialRow {
                username: username.clone(),
                password: password.clone(),
                mechanism: mechanism.clone(),
                accepted: c.accepted,
                stats: self.stats(&c.seen),
            });
        }
        sort_by_count(&mut t.credentials, |r| {
            (
                r.stats.count,
                (r.username.clone(), r.password.clone(), r.mechanism.clone()),
            )
        });
        for (address, seen) in &self.recipients {
            t.recipients.push(RecipientRow {
                domain: address
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_lowercase())
                    .unwrap_or_default(),
                address: address.clone(),
                stats: self.stats(seen),
            });
        }
        sort_by_count(&mut t.recipients, |r| (r.stats.count, r.address.clone()));
        for (url, &id) in &self.url_ids {
            let u = &self.urls[id as usize];
            t.urls.push(UrlRow {
                url: url.clone(),
                domain: super::urls::host(url).unwrap_or_default(),
                stats: self.stats(&u.seen),
                distinct_messages: u.messages.len() as u64,
            });
        }
        sort_by_count(&mut t.urls, |r| (r.stats.count, r.url.clone()));
        for (domain, d) in &self.domains {
            t.domains.push(DomainRow {
                domain: domain.clone(),
                stats: self.stats(&d.seen),
                distinct_urls: d.urls.len() as u64,
            });
        }
        sort_by_count(&mut t.domains, |r| (r.stats.count, r.domain.clone()));

        let totals = &mut self.totals;
        totals.distinct_messages = t.messages.len() as u64;
        totals.campaigns = t.campaigns.len() as u64;
        totals.distinct_recipients = t.recipients.len() as u64;
        totals.distinct_attachments = t.attachments.len() as u64;
        totals.clients = t.clients.len() as u64;
        totals.sensors = self.sensors.len() as u64;
        totals.distinct_credentials = t.credentials.len() as u64;
        totals.urls = t.urls.len() as u64;
        totals.domains = t.domains.len() as u64;
        let (denied, denied_totals) = std::mem::take(&mut self.denied).finish();
        totals.denied_connections = denied_totals.connections;
        totals.denied_clients = denied_totals.clients;
        totals.allowed_unknown_country = denied_totals.allowed_unknown_country;
        t.denied = denied;
        t.totals = self.totals;
        t.first_seen = time_text(self.first);
        t.last_seen = time_text(self.last);
        t
    }
}

/// Numeric order for addresses, then anything that is not one.
fn ip_order(ip: &str) -> (u8, Option<IpAddr>, String) {
    match ip.parse::<IpAddr>() {
        Ok(addr) => (0, Some(addr), String::new()),
        Err(_) => (1, None, ip.to_string()),
    }
}

fn sort_by_count<T, K: Ord>(rows: &mut [T], key: impl Fn(&T) -> (u64, K)) {
    rows.sort_by_cached_key(|r| {
        let (count, k) = key(r);
        (std::cmp::Reverse(count), k)
    });
}

pub struct ClientRow {
    pub ip: String,
    /// `count` is the number of sessions.
    pub stats: Stats,
    pub messages: u64,
    pub recipients: u64,
    pub auth_attempts: u64,
    pub facts: super::enrich::IpFacts,
}

pub struct MessageRow {
    pub sha256: String,
    pub size: u64,
    pub stats: Stats,
    pub recipients: u64,
    pub truncated: bool,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub mail_from: String,
    pub campaign: Option<String>,
    pub urls: u64,
    pub attachments: u64,
    pub parse_error: Option<String>,
    pub first_file: String,
}

pub struct CampaignRow {
    pub campaign: String,
    pub stats: Stats,
    pub distinct_messages: u64,
    pub subject: Option<String>,
    pub sample: String,
    pub first_message: String,
}

pub struct AttachmentRow {
    pub sha256: String,
    pub md5: String,
    pub sha1: String,
    pub size: u64,
    pub content_types: Vec<String>,
    pub filenames: Vec<String>,
    pub stats: Stats,
    pub distinct_messages: u64,
}

pub struct CredentialRow {
    pub username: String,
    pub password: String,
    pub mechanism: String,
    pub accepted: u64,
    pub stats: Stats,
}

pub struct RecipientRow {
    pub address: String,
    pub domain: String,
    pub stats: Stats,
}

pub struct UrlRow {
    pub url: String,
    pub domain: String,
    pub stats: Stats,
    pub distinct_messages: u64,
}

pub struct DomainRow {
    pub domain: String,
    pub stats: Stats,
    pub distinct_urls: u64,
}

/// Everything aggregated, sorted for output.
#[derive(Default)]
pub struct Tables {
    pub clients: Vec<ClientRow>,
    pub messages: Vec<MessageRow>,
    pub campaigns: Vec<CampaignRow>,
    pub attachments: Vec<AttachmentRow>,
    pub credentials: Vec<CredentialRow>,
    pub recipients: Vec<RecipientRow>,
    pub urls: Vec<UrlRow>,
    pub domains: Vec<DomainRow>,
    pub denied: Vec<DeniedRow>,
    pub totals: Totals,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}
