//! Personas: what server we claim to be, as data.
//!
//! A persona is a TOML document (see `personas/postfix.toml`) holding the
//! greeting, the EHLO keywords in order and the text of every reply. The
//! session looks replies up here instead of hard-coding them, so imitating
//! another MTA means writing another table, not another code path.

use super::reply::Reply;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The built-in default: Debian's Postfix 3.7.
const POSTFIX: &str = include_str!("personas/postfix.toml");
/// Debian's Exim 4.96 with its stock "internet site" configuration.
const EXIM: &str = include_str!("personas/exim.toml");
/// Microsoft Exchange 2019's default front-end receive connector.
const EXCHANGE: &str = include_str!("personas/exchange.toml");

/// Every reply the SMTP core can give, by situation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Replies {
    pub helo: String,
    pub helo_syntax: String,
    pub ehlo_syntax: String,
    pub need_helo: String,
    pub mail_ok: String,
    pub mail_syntax: String,
    pub mail_bad_address: String,
    pub mail_nested: String,
    pub mail_too_big: String,
    pub mail_bad_param: String,
    pub size_syntax: String,
    pub ret_syntax: String,
    pub envid_syntax: String,
    pub too_many_messages: String,
    pub rcpt_ok: String,
    pub rcpt_syntax: String,
    pub rcpt_bad_address: String,
    pub rcpt_need_mail: String,
    pub rcpt_too_many: String,
    pub notify_syntax: String,
    pub orcpt_syntax: String,
    pub unknown_user: String,
    pub data_need_rcpt: String,
    pub data_no_recipients: String,
    pub data_syntax: String,
    pub data_after_bdat: String,
    pub data_start: String,
    pub queued: String,
    pub message_too_big: String,
    pub storage_error: String,
    pub insufficient_storage: String,
    pub bdat_syntax: String,
    pub bdat_ok: String,
    pub bdat_queued: String,
    pub chunk_too_big: String,
    pub rset: String,
    pub rset_syntax: String,
    pub noop: String,
    pub quit: String,
    pub vrfy: String,
    pub vrfy_syntax: String,
    pub expn: String,
    pub help: String,
    pub etrn_syntax: String,
    pub etrn_in_transaction: String,
    pub etrn: String,
    pub xclient: String,
    pub starttls_ready: String,
    pub starttls_syntax: String,
    pub starttls_unavailable: String,
    pub tls_active: String,
    pub auth_unavailable: String,
    pub auth_syntax: String,
    pub auth_already: String,
    pub auth_in_transaction: String,
    pub auth_mechanism: String,
    pub auth_challenge: String,
    pub auth_aborted: String,
    pub auth_bad_base64: String,
    pub auth_ok: String,
    pub auth_failed: String,
    pub unknown: String,
    pub empty: String,
    pub bad_utf8: String,
    pub forbidden: String,
    pub too_many_errors: String,
    pub timeout: String,
    pub session_too_long: String,
    pub too_many_connections: String,
    pub shutdown: String,
    // Replies only some personas give; empty where a persona never does.
    /// QUIT with an argument (Postfix ignores the argument).
    #[serde(default)]
    pub quit_syntax: String,
    /// BDAT refused for want of a recipient, when it differs from DATA's.
    #[serde(default)]
    pub bdat_need_rcpt: String,
    /// BDAT before EHLO offered CHUNKING.
    #[serde(default)]
    pub bdat_not_offered: String,
    /// An address the grammar could not parse: `{arg}` is the whole explanation.
    #[serde(default)]
    pub address_error: String,
    /// VRFY of an address that cannot be parsed.
    #[serde(default)]
    pub vrfy_error: String,
    #[serde(default)]
    pub sender_unqualified: String,
    #[serde(default)]
    pub recipient_unqualified: String,
    /// A recipient whose local part holds characters the ACL refuses.
    #[serde(default)]
    pub restricted_characters: String,
    /// A command line holding a NUL byte.
    #[serde(default)]
    pub nul_in_command: String,
    #[serde(default)]
    pub too_many_unknown: String,
    /// Its text follows the error that went past the limit, with that code.
    #[serde(default)]
    pub too_many_syntax_errors: String,
    #[serde(default)]
    pub too_many_nonmail: String,
    /// Input pipelined where the server does not allow it.
    #[serde(default)]
    pub sync_error: String,
    /// First line of a DATA refusal when every RCPT got the same error.
    #[serde(default)]
    pub rcpt_all_rejected: String,
    /// A message line longer than `max_body_line_length`.
    #[serde(default)]
    pub body_line_too_long: String,
}

