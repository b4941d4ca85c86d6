//! Scenario tests of the sans-IO SMTP core, without sockets.
//!
//! A small [`Shell`] below drives a [`Session`] exactly as the network shell
//! does: it appends whatever the client sent to the unconsumed bytes, calls
//! `advance` until `NeedMore`, drops the bytes each step consumed, streams
//! message content into the open message, and asks `message_outcome` for the
//! reply once a message is complete. Most scenarios go through [`converse`],
//! which also replays the input in every chunking and requires the dialog to
//! come out identical: how TCP splits the bytes must never matter.

use latrine::smtp::{Action, DataFlags, Effect, MessageEnd, Outcome, Policy, Reply, Session};
use std::sync::Arc;

const HOST: &str = "mx.example.com";
const GREETING: &str = "220 mx.example.com ESMTP Postfix (Debian/GNU)\r\n";
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
const MAIL_OK: &str = "250 2.1.0 Ok\r\n";
const RCPT_OK: &str = "250 2.1.5 Ok\r\n";
const DATA_GO: &str = "354 End data with <CR><LF>.<CR><LF>\r\n";
const OK: &str = "250 2.0.0 Ok\r\n";
const BYE: &str = "221 2.0.0 Bye\r\n";
const TOO_BIG: &str = "552 5.3.4 Message size exceeds fixed limit\r\n";
const NOT_RECOGNIZED: &str = "502 5.5.2 Error: command not recognized\r\n";
const NEED_RCPT: &str = "503 5.5.1 Error: need RCPT command\r\n";
const BDAT_SYNTAX: &str = "501 5.5.4 Syntax: BDAT count [LAST]\r\n";

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
    /// Every reply after the greeting, including message replies.
    replies: Vec<Reply>,
    /// The effect of every command reply, in order.
    effects: Vec<Effect>,
    /// `first` of every `ChunkStart`.
    chunk_starts: Vec<bool>,
    messages: Vec<Message>,
    /// Content of BDAT messages dropped by RSET or HELO/EHLO.
    abandoned: Vec<Vec<u8>>,
    closed: bool,
    /// Input the session never used: after a close, or an incomplete unit.
    unconsumed: Vec<u8>,
    /// Whether a message was still being received at the end.
    in_message: bool,
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
}

/// Drives one session like the network shell does.
struct Shell {
    session: Session,
    /// Received but not yet consumed.
    pending: Vec<u8>,
    /// Where `advance` appends content; drained after every step, as a shell
    /// streaming to disk would.
    content: Vec<u8>,
    /// The message being received.
    open: Option<Vec<u8>>,
    /// Make the "disk" refuse messages.
    storage_fails: bool,
    t: Transcript,
}

impl Shell {
    fn new(policy: &Arc<Policy>) -> Shell {
        let session = Session::new(Arc::clone(policy));
        let greeting = session.greeting();
        Shell {
            session,
            pending: Vec::new(),
            content: Vec::new(),
            open: None,
            storage_fails: false,
            t: Transcript {
                greeting,
                replies: Vec::new(),
                effects: Vec::new(),
                chunk_starts: Vec::new(),
                messages: Vec::new(),
                abandoned: Vec::new(),
                closed: false,
                unconsumed: Vec::new(),
                in_message: false,
            },
        }
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
            self.pending.drain(..step.consumed);
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
                Action::Skipped => assert!(step.consumed > 0),
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
                        // Both drop the envelope, and with it an open BDAT message.
                        Effect::Reset | Effect::Helo { .. } => {
                            if let Some(m) = self.open.take() {
                                self.t.abandoned.push(m);
                            }
                        }
                        _ => {}
                    }
                    self.t.replies.push(reply);
                    self.t.effects.push(effect);
                    if close {
                        assert!(self.session.is_closed());
                        self.t.closed = true;
                        self.t.unconsumed = std::mem::take(&mut self.pending);
                        break;
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
                    let outcome = if self.storage_fails {
                        Outcome::Failed
                    } else {
                        Outcome::Stored {
                            queue_id: &queue_id,
                        }
                    };
                    let reply = self.session.message_outcome(&end, outcome);
                    self.t.replies.push(reply.clone());
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
        assert_well_formed(&self.t.greeting.to_bytes());
        assert_well_formed(&self.t.wire());
        self.t
    }
}

/// Feeds `pieces` one read at a time.
fn run<'a>(policy: &Arc<Policy>, pieces: impl IntoIterator<Item = &'a [u8]>) -> Transcript {
    let mut shell = Shell::new(policy);
    for piece in pieces {
        shell.feed(piece);
    }
    shell.finish()
}

