//! The SMTP dialog as a state machine: bytes in, replies and events out.
//!
//! [`Session::advance`] takes whatever bytes the client sent and handles the
//! first unit it finds (one command line, a run of message content, or the end
//! of a message), telling the caller how many bytes that unit used. The caller
//! loops until [`Action::NeedMore`], which is how pipelined commands get their
//! replies in order without this module ever touching a socket or a clock.
//!
//! When a message ends, the core does not answer by itself: the caller first
//! makes the message durable, then asks [`Session::message_outcome`] for the
//! reply, so that a `250` is never sent for a message that is not on disk.

use super::auth::{AuthAttempt, AuthEnd, AuthExchange, Mechanism, Prompt};
use super::command::{self, Command, Path, PathError};
use super::data::{DataReceiver, DataSummary};
use super::ntlm;
use super::persona::{self, Grammar, Persona, Vars};
use super::reply::Reply;
use std::borrow::Cow;
use std::sync::Arc;

/// Exim's rules for reading commands (see `Grammar::Exim`).
mod exim;

/// Limits and identity for every session of one listener.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The name we give in the greeting and in replies.
    pub hostname: String,
    pub persona: Persona,
    /// Advertised in `SIZE`; content past it is dropped and answered with 552.
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_messages: u32,
    /// Longest command line kept; the rest of a longer line is skipped.
    pub max_line_length: usize,
    /// Protocol errors before `421 too many errors` and a disconnect.
    pub max_errors: u32,
    /// Refuse MAIL before HELO/EHLO (off in Postfix 3.7's defaults).
    pub strict_order: bool,
    /// Whether STARTTLS is offered (a certificate is loaded).
    pub starttls: bool,
    /// The connection is TLS from the start (port 465 style).
    pub implicit_tls: bool,
    /// Where AUTH is advertised and accepted.
    pub auth: AuthOffer,
}

/// Where a listener offers AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOffer {
    Never,
    /// Only once TLS is active, as Postfix with `smtpd_tls_auth_only`.
    AfterTls,
    Always,
}

impl Policy {
    /// Postfix's defaults: 10240000-byte messages, 1000 recipients, 20 errors.
    pub fn new(hostname: impl Into<String>) -> Policy {
        Policy {
            hostname: hostname.into(),
            persona: Persona::postfix(),
            max_message_size: 10_240_000,
            max_recipients: 1000,
            max_messages: 100,
            max_line_length: 2048,
            max_errors: 20,
            strict_order: false,
            starttls: false,
            implicit_tls: false,
            auth: AuthOffer::Never,
        }
    }
}

/// The sender and recipients of the message being built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub mail_from: Vec<u8>,
    pub mail_params: Vec<Vec<u8>>,
    pub rcpt_to: Vec<Vec<u8>>,
}

/// What a command changed, for the record (manifest, events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing worth recording beyond the transcript.
    None,
    /// A greeting. Like [`Effect::Reset`], it also drops the envelope and
    /// abandons an open BDAT message.
    Helo {
        extended: bool,
        name: Vec<u8>,
    },
    Mail {
        address: Vec<u8>,
        params: Vec<Vec<u8>>,
    },
    Rcpt {
        address: Vec<u8>,
    },
    /// Message content starts after this reply (DATA). A BDAT message opens
    /// with [`Action::ChunkStart`] `{ first: true }` instead.
    MessageStart,
    /// The envelope was dropped (RSET); an open BDAT message is abandoned.
    /// HELO/EHLO do the same but report [`Effect::Helo`].
    Reset,
    /// The reply is an error (4xx/5xx); counted against the error limit.
    Error,
    /// An error because a limit was reached; names the limit
    /// (`recipients`, `messages`, `message_size`, `errors`).
    Limit(&'static str),
    /// `220 Ready to start TLS`: the caller must not act on any byte that
    /// followed the command in plaintext, and starts the TLS handshake.
    StartTls,
}

/// One unit of progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Input bytes this unit used; the caller drops them before the next call.
    pub consumed: usize,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No complete unit in the input: read more and call again with the
    /// unconsumed bytes plus the new ones.
    NeedMore,
    /// A command line (`consumed` bytes, line ending included) was handled.
    Reply {
        reply: Reply,
        effect: Effect,
        /// Close the connection after sending this reply.
        close: bool,
    },
    /// Input skipped without a reply: the rest of an overlong line (its
    /// first part was handled as the command, as Postfix does), or the chunk
    /// of a refused BDAT.
    Skipped,
    /// An AUTH exchange ended: decide whether to accept it, then call
    /// [`Session::auth_outcome`] for the reply.
    Auth(AuthAttempt),
    /// A `BDAT` command line: its chunk follows and is answered once read.
    /// The first chunk of a message opens it.
    ChunkStart { first: bool },
    /// Message content: the bytes to store were appended to `content`.
    Content,
    /// The message is complete (its content was appended to `content`). Store
    /// it, then call [`Session::message_outcome`] for the reply.
    MessageEnd(MessageEnd),
}

/// A finished message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEnd {
    pub envelope: Envelope,
    pub summary: DataSummary,
    /// Sent with BDAT rather than DATA.
    pub chunked: bool,
}

/// Whether the caller managed to store a finished message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    Stored { queue_id: &'a str },
    Failed,
}

#[derive(Debug, Clone)]
enum Phase {
    Command,
    /// Skipping the rest of an overlong command line.
    SkipLine,
    /// Skipping the chunk of a refused BDAT command.
    Discard {
        remaining: u64,
    },
    Data(DataReceiver),
    /// Inside a BDAT chunk of `remaining` bytes.
    Bdat {
        remaining: u64,
        last: bool,
    },
    Closed,
}

