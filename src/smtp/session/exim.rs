//! Exim's way of reading commands (smtp_in.c in Exim 4.96), for personas
//! with `grammar = "exim"`. The replies are the persona's; this is the part
//! that is code: how a line becomes a command (a prefix match on `mail from:`,
//! no leading blanks, arguments refused where none are expected), the
//! options peeled off the end of MAIL and RCPT (with Exim's quirks), the RFC
//! 822 address parser, and Exim's limits: unknown commands, syntax or
//! protocol errors, non-mail commands, and pipelining without permission
//! (synchronisation errors).

use super::{Action, Effect, Envelope, Phase, Session, Step};
use crate::smtp::auth::Mechanism;
use crate::smtp::persona::Replies;
use crate::smtp::reply::Reply;
use crate::smtp::rfc822::{self, is_space};
use std::borrow::Cow;

/// Exim counts a blank line it adds when a message has no header (its
/// first line is not `name: value`) in the total it reports for BDAT.
pub(crate) fn added_separator(head: &[u8]) -> u64 {
    let line = &head[..memchr::memchr(b'\n', head).unwrap_or(head.len())];
    let header = match memchr::memchr(b':', line) {
        Some(colon) => colon > 0 && line[..colon].iter().all(|b| (33..=126).contains(b)),
        None => false,
    };
    u64::from(!header)
}

/// What Exim remembers across commands.
#[derive(Debug, Default)]
pub(crate) struct State {
    synprot_errors: u32,
    unknown_commands: u32,
    nonmail_commands: u32,
    /// PIPECONNECT no longer applies: set by the first DATA or BDAT, after
    /// which pipelined input is checked.
    pipe_connect_done: bool,
    pipelining_advertised: bool,
    /// MAIL, RCPT and RSET may be pipelined (EHLO offered PIPELINING).
    pipelining_sync: bool,
    chunking_offered: bool,
    tls_advertised: bool,
    auth_advertised: bool,
    esmtp: bool,
    /// One RSET, HELO/EHLO and STARTTLS per message, and the first AUTH,
    /// are not counted as non-mail commands.
    used_rset: bool,
    used_helo: bool,
    used_starttls: bool,
    used_auth: bool,
    last_was_rejected_mail: bool,
    last_was_rcpt: bool,
    /// The first reply to a RCPT in this transaction, and whether every
    /// later RCPT got the same one.
    rcpt_reply: Option<String>,
    rcpt_replies_differ: bool,
}

impl State {
    pub(crate) fn pipe_connect_acceptable(&self) -> bool {
        !self.pipe_connect_done
    }

    /// A message was received: Exim's smtp_setup_msg starts over.
    pub(crate) fn message_done(&mut self) {
        self.used_rset = false;
        self.used_helo = false;
        self.used_starttls = false;
        self.transaction_reset();
    }

    /// Exim's smtp_reset (MAIL, RSET, HELO/EHLO, STARTTLS).
    fn transaction_reset(&mut self) {
        self.rcpt_reply = None;
        self.rcpt_replies_differ = false;
    }

