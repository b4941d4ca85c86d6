//! Scenario tests of the sans-IO SMTP core, without sockets.
//!
//! A small [`Shell`] below drives a [`Session`] exactly as the network shell
//! does: it appends whatever the client sent to the unconsumed bytes, calls
//! `advance` until `NeedMore`, drops the bytes each step consumed, streams
//! message content into the open message, asks `message_outcome` for the
//! reply once a message is complete and `auth_outcome` once an AUTH exchange
//! is, and stops executing plaintext after `220 Ready to start TLS`. Most
//! scenarios go through [`converse`], which also replays the input in every
//! chunking and requires the dialog to come out identical: how TCP splits the
//! bytes must never matter.
//!
//! The expected replies are those of the real Debian Postfix 3.7 recorded in
//! `tests/reference/postfix-3.7.json`; [`reference_dialogs_are_reproduced`]
//! replays that whole recording through the core.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use latrine::smtp::{
    Action, AuthAttempt, AuthEnd, AuthOffer, DataFlags, Effect, Mechanism, MessageEnd, Outcome,
    Persona, Policy, Reply, Session,
};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

const HOST: &str = "mx.example.com";
const GREETING: &str = "220 mx.example.com ESMTP Postfix (Debian/GNU)\r\n";
/// EHLO with the default policy: no STARTTLS (no certificate), no AUTH.
const EHLO_REPLY: &str = "250-mx.example.com\r\n\
                          250-PIPELINING\r\n\
                          250-SIZE 10240000\r\n\
                          250-VRFY\r\n\
                          250-ETRN\r\n\
                          250-ENHANCEDSTATUSCODES\r\n\
                          250-8BITMIME\r\n\
                          250-DSN\r\n\
                          250-SMTPUTF8\r\n\
                          250 CHUNKING\r\n";
const HELO_REPLY: &str = "250 mx.example.com\r\n";
const MAIL_OK: &str = "250 2.1.0 Ok\r\n";
const RCPT_OK: &str = "250 2.1.5 Ok\r\n";
const DATA_GO: &str = "354 End data with <CR><LF>.<CR><LF>\r\n";
const OK: &str = "250 2.0.0 Ok\r\n";
const BYE: &str = "221 2.0.0 Bye\r\n";
const TOO_BIG: &str = "552 5.3.4 Message size exceeds fixed limit\r\n";
const FILE_TOO_BIG: &str = "552 5.3.4 Error: message file too big\r\n";
const CHUNK_TOO_BIG: &str = "552 5.3.4 Chunk exceeds message size limit\r\n";
const NOT_RECOGNIZED: &str = "500 5.5.2 Error: command not recognized\r\n";
const BAD_SYNTAX: &str = "500 5.5.2 Error: bad syntax\r\n";
const BAD_UTF8: &str = "500 5.5.2 Error: bad UTF-8 syntax\r\n";
const FORBIDDEN: &str = "221 2.7.0 Error: I can break rules, too. Goodbye.\r\n";
const TOO_MANY_ERRORS: &str = "421 4.7.0 mx.example.com Error: too many errors\r\n";
const NEED_MAIL: &str = "503 5.5.1 Error: need MAIL command\r\n";
const NEED_RCPT: &str = "503 5.5.1 Error: need RCPT command\r\n";
const NO_VALID_RCPT: &str = "554 5.5.1 Error: no valid recipients\r\n";
const MAIL_SYNTAX: &str = "501 5.5.4 Syntax: MAIL FROM:<address>\r\n";
const RCPT_SYNTAX: &str = "501 5.5.4 Syntax: RCPT TO:<address>\r\n";
const BAD_SENDER: &str = "501 5.1.7 Bad sender address syntax\r\n";
const BAD_RECIPIENT: &str = "501 5.1.3 Bad recipient address syntax\r\n";
const BDAT_SYNTAX: &str = "521 5.5.4 Syntax: BDAT count [LAST]\r\n";
const TLS_READY: &str = "220 2.0.0 Ready to start TLS\r\n";
const AUTH_OK: &str = "235 2.7.0 Authentication successful\r\n";
const AUTH_FAILED: &str = "535 5.7.8 Error: authentication failed: authentication failure\r\n";
const AUTH_ABORTED: &str = "501 5.7.0 Authentication aborted\r\n";
const AUTH_UNDECODABLE: &str = "501 5.5.2 Cannot decode response\r\n";
const AUTH_NOT_ENABLED: &str = "503 5.5.1 Error: authentication not enabled\r\n";
const USERNAME_PROMPT: &str = "334 VXNlcm5hbWU6\r\n";
const PASSWORD_PROMPT: &str = "334 UGFzc3dvcmQ6\r\n";
const TARPIT: Option<Duration> = Some(Duration::from_secs(1));
/// What the driver gives `set_entropy`, as the network shell gives random
/// bits and the time: CRAM-MD5 challenges are `<random.time@host>`.
const ENTROPY: (u64, u64) = (31_415_926_535, 1_700_000_000);
const CRAM_CHALLENGE: &str = "<1415926535.1700000000@mx.example.com>";

/// The EHLO reply for a policy, keywords in Postfix's order.
fn ehlo_reply(starttls: bool, auth: bool) -> String {
    let mut lines = vec![HOST, "PIPELINING", "SIZE 10240000", "VRFY", "ETRN"];
    if starttls {
        lines.push("STARTTLS");
    }
    if auth {
        lines.push("AUTH PLAIN LOGIN CRAM-MD5");
    }
    lines.extend([
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "DSN",
        "SMTPUTF8",
        "CHUNKING",
    ]);
    let last = lines.len() - 1;
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
        .collect()
}

// ---------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------

/// A finished message as the shell saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    content: Vec<u8>,
    end: MessageEnd,
    reply: Reply,
}

/// Everything a dialog produced, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transcript {
    greeting: Reply,
    /// Every reply after the greeting, including message and AUTH replies.
    replies: Vec<Reply>,
    /// For every reply in `replies`: the tarpit delay the network shell
    /// would wait per line before sending it (`Session::reply_delay` right
    /// after the step that produced it).
    delays: Vec<Option<Duration>>,
    /// The effect of every command reply, in order.
    effects: Vec<Effect>,
    /// `first` of every `ChunkStart`.
    chunk_starts: Vec<bool>,
    messages: Vec<Message>,
    /// Every finished AUTH exchange, and whether the shell accepted it.
    auth: Vec<(AuthAttempt, bool)>,
    /// Content of BDAT messages dropped by RSET, HELO/EHLO or STARTTLS.
    abandoned: Vec<Vec<u8>>,
    /// Input skipped without a reply: the rest of overlong lines, the chunks
    /// of refused BDAT commands.
    skipped: Vec<u8>,
    /// Plaintext that arrived after `220 Ready to start TLS` and before the
    /// handshake: never executed.
    injected: Vec<u8>,
    closed: bool,
    /// Input the session never used: after a close, or an incomplete unit.
    unconsumed: Vec<u8>,
    /// Whether a message was still being received at the end.
    in_message: bool,
    /// The session's error count at the end.
    errors: u32,
    /// Whether TLS was up at the end.
    tls: bool,
}

impl Transcript {
    /// The replies as they went out on the wire, greeting excluded.
    fn wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for r in &self.replies {
            r.write_to(&mut out);
        }
        out
    }

    fn text(&self) -> String {
        String::from_utf8(self.wire()).expect("replies are ASCII")
    }

    fn codes(&self) -> Vec<u16> {
        self.replies.iter().map(Reply::code).collect()
    }

    /// The last line of the last reply.
    fn last(&self) -> String {
        let r = self.replies.last().expect("a reply");
        format!("{} {}", r.code(), r.lines().last().unwrap())
    }

    fn message(&self, i: usize) -> &Message {
        &self.messages[i]
    }

    /// The only AUTH exchange of the dialog.
    fn attempt(&self) -> &AuthAttempt {
        assert_eq!(self.auth.len(), 1, "one AUTH exchange: {:?}", self.auth);
        &self.auth[0].0
    }
}

/// How the shell around the session behaves.
#[derive(Debug, Clone, Copy, Default)]
struct Opts {
    /// Accept complete AUTH exchanges (the network shell asks its policy;
    /// the default, like a honeypot that only collects, is to refuse).
    accept_auth: bool,
    /// Make the "disk" refuse messages.
    storage_fails: bool,
    /// Take the bytes after `220 Ready to start TLS` as what the client
    /// sends once the handshake is done (as if the handshake took no
    /// bytes), instead of as plaintext injected before it.
    transparent_tls: bool,
}

/// Where the connection stands with TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    Plain,
    /// `220 Ready to start TLS` was sent; no handshake yet.
    Handshake,
    Active,
}

/// Drives one session like the network shell does.
struct Shell {
    session: Session,
    opts: Opts,
    tls: Tls,
    /// Received but not yet consumed.
    pending: Vec<u8>,
    /// Where `advance` appends content; drained after every step, as a shell
    /// streaming to disk would.
    content: Vec<u8>,
    /// The message being received.
    open: Option<Vec<u8>>,
    t: Transcript,
}

impl Shell {
    fn new(policy: &Arc<Policy>, opts: Opts) -> Shell {
        let mut session = Session::new(Arc::clone(policy));
        session.set_entropy(ENTROPY.0, ENTROPY.1);
        // The recordings were made over loopback.
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        session.set_endpoints(loopback, loopback);
        let greeting = session.greeting();
        Shell {
            tls: if session.tls_active() {
                Tls::Active
            } else {
                Tls::Plain
            },
            session,
            opts,
            pending: Vec::new(),
            content: Vec::new(),
            open: None,
            t: Transcript {
                greeting,
                replies: Vec::new(),
                delays: Vec::new(),
                effects: Vec::new(),
                chunk_starts: Vec::new(),
                messages: Vec::new(),
                auth: Vec::new(),
                abandoned: Vec::new(),
                skipped: Vec::new(),
                injected: Vec::new(),
                closed: false,
                unconsumed: Vec::new(),
                in_message: false,
                errors: 0,
                tls: false,
            },
        }
    }

    fn push_reply(&mut self, reply: Reply) {
        self.t.delays.push(self.session.reply_delay());
        self.t.replies.push(reply);
    }

    /// The TLS handshake after `220 Ready to start TLS` succeeded: what the
    /// client sends from now on is the decrypted stream.
    fn handshake(&mut self) {
        assert_eq!(self.tls, Tls::Handshake, "no STARTTLS to complete");
        assert!(self.session.tls_active());
        self.tls = Tls::Active;
    }

    /// One read from the client: handle every complete unit.
    fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            // A read of nothing is the end of the stream, not input.
            return;
        }
        if self.t.closed {
            // A shell would not read any more; keep the bytes for the record.
            self.t.unconsumed.extend_from_slice(bytes);
            return;
        }
        if self.tls == Tls::Handshake {
            // Plaintext where the handshake should be: evidence, never commands.
            self.t.injected.extend_from_slice(bytes);
            return;
        }
        self.pending.extend_from_slice(bytes);
        let mut idle = 0;
        loop {
            let given = self.pending.len();
            let step = self.session.advance(&self.pending, &mut self.content);
            assert!(
                step.consumed <= given,
                "consumed {} of {given} bytes: {:?}",
                step.consumed,
                step.action
            );
            let used: Vec<u8> = self.pending.drain(..step.consumed).collect();
            if step.consumed == 0 && step.action != Action::NeedMore {
                idle += 1;
                assert!(idle < 4, "no progress: {:?}", step.action);
            } else {
                idle = 0;
            }
            if !self.content.is_empty() {
                // Only these two say that content was appended.
                assert!(
                    matches!(step.action, Action::Content | Action::MessageEnd(_)),
                    "content appended by {:?}",
                    step.action
                );
                let open = self
                    .open
                    .as_mut()
                    .unwrap_or_else(|| panic!("content outside a message after {:?}", step.action));
                open.append(&mut self.content);
            }
            match step.action {
                Action::NeedMore => {
                    assert_eq!(step.consumed, 0, "NeedMore consumes nothing");
                    break;
                }
                Action::Skipped => {
                    assert!(step.consumed > 0);
                    self.t.skipped.extend_from_slice(&used);
                }
                Action::Content => {
                    assert!(step.consumed > 0);
                    assert!(self.open.is_some(), "content without a message");
                }
                Action::ChunkStart { first } => {
                    self.t.chunk_starts.push(first);
                    if first {
                        assert!(self.open.is_none(), "first chunk while a message is open");
                        self.open = Some(Vec::new());
                    } else {
                        assert!(self.open.is_some(), "next chunk without a message");
                    }
                }
                Action::Auth(attempt) => {
                    assert!(step.consumed > 0, "an AUTH exchange ends on a line");
                    let accepted = self.opts.accept_auth && attempt.end == AuthEnd::Complete;
                    let reply = self.session.auth_outcome(&attempt, accepted);
                    self.push_reply(reply);
                    self.t.auth.push((attempt, accepted));
                }
                Action::Reply {
                    reply,
                    effect,
                    close,
                } => {
                    match effect {
                        Effect::MessageStart => {
                            assert!(self.open.is_none(), "DATA while a message is open");
                            self.open = Some(Vec::new());
                        }
                        // All drop the envelope, and with it an open BDAT message.
                        Effect::Reset | Effect::Helo { .. } | Effect::StartTls => {
                            if let Some(m) = self.open.take() {
                                self.t.abandoned.push(m);
                            }
                        }
                        _ => {}
                    }
                    let starttls = effect == Effect::StartTls;
                    self.push_reply(reply);
                    self.t.effects.push(effect);
                    if close {
                        assert!(self.session.is_closed());
                        self.t.closed = true;
                        self.t.unconsumed = std::mem::take(&mut self.pending);
                        break;
                    }
                    if starttls {
                        assert!(self.session.tls_active());
                        assert!(!self.session.in_message());
                        if self.opts.transparent_tls {
                            self.tls = Tls::Active;
                        } else {
                            // As the network shell: whatever followed STARTTLS
                            // in plaintext is recorded, not executed.
                            self.tls = Tls::Handshake;
                            self.t.injected.append(&mut self.pending);
                            break;
                        }
                    }
                }
                Action::MessageEnd(end) => {
                    let content = self.open.take().expect("a message was open");
                    assert_eq!(end.summary.stored, content.len() as u64, "stored size");
                    assert!(end.summary.size >= end.summary.stored);
                    assert_eq!(
                        end.summary.over_limit,
                        end.summary.size > self.session.policy().max_message_size
                    );
                    let queue_id =
                        format!("{:010X}", 0xC0FFEE0000u64 + self.t.messages.len() as u64);
                    let outcome = if self.opts.storage_fails {
                        Outcome::Failed
                    } else {
                        Outcome::Stored {
                            queue_id: &queue_id,
                        }
                    };
                    let reply = self.session.message_outcome(&end, outcome);
                    self.push_reply(reply.clone());
                    self.t.messages.push(Message {
                        content,
                        end,
                        reply,
                    });
                }
            }
        }
    }

    fn finish(mut self) -> Transcript {
        if !self.t.closed {
            self.t.unconsumed = std::mem::take(&mut self.pending);
        } else {
            // A closed session stays closed and silent.
            let step = self.session.advance(b"NOOP\r\n", &mut self.content);
            assert_eq!(step.consumed, 0);
            assert_eq!(step.action, Action::NeedMore);
        }
        self.t.in_message = self.session.in_message();
        self.t.errors = self.session.errors();
        self.t.tls = self.session.tls_active();
        assert_eq!(self.t.delays.len(), self.t.replies.len());
        assert_well_formed(&self.t.greeting.to_bytes());
        assert_well_formed(&self.t.wire());
        self.t
    }
}

/// Feeds `pieces` one read at a time.
fn run<'a>(
    policy: &Arc<Policy>,
    opts: Opts,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Transcript {
    let mut shell = Shell::new(policy, opts);
    for piece in pieces {
        shell.feed(piece);
    }
    shell.finish()
}

/// Feeds `input` in reads of `k` bytes.
fn run_chunked(policy: &Arc<Policy>, opts: Opts, input: &[u8], k: usize) -> Transcript {
    run(policy, opts, input.chunks(k.max(1)))
}

/// The chunk sizes to try: all of them for short dialogs.
fn chunk_sizes(len: usize) -> Vec<usize> {
    if len <= 800 {
        (1..=len).collect()
    } else {
        let mut sizes: Vec<usize> = (1..=48).collect();
        sizes.extend(
            [61, 127, 509, 1021, 2047, 2048, 2049, 4093, len]
                .into_iter()
                .filter(|&k| k <= len),
        );
        sizes
    }
}

fn policy() -> Policy {
    Policy::new(HOST)
}

/// A listener with a certificate: STARTTLS offered, AUTH only after it
/// (Postfix's `smtpd_tls_auth_only`).
fn tls_policy() -> Policy {
    Policy {
        starttls: true,
        auth: AuthOffer::AfterTls,
        ..policy()
    }
}