/// How a persona reads command lines. The replies are data; the rules by
/// which a real server picks one are code, one module per server family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grammar {
    /// Postfix's smtpd: relaxed parsing, errors counted towards a tarpit.
    Postfix,
    /// Exim's smtp_in.c: command prefixes, RFC 822 addresses, limits on
    /// unknown commands, protocol errors and non-mail commands, and
    /// synchronisation checks.
    Exim,
}

/// How queue ids look in `250 ... queued as`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueIdFormat {
    /// Postfix's short ids: 10 upper-case hex digits (microseconds, inode).
    PostfixShort,
    /// Exim 4.96's `1tAbCd-000XyZ-Qr` (base 62: time, pid, fraction).
    Exim,
    /// Exchange's `<GUID@host> [InternalId=N, Hostname=HOST]`.
    Exchange,
}

/// Timing that scanners measure.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Wait this long after accepting a connection before the greeting...
    pub greeting_delay_ms: u64,
    /// ...plus a uniformly random part of up to this much.
    pub greeting_jitter_ms: u64,
}

/// The names an NTLM challenge (type 2 message) carries. Empty strings are
/// derived from the host name: `mail.corp.example.com` gives the computer
/// `MAIL`, the DNS domain `corp.example.com` and the NetBIOS domain `CORP`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtlmNames {
    #[serde(default)]
    pub netbios_domain: String,
    #[serde(default)]
    pub netbios_computer: String,
    #[serde(default)]
    pub dns_domain: String,
    /// Windows version in the challenge: major, minor, build.
    pub os_version: [u16; 3],
}

/// A server we imitate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    pub name: String,
    /// The product a scanner should name (`Postfix smtpd`), for logs and docs.
    pub product: String,
    pub grammar: Grammar,
    pub greeting: String,
    /// The first line of the EHLO reply and the HELO reply, after the code.
    pub hello: String,
    pub ehlo_keywords: Vec<String>,
    /// Mechanisms listed after `AUTH` where the listener offers AUTH.
    pub auth_mechanisms: Vec<String>,
    /// Mechanisms offered on every listener, TLS or not (Exchange's NTLM).
    #[serde(default)]
    pub auth_always: Vec<String>,
    pub queue_id: QueueIdFormat,
    /// Message size limit (advertised in SIZE) unless the configuration sets one.
    pub message_size_limit: u64,
    /// Longest command line read, unless the configuration sets one.
    pub line_length_limit: usize,
    /// Recipients per message, unless the configuration sets a limit.
    pub recipient_limit: usize,
    /// Recipients past the limit answered `rcpt_too_many` before each one
    /// also counts as an error (Postfix's `smtpd_recipient_overshoot_limit`;
    /// 0: every one counts).
    #[serde(default)]
    pub recipient_overshoot_limit: u32,
    /// MAIL before HELO/EHLO is refused.
    pub helo_required: bool,
    /// RCPT and VRFY to an unknown user at a local domain are refused.
    pub check_local_users: bool,
    /// Lines starting with `GET`, `POST`, `CONNECT` or a non-letter are
    /// answered with `forbidden` and the connection is closed (Postfix).
    pub forbidden_commands: bool,
    /// A malformed BDAT closes the connection (Postfix cannot find the chunk's end).
    pub bdat_syntax_closes: bool,
    /// Errors after which every reply line is delayed by `error_sleep_ms`.
    pub soft_error_limit: u32,
    pub error_sleep_ms: u64,
    /// NOOP, VRFY, RSET and ETRN past this many count as errors.
    pub junk_command_limit: u32,
    /// Exim's smtp_max_unknown_commands, smtp_max_synprot_errors and
    /// smtp_accept_max_nonmail (0: no such limit).
    #[serde(default)]
    pub max_unknown_commands: u32,
    #[serde(default)]
    pub max_syntax_errors: u32,
    #[serde(default)]
    pub max_nonmail_commands: u32,
    /// A message with a longer line is refused after its final dot (0: none).
    #[serde(default)]
    pub max_body_line_length: u64,
    /// Users that exist at our local domains (lower case).
    pub local_users: Vec<String>,
    #[serde(default)]
    pub ntlm: NtlmNames,
    pub timing: Timing,
    pub replies: Replies,
}