/// One client's SMTP dialog.
#[derive(Debug)]
pub struct Session {
    policy: Arc<Policy>,
    phase: Phase,
    greeted: bool,
    envelope: Option<Envelope>,
    /// The BDAT message being received (it spans several commands).
    bdat: Option<BdatMessage>,
    /// Postfix's reply count for the last BDAT message (a missing final
    /// CRLF counts as added).
    last_bdat_size: u64,
    /// Size of the BDAT chunk being read, for its reply.
    chunk_size: u64,
    auth: Option<AuthExchange>,
    authenticated: bool,
    tls_active: bool,
    errors: u32,
    /// The error count before the reply being made counted its own error:
    /// the tarpit looks at this, as Postfix's `smtpd_chat_reply` does.
    errors_before_reply: u32,
    junk_commands: u32,
    /// Recipients refused for the limit, in the whole session (Postfix does
    /// not reset it per transaction).
    rcpt_overshoot: u32,
    messages: u32,
    commands: u64,
    /// Set by the caller when the spool is short of disk space.
    storage_full: bool,
    /// From the caller: random bits and the time, for CRAM-MD5 challenges.
    entropy: (u64, u64),
    /// The client's IP address (from the socket), for replies that name it.
    client: String,
    /// The address the client connected to.
    server_ip: Option<std::net::IpAddr>,
    /// The name given in the last HELO/EHLO.
    helo_name: Vec<u8>,
    /// The session's start time as mail servers print it.
    date: String,
    /// Whether more input followed the command line being handled (the
    /// client pipelined it): Exim's synchronisation checks look at this.
    pending_input: bool,
    /// Length of the message line being received and the longest so far.
    body_line: u64,
    longest_body_line: u64,
    /// Messages whose queue id was given, to keep ids distinct.
    queue_ids: u64,
    /// State only Exim's grammar keeps.
    exim: exim::State,
    /// The first bytes of the BDAT message being received.
    bdat_head: Vec<u8>,
}

/// How much of a BDAT message's start is kept to tell whether it has headers.
const BDAT_HEAD: usize = 256;

#[derive(Debug, Clone, Copy, Default)]
struct BdatMessage {
    size: u64,
    /// The last two bytes received, to know whether it ends with CRLF.
    tail: [u8; 2],
}

