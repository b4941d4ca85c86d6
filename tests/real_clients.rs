//! Real mail clients, as Debian packages them, against the real binary over
//! loopback; each session is then read back from the sealed spool.
//!
//! The clients (`.ci/run` installs them; under `CI=true` a missing one fails
//! the run): PHPMailer (`libphp-phpmailer`, driven by
//! `scripts/clients/phpmailer_send.php`), swaks, Python's smtplib
//! (`scripts/clients/smtplib_send.py`), curl, msmtp, and Python's `ssl` for
//! the TLS probes (`scripts/clients/tls_probe.py`). No client verifies the
//! self-signed certificate.
//!
//! [`CASES`] is the list of what is tried. It drives the tests (one `#[test]`
//! per row, made by [`cases!`]) and is also the "Tested with real clients"
//! table of the README, which `readme_table_is_current` regenerates and
//! compares, so the README cannot claim what the tests do not check.
//!
//! # What "byte-exact" means here
//!
//! A test can only claim that the server stored exactly what the client sent
//! if it knows what the client sent. Per client:
//!
//! - **PHPMailer, smtplib**: the helper scripts subclass the library's SMTP
//!   class and record every byte it writes to the socket (outside the TLS
//!   handshake). The whole client side of the session, rebuilt from the
//!   transcript's `C` records and the stored `.eml` (dot-stuffed again), must
//!   equal that recording; the `.eml` must equal the DATA payload of the
//!   recording with the dot-stuffing undone. Byte-exact.
//! - **swaks**: swaks prints every line it sends (` -> `, ` ~> ` under TLS);
//!   those lines, each with CRLF, are the recording, checked as above. With
//!   `--data` the message is also our own file, which must be stored as is
//!   plus the CRLF swaks puts before the final dot. Byte-exact.
//! - **curl, msmtp**: they send our file unchanged (dot-stuffed on the wire),
//!   so the `.eml` must equal the file. Byte-exact. (The file carries `Date`,
//!   `From` and `Message-ID`, or msmtp would add them.)
//! - **Attachments**: the manifest's `sha256`, and the bytes under
//!   `attachments/`, must equal the attached file's. Byte-exact.
//! - Structural only: decoded headers in the manifest (subject, X-Mailer),
//!   the parts of an HTML + text message.
//!
//! Credentials: the manifest's `auth` must hold the user name and password
//! sent (PLAIN, LOGIN) or the user name, our challenge and a digest equal to
//! HMAC-MD5(password, challenge) (CRAM-MD5). TLS: `tls.mode`, version,
//! cipher, and JA3 (the MD5 of `ja3_string`) and JA4 well formed.
//!
//! Each test starts its own listener (three sockets: smtp, submission,
//! smtps): the AUTH judge remembers failures per IP across sessions.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use latrine::events::{EndReason, TlsRecord};
use latrine::spool::Manifest;
use latrine::spool::manifest::MessageRecord;
use md5::Md5;
use sha2::{Digest, Sha256};
use support::{HOSTNAME, Honeypot};

// ===========================================================================
// The cases: they drive the tests and are the README's table
// ===========================================================================

/// The program that talks to the honeypot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    PhpMailer,
    Swaks,
    Smtplib,
    Curl,
    Msmtp,
    /// Python's `ssl` module (OpenSSL), with a plain socket around it.
    PythonSsl,
    /// A raw TCP socket from the test itself.
    RawTcp,
}

/// Which of the three listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    /// `--listen`: port 25 style, AUTH only after STARTTLS.
    Smtp,
    /// `--listen-submission`: STARTTLS and AUTH offered.
    Submission,
    /// `--listen-smtps`: TLS from the first byte.
    Smtps,
}

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    Plain,
    StartTls,
    Implicit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    Plain,
    Login,
    CramMd5,
}

/// A client option that changes how it talks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    None,
    /// PHPMailer: no `SMTPSecure`, `SMTPAutoTLS` left on (its default).
    AutoTls,
    /// swaks `--pipeline`.
    Pipeline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Text,
    HtmlText,
    Attachment,
}

/// What a case does and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Send one message; check it, the credentials and TLS in the spool.
    Send(Body),
    /// Send twice over TLS; the fingerprints must not change.
    FingerprintsStable,
    /// `STARTTLS` and `MAIL FROM` in one packet.
    StartTlsInjection,
    /// Garbage instead of a ClientHello after `220 Ready to start TLS`.
    GarbageAfterStartTls,
    /// Plaintext SMTP on the smtps port.
    PlaintextOnSmtps,
    /// A TLS ClientHello as the first bytes on the plaintext port.
    ClientHelloOnPlainPort,
    /// The default policy: five refusals per IP, then success.
    AcceptAfterFive,
    /// The generated certificate survives a restart.
    CertificateKept,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    test: &'static str,
    client: Client,
    port: Port,
    tls: Security,
    auth: Auth,
    opt: Opt,
    check: Check,
}

/// Defines [`CASES`] and one `#[test]` per case, named after it.
macro_rules! cases {
    ($($test:ident { $($field:ident: $value:expr),* $(,)? })*) => {
        const CASES: &[Case] = &[$(Case { test: stringify!($test), $($field: $value),* }),*];
        $(
            #[test]
            fn $test() {
                run_case(stringify!($test));
            }
        )*
    };
}

