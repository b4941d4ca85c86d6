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
}

/// A server we imitate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    pub name: String,
    pub greeting: String,
    pub ehlo_keywords: Vec<String>,
    /// How queue ids look: `postfix-short` (hex, 10 to 12 digits).
    pub queue_id: String,
    /// Errors after which every reply line is delayed by `error_sleep_ms`.
    pub soft_error_limit: u32,
    pub error_sleep_ms: u64,
    /// NOOP, VRFY, RSET and ETRN past this many count as errors.
    pub junk_command_limit: u32,
    /// Users that exist at our local domains (lower case).
    pub local_users: Vec<String>,
    pub replies: Replies,
}

/// Values substituted into reply templates.
#[derive(Debug, Default, Clone, Copy)]
pub struct Vars<'a> {
    pub host: &'a str,
    pub arg: &'a [u8],
    pub queue_id: &'a str,
    pub size: u64,
}

impl Persona {
    /// Debian's Postfix 3.7, the default persona.
    pub fn postfix() -> Persona {
        Persona::from_toml(POSTFIX).expect("the embedded Postfix persona is valid")
    }

    /// A queue id in this persona's format, from 64 random bits. Postfix's
    /// short ids are 10 to 12 upper-case hex digits (microseconds, then inode).
    pub fn queue_id(&self, random: u64) -> String {
        format!(
            "{:05X}{:06X}",
            (random >> 40) & 0xF_FFFF,
            random & 0xFF_FFFF
        )
    }

    /// Looks a built-in persona up by name.
    pub fn builtin(name: &str) -> Option<Persona> {
        match name {
            "postfix" => Some(Persona::postfix()),
            _ => None,
        }
    }

    /// Parses and checks a persona table.
    pub fn from_toml(text: &str) -> Result<Persona, String> {
        let persona: Persona = toml::from_str(text).map_err(|e| e.to_string())?;
        persona.check()?;
        Ok(persona)
    }

    /// Every template must start with a three-digit code and a space.
    fn check(&self) -> Result<(), String> {
        let table = toml::Value::try_from(&self.replies).map_err(|e| e.to_string())?;
        let mut templates: Vec<(&str, &str)> = vec![("greeting", &self.greeting)];
        if let toml::Value::Table(t) = &table {
            for (k, v) in t {
                templates.push((k.as_str(), v.as_str().unwrap_or("")));
            }
        }
        for (key, template) in templates {
            let ok = template.len() >= 4
                && template.as_bytes()[..3].iter().all(u8::is_ascii_digit)
                && template.as_bytes()[3] == b' ';
            if !ok {
                return Err(format!(
                    "reply `{key}` must start with a three-digit code and a space, got {template:?}"
                ));
            }
        }
        Ok(())
    }
}

/// Renders a template (`"250 2.0.0 Ok: queued as {queue_id}"`) into a reply.
/// The client's argument is made printable first: a reply must never carry a
/// CR or LF that the client chose.
pub fn render(template: &str, vars: &Vars<'_>) -> Reply {
    let code: u16 = template[..3].parse().unwrap_or(451);
    let mut text = template[4..].to_string();
    if text.contains('{') {
        text = text
            .replace("{host}", vars.host)
            .replace("{queue_id}", vars.queue_id)
            .replace("{size}", &vars.size.to_string())
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

/// Like Postfix's `printable()`: anything but printable ASCII becomes `?`,
/// and the length is capped so that a reply stays one sane line.
fn printable(arg: &[u8]) -> String {
    const MAX: usize = 256;
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
