//! One client connection: feeds socket bytes to the SMTP core, acts on its
//! steps (writing the spool, syncing before a 250), and enforces the time
//! limits. It ends by sealing the session, whatever ended it.

use super::Shared;
use super::handshake;
use super::limits::ConnectionSlot;
use super::shutdown::Shutdown;
use super::transport::{READ_SIZE, Transport};
use crate::escape::{escape_ascii, escape_text, hex};
use crate::events::{AuthRecord, EndReason, Endpoint, Event, StoredMessage, Truncation};
use crate::smtp::{
    Action, AuthAttempt, AuthEnd, Effect, MessageEnd, Outcome, Policy, Reply, Session,
};
use crate::spool::{Durability, SessionWriter};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout, timeout_at};

/// Quiet time after which a session parks its files (one descriptor per
/// idle connection, not three).
const PARK_AFTER: Duration = Duration::from_secs(2);

/// Longest TLS handshake allowed (also bounded by the idle timeout).
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(60);

/// One accepted connection.
pub struct Connection {
    pub transport: Transport,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub listener: String,
    pub policy: Arc<Policy>,
    pub shared: Arc<Shared>,
    pub shutdown: Shutdown,
    /// The connection's place under the global and per-IP caps.
    pub slot: ConnectionSlot,
    /// Dropped when the session is sealed: the listener waits for all of these
    /// at shutdown.
    pub done: mpsc::Sender<()>,
}

/// What the client's input led to, after one batch.
enum Next {
    Continue,
    Close(EndReason),
    /// `220 Ready to start TLS` was sent: do the handshake now.
    StartTls,
}

impl Connection {
    /// Runs the session to its end and seals it.
    pub async fn run(mut self) {
        let Some(mut writer) = begin_session(&self.shared, self.peer, self.local, &self.listener)
        else {
            // Without a spool there is no evidence to keep; say what a full
            // queue says and hang up.
            let _ = self
                .transport
                .write_all(b"421 4.3.0 Error: queue file write error\r\n")
                .await;
            return;
        };
        let mut session = Session::new(Arc::clone(&self.policy));
        session.set_entropy(
            random_u64(),
            crate::timestamp::now().unix_timestamp() as u64,
        );
        session.set_endpoints(self.peer.ip(), self.local.ip());
        let reason = self.converse(&mut writer, &mut session).await;
        if let Some(summary) = session
            .partial_summary()
            .filter(|_| writer.has_open_message())
        {
            let why = if reason == EndReason::Shutdown {
                Truncation::Interrupted
            } else {
                Truncation::Disconnected
            };
            let stored = stored_message(&summary, false, Some(why), None);
            if let Err(e) = writer.abandon_message(stored) {
                tracing::warn!(session = writer.id(), "cannot finish partial message: {e}");
            }
        }
        let commands = session.commands();
        let id = writer.id().to_string();
        // The client is gone: its socket closes and its slot is freed for
        // another client once the session has a place among those waiting
        // to be sealed (as many as there may be connections).
        drop(self.transport);
        let _waiting = shared_backlog(&self.shared).await;
        drop(self.slot);
        match Box::pin(seal(&self.shared, writer, reason, commands)).await {
            Ok(path) => tracing::info!(
                session = %id,
                client = %self.peer,
                reason = ?reason,
                "sealed {}",
                path.display()
            ),
            Err(e) => {
                tracing::error!(session = %id, "sealing failed, left in .incoming for recovery: {e}")
            }
        }
        drop(self.done);
    }

    async fn converse(&mut self, writer: &mut SessionWriter, session: &mut Session) -> EndReason {
        let mut input: Vec<u8> = Vec::new();
        let reason = self.exchange(writer, session, &mut input).await;
        // Bytes the core never used (a partial line at disconnect, commands
        // pipelined after QUIT) are evidence too.
        if !input.is_empty() {
            let _ = writer.transcript().note("client bytes not processed:");
            log_client(writer, &input);
            let _ = writer.flush();
        }
        reason
    }

