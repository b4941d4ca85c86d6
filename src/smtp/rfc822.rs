//! Exim's address parser (`parse_extract_address` in its parse.c),
//! reimplemented for the Exim persona: an RFC 822 mailbox (a bare addr-spec,
//! a route-addr in angle brackets, or a phrase before one) in, the operative
//! address or Exim's exact error message out. Exim quotes these messages to
//! the client, so a different message would give the persona away.
//!
//! Works on bytes; nothing here can panic on input (every index is checked).

/// Exim's ADDRESS_MAXLENGTH.
const ADDRESS_MAXLENGTH: usize = 512;

/// An address that parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The operative address (no brackets, no route, no comments).
    pub address: Vec<u8>,
    /// Where the domain starts in `address`, if it has one.
    pub domain: Option<usize>,
}

impl Address {
    /// The local part as Exim's ACLs see it: quotes and escapes removed.
    pub fn local_part(&self) -> Vec<u8> {
        let raw = match self.domain {
            Some(d) => &self.address[..d.saturating_sub(1)],
            None => &self.address[..],
        };
        let mut out = Vec::with_capacity(raw.len());
        let mut escaped = false;
        for &b in raw {
            if escaped {
                out.push(b);
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b != b'"' {
                out.push(b);
            }
        }
        out
    }

    pub fn domain(&self) -> &[u8] {
        match self.domain {
            Some(d) => &self.address[d..],
            None => &[],
        }
    }
}

/// C's `isspace` in the C locale.
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Exim's `mac_iscntrl_or_special` (NUL counts, as C's `strchr` finds it).
fn is_cntrl_or_special(b: u8) -> bool {
    b < 32 || b == 127 || b" ()<>@,;:\\\".[]".contains(&b)
}

struct Parser<'a> {
    s: &'a [u8],
    /// Where the last skip_comment started (Exim's last_comment_position).
    last_comment: usize,
}

impl Parser<'_> {
    fn at(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(0)
    }

    /// Skips white space and (nested) comments.
    fn skip_comment(&mut self, mut i: usize) -> usize {
        self.last_comment = i;
        while self.at(i) != 0 {
            while is_space(self.at(i)) {
                i += 1;
            }
            if self.at(i) != b'(' {
                break;
            }
            let mut level = 1;
            loop {
                i += 1;
                let c = self.at(i);
                if c == 0 {
                    break;
                }
                if c == b'(' {
                    level += 1;
                } else if c == b')' {
                    level -= 1;
                    if level <= 0 {
                        i += 1;
                        break;
                    }
                } else if c == b'\\' && self.at(i + 1) != 0 {
                    i += 1;
                }
            }
        }
        i
    }

    /// A domain into `t`; on error, `t` is emptied.
    fn read_domain(&mut self, mut i: usize, t: &mut Vec<u8>) -> (usize, Option<String>) {
        let start = t.len();
        i = self.skip_comment(i);
        if self.at(i) == b'[' {
            t.push(b'[');
            i += 1;
            let rest = &self.s[i.min(self.s.len())..];
            if rest.len() >= 5
                && (rest[..5].eq_ignore_ascii_case(b"IPv6:")
                    || rest[..5].eq_ignore_ascii_case(b"IPv4:"))
            {
                t.extend_from_slice(&rest[..5]);
                i += 5;
            }
            while matches!(self.at(i), b'.' | b':') || self.at(i).is_ascii_hexdigit() {
                t.push(self.at(i));
                i += 1;
            }
            if self.at(i) == b']' {
                i += 1;
            }
            // allow_domain_literals is off in Debian's configuration, and
            // that message wins over "malformed domain literal".
            t.truncate(start);
            return (
                self.skip_comment(i),
                Some("domain literals not allowed".into()),
            );
        }
        loop {
            let save = t.len();
            if self.at(i) != b'-' {
                while self.at(i).is_ascii_alphanumeric() || self.at(i) == b'-' {
                    t.push(self.at(i));
                    i += 1;
                }
            }
            i = self.skip_comment(i);
            if t.len() == save {
                t.truncate(start);
                return (i, Some("domain missing or malformed".into()));
            }
            if self.at(i) != b'.' {
                break;
            }
            t.push(b'.');
            i += 1;
            i = self.skip_comment(i);
        }
        (i, None)
    }

    /// Dot-separated words into `t`.
    fn read_local_part(
        &mut self,
        mut i: usize,
        t: &mut Vec<u8>,
        allow_null: bool,
    ) -> (usize, Option<String>) {
        let start = t.len();
        loop {
            let save = t.len();
            i = self.skip_comment(i);
            if self.at(i) == b'"' {
                t.push(b'"');
                let mut closed = false;
                loop {
                    i += 1;
                    let c = self.at(i);
                    if c == 0 {
                        break;
                    }
                    if c == b'"' {
                        closed = true;
                        break;
                    }
                    t.push(c);
                    if c == b'\\' && self.at(i + 1) != 0 {
                        i += 1;
                        t.push(self.at(i));
                    }
                }
                if !closed {
                    return (i, Some("unmatched doublequote in local part".into()));
                }
                i += 1;
                t.push(b'"');
            } else {
                while !is_cntrl_or_special(self.at(i)) || self.at(i) == b'\\' {
                    let c = self.at(i);
                    t.push(c);
                    i += 1;
                    if c == b'\\' && self.at(i) != 0 {
                        t.push(self.at(i));
                        i += 1;
                    }
                }
            }
            i = self.skip_comment(i);
            if t.len() == save && self.at(i) != b'.' {
                if t.len() == start && !allow_null {
                    return (i, Some("missing or malformed local part".into()));
                }
                return (i, None);
            }
            if self.at(i) != b'.' {
                break;
            }
            while self.at(i) == b'.' {
                t.push(b'.');
                i += 1;
            }
        }
        (i, None)
    }

    /// A source route (`@a,@b:`), which Exim reads and ignores.
    fn read_route(&mut self, mut i: usize) -> (usize, Option<String>) {
        let mut commas = false;
        let mut scratch = Vec::new();
        while self.at(i) == b'@' {
            scratch.clear();
            let (next, error) = self.read_domain(i + 1, &mut scratch);
            i = next;
            if scratch.is_empty() {
                return (i, error);
            }
            if self.at(i) != b',' {
                break;
            }
            i += 1;
            commas = true;
            i = self.skip_comment(i);
        }
        let error = if self.at(i) == b':' {
            i += 1;
            None
        } else if commas {
            Some("colon expected after route list".to_string())
        } else {
            Some("no local part".to_string())
        };
        (self.skip_comment(i), error)
    }

    /// local-part [@ domain], expecting `term` (0 or `>`) after it.
    fn read_addr_spec(
        &mut self,
        i: usize,
        t: &mut Vec<u8>,
        term: u8,
    ) -> (usize, Option<String>, Option<usize>) {
        let (mut i, error) = self.read_local_part(i, t, false);
        if error.is_some() {
            return (i, error, None);
        }
        if self.at(i) == term {
            return (i, None, None);
        }
        if self.at(i) != b'@' {
            let word = String::from_utf8_lossy(t).into_owned();
            return (
                i,
                Some(format!("\"@\" or \".\" expected after \"{word}\"")),
                None,
            );
        }
        t.push(b'@');
        i += 1;
        let domain = t.len();
        let (i, error) = self.read_domain(i, t);
        (i, error, Some(domain))
    }
}

