//! SMTP replies: a code and one or more lines of text.

use std::borrow::Cow;

/// One SMTP reply, possibly multi-line (RFC 5321 4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    lines: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A single-line reply. `text` usually starts with the enhanced status code.
    pub fn new(code: u16, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply, such as the answer to EHLO.
    pub fn multiline(code: u16, lines: Vec<Cow<'static, str>>) -> Reply {
        debug_assert!(!lines.is_empty());
        Reply { code, lines }
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    pub fn lines(&self) -> &[Cow<'static, str>] {
        &self.lines
    }

    /// 2xx and 3xx: the command was accepted or continues.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Appends the wire form (`250-first\r\n250 last\r\n`) to `out`, so that a
    /// whole pipelined batch can go out in one write.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            out.extend_from_slice(self.code.to_string().as_bytes());
            out.push(if i == last { b' ' } else { b'-' });
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a fresh buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_uses_dash_then_space() {
        let r = Reply::multiline(
            250,
            vec!["mx".into(), "PIPELINING".into(), "8BITMIME".into()],
        );
        assert_eq!(
            r.to_bytes(),
            b"250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        );
        assert_eq!(
            Reply::new(221, "2.0.0 Bye").to_bytes(),
            b"221 2.0.0 Bye\r\n"
        );
    }
}