impl Session {
    pub fn new(policy: Arc<Policy>) -> Session {
        let tls_active = policy.implicit_tls;
        Session {
            policy,
            phase: Phase::Command,
            greeted: false,
            envelope: None,
            bdat: None,
            last_bdat_size: 0,
            chunk_size: 0,
            auth: None,
            authenticated: false,
            tls_active,
            errors: 0,
            errors_before_reply: 0,
            junk_commands: 0,
            rcpt_overshoot: 0,
            messages: 0,
            commands: 0,
            storage_full: false,
            entropy: (0, 0),
            client: String::new(),
            server_ip: None,
            helo_name: Vec::new(),
            date: rfc5322_date(0),
            pending_input: false,
            body_line: 0,
            longest_body_line: 0,
            queue_ids: 0,
            exim: exim::State::default(),
            bdat_head: Vec::new(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Random bits and the Unix time, used in CRAM-MD5 challenges
    /// (`<random.time@host>`, as Cyrus SASL makes them).
    pub fn set_entropy(&mut self, random: u64, unix_time: u64) {
        self.entropy = (random, unix_time);
        self.date = rfc5322_date(unix_time);
    }

    /// The client's address and the one it connected to, as the socket
    /// gives them (never what the client claims).
    pub fn set_endpoints(&mut self, client: std::net::IpAddr, server: std::net::IpAddr) {
        self.client = client.to_string();
        self.server_ip = Some(server);
    }

    /// How long to wait before the greeting: the persona's delay plus a
    /// random part of its jitter (from the entropy the caller gave).
    pub fn greeting_delay(&self) -> std::time::Duration {
        let t = &self.policy.persona.timing;
        let jitter = match t.greeting_jitter_ms {
            0 => 0,
            j => (self.entropy.0 >> 16) % (j + 1),
        };
        std::time::Duration::from_millis(t.greeting_delay_ms + jitter)
    }

    /// A fresh queue id in the persona's format for a message being stored.
    pub fn queue_id(&mut self, random: u64) -> String {
        self.queue_ids += 1;
        self.policy
            .persona
            .queue_id(random, self.entropy.1, &self.policy.hostname)
    }

    /// The banner to send on connect.
    pub fn greeting(&self) -> Reply {
        self.render(&self.policy.persona.greeting, b"")
    }

    /// Renders one of the persona's templates with this session's values.
    pub fn render(&self, template: &str, arg: &[u8]) -> Reply {
        persona::render(template, &self.vars(arg, ""))
    }

    fn vars<'a>(&'a self, arg: &'a [u8], queue_id: &'a str) -> Vars<'a> {
        Vars {
            host: &self.policy.hostname,
            arg,
            queue_id,
            size: self.policy.max_message_size,
            client: &self.client,
            helo: &self.helo_name,
            date: &self.date,
            starttls: self.policy.starttls && !self.tls_active,
            chunk: self.chunk_size,
        }
    }

    /// Command lines handled so far.
    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// Errors so far (the tarpit and the hard limit count these).
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// How long each reply line waits, once past the soft error limit (the
    /// tarpit of Postfix's `smtpd_error_sleep_time`).
    pub fn reply_delay(&self) -> Option<std::time::Duration> {
        let p = &self.policy.persona;
        (self.errors_before_reply >= p.soft_error_limit && p.error_sleep_ms > 0)
            .then(|| std::time::Duration::from_millis(p.error_sleep_ms))
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// Whether message content is being received (DATA or a BDAT chunk).
    pub fn in_message(&self) -> bool {
        matches!(self.phase, Phase::Data(_) | Phase::Bdat { .. }) || self.bdat.is_some()
    }

    /// Size of the message being received, as far as it got.
    pub fn partial_summary(&self) -> Option<DataSummary> {
        match &self.phase {
            Phase::Data(rx) => Some(rx.summary()),
            _ => self
                .bdat
                .map(|b| bdat_summary(b.size, self.policy.max_message_size)),
        }
    }

    /// The spool is (or is no longer) short of space: new transactions get 452.
    pub fn set_storage_full(&mut self, full: bool) {
        self.storage_full = full;
    }

    /// Handles the first unit found in `input`; see the module documentation.
    pub fn advance(&mut self, input: &[u8], content: &mut Vec<u8>) -> Step {
        self.errors_before_reply = self.errors;
        if self.errors >= self.policy.max_errors && !self.is_closed() {
            self.phase = Phase::Closed;
            let reply = self.render(&self.policy.persona.replies.too_many_errors, b"");
            return self.step(0, reply, Effect::Limit("errors"), true);
        }
        match &mut self.phase {
            Phase::Closed => need_more(),
            Phase::Data(rx) => {
                if input.is_empty() {
                    return need_more();
                }
                let before = content.len();
                let fed = rx.feed(input, content);
                let summary = fed.finished.then(|| rx.summary());
                self.measure_body_lines(&content[before..]);
                let Some(summary) = summary else {
                    return Step {
                        consumed: fed.consumed,
                        action: Action::Content,
                    };
                };
                self.phase = Phase::Command;
                let envelope = self.envelope.take().unwrap_or_default();
                Step {
                    consumed: fed.consumed,
                    action: Action::MessageEnd(MessageEnd {
                        envelope,
                        summary,
                        chunked: false,
                    }),
                }
            }
            Phase::Bdat { remaining, last } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                if take == 0 && *remaining > 0 {
                    return need_more();
                }
                let (remaining_after, last) = (*remaining - take as u64, *last);
                *remaining = remaining_after;
                let message = self.bdat.get_or_insert_with(BdatMessage::default);
                if self.bdat_head.len() < BDAT_HEAD {
                    let more = take.min(BDAT_HEAD - self.bdat_head.len());
                    self.bdat_head.extend_from_slice(&input[..more]);
                }
                let room = self.policy.max_message_size.saturating_sub(message.size);
                content.extend_from_slice(&input[..take.min(room as usize)]);
                message.size += take as u64;
                for &b in &input[..take] {
                    message.tail = [message.tail[1], b];
                }
                // The end of a non-final chunk is still plain Content: its
                // reply comes on the next call, so that a Reply never carries
                // content the caller would have to look for.
                if remaining_after > 0 || (take > 0 && !last) {
                    return Step {
                        consumed: take,
                        action: Action::Content,
                    };
                }
                self.phase = Phase::Command;
                let message = *message;
                let over = message.size > self.policy.max_message_size;
                if last {
                    self.bdat = None;
                    self.last_bdat_size =
                        message.size + if message.tail == *b"\r\n" { 0 } else { 2 };
                    let head = std::mem::take(&mut self.bdat_head);
                    if self.policy.persona.grammar == Grammar::Exim {
                        self.last_bdat_size += exim::added_separator(&head);
                    }
                    let envelope = self.envelope.take().unwrap_or_default();
                    let summary = bdat_summary(message.size, self.policy.max_message_size);
                    return Step {
                        consumed: take,
                        action: Action::MessageEnd(MessageEnd {
                            envelope,
                            summary,
                            chunked: true,
                        }),
                    };
                }
                if over {
                    return self.limit(take, |r| &r.chunk_too_big, "message_size");
                }
                let size = self.chunk_size.to_string();
                let reply = self.render(&self.policy.persona.replies.bdat_ok, size.as_bytes());
                self.step(take, reply, Effect::None, false)
            }
            Phase::Discard { remaining } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                if take == 0 && *remaining > 0 {
                    return need_more();
                }
                *remaining -= take as u64;
                if *remaining == 0 {
                    self.phase = Phase::Command;
                }
                Step {
                    consumed: take,
                    action: Action::Skipped,
                }
            }
            Phase::SkipLine => match memchr::memchr(b'\n', input) {
                Some(end) => {
                    self.phase = Phase::Command;
                    Step {
                        consumed: end + 1,
                        action: Action::Skipped,
                    }
                }
                None if input.is_empty() => need_more(),
                None => Step {
                    consumed: input.len(),
                    action: Action::Skipped,
                },
            },
            Phase::Command => {
                let window = &input[..input.len().min(self.policy.max_line_length)];
                match memchr::memchr(b'\n', window) {
                    Some(end) => {
                        self.pending_input = input.len() > end + 1;
                        self.line(&input[..=end])
                    }
                    None if input.len() < self.policy.max_line_length => need_more(),
                    None => {
                        // Like Postfix: the first part of an overlong line is
                        // the command, the rest is dropped without a word.
                        self.phase = Phase::SkipLine;
                        self.line(window)
                    }
                }
            }
        }
    }