/// Values substituted into reply templates.
#[derive(Debug, Default, Clone, Copy)]
pub struct Vars<'a> {
    pub host: &'a str,
    pub arg: &'a [u8],
    pub queue_id: &'a str,
    pub size: u64,
    /// The client's IP address, as the socket says.
    pub client: &'a str,
    /// The name the client gave in HELO/EHLO.
    pub helo: &'a [u8],
    /// The session's start time, RFC 5322 style (`Fri, 27 Nov 2026 19:48:40 +0000`).
    pub date: &'a str,
    /// Whether STARTTLS could start now (for lists of commands).
    pub starttls: bool,
    /// The size of the BDAT chunk being answered.
    pub chunk: u64,
}

/// Base 62 digits, as Exim writes message ids.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62(mut n: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).unwrap_or_default()
}

impl Persona {
    /// Debian's Postfix 3.7, the default persona.
    pub fn postfix() -> Persona {
        Persona::from_toml(POSTFIX).expect("the embedded Postfix persona is valid")
    }

    /// The names of the built-in personas.
    pub const BUILTIN: [&'static str; 3] = ["postfix", "exim", "exchange"];

    /// A queue id in this persona's format, from 64 random bits, the Unix
    /// time and our host name.
    pub fn queue_id(&self, random: u64, unix_time: u64, host: &str) -> String {
        match self.queue_id {
            // Postfix's short ids: 5 hex digits of microseconds, then the inode.
            QueueIdFormat::PostfixShort => format!(
                "{:05X}{:06X}",
                ((random >> 40) & 0xF_FFFF) % 1_000_000,
                random & 0xFF_FFFF
            ),
            // Exim 4.96: time, pid (below 4194304), then 1/2000ths of a second.
            QueueIdFormat::Exim => format!(
                "{}-{}-{}",
                base62(unix_time, 6),
                base62((random >> 8) % 4_194_304, 6),
                base62((random & 0xFF) * 2000 / 256, 2)
            ),
            QueueIdFormat::Exchange => {
                let guid = format!(
                    "{:08x}{:016x}",
                    (random >> 32) as u32 ^ unix_time as u32,
                    random.rotate_left(17)
                );
                let short = host.split('.').next().unwrap_or(host).to_ascii_uppercase();
                format!(
                    "<{guid}@{host}> [InternalId={}, Hostname={short}]",
                    (random >> 12) % 90_000_000_000_000 + 10_000_000_000_000
                )
            }
        }
    }

    /// Looks a built-in persona up by name.
    pub fn builtin(name: &str) -> Option<Persona> {
        let text = match name {
            "postfix" => POSTFIX,
            "exim" => EXIM,
            "exchange" => EXCHANGE,
            _ => return None,
        };
        Some(Persona::from_toml(text).expect("the embedded personas are valid"))
    }

    /// Parses and checks a persona table.
    pub fn from_toml(text: &str) -> Result<Persona, String> {
        let persona: Persona = toml::from_str(text).map_err(|e| e.to_string())?;
        persona.check()?;
        Ok(persona)
    }

    /// Every template must start with a three-digit code and a space; an
    /// empty one means the persona never gives that reply.
    fn check(&self) -> Result<(), String> {
        let table = toml::Value::try_from(&self.replies).map_err(|e| e.to_string())?;
        let mut templates: Vec<(&str, &str)> = vec![("greeting", &self.greeting)];
        if let toml::Value::Table(t) = &table {
            for (k, v) in t {
                templates.push((k.as_str(), v.as_str().unwrap_or("")));
            }
        }
        for (key, template) in templates {
            if template.is_empty() && key != "greeting" {
                continue;
            }
            let ok = template.len() >= 4
                && template.as_bytes()[..3].iter().all(u8::is_ascii_digit)
                && template.as_bytes()[3] == b' ';
            if !ok {
                return Err(format!(
                    "reply `{key}` must start with a three-digit code and a space, got {template:?}"
                ));
            }
        }
        if self.message_size_limit == 0 || self.line_length_limit < 512 {
            return Err("message_size_limit and line_length_limit (>= 512) are needed".into());
        }
        Ok(())
    }
}

/// Renders a template (`"250 2.0.0 Ok: queued as {queue_id}"`) into a reply.
/// The client's argument is made printable first: a reply must never carry a
/// CR or LF that the client chose.
pub fn render(template: &str, vars: &Vars<'_>) -> Reply {
    // A persona without this reply (checked at load) still answers sanely.
    if template.len() < 4 || !template.is_char_boundary(4) {
        return Reply::new(451, "4.3.0 Error: internal error");
    }
    let code: u16 = template[..3].parse().unwrap_or(451);
    let mut text = template[4..].to_string();
    if text.contains('{') {
        text = text
            .replace("{host}", vars.host)
            .replace("{queue_id}", vars.queue_id)
            .replace("{size}", &vars.size.to_string())
            .replace("{client}", vars.client)
            .replace("{date}", vars.date)
            .replace("{starttls}", if vars.starttls { " STARTTLS" } else { "" })
            .replace("{chunk}", &vars.chunk.to_string())
            .replace("{helo}", &printable(vars.helo))
            .replace("{arg}", &printable(vars.arg));
    }
    if text.contains('\n') {
        let lines: Vec<Cow<'static, str>> =
            text.split('\n').map(|l| l.to_string().into()).collect();
        Reply::multiline(code, lines)
    } else {
        Reply::new(code, text)
    }
}

/// Like Postfix's `printable()`: anything but printable ASCII becomes `?`.
/// Real servers echo whole arguments (Exim quotes a 3000-byte address back),
/// so the cap is only the longest command line any persona reads.
fn printable(arg: &[u8]) -> String {
    const MAX: usize = 16384;
    arg.iter()
        .take(MAX)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_persona_is_valid() {
        let p = Persona::postfix();
        assert_eq!(p.name, "postfix");
        assert!(p.ehlo_keywords.iter().any(|k| k == "PIPELINING"));
    }

    #[test]
    fn render_substitutes_and_sanitises() {
        let vars = Vars {
            host: "mx.example.com",
            arg: b"root\r\n250 forged",
            ..Vars::default()
        };
        let r = render("252 2.0.0 {arg}", &vars);
        assert_eq!(r.to_bytes(), b"252 2.0.0 root??250 forged\r\n");
        let r = render("220 {host} ESMTP Postfix (Debian/GNU)", &vars);
        assert_eq!(
            r.to_bytes(),
            b"220 mx.example.com ESMTP Postfix (Debian/GNU)\r\n"
        );
    }

    #[test]
    fn bad_template_is_refused() {
        let text = POSTFIX.replace("quit = \"221 2.0.0 Bye\"", "quit = \"Bye\"");
        let err = Persona::from_toml(&text).unwrap_err();
        assert!(err.contains("quit"), "{err}");
    }
}