    fn note_rcpt_reply(&mut self, reply: &Reply) {
        let text = format!(
            "{} {}",
            reply.code(),
            reply.lines().first().map_or("", |l| l)
        );
        match &self.rcpt_reply {
            None => self.rcpt_reply = Some(text),
            Some(first) if *first != text => self.rcpt_replies_differ = true,
            Some(_) => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Rset,
    Helo,
    Ehlo,
    Auth,
    StartTls,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Quit,
    Noop,
    Etrn,
    Vrfy,
    Expn,
    Help,
}

/// Exim's command table: name, command, whether it takes an argument.
const COMMANDS: [(&[u8], Cmd, bool); 15] = [
    (b"rset", Cmd::Rset, false),
    (b"helo", Cmd::Helo, true),
    (b"ehlo", Cmd::Ehlo, true),
    (b"auth", Cmd::Auth, true),
    (b"starttls", Cmd::StartTls, false),
    (b"mail from:", Cmd::Mail, true),
    (b"rcpt to:", Cmd::Rcpt, true),
    (b"data", Cmd::Data, false),
    (b"bdat", Cmd::Bdat, true),
    (b"quit", Cmd::Quit, false),
    (b"noop", Cmd::Noop, true),
    (b"etrn", Cmd::Etrn, true),
    (b"vrfy", Cmd::Vrfy, true),
    (b"expn", Cmd::Expn, true),
    (b"help", Cmd::Help, true),
];

/// Exim's `strncmpic` prefix match: the name, then `:` (already in the
/// name), the end, or a space.
fn identify(line: &[u8]) -> Option<(Cmd, bool, &[u8])> {
    COMMANDS.iter().find_map(|&(name, cmd, has_arg)| {
        let head = line.get(..name.len())?;
        let next = line.get(name.len()).copied().unwrap_or(0);
        (head.eq_ignore_ascii_case(name) && (name.ends_with(b":") || next == 0 || next == b' '))
            .then(|| {
                let mut arg = &line[name.len()..];
                while let [first, rest @ ..] = arg {
                    if !is_space(*first) {
                        break;
                    }
                    arg = rest;
                }
                (cmd, has_arg, arg)
            })
    })
}

/// The option extracted from the end of a MAIL or RCPT argument, Exim's
/// way: `data` is a C string (it ends at the first NUL), and taking an
/// option off puts NULs where the separators were.
struct Option_ {
    name: usize,
    value: usize,
}

fn cstr(data: &[u8]) -> &[u8] {
    &data[..memchr::memchr(0, data).unwrap_or(data.len())]
}

/// Exim's extract_option.
fn extract_option(data: &mut [u8]) -> Option<Option_> {
    let len = cstr(data).len();
    if len == 0 {
        return None;
    }
    let mut v = len - 1;
    while v > 0 && is_space(data[v]) {
        v -= 1;
    }
    if v + 1 < data.len() {
        data[v + 1] = 0;
    }
    while v > 0 && data[v] != b'=' && !is_space(data[v]) {
        // Do not stop at a space inside a quoted local part.
        if data[v] == b'"' {
            loop {
                v -= 1;
                if v == 0 || data[v] == b'"' {
                    break;
                }
            }
            if v == 0 {
                return None;
            }
        }
        v -= 1;
    }
    if v == 0 {
        return None;
    }
    let mut n = v;
    if data[v] == b'=' {
        while n > 0 && data[n - 1].is_ascii_alphabetic() {
            n -= 1;
        }
        if n == 0 || !is_space(data[n - 1]) {
            return None;
        }
        data[n - 1] = 0;
    } else {
        n += 1;
    }
    data[v] = 0;
    Some(Option_ {
        name: n,
        value: v + 1,
    })
}

/// Exim's check_helo with helo_allow_chars empty: an IP literal, or
/// letters, digits, dots and hyphens.
fn valid_helo(name: &[u8]) -> bool {
    match name {
        [] => false,
        [b'[', inner @ .., b']'] => {
            let text = String::from_utf8_lossy(inner);
            let (kind, addr) = match text.get(..5) {
                Some(p) if p.eq_ignore_ascii_case("IPv6:") => (6, &text[5..]),
                Some(p) if p.eq_ignore_ascii_case("IPv4:") => (4, &text[5..]),
                _ => (0, &text[..]),
            };
            match addr.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(_)) => kind != 6,
                Ok(std::net::IpAddr::V6(_)) => kind != 4,
                Err(_) => false,
            }
        }
        [b'[', ..] => false,
        _ => name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'),
    }
}

