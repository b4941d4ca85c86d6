//! Headers and attachments of a stored message, parsed with mail-parser.
//!
//! The parser sees attacker-made MIME. It runs under `catch_unwind`, nested
//! `message/rfc822` parts are followed only [`MAX_DEPTH`] levels deep, and at
//! most [`MAX_ATTACHMENTS`] attachments are taken per message, so one message
//! can neither crash the sealing nor fill the disk with tiny parts. A message
//! with more than [`MAX_PARTS`] boundary lines is not parsed at all (see
//! [`too_many_parts`]): the parser keeps a structure per part, and a million
//! tiny parts took about 185 MB to seal.

use super::manifest::Headers;
use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{Address, Encoding, Message, MessageParser, MessagePart, MimeHeaders, PartType};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// `message/rfc822` nesting followed when looking for attachments.
pub const MAX_DEPTH: u32 = 8;
/// Attachments extracted from one message; the rest are counted, not stored.
pub const MAX_ATTACHMENTS: usize = 1000;
/// Messages bigger than this are not parsed whole when sealed (parsing holds
/// the message in memory): their headers are read from the header block
/// alone and their attachments are not extracted (flag
/// `attachments_not_extracted`). Above the default message size limit.
pub const MAX_EXTRACT_SIZE: u64 = 32 << 20;
/// How far into a big message its header block is looked for.
pub const MAX_HEADER_BLOCK: usize = 1 << 20;
/// Boundary-like lines (`--...` at a line start) above which a message is
/// not parsed whole: its headers are read from its header block and its
/// attachments are not extracted. Far above any real message's part count.
pub const MAX_PARTS: usize = 10_000;
/// Longest header value kept in the manifest, in characters.
const MAX_HEADER_CHARS: usize = 2048;

/// One attachment's decoded content, and what the sender said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The sender's file name, decoded (RFC 2231/2047); only ever metadata.
    pub filename: Option<String>,
    pub content_type: String,
    pub content: Vec<u8>,
    pub depth: u32,
}

/// What parsing a message gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub headers: Headers,
    pub attachments: Vec<Attachment>,
    /// Attachments past [`MAX_ATTACHMENTS`], not extracted.
    pub skipped: usize,
}

/// Whether `eml` has more than [`MAX_PARTS`] lines that start with `--`
/// (every MIME part starts with one). Counting stops at the limit.
pub fn too_many_parts(eml: &[u8]) -> bool {
    let starts = usize::from(eml.starts_with(b"--"));
    starts
        + memchr::memmem::find_iter(eml, b"\n--")
            .take(MAX_PARTS + 1)
            .count()
        > MAX_PARTS
}

/// The start of `message` up to and including the blank line that ends its
/// header block (all of it when there is none).
pub fn header_block(message: &[u8]) -> &[u8] {
    let end = memchr::memmem::find(message, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| memchr::memmem::find(message, b"\n\n").map(|i| i + 2));
    &message[..end.unwrap_or(message.len())]
}

/// Parses `eml`; an error says why nothing could be parsed.
pub fn extract(eml: &[u8]) -> Result<Parsed, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let message = MessageParser::default()
            .parse(eml)
            .ok_or_else(|| "not a parseable message".to_string())?;
        let mut parsed = Parsed {
            headers: headers(&message),
            ..Parsed::default()
        };
        collect(&message, 0, &mut parsed);
        teardown(message);
        Ok(parsed)
    }))
    .unwrap_or_else(|_| Err("the MIME parser panicked on this message".into()))
}

/// Drops a parsed message without recursion. mail-parser's own drop recurses
/// once per nested `message/rfc822`, and a hostile message nests tens of
/// thousands deep within the size limit: enough to overflow a thread's stack
/// and abort the whole listener. Nested messages are moved onto a heap stack
/// and emptied one at a time instead.
pub fn teardown(message: Message<'_>) {
    let mut stack = vec![message];
    while let Some(mut message) = stack.pop() {
        for part in message.parts.drain(..) {
            if let PartType::Message(inner) = part.body {
                stack.push(inner);
            }
        }
    }
}

fn collect(message: &Message<'_>, depth: u32, parsed: &mut Parsed) {
    for part in message.attachments() {
        if parsed.attachments.len() >= MAX_ATTACHMENTS {
            parsed.skipped += 1;
            continue;
        }
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".into())
            .to_ascii_lowercase();
        parsed.attachments.push(Attachment {
            filename: part.attachment_name().map(|n| clip(n).to_string()),
            content_type,
            content: decoded_content(message, part),
            depth,
        });
        if let Some(nested) = part.message()
            && depth + 1 < MAX_DEPTH
        {
            collect(nested, depth + 1, parsed);
        }
    }
}

/// The attachment's bytes as the sender attached them: transfer encoding
/// undone, nothing else. mail-parser converts text parts to UTF-8 from their
/// charset and leaves uuencode alone; either would make the sha256 differ
/// from the sender's file, so those cases are decoded here from the raw body.
fn decoded_content(message: &Message<'_>, part: &MessagePart<'_>) -> Vec<u8> {
    let raw = message
        .raw_message()
        .get(part.raw_body_offset() as usize..part.raw_end_offset() as usize)
        .unwrap_or_default();
    let transfer_encoding = part
        .content_transfer_encoding()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if matches!(
        transfer_encoding.as_str(),
        "x-uuencode" | "uuencode" | "x-uue"
    ) && let Some(decoded) = uudecode(raw)
    {
        return decoded;
    }
    if !part.is_text() {
        return part.contents().to_vec();
    }
    let decoded = match part.encoding {
        Encoding::Base64 => base64_decode(raw),
        Encoding::QuotedPrintable => quoted_printable_decode(raw),
        Encoding::None => Some(raw.to_vec()),
    };
    decoded.unwrap_or_else(|| part.contents().to_vec())
}

