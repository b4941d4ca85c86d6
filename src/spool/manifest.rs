//! `manifest.json`: the types shared by the writer (`listen`) and the readers
//! (`analyze`, `verify`), and the fold that builds a manifest from events.

use crate::events::{
    AuthRecord, EndReason, Endpoint, Event, EventRecord, StoredMessage, TlsRecord,
};
use serde::{Deserialize, Serialize};

/// The manifest format's version. Readers refuse other major versions.
pub const SCHEMA: &str = "latrine.session/1";

/// At most this many HELO names and protocol errors are listed per session;
/// the totals keep counting, so a hostile client cannot grow the manifest.
pub const MAX_LISTED: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub session_id: String,
    pub sensor: String,
    /// The latrine version that wrote the session.
    pub latrine: String,
    pub started_at: String,
    pub ended_at: String,
    pub end_reason: EndReason,
    pub client: Endpoint,
    pub server: Server,
    /// Every HELO/EHLO argument, in order (escaped), at most [`MAX_LISTED`].
    pub helo: Vec<String>,
    pub helo_total: u64,
    /// Command lines received.
    pub commands: u64,
    pub protocol_errors: Vec<ProtocolError>,
    pub protocol_errors_total: u64,
    pub limits_hit: Vec<String>,
    /// The TLS handshake, when there was one (STARTTLS or implicit TLS).
    #[serde(default)]
    pub tls: Option<TlsRecord>,
    /// Plaintext bytes pipelined after STARTTLS, kept but never executed.
    #[serde(default)]
    pub starttls_injection_bytes: u64,
    /// Every AUTH exchange, in order (first 100).
    #[serde(default)]
    pub auth: Vec<AuthEntry>,
    pub messages: Vec<MessageRecord>,
    /// Every file in the session directory but this manifest.
    pub files: Vec<FileRecord>,
    /// Anything unusual about how the session was written: `recovered`,
    /// `journal_damaged`, `extraction_failed`, ...
    pub flags: Vec<String>,
}

/// An AUTH exchange and when it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthEntry {
    pub at: String,
    #[serde(flatten)]
    pub attempt: AuthRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    pub ip: String,
    pub port: u16,
    pub hostname: String,
    /// Which listener took the connection.
    pub listener: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolError {
    pub at: String,
    pub command: String,
    pub reply: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub index: u32,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub mail_from: String,
    pub mail_params: Vec<String>,
    pub rcpt_to: Vec<String>,
    pub received_at: String,
    pub received_size: u64,
    pub truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_reason: Option<crate::events::Truncation>,
    pub bare_lf: bool,
    pub bare_cr: bool,
    pub smuggling: bool,
    pub chunked: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undoubled_dots: Vec<u64>,
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    pub headers: Headers,
    pub attachments: Vec<AttachmentRecord>,
    /// Why the message could not be parsed for headers and attachments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
}