impl Session {
    /// One command line (line ending removed), read as Exim reads it.
    pub(super) fn exim_line(&mut self, n: usize, line: &[u8], raw: &[u8]) -> Step {
        let mut end = line.len();
        while end > 0 && is_space(line[end - 1]) {
            end -= 1;
        }
        let line = &line[..end];
        let check_sync = self.exim.pipe_connect_done && self.pending_input;
        if line.contains(&0) {
            // NUL: counted as a protocol error, then refused.
            let over = self.count_synprot();
            let reply = self.reply(|r| &r.nul_in_command, b"");
            return self.step(n, reply, Effect::Error, over);
        }
        let Some((cmd, has_arg, arg)) = identify(line) else {
            if check_sync {
                return self.sync_failure(n);
            }
            return self.exim_unknown(n, line);
        };
        let sync_always = matches!(
            cmd,
            Cmd::Helo
                | Cmd::Ehlo
                | Cmd::Data
                | Cmd::Vrfy
                | Cmd::Expn
                | Cmd::Noop
                | Cmd::Etrn
                | Cmd::StartTls
        );
        let sync_unless_pipelining = matches!(cmd, Cmd::Mail | Cmd::Rcpt | Cmd::Rset);
        if check_sync && (sync_always || (sync_unless_pipelining && !self.exim.pipelining_sync)) {
            return self.sync_failure(n);
        }
        let x = &self.exim;
        let mail_command = match cmd {
            Cmd::Mail | Cmd::Rcpt | Cmd::Data | Cmd::Bdat | Cmd::Quit => true,
            Cmd::Rset => !x.used_rset,
            Cmd::Helo | Cmd::Ehlo => !x.used_helo,
            Cmd::StartTls => !x.used_starttls,
            Cmd::Auth => !x.used_auth,
            Cmd::Noop | Cmd::Etrn | Cmd::Vrfy | Cmd::Expn | Cmd::Help => false,
        };
        let limit = self.policy.persona.max_nonmail_commands;
        if !mail_command {
            self.exim.nonmail_commands += 1;
            if limit > 0 && self.exim.nonmail_commands > limit {
                return self.limit_close(n, |r| &r.too_many_nonmail, "commands");
            }
        }
        if !has_arg && !arg.is_empty() {
            let pick: fn(&Replies) -> &String = match cmd {
                Cmd::Rset => |r| &r.rset_syntax,
                Cmd::Data => |r| &r.data_syntax,
                Cmd::Quit => |r| &r.quit_syntax,
                _ => |r| &r.starttls_syntax,
            };
            return self.synprot(n, pick, b"");
        }
        let was_rcpt = cmd == Cmd::Rcpt;
        let mut rejected_mail = false;
        let step = match cmd {
            Cmd::Helo | Cmd::Ehlo => self.exim_hello(n, cmd == Cmd::Ehlo, arg),
            Cmd::Mail => {
                let (step, accepted) = self.exim_mail(n, arg);
                rejected_mail = !accepted;
                step
            }
            Cmd::Rcpt => {
                let (step, keep_rejected_mail) = self.exim_rcpt(n, arg);
                rejected_mail = keep_rejected_mail;
                step
            }
            Cmd::Data => self.exim_data(n, false, 0, false),
            Cmd::Bdat => self.exim_bdat(n, arg),
            Cmd::Rset => {
                self.exim.used_rset = true;
                self.exim.transaction_reset();
                self.junk();
                let effect = self.reset();
                self.ok(n, |r| &r.rset, b"", effect)
            }
            Cmd::Noop => self.ok(n, |r| &r.noop, b"", Effect::None),
            Cmd::Quit => {
                let reply = self.reply(|r| &r.quit, b"");
                self.step(n, reply, Effect::None, true)
            }
            Cmd::Help => self.ok(n, |r| &r.help, b"", Effect::None),
            Cmd::Expn => self.error(n, |r| &r.expn, arg),
            Cmd::Etrn => {
                if self.envelope.is_some() {
                    self.synprot(n, |r| &r.etrn_in_transaction, b"")
                } else {
                    self.error(n, |r| &r.etrn, arg)
                }
            }
            Cmd::Vrfy => self.exim_vrfy(n, arg),
            Cmd::StartTls => {
                self.exim.used_starttls = true;
                if !self.exim.tls_advertised {
                    self.synprot(n, |r| &r.starttls_unavailable, b"")
                } else {
                    self.exim.transaction_reset();
                    let step = self.starttls(n, b"");
                    // All that EHLO negotiated is forgotten once TLS is up.
                    let x = &mut self.exim;
                    x.esmtp = false;
                    x.auth_advertised = false;
                    x.pipelining_advertised = false;
                    x.pipelining_sync = false;
                    x.used_helo = false;
                    x.used_auth = false;
                    step
                }
            }
            Cmd::Auth => self.exim_auth(n, arg, raw),
        };
        self.exim.last_was_rejected_mail = rejected_mail;
        self.exim.last_was_rcpt = was_rcpt;
        step
    }

    /// Counts a syntax or protocol error; true once past the limit.
    fn count_synprot(&mut self) -> bool {
        self.errors += 1;
        self.exim.synprot_errors += 1;
        let max = self.policy.persona.max_syntax_errors;
        max > 0 && self.exim.synprot_errors > max
    }

