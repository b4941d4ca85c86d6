//! SMTP AUTH (RFC 4954) as a honeypot does it: run the SASL exchange far
//! enough to capture what the client offers, then let the caller decide
//! whether to "accept" it.
//!
//! PLAIN (RFC 4616) and LOGIN reveal the password; CRAM-MD5 (RFC 2195)
//! reveals the user name and an HMAC of our challenge, which is recorded with
//! the challenge so that an analyst can test candidate passwords offline.
//! NTLM (see [`super::ntlm`]) reveals user, domain, workstation and a
//! response to our challenge, recorded as a line hashcat can crack.
//! Decoded values are raw bytes: they may hold NUL, CR or LF.

use super::ntlm;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A SASL mechanism we offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    CramMd5,
    Ntlm,
}

impl Mechanism {
    pub fn parse(name: &[u8]) -> Option<Mechanism> {
        [
            ("PLAIN", Mechanism::Plain),
            ("LOGIN", Mechanism::Login),
            ("CRAM-MD5", Mechanism::CramMd5),
            ("NTLM", Mechanism::Ntlm),
        ]
        .into_iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()))
        .map(|(_, m)| m)
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::Ntlm => "NTLM",
        }
    }
}

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthEnd {
    /// The client gave its credentials; the caller decides.
    Complete,
    /// The client sent `*`.
    Cancelled,
    /// A response was not valid base64, or not of the mechanism's form.
    Malformed,
}

/// Everything a client offered in one AUTH exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAttempt {
    pub mechanism: Mechanism,
    pub end: AuthEnd,
    /// PLAIN's authorization identity, when not empty.
    pub authzid: Option<Vec<u8>>,
    pub username: Option<Vec<u8>>,
    pub password: Option<Vec<u8>>,
    /// CRAM-MD5: the challenge we sent (decoded) and the hex digest received.
    /// NTLM: our 8-byte server challenge in hex, and the client's response as
    /// hashcat's NetNTLMv2 (or v1) line.
    pub challenge: Option<String>,
    pub digest: Option<String>,
    /// NTLM: the client's domain and workstation names.
    pub domain: Option<Vec<u8>>,
    pub workstation: Option<Vec<u8>>,
    /// The client's lines of the exchange, exactly as sent (line endings included).
    pub raw: Vec<u8>,
}

/// Where an exchange in progress stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Send `334 <base64 text>` and wait for the next line.
    Continue(String),
    /// The exchange is over.
    Done(AuthAttempt),
}

/// An AUTH exchange in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthExchange {
    attempt: AuthAttempt,
    /// NTLM: the CHALLENGE message to send, and whether it was sent.
    ntlm_challenge: Vec<u8>,
    ntlm_challenged: bool,
}

/// What Exchange answers to `AUTH NTLM` without an initial response.
const NTLM_READY: &str = "NTLM supported";

/// LOGIN's prompts, as every server sends them.
const USERNAME: &str = "VXNlcm5hbWU6"; // "Username:"
const PASSWORD: &str = "UGFzc3dvcmQ6"; // "Password:"