/// Headers decoded by mail-parser (RFC 2047 words decoded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headers {
    pub subject: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub date: Option<String>,
    pub message_id: Option<String>,
    pub x_mailer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRecord {
    /// The name the sender gave, decoded; never used as a path.
    pub filename: Option<String>,
    pub content_type: String,
    pub size: u64,
    pub md5: String,
    pub sha1: String,
    pub sha256: String,
    /// `attachments/<sha256>`.
    pub file: String,
    /// Nesting: 0 for the message's own parts, 1 inside an attached message...
    pub depth: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Builds a [`Manifest`] by folding a session's events, in order. The same
/// fold runs when a session ends normally and when a crashed one is recovered
/// from its journal, so both give the same manifest for the same events.
#[derive(Debug, Clone)]
pub struct ManifestBuilder {
    manifest: Manifest,
    /// The envelope of the transaction in progress.
    mail_from: Option<(String, Vec<String>)>,
    rcpt_to: Vec<String>,
    /// Envelope of a message whose content has begun, with the time it began.
    pending: Option<(String, Vec<String>, Vec<String>, String)>,
    commands_seen: u64,
}

impl ManifestBuilder {
    pub fn new(session_id: &str, sensor: &str) -> ManifestBuilder {
        ManifestBuilder {
            manifest: Manifest {
                schema: SCHEMA.into(),
                session_id: session_id.into(),
                sensor: sensor.into(),
                latrine: env!("CARGO_PKG_VERSION").into(),
                started_at: String::new(),
                ended_at: String::new(),
                end_reason: EndReason::Recovered,
                client: Endpoint {
                    ip: String::new(),
                    port: 0,
                },
                server: Server {
                    ip: String::new(),
                    port: 0,
                    hostname: String::new(),
                    listener: String::new(),
                },
                helo: Vec::new(),
                helo_total: 0,
                commands: 0,
                protocol_errors: Vec::new(),
                protocol_errors_total: 0,
                limits_hit: Vec::new(),
                tls: None,
                starttls_injection_bytes: 0,
                auth: Vec::new(),
                messages: Vec::new(),
                files: Vec::new(),
                flags: Vec::new(),
            },
            mail_from: None,
            rcpt_to: Vec::new(),
            pending: None,
            commands_seen: 0,
        }
    }

    pub fn apply(&mut self, record: &EventRecord) {
        let m = &mut self.manifest;
        if m.started_at.is_empty() {
            m.started_at = record.at.clone();
        }
        m.ended_at = record.at.clone();
        match &record.event {
            Event::Connect {
                client,
                server,
                hostname,
                listener,
            } => {
                m.client = client.clone();
                m.server = Server {
                    ip: server.ip.clone(),
                    port: server.port,
                    hostname: hostname.clone(),
                    listener: listener.clone(),
                };
            }
            Event::Helo { name, .. } => {
                self.commands_seen += 1;
                m.helo_total += 1;
                if m.helo.len() < MAX_LISTED {
                    m.helo.push(name.clone());
                }
                self.mail_from = None;
                self.rcpt_to.clear();
            }
            Event::Mail { address, params } => {
                self.commands_seen += 1;
                self.mail_from = Some((address.clone(), params.clone()));
                self.rcpt_to.clear();
            }
            Event::Rcpt { address } => {
                self.commands_seen += 1;
                // Bounded by the listener's recipient limit.
                self.rcpt_to.push(address.clone());
            }
            Event::Reset => {
                self.commands_seen += 1;
                self.mail_from = None;
                self.rcpt_to.clear();
            }
            Event::ProtocolError { command, reply } => {
                self.commands_seen += 1;
                m.protocol_errors_total += 1;
                if m.protocol_errors.len() < MAX_LISTED {
                    m.protocol_errors.push(ProtocolError {
                        at: record.at.clone(),
                        command: command.clone(),
                        reply: reply.clone(),
                    });
                }
            }
            Event::MessageBegin { .. } => {
                let (from, params) = self.mail_from.take().unwrap_or_default();
                let rcpt = std::mem::take(&mut self.rcpt_to);
                self.pending = Some((from, params, rcpt, record.at.clone()));
            }
            Event::MessageStored(stored) => {
                // A second record for the same message corrects the first
                // (say, the sync failed after it was written optimistically).
                if let Some(existing) = m
                    .messages
                    .iter_mut()
                    .rev()
                    .find(|r| r.index == stored.index)
                {
                    let envelope = (
                        std::mem::take(&mut existing.mail_from),
                        std::mem::take(&mut existing.mail_params),
                        std::mem::take(&mut existing.rcpt_to),
                        std::mem::take(&mut existing.received_at),
                    );
                    *existing =
                        message_record(stored, envelope.0, envelope.1, envelope.2, envelope.3);
                    return;
                }
                let (mail_from, mail_params, rcpt_to, received_at) =
                    self.pending.take().unwrap_or_default();
                m.messages.push(message_record(
                    stored,
                    mail_from,
                    mail_params,
                    rcpt_to,
                    received_at,
                ));
            }
            Event::Tls(record) => m.tls = Some(record.clone()),
            Event::StartTlsInjection { bytes } => {
                m.starttls_injection_bytes += bytes;
                if !m.flags.iter().any(|f| f == "starttls_injection") {
                    m.flags.push("starttls_injection".into());
                }
            }
            Event::Auth(attempt) => {
                self.commands_seen += 1;
                if m.auth.len() < MAX_LISTED {
                    m.auth.push(AuthEntry {
                        at: record.at.clone(),
                        attempt: attempt.clone(),
                    });
                }
            }
            Event::Limit { limit } => {
                if !m.limits_hit.contains(limit) {
                    m.limits_hit.push(limit.clone());
                }
            }
            Event::Closed { reason, commands } => {
                m.end_reason = *reason;
                m.commands = *commands;
            }
            // Never in a session's journal: a denied connection has no session.
            Event::Denied { .. } => {}
        }
    }

    /// Marks the session with an unusual condition.
    pub fn flag(&mut self, flag: &str) {
        if !self.manifest.flags.iter().any(|f| f == flag) {
            self.manifest.flags.push(flag.into());
        }
    }

    /// The manifest so far. A recovered session has no `session.closed`
    /// event, so its command count is the number of commands that left an event.
    pub fn finish(mut self) -> Manifest {
        if self.manifest.end_reason == EndReason::Recovered && self.manifest.commands == 0 {
            self.manifest.commands = self.commands_seen;
        }
        self.manifest
    }

    pub fn manifest_mut(&mut self) -> &mut Manifest {
        &mut self.manifest
    }
}

fn message_record(
    stored: &StoredMessage,
    mail_from: String,
    mail_params: Vec<String>,
    rcpt_to: Vec<String>,
    received_at: String,
) -> MessageRecord {
    MessageRecord {
        index: stored.index,
        file: stored.file.clone(),
        size: stored.size,
        sha256: stored.sha256.clone(),
        mail_from,
        mail_params,
        rcpt_to,
        received_at,
        received_size: stored.received_size,
        truncated: stored.truncated,
        truncated_reason: stored.truncated_reason,
        bare_lf: stored.bare_lf,
        bare_cr: stored.bare_cr,
        smuggling: stored.smuggling,
        chunked: stored.chunked,
        undoubled_dots: stored.undoubled_dots.clone(),
        accepted: stored.accepted,
        queue_id: stored.queue_id.clone(),
        headers: Headers::default(),
        attachments: Vec::new(),
        parse_error: None,
    }
}

impl Manifest {
    /// Reads and checks a manifest. The error says what is wrong, for the
    /// reports of `verify` and `analyze`.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, String> {
        /// The schema alone, read first so that another version gets a clear
        /// error rather than a field mismatch.
        #[derive(Deserialize)]
        struct Schema<'a> {
            #[serde(borrow, default)]
            schema: Option<std::borrow::Cow<'a, str>>,
        }
        let schema: Schema<'_> =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        let schema = schema.schema.unwrap_or_default();
        // The same major version: `SCHEMA` itself, or a minor one (`/1.2`).
        let same_major = schema == SCHEMA
            || schema
                .strip_prefix(SCHEMA)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|minor| {
                    !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
                });
        if !same_major {
            return Err(format!(
                "unsupported schema {schema:?}, expected {SCHEMA:?}"
            ));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| format!("does not match the manifest format: {e}"))
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}
