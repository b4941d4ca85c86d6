//! The vocabulary of session events.
//!
//! One small set of events, each stamped with the time, sensor, session id and
//! client address taken from the socket, feeds three consumers alike: the
//! session's own journal (`events.jsonl`, from which the manifest is built, also
//! after a crash), the manifest builder, and the optional `--events` stream for
//! a SIEM. The SMTP code never knows who listens.
//!
//! Every string that came from the client is escaped with
//! [`crate::escape::escape_text`], so it is valid JSON and reversible.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// An IP address and port, as seen on the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: String,
    pub port: u16,
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d; record a.b.c.d.
        let ip = match addr.ip() {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        Endpoint {
            ip: ip.to_string(),
            port: addr.port(),
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The client sent QUIT.
    Quit,
    /// The client closed the connection (or it was reset).
    ClientClosed,
    /// No input within the idle timeout.
    Timeout,
    /// A limit ended the session: total time, errors, connections.
    Limit,
    /// We hung up on a forbidden command (an HTTP request), as Postfix does.
    Rejected,
    /// The TLS handshake failed (implicit TLS or after STARTTLS).
    TlsFailed,
    /// The listener was shutting down.
    Shutdown,
    /// Reading or writing the socket failed.
    Error,
    /// Left behind by a crash and sealed at the next start.
    Recovered,
}

/// Why a message's content is incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// Bigger than the size limit: the first bytes are kept.
    SizeLimit,
    /// The connection ended before the end of the data.
    Disconnected,
    /// An RSET or new greeting abandoned a BDAT message.
    Abandoned,
    /// Writing the file failed (e.g. the disk filled up).
    WriteError,
    /// The listener stopped (crash, kill, shutdown) before the end of the data.
    Interrupted,
}

/// One thing that happened in a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum Event {
    #[serde(rename = "session.connect")]
    Connect {
        client: Endpoint,
        server: Endpoint,
        hostname: String,
        listener: String,
    },
    #[serde(rename = "smtp.helo")]
    Helo { verb: String, name: String },
    #[serde(rename = "smtp.mail")]
    Mail {
        address: String,
        params: Vec<String>,
    },
    #[serde(rename = "smtp.rcpt")]
    Rcpt { address: String },
    #[serde(rename = "smtp.reset")]
    Reset,
    /// A command answered with an error.
    #[serde(rename = "smtp.error")]
    ProtocolError { command: String, reply: String },
    /// Message content begins; `file` is its path in the session directory.
    #[serde(rename = "message.begin")]
    MessageBegin { index: u32, file: String },
    /// A message's content ended (complete or not) and was written.
    #[serde(rename = "message.stored")]
    MessageStored(StoredMessage),
    /// A TLS handshake, successful or not.
    #[serde(rename = "session.tls")]
    Tls(TlsRecord),
    /// Plaintext pipelined after STARTTLS: kept in the transcript, never
    /// executed (the CVE-2011-0411 class of injection).
    #[serde(rename = "smtp.starttls_injection")]
    StartTlsInjection { bytes: u64 },
    /// One AUTH exchange and what became of it.
    #[serde(rename = "smtp.auth")]
    Auth(AuthRecord),
    /// A limit was hit: `limit` names it (`message_size`, `idle_timeout`, ...).
    #[serde(rename = "session.limit")]
    Limit { limit: String },
    #[serde(rename = "session.closed")]
    Closed { reason: EndReason, commands: u64 },
    /// A connection the deny lists closed at once: it has no session (its
    /// record's `session_id` is empty) and only the denial counts keep it.
    #[serde(rename = "session.denied")]
    Denied {
        client: Endpoint,
        server: Endpoint,
        listener: String,
        rule: String,
    },
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub index: u32,
    pub file: String,
    /// Bytes in the file.
    pub size: u64,
    pub sha256: String,
    /// Bytes the client sent for it (after unstuffing), kept or not.
    pub received_size: u64,
    pub truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_reason: Option<Truncation>,
    pub bare_lf: bool,
    pub bare_cr: bool,
    /// A lone `.` next to a bare line ending: an SMTP smuggling attempt.
    pub smuggling: bool,
    /// Received with BDAT (no dot-stuffing) rather than DATA.
    #[serde(default)]
    pub chunked: bool,
    /// Offsets of lines whose leading dot was removed although not doubled,
    /// needed to rebuild the exact bytes on the wire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undoubled_dots: Vec<u64>,
    /// Whether the client was told 250.
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    /// The reply sent for the message, when one was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

/// What a TLS handshake showed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsRecord {
    /// `starttls` or `implicit`.
    pub mode: String,
    /// Negotiated protocol version (`TLSv1.3`), when the handshake worked.
    pub version: Option<String>,
    pub cipher: Option<String>,
    /// Server name the client asked for (escaped).
    pub sni: Option<String>,
    /// Protocol negotiated by ALPN, if any.
    pub alpn: Option<String>,
    /// Protocols the client offered by ALPN.
    #[serde(default)]
    pub offered_alpn: Vec<String>,
    pub ja3: Option<String>,
    pub ja3_string: Option<String>,
    pub ja4: Option<String>,
    /// What latrine answered, as scanners fingerprint it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja3s: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja3s_string: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja4s: Option<String>,
    /// Bytes the client sent during the handshake (kept in the transcript).
    pub client_hello_bytes: u64,
    /// Why the handshake failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One AUTH exchange. Decoded values are escaped ([`crate::escape::escape_text`]):
/// they may hold any byte, CR and LF included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRecord {
    pub mechanism: String,
    pub username: Option<String>,
    /// The password, when the mechanism reveals it (PLAIN, LOGIN).
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authzid: Option<String>,
    /// CRAM-MD5: the challenge we sent and the digest received, for offline
    /// cracking. NTLM: our server challenge (hex) and the client's response as
    /// hashcat's NetNTLMv2 line (`user::domain:challenge:ntproofstr:blob`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// NTLM: the client's domain and workstation names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workstation: Option<String>,
    /// The client's lines of the exchange, exactly as sent (escaped).
    pub raw: String,
    /// `complete`, `cancelled` or `malformed`.
    pub outcome: String,
    pub accepted: bool,
}

/// An event with the attribution that comes from the socket, never from the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub at: String,
    pub sensor: String,
    pub session_id: String,
    pub client_ip: String,
    #[serde(flatten)]
    pub event: Event,
}

impl EventRecord {
    /// One JSON line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// The `--events` stream: JSON lines, each written whole with one write.
#[derive(Clone)]
pub struct EventStream {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl EventStream {
    pub fn new(out: Box<dyn Write + Send>) -> EventStream {
        EventStream {
            out: Arc::new(Mutex::new(out)),
        }
    }

    /// Opens `-` (standard output) or a file, appending.
    pub fn open(target: &std::path::Path) -> std::io::Result<EventStream> {
        if target.as_os_str() == "-" {
            return Ok(EventStream::new(Box::new(std::io::stdout())));
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(target)?;
        Ok(EventStream::new(Box::new(file)))
    }

    /// Writes one event. A failing stream must not stop the capture, so
    /// errors are logged and dropped.
    pub fn emit(&self, record: &EventRecord) {
        let line = record.to_line();
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = out.write_all(&line).and_then(|_| out.flush()) {
            tracing::warn!("event stream write failed: {e}");
        }
    }
}