fn decode(text: &[u8]) -> Option<Vec<u8>> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    // RFC 4954: "=" is an empty initial response.
    if text == b"=" {
        return Some(Vec::new());
    }
    STANDARD.decode(text).ok()
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl AuthExchange {
    /// Starts an exchange from the AUTH command line. `challenge` is the
    /// CRAM-MD5 challenge to use (`<random.time@host>`), `ntlm_challenge` the
    /// NTLM CHALLENGE message (empty for other mechanisms).
    pub fn start(
        mechanism: Mechanism,
        initial: Option<&[u8]>,
        line: &[u8],
        challenge: String,
        ntlm_challenge: Vec<u8>,
    ) -> (AuthExchange, Prompt) {
        let mut exchange = AuthExchange {
            attempt: AuthAttempt {
                mechanism,
                end: AuthEnd::Complete,
                authzid: None,
                username: None,
                password: None,
                challenge: None,
                digest: None,
                domain: None,
                workstation: None,
                raw: line.to_vec(),
            },
            ntlm_challenge,
            ntlm_challenged: false,
        };
        let prompt = match (mechanism, initial) {
            (Mechanism::Plain, Some(ir)) => exchange.plain(ir),
            (Mechanism::Plain, None) => Prompt::Continue(String::new()),
            (Mechanism::Login, Some(ir)) => exchange.login_user(ir),
            (Mechanism::Login, None) => Prompt::Continue(USERNAME.into()),
            (Mechanism::CramMd5, _) => {
                let encoded = STANDARD.encode(challenge.as_bytes());
                exchange.attempt.challenge = Some(challenge);
                Prompt::Continue(encoded)
            }
            (Mechanism::Ntlm, Some(ir)) => exchange.ntlm(ir),
            (Mechanism::Ntlm, None) => Prompt::Continue(NTLM_READY.into()),
        };
        (exchange, prompt)
    }

    /// Takes the client's next line (CRLF included).
    pub fn respond(&mut self, line: &[u8]) -> Prompt {
        self.attempt.raw.extend_from_slice(line);
        if strip_eol(line) == b"*" {
            return self.finish(AuthEnd::Cancelled);
        }
        match self.attempt.mechanism {
            Mechanism::Plain => self.plain(line),
            Mechanism::Login if self.attempt.username.is_none() => self.login_user(line),
            Mechanism::Login => match decode(line) {
                Some(password) => {
                    self.attempt.password = Some(password);
                    self.finish(AuthEnd::Complete)
                }
                None => self.finish(AuthEnd::Malformed),
            },
            Mechanism::CramMd5 => self.cram(line),
            Mechanism::Ntlm => self.ntlm(line),
        }
    }

    /// NEGOTIATE gets our CHALLENGE; AUTHENTICATE ends the exchange.
    fn ntlm(&mut self, response: &[u8]) -> Prompt {
        let Some(message) = decode(response) else {
            return self.finish(AuthEnd::Malformed);
        };
        match (ntlm::message_type(&message), self.ntlm_challenged) {
            (Some(1), false) => {
                self.ntlm_challenged = true;
                let server = ntlm::server_challenge(&self.ntlm_challenge);
                self.attempt.challenge = Some(server.iter().map(|b| format!("{b:02x}")).collect());
                Prompt::Continue(STANDARD.encode(&self.ntlm_challenge))
            }
            (Some(3), true) => match ntlm::parse_authenticate(&message) {
                Some(a) => {
                    let server = ntlm::server_challenge(&self.ntlm_challenge);
                    self.attempt.digest = ntlm::crackable(&a, server);
                    self.attempt.username = Some(a.user);
                    self.attempt.domain = Some(a.domain);
                    self.attempt.workstation = Some(a.workstation);
                    self.finish(AuthEnd::Complete)
                }
                None => self.finish(AuthEnd::Malformed),
            },
            _ => self.finish(AuthEnd::Malformed),
        }
    }

    /// `authzid NUL authcid NUL passwd`.
    fn plain(&mut self, response: &[u8]) -> Prompt {
        let Some(decoded) = decode(response) else {
            return self.finish(AuthEnd::Malformed);
        };
        let mut parts = decoded.splitn(3, |&b| b == 0);
        match (parts.next(), parts.next(), parts.next()) {
            (Some(authzid), Some(user), Some(password)) => {
                if !authzid.is_empty() {
                    self.attempt.authzid = Some(authzid.to_vec());
                }
                self.attempt.username = Some(user.to_vec());
                self.attempt.password = Some(password.to_vec());
                self.finish(AuthEnd::Complete)
            }
            _ => {
                // Not of PLAIN's form, but what was sent is still worth keeping.
                self.attempt.password = Some(decoded);
                self.finish(AuthEnd::Malformed)
            }
        }
    }

    fn login_user(&mut self, response: &[u8]) -> Prompt {
        match decode(response) {
            Some(user) => {
                self.attempt.username = Some(user);
                Prompt::Continue(PASSWORD.into())
            }
            None => self.finish(AuthEnd::Malformed),
        }
    }

    /// `user SP hex-digest`.
    fn cram(&mut self, response: &[u8]) -> Prompt {
        let Some(decoded) = decode(response) else {
            return self.finish(AuthEnd::Malformed);
        };
        match decoded.iter().rposition(|&b| b == b' ') {
            Some(space) => {
                self.attempt.username = Some(decoded[..space].to_vec());
                self.attempt.digest =
                    Some(String::from_utf8_lossy(&decoded[space + 1..]).into_owned());
                self.finish(AuthEnd::Complete)
            }
            None => {
                self.attempt.username = Some(decoded);
                self.finish(AuthEnd::Malformed)
            }
        }
    }

    fn finish(&mut self, end: AuthEnd) -> Prompt {
        self.attempt.end = end;
        Prompt::Done(self.attempt.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(p: Prompt) -> AuthAttempt {
        match p {
            Prompt::Done(a) => a,
            other => panic!("expected the end, got {other:?}"),
        }
    }

    #[test]
    fn plain_with_initial_response() {
        let ir = STANDARD.encode(b"\0alice\0s3cr\r\nt");
        let line = format!("AUTH PLAIN {ir}\r\n");
        let (_, p) = AuthExchange::start(
            Mechanism::Plain,
            Some(ir.as_bytes()),
            line.as_bytes(),
            String::new(),
            Vec::new(),
        );
        let a = done(p);
        assert_eq!(a.end, AuthEnd::Complete);
        assert_eq!(a.username.as_deref(), Some(&b"alice"[..]));
        assert_eq!(a.password.as_deref(), Some(&b"s3cr\r\nt"[..]));
        assert_eq!(a.raw, line.as_bytes());
    }

    #[test]
    fn login_in_two_steps_and_cancel() {
        let (mut x, p) = AuthExchange::start(
            Mechanism::Login,
            None,
            b"AUTH LOGIN\r\n",
            String::new(),
            Vec::new(),
        );
        assert_eq!(p, Prompt::Continue(USERNAME.into()));
        assert_eq!(x.respond(b"Ym9i\r\n"), Prompt::Continue(PASSWORD.into()));
        let a = done(x.respond(b"aHVudGVyMg==\r\n"));
        assert_eq!(a.username.as_deref(), Some(&b"bob"[..]));
        assert_eq!(a.password.as_deref(), Some(&b"hunter2"[..]));
        let (mut x, _) = AuthExchange::start(
            Mechanism::Login,
            None,
            b"AUTH LOGIN\r\n",
            String::new(),
            Vec::new(),
        );
        assert_eq!(done(x.respond(b"*\r\n")).end, AuthEnd::Cancelled);
    }

    #[test]
    fn cram_md5_records_challenge_and_digest() {
        let (mut x, p) = AuthExchange::start(
            Mechanism::CramMd5,
            None,
            b"AUTH CRAM-MD5\r\n",
            "<1.2@mx>".into(),
            Vec::new(),
        );
        assert_eq!(p, Prompt::Continue(STANDARD.encode("<1.2@mx>")));
        let response = STANDARD.encode("tim b913a602c7eda7a495b4e6e7334d3890");
        let a = done(x.respond(format!("{response}\r\n").as_bytes()));
        assert_eq!(a.username.as_deref(), Some(&b"tim"[..]));
        assert_eq!(
            a.digest.as_deref(),
            Some("b913a602c7eda7a495b4e6e7334d3890")
        );
        assert_eq!(a.challenge.as_deref(), Some("<1.2@mx>"));
    }

    #[test]
    fn ntlm_negotiate_challenge_authenticate() {
        let target = ntlm::Target::new("mail.corp.example.com", "", "", "", [10, 0, 17763]);
        let type2 = ntlm::challenge(&target, [7; 8], ntlm::filetime(1_800_000_000));
        let (mut x, p) = AuthExchange::start(
            Mechanism::Ntlm,
            None,
            b"AUTH NTLM\r\n",
            String::new(),
            type2.clone(),
        );
        assert_eq!(p, Prompt::Continue(NTLM_READY.into()));
        let type1 = STANDARD.encode(b"NTLMSSP\0\x01\0\0\0\x07\x82\x08\xa2");
        assert_eq!(
            x.respond(format!("{type1}\r\n").as_bytes()),
            Prompt::Continue(STANDARD.encode(&type2))
        );
        let mut nt = vec![0x42u8; 16];
        nt.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9]);
        let type3 = ntlm::tests::authenticate("bob", "CORP", "PC7", &nt);
        let a = done(x.respond(format!("{}\r\n", STANDARD.encode(&type3)).as_bytes()));
        assert_eq!(a.end, AuthEnd::Complete);
        assert_eq!(a.username.as_deref(), Some(&b"bob"[..]));
        assert_eq!(a.domain.as_deref(), Some(&b"CORP"[..]));
        assert_eq!(a.workstation.as_deref(), Some(&b"PC7"[..]));
        assert_eq!(a.challenge.as_deref(), Some("0707070707070707"));
        assert!(
            a.digest
                .unwrap()
                .starts_with("bob::CORP:0707070707070707:4242")
        );
        // An AUTHENTICATE before the challenge is out of order.
        let (_, p) = AuthExchange::start(
            Mechanism::Ntlm,
            Some(STANDARD.encode(&type3).as_bytes()),
            b"AUTH NTLM x\r\n",
            String::new(),
            type2,
        );
        assert_eq!(done(p).end, AuthEnd::Malformed);
    }

    #[test]
    fn bad_base64_is_malformed() {
        let (_, p) = AuthExchange::start(
            Mechanism::Plain,
            Some(b"!!!"),
            b"AUTH PLAIN !!!\r\n",
            String::new(),
            Vec::new(),
        );
        assert_eq!(done(p).end, AuthEnd::Malformed);
    }
}