cases! {
    phpmailer_text {
        client: Client::PhpMailer, port: Port::Smtp, tls: Security::Plain,
        auth: Auth::None, opt: Opt::None, check: Check::Send(Body::Text),
    }
    phpmailer_html_and_text {
        client: Client::PhpMailer, port: Port::Smtp, tls: Security::Plain,
        auth: Auth::None, opt: Opt::None, check: Check::Send(Body::HtmlText),
    }
    phpmailer_attachment {
        client: Client::PhpMailer, port: Port::Smtp, tls: Security::Plain,
        auth: Auth::None, opt: Opt::None, check: Check::Send(Body::Attachment),
    }
    phpmailer_smtps {
        client: Client::PhpMailer, port: Port::Smtps, tls: Security::Implicit,
        auth: Auth::None, opt: Opt::None, check: Check::Send(Body::Text),
    }
    phpmailer_starttls {
        client: Client::PhpMailer, port: Port::Smtp, tls: Security::StartTls,
        auth: Auth::None, opt: Opt::None, check: Check::Send(Body::Text),
    }
    phpmailer_auth_login {
        client: Client::PhpMailer, port: Port::Submission, tls: Security::Plain,
        auth: Auth::Login, opt: Opt::None, check: Check::Send(Body::Text),
    }
    phpmailer_auth_plain {
        client: Client::PhpMailer, port: Port::Submission, tls: Security::Plain,
        auth: Auth::Plain, opt: Opt::None, check: Check::Send(Body::Text),
    }
    phpmailer_auth_plain_autotls {
        client: Client::PhpMailer, port: Port::Submission, tls: Security::StartTls,
        auth: Auth::Plain, opt: Opt::AutoTls, check: Check::Send(Body::Text),
    }
    swaks_plain_starttls {
        client: Client::Swaks, port: Port::Submission, tls: Security::StartTls,
        auth: Auth::Plain, opt: Opt::None, check: Check::Send(Body::Text),
    }
    swaks_login_starttls {
        client: Client::Swaks, port: Port::Submission, tls: Security::StartTls,
        auth: Auth::Login, opt: Opt::None, check: Check::Send(Body::Text),
    }
    swaks_cram_md5_starttls {
        client: Client::Swaks, port: Port::Submission, tls: Security::StartTls,
        auth: Auth::CramMd5, opt: Opt::None, check: Check::Send(Body::Text),
    }
    swaks_plain_smtps {
        client: Client::Swaks, port: Port::Smtps, tls: Security::Implicit,
        auth: Auth::Plain, opt: Opt::None, check: Check::Send(Body::Text),
    }
    swaks_login_smtps {
        client: Client::Swaks, port: Port::Smtps, tls: Security::Implicit,
        auth: Auth::Login, opt: Opt::None, check: Check::Send(Body::Text),
    }
    swaks_cram_md5_smtps {
        client: Client::Swaks, port: Port::Smtps, tls: Security::Implicit,
        auth: Auth::CramMd5, opt: Opt::None, check: Check::Send(Body::Text),
    }
    swaks_pipeline {
        client: Client::Swaks, port: Port::Smtp, tls: Security::Plain,
        auth: Auth::None, opt: Opt::Pipeline, check: Check::Send(Body::Text),
    }
    swaks_attachment {
        client: Client::Swaks, port: Port::Smtp, tls: Security::Plain,
        auth: Auth::None, opt: Opt::None, check: Check::Send(Body::Attachment),
    }
    smtplib_starttls_login {
        client: Client::Smtplib, port: Port::Smtp, tls: Security::StartTls,
        auth: Auth::CramMd5, opt: Opt::None, check: Check::Send(Body::Text),
    }
    smtplib_smtp_ssl {
        client: Client::Smtplib, port: Port::Smtps, tls: Security::Implicit,
        auth: Auth::Plain, opt: Opt::None, check: Check::Send(Body::Text),
    }
    curl_ssl_reqd {
        client: Client::Curl, port: Port::Submission, tls: Security::StartTls,
        auth: Auth::CramMd5, opt: Opt::None, check: Check::Send(Body::Text),
    }
    curl_smtps {
        client: Client::Curl, port: Port::Smtps, tls: Security::Implicit,
        auth: Auth::Login, opt: Opt::None, check: Check::Send(Body::Text),
    }
    msmtp_starttls {
        client: Client::Msmtp, port: Port::Submission, tls: Security::StartTls,
        auth: Auth::Plain, opt: Opt::None, check: Check::Send(Body::Text),
    }
    msmtp_smtps {
        client: Client::Msmtp, port: Port::Smtps, tls: Security::Implicit,
        auth: Auth::Login, opt: Opt::None, check: Check::Send(Body::Text),
    }
    fingerprints_stable_curl {
        client: Client::Curl, port: Port::Smtps, tls: Security::Implicit,
        auth: Auth::None, opt: Opt::None, check: Check::FingerprintsStable,
    }
    fingerprints_stable_msmtp {
        client: Client::Msmtp, port: Port::Smtp, tls: Security::StartTls,
        auth: Auth::None, opt: Opt::None, check: Check::FingerprintsStable,
    }
    fingerprints_stable_smtplib {
        client: Client::Smtplib, port: Port::Smtps, tls: Security::Implicit,
        auth: Auth::None, opt: Opt::None, check: Check::FingerprintsStable,
    }
    auth_accepted_after_five_failures {
        client: Client::Smtplib, port: Port::Smtps, tls: Security::Implicit,
        auth: Auth::Plain, opt: Opt::None, check: Check::AcceptAfterFive,
    }
    starttls_injection_is_not_executed {
        client: Client::PythonSsl, port: Port::Smtp, tls: Security::StartTls,
        auth: Auth::None, opt: Opt::None, check: Check::StartTlsInjection,
    }
    garbage_after_starttls_is_recorded {
        client: Client::RawTcp, port: Port::Smtp, tls: Security::StartTls,
        auth: Auth::None, opt: Opt::None, check: Check::GarbageAfterStartTls,
    }
    plaintext_on_smtps_is_recorded {
        client: Client::RawTcp, port: Port::Smtps, tls: Security::Implicit,
        auth: Auth::None, opt: Opt::None, check: Check::PlaintextOnSmtps,
    }
    client_hello_on_plain_port_is_refused {
        client: Client::PythonSsl, port: Port::Smtp, tls: Security::Plain,
        auth: Auth::None, opt: Opt::None, check: Check::ClientHelloOnPlainPort,
    }
    certificate_is_kept_across_restarts {
        client: Client::PythonSsl, port: Port::Smtps, tls: Security::Implicit,
        auth: Auth::None, opt: Opt::None, check: Check::CertificateKept,
    }
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::PhpMailer => "PHPMailer (`libphp-phpmailer`)",
            Client::Swaks => "swaks",
            Client::Smtplib => "Python `smtplib`",
            Client::Curl => "curl",
            Client::Msmtp => "msmtp",
            Client::PythonSsl => "Python `ssl` (OpenSSL)",
            Client::RawTcp => "raw TCP",
        }
    }

    /// The commands it needs.
    fn tools(self) -> &'static [&'static str] {
        match self {
            Client::PhpMailer => &["php"],
            Client::Swaks => &["swaks"],
            Client::Smtplib | Client::PythonSsl => &["python3"],
            Client::Curl => &["curl"],
            Client::Msmtp => &["msmtp"],
            Client::RawTcp => &[],
        }
    }
}

impl Port {
    fn listener(self) -> &'static str {
        match self {
            Port::Smtp => "smtp",
            Port::Submission => "submission",
            Port::Smtps => "smtps",
        }
    }
}

impl Auth {
    /// The SASL name, as recorded in the manifest.
    fn mechanism(self) -> Option<&'static str> {
        match self {
            Auth::None => None,
            Auth::Plain => Some("PLAIN"),
            Auth::Login => Some("LOGIN"),
            Auth::CramMd5 => Some("CRAM-MD5"),
        }
    }
}