    /// Exim's synprot_error: the reply, and past the limit a last line
    /// "Too many syntax or protocol errors" (with the same code) and a hang-up.
    fn synprot(&mut self, n: usize, pick: impl Fn(&Replies) -> &String, arg: &[u8]) -> Step {
        let reply = self.reply(pick, arg);
        self.synprot_reply(n, reply)
    }

    fn synprot_reply(&mut self, n: usize, reply: Reply) -> Step {
        let over = self.count_synprot();
        if !over {
            return self.step(n, reply, Effect::Error, false);
        }
        let last = self.reply(|r| &r.too_many_syntax_errors, b"");
        let mut lines: Vec<Cow<'static, str>> = reply.lines().to_vec();
        lines.extend(last.lines().iter().cloned());
        let reply = Reply::multiline(reply.code(), lines);
        self.step(n, reply, Effect::Limit("errors"), true)
    }

    fn limit_close(
        &mut self,
        n: usize,
        pick: impl Fn(&Replies) -> &String,
        name: &'static str,
    ) -> Step {
        self.errors += 1;
        let reply = self.reply(pick, b"");
        self.step(n, reply, Effect::Limit(name), true)
    }

    /// Input pipelined where Exim does not allow it: refused, and the
    /// connection dropped.
    fn sync_failure(&mut self, n: usize) -> Step {
        self.errors += 1;
        let reply = self.reply(|r| &r.sync_error, b"");
        self.step(n, reply, Effect::Error, true)
    }

    fn exim_unknown(&mut self, n: usize, line: &[u8]) -> Step {
        let max = self.policy.persona.max_unknown_commands;
        let seen = self.exim.unknown_commands;
        self.exim.unknown_commands += 1;
        if max > 0 && seen >= max {
            return self.limit_close(n, |r| &r.too_many_unknown, "errors");
        }
        let verb = super::verb(line).to_vec();
        self.synprot(n, |r| &r.unknown, &verb)
    }

    fn exim_hello(&mut self, n: usize, extended: bool, arg: &[u8]) -> Step {
        self.exim.used_helo = true;
        if !valid_helo(arg) {
            let over = self.count_synprot();
            let reply = if extended {
                self.reply(|r| &r.ehlo_syntax, b"")
            } else {
                self.reply(|r| &r.helo_syntax, b"")
            };
            return self.step(n, reply, Effect::Error, over);
        }
        self.exim.transaction_reset();
        let effect = self.greet(extended, arg);
        let x = &mut self.exim;
        x.esmtp = extended;
        x.auth_advertised = false;
        x.pipelining_advertised = false;
        x.tls_advertised = false;
        if !extended {
            return self.ok(n, |r| &r.helo, b"", effect);
        }
        let reply = self.ehlo_reply();
        for line in reply.lines() {
            let word = line.split(' ').next().unwrap_or("");
            let x = &mut self.exim;
            match word {
                "PIPELINING" => {
                    x.pipelining_advertised = true;
                    x.pipelining_sync = true;
                }
                "CHUNKING" => x.chunking_offered = true,
                "STARTTLS" => x.tls_advertised = true,
                "AUTH" => x.auth_advertised = true,
                _ => {}
            }
        }
        self.step(n, reply, effect, false)
    }