    /// The reply for a finished message, once the caller has tried to store it.
    pub fn message_outcome(&mut self, end: &MessageEnd, outcome: Outcome<'_>) -> Reply {
        self.errors_before_reply = self.errors;
        self.messages += 1;
        self.exim.message_done();
        let longest = std::mem::take(&mut self.longest_body_line).max(self.body_line);
        self.body_line = 0;
        let replies = &self.policy.persona.replies;
        let limit = self.policy.persona.max_body_line_length;
        if limit > 0 && longest > limit && !end.chunked && !end.summary.over_limit {
            self.errors += 1;
            let longest = longest.to_string();
            return self.render(&replies.body_line_too_long, longest.as_bytes());
        }
        if end.summary.over_limit {
            self.errors += 1;
            let template = if end.chunked {
                &replies.chunk_too_big
            } else {
                &replies.message_too_big
            };
            return self.render(template, b"");
        }
        match outcome {
            Outcome::Stored { queue_id } => {
                // Postfix forgives a client that managed to deliver, before
                // it answers (so this reply is not delayed either).
                self.errors = 0;
                self.errors_before_reply = 0;
                let size = self.last_bdat_size.to_string();
                let (template, arg) = if end.chunked {
                    (&replies.bdat_queued, size.as_bytes())
                } else {
                    (&replies.queued, &b""[..])
                };
                persona::render(template, &self.vars(arg, queue_id))
            }
            Outcome::Failed => {
                self.errors += 1;
                self.render(&replies.storage_error, b"")
            }
        }
    }

    /// The reply to a finished AUTH exchange, given the caller's decision.
    pub fn auth_outcome(&mut self, attempt: &AuthAttempt, accepted: bool) -> Reply {
        self.errors_before_reply = self.errors;
        let r = &self.policy.persona.replies;
        let template = match attempt.end {
            AuthEnd::Cancelled => &r.auth_aborted,
            AuthEnd::Malformed => &r.auth_bad_base64,
            AuthEnd::Complete if accepted => &r.auth_ok,
            AuthEnd::Complete => &r.auth_failed,
        };
        let reply = self.render(template, b"");
        if accepted && attempt.end == AuthEnd::Complete {
            self.authenticated = true;
        } else {
            self.errors += 1;
        }
        reply
    }

    fn step(&mut self, consumed: usize, reply: Reply, effect: Effect, close: bool) -> Step {
        if close {
            self.phase = Phase::Closed;
        }
        Step {
            consumed,
            action: Action::Reply {
                reply,
                effect,
                close,
            },
        }
    }

    fn reply(&self, pick: impl Fn(&persona::Replies) -> &String, arg: &[u8]) -> Reply {
        self.render(pick(&self.policy.persona.replies), arg)
    }

    /// An error reply: counted against the error limit.
    fn error(
        &mut self,
        consumed: usize,
        pick: impl Fn(&persona::Replies) -> &String,
        arg: &[u8],
    ) -> Step {
        let reply = self.reply(pick, arg);
        // What is an error is the persona's say: Postfix refuses HELP with
        // 500, Exchange answers it with 214.
        if reply.code() < 400 {
            return self.step(consumed, reply, Effect::None, false);
        }
        self.errors += 1;
        self.step(consumed, reply, Effect::Error, false)
    }

    /// An error because a limit was reached.
    fn limit(
        &mut self,
        consumed: usize,
        pick: impl Fn(&persona::Replies) -> &String,
        name: &'static str,
    ) -> Step {
        self.errors += 1;
        let reply = self.reply(pick, b"");
        self.step(consumed, reply, Effect::Limit(name), false)
    }

    fn ok(
        &mut self,
        consumed: usize,
        pick: impl Fn(&persona::Replies) -> &String,
        arg: &[u8],
        effect: Effect,
    ) -> Step {
        let reply = self.reply(pick, arg);
        self.step(consumed, reply, effect, false)
    }