/// AUTH offered in plaintext, without TLS.
fn auth_policy() -> Policy {
    Policy {
        auth: AuthOffer::Always,
        ..policy()
    }
}

/// Runs `input` with the default policy in every chunking.
fn converse(input: &[u8]) -> Transcript {
    converse_with(policy(), input)
}

fn converse_with(policy: Policy, input: &[u8]) -> Transcript {
    converse_opts(policy, Opts::default(), input)
}

/// Runs `input` in one read, then in every chunk size, and checks that the
/// dialog does not depend on how the bytes arrived.
fn converse_opts(policy: Policy, opts: Opts, input: &[u8]) -> Transcript {
    let policy = Arc::new(policy);
    let whole = run(&policy, opts, [input]);
    for k in chunk_sizes(input.len()) {
        let t = run_chunked(&policy, opts, input, k);
        assert!(
            t == whole,
            "chunks of {k} bytes changed the dialog:\n{t:#?}\nvs\n{whole:#?}"
        );
    }
    whole
}

/// `plain` up to and including STARTTLS, a successful handshake, then
/// `secure` over TLS; in every chunking (a read never spans the handshake).
fn converse_tls(policy: Policy, opts: Opts, plain: &[u8], secure: &[u8]) -> Transcript {
    let policy = Arc::new(policy);
    let go = |k: usize| {
        let mut shell = Shell::new(&policy, opts);
        for piece in plain.chunks(k) {
            shell.feed(piece);
        }
        shell.handshake();
        for piece in secure.chunks(k) {
            shell.feed(piece);
        }
        shell.finish()
    };
    let whole = go(usize::MAX);
    for k in chunk_sizes(plain.len().max(secure.len())) {
        let t = go(k);
        assert!(
            t == whole,
            "chunks of {k} bytes changed the dialog:\n{t:#?}\nvs\n{whole:#?}"
        );
    }
    whole
}

/// Every line is `DDD SP text CRLF` or `DDD - text CRLF` with printable text,
/// and the lines of one multi-line reply share their code.
fn assert_well_formed(wire: &[u8]) {
    let mut rest = wire;
    let mut continued: Option<&[u8]> = None;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "reply line without CRLF: {:?}",
                    String::from_utf8_lossy(rest)
                )
            });
        let line = &rest[..end];
        rest = &rest[end + 2..];
        let shown = String::from_utf8_lossy(line);
        assert!(line.len() >= 4, "short reply line {shown:?}");
        assert!(
            line[..3].iter().all(u8::is_ascii_digit),
            "no code in {shown:?}"
        );
        assert!(matches!(line[0], b'2'..=b'5'), "odd code in {shown:?}");
        assert!(
            line[3] == b' ' || line[3] == b'-',
            "bad separator in {shown:?}"
        );
        assert!(
            line[4..].iter().all(|b| (0x20..0x7f).contains(b)),
            "unprintable reply {shown:?}"
        );
        if let Some(code) = continued {
            assert_eq!(code, &line[..3], "code changed inside a multi-line reply");
        }
        continued = if line[3] == b'-' {
            Some(&line[..3])
        } else {
            None
        };
    }
    assert!(continued.is_none(), "unfinished multi-line reply");
}

/// A message in one line: `<from> -> <to> <to>: "content"`.
fn describe(m: &Message) -> String {
    let e = &m.end.envelope;
    let rcpts: Vec<String> = e
        .rcpt_to
        .iter()
        .map(|r| format!("<{}>", String::from_utf8_lossy(r)))
        .collect();
    format!(
        "<{}> -> {}: {:?}",
        String::from_utf8_lossy(&e.mail_from),
        rcpts.join(" "),
        String::from_utf8_lossy(&m.content)
    )
}

/// Concatenates reply strings, for readable expectations.
fn wire(parts: &[&str]) -> String {
    parts.concat()
}

/// `n` copies of a reply.
fn times(reply: &str, n: usize) -> String {
    reply.repeat(n)
}

// ---------------------------------------------------------------------------
// The reference: every recorded Postfix 3.7 dialog, replayed through the core
// ---------------------------------------------------------------------------

/// One dialog of `tests/reference/postfix-3.7.json` (see its README).
#[derive(Debug, Deserialize)]
struct RefDialog {
    name: String,
    steps: Vec<RefStep>,
    closed_by_server: bool,
}

#[derive(Debug, Deserialize)]
struct RefStep {
    /// Latin-1 code points, one per byte. `None` for the greeting step.
    send: Option<String>,
    /// Instead of `send` for payloads over 10000 bytes: the corpus notation.
    send_spec: Option<String>,
    send_len: Option<usize>,
    replies: Vec<String>,
    #[serde(default)]
    closed: bool,
    /// `not sent: connection already closed`: Postfix had hung up.
    error: Option<String>,
}

/// Dialogs where the core answers otherwise than Postfix on purpose. Each
/// must still differ (so that the list stays true); every other dialog must
/// be reproduced exactly.
const KNOWN_DIVERGENCES: &[(&str, &str)] = &[
    (
        "bare-lf",
        "data.rs ends DATA only at <CRLF>.<CRLF> (smuggling evidence); Postfix also ends it at \\n.\\n",
    ),
    (
        "data-bare-lf-body",
        "data.rs ends DATA only at <CRLF>.<CRLF>; Postfix also ends it at \\n.\\n",
    ),
    (
        "data-bare-lf-dot-crlf-terminated",
        "data.rs ends DATA only at <CRLF>.<CRLF>; Postfix also ends it at \\n.\\r\\n",
    ),
];

fn reference() -> Vec<RefDialog> {
    reference_file("postfix-3.7.json")
}

fn reference_file(name: &str) -> Vec<RefDialog> {
    let path = format!("{}/tests/reference/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("the reference recording");
    serde_json::from_str(&text).expect("the reference recording is valid JSON")
}

/// The recording stores bytes as the code points U+0000..U+00FF.
fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("a latin-1 code point"))
        .collect()
}

/// Expands the corpus notation of a large payload (`R/1 text{repeat:N:unit}…`,
/// see `scripts/reference/replay.py`): generators first, then escapes.
fn expand_spec(spec: &str) -> Vec<u8> {
    let (_kind, payload) = spec.split_once(' ').expect("KIND PAYLOAD");
    let mut text = String::new();
    let mut rest = payload;
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix("{repeat:") {
            let (count, tail) = tail.split_once(':').expect("{repeat:N:");
            let (unit, tail) = tail.split_once('}').expect("a closing brace");
            text.push_str(&unit.repeat(count.parse().expect("a count")));
            rest = tail;
        } else {
            let mut chars = rest.chars();
            let c = chars.next().unwrap();
            text.push(c);
            if c == '\\' {
                // An escaped character never starts a generator.
                text.push(chars.next().expect("an escaped character"));
            }
            rest = chars.as_str();
        }
    }
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        out.push(match chars.next().expect("an escape") {
            'r' => b'\r',
            'n' => b'\n',
            't' => b'\t',
            '0' => 0,
            's' => b' ',
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                u8::from_str_radix(&hex, 16).expect("\\xHH")
            }
            other @ ('\\' | '{' | '}') => other as u8,
            other => panic!("unknown escape \\{other}"),
        });
    }
    out
}

/// A recorded step, ready to replay.
#[derive(Debug)]
struct Expected {
    send: Option<Vec<u8>>,
    replies: Vec<String>,
    closed: bool,
    /// Postfix never read this step's input: it had closed the connection.
    unread: bool,
}

fn expected_steps(dialog: &RefDialog) -> Vec<Expected> {
    let mut steps: Vec<Expected> = dialog
        .steps
        .iter()
        .map(|s| {
            let send = match (&s.send, &s.send_spec) {
                (Some(text), _) => Some(latin1(text)),
                (None, Some(spec)) => {
                    let bytes = expand_spec(spec);
                    assert_eq!(Some(bytes.len()), s.send_len, "{}: {spec:.60}", dialog.name);
                    Some(bytes)
                }
                (None, None) => None,
            };
            // A step can also have timed out waiting for a reply (Exim in
            // DATA after a DATA that Postfix would refuse): nothing came.
            let unread = s.error.as_deref() == Some("not sent: connection already closed");
            Expected {
                send,
                replies: s.replies.iter().map(|r| normalize(r)).collect(),
                closed: s.closed,
                unread,
            }
        })
        .collect();
    // After the reply to the 20th error Postfix sleeps 1 s (the tarpit) and
    // sends the 421 without reading further input. The replayer waits only
    // 100 ms after the reply it counts, so a 421 that follows a step read
    // one reply at a time lands in the next step, whose input Postfix never
    // read. The core gives the 421 right after the 20th error, in the same
    // step: move it back to where Postfix produced it.
    let too_many = normalize(TOO_MANY_ERRORS.trim_end());
    for i in 1..steps.len() {
        if steps[i].replies == [too_many.clone()] && steps[i].closed && !steps[i - 1].closed {
            steps[i].replies.clear();
            steps[i].closed = false;
            steps[i].unread = true;
            steps[i - 1].replies.push(too_many.clone());
            steps[i - 1].closed = true;
        }
    }
    steps
}

/// Queue ids (Postfix's "queued as", Exim's "id=") and dates differ from
/// run to run.
fn normalize(line: &str) -> String {
    let line = match line.find("queued as ") {
        Some(at) => format!("{}queued as <queue id>", &line[..at]),
        None => line.to_string(),
    };
    let line = match line.find(" OK id=") {
        Some(at) => format!("{} OK id=<queue id>", &line[..at]),
        None => line,
    };
    normalize_date(&line)
}

/// `Fri, 27 Nov 2026 19:48:40 +0000` becomes `<date>`.
fn normalize_date(line: &str) -> String {
    const DAYS: [&str; 7] = [
        "Mon, ", "Tue, ", "Wed, ", "Thu, ", "Fri, ", "Sat, ", "Sun, ",
    ];
    for day in DAYS {
        if let Some(at) = line.find(day) {
            let end = (at + 31).min(line.len());
            if line.is_char_boundary(end) {
                return format!("{}<date>{}", &line[..at], &line[end..]);
            }
        }
    }
    line.to_string()
}

fn reply_lines(reply: &Reply) -> Vec<String> {
    let wire = String::from_utf8(reply.to_bytes()).expect("ASCII reply");
    wire.split_terminator("\r\n").map(normalize).collect()
}

/// The policy of the recorded server: Postfix's defaults, a certificate
/// (`smtpd_tls_security_level = may`), SASL off.
fn reference_policy() -> Policy {
    Policy {
        starttls: true,
        ..Policy::new(HOST)
    }
}

/// Replays one dialog, each send split into reads of `chunk` bytes.
fn replay(policy: &Arc<Policy>, dialog: &RefDialog, chunk: usize) -> Result<(), String> {
    let steps = expected_steps(dialog);
    let mut shell = Shell::new(policy, Opts::default());
    // A TLS handshake that got plaintext: the shell hangs up without a word.
    let mut handshake_failed = false;
    for (i, step) in steps.iter().enumerate() {
        let was_closed = shell.t.closed || handshake_failed;
        let before = shell.t.replies.len();
        let mut got = Vec::new();
        if i == 0 {
            got.extend(reply_lines(&shell.t.greeting));
        }
        match &step.send {
            None => {}
            Some(_) if step.unread && !was_closed => {
                return Err(format!(
                    "step {i}: Postfix had closed the connection, the core had not"
                ));
            }
            Some(_) if step.unread => {}
            Some(_) if shell.tls == Tls::Handshake => handshake_failed = true,
            Some(bytes) => {
                for piece in bytes.chunks(chunk) {
                    shell.feed(piece);
                }
            }
        }
        got.extend(shell.t.replies[before..].iter().flat_map(reply_lines));
        let closed_now = !was_closed && (shell.t.closed || handshake_failed);
        if got != step.replies || closed_now != step.closed {
            let sent = step
                .send
                .as_deref()
                .map(|s| String::from_utf8_lossy(&s[..s.len().min(80)]).into_owned());
            return Err(format!(
                "step {i} (sent {sent:?}):\n  Postfix: {:?}{}\n  core:    {got:?}{}",
                step.replies,
                if step.closed { " and closed" } else { "" },
                if closed_now { " and closed" } else { "" },
            ));
        }
    }
    let closed = shell.t.closed || handshake_failed;
    if closed != dialog.closed_by_server {
        return Err(format!(
            "at the end: Postfix closed: {}, core closed: {closed}",
            dialog.closed_by_server
        ));
    }
    shell.finish();
    Ok(())
}

/// Replays the dialog in one read per send, and (for dialogs that are not
/// megabytes long) in reads of 1, 2 and 7 bytes.
fn replay_all_ways(policy: &Arc<Policy>, dialog: &RefDialog) -> Result<(), String> {
    replay(policy, dialog, usize::MAX)?;
    let total: usize = dialog
        .steps
        .iter()
        .map(|s| s.send.as_ref().map_or(s.send_len.unwrap_or(0), |t| t.len()))
        .sum();
    if total <= 100_000 {
        for k in [1, 2, 7] {
            replay(policy, dialog, k).map_err(|e| format!("in reads of {k} bytes: {e}"))?;
        }
    }
    Ok(())
}