/// Feeds `input` in reads of `k` bytes.
fn run_chunked(policy: &Arc<Policy>, input: &[u8], k: usize) -> Transcript {
    run(policy, input.chunks(k.max(1)))
}

/// The chunk sizes to try: all of them for short dialogs.
fn chunk_sizes(len: usize) -> Vec<usize> {
    if len <= 800 {
        (1..=len).collect()
    } else {
        let mut sizes: Vec<usize> = (1..=48).collect();
        sizes.extend(
            [61, 127, 509, 1021, 4093, len]
                .into_iter()
                .filter(|&k| k <= len),
        );
        sizes
    }
}

fn policy() -> Policy {
    Policy::new(HOST)
}

/// Runs `input` with the default policy in every chunking.
fn converse(input: &[u8]) -> Transcript {
    converse_with(policy(), input)
}

/// Runs `input` in one read, then in every chunk size, and checks that the
/// dialog does not depend on how the bytes arrived.
fn converse_with(policy: Policy, input: &[u8]) -> Transcript {
    let policy = Arc::new(policy);
    let whole = run(&policy, [input]);
    for k in chunk_sizes(input.len()) {
        let t = run_chunked(&policy, input, k);
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
    assert_eq!(t.text(), "250 mx.example.com\r\n");
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
    for keyword in [
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "CHUNKING",
        "SMTPUTF8",
        "DSN",
    ] {
        assert!(lines.iter().any(|l| l == keyword), "{keyword} missing");
    }
    assert_eq!(
        t.effects,
        [Effect::Helo {
            extended: true,
            name: b"client.example".to_vec()
        }]
    );
}

#[test]
fn verbs_are_case_insensitive_and_bare_lf_ends_a_command() {
    let t = converse(b"ehlo a\nhElO b\r\n  noop  \r\n");
    assert_eq!(t.text(), wire(&[EHLO_REPLY, "250 mx.example.com\r\n", OK]));
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
}

#[test]
fn a_new_greeting_drops_the_transaction() {
    let t = converse(
        b"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nHELO again\r\nDATA\r\nRCPT TO:<c@d>\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY,
            MAIL_OK,
            RCPT_OK,
            "250 mx.example.com\r\n",
            NEED_RCPT,
            "503 5.5.1 Error: need MAIL command\r\n"
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
          MAIL FROM:<dave@example.org> AUTH=<> SMTPUTF8 RET=HDRS ENVID=x\r\n",
    );
    assert_eq!(
        t.codes(),
        [250, 250, 250, 250, 250, 250, 250, 250, 250, 250]
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
          MAIL FROM:<a@b> SIZE=ten\r\n\
          MAIL FROM:<a@b> size=10240000\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[EHLO_REPLY, TOO_BIG, TOO_BIG, TOO_BIG, MAIL_OK])
    );
    assert!(
        t.effects[1..4]
            .iter()
            .all(|e| *e == Effect::Limit("message_size"))
    );
}

#[test]
fn unknown_mail_and_rcpt_parameters_are_refused() {
    let t = converse(
        b"MAIL FROM:<a@b> XFORWARD=1\r\n\
          MAIL FROM:<a@b> BODY=8BITMIME\r\n\
          RCPT TO:<c@d> FOO=\x01bar\r\n\
          RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c@d\r\n",
    );
    assert_eq!(
        t.text(),
        wire(&[
            "555 5.5.4 Unsupported option: XFORWARD=1\r\n",
            MAIL_OK,
            "555 5.5.4 Unsupported option: FOO=?bar\r\n",
            RCPT_OK,
        ])
    );
}