impl Case {
    /// The README's "mode" column.
    fn mode(&self) -> String {
        let tls = match self.tls {
            Security::Plain => "plaintext",
            Security::StartTls => "STARTTLS",
            Security::Implicit => "implicit TLS",
        };
        let mut parts = vec![format!("{tls}, {} port", self.port.listener())];
        let how: &[&str] = match (self.client, self.tls, self.opt) {
            (Client::PhpMailer, Security::Plain, _) => &["`SMTPAutoTLS = false`"],
            (Client::PhpMailer, Security::StartTls, Opt::AutoTls) => {
                &["no `SMTPSecure`, `SMTPAutoTLS` on (its default)"]
            }
            (Client::PhpMailer, Security::StartTls, _) => &["`SMTPSecure = 'tls'`"],
            (Client::PhpMailer, Security::Implicit, _) => &["`SMTPSecure = 'ssl'`"],
            (Client::Swaks, Security::StartTls, _) => &["`--tls`"],
            (Client::Swaks, Security::Implicit, _) => &["`--tls-on-connect`"],
            (Client::Swaks, Security::Plain, Opt::Pipeline) => &["`--pipeline`"],
            (Client::Smtplib, Security::StartTls, _) => {
                &["`starttls()`, `login()`, `send_message()`"]
            }
            (Client::Smtplib, Security::Implicit, _) if self.auth != Auth::None => {
                &["`SMTP_SSL`, `auth()`, `send_message()`"]
            }
            (Client::Smtplib, Security::Implicit, _) => &["`SMTP_SSL`, `send_message()`"],
            (Client::Curl, Security::StartTls, _) => &["`smtp://` with `--ssl-reqd`"],
            (Client::Curl, Security::Implicit, _) => &["`smtps://`"],
            (Client::Msmtp, Security::StartTls, _) => &["`tls_starttls on`"],
            (Client::Msmtp, Security::Implicit, _) => &["`tls_starttls off`"],
            _ => &[],
        };
        parts.extend(how.iter().map(|s| s.to_string()));
        let what = match self.check {
            Check::Send(Body::Text) => "",
            Check::Send(Body::HtmlText) => "HTML + text message",
            Check::Send(Body::Attachment) if self.client == Client::Swaks => {
                "`--attach` (binary attachment)"
            }
            Check::Send(Body::Attachment) => "binary attachment",
            Check::FingerprintsStable => "the same client twice",
            Check::StartTlsInjection => "`STARTTLS` and `MAIL FROM` in one packet, then TLS",
            Check::GarbageAfterStartTls => "garbage instead of a ClientHello",
            Check::PlaintextOnSmtps => "plaintext `EHLO` instead of a ClientHello",
            Check::ClientHelloOnPlainPort => "a TLS ClientHello as the first bytes",
            Check::AcceptAfterFive => "6 sessions, default `--auth-policy` (accept-after:5)",
            Check::CertificateKept => "restart on the same `--state-dir`",
        };
        if !what.is_empty() {
            parts.push(what.to_string());
        }
        parts.join("; ")
    }

    /// The README's "auth" column.
    fn auth_column(&self) -> String {
        match self.auth.mechanism() {
            None => "—".into(),
            Some(m) if self.client == Client::Smtplib && self.auth == Auth::CramMd5 => {
                format!("{m} (`login()`'s choice)")
            }
            Some(m) => m.into(),
        }
    }

    /// The README's "result" column: what the test asserts.
    fn result(&self) -> String {
        let sent = |case: &Case, body: Body| {
            let mut checks = vec!["stored byte-exact"];
            if body == Body::Attachment {
                checks.push("attachment sha256 equal");
            }
            match case.auth {
                Auth::None => {}
                Auth::CramMd5 => checks.push("user, challenge and digest (verified) in manifest"),
                _ => checks.push("user and password in manifest"),
            }
            if case.tls != Security::Plain {
                checks.push("TLS version, cipher, JA3/JA4 in manifest");
            }
            checks.join("; ")
        };
        match self.check {
            Check::Send(body) => sent(self, body),
            Check::FingerprintsStable => {
                "JA3, JA3 string and JA4 identical for both sessions; both messages \
                stored byte-exact"
                    .into()
            }
            Check::StartTlsInjection => {
                "MAIL not executed (`503` to RCPT after TLS, no `smtp.mail` \
                event); flag `starttls_injection`, `starttls_injection_bytes` > 0; \
                the bytes in `transcript.log`"
                    .into()
            }
            Check::GarbageAfterStartTls | Check::PlaintextOnSmtps => {
                "sealed with `end_reason: \"tls_failed\"`, `tls.error` set, \
                the bytes in `transcript.log`"
                    .into()
            }
            Check::ClientHelloOnPlainPort => {
                "`500 5.5.2 Error: bad UTF-8 syntax`, as Postfix; every byte in `transcript.log`"
                    .into()
            }
            Check::AcceptAfterFive => {
                "attempts 1–5 refused (535) and recorded, the 6th accepted (235); all six \
                passwords in the manifests; the message stored byte-exact"
                    .into()
            }
            Check::CertificateKept => "made once in the state directory, same bytes served after \
                the restart; subject and issuer `CN=<hostname>` only"
                .into(),
        }
    }
}

const README_INTRO: &str = "\
Each row is an integration test in [`tests/real_clients.rs`](tests/real_clients.rs):
the client, as Debian 12 packages it (`.ci/run` installs them), talks to
`latrine listen` on loopback, then the test reads the sealed session back.
\"Byte-exact\" means the stored `.eml` equals what the client put on the wire
(recorded by the PHPMailer and smtplib helper scripts in
[`scripts/clients/`](scripts/clients/), printed by swaks, or the very file
given to curl and msmtp). This table is generated from the tests' list of
cases: `cargo test --release --test real_clients readme_table_is_current`
fails when it is out of date, and rewrites it with `LATRINE_UPDATE_README=1`.
";

/// The README section, generated from [`CASES`].
fn readme_section() -> String {
    let mut s = String::from("## Tested with real clients\n\n");
    s.push_str(README_INTRO);
    s.push_str("\n| client | mode | auth | result |\n|---|---|---|---|\n");
    for case in CASES {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            case.client.name(),
            case.mode(),
            case.auth_column(),
            case.result()
        ));
    }
    s
}

#[test]
fn readme_table_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let section = readme_section();
    if readme.contains(&section) {
        return;
    }
    if std::env::var("LATRINE_UPDATE_README").as_deref() == Ok("1") {
        let heading = "## Tested with real clients\n";
        let updated = match readme.find(heading) {
            Some(start) => {
                let after = start + heading.len();
                let end = readme[after..]
                    .find("\n## ")
                    .map_or(readme.len(), |i| after + i + 1);
                format!("{}{section}{}", &readme[..start], &readme[end..])
            }
            None => format!(
                "{}\n{section}",
                readme.trim_end_matches('\n').to_owned() + "\n"
            ),
        };
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "README.md does not contain the current table of real-client tests; \
         run with LATRINE_UPDATE_README=1 or paste:\n\n{section}"
    );
}

#[test]
fn every_case_has_a_distinct_name() {
    let names: BTreeSet<&str> = CASES.iter().map(|c| c.test).collect();
    assert_eq!(names.len(), CASES.len());
}

// ===========================================================================
// Running a case
// ===========================================================================

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/clients");
const PHPMAILER: &str = "/usr/share/php/libphp-phpmailer/autoload.php";

const FROM: &str = "sender@client.example";
const RCPTS: [&str; 2] = ["first@victim.example", "second@victim.example"];
const HELO: &str = "client.example";
const USER: &str = "spammer@victim.example";
/// Punctuation, no spaces or quotes: every client can take it as is.
const PASSWORD: &str = "hunter2&Co!#";

fn run_case(name: &str) {
    let case = CASES.iter().find(|c| c.test == name).unwrap();
    if !case.client.tools().iter().all(|t| support::require_tool(t)) {
        return;
    }
    if case.client == Client::PhpMailer && !require_file(PHPMAILER) {
        return;
    }
    match case.check {
        Check::Send(body) => {
            let t = Target::start(&["--auth-policy", "accept"]);
            let sent = send(case, body, &t, 1);
            let (dir, m) = t.only_session();
            assert_sent(case, body, &dir, &m, &sent);
        }
        Check::FingerprintsStable => fingerprints_stable(case),
        Check::AcceptAfterFive => accept_after_five(case),
        Check::StartTlsInjection => starttls_injection(),
        Check::GarbageAfterStartTls => garbage_after_starttls(),
        Check::PlaintextOnSmtps => plaintext_on_smtps(),
        Check::ClientHelloOnPlainPort => client_hello_on_plain_port(),
        Check::CertificateKept => {
            if support::require_tool("openssl") {
                certificate_kept()
            }
        }
    }
}