    /// A command line, as Postfix reads it: cut at a NUL, bare CRs as
    /// spaces, valid UTF-8 or refused.
    fn line(&mut self, raw: &[u8]) -> Step {
        let n = raw.len();
        self.commands += 1;
        let mut line = raw.strip_suffix(b"\n").unwrap_or(raw);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        // An AUTH response is base64, decoded by the exchange (which refuses
        // anything else, 8-bit bytes included).
        if let Some(mut exchange) = self.auth.take() {
            return match exchange.respond(raw) {
                Prompt::Continue(challenge) => {
                    self.auth = Some(exchange);
                    self.ok(n, |r| &r.auth_challenge, challenge.as_bytes(), Effect::None)
                }
                Prompt::Done(attempt) => Step {
                    consumed: n,
                    action: Action::Auth(attempt),
                },
            };
        }
        if self.policy.persona.grammar == Grammar::Exim {
            return self.exim_line(n, line, raw);
        }
        // Postfix checks the whole line, then stops reading it at a NUL.
        if std::str::from_utf8(line).is_err() {
            return self.error(n, |r| &r.bad_utf8, b"");
        }
        if let Some(nul) = memchr::memchr(0, line) {
            line = &line[..nul];
        }
        let cleaned: Cow<'_, [u8]> = if line.contains(&b'\r') {
            Cow::Owned(
                line.iter()
                    .map(|&b| if b == b'\r' { b' ' } else { b })
                    .collect(),
            )
        } else {
            Cow::Borrowed(line)
        };
        self.command(n, &cleaned, raw)
    }

    /// Counts NOOP, VRFY, RSET and ETRN; past the persona's limit each one is
    /// also an error (Postfix's `smtpd_junk_command_limit`).
    fn junk(&mut self) {
        if self.junk_commands > self.policy.persona.junk_command_limit {
            self.errors += 1;
        }
        self.junk_commands += 1;
    }

    fn command(&mut self, n: usize, line: &[u8], raw: &[u8]) -> Step {
        match command::parse(line) {
            Command::Empty => self.error(n, |r| &r.empty, b""),
            Command::Forbidden if self.policy.persona.forbidden_commands => {
                self.errors += 1;
                let reply = self.reply(|r| &r.forbidden, b"");
                self.step(n, reply, Effect::Error, true)
            }
            Command::Forbidden => {
                let verb = verb(line).to_vec();
                self.error(n, |r| &r.unknown, &verb)
            }
            Command::Helo(name) | Command::Ehlo(name) if name.is_empty() => {
                if starts_with_ignore_case(line, b"EHLO") {
                    self.error(n, |r| &r.ehlo_syntax, b"")
                } else {
                    self.error(n, |r| &r.helo_syntax, b"")
                }
            }
            Command::Helo(name) => {
                let effect = self.greet(false, name);
                self.ok(n, |r| &r.helo, b"", effect)
            }
            Command::Ehlo(name) => {
                let effect = self.greet(true, name);
                let reply = self.ehlo_reply();
                self.step(n, reply, effect, false)
            }
            Command::Mail(path) => self.mail(n, path),
            Command::Rcpt(path) => self.rcpt(n, path),
            Command::Data(arg) => self.data(n, arg),
            Command::Bdat(arg) => self.bdat(n, arg),
            Command::Rset(arg) => {
                self.junk();
                if !arg.is_empty() {
                    return self.error(n, |r| &r.rset_syntax, b"");
                }
                let effect = self.reset();
                self.ok(n, |r| &r.rset, b"", effect)
            }
            Command::Noop(_) => {
                self.junk();
                self.ok(n, |r| &r.noop, b"", Effect::None)
            }
            Command::Quit(arg)
                if !arg.is_empty() && !self.policy.persona.replies.quit_syntax.is_empty() =>
            {
                self.error(n, |r| &r.quit_syntax, b"")
            }
            Command::Quit(_) => {
                let reply = self.reply(|r| &r.quit, b"");
                self.step(n, reply, Effect::None, true)
            }
            Command::Vrfy(arg) => {
                self.junk();
                self.vrfy(n, arg)
            }
            Command::Expn(arg) => self.error(n, |r| &r.expn, arg),
            Command::Help(arg) => self.error(n, |r| &r.help, arg),
            Command::Etrn(arg) => {
                self.junk();
                if self.envelope.is_some() {
                    return self.error(n, |r| &r.etrn_in_transaction, b"");
                }
                if arg.is_empty() || arg.contains(&b' ') {
                    return self.error(n, |r| &r.etrn_syntax, b"");
                }
                let domain = arg
                    .strip_prefix(b"#")
                    .or_else(|| arg.strip_prefix(b"@"))
                    .unwrap_or(arg);
                let domain = domain.to_vec();
                self.error(n, |r| &r.etrn, &domain)
            }
            Command::StartTls(arg) => self.starttls(n, arg),
            Command::Auth(arg) => self.auth(n, arg, raw),
            Command::Xclient => self.error(n, |r| &r.xclient, b""),
            Command::Unknown(verb) => {
                let verb = verb.to_vec();
                self.error(n, |r| &r.unknown, &verb)
            }
        }
    }

    /// HELO/EHLO: a new greeting drops any transaction in progress.
    fn greet(&mut self, extended: bool, name: &[u8]) -> Effect {
        self.greeted = true;
        self.helo_name = name.to_vec();
        self.envelope = None;
        self.bdat = None;
        self.bdat_head.clear();
        Effect::Helo {
            extended,
            name: name.to_vec(),
        }
    }

    fn auth_offered(&self) -> bool {
        match self.policy.auth {
            AuthOffer::Never => false,
            AuthOffer::AfterTls => self.tls_active,
            AuthOffer::Always => true,
        }
    }

    /// The SASL mechanisms offered now: the persona's list where the
    /// listener offers AUTH, plus those it offers everywhere.
    fn mechanisms(&self) -> Vec<&str> {
        let p = &self.policy.persona;
        let mut list: Vec<&str> = if self.auth_offered() {
            p.auth_mechanisms.iter().map(String::as_str).collect()
        } else {
            Vec::new()
        };
        for m in &p.auth_always {
            if !list.contains(&m.as_str()) {
                list.push(m);
            }
        }
        list
    }

    /// The EHLO reply: the persona's greeting line, then each keyword that
    /// applies now. STARTTLS (and Exchange's X-ANONYMOUSTLS) only where TLS
    /// can start, AUTH with the mechanisms offered now, Exim's PIPECONNECT
    /// until the first message.
    fn ehlo_reply(&self) -> Reply {
        let p = &self.policy.persona;
        let vars = self.vars(b"", "");
        let first = persona::render(&format!("250 {}", p.hello), &vars);
        let mut lines: Vec<Cow<'static, str>> = first.lines().to_vec();
        let mechanisms = self.mechanisms();
        for keyword in &p.ehlo_keywords {
            let line = match keyword.split(' ').next() {
                Some("STARTTLS" | "X-ANONYMOUSTLS") if !vars.starttls => continue,
                Some("PIPECONNECT") if !self.exim.pipe_connect_acceptable() => continue,
                Some("AUTH") if keyword == "AUTH" => {
                    if mechanisms.is_empty() {
                        continue;
                    }
                    format!("AUTH {}", mechanisms.join(" "))
                }
                _ => keyword.replace("{size}", &self.policy.max_message_size.to_string()),
            };
            lines.push(line.into());
        }
        Reply::multiline(250, lines)
    }

    fn reset(&mut self) -> Effect {
        self.envelope = None;
        self.bdat = None;
        self.bdat_head.clear();
        Effect::Reset
    }

    /// Postfix's order: state first, then syntax, then each parameter.
    fn mail(&mut self, n: usize, path: Result<Path<'_>, PathError>) -> Step {
        if (self.policy.strict_order || self.policy.persona.helo_required) && !self.greeted {
            return self.error(n, |r| &r.need_helo, b"");
        }
        if self.envelope.is_some() {
            return self.error(n, |r| &r.mail_nested, b"");
        }
        let path = match path {
            Ok(path) => path,
            Err(PathError::Syntax) => return self.error(n, |r| &r.mail_syntax, b""),
            Err(PathError::BadAddress) => return self.error(n, |r| &r.mail_bad_address, b""),
        };
        if self.messages >= self.policy.max_messages {
            return self.limit(n, |r| &r.too_many_messages, "messages");
        }
        let mut size = None;
        for param in &path.params {
            let (key, value) = split_param(param);
            let is = |k: &str| key.eq_ignore_ascii_case(k.as_bytes());
            if is("SIZE") {
                match std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                {
                    Some(v) => size = Some(v.parse::<u64>().unwrap_or(u64::MAX)),
                    None => return self.error(n, |r| &r.size_syntax, b""),
                }
            } else if is("BODY") {
                if !(value.eq_ignore_ascii_case(b"7BIT") || value.eq_ignore_ascii_case(b"8BITMIME"))
                {
                    let bad = param.to_vec();
                    return self.error(n, |r| &r.mail_bad_param, &bad);
                }
            } else if is("RET") {
                if !(value.eq_ignore_ascii_case(b"FULL") || value.eq_ignore_ascii_case(b"HDRS")) {
                    return self.error(n, |r| &r.ret_syntax, b"");
                }
            } else if is("ENVID") {
                if value.is_empty() {
                    return self.error(n, |r| &r.envid_syntax, b"");
                }
            } else if !(is("SMTPUTF8") || is("AUTH")) {
                let bad = param.to_vec();
                return self.error(n, |r| &r.mail_bad_param, &bad);
            }
        }
        if size.is_some_and(|s| s > self.policy.max_message_size) {
            return self.limit(n, |r| &r.mail_too_big, "message_size");
        }
        if self.storage_full {
            return self.error(n, |r| &r.insufficient_storage, b"");
        }
        let params: Vec<Vec<u8>> = path.params.iter().map(|p| p.to_vec()).collect();
        self.envelope = Some(Envelope {
            mail_from: path.address.to_vec(),
            mail_params: params.clone(),
            rcpt_to: Vec::new(),
        });
        let effect = Effect::Mail {
            address: path.address.to_vec(),
            params,
        };
        self.ok(n, |r| &r.mail_ok, b"", effect)
    }

    fn rcpt(&mut self, n: usize, path: Result<Path<'_>, PathError>) -> Step {
        let Some(envelope) = &self.envelope else {
            return self.error(n, |r| &r.rcpt_need_mail, b"");
        };
        let full = envelope.rcpt_to.len() >= self.policy.max_recipients;
        let path = match path {
            Ok(path) => path,
            Err(PathError::Syntax) => return self.error(n, |r| &r.rcpt_syntax, b""),
            Err(PathError::BadAddress) => return self.error(n, |r| &r.rcpt_bad_address, b""),
        };
        if full {
            self.rcpt_overshoot += 1;
            if self.rcpt_overshoot <= self.policy.persona.recipient_overshoot_limit {
                let reply = self.reply(|r| &r.rcpt_too_many, b"");
                return self.step(n, reply, Effect::Limit("recipients"), false);
            }
            return self.limit(n, |r| &r.rcpt_too_many, "recipients");
        }
        if path.address.is_empty() {
            return self.error(n, |r| &r.rcpt_bad_address, b"");
        }
        for param in &path.params {
            let (key, value) = split_param(param);
            if key.eq_ignore_ascii_case(b"NOTIFY") {
                if !valid_notify(value) {
                    return self.error(n, |r| &r.notify_syntax, b"");
                }
            } else if key.eq_ignore_ascii_case(b"ORCPT") {
                if !value.contains(&b';') {
                    return self.error(n, |r| &r.orcpt_syntax, b"");
                }
            } else {
                let bad = param.to_vec();
                return self.error(n, |r| &r.mail_bad_param, &bad);
            }
        }
        if !self.local_user_exists(path.address) {
            let address = path.address.to_vec();
            return self.error(n, |r| &r.unknown_user, &address);
        }
        if let Some(envelope) = &mut self.envelope {
            envelope.rcpt_to.push(path.address.to_vec());
        }
        let effect = Effect::Rcpt {
            address: path.address.to_vec(),
        };
        self.ok(n, |r| &r.rcpt_ok, b"", effect)
    }

    /// An address at one of our local domains (our host name, `localhost`,
    /// or none) must name a user of the stock system; any other domain is
    /// relayed, as an open relay does.
    fn local_user_exists(&self, address: &[u8]) -> bool {
        let (user, domain) = match address.iter().rposition(|&b| b == b'@') {
            Some(at) => (&address[..at], Some(&address[at + 1..])),
            None => (address, None),
        };
        let local = match domain {
            // `host!user` is a UUCP path to another host (swap_bangpath).
            None if user.contains(&b'!') => false,
            None => true,
            Some(d) => {
                d.eq_ignore_ascii_case(self.policy.hostname.as_bytes())
                    || d.eq_ignore_ascii_case(b"localhost")
                    || d.eq_ignore_ascii_case(b"localhost.localdomain")
                    || self.is_our_address_literal(d)
            }
        };
        // A local part that routes onwards (`user%elsewhere@us`, the percent
        // hack; `elsewhere!user@us`; `user@elsewhere@us`) is relayed, as an
        // open relay does: these are the forms relay testers try.
        if user.iter().any(|b| b"%!@".contains(b)) {
            return true;
        }
        !local
            || !self.policy.persona.check_local_users
            || self
                .policy
                .persona
                .local_users
                .iter()
                .any(|u| user.eq_ignore_ascii_case(u.as_bytes()))
    }

    /// `[192.0.2.1]` or `[IPv6:...]` naming the address the client reached
    /// (Postfix treats its own interfaces' literals as local).
    fn is_our_address_literal(&self, domain: &[u8]) -> bool {
        let Some(inner) = domain.strip_prefix(b"[").and_then(|d| d.strip_suffix(b"]")) else {
            return false;
        };
        let inner = if inner.len() > 5 && inner[..5].eq_ignore_ascii_case(b"IPv6:") {
            &inner[5..]
        } else {
            inner
        };
        let parsed = std::str::from_utf8(inner)
            .ok()
            .and_then(|t| t.parse::<std::net::IpAddr>().ok());
        parsed.is_some_and(|ip| Some(ip) == self.server_ip)
    }

    fn vrfy(&mut self, n: usize, arg: &[u8]) -> Step {
        if arg.is_empty() {
            return self.error(n, |r| &r.vrfy_syntax, b"");
        }
        // The address is what is in angle brackets, if anything is.
        let address = match (
            arg.iter().position(|&b| b == b'<'),
            arg.iter().rposition(|&b| b == b'>'),
        ) {
            (Some(open), Some(close)) if open < close => &arg[open + 1..close],
            _ => arg,
        };
        if address.is_empty() {
            return self.error(n, |r| &r.rcpt_bad_address, b"");
        }
        if !self.local_user_exists(address) {
            let address = address.to_vec();
            return self.error(n, |r| &r.unknown_user, &address);
        }
        self.ok(n, |r| &r.vrfy, arg, Effect::None)
    }

    fn data(&mut self, n: usize, arg: &[u8]) -> Step {
        if self.bdat.is_some() {
            return self.error(n, |r| &r.data_after_bdat, b"");
        }
        if !arg.is_empty() {
            return self.error(n, |r| &r.data_syntax, b"");
        }
        match &self.envelope {
            None => self.error(n, |r| &r.data_need_rcpt, b""),
            Some(e) if e.rcpt_to.is_empty() => self.error(n, |r| &r.data_no_recipients, b""),
            Some(_) => {
                self.phase = Phase::Data(DataReceiver::new(self.policy.max_message_size));
                self.ok(n, |r| &r.data_start, b"", Effect::MessageStart)
            }
        }
    }

    /// `BDAT <size> [LAST]` (RFC 3030). The chunk follows the command line
    /// directly; it is answered once read. A malformed BDAT closes the
    /// connection (Postfix cannot know where the chunk ends); a refused one
    /// has its chunk read and dropped.
    fn bdat(&mut self, n: usize, arg: &[u8]) -> Step {
        let mut words = arg.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let size = words
            .next()
            .filter(|w| w.iter().all(u8::is_ascii_digit))
            .and_then(|w| std::str::from_utf8(w).ok())
            .and_then(|w| w.parse::<u64>().ok());
        let last = match words.next() {
            None => Some(false),
            Some(w) if w.eq_ignore_ascii_case(b"LAST") => Some(true),
            Some(_) => None,
        };
        let (Some(size), Some(last), None) = (size, last, words.next()) else {
            self.errors += 1;
            let reply = self.reply(|r| &r.bdat_syntax, b"");
            let close = self.policy.persona.bdat_syntax_closes;
            return self.step(n, reply, Effect::Error, close);
        };
        let own = !self.policy.persona.replies.bdat_need_rcpt.is_empty();
        let refusal: Option<fn(&persona::Replies) -> &String> = match &self.envelope {
            Some(e) if !e.rcpt_to.is_empty() => None,
            _ if own => Some(|r| &r.bdat_need_rcpt),
            None => Some(|r| &r.data_need_rcpt),
            Some(_) => Some(|r| &r.data_no_recipients),
        };
        if let Some(pick) = refusal {
            if size > 0 {
                self.phase = Phase::Discard { remaining: size };
            }
            return self.error(n, pick, b"");
        }
        let first = self.bdat.is_none();
        self.bdat.get_or_insert_with(BdatMessage::default);
        self.chunk_size = size;
        self.phase = Phase::Bdat {
            remaining: size,
            last,
        };
        Step {
            consumed: n,
            action: Action::ChunkStart { first },
        }
    }

    fn starttls(&mut self, n: usize, arg: &[u8]) -> Step {
        if !self.policy.starttls && !self.tls_active {
            return self.error(n, |r| &r.starttls_unavailable, b"");
        }
        if !arg.is_empty() {
            return self.error(n, |r| &r.starttls_syntax, b"");
        }
        if self.tls_active {
            return self.error(n, |r| &r.tls_active, b"");
        }
        // RFC 3207 4.2: forget everything learnt in plaintext.
        self.tls_active = true;
        self.greeted = false;
        self.envelope = None;
        self.bdat = None;
        self.authenticated = false;
        self.ok(n, |r| &r.starttls_ready, b"", Effect::StartTls)
    }

    fn auth(&mut self, n: usize, arg: &[u8], raw: &[u8]) -> Step {
        if self.mechanisms().is_empty() {
            return self.error(n, |r| &r.auth_unavailable, b"");
        }
        if !self.greeted {
            return self.error(n, |r| &r.need_helo, b"");
        }
        if self.authenticated {
            return self.error(n, |r| &r.auth_already, b"");
        }
        if self.envelope.is_some() {
            return self.error(n, |r| &r.auth_in_transaction, b"");
        }
        let mut words = arg.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let (Some(name), initial, None) = (words.next(), words.next(), words.next()) else {
            return self.error(n, |r| &r.auth_syntax, b"");
        };
        let offered = self
            .mechanisms()
            .iter()
            .any(|m| name.eq_ignore_ascii_case(m.as_bytes()));
        let Some(mechanism) = Mechanism::parse(name).filter(|_| offered) else {
            let name = name.to_vec();
            return self.error(n, |r| &r.auth_mechanism, &name);
        };
        self.begin_auth(n, mechanism, initial, raw)
    }

    /// Starts the SASL exchange for an accepted AUTH command.
    fn begin_auth(
        &mut self,
        n: usize,
        mechanism: Mechanism,
        initial: Option<&[u8]>,
        raw: &[u8],
    ) -> Step {
        let (random, time) = self.entropy;
        let challenge = format!(
            "<{}.{}@{}>",
            random % 10_000_000_000,
            time,
            self.policy.hostname
        );
        let ntlm_challenge = if mechanism == Mechanism::Ntlm {
            self.ntlm_challenge()
        } else {
            Vec::new()
        };
        let (exchange, prompt) =
            AuthExchange::start(mechanism, initial, raw, challenge, ntlm_challenge);
        match prompt {
            Prompt::Continue(text) => {
                self.auth = Some(exchange);
                self.ok(n, |r| &r.auth_challenge, text.as_bytes(), Effect::None)
            }
            Prompt::Done(attempt) => Step {
                consumed: n,
                action: Action::Auth(attempt),
            },
        }
    }
}