#[test]
fn malformed_mail_and_rcpt_are_syntax_errors() {
    let t = converse(
        b"MAIL\r\nMAIL a@b\r\nMAIL FROM:\r\nMAIL FROM:<a@b\r\nMAIL FROM:<a@b>junk\r\n\
          MAIL FROM:<a@b>\r\nRCPT\r\nRCPT TO:\r\nRCPT FROM:<c@d>\r\n",
    );
    let mail_syntax = "501 5.5.4 Syntax: MAIL FROM:<address>\r\n";
    let rcpt_syntax = "501 5.5.4 Syntax: RCPT TO:<address>\r\n";
    assert_eq!(
        t.text(),
        wire(&[
            mail_syntax,
            mail_syntax,
            mail_syntax,
            mail_syntax,
            mail_syntax,
            MAIL_OK,
            rcpt_syntax,
            rcpt_syntax,
            rcpt_syntax
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
    let t = converse(b"EHLO c\r\nRCPT TO:<r@b>\r\n");
    assert_eq!(
        t.text(),
        wire(&[EHLO_REPLY, "503 5.5.1 Error: need MAIL command\r\n"])
    );
    assert_eq!(t.effects[1], Effect::Error);
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
            "554 5.5.1 Error: no valid recipients\r\n",
            RCPT_OK,
            "501 5.5.4 Syntax: DATA\r\n",
            DATA_GO,
            "250 2.0.0 Ok: queued as C0FFEE0000\r\n",
        ])
    );
    assert_eq!(t.message(0).content, b"");
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
    let one_read = run(&policy, [&input[..]]);
    assert_eq!(one_read.text(), expected);
    assert_eq!(
        one_read.message(0).content,
        b"Subject: pipelined\r\n\r\nline\r\n"
    );
    let byte_by_byte = run_chunked(&policy, input, 1);
    assert_eq!(byte_by_byte, one_read);
    // And every other split, via converse.
    assert_eq!(converse(input), one_read);
}

#[test]
fn pipelined_errors_do_not_desynchronise_later_commands() {
    // A refused DATA leaves the client "sending content" that is read as
    // commands, exactly as Postfix does: each line gets its own reply.
    let t =
        converse(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<bad\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n");
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY,
            MAIL_OK,
            "501 5.5.4 Syntax: RCPT TO:<address>\r\n",
            "554 5.5.1 Error: no valid recipients\r\n",
            NOT_RECOGNIZED,
            NOT_RECOGNIZED,
            BYE
        ])
    );
    assert!(t.messages.is_empty());
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
            "250 mx.example.com\r\n",
            MAIL_OK,
            RCPT_OK,
            OK,
            "503 5.5.1 Error: need MAIL command\r\n",
            NEED_RCPT,
            "501 5.5.4 Syntax: RSET\r\n",
            MAIL_OK,
        ])
    );
    assert_eq!(t.effects[3], Effect::Reset);
}