#[test]
fn reference_dialogs_are_reproduced() {
    let dialogs = reference();
    assert_eq!(dialogs.len(), 211, "the recording has 211 dialogs");
    for (name, _) in KNOWN_DIVERGENCES {
        assert!(
            dialogs.iter().any(|d| d.name == *name),
            "no reference dialog {name}"
        );
    }
    let policy = Arc::new(reference_policy());
    let mut exact = 0;
    let mut failures = Vec::new();
    for dialog in &dialogs {
        let known = KNOWN_DIVERGENCES.iter().find(|(n, _)| *n == dialog.name);
        match (replay_all_ways(&policy, dialog), known) {
            (Ok(()), None) => exact += 1,
            (Err(e), None) => failures.push(format!("{}: {e}", dialog.name)),
            (Ok(()), Some(_)) => failures.push(format!(
                "{}: now reproduced exactly; remove it from KNOWN_DIVERGENCES",
                dialog.name
            )),
            (Err(e), Some((_, why))) => eprintln!("known divergence {}: {why}\n  {e}", dialog.name),
        }
    }
    eprintln!(
        "{exact} of {} reference dialogs reproduced exactly; {} known divergences",
        dialogs.len(),
        KNOWN_DIVERGENCES.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(exact + KNOWN_DIVERGENCES.len(), dialogs.len());
}

/// Replays a dialog in one read per send, as a socket delivers a small
/// send, and compares every step (not only up to the first difference).
/// Returns the number of steps answered exactly as recorded, and the
/// differences.
fn replay_steps(policy: &Arc<Policy>, dialog: &RefDialog) -> (usize, Vec<String>) {
    let steps = expected_steps(dialog);
    let mut shell = Shell::new(policy, Opts::default());
    let mut same = 0;
    let mut diffs = Vec::new();
    let mut handshake_failed = false;
    for (i, step) in steps.iter().enumerate() {
        let was_closed = shell.t.closed || handshake_failed;
        let before = shell.t.replies.len();
        let mut got = Vec::new();
        if i == 0 {
            got.extend(reply_lines(&shell.t.greeting));
        }
        match &step.send {
            None => {}
            Some(_) if shell.tls == Tls::Handshake => handshake_failed = true,
            Some(bytes) if !was_closed => shell.feed(bytes),
            Some(_) => {}
        }
        got.extend(shell.t.replies[before..].iter().flat_map(reply_lines));
        if got == step.replies {
            same += 1;
        } else {
            let sent = step
                .send
                .as_deref()
                .map(|s| String::from_utf8_lossy(&s[..s.len().min(60)]).into_owned());
            diffs.push(format!(
                "{} step {i} (sent {sent:?}):\n  real: {:?}\n  core: {got:?}",
                dialog.name, step.replies
            ));
        }
    }
    shell.finish();
    (same, diffs)
}

/// The Exim persona as Debian's Exim was recorded: its own size and line
/// limits, a certificate, no AUTH before TLS.
fn exim_policy() -> Policy {
    let persona = latrine::smtp::Persona::builtin("exim").unwrap();
    Policy {
        starttls: true,
        max_message_size: persona.message_size_limit,
        max_line_length: persona.line_length_limit,
        max_recipients: persona.recipient_limit,
        auth: AuthOffer::AfterTls,
        persona,
        ..Policy::new(HOST)
    }
}

/// Every dialog recorded from Debian's Exim 4.96 (scripts/reference/exim.sh)
/// replayed through the Exim persona: at least 95% of the replies must be
/// Exim's, word for word (dates and message ids aside).
#[test]
fn exim_reference_replies_are_reproduced() {
    let dialogs = reference_file("exim-4.96.json");
    assert_eq!(dialogs.len(), 211);
    let policy = Arc::new(exim_policy());
    let (mut same, mut total) = (0, 0);
    let mut diffs = Vec::new();
    for dialog in &dialogs {
        let (s, d) = replay_steps(&policy, dialog);
        same += s;
        total += dialog.steps.len();
        diffs.extend(d);
    }
    for d in &diffs {
        eprintln!("{d}");
    }
    let share = 100.0 * same as f64 / total as f64;
    eprintln!("Exim persona, sans-IO: {same}/{total} replies identical ({share:.1}%)");
    assert!(
        share >= 95.0,
        "only {share:.1}% of Exim's replies reproduced"
    );
}

/// The same count for Postfix (the strict per-dialog test is above).
#[test]
fn postfix_reference_replies_share() {
    let dialogs = reference();
    let policy = Arc::new(reference_policy());
    let (mut same, mut total) = (0, 0);
    for dialog in &dialogs {
        same += replay_steps(&policy, dialog).0;
        total += dialog.steps.len();
    }
    let share = 100.0 * same as f64 / total as f64;
    eprintln!("Postfix persona, sans-IO: {same}/{total} replies identical ({share:.1}%)");
    // Only the three dialogs of KNOWN_DIVERGENCES differ (in 6 steps).
    assert!(total - same <= 6, "{same}/{total}");
}

/// Looks a reference dialog up by name.
fn reference_dialog(name: &str) -> RefDialog {
    reference()
        .into_iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no reference dialog {name}"))
}

/// The replies Postfix gave in dialog `name`, all steps after the greeting
/// concatenated in wire form (queue ids kept).
fn reference_wire(name: &str) -> String {
    reference_dialog(name).steps[1..]
        .iter()
        .flat_map(|s| s.replies.iter().map(|r| format!("{r}\r\n")))
        .collect()
}

/// The bytes the client sent in dialog `name`, all steps concatenated.
fn reference_input(name: &str) -> Vec<u8> {
    reference_dialog(name)
        .steps
        .iter()
        .filter(|s| s.error.is_none())
        .filter_map(|s| s.send.as_deref().map(latin1))
        .collect::<Vec<_>>()
        .concat()
}

#[test]
fn the_reference_replayer_notation_is_understood() {
    assert_eq!(
        expand_spec(r"R/1 a\r\n{repeat:3:x\s}\x41\\\{\}{repeat:2:\r\n}."),
        b"a\r\nx x x A\\{}\r\n\r\n."
    );
    let d = reference_dialog("data-too-big");
    let spec = d.steps[5].send_spec.as_deref().unwrap();
    let bytes = expand_spec(spec);
    assert_eq!(Some(bytes.len()), d.steps[5].send_len);
    assert!(bytes.starts_with(b"Subject: big\r\n\r\n0123"));
    assert!(bytes.ends_with(b"456\r\n.\r\n"));
    assert_eq!(latin1("a\u{ff}\u{0}"), b"a\xff\0");
}

#[test]
fn our_constants_are_postfix_replies() {
    // The constants used throughout this file, checked against the recording.
    assert_eq!(
        reference_dialog("greeting-quit").steps[0].replies,
        [GREETING.trim_end()]
    );
    let ehlo_tls = reference_wire("ehlo");
    assert_eq!(ehlo_tls, wire(&[&ehlo_reply(true, false), BYE]));
    assert_eq!(EHLO_REPLY, ehlo_reply(false, false));
    assert_eq!(reference_wire("helo"), wire(&[HELO_REPLY, BYE]));
    assert_eq!(
        reference_wire("unknown-command"),
        wire(&[NOT_RECOGNIZED, BYE])
    );
    assert_eq!(reference_wire("empty-line"), wire(&[BAD_SYNTAX, BYE]));
    assert_eq!(reference_wire("http-get"), FORBIDDEN);
    assert_eq!(
        reference_wire("invalid-utf8-ehlo"),
        wire(&[BAD_UTF8, &ehlo_tls.replace(BYE, ""), BYE])
    );
    assert_eq!(
        reference_wire("bdat-noarg"),
        wire(&[&ehlo_tls.replace(BYE, ""), MAIL_OK, RCPT_OK, BDAT_SYNTAX])
    );
    assert_eq!(reference_wire("starttls-before-ehlo"), TLS_READY);
    assert_eq!(
        reference_wire("auth-before-ehlo"),
        wire(&[AUTH_NOT_ENABLED, BYE])
    );
    let bad = reference_wire("mail-bad-address-spaces");
    assert!(bad.contains(BAD_SENDER), "{bad}");
    let unknown = reference_wire("unknown-commands-25");
    assert!(unknown.ends_with(TOO_MANY_ERRORS), "{unknown}");
    for (name, reply) in [
        ("data-too-big", FILE_TOO_BIG),
        ("bdat-too-big", CHUNK_TOO_BIG),
        ("mail-size-too-big", TOO_BIG),
        ("rcpt-before-mail", NEED_MAIL),
        ("data-before-mail", NEED_RCPT),
        ("data-without-rcpt", NO_VALID_RCPT),
        ("mail-without-from", MAIL_SYNTAX),
        ("rcpt-without-to", RCPT_SYNTAX),
        ("rcpt-null", BAD_RECIPIENT),
        ("data-full-message", DATA_GO),
        ("rset", OK),
    ] {
        assert!(reference_wire(name).contains(reply), "{name}: {reply}");
    }
}

/// The transcript's replies are Postfix's in dialog `name`, queue ids aside.
fn assert_like_reference(t: &Transcript, name: &str) {
    let ours: Vec<String> = t.replies.iter().flat_map(reply_lines).collect();
    let theirs: Vec<String> = reference_dialog(name).steps[1..]
        .iter()
        .flat_map(|s| s.replies.iter().map(|r| normalize(r)))
        .collect();
    assert_eq!(ours, theirs, "{name}");
}

// ---------------------------------------------------------------------------
// Greeting, HELO, EHLO
// ---------------------------------------------------------------------------

#[test]
fn greeting_names_the_host_like_debian_postfix() {
    let session = Session::new(Arc::new(policy()));
    assert_eq!(session.greeting().to_bytes(), GREETING.as_bytes());
    assert_eq!(session.greeting().code(), 220);
    let t = converse(b"");
    assert_eq!(t.greeting.to_bytes(), GREETING.as_bytes());
    assert!(t.replies.is_empty() && !t.closed);
}

#[test]
fn helo_is_answered_with_the_host() {
    let t = converse(b"HELO client.example\r\n");
    assert_eq!(t.text(), HELO_REPLY);
    assert_eq!(
        t.effects,
        [Effect::Helo {
            extended: false,
            name: b"client.example".to_vec()
        }]
    );
}

#[test]
fn ehlo_lists_the_extensions_host_first() {
    let t = converse(b"EHLO client.example\r\n");
    assert_eq!(t.text(), EHLO_REPLY);
    let lines = t.replies[0].lines();
    assert_eq!(lines[0], HOST);
    assert_eq!(lines[1], "PIPELINING");
    assert_eq!(lines[2], "SIZE 10240000");
    assert!(!lines.iter().any(|l| l == "STARTTLS"), "no certificate");
    assert!(!lines.iter().any(|l| l.starts_with("AUTH")), "no AUTH");
    assert_eq!(
        t.effects,
        [Effect::Helo {
            extended: true,
            name: b"client.example".to_vec()
        }]
    );
}

#[test]
fn postfix_checks_no_helo_argument() {
    // helo-two-words, helo-garbage-hostname, long-line-5000-helo.
    let t = converse(b"HELO foo bar\r\nEHLO !!!$$$\r\nHELO [127.0.0.1]\r\n");
    assert_eq!(t.text(), wire(&[HELO_REPLY, EHLO_REPLY, HELO_REPLY]));
    assert_eq!(
        t.effects[0],
        Effect::Helo {
            extended: false,
            name: b"foo bar".to_vec()
        }
    );
}

#[test]
fn verbs_are_case_insensitive_and_bare_lf_ends_a_command() {
    let t = converse(b"ehlo a\nhElO b\r\n  noop  \r\n\tNOOP\r\n");
    assert_eq!(t.text(), wire(&[EHLO_REPLY, HELO_REPLY, OK, OK]));
}

#[test]
fn ehlo_size_follows_the_policy() {
    let t = converse_with(
        Policy {
            max_message_size: 4096,
            ..policy()
        },
        b"EHLO c\r\n",
    );
    assert_eq!(t.replies[0].lines()[2], "SIZE 4096");
}

#[test]
fn helo_and_ehlo_need_an_argument() {
    let t = converse(b"HELO\r\nEHLO\r\nHELO   \r\nehlo\r\n");
    assert_eq!(
        t.text(),
        "501 Syntax: HELO hostname\r\n\
         501 Syntax: EHLO hostname\r\n\
         501 Syntax: HELO hostname\r\n\
         501 Syntax: EHLO hostname\r\n"
    );
    assert!(t.effects.iter().all(|e| *e == Effect::Error));
    assert_eq!(t.errors, 4);
}

#[test]
fn a_new_greeting_drops_the_transaction() {
    let t = converse(
        b"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nHELO again\r\nDATA\r\nRCPT TO:<c@d>\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY, MAIL_OK, RCPT_OK, HELO_REPLY, NEED_RCPT, NEED_MAIL
        ])
    );
}

// ---------------------------------------------------------------------------
// The envelope
// ---------------------------------------------------------------------------

#[test]
fn mail_from_accepts_the_usual_forms() {
    let t = converse(
        b"EHLO c\r\n\
          MAIL FROM:<alice@example.org>\r\nRSET\r\n\
          MAIL FROM:bob@example.org\r\nRSET\r\n\
          MAIL FROM:<>\r\nRSET\r\n\
          mail from: <carol@example.org> SIZE=1000 BODY=8BITMIME\r\nRSET\r\n\
          MAIL  FROM:<dave@example.org> AUTH=<> SMTPUTF8 RET=HDRS ENVID=x  \r\nRSET\r\n\
          MAIL FROM:<<eve@example.org>>\r\nRSET\r\n\
          MAIL FROM:<@relay.example:frank@example.org> BODY=7BIT\r\n",
    );
    assert_eq!(
        t.codes(),
        [
            250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250
        ]
    );
    let mails: Vec<(Vec<u8>, Vec<Vec<u8>>)> = t
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Mail { address, params } => Some((address.clone(), params.clone())),
            _ => None,
        })
        .collect();
    let strs = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
    assert_eq!(
        mails,
        [
            (b"alice@example.org".to_vec(), vec![]),
            (b"bob@example.org".to_vec(), vec![]),
            (b"".to_vec(), vec![]),
            (
                b"carol@example.org".to_vec(),
                strs(&["SIZE=1000", "BODY=8BITMIME"])
            ),
            (
                b"dave@example.org".to_vec(),
                strs(&["AUTH=<>", "SMTPUTF8", "RET=HDRS", "ENVID=x"])
            ),
            (b"eve@example.org".to_vec(), vec![]),
            (
                b"@relay.example:frank@example.org".to_vec(),
                strs(&["BODY=7BIT"])
            ),
        ]
    );
    assert_eq!(t.last(), "250 2.1.0 Ok");
}

#[test]
fn mail_size_over_the_limit_is_refused() {
    let t = converse(
        b"EHLO c\r\n\
          MAIL FROM:<a@b> SIZE=10240001\r\n\
          MAIL FROM:<a@b> SIZE=99999999999999999999999\r\n\
          MAIL FROM:<a@b> size=10240000\r\n",
    );
    assert_eq!(t.text(), wire(&[EHLO_REPLY, TOO_BIG, TOO_BIG, MAIL_OK]));
    assert!(
        t.effects[1..3]
            .iter()
            .all(|e| *e == Effect::Limit("message_size"))
    );
}

#[test]
fn mail_and_rcpt_parameter_errors() {
    // mail-size-bad-value, mail-body-values, mail-dsn-params,
    // mail-unknown-param, rcpt-dsn-params, rcpt-unknown-param.
    let t = converse(
        b"MAIL FROM:<a@b> SIZE=abc\r\n\
          MAIL FROM:<a@b> SIZE=\r\n\
          MAIL FROM:<a@b> SIZE=-1\r\n\
          MAIL FROM:<a@b> BODY=BINARYMIME\r\n\
          MAIL FROM:<a@b> BODY=FOO\r\n\
          MAIL FROM:<a@b> RET=BOGUS\r\n\
          MAIL FROM:<a@b> ENVID=\r\n\
          MAIL FROM:<a@b> XFORWARD=1\r\n\
          MAIL FROM:<a@b> BODY=8BITMIME RET=FULL ENVID=abc123\r\n\
          RCPT TO:<c@d> NOTIFY=BOGUS\r\n\
          RCPT TO:<c@d> NOTIFY=NEVER,SUCCESS\r\n\
          RCPT TO:<c@d> ORCPT=bogus\r\n\
          RCPT TO:<c@d> FOO=\x01bar\r\n\
          RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;c@d\r\n\
          RCPT TO:<e@d> notify=never\r\n",
    );
    let size = "501 5.5.4 Bad message size syntax\r\n";
    let notify = "501 5.5.4 Error: Bad NOTIFY parameter syntax\r\n";
    assert_eq!(
        t.text(),
        wire(&[
            size,
            size,
            size,
            "555 5.5.4 Unsupported option: BODY=BINARYMIME\r\n",
            "555 5.5.4 Unsupported option: BODY=FOO\r\n",
            "501 5.5.4 Bad RET parameter syntax\r\n",
            "501 5.5.4 Bad ENVID parameter syntax\r\n",
            "555 5.5.4 Unsupported option: XFORWARD=1\r\n",
            MAIL_OK,
            notify,
            notify,
            "501 5.5.4 Error: Bad ORCPT parameter syntax\r\n",
            // The parameter is echoed, made printable.
            "555 5.5.4 Unsupported option: FOO=?bar\r\n",
            RCPT_OK,
            RCPT_OK,
        ])
    );
    assert_eq!(t.errors, 12);
}

#[test]
fn malformed_mail_and_rcpt() {
    // mail-without-from, mail-bad-address-forms, mail-space-before-colon,
    // rcpt-without-to, rcpt-null, rcpt-address-forms.
    let t = converse(
        b"MAIL\r\nMAIL a@b\r\nMAIL FROM\r\nMAIL FROM:\r\nMAIL FROM <a@b>\r\nMAIL TO:<a@b>\r\n\
          MAIL FROM :<a@b>\r\n\
          MAIL FROM:<a@b\r\nMAIL FROM:<a@b>junk\r\nMAIL FROM:<bad address>\r\n\
          MAIL FROM:<a@b>\r\n\
          RCPT\r\nRCPT TO:\r\nRCPT FROM:<c@d>\r\nRCPT TO :<c@d>\r\n\
          RCPT TO:<c@d\r\nRCPT TO:<>\r\nRCPT TO:<bad address>\r\n\
          RCPT TO:<a%b@remote.example>\r\nRCPT TO:<user@[192.0.2.1]>\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[
            &times(MAIL_SYNTAX, 7),
            &times(BAD_SENDER, 3),
            MAIL_OK,
            &times(RCPT_SYNTAX, 4),
            &times(BAD_RECIPIENT, 3),
            RCPT_OK,
            RCPT_OK,
        ])
    );
}

#[test]
fn nested_mail_is_refused_and_keeps_the_first_sender() {
    let t = converse(
        b"HELO c\r\nMAIL FROM:<first@a>\r\nMAIL FROM:<second@a>\r\nRCPT TO:<r@b>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(t.codes(), [250, 250, 503, 250, 354, 250]);
    assert_eq!(
        t.replies[2].to_bytes(),
        b"503 5.5.1 Error: nested MAIL command\r\n"
    );
    assert_eq!(t.message(0).end.envelope.mail_from, b"first@a");
}

#[test]
fn rcpt_before_mail_is_refused() {
    let t = converse(b"RCPT TO:<r@b>\r\nEHLO c\r\nRCPT TO:<r@b>\r\n");
    assert_eq!(t.text(), wire(&[NEED_MAIL, EHLO_REPLY, NEED_MAIL]));
    assert_eq!(t.effects[2], Effect::Error);
}

#[test]
fn data_needs_a_sender_and_a_recipient_and_no_argument() {
    let t = converse(
        b"EHLO c\r\nDATA\r\nMAIL FROM:<a@b>\r\nDATA\r\nRCPT TO:<r@b>\r\nDATA now\r\nDATA\r\n.\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY,
            NEED_RCPT,
            MAIL_OK,
            NO_VALID_RCPT,
            RCPT_OK,
            "501 5.5.4 Syntax: DATA\r\n",
            DATA_GO,
            "250 2.0.0 Ok: queued as C0FFEE0000\r\n",
        ])
    );
    assert_eq!(t.message(0).content, b"");
}

// ---------------------------------------------------------------------------
// Local recipients
// ---------------------------------------------------------------------------

fn unknown_user(address: &str) -> String {
    format!(
        "550 5.1.1 <{address}>: Recipient address rejected: User unknown in local recipient table\r\n"
    )
}