impl Session {
    /// The NTLM CHALLENGE for this session: the persona's Windows names
    /// (filled in from our host name), a server challenge from the entropy.
    fn ntlm_challenge(&self) -> Vec<u8> {
        let names = &self.policy.persona.ntlm;
        let target = ntlm::Target::new(
            &self.policy.hostname,
            &names.netbios_domain,
            &names.netbios_computer,
            &names.dns_domain,
            names.os_version,
        );
        let (random, time) = self.entropy;
        let server = (random ^ time.rotate_left(29) ^ self.commands.rotate_left(7)).to_le_bytes();
        ntlm::challenge(&target, server, ntlm::filetime(time))
    }

    /// Follows line lengths through message content (Exim's
    /// `$max_received_linelength`, which its Debian DATA ACL checks).
    fn measure_body_lines(&mut self, content: &[u8]) {
        if self.policy.persona.max_body_line_length == 0 {
            return;
        }
        let mut rest = content;
        while let Some(lf) = memchr::memchr(b'\n', rest) {
            let mut len = lf as u64;
            if lf > 0 && rest[lf - 1] == b'\r' {
                len -= 1;
            } else if lf == 0 && self.body_line > 0 {
                // The CR that ended the previous run belongs to this ending.
                self.body_line = self.body_line.saturating_sub(1);
            }
            self.longest_body_line = self.longest_body_line.max(self.body_line + len);
            self.body_line = 0;
            rest = &rest[lf + 1..];
        }
        self.body_line += rest.len() as u64;
    }
}