#[test]
fn storage_failure_is_answered_with_451() {
    let policy = Arc::new(policy());
    let mut shell = Shell::new(&policy);
    shell.storage_fails = true;
    shell.feed(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n");
    let t = shell.finish();
    assert_eq!(
        t.message(0).reply.to_string(),
        "451 4.3.0 Error: queue file write error\r\n"
    );
    assert_eq!(t.last(), "250 2.0.0 Ok");
}

#[test]
fn a_full_spool_refuses_new_transactions() {
    let policy = Arc::new(policy());
    let mut shell = Shell::new(&policy);
    shell.session.set_storage_full(true);
    shell.feed(b"HELO c\r\nMAIL FROM:<a@b>\r\n");
    shell.session.set_storage_full(false);
    shell.feed(b"MAIL FROM:<a@b>\r\n");
    let t = shell.finish();
    assert_eq!(
        t.text(),
        wire(&[
            "250 mx.example.com\r\n",
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
    let t = converse(b"NOOP\r\nnoop with args\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(t.text(), wire(&[OK, OK, BYE]));
    assert!(t.closed);
    assert_eq!(t.unconsumed, b"NOOP\r\n");
}

#[test]
fn vrfy_answers_252_with_a_printable_argument() {
    let t = converse(b"VRFY root\r\nVRFY\r\nVRFY \x1b[31mred\xff\r\n");
    assert_eq!(
        t.text(),
        "252 2.0.0 root\r\n\
         501 5.5.4 Syntax: VRFY address [SMTPUTF8]\r\n\
         252 2.0.0 ?[31mred?\r\n"
    );
}

#[test]
fn expn_and_help_are_not_recognized() {
    let t = converse(b"EXPN staff\r\nHELP\r\nHELP DATA\r\n");
    assert_eq!(
        t.text(),
        wire(&[NOT_RECOGNIZED, NOT_RECOGNIZED, NOT_RECOGNIZED])
    );
}

#[test]
fn etrn_needs_a_greeting_and_a_domain() {
    let t = converse(b"ETRN example.org\r\nHELO c\r\nETRN\r\nETRN example.org\r\n");
    assert_eq!(
        t.text(),
        "503 5.5.1 Error: send HELO/EHLO first\r\n\
         250 mx.example.com\r\n\
         500 Syntax: ETRN domain\r\n\
         458 Unable to queue messages\r\n"
    );
}

#[test]
fn unknown_commands_and_empty_lines() {
    let t = converse(b"XYZZY\r\n\r\n   \r\nMAILFROM:<a@b>\r\n\x00\x01\x02\r\n");
    assert_eq!(
        t.text(),
        wire(&[
            NOT_RECOGNIZED,
            "500 5.5.2 Error: bad syntax\r\n",
            "500 5.5.2 Error: bad syntax\r\n",
            NOT_RECOGNIZED,
            NOT_RECOGNIZED
        ])
    );
    assert!(t.effects.iter().all(|e| *e == Effect::Error));
}

#[test]
fn an_http_request_is_answered_once_and_closed() {
    for method in ["GET", "POST", "CONNECT", "get"] {
        let input = format!("{method} / HTTP/1.1\r\nHost: mx.example.com\r\n\r\n");
        let t = converse(input.as_bytes());
        assert_eq!(
            t.text(),
            "221 2.7.0 Error: I can break rules, too. Goodbye.\r\n"
        );
        assert!(t.closed);
        assert_eq!(t.unconsumed, b"Host: mx.example.com\r\n\r\n");
    }
}

#[test]
fn starttls_and_auth_are_unavailable() {
    let t = converse(b"EHLO c\r\nSTARTTLS\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH LOGIN\r\n");
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY,
            "502 5.5.1 Error: command not implemented\r\n",
            "503 5.5.1 Error: authentication not enabled\r\n",
            "503 5.5.1 Error: authentication not enabled\r\n",
        ])
    );
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
            "503 5.5.1 Error: need MAIL command\r\n",
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

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

#[test]
fn an_oversized_message_is_truncated_and_refused_in_sync() {
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
    assert_eq!(m.reply.to_string(), TOO_BIG);
    // The dialog goes on: the NOOP after the message is answered.
    assert_eq!(t.last(), "250 2.0.0 Ok");
    assert!(!t.in_message);

    // A message of exactly the limit is fine.
    let mut body = vec![b'y'; 98];
    body.extend_from_slice(b"\r\n.\r\n");
    let t = send_data(small.clone(), &body);
    assert_eq!(t.message(0).content.len(), 100);
    assert!(!t.message(0).end.summary.over_limit);
    assert_eq!(t.message(0).reply.code(), 250);

    // SIZE= is checked against the same limit.
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
fn an_overlong_line_is_answered_once_and_skipped() {
    let short = Policy {
        max_line_length: 32,
        ..policy()
    };
    let mut input = b"NOOP ".to_vec();
    input.extend_from_slice(&[b'a'; 200]);
    input.extend_from_slice(b" QUIT\r\nNOOP\r\n");
    let t = converse_with(short.clone(), &input);
    assert_eq!(t.text(), wire(&["500 5.5.2 Error: line too long\r\n", OK]));
    assert_eq!(t.effects, [Effect::Limit("line_length"), Effect::None]);
    assert!(!t.closed, "the QUIT inside the overlong line was skipped");

    // The limit counts the line ending: 32 bytes in all is fine, 33 is not.
    let exact = format!("NOOP {}\r\n", "a".repeat(25));
    assert_eq!(exact.len(), 32);
    let over = format!("NOOP {}\r\n", "a".repeat(26));
    let t = converse_with(short.clone(), format!("{exact}{over}NOOP\r\n").as_bytes());
    assert_eq!(
        t.text(),
        wire(&[OK, "500 5.5.2 Error: line too long\r\n", OK])
    );

    // An overlong MAIL does not open a transaction.
    let mail = format!("MAIL FROM:<{}@b>\r\nRCPT TO:<r@b>\r\n", "x".repeat(100));
    let t = converse_with(short, mail.as_bytes());
    assert_eq!(
        t.text(),
        wire(&[
            "500 5.5.2 Error: line too long\r\n",
            "503 5.5.1 Error: need MAIL command\r\n"
        ])
    );
}

#[test]
fn an_overlong_line_without_end_keeps_being_skipped() {
    let short = Policy {
        max_line_length: 16,
        ..policy()
    };
    let t = converse_with(short, &[b'z'; 500]);
    assert_eq!(t.text(), "500 5.5.2 Error: line too long\r\n");
    assert!(t.unconsumed.is_empty());
}

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
            "500 5.5.2 Error: bad syntax\r\n",
            "421 4.7.0 mx.example.com Error: too many errors\r\n"
        ])
    );
    assert!(t.closed);
    assert_eq!(t.unconsumed, b"NOOP\r\nQUIT\r\n");
    assert_eq!(t.effects.last(), Some(&Effect::Limit("errors")));

    // The 421 goes out right after the last error, without more input.
    let t = converse_with(strict, b"A\r\nB\r\nC\r\n");
    assert_eq!(t.codes(), [502, 502, 502, 421]);
    assert!(t.closed);
}