/// The message Exim gives for junk after an address.
fn junk_after(mailbox: &[u8], at: usize) -> String {
    let junk = &mailbox[at.min(mailbox.len())..];
    let junk = &junk[..junk.len().min(32)];
    format!(
        "malformed address: {} may not follow {}",
        String::from_utf8_lossy(junk),
        String::from_utf8_lossy(&mailbox[..at.min(mailbox.len())])
    )
}

/// Exim's `parse_extract_address`, with `strip_excess_angle_brackets`,
/// `allow_domain_literals` and `strip_trailing_dot` at Debian's values (off).
pub fn parse_extract_address(mailbox: &[u8], allow_null: bool) -> Result<Address, String> {
    // Exim's strings end at a NUL.
    let mailbox = &mailbox[..memchr::memchr(0, mailbox).unwrap_or(mailbox.len())];
    let mut p = Parser {
        s: mailbox,
        last_comment: 0,
    };
    let mut t = Vec::new();
    let mut i = p.skip_comment(0);
    let mut start = i;
    let (next, error) = p.read_local_part(i, &mut t, true);
    i = next;
    if let Some(e) = error {
        return Err(e);
    }
    let end;
    let mut domain = None;
    if p.at(i) != b'@' && p.at(i) != b'<' {
        if p.at(i) == 0 || p.at(i) == b';' {
            if t.is_empty() {
                return Err("empty address".into());
            }
            return finish(mailbox, &p, i, start, p.last_comment, t, None);
        }
        // A phrase before <route-addr>.
        while p.at(i) != b'<' {
            let mut scratch = Vec::new();
            let (next, error) = p.read_local_part(i, &mut scratch, false);
            i = next;
            if let Some(e) = error {
                return Err(format!("{e} (expected word or \"<\")"));
            }
        }
    }
    if p.at(i) == b'<' {
        i += 1;
        t.clear();
        start = i;
        i = p.skip_comment(i);
        let mut routed = false;
        if p.at(i) == b'@' {
            let (next, error) = p.read_route(i);
            i = next;
            if let Some(e) = error {
                return Err(e);
            }
            routed = true;
        }
        if !(allow_null && !routed && p.at(i) == b'>') {
            let (next, error, d) = p.read_addr_spec(i, &mut t, b'>');
            i = next;
            if let Some(e) = error {
                return Err(e);
            }
            domain = d;
            if routed && domain.is_none() {
                return Err("domain missing in source-routed address".into());
            }
        }
        end = i;
        if p.at(i) != b'>' {
            return Err(if p.at(i) == 0 {
                "'>' missing at end of address".into()
            } else {
                junk_after(mailbox, i)
            });
        }
        i = p.skip_comment(i + 1);
    } else if t.is_empty() {
        // "@route:addr" without angle brackets.
        let (next, error) = p.read_route(i);
        i = next;
        if let Some(e) = error {
            return Err(e);
        }
        let (next, error, d) = p.read_addr_spec(i, &mut t, 0);
        i = next;
        if let Some(e) = error {
            return Err(e);
        }
        domain = d;
        end = p.last_comment;
        if domain.is_none() {
            return Err("domain missing in source-routed address".into());
        }
    } else {
        t.push(b'@');
        i += 1;
        domain = Some(t.len());
        let (next, error) = p.read_domain(i, &mut t);
        i = next;
        if t.len() == domain.unwrap_or(0) {
            return Err(error.unwrap_or_else(|| "domain missing or malformed".into()));
        }
        end = p.last_comment;
    }
    finish(mailbox, &p, i, start, end, t, domain)
}