/// Decodes the first `begin ... end` block of uuencoded text.
fn uudecode(text: &[u8]) -> Option<Vec<u8>> {
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    lines.find(|l| l.starts_with(b"begin "))?;
    let mut out = Vec::new();
    for line in lines {
        if line == b"end" || line.is_empty() {
            break;
        }
        let len = usize::from((line[0].wrapping_sub(b' ')) & 0x3f);
        if len == 0 {
            break;
        }
        let chars: Vec<u8> = line[1..]
            .iter()
            .map(|&c| c.wrapping_sub(b' ') & 0x3f)
            .collect();
        let mut decoded = Vec::with_capacity(len + 2);
        for group in chars.chunks(4) {
            let g = |i: usize| u32::from(group.get(i).copied().unwrap_or(0));
            let n = (g(0) << 18) | (g(1) << 12) | (g(2) << 6) | g(3);
            decoded.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        }
        decoded.truncate(len);
        out.extend_from_slice(&decoded);
    }
    Some(out)
}

fn headers(message: &Message<'_>) -> Headers {
    Headers {
        subject: message.subject().map(|s| clip(s).to_string()),
        from: message.from().map(addresses),
        to: message.to().map(addresses),
        date: message.date().map(|d| d.to_rfc3339()),
        message_id: message.message_id().map(|s| clip(s).to_string()),
        x_mailer: message
            .header("X-Mailer")
            .and_then(|h| h.as_text())
            .map(|s| clip(s).to_string()),
    }
}

/// `Name <addr>, other@example` as one string.
fn addresses(address: &Address<'_>) -> String {
    let list: Vec<String> = address
        .iter()
        .map(|a| match (a.name(), a.address()) {
            (Some(name), Some(addr)) => format!("{name} <{addr}>"),
            (None, Some(addr)) => addr.to_string(),
            (Some(name), None) => name.to_string(),
            (None, None) => String::new(),
        })
        .collect();
    clip(&list.join(", ")).to_string()
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(MAX_HEADER_CHARS) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_bombs_are_counted_up_to_the_limit() {
        let mut eml = b"Subject: x\r\nContent-Type: multipart/mixed; boundary=t\r\n\r\n".to_vec();
        for _ in 0..MAX_PARTS {
            eml.extend_from_slice(b"--t\r\n\r\nx\r\n");
        }
        assert!(!too_many_parts(&eml), "exactly the limit is parsed");
        eml.extend_from_slice(b"--t--\r\n");
        assert!(too_many_parts(&eml));
        assert!(too_many_parts(&[b"--".as_slice(), &eml[..]].concat()));
        assert_eq!(
            header_block(&eml),
            b"Subject: x\r\nContent-Type: multipart/mixed; boundary=t\r\n\r\n"
        );
        assert_eq!(header_block(b"A: b\n\nbody"), b"A: b\n\n");
        assert_eq!(header_block(b"A: b"), b"A: b");
    }

    #[test]
    fn attachment_with_hostile_name_is_metadata_only() {
        let eml = b"From: A <a@example.org>\r\nTo: b@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n\
Content-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"../../etc/passwd\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
aGVsbG8=\r\n--XX--\r\n";
        let parsed = extract(eml).unwrap();
        assert_eq!(parsed.headers.subject.as_deref(), Some("caf\u{e9}"));
        assert_eq!(parsed.headers.from.as_deref(), Some("A <a@example.org>"));
        assert_eq!(parsed.attachments.len(), 1);
        let a = &parsed.attachments[0];
        assert_eq!(a.filename.as_deref(), Some("../../etc/passwd"));
        assert_eq!(a.content, b"hello");
        assert_eq!(a.content_type, "application/octet-stream");
    }

    #[test]
    fn uuencode_and_text_charsets_are_kept_as_sent() {
        let eml = b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\
Content-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n\
begin 644 a.bin\r\n#0V%T\r\n`\r\nend\r\n--B\r\n\
Content-Type: text/plain; charset=iso-8859-1; name=\"f.txt\"\r\nContent-Disposition: attachment; filename=\"f.txt\"\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nFr=F6sche\r\n--B--\r\n";
        let parsed = extract(eml).unwrap();
        let contents: Vec<&[u8]> = parsed.attachments.iter().map(|a| &a.content[..]).collect();
        assert!(contents.contains(&&b"Cat"[..]), "{contents:?}");
        assert!(
            contents.iter().any(|c| c.starts_with(b"Fr\xf6sche")),
            "{contents:?}"
        );
    }

    /// 50,000 nested `message/rfc822` parts (1.6 MB, under the size limit)
    /// overflowed the stack when mail-parser's message was dropped. Run on a
    /// thread with a tokio worker's 2 MiB stack.
    #[test]
    fn deep_rfc822_nesting_does_not_overflow_the_stack() {
        let mut eml = Vec::new();
        for _ in 0..50_000 {
            eml.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        eml.extend_from_slice(b"Subject: bottom\r\n\r\nhi\r\n");
        let worker = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || extract(&eml).map(|p| p.attachments.len()))
            .unwrap();
        assert!(worker.join().is_ok(), "the extraction thread died");
    }

    #[test]
    fn garbage_does_not_panic() {
        for input in [
            &b""[..],
            b"\xff\xfe",
            b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n",
        ] {
            let _ = extract(input);
        }
    }
}