#[test]
fn unknown_local_users_are_rejected() {
    // rcpt-unknown-local-users, rcpt-root-localhost, rcpt-postmaster: the
    // local domains are the host name and localhost, and an address without
    // a domain is local too. Any other domain is relayed.
    let t = converse(
        b"EHLO c\r\nMAIL FROM:<a@example.org>\r\n\
          RCPT TO:<nosuchuser@localhost>\r\n\
          RCPT TO:<nosuchuser@MX.Example.COM>\r\n\
          RCPT TO:<nosuchuser>\r\n\
          RCPT TO:nobody-here@localhost\r\n\
          RCPT TO:<root>\r\n\
          RCPT TO:<Postmaster@LocalHost>\r\n\
          RCPT TO:<root@mx.example.com>\r\n\
          RCPT TO:<nosuchuser@example.org>\r\n\
          DATA\r\n.\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY,
            MAIL_OK,
            &unknown_user("nosuchuser@localhost"),
            &unknown_user("nosuchuser@MX.Example.COM"),
            &unknown_user("nosuchuser"),
            &unknown_user("nobody-here@localhost"),
            RCPT_OK,
            RCPT_OK,
            RCPT_OK,
            RCPT_OK,
            DATA_GO,
            "250 2.0.0 Ok: queued as C0FFEE0000\r\n",
        ])
    );
    assert_eq!(
        t.message(0).end.envelope.rcpt_to,
        [
            b"root".to_vec(),
            b"Postmaster@LocalHost".to_vec(),
            b"root@mx.example.com".to_vec(),
            b"nosuchuser@example.org".to_vec()
        ]
    );
    assert_eq!(t.effects[2..6], vec![Effect::Error; 4]);
    // The errors were forgiven by the delivery.
    assert_eq!(t.errors, 0);
}

#[test]
fn only_unknown_local_recipients_leave_no_valid_recipient() {
    let t = converse(b"MAIL FROM:<a@b>\r\nRCPT TO:<ghost@localhost>\r\nDATA\r\n");
    assert_eq!(
        t.text(),
        wire(&[MAIL_OK, &unknown_user("ghost@localhost"), NO_VALID_RCPT])
    );
    assert_eq!(t.errors, 2);
}

#[test]
fn the_local_domain_is_our_host_name() {
    let t = converse_with(
        Policy::new("smtp.other.example"),
        b"MAIL FROM:<a@b>\r\nRCPT TO:<ghost@mx.example.com>\r\nRCPT TO:<ghost@smtp.other.example>\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[MAIL_OK, RCPT_OK, &unknown_user("ghost@smtp.other.example")])
    );
}

// ---------------------------------------------------------------------------
// Whole messages
// ---------------------------------------------------------------------------

const FULL_DIALOG: &[u8] = b"EHLO client.example\r\n\
    MAIL FROM:<alice@example.org> BODY=8BITMIME\r\n\
    RCPT TO:<bob@example.net>\r\n\
    RCPT TO:<carol@example.net>\r\n\
    DATA\r\n\
    From: alice@example.org\r\n\
    Subject: hello\r\n\
    \r\n\
    Hi Bob.\r\n\
    .\r\n\
    QUIT\r\n";

#[test]
fn a_full_message_is_stored_with_its_envelope() {
    let t = converse(FULL_DIALOG);
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY,
            MAIL_OK,
            RCPT_OK,
            RCPT_OK,
            DATA_GO,
            "250 2.0.0 Ok: queued as C0FFEE0000\r\n",
            BYE
        ])
    );
    assert_eq!(t.messages.len(), 1);
    let m = t.message(0);
    assert_eq!(
        m.content,
        b"From: alice@example.org\r\nSubject: hello\r\n\r\nHi Bob.\r\n"
    );
    assert_eq!(m.end.envelope.mail_from, b"alice@example.org");
    assert_eq!(m.end.envelope.mail_params, [b"BODY=8BITMIME".to_vec()]);
    assert_eq!(
        m.end.envelope.rcpt_to,
        [b"bob@example.net".to_vec(), b"carol@example.net".to_vec()]
    );
    assert_eq!(m.end.summary.size, m.content.len() as u64);
    assert_eq!(m.end.summary.flags, DataFlags::default());
    assert!(!m.end.summary.over_limit);
    assert!(m.end.summary.undoubled_dots.is_empty());
    assert!(!m.end.chunked);
    assert_eq!(
        t.effects,
        [
            Effect::Helo {
                extended: true,
                name: b"client.example".to_vec()
            },
            Effect::Mail {
                address: b"alice@example.org".to_vec(),
                params: vec![b"BODY=8BITMIME".to_vec()]
            },
            Effect::Rcpt {
                address: b"bob@example.net".to_vec()
            },
            Effect::Rcpt {
                address: b"carol@example.net".to_vec()
            },
            Effect::MessageStart,
            Effect::None,
        ]
    );
    assert!(t.closed);
    assert!(t.unconsumed.is_empty());
    assert!(t.delays.iter().all(Option::is_none));
}

#[test]
fn advance_handles_one_unit_at_a_time() {
    let mut s = Session::new(Arc::new(policy()));
    let mut content = Vec::new();
    let input: &[u8] =
        b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\nbody\r\n.\r\nQUIT\r\nNOOP\r\n";
    let mut at = 0;
    let mut step = |expect_len: usize| {
        let st = s.advance(&input[at..], &mut content);
        assert_eq!(st.consumed, expect_len, "{:?}", st.action);
        at += st.consumed;
        st.action
    };
    assert!(matches!(step(8), Action::Reply { close: false, .. }));
    assert!(matches!(step(17), Action::Reply { .. }));
    assert!(matches!(step(15), Action::Reply { .. }));
    assert!(matches!(
        step(6),
        Action::Reply {
            effect: Effect::MessageStart,
            ..
        }
    ));
    let Action::MessageEnd(end) = step(9) else {
        panic!("the message ends at <CRLF>.<CRLF>")
    };
    assert_eq!(content, b"body\r\n");
    assert_eq!(end.envelope.rcpt_to, [b"r@b".to_vec()]);
    let reply = s.message_outcome(&end, Outcome::Stored { queue_id: "4F2A1B" });
    assert_eq!(reply.to_bytes(), b"250 2.0.0 Ok: queued as 4F2A1B\r\n");
    let mut content = Vec::new();
    let st = s.advance(&input[at..], &mut content);
    assert_eq!(st.consumed, 6);
    assert!(matches!(st.action, Action::Reply { close: true, .. }));
    assert!(s.is_closed());
    assert_eq!(s.commands(), 5);
    // Incomplete input is left alone.
    let mut s = Session::new(Arc::new(policy()));
    let st = s.advance(b"HELO cli", &mut content);
    assert_eq!((st.consumed, st.action), (0, Action::NeedMore));
    let st = s.advance(b"", &mut content);
    assert_eq!((st.consumed, st.action), (0, Action::NeedMore));
}

#[test]
fn pipelined_transaction_in_one_read_and_byte_by_byte() {
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\nSubject: pipelined\r\n\r\nline\r\n.\r\nQUIT\r\n";
    let expected = wire(&[
        EHLO_REPLY,
        MAIL_OK,
        RCPT_OK,
        DATA_GO,
        "250 2.0.0 Ok: queued as C0FFEE0000\r\n",
        BYE,
    ]);
    let policy = Arc::new(policy());
    let one_read = run(&policy, Opts::default(), [&input[..]]);
    assert_eq!(one_read.text(), expected);
    assert_eq!(
        one_read.message(0).content,
        b"Subject: pipelined\r\n\r\nline\r\n"
    );
    let byte_by_byte = run_chunked(&policy, Opts::default(), input, 1);
    assert_eq!(byte_by_byte, one_read);
    // And every other split, via converse.
    assert_eq!(converse(input), one_read);
}

#[test]
fn pipelined_errors_do_not_desynchronise_later_commands() {
    // A refused DATA leaves the client "sending content" that is read as
    // commands, exactly as Postfix does: each line gets its own reply, and
    // the lone "." is a line that does not start with a letter, on which
    // Postfix hangs up (pipelining-with-errors, data-bare-lf-dot-crlf-terminated).
    let t =
        converse(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<bad\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n");
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY,
            MAIL_OK,
            BAD_RECIPIENT,
            NO_VALID_RCPT,
            NOT_RECOGNIZED,
            FORBIDDEN
        ])
    );
    assert!(t.messages.is_empty());
    assert!(t.closed);
    assert_eq!(t.unconsumed, b"QUIT\r\n");
}

#[test]
fn several_messages_each_with_its_own_envelope() {
    let t = converse(
        b"EHLO c\r\n\
          MAIL FROM:<one@a>\r\nRCPT TO:<x@b>\r\nRCPT TO:<y@b>\r\nDATA\r\nfirst\r\n.\r\n\
          MAIL FROM:<two@a>\r\nRCPT TO:<z@b>\r\nDATA\r\nsecond\r\n.\r\n\
          MAIL FROM:<three@a>\r\nRCPT TO:<dropped@b>\r\nRSET\r\n\
          MAIL FROM:<>\r\nRCPT TO:<w@b>\r\nDATA\r\nthird\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(
        t.codes(),
        [
            250, 250, 250, 250, 354, 250, 250, 250, 354, 250, 250, 250, 250, 250, 250, 354, 250,
            221
        ]
    );
    let described: Vec<String> = t.messages.iter().map(describe).collect();
    assert_eq!(
        described,
        [
            r#"<one@a> -> <x@b> <y@b>: "first\r\n""#,
            r#"<two@a> -> <z@b>: "second\r\n""#,
            r#"<> -> <w@b>: "third\r\n""#,
        ]
    );
    let queued: Vec<String> = t.messages.iter().map(|m| m.reply.to_string()).collect();
    assert_eq!(
        queued,
        [
            "250 2.0.0 Ok: queued as C0FFEE0000\r\n",
            "250 2.0.0 Ok: queued as C0FFEE0001\r\n",
            "250 2.0.0 Ok: queued as C0FFEE0002\r\n"
        ]
    );
}

#[test]
fn rset_clears_the_envelope() {
    let t = converse(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nRSET\r\nRCPT TO:<r@b>\r\nDATA\r\nRSET now\r\nMAIL FROM:<a@b>\r\n");
    assert_eq!(
        t.text(),
        wire(&[
            HELO_REPLY,
            MAIL_OK,
            RCPT_OK,
            OK,
            NEED_MAIL,
            NEED_RCPT,
            "501 5.5.4 Syntax: RSET\r\n",
            MAIL_OK,
        ])
    );
    assert_eq!(t.effects[3], Effect::Reset);
}

#[test]
fn storage_failure_is_answered_with_451() {
    let t = converse_opts(
        policy(),
        Opts {
            storage_fails: true,
            ..Opts::default()
        },
        b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n",
    );
    assert_eq!(
        t.message(0).reply.to_string(),
        "451 4.3.0 Error: queue file write error\r\n"
    );
    assert_eq!(t.last(), "250 2.0.0 Ok");
    // Not a delivery: nothing is forgiven, and the failure is an error.
    assert_eq!(t.errors, 1);
}

#[test]
fn a_full_spool_refuses_new_transactions() {
    let policy = Arc::new(policy());
    let mut shell = Shell::new(&policy, Opts::default());
    shell.session.set_storage_full(true);
    shell.feed(b"HELO c\r\nMAIL FROM:<a@b>\r\n");
    shell.session.set_storage_full(false);
    shell.feed(b"MAIL FROM:<a@b>\r\n");
    let t = shell.finish();
    assert_eq!(
        t.text(),
        wire(&[
            HELO_REPLY,
            "452 4.3.1 Insufficient system storage\r\n",
            MAIL_OK
        ])
    );
}

// ---------------------------------------------------------------------------
// Other commands
// ---------------------------------------------------------------------------

#[test]
fn noop_quit_and_what_follows_quit() {
    let t = converse(b"NOOP\r\nnoop with args\r\nQUIT now\r\nNOOP\r\n");
    assert_eq!(t.text(), wire(&[OK, OK, BYE]));
    assert!(t.closed);
    assert_eq!(t.unconsumed, b"NOOP\r\n");
}

#[test]
fn vrfy_echoes_its_argument_printably() {
    // vrfy-root, vrfy-bracketed-remote, vrfy-forms, vrfy-noarg, vrfy-nosuchuser.
    let t = converse(
        b"VRFY root\r\nVRFY\r\nVRFY <a@example.org>\r\nVRFY Root User <root@localhost>\r\n\
          VRFY nosuchuser\r\nVRFY <>\r\nVRFY <\x1b[31mred@example.org>\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[
            "252 2.0.0 root\r\n",
            "501 5.5.4 Syntax: VRFY address [SMTPUTF8]\r\n",
            "252 2.0.0 <a@example.org>\r\n",
            "252 2.0.0 Root User <root@localhost>\r\n",
            &unknown_user("nosuchuser"),
            BAD_RECIPIENT,
            // A control character is shown as '?', never sent raw.
            "252 2.0.0 <?[31mred@example.org>\r\n",
        ])
    );
}

#[test]
fn expn_help_and_other_commands_are_not_recognized() {
    let t = converse(
        b"EXPN staff\r\nEXPN\r\nHELP\r\nHELP DATA\r\nTURN\r\nSEND FROM:<a@b>\r\nSOML\r\nSAML\r\n\
          ATRN\r\nVERB\r\nONEX\r\nXYZZY\r\nMAILFROM:<a@b>\r\nHEAD / HTTP/1.0\r\n",
    );
    assert_eq!(t.text(), times(NOT_RECOGNIZED, 14));
    assert!(t.effects.iter().all(|e| *e == Effect::Error));
    assert_eq!(t.errors, 14);
}

#[test]
fn xclient_and_xforward_need_authorization() {
    let t = converse(b"XCLIENT ADDR=1.2.3.4\r\nXFORWARD ADDR=1.2.3.4\r\n");
    assert_eq!(
        t.text(),
        times("550 5.7.0 Error: insufficient authorization\r\n", 2)
    );
}

#[test]
fn etrn_is_refused_as_unavailable() {
    // etrn-before-ehlo, etrn-noarg, etrn-hash, etrn-at, etrn-mid-transaction:
    // no HELO needed, the domain is echoed without its # or @.
    let t = converse(
        b"ETRN example.org\r\nETRN\r\nEHLO c\r\nETRN #example.org\r\nETRN @example.org\r\n\
          MAIL FROM:<a@b>\r\nETRN example.org\r\nETRN\r\nRSET\r\nETRN other.example\r\n",
    );
    let unavailable = "459 <example.org>: service unavailable\r\n";
    let in_transaction = "503 Error: MAIL transaction in progress\r\n";
    assert_eq!(
        t.text(),
        wire(&[
            unavailable,
            "500 Syntax: ETRN domain\r\n",
            EHLO_REPLY,
            unavailable,
            unavailable,
            MAIL_OK,
            in_transaction,
            in_transaction,
            OK,
            "459 <other.example>: service unavailable\r\n",
        ])
    );
    assert_eq!(t.errors, 7);
}

#[test]
fn empty_and_whitespace_lines_are_bad_syntax() {
    let t = converse(b"\r\n   \r\n\t\r\n\n");
    assert_eq!(t.text(), times(BAD_SYNTAX, 4));
    assert!(t.effects.iter().all(|e| *e == Effect::Error));
}

#[test]
fn starttls_and_auth_are_unavailable_by_default() {
    let t = converse(
        b"AUTH LOGIN\r\nEHLO c\r\nSTARTTLS\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH LOGIN\r\nAUTH\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[
            AUTH_NOT_ENABLED,
            EHLO_REPLY,
            "502 5.5.1 Error: command not implemented\r\n",
            AUTH_NOT_ENABLED,
            AUTH_NOT_ENABLED,
            AUTH_NOT_ENABLED,
        ])
    );
    assert!(t.auth.is_empty());
    assert!(!t.tls);
}

// ---------------------------------------------------------------------------
// Command order
// ---------------------------------------------------------------------------

#[test]
fn mail_without_helo_is_accepted_by_default() {
    let t = converse(b"MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(t.codes(), [250, 250, 354, 250]);
    assert_eq!(t.replies[0].to_string(), MAIL_OK);
    assert_eq!(t.messages.len(), 1);
}

#[test]
fn strict_order_wants_helo_first() {
    let strict = Policy {
        strict_order: true,
        ..policy()
    };
    let t = converse_with(
        strict,
        b"MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nEHLO c\r\nMAIL FROM:<a@b>\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[
            "503 5.5.1 Error: send HELO/EHLO first\r\n",
            NEED_MAIL,
            EHLO_REPLY,
            MAIL_OK
        ])
    );
}

// ---------------------------------------------------------------------------
// DATA content
// ---------------------------------------------------------------------------

/// Sends `body` as the content of one message and returns the transcript.
fn send_data(policy: Policy, body: &[u8]) -> Transcript {
    let mut input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\n".to_vec();
    input.extend_from_slice(body);
    input.extend_from_slice(b"NOOP\r\n");
    converse_with(policy, &input)
}