fn finish(
    mailbox: &[u8],
    p: &Parser<'_>,
    i: usize,
    start: usize,
    mut end: usize,
    address: Vec<u8>,
    domain: Option<usize>,
) -> Result<Address, String> {
    if p.at(i) != 0 {
        return Err(junk_after(mailbox, i));
    }
    while end > start && is_space(p.at(end - 1)) {
        end -= 1;
    }
    if end.saturating_sub(start) > ADDRESS_MAXLENGTH {
        let head = &address[..address.len().min(64)];
        return Err(format!(
            "address is ridiculously long: {}...",
            String::from_utf8_lossy(head)
        ));
    }
    Ok(Address { address, domain })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str, null: bool) -> String {
        parse_extract_address(s.as_bytes(), null).unwrap_err()
    }

    fn ok(s: &str) -> String {
        String::from_utf8(parse_extract_address(s.as_bytes(), true).unwrap().address).unwrap()
    }

    /// The messages the real Exim 4.96 gave (tests/reference/exim-4.96.json).
    #[test]
    fn errors_are_exims() {
        assert_eq!(
            err("<bad address with spaces>", false),
            "\"@\" or \".\" expected after \"bad\""
        );
        assert_eq!(err("<<a@b>>", true), "missing or malformed local part");
        assert_eq!(err("<a@b", true), "'>' missing at end of address");
        assert_eq!(
            err("<a@b>x", true),
            "malformed address: x may not follow <a@b>"
        );
        assert_eq!(err("<a@@b>", true), "domain missing or malformed");
        assert_eq!(err("<a@[127.0.0.1]>", true), "domain literals not allowed");
        assert_eq!(err("<>", false), "missing or malformed local part");
        assert_eq!(err("", false), "empty address");
        assert_eq!(
            err("${jndi:ldap://x}", false),
            "missing or malformed local part (expected word or \"<\")"
        );
        assert_eq!(
            err("<a@example.org> FOO=BAR", true),
            "malformed address: FOO=BAR may not follow <a@example.org> "
        );
        let long = format!("<{}@example.org>", "a".repeat(1000));
        assert_eq!(
            err(&long, true),
            format!("address is ridiculously long: {}...", "a".repeat(64))
        );
    }

    #[test]
    fn good_forms() {
        assert_eq!(ok("<>"), "");
        assert_eq!(ok("<a@example.org>"), "a@example.org");
        assert_eq!(ok("a@b"), "a@b");
        assert_eq!(ok("<@relay.example:a@b>"), "a@b");
        assert_eq!(ok("Root User <root@localhost>"), "root@localhost");
        assert_eq!(
            ok("<\"quoted local\"@example.org>"),
            "\"quoted local\"@example.org"
        );
        let a = parse_extract_address(b"<remote.example!user>", false).unwrap();
        assert_eq!(a.domain, None);
        let a = parse_extract_address(b"<\"john doe\"@remote.example>", false).unwrap();
        assert_eq!(a.local_part(), b"john doe");
        assert_eq!(a.domain(), b"remote.example");
    }
}