/// Like [`support::require_tool`], for a file.
fn require_file(path: &str) -> bool {
    if Path::new(path).is_file() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{path} is required under CI=true but is missing (.ci/run installs it)");
    }
    eprintln!("skipping: {path} is missing");
    false
}

/// A honeypot with its three listeners, and a scratch directory.
struct Target {
    h: Honeypot,
    smtp: SocketAddr,
    submission: SocketAddr,
    smtps: SocketAddr,
    scratch: tempfile::TempDir,
}

impl Target {
    fn start(extra: &[&str]) -> Target {
        let (h, addresses) = Honeypot::start_all_modes(extra);
        Target {
            smtp: addresses[0],
            submission: addresses[1],
            smtps: addresses[2],
            h,
            scratch: tempfile::tempdir().unwrap(),
        }
    }

    fn addr(&self, port: Port) -> SocketAddr {
        match port {
            Port::Smtp => self.smtp,
            Port::Submission => self.submission,
            Port::Smtps => self.smtps,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// Waits for exactly `n` sealed sessions, each self-checked.
    fn sealed(&self, n: usize) -> Vec<(PathBuf, Manifest)> {
        let sessions = self.h.wait_sealed(n);
        assert_eq!(sessions.len(), n, "sealed sessions");
        for (dir, m) in &sessions {
            support::check_session(dir, m);
        }
        sessions
    }

    fn only_session(&self) -> (PathBuf, Manifest) {
        self.sealed(1).remove(0)
    }
}

/// What a client was given to send, and what it sent.
struct Sent {
    /// Every byte the client wrote outside TLS handshakes, one entry per
    /// session, when the client lets us record it.
    wire: Vec<Vec<u8>>,
    /// The message content as the client sent it (dot-stuffing undone).
    message: Vec<u8>,
    attachment: Option<Vec<u8>>,
}

/// Runs the case's client once; `round` tells the messages of several runs
/// apart.
fn send(case: &Case, body: Body, t: &Target, round: usize) -> Sent {
    let attachment = (body == Body::Attachment).then(attachment_bytes);
    if let Some(bytes) = &attachment {
        std::fs::write(t.file("report.bin"), bytes).unwrap();
    }
    match case.client {
        Client::PhpMailer => phpmailer(case, body, t),
        Client::Swaks => swaks(case, body, t, attachment.is_some()),
        Client::Smtplib => smtplib(case, t, &[PASSWORD]),
        Client::Curl => curl(case, t, round),
        Client::Msmtp => msmtp(case, t, round),
        other => unreachable!("{other:?} does not send mail"),
    }
    .with_attachment(attachment)
}

impl Sent {
    fn with_attachment(mut self, attachment: Option<Vec<u8>>) -> Sent {
        self.attachment = attachment;
        self
    }
}

/// 48 KiB of random bytes, with NULs, CR, LF and `\r\n.\r\n` in them.
fn attachment_bytes() -> Vec<u8> {
    let mut bytes = vec![0u8; 48 * 1024];
    getrandom::fill(&mut bytes).unwrap();
    bytes[1000..1005].copy_from_slice(b"\r\n.\r\n");
    bytes[2000..2004].copy_from_slice(b"\0\0\r\n");
    bytes
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

// ---------------------------------------------------------------------------
// The clients
// ---------------------------------------------------------------------------

fn phpmailer(case: &Case, body: Body, t: &Target) -> Sent {
    let addr = t.addr(case.port);
    let wire = t.file("phpmailer.wire");
    let mut config = serde_json::json!({
        "host": addr.ip().to_string(),
        "port": addr.port(),
        "security": match case.tls {
            Security::Plain => "",
            Security::StartTls if case.opt == Opt::AutoTls => "",
            Security::StartTls => "tls",
            Security::Implicit => "ssl",
        },
        "autotls": case.opt == Opt::AutoTls,
        "auth": case.auth.mechanism(),
        "user": USER,
        "pass": PASSWORD,
        "helo": HELO,
        "from": FROM,
        "to": RCPTS,
        "subject": "Grüße from PHPMailer",
        "text": "Hello from PHPMailer.\n.a line with a leading dot\n\nBye.\n",
        "wire_out": wire,
        "message_out": t.file("phpmailer.msg"),
    });
    if body == Body::HtmlText {
        config["html"] = "<html><body><p>Hello <b>HTML</b>.</p></body></html>".into();
    }
    if body == Body::Attachment {
        config["attachment"] = t.file("report.bin").to_str().unwrap().into();
        config["attachment_name"] = "report.bin".into();
    }
    let config_path = t.file("phpmailer.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let out = run(Command::new("php")
        .arg(Path::new(SCRIPTS).join("phpmailer_send.php"))
        .arg(&config_path)
        .stdin(Stdio::null()));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "221 2.0.0 Bye");
    let wire = std::fs::read(wire).unwrap();
    Sent {
        message: data_payload(&wire),
        wire: vec![wire],
        attachment: None,
    }
}

fn swaks(case: &Case, body: Body, t: &Target, attach: bool) -> Sent {
    let addr = t.addr(case.port);
    let mut cmd = Command::new("swaks");
    cmd.arg("--server")
        .arg(addr.to_string())
        .args(["--helo", HELO, "--from", FROM, "--to", &RCPTS.join(",")])
        .args(["--timeout", "20"])
        .stdin(Stdio::null());
    match case.tls {
        Security::Plain => {}
        Security::StartTls => {
            cmd.arg("--tls");
        }
        Security::Implicit => {
            cmd.arg("--tls-on-connect");
        }
    }
    if let Some(mechanism) = case.auth.mechanism() {
        cmd.args([
            "--auth",
            mechanism,
            "--auth-user",
            USER,
            "--auth-password",
            PASSWORD,
        ]);
    }
    if case.opt == Opt::Pipeline {
        cmd.arg("--pipeline");
    }
    // Our own message, without a final line end: swaks adds CRLF before
    // the final dot, and dot-stuffs the leading dot.
    let file = b"From: <sender@client.example>\r\nTo: <first@victim.example>\r\n\
Subject: swaks\r\nDate: Fri, 27 Nov 2026 16:22:31 +0000\r\n\
Message-ID: <swaks@client.example>\r\n\r\nHello from swaks.\r\n.a line with a leading dot\r\nBye.";
    if attach {
        cmd.args(["--body", "See the attachment."])
            .args(["--attach-type", "application/octet-stream"])
            .args(["--attach-name", "report.bin"])
            .arg("--attach")
            .arg(format!("@{}", t.file("report.bin").display()));
    } else {
        std::fs::write(t.file("swaks.eml"), file).unwrap();
        cmd.arg("--data")
            .arg(format!("@{}", t.file("swaks.eml").display()));
    }
    assert!(body != Body::HtmlText, "not a swaks case");
    let out = run(&mut cmd);
    let stdout = String::from_utf8(out.stdout).unwrap();
    // swaks prints every line it sends: " -> " in plaintext, " ~> " in TLS.
    let mut wire = Vec::new();
    for line in stdout.lines() {
        if let Some(sent) = line.strip_prefix(" -> ").or(line.strip_prefix(" ~> ")) {
            wire.extend_from_slice(sent.as_bytes());
            wire.extend_from_slice(b"\r\n");
        } else if line == " ->" || line == " ~>" {
            wire.extend_from_slice(b"\r\n");
        }
    }
    if case.opt == Opt::Pipeline {
        // MAIL, both RCPTs and DATA went out before any of their replies.
        let lines: Vec<&str> = stdout.lines().collect();
        let mail = lines
            .iter()
            .position(|l| l.starts_with(" -> MAIL FROM"))
            .unwrap();
        assert!(
            lines[mail + 1..=mail + RCPTS.len()]
                .iter()
                .all(|l| l.starts_with(" -> RCPT TO"))
                && lines[mail + RCPTS.len() + 1] == " -> DATA",
            "swaks did not pipeline:\n{stdout}"
        );
    }
    let message = data_payload(&wire);
    if !attach {
        let mut expected = file.to_vec();
        expected.extend_from_slice(b"\r\n");
        assert_eq!(
            String::from_utf8_lossy(&message),
            String::from_utf8_lossy(&expected),
            "swaks sent our file plus CRLF"
        );
    }
    Sent {
        message,
        wire: vec![wire],
        attachment: None,
    }
}

/// Runs the smtplib helper: one session per password.
fn smtplib(case: &Case, t: &Target, passwords: &[&str]) -> Sent {
    let addr = t.addr(case.port);
    let wire = t.file("smtplib.wire");
    let config = serde_json::json!({
        "host": addr.ip().to_string(),
        "port": addr.port(),
        "mode": match case.tls {
            Security::Plain => "plain",
            Security::StartTls => "starttls",
            Security::Implicit => "smtps",
        },
        "sni": (case.tls == Security::Implicit).then_some(HOSTNAME),
        // login() picks CRAM-MD5, the first of its preferences that we offer.
        "auth": match case.auth {
            Auth::None => None,
            Auth::CramMd5 => Some("login"),
            other => other.mechanism(),
        },
        "user": USER,
        "passwords": passwords,
        "helo": HELO,
        "from": FROM,
        "to": RCPTS,
        "subject": "smtplib",
        "text": "Hello from smtplib.\n.a line with a leading dot\nBye.\n",
        "wire_out": wire,
        "message_out": t.file("smtplib.msg"),
    });
    let config_path = t.file("smtplib.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let out = run(Command::new("python3")
        .arg(Path::new(SCRIPTS).join("smtplib_send.py"))
        .arg(&config_path)
        .stdin(Stdio::null()));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<i64> = result["auth"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a[0].as_i64().unwrap())
        .collect();
    if case.auth != Auth::None {
        let mut expected = vec![535; passwords.len() - 1];
        expected.push(235);
        assert_eq!(codes, expected, "AUTH replies: {result}");
    }
    assert_eq!(result["sent"]["refused"], serde_json::json!({}));
    let wire: Vec<Vec<u8>> = (0..passwords.len())
        .map(|i| std::fs::read(format!("{}.{i}", wire.display())).unwrap())
        .collect();
    let message = data_payload(wire.last().unwrap());
    // Structural: the payload is the message smtplib built (CRLF, SMTP policy).
    assert_eq!(message, std::fs::read(t.file("smtplib.msg")).unwrap());
    Sent {
        message,
        wire,
        attachment: None,
    }
}

/// The message given to curl and msmtp, byte for byte what must be stored.
fn file_message(client: &str, round: usize) -> Vec<u8> {
    format!(
        "Date: Fri, 27 Nov 2026 16:22:31 +0000\r\n\
         From: <sender@client.example>\r\n\
         To: <first@victim.example>, <second@victim.example>\r\n\
         Message-ID: <{client}.{round}@client.example>\r\n\
         Subject: {client}\r\n\
         \r\n\
         Hello from {client}.\r\n\
         .a line with a leading dot\r\n\
         Bye.\r\n"
    )
    .into_bytes()
}

fn curl(case: &Case, t: &Target, round: usize) -> Sent {
    let addr = t.addr(case.port);
    let message = file_message("curl", round);
    let path = t.file("curl.eml");
    std::fs::write(&path, &message).unwrap();
    let mut cmd = Command::new("curl");
    // The URL's path is curl's EHLO argument.
    match case.tls {
        Security::StartTls => cmd.arg("--ssl-reqd").arg(format!("smtp://{addr}/{HELO}")),
        // A name, so that curl sends SNI.
        Security::Implicit => cmd
            .arg("--resolve")
            .arg(format!("{HOSTNAME}:{}:{}", addr.port(), addr.ip()))
            .arg(format!("smtps://{HOSTNAME}:{}/{HELO}", addr.port())),
        Security::Plain => cmd.arg(format!("smtp://{addr}/{HELO}")),
    };
    cmd.args(["-sS", "-k", "--max-time", "20", "--mail-from", FROM])
        .args(RCPTS.iter().flat_map(|r| ["--mail-rcpt", r]))
        .arg("-T")
        .arg(&path)
        .stdin(Stdio::null());
    if let Some(mechanism) = case.auth.mechanism() {
        cmd.arg("-u")
            .arg(format!("{USER}:{PASSWORD}"))
            .arg("--login-options")
            .arg(format!("AUTH={mechanism}"));
    }
    run(&mut cmd);
    Sent {
        wire: Vec::new(),
        message,
        attachment: None,
    }
}

fn msmtp(case: &Case, t: &Target, round: usize) -> Sent {
    let addr = t.addr(case.port);
    let message = file_message("msmtp", round);
    let path = t.file("msmtp.eml");
    std::fs::write(&path, &message).unwrap();
    let mut config = format!(
        "account honeypot\nhost {}\nport {}\ndomain {HELO}\nfrom {FROM}\n\
         timeout 20\ntls {}\ntls_starttls {}\ntls_certcheck off\n",
        addr.ip(),
        addr.port(),
        if case.tls == Security::Plain {
            "off"
        } else {
            "on"
        },
        if case.tls == Security::StartTls {
            "on"
        } else {
            "off"
        },
    );
    match case.auth {
        Auth::None => config.push_str("auth off\n"),
        other => config.push_str(&format!(
            "auth {}\nuser {USER}\npassword {PASSWORD}\n",
            other.mechanism().unwrap().to_lowercase()
        )),
    }
    let config_path = t.file("msmtprc");
    std::fs::write(&config_path, config).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    run(Command::new("msmtp")
        .arg("-C")
        .arg(&config_path)
        .args(["-a", "honeypot"])
        .args(RCPTS)
        .stdin(std::fs::File::open(&path).unwrap()));
    Sent {
        wire: Vec::new(),
        message,
        attachment: None,
    }
}

// ---------------------------------------------------------------------------
// The checks of a sent message
// ---------------------------------------------------------------------------

fn assert_sent(case: &Case, body: Body, dir: &Path, m: &Manifest, sent: &Sent) {
    let id = &m.session_id;
    assert_eq!(m.end_reason, EndReason::Quit, "{id}");
    assert_eq!(m.server.listener, case.port.listener(), "{id}");
    assert!(
        !m.helo.is_empty() && m.helo.iter().all(|h| h == HELO),
        "{id}: helo {:?}",
        m.helo
    );
    assert!(
        m.protocol_errors.is_empty(),
        "{id}: {:#?}",
        m.protocol_errors
    );
    assert!(m.flags.is_empty(), "{id}: flags {:?}", m.flags);
    assert_eq!(m.starttls_injection_bytes, 0);

    // The message, byte-exact.
    assert_eq!(m.messages.len(), 1, "{id}");
    let msg = &m.messages[0];
    let stored = std::fs::read(dir.join(&msg.file)).unwrap();
    assert!(
        stored == sent.message,
        "{id}: stored message differs from what {} sent\n--- stored ---\n{}\n--- sent ---\n{}",
        case.client.name(),
        String::from_utf8_lossy(&stored),
        String::from_utf8_lossy(&sent.message)
    );
    assert_eq!(msg.sha256, sha256_hex(&sent.message));
    assert_eq!(msg.size, sent.message.len() as u64);
    assert_eq!(msg.received_size, sent.message.len() as u64);
    assert!(
        msg.accepted && !msg.truncated && msg.queue_id.is_some(),
        "{id}"
    );
    assert!(!msg.bare_lf && !msg.bare_cr && !msg.smuggling && !msg.chunked);
    assert_eq!(msg.mail_from, FROM);
    assert_eq!(msg.rcpt_to, RCPTS, "{id}");
    assert!(msg.parse_error.is_none(), "{id}: {:?}", msg.parse_error);
    // The whole client side of the dialog, when we have it.
    if let Some(wire) = sent.wire.last() {
        let rebuilt = latrine::spool::transcript::client_wire_bytes(dir, m).unwrap();
        assert!(
            &rebuilt == wire,
            "{id}: transcript + message differ from what {} sent\n--- rebuilt ---\n{}\n--- sent ---\n{}",
            case.client.name(),
            String::from_utf8_lossy(&rebuilt),
            String::from_utf8_lossy(wire)
        );
    }
    assert_body(case, body, dir, msg, sent);
    assert_tls(case, dir, m);
    assert_auth(case, m, PASSWORD, true);
}

/// Attachments byte-exact; the rest structural.
fn assert_body(case: &Case, body: Body, dir: &Path, msg: &MessageRecord, sent: &Sent) {
    let text = String::from_utf8_lossy(&sent.message);
    match body {
        Body::Text | Body::HtmlText => assert!(
            msg.attachments.is_empty(),
            "no attachment: {:#?}",
            msg.attachments
        ),
        Body::Attachment => {
            let bytes = sent.attachment.as_ref().unwrap();
            assert_eq!(msg.attachments.len(), 1, "{:#?}", msg.attachments);
            let a = &msg.attachments[0];
            assert_eq!(a.sha256, sha256_hex(bytes), "attachment sha256");
            assert_eq!(a.size, bytes.len() as u64);
            assert_eq!(a.filename.as_deref(), Some("report.bin"));
            assert_eq!(
                &std::fs::read(dir.join(&a.file)).unwrap(),
                bytes,
                "attachments/<sha256> holds the attachment"
            );
        }
    }
    if body == Body::HtmlText {
        assert!(
            text.contains("Content-Type: multipart/alternative;"),
            "{text}"
        );
        assert!(text.contains("Content-Type: text/plain;"), "{text}");
        assert!(text.contains("Content-Type: text/html;"), "{text}");
        assert!(text.contains("<p>Hello <b>HTML</b>.</p>"), "{text}");
    }
    if case.client == Client::PhpMailer {
        assert_eq!(msg.headers.subject.as_deref(), Some("Grüße from PHPMailer"));
        assert!(
            msg.headers
                .x_mailer
                .as_deref()
                .is_some_and(|x| x.starts_with("PHPMailer ")),
            "{:?}",
            msg.headers
        );
        assert!(
            text.contains("\r\n.a line with a leading dot\r\n"),
            "{text}"
        );
    }
}

fn assert_tls(case: &Case, dir: &Path, m: &Manifest) {
    let id = &m.session_id;
    let tls = match case.tls {
        Security::Plain => {
            assert!(m.tls.is_none(), "{id}: {:?}", m.tls);
            return;
        }
        Security::StartTls | Security::Implicit => {
            m.tls.as_ref().unwrap_or_else(|| panic!("{id}: no tls"))
        }
    };
    let mode = if case.tls == Security::StartTls {
        "starttls"
    } else {
        "implicit"
    };
    assert_eq!(tls.mode, mode, "{id}");
    assert!(tls.error.is_none(), "{id}: {:?}", tls.error);
    assert!(
        matches!(tls.version.as_deref(), Some("TLSv1.2" | "TLSv1.3")),
        "{id}: {tls:?}"
    );
    assert!(
        tls.cipher.as_deref().is_some_and(|c| !c.is_empty()),
        "{id}: {tls:?}"
    );
    assert!(tls.client_hello_bytes > 0, "{id}: {tls:?}");
    assert_fingerprints(tls);
    // curl and smtplib are given a name to send as SNI; the others connect
    // to an IP address (GnuTLS sends that as SNI all the same).
    let named =
        matches!(case.client, Client::Curl | Client::Smtplib) && case.tls == Security::Implicit;
    if named {
        assert_eq!(tls.sni.as_deref(), Some(HOSTNAME), "{id}: {tls:?}");
    }
    let note = support::transcript_records(dir, m)
        .into_iter()
        .filter(|r| r.direction == 'M')
        .map(|r| String::from_utf8(r.bytes).unwrap())
        .find(|n| n.starts_with("tls "))
        .unwrap_or_else(|| panic!("{id}: no tls note in the transcript"));
    assert!(
        note.starts_with(&format!("tls {mode} established ")),
        "{id}: {note}"
    );
}

/// JA3 is the MD5 of the JA3 string; JA4 has its three parts.
fn assert_fingerprints(tls: &TlsRecord) {
    let ja3 = tls.ja3.as_deref().expect("ja3");
    let ja3_string = tls.ja3_string.as_deref().expect("ja3_string");
    assert_eq!(
        ja3,
        latrine::escape::hex(&Md5::digest(ja3_string.as_bytes())),
        "ja3 = md5(ja3_string)"
    );
    assert!(ja3_string.starts_with("771,"), "{ja3_string}");
    let ja4 = tls.ja4.as_deref().expect("ja4");
    let parts: Vec<&str> = ja4.split('_').collect();
    assert_eq!(parts.len(), 3, "{ja4}");
    assert_eq!(parts[0].len(), 10, "{ja4}");
    assert!(parts[0].starts_with("t1"), "{ja4}");
    let sni_letter = if tls.sni.is_some() { 'd' } else { 'i' };
    assert_eq!(
        parts[0].as_bytes()[3] as char,
        sni_letter,
        "{ja4} vs sni {:?}",
        tls.sni
    );
    assert!(parts[1..].iter().all(|p| p.len() == 12), "{ja4}");
}

fn assert_auth(case: &Case, m: &Manifest, password: &str, accepted: bool) {
    let id = &m.session_id;
    let Some(mechanism) = case.auth.mechanism() else {
        assert!(m.auth.is_empty(), "{id}: {:?}", m.auth);
        return;
    };
    assert_eq!(m.auth.len(), 1, "{id}: {:#?}", m.auth);
    let a = &m.auth[0].attempt;
    assert_eq!(a.mechanism, mechanism, "{id}");
    assert_eq!(a.username.as_deref(), Some(USER), "{id}");
    assert_eq!(a.outcome, "complete", "{id}");
    assert_eq!(a.accepted, accepted, "{id}");
    assert!(!a.raw.is_empty());
    if case.auth == Auth::CramMd5 {
        assert_eq!(a.password, None);
        let challenge = a.challenge.as_deref().expect("challenge");
        assert!(
            challenge.starts_with('<') && challenge.ends_with(&format!("@{HOSTNAME}>")),
            "{challenge}"
        );
        assert_eq!(
            a.digest.as_deref(),
            Some(hmac_md5_hex(password.as_bytes(), challenge.as_bytes()).as_str()),
            "{id}: the digest is HMAC-MD5(password, challenge)"
        );
    } else {
        assert_eq!(a.password.as_deref(), Some(password), "{id}");
        assert!(a.challenge.is_none() && a.digest.is_none());
    }
}

// ---------------------------------------------------------------------------
// The other checks
// ---------------------------------------------------------------------------

/// The same client twice: both sessions pass every check of a message, and
/// the fingerprints of their ClientHellos are the same.
fn fingerprints_stable(case: &Case) {
    let t = Target::start(&["--auth-policy", "accept"]);
    let first = send(case, Body::Text, &t, 1);
    let (dir, m) = t.only_session();
    assert_sent(case, Body::Text, &dir, &m, &first);
    let second = send(case, Body::Text, &t, 2);
    let sessions = t.sealed(2);
    let (dir2, m2) = &sessions[1];
    assert_sent(case, Body::Text, dir2, m2, &second);
    let (a, b) = (m.tls.unwrap(), m2.tls.clone().unwrap());
    assert_eq!(a.ja3, b.ja3, "JA3 of {}", case.client.name());
    assert_eq!(a.ja3_string, b.ja3_string);
    assert_eq!(a.ja4, b.ja4, "JA4 of {}", case.client.name());
}

/// The default policy, accept-after:5, over six sessions from 127.0.0.1.
fn accept_after_five(case: &Case) {
    let t = Target::start(&[]);
    assert!(
        t.h.log.lock().unwrap().contains("auth accept-after:5"),
        "the default policy"
    );
    let passwords = ["guess1", "guess2", "guess3", "guess4", "guess5", PASSWORD];
    let sent = smtplib(case, &t, &passwords);
    let sessions = t.sealed(passwords.len());
    for (i, (dir, m)) in sessions.iter().enumerate() {
        let last = i == passwords.len() - 1;
        assert_auth(case, m, passwords[i], last);
        assert_eq!(
            latrine::spool::transcript::client_wire_bytes(dir, m).unwrap(),
            sent.wire[i],
            "{}: transcript vs. what smtplib sent",
            m.session_id
        );
        if last {
            assert_sent(case, Body::Text, dir, m, &sent);
        } else {
            assert!(m.messages.is_empty());
            assert_eq!(m.end_reason, EndReason::Quit);
        }
    }
}

/// STARTTLS with MAIL FROM in the same packet, then a real TLS handshake.
fn starttls_injection() {
    let t = Target::start(&[]);
    let out = run(Command::new("python3")
        .arg(Path::new(SCRIPTS).join("tls_probe.py"))
        .args([
            "inject",
            &t.smtp.ip().to_string(),
            &t.smtp.port().to_string(),
        ])
        .stdin(Stdio::null()));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["starttls"], "220 2.0.0 Ready to start TLS", "{r}");
    assert!(r.get("extra_plaintext_replies").is_none(), "{r}");
    assert_eq!(
        r["rcpt"], "503 5.5.1 Error: need MAIL command",
        "the injected MAIL must not count: {r}"
    );
    assert_eq!(r["quit"], "221 2.0.0 Bye");
    let injected = r["injected"].as_str().unwrap().as_bytes().to_vec();

    let (dir, m) = t.only_session();
    assert!(
        m.flags.contains(&"starttls_injection".to_string()),
        "{:?}",
        m.flags
    );
    assert_eq!(m.starttls_injection_bytes, injected.len() as u64);
    assert!(m.starttls_injection_bytes > 0);
    assert!(m.messages.is_empty());
    assert_eq!(m.end_reason, EndReason::Quit);
    let tls = m.tls.as_ref().expect("the handshake after STARTTLS");
    assert_eq!(tls.mode, "starttls");
    assert!(tls.error.is_none() && tls.version.is_some(), "{tls:?}");
    assert_fingerprints(tls);
    let events = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let names: Vec<String> = events
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["event"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        !names.iter().any(|n| n == "smtp.mail"),
        "MAIL was executed: {names:?}"
    );
    assert!(
        names.iter().any(|n| n == "smtp.starttls_injection"),
        "{names:?}"
    );
    // In the transcript: a note, then the injected bytes as client bytes.
    let records = support::transcript_records(&dir, &m);
    let note = records
        .iter()
        .position(|r| r.direction == 'M' && r.bytes == b"plaintext after STARTTLS, not executed:")
        .expect("the injection note");
    assert_eq!(records[note + 1].direction, 'C');
    assert_eq!(records[note + 1].bytes, injected);
    let mut expected = b"EHLO injector.example\r\nSTARTTLS\r\n".to_vec();
    expected.extend_from_slice(&injected);
    expected
        .extend_from_slice(b"EHLO injector.example\r\nRCPT TO:<victim@example.net>\r\nQUIT\r\n");
    assert_eq!(
        String::from_utf8_lossy(&latrine::spool::transcript::client_wire_bytes(&dir, &m).unwrap()),
        String::from_utf8_lossy(&expected)
    );
}

/// Garbage after `220 Ready to start TLS`.
fn garbage_after_starttls() {
    let t = Target::start(&[]);
    let mut s = Raw::connect(t.smtp);
    assert!(s.reply().starts_with("220 "));
    s.send(b"EHLO garbage.example\r\n");
    assert!(s.reply().contains("250-STARTTLS"));
    s.send(b"STARTTLS\r\n");
    assert_eq!(s.reply(), "220 2.0.0 Ready to start TLS");
    let garbage = b"this is not a TLS ClientHello\r\n";
    s.send(garbage);
    let _ = s.stream.shutdown(Shutdown::Write);
    let rest = s.rest();
    assert!(!rest.windows(3).any(|w| w == b"250"), "{rest:?}");

    let (dir, m) = t.only_session();
    assert_tls_failed(&dir, &m, "starttls", garbage);
    assert_eq!(m.server.listener, "smtp");
    assert_eq!(
        latrine::spool::transcript::client_wire_bytes(&dir, &m).unwrap(),
        b"EHLO garbage.example\r\nSTARTTLS\r\n"
    );
}

/// Plaintext SMTP on the smtps port.
fn plaintext_on_smtps() {
    let t = Target::start(&[]);
    let mut s = Raw::connect(t.smtps);
    let plaintext = b"EHLO plain.example\r\n";
    s.send(plaintext);
    let rest = s.rest();
    assert!(
        !rest.starts_with(b"220"),
        "no greeting before TLS: {rest:?}"
    );

    let (dir, m) = t.only_session();
    assert_tls_failed(&dir, &m, "implicit", plaintext);
    assert_eq!(m.server.listener, "smtps");
    assert!(
        support::transcript_records(&dir, &m)
            .iter()
            .all(|r| r.direction == 'M'),
        "nothing was said in SMTP"
    );
}

fn assert_tls_failed(dir: &Path, m: &Manifest, mode: &str, client_bytes: &[u8]) {
    assert_eq!(m.end_reason, EndReason::TlsFailed);
    let tls = m.tls.as_ref().expect("the failed handshake is recorded");
    assert_eq!(tls.mode, mode);
    assert!(
        tls.error.as_deref().is_some_and(|e| !e.is_empty()),
        "{tls:?}"
    );
    assert!(tls.version.is_none() && tls.cipher.is_none(), "{tls:?}");
    assert!(tls.ja3.is_none() && tls.ja4.is_none(), "{tls:?}");
    assert_eq!(tls.client_hello_bytes, client_bytes.len() as u64);
    assert!(m.messages.is_empty());
    let note = support::transcript_records(dir, m)
        .into_iter()
        .filter(|r| r.direction == 'M')
        .map(|r| String::from_utf8(r.bytes).unwrap())
        .find(|n| n.starts_with("tls "))
        .expect("a tls note in the transcript");
    assert!(note.starts_with(&format!("tls {mode} failed: ")), "{note}");
    assert!(
        note.ends_with(&format!(
            " client_hello={}",
            latrine::escape::hex(client_bytes)
        )),
        "the client's bytes, in hex: {note}"
    );
}

/// A real ClientHello (OpenSSL's) as the first bytes on the plaintext port.
/// Postfix answers its first line (up to the first LF byte; it holds the
/// handshake length 0x01fc, not UTF-8) with `500 5.5.2 Error: bad UTF-8
/// syntax` (tests/reference: `tls-clienthello-as-smtp`).
fn client_hello_on_plain_port() {
    let out = run(Command::new("python3")
        .arg(Path::new(SCRIPTS).join("tls_probe.py"))
        .arg("clienthello")
        .stdin(Stdio::null()));
    let hello = unhex(String::from_utf8(out.stdout).unwrap().trim());
    assert_eq!(&hello[..3], b"\x16\x03\x01", "a TLS handshake record");
    assert!(hello.contains(&b'\n'));

    let t = Target::start(&[]);
    let mut s = Raw::connect(t.smtp);
    // Sent at once, without waiting for the greeting, as a TLS client does.
    s.send(&hello);
    assert!(s.reply().starts_with("220 "), "the greeting");
    assert_eq!(s.reply(), "500 5.5.2 Error: bad UTF-8 syntax");
    let _ = s.stream.shutdown(Shutdown::Write);
    let _ = s.rest();

    let (dir, m) = t.only_session();
    assert!(m.tls.is_none(), "no handshake on the plaintext port");
    assert_eq!(
        m.protocol_errors.first().map(|e| e.reply.as_str()),
        Some("500 5.5.2 Error: bad UTF-8 syntax"),
        "{:#?}",
        m.protocol_errors
    );
    assert_eq!(
        latrine::spool::transcript::client_wire_bytes(&dir, &m).unwrap(),
        hello,
        "every byte of the ClientHello is in the transcript"
    );
}

/// The generated certificate: made once, served as made, kept across a
/// restart, subject `CN=<hostname>` only.
fn certificate_kept() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let state = dir.path().join("state");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--listen-smtps",
        "127.0.0.3:0",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let served = |h: &Honeypot| {
        let smtps = h.listening_addresses(2)[1];
        let out = run(Command::new("python3")
            .arg(Path::new(SCRIPTS).join("tls_probe.py"))
            .args([
                "peercert",
                &smtps.ip().to_string(),
                &smtps.port().to_string(),
            ])
            .stdin(Stdio::null()));
        unhex(String::from_utf8(out.stdout).unwrap().trim())
    };
    let cert_pem = state.join("cert.pem");
    let key_pem = state.join("key.pem");

