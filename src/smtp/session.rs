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

use super::command::{self, Command, Path};
use super::data::{DataReceiver, DataSummary};
use super::persona::{self, Persona, Vars};
use super::reply::Reply;
use std::borrow::Cow;
use std::sync::Arc;

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
    /// (`recipients`, `messages`, `message_size`, `line_length`, `errors`).
    Limit(&'static str),
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
    /// Part of an overlong line, skipped without a reply.
    Skipped,
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
    extended: bool,
    envelope: Option<Envelope>,
    /// Bytes of an open BDAT message so far (a BDAT message spans commands).
    bdat_size: Option<u64>,
    errors: u32,
    messages: u32,
    commands: u64,
    /// Set by the caller when the spool is short of disk space.
    storage_full: bool,
}

impl Session {
    pub fn new(policy: Arc<Policy>) -> Session {
        Session {
            policy,
            phase: Phase::Command,
            greeted: false,
            extended: false,
            envelope: None,
            bdat_size: None,
            errors: 0,
            messages: 0,
            commands: 0,
            storage_full: false,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The banner to send on connect.
    pub fn greeting(&self) -> Reply {
        self.render(&self.policy.persona.greeting, b"")
    }

    /// Renders one of the persona's templates with this session's values.
    pub fn render(&self, template: &str, arg: &[u8]) -> Reply {
        persona::render(
            template,
            &Vars {
                host: &self.policy.hostname,
                arg,
                queue_id: "",
                size: self.policy.max_message_size,
            },
        )
    }

    /// Command lines handled so far.
    pub fn commands(&self) -> u64 {
        self.commands
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether message content is being received (DATA or a BDAT chunk).
    pub fn in_message(&self) -> bool {
        matches!(self.phase, Phase::Data(_) | Phase::Bdat { .. }) || self.bdat_size.is_some()
    }

    /// Size of the message being received, as far as it got.
    pub fn partial_summary(&self) -> Option<DataSummary> {
        match &self.phase {
            Phase::Data(rx) => Some(rx.summary()),
            _ => self
                .bdat_size
                .map(|size| bdat_summary(size, self.policy.max_message_size)),
        }
    }

    /// The spool is (or is no longer) short of space: new transactions get 452.
    pub fn set_storage_full(&mut self, full: bool) {
        self.storage_full = full;
    }

    /// Handles the first unit found in `input`; see the module documentation.
    pub fn advance(&mut self, input: &[u8], content: &mut Vec<u8>) -> Step {
        if self.errors >= self.policy.max_errors && !self.is_closed() {
            self.phase = Phase::Closed;
            let reply = self.render(&self.policy.persona.replies.too_many_errors, b"");
            return self.step(0, reply, Effect::Limit("errors"), true);
        }
        match &mut self.phase {
            Phase::Closed => Step {
                consumed: 0,
                action: Action::NeedMore,
            },
            Phase::Data(rx) => {
                if input.is_empty() {
                    return Step {
                        consumed: 0,
                        action: Action::NeedMore,
                    };
                }
                let fed = rx.feed(input, content);
                if !fed.finished {
                    return Step {
                        consumed: fed.consumed,
                        action: Action::Content,
                    };
                }
                let summary = rx.summary();
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
                    return Step {
                        consumed: 0,
                        action: Action::NeedMore,
                    };
                }
                let before = self.bdat_size.unwrap_or(0);
                let room = self.policy.max_message_size.saturating_sub(before);
                content.extend_from_slice(&input[..take.min(room as usize)]);
                self.bdat_size = Some(before + take as u64);
                *remaining -= take as u64;
                // The end of a non-final chunk is still plain Content: its
                // reply comes on the next call, so that a Reply never carries
                // content the caller would have to look for.
                if *remaining > 0 || (take > 0 && !*last) {
                    return Step {
                        consumed: take,
                        action: Action::Content,
                    };
                }
                let last = *last;
                self.phase = Phase::Command;
                if last {
                    let size = self.bdat_size.take().unwrap_or(0);
                    let envelope = self.envelope.take().unwrap_or_default();
                    let summary = bdat_summary(size, self.policy.max_message_size);
                    return Step {
                        consumed: take,
                        action: Action::MessageEnd(MessageEnd {
                            envelope,
                            summary,
                            chunked: true,
                        }),
                    };
                }
                let size = self.bdat_size.unwrap_or(0).to_string();
                let reply = self.render(&self.policy.persona.replies.bdat_ok, size.as_bytes());
                self.step(take, reply, Effect::None, false)
            }
            Phase::SkipLine => match memchr::memchr(b'\n', input) {
                Some(end) => {
                    self.phase = Phase::Command;
                    Step {
                        consumed: end + 1,
                        action: Action::Skipped,
                    }
                }
                None if input.is_empty() => Step {
                    consumed: 0,
                    action: Action::NeedMore,
                },
                None => Step {
                    consumed: input.len(),
                    action: Action::Skipped,
                },
            },
            Phase::Command => {
                let window = &input[..input.len().min(self.policy.max_line_length)];
                match memchr::memchr(b'\n', window) {
                    Some(end) => self.command(&input[..=end]),
                    None if input.len() < self.policy.max_line_length => Step {
                        consumed: 0,
                        action: Action::NeedMore,
                    },
                    None => {
                        // An overlong line: answer once, skip the rest of it.
                        self.phase = Phase::SkipLine;
                        self.commands += 1;
                        self.errors += 1;
                        let reply = self.reply(|r| &r.line_too_long, b"");
                        self.step(window.len(), reply, Effect::Limit("line_length"), false)
                    }
                }
            }
        }
    }

    /// The reply for a finished message, once the caller has tried to store it.
    pub fn message_outcome(&mut self, end: &MessageEnd, outcome: Outcome<'_>) -> Reply {
        self.messages += 1;
        let replies = &self.policy.persona.replies;
        if end.summary.over_limit {
            return self.render(&replies.message_too_big, b"");
        }
        match outcome {
            Outcome::Stored { queue_id } => persona::render(
                &replies.queued,
                &Vars {
                    host: &self.policy.hostname,
                    queue_id,
                    ..Vars::default()
                },
            ),
            Outcome::Failed => self.render(&replies.storage_error, b""),
        }
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
        self.errors += 1;
        let reply = self.reply(pick, arg);
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

    fn command(&mut self, line: &[u8]) -> Step {
        let n = line.len();
        self.commands += 1;
        match command::parse(line) {
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
            Command::MailSyntax => self.error(n, |r| &r.mail_syntax, b""),
            Command::Rcpt(path) => self.rcpt(n, path),
            Command::RcptSyntax => self.error(n, |r| &r.rcpt_syntax, b""),
            Command::Data(arg) => self.data(n, arg),
            Command::Bdat(arg) => self.bdat(n, arg),
            Command::Rset(arg) if !arg.is_empty() => self.error(n, |r| &r.rset_syntax, b""),
            Command::Rset(_) => {
                let effect = self.reset();
                self.ok(n, |r| &r.rset, b"", effect)
            }
            Command::Noop(_) => self.ok(n, |r| &r.noop, b"", Effect::None),
            Command::Quit(_) => {
                let reply = self.reply(|r| &r.quit, b"");
                self.step(n, reply, Effect::None, true)
            }
            Command::Vrfy(b"") => self.error(n, |r| &r.vrfy_syntax, b""),
            Command::Vrfy(arg) => self.ok(n, |r| &r.vrfy, arg, Effect::None),
            Command::Expn(arg) => self.error(n, |r| &r.expn, arg),
            Command::Help(arg) => self.error(n, |r| &r.help, arg),
            Command::Etrn(_) if !self.greeted => self.error(n, |r| &r.need_helo, b""),
            Command::Etrn(b"") => self.error(n, |r| &r.etrn_syntax, b""),
            Command::Etrn(arg) => self.error(n, |r| &r.etrn, arg),
            Command::StartTls(_) => self.error(n, |r| &r.starttls_unavailable, b""),
            Command::Auth(_) => self.error(n, |r| &r.auth_unavailable, b""),
            Command::Http(_) => {
                let reply = self.reply(|r| &r.http, b"");
                self.step(n, reply, Effect::Error, true)
            }
            Command::Empty => self.error(n, |r| &r.empty, b""),
            Command::Unknown(_) => self.error(n, |r| &r.unknown, b""),
        }
    }

    /// HELO/EHLO: a new greeting drops any transaction in progress.
    fn greet(&mut self, extended: bool, name: &[u8]) -> Effect {
        self.greeted = true;
        self.extended = extended;
        self.envelope = None;
        self.bdat_size = None;
        Effect::Helo {
            extended,
            name: name.to_vec(),
        }
    }

    fn ehlo_reply(&self) -> Reply {
        let mut lines: Vec<Cow<'static, str>> = vec![self.policy.hostname.clone().into()];
        for keyword in &self.policy.persona.ehlo_keywords {
            lines.push(
                keyword
                    .replace("{size}", &self.policy.max_message_size.to_string())
                    .into(),
            );
        }
        Reply::multiline(250, lines)
    }

    fn reset(&mut self) -> Effect {
        self.envelope = None;
        self.bdat_size = None;
        Effect::Reset
    }

    fn mail(&mut self, n: usize, path: Path<'_>) -> Step {
        if self.policy.strict_order && !self.greeted {
            return self.error(n, |r| &r.need_helo, b"");
        }
        if self.envelope.is_some() {
            return self.error(n, |r| &r.mail_nested, b"");
        }
        if self.messages >= self.policy.max_messages {
            return self.limit(n, |r| &r.too_many_messages, "messages");
        }
        if let Some(bad) = path.params.iter().find(|p| !known_mail_param(p)) {
            let bad = bad.to_vec();
            return self.error(n, |r| &r.mail_bad_param, &bad);
        }
        if let Some(size) = path.param("SIZE") {
            let too_big = std::str::from_utf8(size)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .is_none_or(|s| s > self.policy.max_message_size);
            if too_big {
                return self.limit(n, |r| &r.mail_too_big, "message_size");
            }
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

    fn rcpt(&mut self, n: usize, path: Path<'_>) -> Step {
        let Some(envelope) = &mut self.envelope else {
            return self.error(n, |r| &r.rcpt_need_mail, b"");
        };
        if envelope.rcpt_to.len() >= self.policy.max_recipients {
            return self.limit(n, |r| &r.rcpt_too_many, "recipients");
        }
        if let Some(bad) = path.params.iter().find(|p| !known_rcpt_param(p)) {
            let bad = bad.to_vec();
            return self.error(n, |r| &r.mail_bad_param, &bad);
        }
        envelope.rcpt_to.push(path.address.to_vec());
        let effect = Effect::Rcpt {
            address: path.address.to_vec(),
        };
        self.ok(n, |r| &r.rcpt_ok, b"", effect)
    }

    fn data(&mut self, n: usize, arg: &[u8]) -> Step {
        // RFC 3030: DATA and BDAT must not be mixed in one transaction. Letting
        // DATA through would leave the BDAT count open into the next message.
        if self.bdat_size.is_some() {
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
    /// directly and has no reply of its own until it has been read.
    fn bdat(&mut self, n: usize, arg: &[u8]) -> Step {
        let mut words = arg.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let size = words
            .next()
            .and_then(|w| std::str::from_utf8(w).ok())
            .and_then(|w| w.parse::<u64>().ok());
        let last = match words.next() {
            None => Some(false),
            Some(w) if w.eq_ignore_ascii_case(b"LAST") => Some(true),
            Some(_) => None,
        };
        let (Some(size), Some(last), None) = (size, last, words.next()) else {
            return self.error(n, |r| &r.bdat_syntax, b"");
        };
        match &self.envelope {
            Some(e) if !e.rcpt_to.is_empty() => {}
            // Without a transaction the chunk cannot be read as a message; the
            // client is out of sync, as with a rejected DATA.
            None => return self.error(n, |r| &r.data_need_rcpt, b""),
            Some(_) => return self.error(n, |r| &r.data_no_recipients, b""),
        }
        let starting = self.bdat_size.is_none();
        if starting {
            self.bdat_size = Some(0);
        }
        self.phase = Phase::Bdat {
            remaining: size,
            last,
        };
        Step {
            consumed: n,
            action: Action::ChunkStart { first: starting },
        }
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

fn keyword_of(param: &[u8]) -> &[u8] {
    let end = param.iter().position(|&b| b == b'=').unwrap_or(param.len());
    &param[..end]
}

/// MAIL parameters of the extensions we advertise (SIZE, 8BITMIME, DSN,
/// SMTPUTF8) and AUTH= (RFC 4954), which Postfix accepts everywhere.
fn known_mail_param(param: &[u8]) -> bool {
    let key = keyword_of(param);
    ["SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH"]
        .iter()
        .any(|k| key.eq_ignore_ascii_case(k.as_bytes()))
}

/// RCPT parameters of DSN (RFC 3461).
fn known_rcpt_param(param: &[u8]) -> bool {
    let key = keyword_of(param);
    ["NOTIFY", "ORCPT"]
        .iter()
        .any(|k| key.eq_ignore_ascii_case(k.as_bytes()))
}