#[test]
fn dot_stuffing_is_removed() {
    let t = send_data(policy(), b"..x\r\n...\r\n..\r\nend\r\n.\r\n");
    assert_eq!(t.message(0).content, b".x\r\n..\r\n.\r\nend\r\n");
    let s = &t.message(0).end.summary;
    assert!(s.undoubled_dots.is_empty());
    assert_eq!(s.flags, DataFlags::default());
    assert_eq!(t.last(), "250 2.0.0 Ok");
}

#[test]
fn undoubled_dots_are_removed_and_reported() {
    let t = send_data(policy(), b"a\r\n.b\r\n..c\r\n.d\r\n.\r\n");
    let m = t.message(0);
    assert_eq!(m.content, b"a\r\nb\r\n.c\r\nd\r\n");
    assert_eq!(m.end.summary.undoubled_dots, [3, 10]);
    assert_eq!(m.end.summary.undoubled_dots_total, 2);
}

#[test]
fn content_is_kept_byte_for_byte() {
    // Content is not a command line: NUL, bare CR and invalid UTF-8 are kept.
    let body: &[u8] = b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\
        \r\n\
        \x20 leading and trailing spaces  \r\n\
        \ttab\r\n\
        \r\n\
        \r\n\
        8-bit: caf\xc3\xa9 \x00\x01\x7f\xff\r\n\
        a dot in the middle . of a line\r\n\
        trailing dot.\r\n\
        QUIT\r\n\
        MAIL FROM:<not@a.command>\r\n";
    let mut input = body.to_vec();
    input.extend_from_slice(b".\r\n");
    let t = send_data(policy(), &input);
    let m = t.message(0);
    assert_eq!(m.content, body);
    assert_eq!(m.end.summary.flags, DataFlags::default());
    assert_eq!(m.end.summary.size, body.len() as u64);
    assert_eq!(
        t.effects
            .iter()
            .filter(|e| matches!(e, Effect::Mail { .. }))
            .count(),
        1
    );
    assert!(!t.closed);
}

#[test]
fn bare_lf_and_bare_cr_are_kept_and_flagged() {
    let t = send_data(policy(), b"one\ntwo\r\n.\r\n");
    assert_eq!(t.message(0).content, b"one\ntwo\r\n");
    let f = t.message(0).end.summary.flags;
    assert!(f.bare_lf && !f.bare_cr && !f.smuggling);

    let t = send_data(policy(), b"one\rtwo\r\n.\r\n");
    assert_eq!(t.message(0).content, b"one\rtwo\r\n");
    let f = t.message(0).end.summary.flags;
    assert!(f.bare_cr && !f.bare_lf && !f.smuggling);

    let t = send_data(policy(), b"a\r\r\nb\n\r\n.\r\n");
    assert_eq!(t.message(0).content, b"a\r\r\nb\n\r\n");
    let f = t.message(0).end.summary.flags;
    assert!(f.bare_cr && f.bare_lf);
}

// The three tests below keep data.rs's deliberate rule (the message ends
// only at <CRLF>.<CRLF>, so that a smuggling attempt is stored as evidence).
// Postfix 3.7 ends the data at \n.\n and \n.\r\n as well: see
// KNOWN_DIVERGENCES (bare-lf, data-bare-lf-body, data-bare-lf-dot-crlf-terminated).

#[test]
fn lf_dot_crlf_does_not_end_the_message_and_is_smuggling() {
    let smuggled: &[u8] = b"Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nforged\r\n";
    let mut body = smuggled.to_vec();
    body.extend_from_slice(b".\r\n");
    let t = send_data(policy(), &body);
    assert_eq!(t.messages.len(), 1);
    assert_eq!(t.message(0).content, smuggled);
    let f = t.message(0).end.summary.flags;
    assert!(f.smuggling && f.bare_lf);
    // The smuggled commands were content, not commands.
    assert_eq!(
        t.effects
            .iter()
            .filter(|e| matches!(e, Effect::Mail { .. }))
            .count(),
        1
    );
    assert_eq!(t.codes(), [250, 250, 250, 354, 250, 250]);
}

#[test]
fn crlf_dot_lf_does_not_end_the_message_and_is_smuggling() {
    let t = send_data(policy(), b"hello\r\n.\nMAIL FROM:<evil@x>\r\n.\r\n");
    assert_eq!(t.messages.len(), 1);
    // The line (ended only by CRLF) starts with a dot and has more
    // characters: the dot is removed like any undoubled one, and its offset
    // kept so that the wire bytes can be rebuilt.
    assert_eq!(t.message(0).content, b"hello\r\n\nMAIL FROM:<evil@x>\r\n");
    let f = t.message(0).end.summary.flags;
    assert!(f.smuggling && f.bare_lf);
    assert_eq!(t.message(0).end.summary.undoubled_dots, vec![7]);
}

#[test]
fn other_lone_dot_lines_with_bare_endings_are_smuggling() {
    for body in [
        &b"a\n.\nb\r\n.\r\n"[..],
        b"a\r.\r\nb\r\n.\r\n",
        b"a\r\n.\rb\r\n.\r\n",
    ] {
        let t = send_data(policy(), body);
        assert_eq!(t.messages.len(), 1, "{body:?}");
        assert!(t.message(0).end.summary.flags.smuggling, "{body:?}");
        assert_eq!(t.last(), "250 2.0.0 Ok");
    }
}

#[test]
fn an_ordinary_message_is_not_smuggling() {
    let t = send_data(policy(), b"a\r\n..b\r\n.c\r\n\r\n.\r\n");
    assert!(!t.message(0).end.summary.flags.smuggling);
}

