//! Reversible escaping of attacker-controlled bytes.
//!
//! Everything a client sends may be binary, may contain CR/LF that would forge
//! log lines, or terminal control sequences. Two renderings share one grammar,
//! so that [`unescape`] undoes either:
//!
//! - [`escape_ascii`]: printable ASCII stays as is; `\` becomes `\\`; CR, LF and
//!   TAB become `\r`, `\n`, `\t`; every other byte becomes `\xHH`. Output is pure
//!   ASCII. Used by the transcript and by log lines.
//! - [`escape_text`]: like `escape_ascii`, but valid UTF-8 characters that are
//!   neither control nor bidirectional-override characters are kept. Used for
//!   JSON fields (HELO names, addresses), where an internationalised address
//!   should stay readable.

use std::fmt::Write;

/// Escapes `bytes` into printable ASCII.
pub fn escape_ascii(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 8);
    escape_ascii_into(bytes, &mut out);
    out
}

/// Appends the ASCII escaping of `bytes` to `out`.
pub fn escape_ascii_into(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        push_byte(b, out);
    }
}

/// Escapes `bytes`, keeping valid, harmless UTF-8 characters readable.
pub fn escape_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_ascii() {
                push_byte(c as u8, &mut out);
            } else if c.is_control() || is_bidi_control(c) {
                let mut buf = [0u8; 4];
                for &b in c.encode_utf8(&mut buf).as_bytes() {
                    push_hex(b, &mut out);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            push_hex(b, &mut out);
        }
    }
    out
}

/// Characters that reorder how a terminal or viewer displays the text around
/// them ("Trojan Source"); kept escaped so an analyst sees what was sent.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn push_byte(b: u8, out: &mut String) {
    match b {
        b'\\' => out.push_str("\\\\"),
        b'\r' => out.push_str("\\r"),
        b'\n' => out.push_str("\\n"),
        b'\t' => out.push_str("\\t"),
        0x20..=0x7e => out.push(b as char),
        _ => push_hex(b, out),
    }
}

fn push_hex(b: u8, out: &mut String) {
    let _ = write!(out, "\\x{b:02x}");
}

/// Why an escaped string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnescapeError {
    /// Byte offset of the bad escape in the input.
    pub offset: usize,
}

impl std::fmt::Display for UnescapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid escape sequence at offset {}", self.offset)
    }
}

impl std::error::Error for UnescapeError {}

/// Decodes the output of [`escape_ascii`] or [`escape_text`] back to the exact bytes.
pub fn unescape(text: &str) -> Result<Vec<u8>, UnescapeError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let bad = UnescapeError { offset: i };
        match bytes.get(i + 1) {
            Some(b'\\') => out.push(b'\\'),
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'x') => {
                let hex = bytes.get(i + 2..i + 4).ok_or(bad.clone())?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad.clone())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad)?);
                i += 4;
                continue;
            }
            _ => return Err(bad),
        }
        i += 2;
    }
    Ok(out)
}

/// Lower-case hexadecimal rendering of a digest.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).chain(b"\\x41\\\\".iter().copied()).collect();
        let escaped = escape_ascii(&all);
        assert!(escaped.bytes().all(|b| (0x20..0x7f).contains(&b)));
        assert_eq!(unescape(&escaped).unwrap(), all);
    }

    #[test]
    fn text_keeps_unicode_and_escapes_controls() {
        let input = "jos\u{e9}@b\u{fc}cher.example\r\n\u{202e}x".as_bytes();
        let escaped = escape_text(input);
        assert_eq!(
            escaped,
            "jos\u{e9}@b\u{fc}cher.example\\r\\n\\xe2\\x80\\xaex"
        );
        assert_eq!(unescape(&escaped).unwrap(), input);
        let invalid = b"a\xff\xfeb\\";
        assert_eq!(unescape(&escape_text(invalid)).unwrap(), invalid);
    }

    #[test]
    fn bad_escapes_are_errors() {
        assert!(unescape("\\q").is_err());
        assert!(unescape("\\x4").is_err());
        assert!(unescape("\\xzz").is_err());
        assert!(unescape("trailing\\").is_err());
    }
}