    async fn exchange(
        &mut self,
        writer: &mut SessionWriter,
        session: &mut Session,
        input: &mut Vec<u8>,
    ) -> EndReason {
        let limits = self.shared.limits.clone();
        let deadline = Instant::now() + limits.session_timeout;
        if self.policy.implicit_tls && !Box::pin(self.start_tls(writer, "implicit")).await {
            return EndReason::TlsFailed;
        }
        // The persona's greeting latency (a real MTA is never instant).
        tokio::time::sleep(session.greeting_delay()).await;
        if Box::pin(self.send(writer, &session.greeting()))
            .await
            .is_err()
        {
            return EndReason::ClientClosed;
        }
        loop {
            let wait_until = deadline.min(Instant::now() + limits.idle_timeout);
            let mut parked = false;
            let read = loop {
                // A client quiet for PARK_AFTER gives back its files and
                // buffers until it speaks again.
                let until = if parked {
                    wait_until
                } else {
                    wait_until.min(Instant::now() + PARK_AFTER)
                };
                let read = tokio::select! {
                    biased;
                    _ = self.shutdown.recv() => {
                        let reply = session.render(&self.policy.persona.replies.shutdown, b"");
                        let _ = Box::pin(self.send(writer, &reply)).await;
                        return EndReason::Shutdown;
                    }
                    read = timeout_at(until, self.transport.read(input)) => read,
                };
                match read {
                    Err(_) if !parked && Instant::now() < wait_until => {
                        if let Err(e) = writer.park() {
                            tracing::warn!(session = writer.id(), "transcript write failed: {e}");
                        }
                        if input.is_empty() {
                            *input = Vec::new();
                        }
                        parked = true;
                    }
                    read => break read,
                }
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => return EndReason::ClientClosed,
                Ok(Ok(_)) => {}
                Err(_) => return Box::pin(self.time_is_up(writer, session, deadline)).await,
            }
            session.set_storage_full(self.shared.storage.is_full());
            // Boxed, as the other rare or large steps: the future of an idle
            // connection then holds only the wait for input (about 1 KiB).
            let next = Box::pin(self.handle_input(input, writer, session, deadline)).await;
            if input.capacity() > 4 * READ_SIZE && input.len() < READ_SIZE {
                input.shrink_to(READ_SIZE);
            }
            match next {
                Next::Continue => {}
                Next::Close(reason) => return reason,
                Next::StartTls => {
                    if !Box::pin(self.start_tls(writer, "starttls")).await {
                        return EndReason::TlsFailed;
                    }
                }
            }
        }
    }

    /// Runs the TLS handshake and records it, whatever its outcome. Returns
    /// whether the session can go on.
    async fn start_tls(&mut self, writer: &mut SessionWriter, mode: &str) -> bool {
        let (Some(config), Some(socket)) = (self.shared.tls.clone(), self.transport.take_plain())
        else {
            return false;
        };
        let limit = HANDSHAKE_LIMIT.min(self.shared.limits.idle_timeout);
        let handshake = handshake::accept(socket, config, mode, limit).await;
        let record = handshake.record;
        let _ = writer.transcript().note(&format!(
            "tls {mode} {} client_hello={}",
            match &record.error {
                None => format!(
                    "established {} {}",
                    record.version.as_deref().unwrap_or("?"),
                    record.cipher.as_deref().unwrap_or("?")
                ),
                Some(e) => format!("failed: {}", escape_ascii(e.as_bytes())),
            },
            hex(&handshake.client_bytes)
        ));
        record_event(writer, Event::Tls(record));
        let _ = writer.flush();
        match handshake.stream {
            Some(stream) => {
                self.transport = Transport::Tls(Box::new(stream));
                true
            }
            None => false,
        }
    }

    /// The idle timeout or the session's total time ran out.
    async fn time_is_up(
        &mut self,
        writer: &mut SessionWriter,
        session: &Session,
        deadline: Instant,
    ) -> EndReason {
        let replies = &self.policy.persona.replies;
        let (template, limit, reason) = if Instant::now() >= deadline {
            (&replies.session_too_long, "session_time", EndReason::Limit)
        } else {
            (&replies.timeout, "idle_timeout", EndReason::Timeout)
        };
        let reply = session.render(template, b"");
        record_event(
            writer,
            Event::Limit {
                limit: limit.into(),
            },
        );
        let _ = self.send(writer, &reply).await;
        reason
    }