#[test]
fn an_unfinished_message_stays_open() {
    let t = converse(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\npartial\r\nlin");
    assert!(t.in_message);
    assert!(t.messages.is_empty());
    assert!(t.unconsumed.is_empty(), "content is consumed as it comes");
}

#[test]
fn partial_summary_of_an_unfinished_message() {
    let policy = Arc::new(policy());
    let mut shell = Shell::new(&policy, Opts::default());
    assert_eq!(shell.session.partial_summary(), None);
    shell.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\n..half a\nmess");
    let s = shell.session.partial_summary().expect("in DATA");
    assert_eq!(s.size, 12);
    assert!(s.flags.bare_lf);
    assert!(shell.session.in_message());
    assert_eq!(shell.open.as_deref(), Some(&b".half a\nmess"[..]));

    let mut shell = Shell::new(&policy, Opts::default());
    shell.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nBDAT 4\r\nabcdBDAT 10 LAST\r\nefg");
    let s = shell.session.partial_summary().expect("in BDAT");
    assert_eq!(s.size, 7);
    assert!(shell.session.in_message());
    // Between chunks the message is still open.
    let mut shell = Shell::new(&policy, Opts::default());
    shell.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nBDAT 4\r\nabcd");
    assert!(shell.session.in_message());
    assert_eq!(shell.session.partial_summary().map(|s| s.size), Some(4));
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

#[test]
fn an_oversized_message_is_truncated_and_refused_in_sync() {
    // data-too-big-then-continue: the 552 comes after the final dot, and the
    // session goes on.
    let small = Policy {
        max_message_size: 100,
        ..policy()
    };
    let mut body = vec![b'x'; 1000];
    body.extend_from_slice(b"\r\n.\r\n");
    let t = send_data(small.clone(), &body);
    let m = t.message(0);
    assert_eq!(m.content, vec![b'x'; 100]);
    assert_eq!(m.end.summary.size, 1002);
    assert_eq!(m.end.summary.stored, 100);
    assert!(m.end.summary.over_limit);
    assert_eq!(m.reply.to_string(), FILE_TOO_BIG);
    // The dialog goes on: the NOOP after the message is answered.
    assert_eq!(t.last(), "250 2.0.0 Ok");
    assert!(!t.in_message);
    assert_eq!(t.errors, 1);

    // A message of exactly the limit is fine.
    let mut body = vec![b'y'; 98];
    body.extend_from_slice(b"\r\n.\r\n");
    let t = send_data(small.clone(), &body);
    assert_eq!(t.message(0).content.len(), 100);
    assert!(!t.message(0).end.summary.over_limit);
    assert_eq!(t.message(0).reply.code(), 250);

    // SIZE= is checked against the same limit, at MAIL time.
    let t = converse_with(
        small,
        b"MAIL FROM:<a@b> SIZE=101\r\nMAIL FROM:<a@b> SIZE=100\r\n",
    );
    assert_eq!(t.text(), wire(&[TOO_BIG, MAIL_OK]));
}

#[test]
fn too_many_recipients() {
    let few = Policy {
        max_recipients: 2,
        ..policy()
    };
    let t = converse_with(
        few,
        b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<1@b>\r\nRCPT TO:<2@b>\r\nRCPT TO:<3@b>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(t.codes(), [250, 250, 250, 250, 452, 354, 250]);
    assert_eq!(
        t.replies[4].to_string(),
        "452 4.5.3 Error: too many recipients\r\n"
    );
    assert_eq!(t.effects[4], Effect::Limit("recipients"));
    assert_eq!(
        t.message(0).end.envelope.rcpt_to,
        [b"1@b".to_vec(), b"2@b".to_vec()]
    );
}

#[test]
fn recipients_past_the_limit_count_as_errors_only_past_the_overshoot() {
    // Postfix's smtpd_recipient_overshoot_limit (1000): a bot sending more
    // recipients than allowed gets 452 for the extra ones, not a 421, and
    // its message is still taken.
    let few = Policy {
        max_recipients: 2,
        max_errors: 3,
        ..policy()
    };
    assert_eq!(few.persona.recipient_overshoot_limit, 1000);
    let mut input = b"HELO c\r\nMAIL FROM:<a@b>\r\n".to_vec();
    for i in 0..8 {
        input.extend_from_slice(format!("RCPT TO:<{i}@b>\r\n").as_bytes());
    }
    input.extend_from_slice(b"DATA\r\nx\r\n.\r\n");
    let t = converse_with(few.clone(), &input);
    assert_eq!(
        t.codes(),
        [250, 250, 250, 250, 452, 452, 452, 452, 452, 452, 354, 250]
    );
    assert_eq!(t.messages.len(), 1);
    assert!(!t.closed);

    // Past the overshoot, each one is an error again.
    let mut persona = few.persona.clone();
    persona.recipient_overshoot_limit = 2;
    let strict = Policy { persona, ..few };
    let t = converse_with(strict, &input);
    assert_eq!(
        t.codes(),
        [250, 250, 250, 250, 452, 452, 452, 452, 452, 421]
    );
    assert!(t.closed);
}

#[test]
fn too_many_messages() {
    let two = Policy {
        max_messages: 2,
        ..policy()
    };
    let one = b"MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\nx\r\n.\r\n";
    let mut input = b"HELO c\r\n".to_vec();
    input.extend_from_slice(one);
    input.extend_from_slice(one);
    input.extend_from_slice(b"MAIL FROM:<a@b>\r\nQUIT\r\n");
    let t = converse_with(two, &input);
    assert_eq!(t.messages.len(), 2);
    assert_eq!(
        t.text().lines().rev().take(2).collect::<Vec<_>>(),
        ["221 2.0.0 Bye", "452 4.5.3 Error: too many messages"]
    );
    assert_eq!(t.effects[t.effects.len() - 2], Effect::Limit("messages"));
}

#[test]
fn an_oversized_message_gets_552_even_if_storage_failed() {
    let small = Policy {
        max_message_size: 4,
        ..policy()
    };
    let t = converse_opts(
        small,
        Opts {
            storage_fails: true,
            ..Opts::default()
        },
        b"MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\n0123456789\r\n.\r\n",
    );
    assert_eq!(t.message(0).reply.to_string(), FILE_TOO_BIG);
}

// ---------------------------------------------------------------------------
// Reading command lines as Postfix does
// ---------------------------------------------------------------------------

#[test]
fn an_overlong_line_is_processed_truncated_and_its_rest_skipped() {
    // long-line-5000-unknown, long-line-5000-helo, long-line-5000-noop: the
    // first 2048 bytes are the command, the rest is dropped without a reply.
    let mut input = "X".repeat(5000).into_bytes();
    input.extend_from_slice(b"\r\nHELO ");
    input.extend_from_slice("a".repeat(4995).as_bytes());
    input.extend_from_slice(b"\r\nNOOP ");
    input.extend_from_slice("b".repeat(4995).as_bytes());
    input.extend_from_slice(b" QUIT\r\nNOOP\r\n");
    let t = converse(&input);
    assert_eq!(t.text(), wire(&[NOT_RECOGNIZED, HELO_REPLY, OK, OK]));
    assert_eq!(
        t.effects[1],
        Effect::Helo {
            extended: false,
            name: "a".repeat(2048 - 5).into_bytes()
        }
    );
    assert!(!t.closed, "the QUIT in the dropped part was not executed");
    let mut skipped = "X".repeat(5000 - 2048).into_bytes();
    skipped.extend_from_slice(b"\r\n");
    skipped.extend_from_slice("a".repeat(5 + 4995 - 2048).as_bytes());
    skipped.extend_from_slice(b"\r\n");
    skipped.extend_from_slice("b".repeat(5 + 4995 - 2048).as_bytes());
    skipped.extend_from_slice(b" QUIT\r\n");
    assert_eq!(t.skipped, skipped);
    assert_eq!(t.errors, 1);
}

#[test]
fn an_overlong_address_loses_its_closing_bracket() {
    // mail-long-address-3000, mail-long-address-3000-rcpt,
    // mail-long-address-1000, long-line-2100-mail.
    let long = |n: usize| "a".repeat(n);
    let input = format!(
        "MAIL FROM:<{}@example.org>\r\n\
         MAIL FROM:<{}@example.org>\r\n\
         RCPT TO:<{}@remote.example>\r\n\
         RCPT TO:<{}@remote.example>\r\n\
         RSET\r\n\
         MAIL FROM:<a@example.org>{}\r\n",
        long(3000),
        long(1000),
        long(3000),
        long(1000),
        " ".repeat(2100)
    );
    let t = converse(input.as_bytes());
    assert_eq!(
        t.text(),
        wire(&[BAD_SENDER, MAIL_OK, BAD_RECIPIENT, RCPT_OK, OK, MAIL_OK])
    );
}

#[test]
fn the_line_limit_counts_the_line_ending() {
    let short = Policy {
        max_line_length: 32,
        ..policy()
    };
    // 32 bytes in all is one line; at 33 the first 32 bytes are the command
    // (its CR stripped) and the LF is dropped.
    let exact = format!("NOOP {}\r\n", "a".repeat(25));
    assert_eq!(exact.len(), 32);
    let over = format!("NOOP {}\r\n", "a".repeat(26));
    let t = converse_with(short.clone(), format!("{exact}{over}NOOP\r\n").as_bytes());
    assert_eq!(t.text(), wire(&[OK, OK, OK]));
    assert_eq!(t.skipped, b"\n");

    // An overlong MAIL does not open a transaction.
    let mail = format!("MAIL FROM:<{}@b>\r\nRCPT TO:<r@b>\r\n", "x".repeat(100));
    let t = converse_with(short, mail.as_bytes());
    assert_eq!(t.text(), wire(&[BAD_SENDER, NEED_MAIL]));
}

#[test]
fn an_overlong_line_without_end_keeps_being_skipped() {
    let short = Policy {
        max_line_length: 16,
        ..policy()
    };
    let t = converse_with(short, &[b'z'; 500]);
    assert_eq!(t.text(), NOT_RECOGNIZED);
    assert_eq!(t.skipped, [b'z'; 500 - 16]);
    assert!(t.unconsumed.is_empty());
}

#[test]
fn nul_ends_the_line() {
    // nul-byte: NOOP\0x is NOOP, EHLO x\0y greets "x", a NUL inside an
    // address leaves it unclosed.
    let t = converse(
        b"NOOP\x00x\r\nEHLO x\x00y\r\nMAIL FROM:<a\x00b@example.org>\r\n\x00MAIL FROM:<c@d>\r\n",
    );
    assert_eq!(t.text(), wire(&[OK, EHLO_REPLY, BAD_SENDER, BAD_SYNTAX]));
    assert_eq!(
        t.effects[1],
        Effect::Helo {
            extended: true,
            name: b"x".to_vec()
        }
    );
}

#[test]
fn a_bare_cr_inside_a_command_is_a_space() {
    // bare-cr, crlf-split-across-sends: the CR does not end the line.
    let t = converse(b"EHLO x\rNOOP\r\nMAIL\rFROM:<a@b>\r\nQUIT\rQUIT\r\n");
    assert_eq!(t.text(), wire(&[EHLO_REPLY, MAIL_OK, BYE]));
    assert_eq!(
        t.effects[0],
        Effect::Helo {
            extended: true,
            name: b"x NOOP".to_vec()
        }
    );
    assert!(t.closed);
    // Nothing is answered before the line is complete.
    let policy = Arc::new(policy());
    let mut shell = Shell::new(&policy, Opts::default());
    shell.feed(b"EHLO x\r");
    assert!(shell.t.replies.is_empty());
    shell.feed(b"\n");
    assert_eq!(shell.t.replies.len(), 1);
}

#[test]
fn invalid_utf8_is_refused_and_valid_utf8_accepted() {
    // eight-bit-bytes, invalid-utf8-ehlo, tls-clienthello-as-smtp.
    let t = converse(
        b"EHLO \xff\r\nFOO\xff\xfe\r\nMAIL FROM:<\xe9@example.org>\r\nVRFY \xe9\r\n\
          \x16\x03\x01\xa5\x01\r\n\
          EHLO \xc3\xa9t\xc3\xa9\r\nMAIL FROM:<\xc3\xbcser@example.org> SMTPUTF8\r\n",
    );
    assert_eq!(t.text(), wire(&[&times(BAD_UTF8, 5), EHLO_REPLY, MAIL_OK]));
    assert_eq!(t.effects[..5], vec![Effect::Error; 5]);
    assert_eq!(t.errors, 5);
    assert_eq!(
        t.effects[5],
        Effect::Helo {
            extended: true,
            name: "été".as_bytes().to_vec()
        }
    );
}

#[test]
fn a_line_is_checked_for_utf8_beyond_a_nul() {
    // tls-clienthello-as-smtp: a TLS ClientHello has a NUL in its fourth
    // byte and invalid UTF-8 after it. Postfix checks the whole line, so it
    // answers "bad UTF-8" and goes on, rather than hanging up on a line that
    // does not start with a letter.
    let input = reference_input("tls-clienthello-as-smtp");
    assert_eq!(&input[..5], b"\x16\x03\x01\x00\xa5");
    let t = converse(&[&input[..], b"NOOP\x00\xff\r\nNOOP\r\n"].concat());
    assert_eq!(t.text(), wire(&[BAD_UTF8, BAD_UTF8, OK]));
    assert!(!t.closed);
}

#[test]
fn control_characters_are_part_of_the_word() {
    // control-chars-in-command.
    let t = converse(b"NOOP\x01\x02\r\nEHLO x\x7f\r\n");
    assert_eq!(t.text(), wire(&[NOT_RECOGNIZED, EHLO_REPLY]));
}

#[test]
fn forbidden_lines_are_answered_once_and_closed() {
    // http-get, http-post, http-connect, lowercase-get, dot-line-as-command,
    // digit-line-as-command, angle-bracket-line-as-command.
    for line in [
        "GET / HTTP/1.1",
        "POST /cgi-bin HTTP/1.0",
        "CONNECT mx.example.com:25 HTTP/1.1",
        "get /",
        "  Post x",
        ".",
        "..",
        ".x",
        "123 hello",
        "<foo>",
        "\t-dash",
        "\x01NOOP",
    ] {
        let input = format!("{line}\r\nHost: mx.example.com\r\n\r\n");
        let t = converse(input.as_bytes());
        assert_eq!(t.text(), FORBIDDEN, "{line:?}");
        assert!(t.closed, "{line:?}");
        assert_eq!(t.effects, [Effect::Error], "{line:?}");
        assert_eq!(t.unconsumed, b"Host: mx.example.com\r\n\r\n", "{line:?}");
    }
    // After a greeting too (http-get-after-ehlo); HEAD is just unknown.
    let t = converse(b"EHLO c\r\nHEAD / HTTP/1.0\r\nGET / HTTP/1.0\r\nQUIT\r\n");
    assert_eq!(t.text(), wire(&[EHLO_REPLY, NOT_RECOGNIZED, FORBIDDEN]));
}

#[test]
fn talking_before_the_greeting_is_answered_in_order() {
    // pipelining-before-greeting-read: the core has no notion of "before":
    // the greeting comes first, then the replies in order.
    let t = converse(b"EHLO x\r\nNOOP\r\nQUIT\r\n");
    assert_eq!(t.greeting.to_string(), GREETING);
    assert_eq!(t.text(), wire(&[EHLO_REPLY, OK, BYE]));
}

// ---------------------------------------------------------------------------
// Errors, the tarpit and the junk-command limit
// ---------------------------------------------------------------------------

#[test]
fn too_many_errors_closes_with_421() {
    let strict = Policy {
        max_errors: 3,
        ..policy()
    };
    // Successful commands in between do not reset the count.
    let t = converse_with(
        strict.clone(),
        b"FOO\r\nNOOP\r\nBAR\r\n\r\nNOOP\r\nQUIT\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[
            NOT_RECOGNIZED,
            OK,
            NOT_RECOGNIZED,
            BAD_SYNTAX,
            TOO_MANY_ERRORS
        ])
    );
    assert!(t.closed);
    assert_eq!(t.unconsumed, b"NOOP\r\nQUIT\r\n");
    assert_eq!(t.effects.last(), Some(&Effect::Limit("errors")));

    // The 421 goes out right after the last error, without more input.
    let t = converse_with(strict, b"A\r\nB\r\nC\r\n");
    assert_eq!(t.codes(), [500, 500, 500, 421]);
    assert!(t.closed);
}

#[test]
fn a_persona_that_answers_help_does_not_count_it_as_an_error() {
    // Postfix refuses HELP (500, an error); Exchange lists its commands (214).
    // Found by the fuzz target once it drew personas.
    let exchange = Policy {
        persona: Persona::builtin("exchange").unwrap(),
        max_errors: 2,
        ..policy()
    };
    let t = converse_with(exchange, b"HELP\r\nHELP\r\nHELP\r\nQUIT\r\n");
    assert_eq!(t.codes(), [214, 214, 214, 221]);
    assert!(
        t.effects[..3].iter().all(|e| *e == Effect::None),
        "{:?}",
        t.effects
    );
    let postfix = Policy {
        max_errors: 2,
        ..policy()
    };
    let t = converse_with(postfix, b"HELP\r\nHELP\r\nQUIT\r\n");
    assert_eq!(t.codes(), [500, 500, 421]);
}

#[test]
fn the_default_error_limit_is_twenty() {
    // unknown-commands-25-pipelined, byte for byte.
    let input = reference_input("unknown-commands-25-pipelined");
    assert_eq!(input, b"FOO\r\n".repeat(25));
    let t = converse(&input);
    assert_like_reference(&t, "unknown-commands-25-pipelined");
    assert_eq!(
        t.text(),
        wire(&[&times(NOT_RECOGNIZED, 20), TOO_MANY_ERRORS])
    );
    assert_eq!(t.unconsumed, b"FOO\r\n".repeat(5));
}

#[test]
fn mixed_errors_count_together() {
    // errors-mixed-kinds: 500, 501, 503 and 550 all count.
    let t = converse_with(reference_policy(), &reference_input("errors-mixed-kinds"));
    assert_like_reference(&t, "errors-mixed-kinds");
    assert!(t.text().ends_with(TOO_MANY_ERRORS));
    assert_eq!(t.codes().iter().filter(|&&c| c == 550).count(), 17);
}

#[test]
fn refusals_at_a_limit_count_as_errors() {
    // Without an overshoot allowance (Postfix has one for recipients: see
    // recipients_past_the_limit_count_as_errors_only_past_the_overshoot).
    let mut persona = policy().persona;
    persona.recipient_overshoot_limit = 0;
    let p = Policy {
        max_errors: 2,
        max_recipients: 1,
        persona,
        ..policy()
    };
    let t = converse_with(
        p,
        b"MAIL FROM:<a@b>\r\nRCPT TO:<1@b>\r\nRCPT TO:<2@b>\r\nRCPT TO:<3@b>\r\nRSET\r\n",
    );
    assert_eq!(t.codes(), [250, 250, 452, 452, 421]);
    assert_eq!(t.unconsumed, b"RSET\r\n");
}

#[test]
fn junk_commands_past_the_limit_count_as_errors() {
    // junk-commands-noop-125: NOOPs 1 to 101 are free, each one after that
    // is an error, and the 421 comes after NOOP number 121.
    let t = converse(&b"NOOP\r\n".repeat(125));
    assert_eq!(t.text(), wire(&[&times(OK, 121), TOO_MANY_ERRORS]));
    assert_eq!(t.unconsumed, b"NOOP\r\n".repeat(4));

    let policy = Arc::new(policy());
    let mut shell = Shell::new(&policy, Opts::default());
    shell.feed(&b"NOOP\r\n".repeat(101));
    assert_eq!(shell.session.errors(), 0);
    shell.feed(b"NOOP\r\n");
    assert_eq!(shell.session.errors(), 1);
    // VRFY, RSET and ETRN are junk commands too; HELO is not.
    shell.feed(b"VRFY root\r\nRSET\r\nHELO c\r\n");
    assert_eq!(shell.session.errors(), 3);
    // ETRN is refused anyway: one error for the refusal, one for the junk.
    shell.feed(b"ETRN example.org\r\n");
    assert_eq!(shell.session.errors(), 5);
}

#[test]
fn junk_commands_of_all_kinds() {
    // junk-commands-vrfy-rset-mix, as recorded.
    let t = converse_with(
        reference_policy(),
        &reference_input("junk-commands-vrfy-rset-mix"),
    );
    assert_like_reference(&t, "junk-commands-vrfy-rset-mix");
    assert!(t.closed);
}

#[test]
fn the_tarpit_delays_every_reply_from_the_eleventh_error_on() {
    // Replies to errors 1 to 10 are immediate; the reply to error 11 and
    // every reply after it (successes, 354, each EHLO line) wait 1 s.
    let t = converse(
        &[
            b"FOO\r\n".repeat(11),
            b"NOOP\r\nEHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\n".to_vec(),
        ]
        .concat(),
    );
    assert_eq!(t.codes()[..11], [500; 11]);
    assert_eq!(t.delays[..10], [None; 10]);
    assert_eq!(t.delays[10..], [TARPIT; 6]);
    assert_eq!(t.errors, 11);
    let session = Session::new(Arc::new(policy()));
    assert_eq!(session.reply_delay(), None);
}

#[test]
fn a_reply_after_the_tenth_error_is_already_delayed() {
    // Postfix sleeps before every reply line while error_count >=
    // smtpd_soft_error_limit (smtpd_chat.c, smtpd_chat_reply), and counts an
    // error after its reply. "Once the count reaches 10, every reply line is
    // delayed by 1 s, successful replies and 354 included"
    // (tests/reference/README.md). So after exactly ten errors, the next
    // reply waits even when it is a success.
    let t = converse(&[b"FOO\r\n".repeat(10), b"NOOP\r\nEHLO c\r\n".to_vec()].concat());
    assert_eq!(t.delays[..10], [None; 10], "errors 1 to 10 are immediate");
    assert_eq!(t.errors, 10);
    assert_eq!(
        t.delays[10..],
        [TARPIT; 2],
        "the NOOP and EHLO after the tenth error must wait (reply_delay is None at errors == 10)"
    );
}

#[test]
fn a_delivery_forgives_errors_and_is_not_delayed() {
    // errors-reset-by-success: 12 errors (in the tarpit), a delivery, then
    // 12 more errors without reaching the limit of 20.
    let t = converse_with(
        reference_policy(),
        &reference_input("errors-reset-by-success"),
    );
    assert_like_reference(&t, "errors-reset-by-success");
    assert!(t.closed);
    let queued = t
        .replies
        .iter()
        .position(|r| r.lines()[0].contains("queued as"))
        .unwrap();
    assert_eq!(t.delays[queued - 1], TARPIT, "the 354 before it waited");
    assert_eq!(t.delays[queued], None, "the 250 for the delivery does not");
    assert_eq!(t.delays[queued + 1], None, "the count starts again");
    assert_eq!(t.errors, 12);

    // Nineteen more errors after a delivery are fine, the twentieth is not.
    let mut input = b"FOO\r\n".repeat(19);
    input.extend_from_slice(b"MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\n.\r\n");
    input.extend_from_slice(&b"FOO\r\n".repeat(19));
    input.extend_from_slice(b"NOOP\r\nFOO\r\nNOOP\r\n");
    let t = converse(&input);
    assert_eq!(t.last(), TOO_MANY_ERRORS.trim_end());
    assert_eq!(t.codes().iter().filter(|&&c| c == 421).count(), 1);
    assert_eq!(t.unconsumed, b"NOOP\r\n");
}

#[test]
fn successes_other_than_a_delivery_do_not_forgive() {
    let t = converse(b"FOO\r\nFOO\r\nNOOP\r\nEHLO c\r\nHELO c\r\nRSET\r\nVRFY root\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\n");
    assert_eq!(t.errors, 2);
    // Nor does a failed or oversized delivery.
    let t = converse_opts(
        policy(),
        Opts {
            storage_fails: true,
            ..Opts::default()
        },
        b"FOO\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\n.\r\n",
    );
    assert_eq!(t.errors, 2);
}

// ---------------------------------------------------------------------------
// BDAT (RFC 3030)
// ---------------------------------------------------------------------------

const ENVELOPE: &[u8] = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\n";

fn with_envelope(rest: &[u8]) -> Vec<u8> {
    [ENVELOPE, rest].concat()
}

#[test]
fn bdat_last_in_one_chunk_counts_the_missing_crlf() {
    // bdat-last, bdat-pipelined-with-commands: "hello" is 7 bytes for
    // Postfix, which adds the final CRLF; "hello\r\n" is 7 bytes too.
    let t = converse(&with_envelope(
        b"BDAT 5 LAST\r\nhelloMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nBDAT 7 LAST\r\nhello\r\nQUIT\r\n",
    ));
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY,
            MAIL_OK,
            RCPT_OK,
            "250 2.0.0 Ok: 7 bytes queued as C0FFEE0000\r\n",
            MAIL_OK,
            RCPT_OK,
            "250 2.0.0 Ok: 7 bytes queued as C0FFEE0001\r\n",
            BYE
        ])
    );
    assert_eq!(t.chunk_starts, [true, true]);
    let m = t.message(0);
    assert_eq!(m.content, b"hello");
    assert_eq!(m.end.envelope.rcpt_to, [b"r@b".to_vec()]);
    assert_eq!(m.end.summary.size, 5);
    assert!(m.end.chunked);
    assert_eq!(t.message(1).content, b"hello\r\n");
    assert!(
        !t.effects.contains(&Effect::MessageStart),
        "BDAT opens with ChunkStart"
    );
}

#[test]
fn bdat_chunk_replies_count_the_chunk_and_the_last_the_message() {
    // bdat-chunks: 17, then 9, then 0 LAST: "26 bytes queued".
    let t = converse(&with_envelope(
        b"BDAT 17\r\nSubject: chunks\r\nBDAT 9\r\n\r\nhello\r\nBDAT 0 LAST\r\n",
    ));
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY,
            MAIL_OK,
            RCPT_OK,
            "250 2.0.0 Ok: 17 bytes\r\n",
            "250 2.0.0 Ok: 9 bytes\r\n",
            "250 2.0.0 Ok: 26 bytes queued as C0FFEE0000\r\n",
        ])
    );
    assert_eq!(t.message(0).content, b"Subject: chunks\r\n\r\nhello\r\n");
}

#[test]
fn bdat_chunks_are_kept_verbatim() {
    // No dot-stuffing, no end marker, no line ending rules inside chunks.
    let first = b"Subject: x\r\n";
    let second = b"\r\n.\r\n..dots\nQUIT\r\n";
    let input = with_envelope(
        &[
            format!("BDAT {}\r\n", first.len()).as_bytes(),
            first,
            b"BDAT 0\r\n",
            format!("bdat {} last\r\n", second.len()).as_bytes(),
            second,
            b"NOOP\r\n",
        ]
        .concat(),
    );
    let t = converse(&input);
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY,
            MAIL_OK,
            RCPT_OK,
            "250 2.0.0 Ok: 12 bytes\r\n",
            "250 2.0.0 Ok: 0 bytes\r\n",
            "250 2.0.0 Ok: 30 bytes queued as C0FFEE0000\r\n",
            OK
        ])
    );
    assert_eq!(t.chunk_starts, [true, false, false]);
    let m = t.message(0);
    assert_eq!(m.content, [&first[..], second].concat());
    assert_eq!(m.end.summary.size, 30);
    assert_eq!(m.end.summary.flags, DataFlags::default());
    assert!(!t.closed);
}

#[test]
fn bdat_zero_last_ends_an_empty_message() {
    let t = converse(&with_envelope(b"BDAT 0 LAST\r\nNOOP\r\n"));
    assert_eq!(t.message(0).content, b"");
    // The reference has no empty BDAT message; only the acceptance is
    // certain (its byte count depends on how Postfix counts the CRLF it adds).
    let reply = t.message(0).reply.to_string();
    assert!(
        reply.starts_with("250 2.0.0 Ok: ") && reply.ends_with(" bytes queued as C0FFEE0000\r\n"),
        "{reply}"
    );
    assert_eq!(t.last(), "250 2.0.0 Ok");
}

