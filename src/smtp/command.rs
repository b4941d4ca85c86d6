//! Parsing one command line into a [`Command`].
//!
//! Relaxed like Postfix with `strict_rfc821_envelopes = no`: verbs are
//! case-insensitive, spaces around `FROM:`/`TO:` are allowed and an address
//! may come without angle brackets. Nothing here allocates for the common
//! case; arguments borrow from the line.

/// One parsed command. Arguments are raw bytes: they may hold anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Helo(&'a [u8]),
    Ehlo(&'a [u8]),
    Mail(Path<'a>),
    Rcpt(Path<'a>),
    /// MAIL or RCPT whose `FROM:`/`TO:` part or address could not be parsed.
    MailSyntax,
    RcptSyntax,
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
    /// Looks like an HTTP request: a scanner or a proxy abuser, not a mail client.
    Http(&'a [u8]),
    Unknown(&'a [u8]),
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
    if is("HELO") {
        Command::Helo(arg)
    } else if is("EHLO") {
        Command::Ehlo(arg)
    } else if is("MAIL") {
        parse_path(arg, b"FROM:").map_or(Command::MailSyntax, Command::Mail)
    } else if is("RCPT") {
        parse_path(arg, b"TO:").map_or(Command::RcptSyntax, Command::Rcpt)
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
    } else if ["GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS"]
        .iter()
        .any(|m| is(m))
    {
        Command::Http(verb)
    } else {
        Command::Unknown(verb)
    }
}

/// Parses `FROM:<addr> PARAM...` (or `TO:`), relaxed.
fn parse_path<'a>(arg: &'a [u8], keyword: &[u8]) -> Option<Path<'a>> {
    if arg.len() < keyword.len() || !arg[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = trim(&arg[keyword.len()..]);
    let (address, rest) = if let Some(inner) = rest.strip_prefix(b"<") {
        let close = inner.iter().position(|&b| b == b'>')?;
        (&inner[..close], &inner[close + 1..])
    } else {
        let end = rest.iter().position(|&b| is_space(b)).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        rest.split_at(end)
    };
    // Text glued to the closing bracket (`<a@b>junk`) is not a parameter list.
    if !rest.is_empty() && !is_space(rest[0]) {
        return None;
    }
    let params = rest
        .split(|&b| is_space(b))
        .filter(|p| !p.is_empty())
        .collect();
    Some(Path { address, params })
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
        assert_eq!(parse(b"GET / HTTP/1.0\r\n"), Command::Http(b"GET"));
    }

    #[test]
    fn mail_from_forms() {
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example>\r\n"),
            Command::Mail(path(b"a@b.example", vec![]))
        );
        assert_eq!(
            parse(b"mail from: <a@b> SIZE=100 BODY=8BITMIME\r\n"),
            Command::Mail(path(b"a@b", vec![b"SIZE=100", b"BODY=8BITMIME"]))
        );
        assert_eq!(parse(b"MAIL FROM:<>\r\n"), Command::Mail(path(b"", vec![])));
        assert_eq!(
            parse(b"MAIL FROM:a@b\r\n"),
            Command::Mail(path(b"a@b", vec![]))
        );
        assert_eq!(parse(b"MAIL a@b\r\n"), Command::MailSyntax);
        assert_eq!(parse(b"MAIL FROM:<a@b\r\n"), Command::MailSyntax);
        assert_eq!(parse(b"MAIL FROM:\r\n"), Command::MailSyntax);
        assert_eq!(
            parse(b"RCPT TO:<x@y> NOTIFY=NEVER\r\n"),
            Command::Rcpt(path(b"x@y", vec![b"NOTIFY=NEVER"]))
        );
    }

    #[test]
    fn params_by_keyword() {
        let Command::Mail(p) = parse(b"MAIL FROM:<a@b> size=42 SMTPUTF8") else {
            panic!()
        };
        assert_eq!(p.param("SIZE"), Some(&b"42"[..]));
        assert_eq!(p.param("smtputf8"), Some(&b""[..]));
        assert_eq!(p.param("BODY"), None);
    }
}