    /// MAIL: returns the step and whether a sender was accepted.
    fn exim_mail(&mut self, n: usize, arg: &[u8]) -> (Step, bool) {
        if (self.policy.strict_order || self.policy.persona.helo_required) && !self.greeted {
            // Refused, but not counted as a protocol error.
            let reply = self.reply(|r| &r.need_helo, b"");
            self.errors += 1;
            return (self.step(n, reply, Effect::Error, false), false);
        }
        if self.envelope.is_some() {
            return (self.synprot(n, |r| &r.mail_nested, b""), false);
        }
        if arg.is_empty() {
            return (self.synprot(n, |r| &r.mail_syntax, b""), false);
        }
        if self.messages >= self.policy.max_messages {
            return (self.limit(n, |r| &r.too_many_messages, "messages"), false);
        }
        self.exim.transaction_reset();
        let mut data = arg.to_vec();
        let mut size: u64 = 0;
        let mut params = Vec::new();
        if self.exim.esmtp {
            while let Some(opt) = extract_option(&mut data) {
                let name = cstr(&data[opt.name..]).to_ascii_uppercase();
                let value = cstr(&data[opt.value..]).to_vec();
                let needs_value =
                    matches!(&name[..], b"SIZE" | b"BODY" | b"RET" | b"ENVID" | b"AUTH");
                if needs_value && value.is_empty() {
                    break;
                }
                match &name[..] {
                    b"SIZE" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                        size = std::str::from_utf8(&value)
                            .ok()
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(u64::MAX)
                            .min(i32::MAX as u64);
                    }
                    b"SIZE" => break,
                    b"BODY" => {
                        if !(value.eq_ignore_ascii_case(b"8BITMIME")
                            || value.eq_ignore_ascii_case(b"7BIT"))
                        {
                            return (self.synprot_text(n, "invalid data for BODY"), false);
                        }
                    }
                    // DSN is not offered: RET and ENVID are ignored.
                    b"RET" | b"ENVID" | b"AUTH" | b"PRDR" => {}
                    b"SMTPUTF8" => {
                        return (
                            self.synprot_text(n, "SMTPUTF8 used when not advertised"),
                            false,
                        );
                    }
                    _ => {
                        // Not an option: put the separators back; the
                        // address parser will complain.
                        data[opt.value - 1] = b'=';
                        data[opt.name - 1] = b' ';
                        break;
                    }
                }
                let mut param = name.clone();
                if opt.value != opt.name {
                    param.push(b'=');
                    param.extend_from_slice(&value);
                }
                params.insert(0, param);
            }
        }
        let data = cstr(&data).to_vec();
        let address = match rfc822::parse_extract_address(&data, true) {
            Ok(a) => a,
            Err(e) => return (self.address_error(n, &data, &e), false),
        };
        if size > self.policy.max_message_size {
            let step = self.limit(n, |r| &r.mail_too_big, "message_size");
            return (step, false);
        }
        if self.storage_full {
            return (self.error(n, |r| &r.insufficient_storage, b""), false);
        }
        if address.domain.is_none() && !address.address.is_empty() {
            return (self.error(n, |r| &r.sender_unqualified, &data), false);
        }
        if !self.exim.pipelining_advertised && self.pending_input {
            return (self.sync_failure(n), false);
        }
        self.envelope = Some(Envelope {
            mail_from: address.address.clone(),
            mail_params: params.clone(),
            rcpt_to: Vec::new(),
        });
        let effect = Effect::Mail {
            address: address.address,
            params,
        };
        (self.ok(n, |r| &r.mail_ok, b"", effect), true)
    }

    /// A protocol error whose text is Exim's own (no persona template).
    fn synprot_text(&mut self, n: usize, text: &str) -> Step {
        let reply = self.reply(|r| &r.address_error, text.as_bytes());
        self.synprot_reply(n, reply)
    }

    /// `501 <argument>: <parser message>`, a protocol error.
    fn address_error(&mut self, n: usize, data: &[u8], error: &str) -> Step {
        let mut text = data.to_vec();
        text.extend_from_slice(b": ");
        text.extend_from_slice(error.as_bytes());
        self.synprot(n, |r| &r.address_error, &text)
    }

    /// RCPT: returns the step and whether the last rejected MAIL is to be
    /// remembered (pipelined RCPTs after a refused MAIL are not protocol errors).
    fn exim_rcpt(&mut self, n: usize, arg: &[u8]) -> (Step, bool) {
        let (step, keep) = self.exim_rcpt_reply(n, arg);
        if let Step {
            action: Action::Reply { reply, .. },
            ..
        } = &step
        {
            self.exim.note_rcpt_reply(reply);
        }
        (step, keep)
    }

    fn exim_rcpt_reply(&mut self, n: usize, arg: &[u8]) -> (Step, bool) {
        if self.envelope.is_none() {
            if self.exim.pipelining_advertised && self.exim.last_was_rejected_mail {
                return (self.error(n, |r| &r.rcpt_need_mail, b""), true);
            }
            return (self.synprot(n, |r| &r.rcpt_need_mail, b""), false);
        }
        if arg.is_empty() {
            return (self.synprot(n, |r| &r.rcpt_syntax, b""), false);
        }
        let mut data = arg.to_vec();
        // Without DSN, any option is unknown: the separators go back, in an
        // order that turns a space before a word without "=" into "=".
        if self.exim.esmtp
            && let Some(opt) = extract_option(&mut data)
        {
            data[opt.name - 1] = b' ';
            data[opt.value - 1] = b'=';
        }
        let data = cstr(&data).to_vec();
        let address = match rfc822::parse_extract_address(&data, false) {
            Ok(a) => a,
            Err(e) => return (self.address_error(n, &data, &e), false),
        };
        if address.domain.is_none() && !address.address.eq_ignore_ascii_case(b"postmaster") {
            return (self.error(n, |r| &r.recipient_unqualified, &data), false);
        }
        if self
            .envelope
            .as_ref()
            .is_some_and(|e| e.rcpt_to.len() >= self.policy.max_recipients)
        {
            return (self.limit(n, |r| &r.rcpt_too_many, "recipients"), false);
        }
        if self.restricted_local_part(&address) {
            return (self.error(n, |r| &r.restricted_characters, b""), false);
        }
        if !self.exim.pipelining_advertised && self.pending_input {
            return (self.sync_failure(n), false);
        }
        if let Some(e) = &mut self.envelope {
            e.rcpt_to.push(address.address.clone());
        }
        let effect = Effect::Rcpt {
            address: address.address,
        };
        (self.ok(n, |r| &r.rcpt_ok, b"", effect), false)
    }

    /// Debian's RCPT ACL: local parts that start with a dot or hold
    /// `@%!/|`#&?` (at local domains), or start with `.`, `/` or `|`, hold
    /// `@%!`#&?` or `/../` (elsewhere), are refused.
    fn restricted_local_part(&self, address: &rfc822::Address) -> bool {
        let local = address.local_part();
        let domain = address.domain();
        let ours = domain.is_empty()
            || domain.eq_ignore_ascii_case(self.policy.hostname.as_bytes())
            || domain.eq_ignore_ascii_case(b"localhost");
        let has = |set: &[u8]| local.iter().any(|b| set.contains(b));
        if ours {
            local.first() == Some(&b'.') || has(b"@%!/|`#&?")
        } else {
            matches!(local.first(), Some(b'.' | b'/' | b'|'))
                || has(b"@%!`#&?")
                || local.windows(4).any(|w| w == b"/../")
        }
    }

    /// DATA (or BDAT with its size): refused without a recipient, with the
    /// recipients' common error quoted first.
    fn exim_data(&mut self, n: usize, chunked: bool, size: u64, last: bool) -> Step {
        self.exim.pipe_connect_done = true;
        if !chunked || self.bdat.is_none() {
            let has_rcpt = self
                .envelope
                .as_ref()
                .is_some_and(|e| !e.rcpt_to.is_empty());
            if !has_rcpt {
                let pick: fn(&Replies) -> &String = if chunked {
                    |r| &r.bdat_need_rcpt
                } else {
                    |r| &r.data_need_rcpt
                };
                let main = self.reply(pick, b"");
                let mut lines: Vec<Cow<'static, str>> = Vec::new();
                if !self.exim.rcpt_replies_differ
                    && let Some(first) = self.exim.rcpt_reply.clone()
                {
                    let head = self.reply(|r| &r.rcpt_all_rejected, b"");
                    lines.extend(head.lines().iter().cloned());
                    lines.push(first.into());
                }
                lines.extend(main.lines().iter().cloned());
                let reply = Reply::multiline(main.code(), lines);
                if chunked && size > 0 {
                    self.phase = Phase::Discard { remaining: size };
                }
                if self.exim.pipelining_advertised && self.exim.last_was_rcpt {
                    self.errors += 1;
                    return self.step(n, reply, Effect::Error, false);
                }
                return self.synprot_reply(n, reply);
            }
        }
        if chunked {
            let first = self.bdat.is_none();
            self.bdat.get_or_insert_with(Default::default);
            self.chunk_size = size;
            self.phase = Phase::Bdat {
                remaining: size,
                last,
            };
            return Step {
                consumed: n,
                action: Action::ChunkStart { first },
            };
        }
        if self.bdat.is_some() {
            return self.error(n, |r| &r.data_after_bdat, b"");
        }
        self.data(n, b"")
    }

    fn exim_bdat(&mut self, n: usize, arg: &[u8]) -> Step {
        if !self.exim.chunking_offered {
            // The chunk is not skipped: it will be read as commands.
            return self.synprot(n, |r| &r.bdat_not_offered, b"");
        }
        // sscanf("%u %n"): a number, then the rest after blanks.
        let digits = arg.iter().take_while(|b| b.is_ascii_digit()).count();
        let Some(size) = std::str::from_utf8(&arg[..digits])
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
        else {
            return self.synprot(n, |r| &r.bdat_syntax, b"");
        };
        let rest = arg[digits..].trim_ascii();
        self.exim_data(n, true, size, rest.eq_ignore_ascii_case(b"LAST"))
    }

    fn exim_vrfy(&mut self, n: usize, arg: &[u8]) -> Step {
        self.junk();
        let address = match rfc822::parse_extract_address(arg, false) {
            Ok(a) => a,
            Err(e) => return self.error(n, |r| &r.vrfy_error, e.as_bytes()),
        };
        if address.domain.is_none() && !address.address.eq_ignore_ascii_case(b"postmaster") {
            return self.error(n, |r| &r.recipient_unqualified, arg);
        }
        self.ok(n, |r| &r.vrfy, arg, Effect::None)
    }

    fn exim_auth(&mut self, n: usize, arg: &[u8], raw: &[u8]) -> Step {
        self.exim.used_auth = true;
        if !self.exim.auth_advertised {
            return self.synprot(n, |r| &r.auth_unavailable, b"");
        }
        if self.authenticated {
            return self.synprot(n, |r| &r.auth_already, b"");
        }
        if self.envelope.is_some() {
            return self.synprot(n, |r| &r.auth_in_transaction, b"");
        }
        let name_len = arg.iter().take_while(|&&b| !is_space(b)).count();
        let (name, rest) = arg.split_at(name_len);
        if !name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return self.synprot(n, |r| &r.auth_syntax, b"");
        }
        let rest = rest.trim_ascii_start();
        let offered = self
            .mechanisms()
            .iter()
            .any(|m| name.eq_ignore_ascii_case(m.as_bytes()));
        match Mechanism::parse(name).filter(|_| offered) {
            Some(mechanism) => {
                let initial = (!rest.is_empty()).then_some(rest);
                self.begin_auth(n, mechanism, initial, raw)
            }
            None => {
                let name = name.to_vec();
                self.synprot(n, |r| &r.auth_mechanism, &name)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_prefixes() {
        assert_eq!(identify(b"MAIL FROM:<a@b>").map(|c| c.0), Some(Cmd::Mail));
        assert_eq!(
            identify(b"mail from: <a@b>").map(|c| c.2),
            Some(&b"<a@b>"[..])
        );
        assert_eq!(identify(b"MAIL FROM :<a>"), None);
        assert_eq!(identify(b"MAIL  FROM:<a>"), None);
        assert_eq!(identify(b"NOOPx"), None);
        assert_eq!(identify(b"QUIT\rQUIT"), None);
        assert_eq!(identify(b"EHLO   x").map(|c| c.2), Some(&b"x"[..]));
    }

    #[test]
    fn options_come_off_the_end_with_exims_quirks() {
        let mut d = b"<a@b> SIZE=1000 BODY=8BITMIME".to_vec();
        let o = extract_option(&mut d).unwrap();
        assert_eq!(cstr(&d[o.name..]), b"BODY");
        assert_eq!(cstr(&d[o.value..]), b"8BITMIME");
        let o = extract_option(&mut d).unwrap();
        assert_eq!(cstr(&d[o.name..]), b"SIZE");
        assert!(extract_option(&mut d).is_none());
        assert_eq!(cstr(&d), b"<a@b>");
        // RCPT's restore order turns the space into "=".
        let mut d = b"<bad address with spaces>".to_vec();
        let o = extract_option(&mut d).unwrap();
        d[o.name - 1] = b' ';
        d[o.value - 1] = b'=';
        assert_eq!(cstr(&d), b"<bad address with=spaces>");
    }

    #[test]
    fn helo_names() {
        assert!(valid_helo(b"client.example.org."));
        assert!(valid_helo(b"[IPv6:::1]"));
        assert!(valid_helo(b"[127.0.0.1]"));
        assert!(!valid_helo(b"my_host"));
        assert!(!valid_helo(b"foo bar"));
        assert!(!valid_helo(b""));
        assert!(!valid_helo("été".as_bytes()));
    }
}