    /// Runs every complete unit in `input` through the core, writes the
    /// replies in one write, and drops the consumed bytes.
    async fn handle_input(
        &mut self,
        input: &mut Vec<u8>,
        writer: &mut SessionWriter,
        session: &mut Session,
        deadline: Instant,
    ) -> Next {
        let mut out: Vec<u8> = Vec::new();
        let mut content: Vec<u8> = Vec::new();
        let mut pos = 0;
        let mut next = Next::Continue;
        // The tarpit: past the soft error limit every reply line waits.
        let mut delay = Duration::ZERO;
        loop {
            content.clear();
            let step = session.advance(&input[pos..], &mut content);
            let unit = &input[pos..pos + step.consumed];
            pos += step.consumed;
            match step.action {
                Action::NeedMore => break,
                Action::Content => writer.message_content(&content),
                Action::Skipped => log_client(writer, unit),
                Action::ChunkStart { first } => {
                    log_client(writer, unit);
                    if first {
                        open_message(writer);
                    }
                }
                Action::Reply {
                    reply,
                    effect,
                    close,
                } => {
                    if unit.is_empty() && close {
                        // The 421 after too many errors goes out on its own,
                        // after the replies before it, as Postfix sends it.
                        if self
                            .send_batch(&mut out, &mut delay, deadline)
                            .await
                            .is_err()
                        {
                            return Next::Close(EndReason::ClientClosed);
                        }
                    }
                    log_client(writer, unit);
                    note_overlong(writer, unit);
                    delay += queue_reply(writer, session, &reply, &mut out);
                    let starttls = effect == Effect::StartTls;
                    let reason = match &effect {
                        Effect::Limit(_) => EndReason::Limit,
                        Effect::Error => EndReason::Rejected,
                        _ => EndReason::Quit,
                    };
                    apply_effect(writer, session, unit, &reply, effect);
                    if close {
                        next = Next::Close(reason);
                        break;
                    }
                    if starttls {
                        // Whatever followed STARTTLS in plaintext is evidence
                        // of an injection attempt, never a command.
                        let rest = &input[pos..];
                        if !rest.is_empty() {
                            record_event(
                                writer,
                                Event::StartTlsInjection {
                                    bytes: rest.len() as u64,
                                },
                            );
                            let _ = writer
                                .transcript()
                                .note("plaintext after STARTTLS, not executed:");
                            log_client(writer, rest);
                            pos = input.len();
                        }
                        next = Next::StartTls;
                        break;
                    }
                }
                Action::Auth(attempt) => {
                    log_client(writer, unit);
                    note_overlong(writer, unit);
                    let accepted =
                        attempt.end == AuthEnd::Complete && self.shared.auth.decide(self.peer.ip());
                    let reply = session.auth_outcome(&attempt, accepted);
                    record_event(writer, Event::Auth(auth_record(&attempt, accepted)));
                    delay += queue_reply(writer, session, &reply, &mut out);
                }
                Action::MessageEnd(end) => {
                    writer.message_content(&content);
                    let reply = self.finish_message(writer, session, &end).await;
                    delay += queue_reply(writer, session, &reply, &mut out);
                }
            }
        }
        input.drain(..pos);
        if let Err(e) = writer.flush() {
            tracing::warn!(session = writer.id(), "transcript write failed: {e}");
        }
        if self
            .send_batch(&mut out, &mut delay, deadline)
            .await
            .is_err()
        {
            return Next::Close(EndReason::ClientClosed);
        }
        next
    }

    /// Writes the queued replies in one write, after their tarpit delay
    /// (cut short by shutdown or the session's deadline).
    async fn send_batch(
        &mut self,
        out: &mut Vec<u8>,
        delay: &mut Duration,
        deadline: Instant,
    ) -> io::Result<()> {
        let wait = (*delay).min(deadline.saturating_duration_since(Instant::now()));
        *delay = Duration::ZERO;
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.recv() => {}
            }
        }
        if out.is_empty() {
            return Ok(());
        }
        let result = self.write(out).await;
        out.clear();
        result
    }

    /// Stores a finished message durably, then gives the reply: 250 only
    /// for a message that is on disk (and fsynced, by default).
    async fn finish_message(
        &self,
        writer: &mut SessionWriter,
        session: &mut Session,
        end: &MessageEnd,
    ) -> Reply {
        let over = end.summary.over_limit;
        let queue_id = session.queue_id(random_u64());
        let truncation = over.then_some(Truncation::SizeLimit);
        let draft = StoredMessage {
            chunked: end.chunked,
            ..stored_message(&end.summary, !over, truncation, Some(queue_id.clone()))
        };
        if over {
            record_event(
                writer,
                Event::Limit {
                    limit: "message_size".into(),
                },
            );
        }
        let (mut stored, file) = match writer.end_message(draft) {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(session = writer.id(), "message could not be stored: {e}");
                return session.message_outcome(end, Outcome::Failed);
            }
        };
        let mut reply = session.message_outcome(
            end,
            if stored.accepted {
                Outcome::Stored {
                    queue_id: &queue_id,
                }
            } else {
                Outcome::Failed
            },
        );
        if !stored.accepted {
            stored.queue_id = None;
        }
        stored.reply = Some(reply_text(&reply));
        record_event(writer, Event::MessageStored(stored.clone()));
        if stored.accepted && self.shared.spool.durability() == Durability::Fsync {
            // Group commit: the 250 waits for a sync that covers this
            // message, its journal entry and their directory entries.
            let synced = match writer.sync_targets(file) {
                Ok(targets) => self.shared.spool.commit(targets).await,
                Err(e) => Err(e),
            };
            if synced.is_ok() {
                writer.synced();
            }
            if let Err(e) = synced {
                tracing::error!(session = writer.id(), "fsync failed, answering 451: {e}");
                reply = session.render(&self.policy.persona.replies.storage_error, b"");
                stored.accepted = false;
                stored.queue_id = None;
                stored.reply = Some(reply_text(&reply));
                record_event(writer, Event::MessageStored(stored));
            }
        }
        reply
    }

    /// Sends one reply now (greeting, timeout, shutdown), with the transcript.
    async fn send(&mut self, writer: &mut SessionWriter, reply: &Reply) -> io::Result<()> {
        let mut out = Vec::new();
        log_reply(writer, reply, &mut out);
        let _ = writer.flush();
        self.write(&out).await
    }

    /// Writes to the client, giving up after the idle timeout: a client that
    /// never reads must not hold the session forever.
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match timeout(
            self.shared.limits.idle_timeout,
            self.transport.write_all(bytes),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

async fn shared_backlog(shared: &Shared) -> Option<tokio::sync::SemaphorePermit<'_>> {
    shared.seal_backlog.acquire().await.ok()
}