#[test]
fn bad_bdat_syntax_closes_the_connection() {
    // bdat-noarg, bdat-nonnumeric-count, bdat-bad-keyword,
    // bdat-noarg-without-mail: Postfix cannot know where the chunk ends.
    for bad in [
        &b"BDAT"[..],
        b"BDAT x",
        b"BDAT -1",
        b"BDAT 5 FOO",
        b"BDAT 5 LAST more",
        b"BDAT 99999999999999999999999",
    ] {
        let t = converse(&with_envelope(&[bad, b"\r\nhelloNOOP\r\n"].concat()));
        assert_eq!(
            t.text(),
            wire(&[EHLO_REPLY, MAIL_OK, RCPT_OK, BDAT_SYNTAX]),
            "{bad:?}"
        );
        assert!(t.closed);
        assert_eq!(t.unconsumed, b"helloNOOP\r\n");
        assert_eq!(t.effects.last(), Some(&Effect::Error));
    }
    let t = converse(b"BDAT\r\nNOOP\r\n");
    assert_eq!(t.text(), BDAT_SYNTAX);
    assert!(t.closed);
}

#[test]
fn a_refused_bdat_chunk_is_read_and_dropped() {
    // bdat-before-ehlo, bdat-without-mail, bdat-without-rcpt: the chunk
    // follows the command whatever the answer, so it is skipped.
    let t = converse(
        b"BDAT 6 LAST\r\nNOOP\r\nEHLO c\r\nBDAT 6\r\nQUIT\r\nMAIL FROM:<a@b>\r\nBDAT 6 LAST\r\nRSET\r\nBDAT 0 LAST\r\nNOOP\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[
            NEED_RCPT,
            EHLO_REPLY,
            NEED_RCPT,
            MAIL_OK,
            NO_VALID_RCPT,
            NO_VALID_RCPT,
            OK
        ])
    );
    assert_eq!(t.skipped, b"NOOP\r\nQUIT\r\nRSET\r\n");
    assert!(t.chunk_starts.is_empty());
    assert!(t.messages.is_empty());
    assert!(!t.closed);
}

#[test]
fn bdat_over_the_size_limit() {
    let small = Policy {
        max_message_size: 10,
        ..policy()
    };
    // bdat-too-big: the chunk that takes the message over the limit gets 552.
    let t = converse_with(
        small.clone(),
        &with_envelope(b"BDAT 8\r\n12345678BDAT 8 LAST\r\nabcdefghNOOP\r\n"),
    );
    let after_envelope =
        |t: &Transcript| -> String { t.replies[3..].iter().map(|r| r.to_string()).collect() };
    assert_eq!(t.replies[0].lines()[2], "SIZE 10");
    assert_eq!(
        after_envelope(&t),
        wire(&["250 2.0.0 Ok: 8 bytes\r\n", CHUNK_TOO_BIG, OK])
    );
    let m = t.message(0);
    assert_eq!(m.content, b"12345678ab");
    assert_eq!(m.end.summary.size, 16);
    assert_eq!(m.end.summary.stored, 10);
    assert!(m.end.summary.over_limit);
    assert_eq!(t.errors, 1);

    // A first chunk over the limit is refused at once; the message stays
    // refused until its last chunk.
    let t = converse_with(
        small,
        &with_envelope(b"BDAT 12\r\n123456789012BDAT 1 LAST\r\nxNOOP\r\n"),
    );
    assert_eq!(
        after_envelope(&t),
        wire(&[CHUNK_TOO_BIG, CHUNK_TOO_BIG, OK])
    );
    assert_eq!(t.message(0).content, b"1234567890");
}

#[test]
fn rset_abandons_a_bdat_message() {
    let t = converse(&with_envelope(
        b"BDAT 3\r\nabcRSET\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nBDAT 2 LAST\r\nxy",
    ));
    assert_eq!(t.chunk_starts, [true, true]);
    assert_eq!(t.abandoned, [b"abc".to_vec()]);
    assert_eq!(t.message(0).content, b"xy");
    assert_eq!(t.message(0).end.summary.size, 2);
}

#[test]
fn helo_abandons_a_bdat_message() {
    let t = converse(&with_envelope(
        b"BDAT 3\r\nabcHELO again\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nBDAT 2 LAST\r\nxy",
    ));
    assert_eq!(t.chunk_starts, [true, true]);
    assert_eq!(t.abandoned, [b"abc".to_vec()]);
    assert_eq!(t.message(0).end.summary.size, 2);
}

#[test]
fn data_inside_a_bdat_message_is_refused() {
    // bdat-then-data. RFC 3030: "If a DATA command is issued after a BDAT
    // for the current transaction, a 503 'Bad sequence of commands' MUST be
    // issued."
    let t = converse(&with_envelope(
        b"BDAT 3\r\nabcDATA\r\nBDAT 2 LAST\r\nxy\
          MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nBDAT 1 LAST\r\nz",
    ));
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY,
            MAIL_OK,
            RCPT_OK,
            "250 2.0.0 Ok: 3 bytes\r\n",
            "503 5.5.1 Error: DATA after BDAT\r\n",
            "250 2.0.0 Ok: 7 bytes queued as C0FFEE0000\r\n",
            MAIL_OK,
            RCPT_OK,
            "250 2.0.0 Ok: 3 bytes queued as C0FFEE0001\r\n",
        ])
    );
    assert_eq!(t.chunk_starts, [true, false, true]);
    assert_eq!(t.message(0).content, b"abcxy");
    assert_eq!(t.message(1).content, b"z");
    assert_eq!(t.message(1).end.summary.size, 1);
    assert!(!t.in_message);
}

#[test]
fn bdat_and_data_messages_in_one_session() {
    let t = converse(
        b"EHLO c\r\n\
          MAIL FROM:<one@a>\r\nRCPT TO:<r@b>\r\nBDAT 4 LAST\r\nbdat\
          MAIL FROM:<two@a>\r\nRCPT TO:<s@b>\r\nDATA\r\ndata\r\n.\r\n\
          MAIL FROM:<three@a>\r\nRCPT TO:<t@b>\r\nBDAT 2\r\nbdBDAT 2 LAST\r\nat\
          QUIT\r\n",
    );
    let contents: Vec<&[u8]> = t.messages.iter().map(|m| &m.content[..]).collect();
    assert_eq!(contents, [&b"bdat"[..], b"data\r\n", b"bdat"]);
    let senders: Vec<&[u8]> = t
        .messages
        .iter()
        .map(|m| &m.end.envelope.mail_from[..])
        .collect();
    assert_eq!(senders, [&b"one@a"[..], b"two@a", b"three@a"]);
    assert_eq!(t.chunk_starts, [true, true, false]);
    assert!(t.closed);
}

// ---------------------------------------------------------------------------
// STARTTLS (RFC 3207)
// ---------------------------------------------------------------------------

#[test]
fn starttls_resets_the_session_and_changes_the_ehlo_list() {
    // starttls-after-ehlo, starttls-mid-transaction: 220, then everything
    // learnt in plaintext is forgotten (RFC 3207 4.2): the greeting, the
    // transaction. Over TLS, EHLO no longer offers STARTTLS and now offers
    // AUTH (smtpd_tls_auth_only).
    let t = converse_tls(
        tls_policy(),
        Opts::default(),
        b"EHLO c\r\nAUTH PLAIN\r\nMAIL FROM:<a@b>\r\nSTARTTLS\r\n",
        b"RCPT TO:<r@b>\r\nAUTH LOGIN\r\nEHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@b>\r\nQUIT\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[
            &ehlo_reply(true, false),
            AUTH_NOT_ENABLED,
            MAIL_OK,
            TLS_READY,
            NEED_MAIL,
            "503 5.5.1 Error: send HELO/EHLO first\r\n",
            &ehlo_reply(false, true),
            "554 5.5.1 Error: TLS already active\r\n",
            MAIL_OK,
            BYE,
        ])
    );
    assert_eq!(t.effects[3], Effect::StartTls);
    assert!(t.tls && t.closed);
    assert!(t.injected.is_empty());
}

#[test]
fn starttls_needs_no_greeting_and_no_argument() {
    // starttls-before-ehlo, starttls-after-helo, starttls-with-arg.
    let t = converse_tls(
        tls_policy(),
        Opts::default(),
        b"STARTTLS\r\n",
        b"EHLO c\r\n",
    );
    assert_eq!(t.text(), wire(&[TLS_READY, &ehlo_reply(false, true)]));
    let t = converse_tls(
        tls_policy(),
        Opts::default(),
        b"HELO c\r\nSTARTTLS now\r\nSTARTTLS\r\n",
        b"",
    );
    assert_eq!(
        t.text(),
        wire(&[HELO_REPLY, "501 5.5.4 Syntax: STARTTLS\r\n", TLS_READY])
    );
    assert_eq!(t.errors, 1);
}

#[test]
fn plaintext_after_starttls_is_never_executed() {
    // The STARTTLS command injection (CVE-2011-0411 and kin): commands sent
    // with STARTTLS in plaintext must not run, before or after the handshake.
    let plain: &[u8] = b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<r@b>\r\n";
    let t = converse_opts(tls_policy(), Opts::default(), plain);
    assert_eq!(t.text(), wire(&[&ehlo_reply(true, false), TLS_READY]));
    assert_eq!(t.injected, b"MAIL FROM:<evil@x>\r\nRCPT TO:<r@b>\r\n");
    assert!(!t.closed && t.tls);

    let t = converse_tls(tls_policy(), Opts::default(), plain, b"RCPT TO:<r@b>\r\n");
    assert_eq!(
        t.text(),
        wire(&[&ehlo_reply(true, false), TLS_READY, NEED_MAIL])
    );
    assert!(!t.effects.iter().any(|e| matches!(e, Effect::Mail { .. })));
}

#[test]
fn starttls_abandons_a_bdat_message() {
    let t = converse_tls(
        tls_policy(),
        Opts::default(),
        &with_envelope(b"BDAT 3\r\nabcSTARTTLS\r\n"),
        b"BDAT 2 LAST\r\nxyNOOP\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[
            &ehlo_reply(true, false),
            MAIL_OK,
            RCPT_OK,
            "250 2.0.0 Ok: 3 bytes\r\n",
            TLS_READY,
            NEED_RCPT,
            OK
        ])
    );
    assert_eq!(t.abandoned, [b"abc".to_vec()]);
    assert_eq!(t.skipped, b"xy");
    assert!(t.messages.is_empty() && !t.in_message);
}

#[test]
fn starttls_without_a_certificate_is_not_implemented() {
    let t = converse(b"EHLO c\r\nSTARTTLS\r\nSTARTTLS now\r\n");
    let not_implemented = "502 5.5.1 Error: command not implemented\r\n";
    assert_eq!(
        t.text(),
        wire(&[EHLO_REPLY, not_implemented, not_implemented])
    );
    assert!(!t.tls);
}

#[test]
fn implicit_tls_offers_auth_and_no_starttls() {
    let implicit = Policy {
        implicit_tls: true,
        ..tls_policy()
    };
    let t = converse_with(implicit, b"EHLO c\r\nSTARTTLS\r\nAUTH PLAIN\r\n*\r\n");
    assert_eq!(
        t.text(),
        wire(&[
            &ehlo_reply(false, true),
            "554 5.5.1 Error: TLS already active\r\n",
            "334 \r\n",
            AUTH_ABORTED,
        ])
    );
    assert!(t.tls);
}

// ---------------------------------------------------------------------------
// AUTH (RFC 4954): captured, refused by default
// ---------------------------------------------------------------------------

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// `EHLO c`, then `rest`, with AUTH offered in plaintext.
fn auth_dialog(opts: Opts, rest: &str) -> Transcript {
    converse_opts(auth_policy(), opts, format!("EHLO c\r\n{rest}").as_bytes())
}

fn accept() -> Opts {
    Opts {
        accept_auth: true,
        ..Opts::default()
    }
}

/// HMAC-MD5 (RFC 2104) in hex, as a CRAM-MD5 client computes it.
fn hmac_md5_hex(key: &[u8], message: &[u8]) -> String {
    use md5::{Digest, Md5};
    assert!(key.len() <= 64);
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |x: u8| block.iter().map(|b| b ^ x).collect::<Vec<u8>>();
    let inner = Md5::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Md5::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn auth_is_offered_only_where_the_policy_says() {
    let t = auth_dialog(Opts::default(), "");
    assert_eq!(t.text(), ehlo_reply(false, true));
    // After TLS only: neither listed nor accepted in plaintext.
    let t = converse_with(tls_policy(), b"EHLO c\r\nAUTH PLAIN\r\n");
    assert_eq!(
        t.text(),
        wire(&[&ehlo_reply(true, false), AUTH_NOT_ENABLED])
    );
}

#[test]
fn auth_plain_with_an_initial_response() {
    let line = format!("AUTH PLAIN {}\r\n", b64(b"\0alice\0s3cret"));
    let t = auth_dialog(Opts::default(), &format!("{line}MAIL FROM:<a@b>\r\n"));
    assert_eq!(
        t.text(),
        wire(&[&ehlo_reply(false, true), AUTH_FAILED, MAIL_OK])
    );
    let a = t.attempt();
    assert_eq!(a.mechanism, Mechanism::Plain);
    assert_eq!(a.end, AuthEnd::Complete);
    assert_eq!(a.authzid, None);
    assert_eq!(a.username.as_deref(), Some(&b"alice"[..]));
    assert_eq!(a.password.as_deref(), Some(&b"s3cret"[..]));
    assert_eq!((&a.challenge, &a.digest), (&None, &None));
    assert_eq!(a.raw, line.as_bytes());
    assert!(!t.auth[0].1, "refused by default");
    assert_eq!(t.errors, 1, "a failed AUTH is an error");
}

#[test]
fn auth_accepted_once_then_already_authenticated() {
    let ir = b64(b"admin\0alice\0s3cret");
    let t = auth_dialog(
        accept(),
        &format!("AUTH PLAIN {ir}\r\nAUTH LOGIN\r\nMAIL FROM:<a@b>\r\n"),
    );
    assert_eq!(
        t.text(),
        wire(&[
            &ehlo_reply(false, true),
            AUTH_OK,
            "503 5.5.1 Error: already authenticated\r\n",
            MAIL_OK
        ])
    );
    assert!(t.auth[0].1);
    assert_eq!(t.attempt().authzid.as_deref(), Some(&b"admin"[..]));
    assert_eq!(t.errors, 1);
}

#[test]
fn auth_plain_without_an_initial_response() {
    let response = format!("{}\r\n", b64(b"\0alice\0s3cret"));
    let t = auth_dialog(Opts::default(), &format!("auth plain\r\n{response}"));
    assert_eq!(
        t.text(),
        wire(&[&ehlo_reply(false, true), "334 \r\n", AUTH_FAILED])
    );
    let a = t.attempt();
    assert_eq!(a.username.as_deref(), Some(&b"alice"[..]));
    assert_eq!(a.password.as_deref(), Some(&b"s3cret"[..]));
    assert_eq!(a.raw, format!("auth plain\r\n{response}").as_bytes());
}

#[test]
fn auth_login_asks_for_the_user_then_the_password() {
    let user = b64(b"alice");
    let pass = b64(b"s3cret");
    let t = auth_dialog(
        Opts::default(),
        &format!("AUTH LOGIN\r\n{user}\r\n{pass}\r\n"),
    );
    assert_eq!(
        t.text(),
        wire(&[
            &ehlo_reply(false, true),
            USERNAME_PROMPT,
            PASSWORD_PROMPT,
            AUTH_FAILED
        ])
    );
    let a = t.attempt();
    assert_eq!(a.mechanism, Mechanism::Login);
    assert_eq!(a.username.as_deref(), Some(&b"alice"[..]));
    assert_eq!(a.password.as_deref(), Some(&b"s3cret"[..]));
    assert_eq!(
        a.raw,
        format!("AUTH LOGIN\r\n{user}\r\n{pass}\r\n").as_bytes()
    );

    // With the user name as initial response, only the password is asked.
    let t = auth_dialog(accept(), &format!("AUTH LOGIN {user}\r\n{pass}\r\n"));
    assert_eq!(
        t.text(),
        wire(&[&ehlo_reply(false, true), PASSWORD_PROMPT, AUTH_OK])
    );
    assert_eq!(t.attempt().password.as_deref(), Some(&b"s3cret"[..]));
}

#[test]
fn auth_cram_md5_records_the_challenge_and_digest() {
    // RFC 2195's example, to check the helper.
    assert_eq!(
        hmac_md5_hex(
            b"tanstaaftanstaaf",
            b"<1896.697170952@postoffice.reston.mci.net>"
        ),
        "b913a602c7eda7a495b4e6e7334d3890"
    );
    let digest = hmac_md5_hex(b"s3cret", CRAM_CHALLENGE.as_bytes());
    let response = b64(format!("alice {digest}").as_bytes());
    let t = auth_dialog(Opts::default(), &format!("AUTH CRAM-MD5\r\n{response}\r\n"));
    assert_eq!(
        t.text(),
        wire(&[
            &ehlo_reply(false, true),
            &format!("334 {}\r\n", b64(CRAM_CHALLENGE.as_bytes())),
            AUTH_FAILED
        ])
    );
    let a = t.attempt();
    assert_eq!(a.mechanism, Mechanism::CramMd5);
    assert_eq!(a.end, AuthEnd::Complete);
    assert_eq!(a.username.as_deref(), Some(&b"alice"[..]));
    assert_eq!(a.password, None);
    assert_eq!(a.challenge.as_deref(), Some(CRAM_CHALLENGE));
    // An analyst can test candidate passwords offline.
    assert_eq!(a.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(
        hmac_md5_hex(b"s3cret", a.challenge.as_deref().unwrap().as_bytes()),
        digest
    );
}

#[test]
fn a_star_cancels_the_exchange() {
    let user = b64(b"alice");
    let challenge = format!("334 {}\r\n", b64(CRAM_CHALLENGE.as_bytes()));
    for (rest, prompts) in [
        ("AUTH LOGIN\r\n*\r\n".to_string(), vec![USERNAME_PROMPT]),
        (
            format!("AUTH LOGIN\r\n{user}\r\n*\r\n"),
            vec![USERNAME_PROMPT, PASSWORD_PROMPT],
        ),
        ("AUTH PLAIN\r\n*\r\n".to_string(), vec!["334 \r\n"]),
        ("AUTH CRAM-MD5\r\n*\r\n".to_string(), vec![&challenge[..]]),
    ] {
        // Even a shell that accepts everything cannot accept a cancellation.
        let t = auth_dialog(accept(), &rest);
        let expected = [&ehlo_reply(false, true)[..]]
            .into_iter()
            .chain(prompts)
            .chain([AUTH_ABORTED])
            .collect::<String>();
        assert_eq!(t.text(), expected, "{rest:?}");
        assert_eq!(t.attempt().end, AuthEnd::Cancelled);
        assert!(!t.auth[0].1);
        assert_eq!(t.attempt().raw, rest.as_bytes());
        assert_eq!(t.errors, 1);
    }
    // What came before the star is kept.
    let t = auth_dialog(Opts::default(), &format!("AUTH LOGIN\r\n{user}\r\n*\r\n"));
    assert_eq!(t.attempt().username.as_deref(), Some(&b"alice"[..]));
    assert_eq!(t.attempt().password, None);
}

#[test]
fn undecodable_responses_end_the_exchange() {
    for (rest, prompt) in [
        ("AUTH PLAIN !!!\r\n", None),
        ("AUTH PLAIN\r\nnot base64\r\n", Some("334 \r\n")),
        ("AUTH LOGIN\r\n%%%\r\n", Some(USERNAME_PROMPT)),
        ("AUTH LOGIN YWxpY2U=\r\n@@\r\n", Some(PASSWORD_PROMPT)),
    ] {
        let t = auth_dialog(accept(), rest);
        let mut expected = ehlo_reply(false, true);
        expected.push_str(prompt.unwrap_or(""));
        expected.push_str(AUTH_UNDECODABLE);
        assert_eq!(t.text(), expected, "{rest:?}");
        assert_eq!(t.attempt().end, AuthEnd::Malformed);
        assert!(!t.auth[0].1);
    }
    let t = auth_dialog(Opts::default(), "AUTH CRAM-MD5\r\n!\r\nNOOP\r\n");
    assert_eq!(t.codes()[1..], [334, 501, 250]);
    assert_eq!(t.replies[2].to_string(), AUTH_UNDECODABLE);
}

#[test]
fn auth_refusals() {
    let in_transaction = "503 5.5.1 Error: MAIL transaction in progress\r\n";
    let bad_mechanism =
        "535 5.7.8 Error: authentication failed: Invalid authentication mechanism\r\n";
    let t = converse_with(
        auth_policy(),
        b"AUTH PLAIN\r\nEHLO c\r\nAUTH\r\nAUTH GSSAPI\r\nAUTH XOAUTH2 dXNlcj1h\r\n\
          MAIL FROM:<a@b>\r\nAUTH LOGIN\r\nRSET\r\nAUTH LOGIN\r\n*\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[
            "503 5.5.1 Error: send HELO/EHLO first\r\n",
            &ehlo_reply(false, true),
            "501 5.5.4 Syntax: AUTH mechanism\r\n",
            bad_mechanism,
            bad_mechanism,
            MAIL_OK,
            in_transaction,
            OK,
            USERNAME_PROMPT,
            AUTH_ABORTED,
        ])
    );
    assert_eq!(t.auth.len(), 1);
    assert_eq!(t.errors, 6);
}