#[test]
fn the_default_error_limit_is_twenty() {
    let t = converse(&b"BOGUS\r\n".repeat(25));
    assert_eq!(t.replies.len(), 21);
    assert!(t.codes()[..20].iter().all(|&c| c == 502));
    assert_eq!(t.last(), "421 4.7.0 mx.example.com Error: too many errors");
    assert_eq!(t.unconsumed, b"BOGUS\r\n".repeat(5));
}

#[test]
fn refusals_at_a_limit_count_as_errors() {
    let p = Policy {
        max_errors: 2,
        max_recipients: 1,
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
fn an_oversized_message_gets_552_even_if_storage_failed() {
    let small = Policy {
        max_message_size: 4,
        ..policy()
    };
    let policy = Arc::new(small);
    let mut shell = Shell::new(&policy);
    shell.storage_fails = true;
    shell.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\n0123456789\r\n.\r\n");
    let t = shell.finish();
    assert_eq!(t.message(0).reply.to_string(), TOO_BIG);
}

#[test]
fn partial_summary_of_an_unfinished_message() {
    let policy = Arc::new(policy());
    let mut shell = Shell::new(&policy);
    assert_eq!(shell.session.partial_summary(), None);
    shell.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nDATA\r\n..half a\nmess");
    let s = shell.session.partial_summary().expect("in DATA");
    assert_eq!(s.size, 12);
    assert!(s.flags.bare_lf);
    assert!(shell.session.in_message());
    assert_eq!(shell.open.as_deref(), Some(&b".half a\nmess"[..]));

    let mut shell = Shell::new(&policy);
    shell.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nBDAT 4\r\nabcdBDAT 10 LAST\r\nefg");
    let s = shell.session.partial_summary().expect("in BDAT");
    assert_eq!(s.size, 7);
    assert!(shell.session.in_message());
    // Between chunks the message is still open.
    let mut shell = Shell::new(&policy);
    shell.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\nBDAT 4\r\nabcd");
    assert!(shell.session.in_message());
    assert_eq!(shell.session.partial_summary().map(|s| s.size), Some(4));
}

// ---------------------------------------------------------------------------
// BDAT (RFC 3030)
// ---------------------------------------------------------------------------

const ENVELOPE: &[u8] = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\n";

fn with_envelope(rest: &[u8]) -> Vec<u8> {
    [ENVELOPE, rest].concat()
}

#[test]
fn bdat_last_in_one_chunk() {
    let t = converse(&with_envelope(b"BDAT 5 LAST\r\nhelloQUIT\r\n"));
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY,
            MAIL_OK,
            RCPT_OK,
            "250 2.0.0 Ok: queued as C0FFEE0000\r\n",
            BYE
        ])
    );
    assert_eq!(t.chunk_starts, [true]);
    let m = t.message(0);
    assert_eq!(m.content, b"hello");
    assert_eq!(m.end.envelope.rcpt_to, [b"r@b".to_vec()]);
    assert_eq!(m.end.summary.size, 5);
    assert!(m.end.chunked);
    assert!(
        !t.effects.contains(&Effect::MessageStart),
        "BDAT opens with ChunkStart"
    );
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
            "250 2.0.0 Ok: 12 bytes\r\n",
            "250 2.0.0 Ok: queued as C0FFEE0000\r\n",
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
    assert_eq!(t.last(), "250 2.0.0 Ok");
}

#[test]
fn bad_bdat_syntax() {
    let t = converse(&with_envelope(
        b"BDAT\r\nBDAT x\r\nBDAT -1\r\nBDAT 5 FIRST\r\nBDAT 5 LAST more\r\nBDAT 99999999999999999999999\r\nBDAT 2 LAST\r\nok",
    ));
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY,
            MAIL_OK,
            RCPT_OK,
            BDAT_SYNTAX,
            BDAT_SYNTAX,
            BDAT_SYNTAX,
            BDAT_SYNTAX,
            BDAT_SYNTAX,
            BDAT_SYNTAX,
            "250 2.0.0 Ok: queued as C0FFEE0000\r\n"
        ])
    );
    assert_eq!(t.message(0).content, b"ok");
}