/// Seals a finished session. Reading messages for their attachments is
/// bounded by the seal permits; waiting for the group commit is not (it holds
/// no memory to speak of).
pub(super) async fn seal(
    shared: &Shared,
    writer: SessionWriter,
    reason: EndReason,
    commands: u64,
) -> io::Result<std::path::PathBuf> {
    let mut plan = {
        let _permit = shared.seal_permits.acquire().await;
        tokio::task::spawn_blocking(move || writer.close(reason, commands)?.prepare())
            .await
            .map_err(|e| io::Error::other(format!("sealing panicked: {e}")))??
    };
    // Everything in the directory, the manifest included, is durable before
    // the rename makes the session visible; then the rename itself.
    shared.spool.commit(plan.before_rename()).await?;
    let path = plan.rename()?;
    shared
        .spool
        .commit(shared.spool.after_rename(&path))
        .await?;
    Ok(path)
}

/// Creates the session's directory and records the connection. The client's
/// address comes from the socket only.
fn begin_session(
    shared: &Shared,
    peer: SocketAddr,
    local: SocketAddr,
    listener: &str,
) -> Option<SessionWriter> {
    let client = Endpoint::from(peer);
    let connect = Event::Connect {
        client: client.clone(),
        server: Endpoint::from(local),
        hostname: shared.hostname.clone(),
        listener: listener.to_string(),
    };
    match shared.spool.begin(
        crate::timestamp::now(),
        client.ip,
        connect,
        shared.events.clone(),
    ) {
        Ok(writer) => Some(writer),
        Err(e) => {
            tracing::error!(client = %peer, "cannot create a session in the spool: {e}");
            None
        }
    }
}

fn stored_message(
    summary: &crate::smtp::DataSummary,
    accepted: bool,
    truncated_reason: Option<Truncation>,
    queue_id: Option<String>,
) -> StoredMessage {
    StoredMessage {
        index: 0,
        file: String::new(),
        size: 0,
        sha256: String::new(),
        received_size: summary.size,
        truncated: truncated_reason.is_some(),
        truncated_reason,
        bare_lf: summary.flags.bare_lf,
        bare_cr: summary.flags.bare_cr,
        smuggling: summary.flags.smuggling,
        chunked: false,
        undoubled_dots: summary.undoubled_dots.clone(),
        accepted,
        queue_id,
        reply: None,
    }
}

fn record_event(writer: &mut SessionWriter, event: Event) {
    if let Err(e) = writer.record(event) {
        tracing::warn!(session = writer.id(), "journal write failed: {e}");
    }
}

fn log_client(writer: &mut SessionWriter, unit: &[u8]) {
    if let Err(e) = writer.transcript().client(unit) {
        tracing::warn!(session = writer.id(), "transcript write failed: {e}");
    }
}

fn open_message(writer: &mut SessionWriter) {
    if let Err(e) = writer.begin_message() {
        // The content will be dropped and the message answered with 451.
        tracing::warn!(session = writer.id(), "cannot create message file: {e}");
    }
}