    let mut h = Honeypot::start_on(&spool, &args);
    let first_served = served(&h);
    assert!(
        h.log
            .lock()
            .unwrap()
            .contains("made a self-signed certificate"),
        "made at first start"
    );
    let cert = std::fs::read(&cert_pem).unwrap();
    let key = std::fs::read(&key_pem).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_pem).unwrap().permissions().mode() & 0o777,
        0o600,
        "the private key is private"
    );
    assert!(
        !key_pem.starts_with(&spool),
        "the key is not in the evidence"
    );
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(&cert_pem).unwrap();
    assert_eq!(
        first_served,
        der.as_ref(),
        "the certificate served is cert.pem"
    );
    let openssl = run(Command::new("openssl")
        .args([
            "x509", "-noout", "-subject", "-issuer", "-nameopt", "RFC2253", "-in",
        ])
        .arg(&cert_pem));
    assert_eq!(
        String::from_utf8_lossy(&openssl.stdout),
        format!("subject=CN={HOSTNAME}\nissuer=CN={HOSTNAME}\n"),
        "CN=<hostname> only, self-signed"
    );
    assert_eq!(h.terminate(), Some(0));
    drop(h);

    let h = Honeypot::start_on(&spool, &args);
    let second_served = served(&h);
    assert!(
        !h.log
            .lock()
            .unwrap()
            .contains("made a self-signed certificate"),
        "not made again"
    );
    assert_eq!(std::fs::read(&cert_pem).unwrap(), cert, "same cert.pem");
    assert_eq!(std::fs::read(&key_pem).unwrap(), key, "same key.pem");
    assert_eq!(second_served, first_served, "same certificate served");
    // Both probes were recorded as sessions like any other.
    let sessions = h.wait_sealed(2);
    assert_eq!(sessions.len(), 2);
    for (_, m) in &sessions {
        assert_eq!(m.tls.as_ref().map(|t| t.mode.as_str()), Some("implicit"));
    }
}