/// `Fri, 27 Nov 2026 19:48:40 +0000`, as Exim and Exchange print the time.
fn rfc5322_date(unix_time: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_time / 86_400;
    let secs = unix_time % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The first word of a command line.
fn verb(line: &[u8]) -> &[u8] {
    let line = line.trim_ascii_start();
    let end = line
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    &line[..end]
}

fn need_more() -> Step {
    Step {
        consumed: 0,
        action: Action::NeedMore,
    }
}

fn bdat_summary(size: u64, max: u64) -> DataSummary {
    DataSummary {
        size,
        stored: size.min(max),
        over_limit: size > max,
        flags: Default::default(),
        undoubled_dots: Vec::new(),
        undoubled_dots_total: 0,
    }
}

fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    let line = line.trim_ascii_start();
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `KEY=value` (or a bare `KEY`).
fn split_param(param: &[u8]) -> (&[u8], &[u8]) {
    match param.iter().position(|&b| b == b'=') {
        Some(eq) => (&param[..eq], &param[eq + 1..]),
        None => (param, &param[param.len()..]),
    }
}

/// `NEVER`, or a comma list of `SUCCESS`, `FAILURE`, `DELAY` (RFC 3461).
fn valid_notify(value: &[u8]) -> bool {
    if value.eq_ignore_ascii_case(b"NEVER") {
        return true;
    }
    !value.is_empty()
        && value.split(|&b| b == b',').all(|v| {
            [&b"SUCCESS"[..], b"FAILURE", b"DELAY"]
                .iter()
                .any(|k| v.eq_ignore_ascii_case(k))
        })
}