#[test]
fn bdat_without_a_transaction_is_refused() {
    // The chunk is not read: like after a refused DATA, the client is out of
    // sync and its chunk is read as commands.
    let t =
        converse(b"EHLO c\r\nBDAT 6 LAST\r\nNOOP\r\nMAIL FROM:<a@b>\r\nBDAT 6 LAST\r\nNOOP\r\n");
    assert_eq!(
        t.text(),
        wire(&[
            EHLO_REPLY,
            NEED_RCPT,
            OK,
            MAIL_OK,
            "554 5.5.1 Error: no valid recipients\r\n",
            OK
        ])
    );
    assert!(t.chunk_starts.is_empty());
}

#[test]
fn bdat_over_the_size_limit() {
    let small = Policy {
        max_message_size: 10,
        ..policy()
    };
    let t = converse_with(
        small,
        &with_envelope(b"BDAT 8\r\n12345678BDAT 8 LAST\r\nabcdefghNOOP\r\n"),
    );
    assert_eq!(t.codes()[3..], [250, 552, 250]);
    let m = t.message(0);
    assert_eq!(m.content, b"12345678ab");
    assert_eq!(m.end.summary.size, 16);
    assert_eq!(m.end.summary.stored, 10);
    assert!(m.end.summary.over_limit);
    assert_eq!(m.reply.to_string(), TOO_BIG);
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
    // RFC 3030: "If a DATA command is issued after a BDAT for the current
    // transaction, a 503 'Bad sequence of commands' MUST be issued."
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
            "250 2.0.0 Ok: queued as C0FFEE0000\r\n",
            MAIL_OK,
            RCPT_OK,
            "250 2.0.0 Ok: queued as C0FFEE0001\r\n",
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
        b"RCPT TO:<r@b>",
        b"RCPT TO:<s@b> NOTIFY=NEVER",
        b"DATA",
        b"DATA",
        b"RSET",
        b"NOOP",
        b"VRFY \x00\xff\r\x1b",
        b"EXPN x",
        b"HELP",
        b"ETRN x",
        b"STARTTLS",
        b"AUTH PLAIN",
        b"BDAT",
        b"BDAT x LAST",
        b".",
        b"..",
        b"..x",
        b".x",
        b"",
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
            18 if rng.below(8) == 0 => {
                out.extend_from_slice(rng.pick(&[&b"QUIT"[..], b"GET / HTTP/1.0"]))
            }
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
            _ => out.extend_from_slice(b"subject: soup"),
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
        ..policy()
    }
}

#[test]
fn hostile_soup_never_breaks_the_core() {
    let mut rng = Rng(0x1a7_12e5);
    let mut seen = Seen::default();
    for case in 0..3000 {
        let policy = Arc::new(random_policy(&mut rng));
        let input = soup(&mut rng);
        // One read, then random read sizes: same dialog, and the Shell checks
        // consumption, content placement and reply syntax on every step.
        let whole = run(&policy, [&input[..]]);
        let mut pieces = Vec::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let most = if rng.below(4) == 0 { 4 } else { 300 };
            let k = (rng.below(most) + 1).min(rest.len());
            let (piece, tail) = rest.split_at(k);
            pieces.push(piece);
            rest = tail;
        }
        let chunked = run(&policy, pieces);
        assert!(
            chunked == whole,
            "case {case}: the split changed the dialog\ninput: {:?}",
            String::from_utf8_lossy(&input)
        );
        if case % 16 == 0 {
            assert!(
                run_chunked(&policy, &input, 1) == whole,
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
        seen.abandoned += whole.abandoned.len();
        seen.too_many_errors += usize::from(whole.effects.contains(&Effect::Limit("errors")));
        seen.overlong += usize::from(whole.effects.contains(&Effect::Limit("line_length")));
        seen.closed += usize::from(whole.closed);
        seen.open_at_end += usize::from(whole.in_message);
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
        ("overlong lines", seen.overlong),
        ("closes", seen.closed),
        ("messages open at the end", seen.open_at_end),
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
    overlong: usize,
    closed: usize,
    open_at_end: usize,
}

#[test]
fn pure_noise_never_breaks_the_core() {
    let mut rng = Rng(42);
    for _ in 0..500 {
        let policy = Arc::new(random_policy(&mut rng));
        let len = rng.below(4000);
        let input = rng.bytes(len);
        let whole = run(&policy, [&input[..]]);
        let k = rng.below(64) + 1;
        assert!(run_chunked(&policy, &input, k) == whole);
    }
}
