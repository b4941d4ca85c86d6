//! The checks behind latrine's fuzz targets, shared by the libFuzzer binaries
//! (`fuzz/fuzz_targets/*.rs`) and by `tests/fuzz_regressions.rs`, which
//! includes this file with `#[path]` and replays the seeds and every crash
//! found through exactly the same code.
//!
//! Each function takes arbitrary bytes and panics when an invariant breaks.
//! Only `std` and `latrine` are used, so that the file compiles in both places.

#![allow(dead_code)]

use latrine::escape::{escape_ascii, escape_text, unescape};
use latrine::smtp::{Action, AuthEnd, AuthOffer, Effect, Outcome, Persona, Policy, Reply, Session};
use latrine::spool::Manifest;
use latrine::spool::attachments::{self, MAX_ATTACHMENTS, MAX_DEPTH};
use latrine::spool::transcript::parse_record;
use std::sync::Arc;

/// Whether `LATRINE_FUZZ_KNOWN` (a comma-separated list) names this bug, so
/// that a long fuzzing run can go past a bug already reported instead of
/// finding it again and again. Names: `schema` (a manifest of another major
/// version is accepted).
pub fn known_bug(name: &str) -> bool {
    static KNOWN: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    KNOWN
        .get_or_init(|| {
            std::env::var("LATRINE_FUZZ_KNOWN")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .iter()
        .any(|k| k == name)
}

/// Bytes at the start of an `smtp_session` input that choose the policy and
/// the chunking; the dialog follows.
pub const SESSION_HEADER: usize = 8;

/// The policy and driver settings read from the first [`SESSION_HEADER`] bytes.
///
/// | byte | meaning |
/// |---|---|
/// | 0 | bit 0 `starttls`, bit 1 `implicit_tls`, bits 2-3 `auth` (0 never, 1 after TLS, 2-3 always), bit 4 `strict_order`, bit 5 toggle `storage_full` at every chunk, bit 6 first message outcome `Failed`, bit 7 first AUTH refused |
/// | 1 | `max_message_size`: < 128 → that many bytes; else `1024 + 8 * (b - 128)` |
/// | 2 | `max_recipients` = `1 + b % 4`; persona `(b >> 2) % 3`: postfix, exim (its own command grammar), exchange |
/// | 3 | `max_messages` = `1 + b % 4` |
/// | 4 | `max_line_length`: < 128 → `512 + b`; else `b - 120` (8..135, below what the config allows) |
/// | 5 | `max_errors` = `1 + b % 24` |
/// | 6 | chunking: 0 → all at once; else chunks of 1..=b bytes from a generator seeded by byte 7 |
/// | 7 | seed of the chunk generator and of the CRAM-MD5 entropy |
#[derive(Debug, Clone)]
pub struct SessionKnobs {
    pub policy: Policy,
    pub toggle_storage_full: bool,
    pub first_outcome_failed: bool,
    pub first_auth_refused: bool,
    pub max_chunk: u8,
    pub seed: u8,
}

impl SessionKnobs {
    pub fn parse(header: &[u8; SESSION_HEADER]) -> SessionKnobs {
        let [flags, size, rcpts, msgs, line, errors, max_chunk, seed] = *header;
        // Building a policy parses the persona's TOML: once each is enough.
        const PERSONAS: [&str; 3] = ["postfix", "exim", "exchange"];
        static BASE: [std::sync::OnceLock<Policy>; 3] = [const { std::sync::OnceLock::new() }; 3];
        let which = usize::from(rcpts >> 2) % PERSONAS.len();
        let mut policy = BASE[which]
            .get_or_init(|| Policy {
                persona: Persona::builtin(PERSONAS[which]).expect("a built-in persona"),
                ..Policy::new("mx.example.com")
            })
            .clone();
        policy.starttls = flags & 1 != 0;
        policy.implicit_tls = flags & 2 != 0;
        policy.auth = match (flags >> 2) & 3 {
            0 => AuthOffer::Never,
            1 => AuthOffer::AfterTls,
            _ => AuthOffer::Always,
        };
        policy.strict_order = flags & 16 != 0;
        policy.max_message_size = if size < 128 {
            u64::from(size)
        } else {
            1024 + 8 * u64::from(size - 128)
        };
        policy.max_recipients = 1 + usize::from(rcpts % 4);
        policy.max_messages = 1 + u32::from(msgs % 4);
        policy.max_line_length = if line < 128 {
            512 + usize::from(line)
        } else {
            usize::from(line) - 120
        };
        policy.max_errors = 1 + u32::from(errors % 24);
        SessionKnobs {
            policy,
            toggle_storage_full: flags & 32 != 0,
            first_outcome_failed: flags & 64 != 0,
            first_auth_refused: flags & 128 != 0,
            max_chunk,
            seed,
        }
    }
}

/// Splits `data` as TCP might: all at once, or in pseudo-random chunks.
fn chunks(data: &[u8], max_chunk: u8, seed: u8) -> Vec<&[u8]> {
    if max_chunk == 0 {
        return vec![data];
    }
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = 1 + (state % u32::from(max_chunk)) as usize;
        let (head, tail) = rest.split_at(n.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// A reply on the wire must be `\d\d\d[ -][^\r\n]*\r\n` lines, one code,
/// `-` on all lines but the last; nothing the client chose may bring a
/// control character into it.
pub fn check_reply(reply: &Reply) {
    let code = reply.code();
    assert!((200..600).contains(&code), "reply code {code} out of range");
    assert!(!reply.lines().is_empty(), "reply without lines");
    let wire = reply.to_bytes();
    let code_text = code.to_string();
    let lines: Vec<&[u8]> = wire.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), reply.lines().len(), "reply lines: {wire:?}");
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        assert!(line.len() >= 6, "short reply line {line:?}");
        assert!(line[..3].iter().all(u8::is_ascii_digit), "{line:?}");
        assert_eq!(&line[..3], code_text.as_bytes(), "{line:?}");
        assert_eq!(line[3], if last { b' ' } else { b'-' }, "{line:?}");
        let text = &line[4..line.len() - 2];
        assert_eq!(&line[line.len() - 2..], b"\r\n", "{line:?}");
        assert!(
            text.iter().all(|&b| b >= 0x20 && b != 0x7f),
            "control byte in reply line {line:?}"
        );
    }
}

/// Drives a [`Session`] the way the network shell does (`listen::connection`)
/// and checks its invariants (see `fuzz_targets/smtp_session.rs`). When the
/// dialog was cut into chunks, it is replayed in one piece as well and both
/// runs must give the same replies, messages and AUTH attempts: how TCP
/// splits the bytes must never matter. The comparison stops at STARTTLS,
/// after which the shell drops the rest of what it had read in plaintext,
/// and at Exim's synchronization error, which is about what had arrived.
pub fn smtp_session(data: &[u8]) {
    let Some((header, dialog)) = data.split_first_chunk::<SESSION_HEADER>() else {
        return;
    };
    let knobs = SessionKnobs::parse(header);
    let split = chunks(dialog, knobs.max_chunk, knobs.seed);
    let chunked = drive(&knobs, &split);
    if split.len() > 1 && !knobs.toggle_storage_full {
        let whole = drive(&knobs, &[dialog]);
        let cut = |r: &[String]| -> usize {
            r.iter()
                .position(|e| e.starts_with("reply ") && e.contains(" StartTls close="))
                .map_or(r.len(), |i| i + 1)
        };
        // Exim refuses a command sent before it answered the previous one
        // (when it did not offer PIPELINING): whether it had arrived yet
        // depends on the cut, in the real Exim as here. The runs are
        // compared up to the first such refusal in either.
        let desync = |r: &[String]| -> usize {
            r.iter()
                .position(|e| e.starts_with("reply \"554 SMTP synchronization error"))
                .unwrap_or(r.len())
        };
        let sync_at = desync(&chunked).min(desync(&whole));
        let (a, b) = (
            &chunked[..cut(&chunked).min(sync_at)],
            &whole[..cut(&whole).min(sync_at)],
        );
        if a != b {
            let i = a
                .iter()
                .zip(b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            panic!(
                "the dialog depends on how it was cut: after {i} equal events,\n  in chunks: {:?}\n  in one piece: {:?}",
                a.get(i),
                b.get(i)
            );
        }
    }
}

/// One run of the dialog, fed in `split` chunks. Returns what a client and
/// the spool would see: replies, messages (content and summary) and AUTH
/// attempts, in order, as text.
fn drive(knobs: &SessionKnobs, split: &[&[u8]]) -> Vec<String> {
    let mut record = Vec::new();
    let dialog_len: usize = split.iter().map(|c| c.len()).sum();
    let policy = Arc::new(knobs.policy.clone());
    let max_size = policy.max_message_size;
    let mut session = Session::new(policy.clone());
    session.set_entropy(
        u64::from(knobs.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        1_700_000_000,
    );
    check_reply(&session.greeting());
    assert_eq!(session.tls_active(), policy.implicit_tls);

    let mut buffer: Vec<u8> = Vec::new();
    let mut content: Vec<u8> = Vec::new();
    let mut closed = false;
    let mut storage_full = false;
    let mut outcomes = 0u32;
    let mut auths = 0u32;
    let mut message_ends = 0u32;
    // The message being received, as the driver sees it: opened by
    // `MessageStart` or `ChunkStart { first: true }`, closed by its end.
    let mut open: Option<(bool, u64, u64)> = None; // (chunked, content, consumed)
    let mut steps = 0usize;
    let step_budget = 16 * (dialog_len + 16);
    let mut message_content: Vec<u8> = Vec::new();

    for &chunk in split {
        if knobs.toggle_storage_full {
            storage_full = !storage_full;
            session.set_storage_full(storage_full);
        }
        buffer.extend_from_slice(chunk);
        let mut pos = 0;
        let mut idle = 0; // consecutive steps that consumed nothing
        loop {
            steps += 1;
            assert!(steps <= step_budget, "no progress: {steps} steps");
            content.clear();
            let step = session.advance(&buffer[pos..], &mut content);
            let input_len = buffer.len() - pos;
            assert!(
                step.consumed <= input_len,
                "consumed {} of {input_len} bytes",
                step.consumed
            );
            if closed {
                assert_eq!(
                    step.action,
                    latrine::smtp::Action::NeedMore,
                    "closed session acted"
                );
                assert_eq!(step.consumed, 0);
                assert!(session.is_closed(), "closed session reopened");
                break;
            }
            let unit = &buffer[pos..pos + step.consumed];
            pos += step.consumed;
            if step.consumed == 0 && step.action != Action::NeedMore {
                idle += 1;
                assert!(
                    idle <= 4,
                    "{idle} steps in a row consumed nothing: {:?}",
                    step.action
                );
            } else {
                idle = 0;
            }
            let _ = session.reply_delay();
            let _ = session.partial_summary();
            if !matches!(step.action, Action::Content | Action::MessageEnd(_)) {
                assert!(
                    content.is_empty(),
                    "content outside a message: {:?}",
                    step.action
                );
            }
            match step.action {
                Action::NeedMore => {
                    assert_eq!(step.consumed, 0, "NeedMore consumed bytes");
                    // The shell keeps the unconsumed bytes: they stay bounded.
                    assert!(
                        input_len < policy.max_line_length.max(1),
                        "NeedMore with {input_len} bytes buffered (line limit {})",
                        policy.max_line_length
                    );
                    break;
                }
                Action::Content => {
                    assert!(step.consumed > 0, "Content consumed nothing");
                    assert!(session.in_message(), "Content outside a message");
                    message_content.extend_from_slice(&content);
                    let (_, stored, seen) = open.as_mut().expect("Content without an open message");
                    *stored += content.len() as u64;
                    *seen += step.consumed as u64;
                    assert!(*stored <= max_size, "stored {stored} > limit {max_size}");
                    assert!(
                        *stored <= *seen,
                        "more content ({stored}) than bytes ({seen})"
                    );
                }
                Action::Skipped => {
                    assert!(step.consumed > 0, "Skipped nothing");
                }
                Action::ChunkStart { first } => {
                    assert!(!unit.is_empty(), "ChunkStart consumed nothing");
                    if first {
                        assert!(
                            !matches!(open, Some((true, ..))),
                            "first BDAT chunk while a BDAT message is open"
                        );
                        open = Some((true, 0, 0));
                        message_content.clear();
                    } else {
                        assert!(
                            matches!(open, Some((true, ..))),
                            "BDAT continuation without an open BDAT message"
                        );
                    }
                }
                Action::Reply {
                    reply,
                    effect,
                    close,
                } => {
                    check_reply(&reply);
                    record.push(format!(
                        "reply {:?} {effect:?} close={close}",
                        reply.to_bytes().escape_ascii().to_string()
                    ));
                    if close {
                        assert!(session.is_closed(), "close without closing");
                        closed = true;
                    } else {
                        assert!(!session.is_closed(), "closed without saying so");
                    }
                    match effect {
                        Effect::MessageStart => {
                            assert_eq!(reply.code(), 354);
                            assert!(open.is_none(), "DATA while a message is open: {open:?}");
                            open = Some((false, 0, 0));
                            message_content.clear();
                            assert!(session.in_message());
                        }
                        Effect::Reset | Effect::Helo { .. } | Effect::StartTls => {
                            // An open BDAT message is abandoned.
                            open = None;
                            assert!(!session.in_message(), "message still open after {effect:?}");
                        }
                        Effect::Error | Effect::Limit(_) => {
                            // Postfix's "221 2.7.0 Error: I can break rules,
                            // too" to an HTTP request is an error that closes.
                            assert!(
                                reply.code() >= 400 || close,
                                "error effect with {}",
                                reply.code()
                            );
                        }
                        _ => {}
                    }
                    if reply.code() >= 400 {
                        assert!(
                            matches!(effect, Effect::Error | Effect::Limit(_)),
                            "{} with effect {effect:?}",
                            reply.code()
                        );
                    }
                    if closed {
                        continue;
                    }
                    if matches!(effect, Effect::StartTls) {
                        assert!(session.tls_active());
                        // The shell never executes plaintext that followed
                        // STARTTLS; the next chunk stands for TLS records.
                        pos = buffer.len();
                        break;
                    }
                }
                Action::Auth(attempt) => {
                    assert!(step.consumed > 0, "AUTH end consumed nothing");
                    assert!(open.is_none(), "AUTH inside a message");
                    let accept = auths.is_multiple_of(2) != knobs.first_auth_refused;
                    auths += 1;
                    let accepted = accept && attempt.end == AuthEnd::Complete;
                    let reply = session.auth_outcome(&attempt, accepted);
                    check_reply(&reply);
                    record.push(format!(
                        "auth {attempt:?} -> {:?}",
                        reply.to_bytes().escape_ascii().to_string()
                    ));
                    if accepted {
                        assert_eq!(reply.code(), 235);
                    } else {
                        assert!(reply.code() >= 400);
                    }
                }
                Action::MessageEnd(end) => {
                    let (chunked, mut stored, mut seen) =
                        open.take().expect("MessageEnd without an open message");
                    stored += content.len() as u64;
                    seen += step.consumed as u64;
                    message_content.extend_from_slice(&content);
                    assert_eq!(message_content.len() as u64, stored);
                    assert_eq!(
                        end.chunked, chunked,
                        "message opened one way, ended another"
                    );
                    assert_eq!(end.summary.stored, stored, "summary vs content given");
                    assert!(stored <= max_size, "stored {stored} > limit {max_size}");
                    assert!(end.summary.size >= end.summary.stored);
                    assert_eq!(end.summary.over_limit, end.summary.size > max_size);
                    if !chunked {
                        assert!(
                            stored <= seen,
                            "more content ({stored}) than bytes ({seen})"
                        );
                    }
                    let rcpts = end.envelope.rcpt_to.len();
                    assert!(
                        (1..=policy.max_recipients).contains(&rcpts),
                        "message with {rcpts} recipients (limit {})",
                        policy.max_recipients
                    );
                    message_ends += 1;
                    assert!(
                        message_ends <= policy.max_messages,
                        "{message_ends} messages, limit {}",
                        policy.max_messages
                    );
                    assert!(!session.in_message(), "still in a message after its end");
                    let failed = outcomes.is_multiple_of(2) == knobs.first_outcome_failed;
                    outcomes += 1;
                    let outcome = if failed {
                        Outcome::Failed
                    } else {
                        Outcome::Stored {
                            queue_id: "4F2A31C0D7",
                        }
                    };
                    let reply = session.message_outcome(&end, outcome);
                    check_reply(&reply);
                    record.push(format!(
                        "message {end:?} content {:?} -> {:?}",
                        message_content.escape_ascii().to_string(),
                        reply.to_bytes().escape_ascii().to_string()
                    ));
                    // Exim refuses a message with a line over 998 octets
                    // after its final dot (Debian's DATA ACL).
                    let limit = knobs.policy.persona.max_body_line_length;
                    let longest = message_content
                        .split(|&b| b == b'\n')
                        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len() as u64)
                        .max()
                        .unwrap_or(0);
                    let long_line = limit > 0 && longest > limit && !end.chunked;
                    message_content.clear();
                    if end.summary.over_limit || failed || long_line {
                        assert!(reply.code() >= 400, "{reply:?}");
                    } else {
                        assert_eq!(reply.code(), 250, "{reply:?}");
                    }
                }
            }
        }
        buffer.drain(..pos);
    }
    // The end of the connection: whatever is buffered stays unprocessed.
    if closed {
        let mut content = Vec::new();
        let step = session.advance(b"QUIT\r\n", &mut content);
        assert_eq!(step.action, Action::NeedMore);
        assert!(session.is_closed() && content.is_empty());
    }
    record
}

/// `attachments::extract` on arbitrary bytes: no panic (its own
/// `catch_unwind` aside, which the fuzz target reports separately), and sane
/// results.
pub fn attachments(data: &[u8]) -> Result<(), String> {
    check_attachments(data, attachments::extract(data))
}

/// The checks of [`attachments`] on the result of `extract(data)`.
pub fn check_attachments(
    data: &[u8],
    parsed: Result<attachments::Parsed, String>,
) -> Result<(), String> {
    let parsed = parsed?;
    let limit = 4 * data.len() as u64 + 64;
    assert!(parsed.attachments.len() <= MAX_ATTACHMENTS);
    for a in &parsed.attachments {
        assert!(
            (a.content.len() as u64) <= limit,
            "attachment of {} bytes from a {}-byte message",
            a.content.len(),
            data.len()
        );
        assert!(a.depth < MAX_DEPTH, "depth {}", a.depth);
        assert!(!a.content_type.is_empty());
        assert_eq!(a.content_type, a.content_type.to_ascii_lowercase());
        if let Some(name) = &a.filename {
            assert!(name.chars().count() <= 2048, "filename not clipped");
        }
    }
    let h = &parsed.headers;
    for value in [&h.subject, &h.from, &h.to, &h.message_id, &h.x_mailer]
        .into_iter()
        .flatten()
    {
        assert!(
            value.chars().count() <= 2048,
            "header not clipped: {} chars",
            value.chars().count()
        );
    }
    Ok(())
}

/// `Manifest::from_json` never panics; what it accepts is of our major
/// version, and serialises and parses back equal.
pub fn manifest(data: &[u8]) {
    let Ok(manifest) = Manifest::from_json(data) else {
        return;
    };
    let schema = latrine::spool::SCHEMA;
    if !(manifest.schema == schema || manifest.schema.starts_with(&format!("{schema}."))) {
        if known_bug("schema") {
            return;
        }
        panic!(
            "schema {:?} accepted, expected {schema:?} or a minor version of it",
            manifest.schema
        );
    }
    let json = manifest.to_json();
    assert!(json.len() > 1, "to_json gave nothing");
    let again = Manifest::from_json(&json).unwrap_or_else(|e| {
        panic!(
            "re-serialised manifest refused: {e}\n{}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(again, manifest, "manifest changed in a round trip");
    assert_eq!(again.to_json(), json, "to_json is not stable");
}

/// Escaping round trips, and the transcript record the writer would make of
/// the bytes parses back to them.
pub fn escape_roundtrip(data: &[u8]) {
    let ascii = escape_ascii(data);
    assert!(
        ascii.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "escape_ascii output not printable ASCII: {ascii:?}"
    );
    assert_eq!(
        unescape(&ascii).as_deref(),
        Ok(data),
        "escape_ascii round trip"
    );

    let text = escape_text(data);
    assert_eq!(
        unescape(&text).as_deref(),
        Ok(data),
        "escape_text round trip"
    );
    assert!(
        !text.chars().any(|c| c.is_control()
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')),
        "escape_text kept a control character: {text:?}"
    );

    // Arbitrary text through the decoders: errors, never panics.
    let lossy = String::from_utf8_lossy(data);
    let _ = unescape(&lossy);
    let _ = parse_record(&lossy);

    // Transcript records, exactly as `TranscriptWriter::record` writes them,
    // client bytes cut after each LF; the file is read back with `lines()`.
    let (secs, micros, dir) = match data {
        [a, b, c, ..] => (
            u64::from(*a) * 977,
            u32::from(*b) * 3911 % 1_000_000,
            ['C', 'S', 'M'][usize::from(*c % 3)],
        ),
        _ => (0, 0, 'C'),
    };
    let mut file = String::new();
    let mut records = Vec::new();
    for record in data.split_inclusive(|&b| b == b'\n') {
        file.push_str(&format!("{secs}.{micros:06} {dir} "));
        file.push_str(&escape_ascii(record));
        file.push('\n');
        records.push(record);
    }
    let parsed: Vec<_> = file.lines().map(parse_record).collect();
    assert_eq!(parsed.len(), records.len(), "record count: {file:?}");
    for (got, want) in parsed.iter().zip(&records) {
        let got = got
            .as_ref()
            .expect("a record the writer made does not parse");
        assert_eq!(got.offset, format!("{secs}.{micros:06}"));
        assert_eq!(got.direction, dir);
        assert_eq!(&got.bytes[..], *want);
    }
}

/// ClientHello parsing and fingerprints on arbitrary bytes.
pub fn client_hello(data: &[u8]) {
    let Some(hello) = latrine::tls::client_hello::parse(data) else {
        return;
    };
    let ja3 = hello.ja3();
    assert!(
        ja3.len() == 32 && ja3.bytes().all(|b| b.is_ascii_hexdigit()),
        "ja3 {ja3:?}"
    );
    let ja3_string = hello.ja3_string();
    assert_eq!(
        ja3_string.matches(',').count(),
        4,
        "ja3 string {ja3_string:?}"
    );
    let ja4 = hello.ja4();
    let parts: Vec<&str> = ja4.split('_').collect();
    assert_eq!(parts.len(), 3, "ja4 {ja4:?}");
    assert_eq!(parts[0].len(), 10, "ja4 {ja4:?}");
    assert!(
        parts[0].is_ascii() && parts[0].starts_with('t'),
        "ja4 {ja4:?}"
    );
    for p in &parts[1..] {
        assert!(
            p.len() == 12 && p.bytes().all(|b| b.is_ascii_hexdigit()),
            "ja4 {ja4:?}"
        );
    }
    if let Some(sni) = &hello.sni {
        assert_eq!(sni, &escape_text(&unescape(sni).expect("sni is escaped")));
    }
}