// ===========================================================================
// Helpers
// ===========================================================================

/// A plain TCP client that reads CRLF-terminated replies.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// One whole reply, its lines joined with `\n`.
    fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let end = loop {
                if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break end;
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).unwrap();
                assert!(
                    n > 0,
                    "closed; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                self.buf.extend_from_slice(&chunk[..n]);
            };
            let line: Vec<u8> = self.buf.drain(..end + 2).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    /// Everything until the server closes.
    fn rest(&mut self) -> Vec<u8> {
        let mut all = std::mem::take(&mut self.buf);
        let _ = self.stream.read_to_end(&mut all);
        all
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    latrine::escape::hex(&Sha256::digest(bytes))
}

fn hmac_md5_hex(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..16].copy_from_slice(&Md5::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Md5::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Md5::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    latrine::escape::hex(&outer)
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The message content in a recorded client stream: the lines after the
/// `DATA` command up to the lone `.`, with the dot-stuffing undone.
fn data_payload(wire: &[u8]) -> Vec<u8> {
    let mut lines = wire.split_inclusive(|&b| b == b'\n');
    lines
        .by_ref()
        .find(|l| l.eq_ignore_ascii_case(b"DATA\r\n"))
        .expect("a DATA command in what the client sent");
    let mut content = Vec::new();
    for line in lines {
        if line == b".\r\n" {
            return content;
        }
        content.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    panic!("no end of data in what the client sent");
}