/// Appends a reply's wire form to `out` and to the transcript.
fn log_reply(writer: &mut SessionWriter, reply: &Reply, out: &mut Vec<u8>) {
    let start = out.len();
    reply.write_to(out);
    if let Err(e) = writer.transcript().server(&out[start..]) {
        tracing::warn!(session = writer.id(), "transcript write failed: {e}");
    }
}

/// Queues a reply for the batch's single write, logs it, and says how long
/// it must wait in the tarpit: every line, once past the soft error limit
/// (a multi-line EHLO reply waits once per line, as in Postfix).
fn queue_reply(
    writer: &mut SessionWriter,
    session: &Session,
    reply: &Reply,
    out: &mut Vec<u8>,
) -> Duration {
    log_reply(writer, reply, out);
    session
        .reply_delay()
        .map_or(Duration::ZERO, |d| d * reply.lines().len() as u32)
}

/// The reply as one line of text for the record (`250 2.0.0 Ok: ...`).
fn reply_text(reply: &Reply) -> String {
    let bytes = reply.to_bytes();
    String::from_utf8_lossy(bytes.strip_suffix(b"\r\n").unwrap_or(&bytes)).replace("\r\n", "\n")
}

/// Records what a command did.
fn apply_effect(
    writer: &mut SessionWriter,
    session: &Session,
    line: &[u8],
    reply: &Reply,
    effect: Effect,
) {
    let event = match effect {
        Effect::None => return,
        Effect::Helo { extended, name } => Event::Helo {
            verb: if extended { "EHLO" } else { "HELO" }.into(),
            name: escape_text(&name),
        },
        Effect::Mail { address, params } => Event::Mail {
            address: escape_text(&address),
            params: params.iter().map(|p| escape_text(p)).collect(),
        },
        Effect::Rcpt { address } => Event::Rcpt {
            address: escape_text(&address),
        },
        Effect::MessageStart => {
            open_message(writer);
            return;
        }
        // The handshake that follows is recorded as `session.tls`.
        Effect::StartTls => return,
        Effect::Reset => Event::Reset,
        Effect::Error | Effect::Limit(_) => {
            if let Effect::Limit(limit) = effect {
                record_event(
                    writer,
                    Event::Limit {
                        limit: limit.into(),
                    },
                );
                // A limit reached without a command (the 421 after too many
                // errors) is not a protocol error of its own.
                if line.is_empty() {
                    return;
                }
            }
            let command = line.strip_suffix(b"\n").unwrap_or(line);
            let command = command.strip_suffix(b"\r").unwrap_or(command);
            Event::ProtocolError {
                command: escape_text(command),
                reply: reply_text(reply),
            }
        }
    };
    // A new greeting or RSET abandons a BDAT message in progress.
    if matches!(event, Event::Reset | Event::Helo { .. })
        && writer.has_open_message()
        && !session.in_message()
    {
        let summary = crate::smtp::DataSummary {
            size: 0,
            stored: 0,
            over_limit: false,
            flags: Default::default(),
            undoubled_dots: Vec::new(),
            undoubled_dots_total: 0,
        };
        let mut stored = stored_message(&summary, false, Some(Truncation::Abandoned), None);
        stored.chunked = true;
        if let Err(e) = writer.abandon_message(stored) {
            tracing::warn!(
                session = writer.id(),
                "cannot finish abandoned message: {e}"
            );
        }
    }
    record_event(writer, event);
    tracing::debug!(session = writer.id(), "{}", escape_ascii(line));
}

/// A unit that does not end the line is the first part of an overlong line,
/// answered by the core (a command or an AUTH response): a limit reached.
fn note_overlong(writer: &mut SessionWriter, unit: &[u8]) {
    if !unit.is_empty() && !unit.ends_with(b"\n") {
        record_event(
            writer,
            Event::Limit {
                limit: "line_length".into(),
            },
        );
    }
}

fn auth_record(attempt: &AuthAttempt, accepted: bool) -> AuthRecord {
    let text = |v: &Option<Vec<u8>>| v.as_deref().map(escape_text);
    AuthRecord {
        mechanism: attempt.mechanism.name().into(),
        username: text(&attempt.username),
        password: text(&attempt.password),
        authzid: text(&attempt.authzid),
        challenge: attempt.challenge.clone(),
        digest: attempt.digest.as_deref().map(|d| escape_text(d.as_bytes())),
        domain: text(&attempt.domain),
        workstation: text(&attempt.workstation),
        raw: escape_text(&attempt.raw),
        outcome: match attempt.end {
            AuthEnd::Complete => "complete",
            AuthEnd::Cancelled => "cancelled",
            AuthEnd::Malformed => "malformed",
        }
        .into(),
        accepted,
    }
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_ne_bytes(bytes)
}