#[test]
fn credentials_with_line_breaks_and_nuls_are_captured_exactly() {
    // PLAIN: authzid NUL user NUL password; the password keeps later NULs.
    let plain = b"ad\rmin\0us\r\ner\0pa\0ss\nword\r\n";
    let t = auth_dialog(Opts::default(), &format!("AUTH PLAIN {}\r\n", b64(plain)));
    let a = t.attempt();
    assert_eq!(a.authzid.as_deref(), Some(&b"ad\rmin"[..]));
    assert_eq!(a.username.as_deref(), Some(&b"us\r\ner"[..]));
    assert_eq!(a.password.as_deref(), Some(&b"pa\0ss\nword\r\n"[..]));
    assert_eq!(t.last(), AUTH_FAILED.trim_end());

    // LOGIN: a user name that looks like a command, a password of NUL and
    // an end-of-data marker.
    let user = b"bob\r\nRCPT TO:<x@y>";
    let pass = b"\0\r\n.\r\n";
    let t = auth_dialog(
        Opts::default(),
        &format!("AUTH LOGIN\r\n{}\r\n{}\r\n", b64(user), b64(pass)),
    );
    assert_eq!(t.attempt().username.as_deref(), Some(&user[..]));
    assert_eq!(t.attempt().password.as_deref(), Some(&pass[..]));
    assert!(!t.effects.iter().any(|e| matches!(e, Effect::Rcpt { .. })));

    // CRAM-MD5: the user name is everything before the last space.
    let t = auth_dialog(
        Opts::default(),
        &format!(
            "AUTH CRAM-MD5\r\n{}\r\n",
            b64(b"we\r\nird user 0123456789abcdef0123456789abcdef")
        ),
    );
    assert_eq!(
        t.attempt().username.as_deref(),
        Some(&b"we\r\nird user"[..])
    );
    assert_eq!(
        t.attempt().digest.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    // None of it ever reaches a reply (the Shell checks every reply line).
}

#[test]
fn lines_inside_an_auth_exchange_are_not_commands() {
    let t = auth_dialog(Opts::default(), "AUTH LOGIN\r\nQUIT\r\nRSET\r\nNOOP\r\n");
    assert_eq!(
        t.text(),
        wire(&[
            &ehlo_reply(false, true),
            USERNAME_PROMPT,
            PASSWORD_PROMPT,
            AUTH_FAILED,
            OK
        ])
    );
    assert!(!t.closed);
    let a = t.attempt();
    assert_eq!(a.username, B64.decode("QUIT").ok());
    assert_eq!(a.password, B64.decode("RSET").ok());
}

// ---------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------

/// SplitMix64: deterministic, good enough to shuffle bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Commands, fragments and noise, glued with assorted line endings.
fn soup(rng: &mut Rng) -> Vec<u8> {
    const COMMANDS: &[&[u8]] = &[
        b"EHLO c",
        b"HELO c",
        b"MAIL FROM:<a@b>",
        b"MAIL FROM:<> SIZE=20 BODY=8BITMIME",
        b"MAIL FROM:<a@b> SIZE=999999999",
        b"MAIL FROM:<a@b> X=1",
        b"MAIL FROM:<a@b> SIZE=x RET=NO",
        b"MAIL FROM:<a@b",
        b"RCPT TO:<r@b>",
        b"RCPT TO:<s@b> NOTIFY=NEVER",
        b"RCPT TO:<nosuchuser@localhost>",
        b"RCPT TO:<>",
        b"DATA",
        b"DATA",
        b"RSET",
        b"NOOP",
        b"NOOP\x00\xff",
        b"EHLO x\rNOOP",
        b"VRFY \x00\xff\r\x1b",
        b"VRFY r\xc3\xa9",
        b"EHLO \xff",
        b"EXPN x",
        b"HELP",
        b"ETRN x",
        b"STARTTLS",
        b"AUTH PLAIN",
        b"AUTH PLAIN AGFsaWNlAHNlY3JldA==",
        b"AUTH LOGIN",
        b"AUTH CRAM-MD5",
        b"AUTH LOGIN Ym9i",
        b"Ym9i",
        b"",
    ];
    /// Lines on which the session closes: rarer, or the soup would end early.
    const CLOSERS: &[&[u8]] = &[
        b"QUIT",
        b"GET / HTTP/1.0",
        b"BDAT",
        b"BDAT x LAST",
        b".",
        b"..x",
        b"*",
        b"123",
    ];
    const ENDINGS: &[&[u8]] = &[b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b""];
    let mut out = Vec::new();
    for _ in 0..rng.below(80) + 1 {
        match rng.below(22) {
            0..=9 => out.extend_from_slice(rng.pick(COMMANDS)),
            10 | 11 => {
                let n = [0, 1, 2, 5, 17, 64, 1000][rng.below(7)];
                let last = if rng.below(2) == 0 { " LAST" } else { "" };
                out.extend_from_slice(format!("BDAT {n}{last}").as_bytes());
            }
            12 | 13 => {
                // Noise, usually inside a line that starts like a word.
                if rng.below(4) != 0 {
                    out.push(b'X');
                }
                let len = rng.below(40);
                out.extend(rng.bytes(len));
            }
            14 => {
                let len = rng.below(400);
                out.extend((0..len).map(|i| b'a' + (i % 26) as u8));
            }
            15 => out.extend_from_slice(rng.pick(&[
                &b"\r\n.\r\n"[..],
                b"\n.\n",
                b"\n.\r\n",
                b"\r\n.\n",
                b"\r.\r",
                b"\r\n.\r",
                b".\r\n",
            ])),
            16 => out.extend_from_slice(b"MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\n"),
            17 => out.extend_from_slice(b"MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nBDAT 7\r\n"),
            18 if rng.below(6) == 0 => out.extend_from_slice(rng.pick(CLOSERS)),
            19 => {
                // A whole message with a noisy body.
                out.extend_from_slice(
                    b"RSET\r\nEHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\n",
                );
                let len = rng.below(200);
                out.extend(rng.bytes(len));
                out.extend_from_slice(b"\r\n.\r\n");
            }
            20 => {
                // A whole BDAT message of noise.
                let len = rng.below(200);
                let head = format!(
                    "RSET\r\nEHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nBDAT {len} LAST\r\n"
                );
                out.extend_from_slice(head.as_bytes());
                out.extend(rng.bytes(len));
            }
            _ if rng.below(2) == 0 => out.extend_from_slice(b"subject: soup"),
            _ => {
                // A whole AUTH exchange, after a fresh greeting or STARTTLS.
                out.extend_from_slice(rng.pick(&[
                    &b"RSET\r\nEHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA=="[..],
                    b"RSET\r\nEHLO c\r\nAUTH LOGIN\r\nYWxpY2U=\r\nczNjcmV0",
                    b"RSET\r\nEHLO c\r\nAUTH CRAM-MD5\r\nYWxpY2UgMDAwMA==",
                    b"RSET\r\nEHLO c\r\nAUTH PLAIN\r\n*",
                    b"EHLO c\r\nSTARTTLS\r\nEHLO c\r\nAUTH LOGIN Ym9i\r\nYm9i",
                ]));
            }
        }
        out.extend_from_slice(rng.pick(ENDINGS));
    }
    out
}

fn random_policy(rng: &mut Rng) -> Policy {
    Policy {
        max_message_size: [0, 1, 7, 64, 300, 10_240_000][rng.below(6)],
        max_recipients: rng.below(4) + 1,
        max_messages: [0, 1, 3, 100][rng.below(4)],
        max_line_length: [1, 2, 8, 33, 200, 2048][rng.below(6)],
        max_errors: [0, 1, 5, 30, 1000, 1000][rng.below(6)],
        strict_order: rng.below(2) == 0,
        starttls: rng.below(2) == 0,
        implicit_tls: rng.below(5) == 0,
        auth: rng.pick(&[AuthOffer::Never, AuthOffer::AfterTls, AuthOffer::Always]),
        ..policy()
    }
}

fn random_opts(rng: &mut Rng) -> Opts {
    Opts {
        accept_auth: rng.below(2) == 0,
        storage_fails: rng.below(8) == 0,
        transparent_tls: rng.below(2) == 0,
    }
}

#[test]
fn hostile_soup_never_breaks_the_core() {
    let mut rng = Rng(0x1a7_12e5);
    let mut seen = Seen::default();
    for case in 0..3000 {
        let policy = Arc::new(random_policy(&mut rng));
        let opts = random_opts(&mut rng);
        let input = soup(&mut rng);
        // One read, then random read sizes: same dialog, and the Shell checks
        // consumption, content placement and reply syntax on every step.
        let whole = run(&policy, opts, [&input[..]]);
        let mut pieces = Vec::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let most = if rng.below(4) == 0 { 4 } else { 300 };
            let k = (rng.below(most) + 1).min(rest.len());
            let (piece, tail) = rest.split_at(k);
            pieces.push(piece);
            rest = tail;
        }
        let chunked = run(&policy, opts, pieces);
        assert!(
            chunked == whole,
            "case {case}: the split changed the dialog\ninput: {:?}",
            String::from_utf8_lossy(&input)
        );
        if case % 16 == 0 {
            assert!(
                run_chunked(&policy, opts, &input, 1) == whole,
                "case {case}: byte by byte differs"
            );
        }
        for m in &whole.messages {
            assert!(
                m.content.len() as u64 <= policy.max_message_size,
                "case {case}"
            );
            seen.data += usize::from(!m.end.chunked);
            seen.bdat += usize::from(m.end.chunked);
            seen.over_limit += usize::from(m.end.summary.over_limit);
            seen.smuggling += usize::from(m.end.summary.flags.smuggling);
        }
        assert!(
            whole.messages.len() <= policy.max_messages as usize,
            "case {case}"
        );
        for (attempt, accepted) in &whole.auth {
            assert!(!accepted || attempt.end == AuthEnd::Complete, "case {case}");
        }
        // The tarpit follows the error count: no delay before the first error.
        if let Some(first) = whole.delays.iter().position(Option::is_some) {
            assert!(first >= 10, "case {case}: delayed from reply {first}");
        }
        let lines: Vec<String> = whole.replies.iter().flat_map(reply_lines).collect();
        seen.abandoned += whole.abandoned.len();
        seen.too_many_errors += usize::from(whole.effects.contains(&Effect::Limit("errors")));
        seen.skipped += usize::from(!whole.skipped.is_empty());
        seen.closed += usize::from(whole.closed);
        seen.open_at_end += usize::from(whole.in_message);
        seen.auth += usize::from(!whole.auth.is_empty());
        seen.auth_accepted += usize::from(whole.auth.iter().any(|(_, ok)| *ok));
        seen.starttls += usize::from(whole.effects.contains(&Effect::StartTls));
        seen.injected += usize::from(!whole.injected.is_empty());
        seen.forbidden += usize::from(lines.iter().any(|l| l == FORBIDDEN.trim_end()));
        seen.bad_utf8 += usize::from(lines.iter().any(|l| l == BAD_UTF8.trim_end()));
        seen.tarpit += usize::from(whole.delays.iter().any(Option::is_some));
    }
    // The soup must actually reach the interesting states.
    eprintln!("{seen:?}");
    for (what, n) in [
        ("DATA messages", seen.data),
        ("BDAT messages", seen.bdat),
        ("oversized messages", seen.over_limit),
        ("smuggling", seen.smuggling),
        ("abandoned BDAT messages", seen.abandoned),
        ("error limits", seen.too_many_errors),
        ("skipped input", seen.skipped),
        ("closes", seen.closed),
        ("messages open at the end", seen.open_at_end),
        ("AUTH exchanges", seen.auth),
        ("accepted AUTH", seen.auth_accepted),
        ("STARTTLS", seen.starttls),
        ("plaintext after STARTTLS", seen.injected),
        ("forbidden lines", seen.forbidden),
        ("invalid UTF-8", seen.bad_utf8),
        ("tarpit", seen.tarpit),
    ] {
        assert!(n >= 20, "only {n} cases with {what}");
    }
}

#[derive(Debug, Default)]
struct Seen {
    data: usize,
    bdat: usize,
    over_limit: usize,
    smuggling: usize,
    abandoned: usize,
    too_many_errors: usize,
    skipped: usize,
    closed: usize,
    open_at_end: usize,
    auth: usize,
    auth_accepted: usize,
    starttls: usize,
    injected: usize,
    forbidden: usize,
    bad_utf8: usize,
    tarpit: usize,
}

#[test]
fn pure_noise_never_breaks_the_core() {
    let mut rng = Rng(42);
    for _ in 0..500 {
        let policy = Arc::new(random_policy(&mut rng));
        let opts = random_opts(&mut rng);
        let len = rng.below(4000);
        let input = rng.bytes(len);
        let whole = run(&policy, opts, [&input[..]]);
        let k = rng.below(64) + 1;
        assert!(run_chunked(&policy, opts, &input, k) == whole);
    }
}
