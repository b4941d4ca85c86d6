//! Parsing one command line into a [`Command`].
//!
//! Relaxed like Postfix with `strict_rfc821_envelopes = no`: verbs are
//! case-insensitive, spaces after `FROM:`/`TO:` are allowed, an address may
//! come without angle brackets or inside several (`<<a@b>>`). The caller has
//! already cut the line at a NUL and turned bare CRs into spaces, as Postfix
//! does. Arguments borrow from the line.

/// One parsed command. Arguments are raw bytes: they may hold anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Helo(&'a [u8]),
    Ehlo(&'a [u8]),
    Mail(Result<Path<'a>, PathError>),
    Rcpt(Result<Path<'a>, PathError>),
    Data(&'a [u8]),
    Bdat(&'a [u8]),
    Rset(&'a [u8]),
    Noop(&'a [u8]),
    Quit(&'a [u8]),
    Vrfy(&'a [u8]),
    Expn(&'a [u8]),
    Help(&'a [u8]),
    Etrn(&'a [u8]),
    StartTls(&'a [u8]),
    Auth(&'a [u8]),
    /// An empty line.
    Empty,
    /// XCLIENT or XFORWARD: only trusted proxies may use them.
    Xclient,
    /// A line Postfix refuses outright and hangs up on: `GET`, `POST`,
    /// `CONNECT` (an HTTP client or proxy abuser), or one that does not start
    /// with a letter.
    Forbidden,
    Unknown(&'a [u8]),
}

/// Why MAIL FROM or RCPT TO could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// No `FROM:`/`TO:`, or nothing after it.
    Syntax,
    /// An address that is not one: unbalanced brackets, spaces, junk after `>`.
    BadAddress,
}

/// The path and ESMTP parameters of MAIL FROM or RCPT TO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path<'a> {
    /// The address without angle brackets; empty for the null path `<>`.
    pub address: &'a [u8],
    /// Parameters such as `SIZE=1000` or `BODY=8BITMIME`, as sent.
    pub params: Vec<&'a [u8]>,
}

impl Path<'_> {
    /// The value of a parameter, by case-insensitive keyword.
    pub fn param(&self, keyword: &str) -> Option<&[u8]> {
        self.params.iter().find_map(|p| {
            let (key, value) = match p.iter().position(|&b| b == b'=') {
                Some(eq) => (&p[..eq], &p[eq + 1..]),
                None => (&p[..], &p[p.len()..]),
            };
            key.eq_ignore_ascii_case(keyword.as_bytes())
                .then_some(value)
        })
    }
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_space(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_space(*last) && *last != b'\r' {
            break;
        }
        s = rest;
    }
    s
}

/// Parses a command line, with or without its line ending.
pub fn parse(line: &[u8]) -> Command<'_> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = trim(line);
    if line.is_empty() {
        return Command::Empty;
    }
    let split = line.iter().position(|&b| is_space(b)).unwrap_or(line.len());
    let (verb, rest) = line.split_at(split);
    let arg = trim(rest);
    let is = |name: &str| verb.eq_ignore_ascii_case(name.as_bytes());
    if !verb[0].is_ascii_alphabetic() || ["GET", "POST", "CONNECT"].iter().any(|m| is(m)) {
        return Command::Forbidden;
    }
    if is("HELO") {
        Command::Helo(arg)
    } else if is("EHLO") {
        Command::Ehlo(arg)
    } else if is("MAIL") {
        Command::Mail(parse_path(arg, b"FROM:"))
    } else if is("RCPT") {
        Command::Rcpt(parse_path(arg, b"TO:"))
    } else if is("DATA") {
        Command::Data(arg)
    } else if is("BDAT") {
        Command::Bdat(arg)
    } else if is("RSET") {
        Command::Rset(arg)
    } else if is("NOOP") {
        Command::Noop(arg)
    } else if is("QUIT") {
        Command::Quit(arg)
    } else if is("VRFY") {
        Command::Vrfy(arg)
    } else if is("EXPN") {
        Command::Expn(arg)
    } else if is("HELP") {
        Command::Help(arg)
    } else if is("ETRN") {
        Command::Etrn(arg)
    } else if is("STARTTLS") {
        Command::StartTls(arg)
    } else if is("AUTH") {
        Command::Auth(arg)
    } else if is("XCLIENT") || is("XFORWARD") {
        Command::Xclient
    } else {
        Command::Unknown(verb)
    }
}

/// Parses `FROM:<addr> PARAM...` (or `TO:`), relaxed.
fn parse_path<'a>(arg: &'a [u8], keyword: &[u8]) -> Result<Path<'a>, PathError> {
    if arg.len() < keyword.len() || !arg[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return Err(PathError::Syntax);
    }
    let rest = trim(&arg[keyword.len()..]);
    if rest.is_empty() {
        return Err(PathError::Syntax);
    }
    let end = address_end(rest).ok_or(PathError::BadAddress)?;
    let (token, params) = rest.split_at(end);
    let mut address = token;
    while let [b'<', inner @ .., b'>'] = address {
        address = inner;
    }
    // Unquoted spaces or brackets left inside: not an address.
    if has_unquoted(address, |b| is_space(b) || b == b'<' || b == b'>') {
        return Err(PathError::BadAddress);
    }
    let params = params
        .split(|&b| is_space(b))
        .filter(|p| !p.is_empty())
        .collect();
    Ok(Path { address, params })
}

/// Where the address token ends: at the first space outside quotes and
/// angle brackets. `None` when a bracket or quote is left open, or when text
/// is glued to the closing bracket (`<a@b>x`).
fn address_end(text: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in text.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => depth += 1,
            b'>' if !quoted => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return match text.get(i + 1) {
                        None => Some(i + 1),
                        Some(&next) if is_space(next) => Some(i + 1),
                        Some(_) => None,
                    };
                }
            }
            _ if is_space(b) && depth == 0 && !quoted => return Some(i),
            _ => {}
        }
    }
    (depth == 0 && !quoted).then_some(text.len())
}

fn has_unquoted(text: &[u8], bad: impl Fn(u8) -> bool) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for &b in text {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if !quoted && bad(b) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(address: &'static [u8], params: Vec<&'static [u8]>) -> Path<'static> {
        Path { address, params }
    }

    #[test]
    fn verbs_are_case_insensitive_and_trimmed() {
        assert_eq!(
            parse(b"ehlo client.example\r\n"),
            Command::Ehlo(b"client.example")
        );
        assert_eq!(parse(b"  HeLo x  \r\n"), Command::Helo(b"x"));
        assert_eq!(parse(b"QUIT\n"), Command::Quit(b""));
        assert_eq!(parse(b"\r\n"), Command::Empty);
        assert_eq!(parse(b"FOO bar\r\n"), Command::Unknown(b"FOO"));
        assert_eq!(parse(b"GET / HTTP/1.0\r\n"), Command::Forbidden);
        assert_eq!(parse(b"123 hello\r\n"), Command::Forbidden);
        assert_eq!(parse(b"<foo>\r\n"), Command::Forbidden);
        assert_eq!(parse(b"HEAD / HTTP/1.0\r\n"), Command::Unknown(b"HEAD"));
        assert_eq!(parse(b"XFORWARD ADDR=1.2.3.4\r\n"), Command::Xclient);
    }

    #[test]
    fn mail_from_forms() {
        let ok = |a, p| Command::Mail(Ok(path(a, p)));
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example>\r\n"),
            ok(b"a@b.example", vec![])
        );
        assert_eq!(
            parse(b"mail from: <a@b> SIZE=100 BODY=8BITMIME\r\n"),
            ok(b"a@b", vec![b"SIZE=100", b"BODY=8BITMIME"])
        );
        assert_eq!(parse(b"MAIL FROM:<>\r\n"), ok(b"", vec![]));
        assert_eq!(parse(b"MAIL FROM:a@b\r\n"), ok(b"a@b", vec![]));
        assert_eq!(parse(b"MAIL FROM:<<a@b>>\r\n"), ok(b"a@b", vec![]));
        assert_eq!(
            parse(b"MAIL FROM:<\"quoted local\"@example.org>\r\n"),
            ok(b"\"quoted local\"@example.org", vec![])
        );
        let syntax = Command::Mail(Err(PathError::Syntax));
        let bad = Command::Mail(Err(PathError::BadAddress));
        assert_eq!(parse(b"MAIL a@b\r\n"), syntax);
        assert_eq!(parse(b"MAIL FROM:\r\n"), syntax);
        assert_eq!(parse(b"MAIL FROM :<a@b>\r\n"), syntax);
        assert_eq!(parse(b"MAIL FROM:<a@b\r\n"), bad);
        assert_eq!(parse(b"MAIL FROM:<a@b>x\r\n"), bad);
        assert_eq!(parse(b"MAIL FROM:<bad address with spaces>\r\n"), bad);
        assert_eq!(
            parse(b"RCPT TO:<x@y> NOTIFY=NEVER\r\n"),
            Command::Rcpt(Ok(path(b"x@y", vec![b"NOTIFY=NEVER"])))
        );
    }

    #[test]
    fn params_by_keyword() {
        let Command::Mail(Ok(p)) = parse(b"MAIL FROM:<a@b> size=42 SMTPUTF8") else {
            panic!()
        };
        assert_eq!(p.param("SIZE"), Some(&b"42"[..]));
        assert_eq!(p.param("smtputf8"), Some(&b""[..]));
        assert_eq!(p.param("BODY"), None);
    }
}
