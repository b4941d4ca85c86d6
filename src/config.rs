//! Configuration of `latrine listen`: built-in defaults, then the TOML file
//! (`--config`), then command-line options, each overriding the one before.
//! Every value is checked once, at start; a bad one is refused with its key
//! and the reason, so that a sensor never starts half-configured.
//!
//! `scripts/latrine.example.toml` documents every key.

use crate::listen::auth_policy::AuthPolicy;
use crate::listen::deny::{self, DenySources};
use crate::smtp::AuthOffer;
use crate::tls::CertificateSource;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded default: loopback only, so that a first run exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2525";
pub const DEFAULT_SPOOL: &str = "./spool";

/// The TOML file, as written. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub spool: Option<PathBuf>,
    pub sensor: Option<String>,
    pub hostname: Option<String>,
    pub banner: Option<String>,
    pub persona: Option<String>,
    /// Override the persona's greeting latency (milliseconds).
    pub greeting_delay_ms: Option<u64>,
    pub greeting_jitter_ms: Option<u64>,
    pub strict_order: Option<bool>,
    pub fsync: Option<bool>,
    pub events: Option<PathBuf>,
    /// Offer STARTTLS (and allow implicit-TLS listeners). Default true.
    pub tls: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Where the generated certificate is kept. Default: `<spool>.state`.
    pub state_dir: Option<PathBuf>,
    /// `accept`, `reject` or `accept-after:N`.
    pub auth_policy: Option<String>,
    #[serde(default)]
    pub limits: FileLimits,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<FileListener>,
    #[serde(default)]
    pub deny: FileDeny,
    /// Run as this user after binding the sockets (`--user`).
    pub user: Option<String>,
    /// And this group; default: the user's primary group.
    pub group: Option<String>,
    /// `[analyze]`, so that one file can serve both commands: read and
    /// checked by `latrine analyze`, ignored here.
    #[serde(default)]
    pub analyze: Option<toml::Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_message_size: Option<u64>,
    pub max_recipients: Option<u64>,
    pub max_messages_per_session: Option<u64>,
    pub max_line_length: Option<u64>,
    pub max_errors: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub session_timeout_secs: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_connections_per_ip: Option<u64>,
    pub min_free_mb: Option<u64>,
    pub resume_free_mb: Option<u64>,
}

/// `[deny]`: connections closed at once and counted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDeny {
    /// Files of addresses and CIDR blocks, one a line.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// ISO 3166 alpha-2 codes.
    #[serde(default)]
    pub countries: Vec<String>,
    /// MaxMind City or Country database for `countries`.
    pub geoip_country: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListener {
    pub address: String,
    pub name: Option<String>,
    /// `smtp` (STARTTLS offered), `submission` (STARTTLS, AUTH offered) or
    /// `smtps` (implicit TLS).
    pub mode: Option<String>,
    /// Where AUTH is offered: `never`, `after_tls` or `always`.
    pub auth: Option<String>,
    /// The server this listener imitates; default: the top-level `persona`.
    pub persona: Option<String>,
}

/// Options given on the command line; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Vec<String>,
    pub listen_submission: Vec<String>,
    pub listen_smtps: Vec<String>,
    pub tls: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub auth_policy: Option<String>,
    pub spool: Option<PathBuf>,
    pub sensor: Option<String>,
    pub hostname: Option<String>,
    pub banner: Option<String>,
    pub persona: Option<String>,
    pub greeting_delay_ms: Option<u64>,
    pub greeting_jitter_ms: Option<u64>,
    pub strict_order: Option<bool>,
    pub fsync: Option<bool>,
    pub events: Option<PathBuf>,
    pub max_message_size: Option<u64>,
    pub max_recipients: Option<u64>,
    pub max_messages_per_session: Option<u64>,
    pub max_line_length: Option<u64>,
    pub max_errors: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub session_timeout_secs: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_connections_per_ip: Option<u64>,
    pub min_free_mb: Option<u64>,
    pub resume_free_mb: Option<u64>,
    pub deny_files: Vec<PathBuf>,
    pub deny_countries: Vec<String>,
    pub geoip_country: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
}

/// What a listening socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerMode {
    /// Port 25 style: plaintext, STARTTLS offered, AUTH after TLS.
    Smtp,
    /// Port 587 style: STARTTLS and AUTH offered.
    Submission,
    /// Port 465 style: TLS from the first byte.
    Smtps,
}

impl ListenerMode {
    fn parse(text: &str) -> Option<ListenerMode> {
        match text {
            "smtp" => Some(ListenerMode::Smtp),
            "submission" => Some(ListenerMode::Submission),
            "smtps" => Some(ListenerMode::Smtps),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ListenerMode::Smtp => "smtp",
            ListenerMode::Submission => "submission",
            ListenerMode::Smtps => "smtps",
        }
    }

    /// Where AUTH is offered unless the listener says otherwise.
    fn default_auth(self) -> AuthOffer {
        match self {
            ListenerMode::Smtp => AuthOffer::AfterTls,
            ListenerMode::Submission | ListenerMode::Smtps => AuthOffer::Always,
        }
    }
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    /// Recorded in each session's manifest (`server.listener`).
    pub name: String,
    pub mode: ListenerMode,
    pub auth: AuthOffer,
    /// The persona of this listener, when it is not the global one.
    pub persona: Option<String>,
}

/// Limits that protect the sensor; see the example config for the reasons
/// behind each default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_messages_per_session: u32,
    pub max_line_length: usize,
    pub max_errors: u32,
    pub idle_timeout: Duration,
    pub session_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Below this much free space on the spool's file system, MAIL gets
    /// `452 4.3.1 Insufficient system storage`; sessions are still recorded.
    pub min_free_bytes: u64,
    /// Mail is taken again once this much is free (hysteresis).
    pub resume_free_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // Postfix's message_size_limit, smtpd_recipient_limit,
            // smtpd_hard_error_limit and smtpd_timeout.
            max_message_size: 10_240_000,
            max_recipients: 1000,
            max_messages_per_session: 100,
            max_line_length: 2048,
            max_errors: 20,
            idle_timeout: Duration::from_secs(300),
            session_timeout: Duration::from_secs(1800),
            max_connections: 1000,
            max_connections_per_ip: 50,
            min_free_bytes: 256 << 20,
            resume_free_bytes: 512 << 20,
        }
    }
}

/// The checked configuration of `latrine listen`.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub listeners: Vec<ListenerConfig>,
    pub spool: PathBuf,
    pub sensor: String,
    pub hostname: String,
    /// Replaces the persona's greeting text after `220 `, when set.
    pub banner: Option<String>,
    /// The persona of every listener that does not name its own.
    pub persona: String,
    /// Greeting latency, when the configuration overrides the persona's.
    pub greeting_delay_ms: Option<u64>,
    pub greeting_jitter_ms: Option<u64>,
    /// Whether the message size and line length limits were configured;
    /// if not, each listener takes its persona's (a real Exim says SIZE 52428800).
    pub max_message_size_set: bool,
    pub max_line_length_set: bool,
    pub max_recipients_set: bool,
    pub strict_order: bool,
    pub fsync: bool,
    pub events: Option<PathBuf>,
    /// The certificate for STARTTLS and implicit TLS; `None` when TLS is off.
    pub tls: Option<CertificateSource>,
    pub auth_policy: AuthPolicy,
    pub limits: Limits,
    /// What the deny lists are read from (read at start and on SIGHUP).
    pub deny: DenySources,
    /// The user and group to run as once the sockets are bound.
    pub user: Option<String>,
    pub group: Option<String>,
}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, as written in the TOML file (`limits.max_line_length`).
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration: `{}`: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Reads a TOML config file. Unknown keys are refused (a typo must not be
/// silently ignored on a sensor).
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let key = "--config";
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(key, format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let message = e.message().to_string();
        let span = e.span().map(|s| {
            let line = text[..s.start.min(text.len())].lines().count().max(1);
            format!(" (line {line})")
        });
        bad(
            &path.display().to_string(),
            format!("{message}{}", span.unwrap_or_default()),
        )
    })
}

/// Combines defaults, the file and the command line, and checks every value.
pub fn resolve(file: FileConfig, cli: Overrides) -> Result<ListenConfig, ConfigError> {
    let deny = deny_sources(&file.deny, &cli)?;
    let defaults = Limits::default();
    let l = &file.limits;
    let pick = |cli: Option<u64>, file: Option<u64>, default: u64| cli.or(file).unwrap_or(default);

    let limits = Limits {
        max_message_size: range(
            "limits.max_message_size",
            pick(
                cli.max_message_size,
                l.max_message_size,
                defaults.max_message_size,
            ),
            1024,
            4 << 30,
        )?,
        max_recipients: range(
            "limits.max_recipients",
            pick(
                cli.max_recipients,
                l.max_recipients,
                defaults.max_recipients as u64,
            ),
            1,
            100_000,
        )? as usize,
        max_messages_per_session: range(
            "limits.max_messages_per_session",
            pick(
                cli.max_messages_per_session,
                l.max_messages_per_session,
                defaults.max_messages_per_session as u64,
            ),
            1,
            100_000,
        )? as u32,
        // RFC 5321 4.5.3.1.4 needs 512; more than 1 MB per line buys nothing.
        max_line_length: range(
            "limits.max_line_length",
            pick(
                cli.max_line_length,
                l.max_line_length,
                defaults.max_line_length as u64,
            ),
            512,
            1 << 20,
        )? as usize,
        max_errors: range(
            "limits.max_errors",
            pick(cli.max_errors, l.max_errors, defaults.max_errors as u64),
            1,
            10_000,
        )? as u32,
        idle_timeout: Duration::from_secs(range(
            "limits.idle_timeout_secs",
            pick(
                cli.idle_timeout_secs,
                l.idle_timeout_secs,
                defaults.idle_timeout.as_secs(),
            ),
            1,
            86_400,
        )?),
        session_timeout: Duration::from_secs(range(
            "limits.session_timeout_secs",
            pick(
                cli.session_timeout_secs,
                l.session_timeout_secs,
                defaults.session_timeout.as_secs(),
            ),
            1,
            7 * 86_400,
        )?),
        max_connections: range(
            "limits.max_connections",
            pick(
                cli.max_connections,
                l.max_connections,
                defaults.max_connections as u64,
            ),
            1,
            1_000_000,
        )? as usize,
        max_connections_per_ip: range(
            "limits.max_connections_per_ip",
            pick(
                cli.max_connections_per_ip,
                l.max_connections_per_ip,
                defaults.max_connections_per_ip as u64,
            ),
            1,
            1_000_000,
        )? as usize,
        min_free_bytes: range(
            "limits.min_free_mb",
            pick(
                cli.min_free_mb,
                l.min_free_mb,
                defaults.min_free_bytes >> 20,
            ),
            0,
            1 << 30,
        )? << 20,
        resume_free_bytes: range(
            "limits.resume_free_mb",
            pick(
                cli.resume_free_mb,
                l.resume_free_mb,
                defaults.resume_free_bytes >> 20,
            ),
            0,
            1 << 30,
        )? << 20,
    };

    let cli_listeners: Vec<(&str, &String, ListenerMode)> = cli
        .listen
        .iter()
        .map(|a| ("--listen", a, ListenerMode::Smtp))
        .chain(
            cli.listen_submission
                .iter()
                .map(|a| ("--listen-submission", a, ListenerMode::Submission)),
        )
        .chain(
            cli.listen_smtps
                .iter()
                .map(|a| ("--listen-smtps", a, ListenerMode::Smtps)),
        )
        .collect();
    if limits.resume_free_bytes < limits.min_free_bytes {
        return Err(bad(
            "limits.resume_free_mb",
            "must not be below limits.min_free_mb",
        ));
    }
    let listeners = if !cli_listeners.is_empty() {
        cli_listeners
            .iter()
            .map(|(key, a, mode)| listener(key, a, None, *mode, None))
            .collect::<Result<Vec<_>, _>>()?
    } else if !file.listeners.is_empty() {
        file.listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mode = match &l.mode {
                    None => ListenerMode::Smtp,
                    Some(m) => ListenerMode::parse(m).ok_or_else(|| {
                        bad(
                            &format!("listener[{i}].mode"),
                            format!("{m:?} is not one of smtp, submission, smtps"),
                        )
                    })?,
                };
                let auth = match l.auth.as_deref() {
                    None => None,
                    Some("never") => Some(AuthOffer::Never),
                    Some("after_tls") => Some(AuthOffer::AfterTls),
                    Some("always") => Some(AuthOffer::Always),
                    Some(other) => {
                        return Err(bad(
                            &format!("listener[{i}].auth"),
                            format!("{other:?} is not one of never, after_tls, always"),
                        ));
                    }
                };
                let mut config = listener(
                    &format!("listener[{i}].address"),
                    &l.address,
                    l.name.clone(),
                    mode,
                    auth,
                )?;
                if let Some(p) = &l.persona {
                    check_persona(&format!("listener[{i}].persona"), p)?;
                    config.persona = Some(p.clone());
                }
                Ok(config)
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![listener(
            "--listen",
            DEFAULT_LISTEN,
            None,
            ListenerMode::Smtp,
            None,
        )?]
    };
    // Unnamed listeners are named by mode: smtp, smtp2, submission, smtps...
    let mut listeners = listeners;
    for i in 0..listeners.len() {
        if listeners[i].name.is_empty() {
            let mode = listeners[i].mode.name();
            let same = listeners[..i]
                .iter()
                .filter(|l| l.mode.name() == mode)
                .count();
            listeners[i].name = if same == 0 {
                mode.to_string()
            } else {
                format!("{mode}{}", same + 1)
            };
        }
    }
    for (i, a) in listeners.iter().enumerate() {
        // Port 0 asks the system for any free port: never a clash.
        if a.address.port() != 0 && listeners[..i].iter().any(|b| b.address == a.address) {
            return Err(bad("listener", format!("{} is listed twice", a.address)));
        }
    }

    let hostname = cli
        .hostname
        .or(file.hostname)
        .unwrap_or_else(system_hostname);
    check_hostname("hostname", &hostname)?;
    let sensor = cli
        .sensor
        .or(file.sensor)
        .unwrap_or_else(|| sensor_from(&hostname));
    check_sensor("sensor", &sensor)?;
    let banner = cli.banner.or(file.banner);
    if let Some(b) = &banner
        && (b.is_empty() || b.len() > 400 || b.chars().any(|c| c.is_control()))
    {
        return Err(bad(
            "banner",
            "must be 1 to 400 characters without control characters",
        ));
    }
    let persona = cli
        .persona
        .clone()
        .or(file.persona)
        .unwrap_or_else(|| "postfix".into());
    check_persona("persona", &persona)?;
    let greeting_delay_ms = cli.greeting_delay_ms.or(file.greeting_delay_ms);
    let greeting_jitter_ms = cli.greeting_jitter_ms.or(file.greeting_jitter_ms);
    for (key, value) in [
        ("greeting_delay_ms", greeting_delay_ms),
        ("greeting_jitter_ms", greeting_jitter_ms),
    ] {
        if let Some(v) = value {
            range(key, v, 0, 60_000)?;
        }
    }
    let max_message_size_set = cli
        .max_message_size
        .or(file.limits.max_message_size)
        .is_some();
    let max_line_length_set = cli
        .max_line_length
        .or(file.limits.max_line_length)
        .is_some();
    let max_recipients_set = cli.max_recipients.or(file.limits.max_recipients).is_some();
    let spool = cli
        .spool
        .or(file.spool)
        .unwrap_or_else(|| DEFAULT_SPOOL.into());
    if spool.as_os_str().is_empty() {
        return Err(bad("spool", "must not be empty"));
    }
    let tls_on = cli.tls.or(file.tls).unwrap_or(true);
    let tls = match (
        tls_on,
        cli.tls_cert.or(file.tls_cert),
        cli.tls_key.or(file.tls_key),
    ) {
        (false, _, _) => None,
        (true, Some(cert), Some(key)) => Some(CertificateSource::Files { cert, key }),
        (true, None, None) => Some(CertificateSource::Generated {
            state_dir: cli
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| default_state_dir(&spool)),
            hostname: hostname.clone(),
        }),
        (true, Some(_), None) => return Err(bad("tls_key", "tls_cert is set but tls_key is not")),
        (true, None, Some(_)) => return Err(bad("tls_cert", "tls_key is set but tls_cert is not")),
    };
    if tls.is_none()
        && let Some(l) = listeners.iter().find(|l| l.mode == ListenerMode::Smtps)
    {
        return Err(bad(
            "tls",
            format!(
                "the smtps listener on {} needs TLS, which is turned off",
                l.address
            ),
        ));
    }
    let policy_text = cli.auth_policy.or(file.auth_policy);
    let auth_policy = match policy_text.as_deref() {
        None => AuthPolicy::DEFAULT,
        Some(text) => AuthPolicy::parse(text).ok_or_else(|| {
            bad(
                "auth_policy",
                format!("{text:?} is not accept, reject or accept-after:N"),
            )
        })?,
    };
    let user = cli.user.or(file.user);
    let group = cli.group.or(file.group);
    for (key, name) in [("user", &user), ("group", &group)] {
        if name.as_deref().is_some_and(|n| n.is_empty()) {
            return Err(bad(key, "must not be empty"));
        }
    }
    Ok(ListenConfig {
        listeners,
        spool,
        sensor,
        hostname,
        banner,
        persona,
        greeting_delay_ms,
        greeting_jitter_ms,
        max_message_size_set,
        max_line_length_set,
        max_recipients_set,
        strict_order: cli.strict_order.or(file.strict_order).unwrap_or(false),
        fsync: cli.fsync.or(file.fsync).unwrap_or(true),
        events: cli.events.or(file.events),
        tls,
        auth_policy,
        limits,
        deny,
        user,
        group,
    })
}

/// The deny lists' sources: the command line's replace the file's.
fn deny_sources(file: &FileDeny, cli: &Overrides) -> Result<DenySources, ConfigError> {
    let files = if cli.deny_files.is_empty() {
        file.files.clone()
    } else {
        cli.deny_files.clone()
    };
    let (key, given) = if cli.deny_countries.is_empty() {
        ("deny.countries", &file.countries)
    } else {
        ("--deny-country", &cli.deny_countries)
    };
    let countries = deny::country_codes(given).map_err(|reason| bad(key, reason))?;
    let geoip_country = cli
        .geoip_country
        .clone()
        .or(file.geoip_country.clone())
        .or_else(|| {
            let default = Path::new(deny::DEFAULT_COUNTRY_DB);
            (!countries.is_empty() && default.is_file()).then(|| default.to_path_buf())
        });
    Ok(DenySources {
        files,
        countries,
        geoip_country,
    })
}

fn range(key: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if value < min || value > max {
        return Err(bad(key, format!("{value} is out of range {min}..={max}")));
    }
    Ok(value)
}

/// Next to the spool, not inside it: the private key must not travel with
/// the evidence when the spool is copied.
fn default_state_dir(spool: &Path) -> PathBuf {
    let mut name = spool
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "spool".into());
    name.push(".state");
    spool.with_file_name(name)
}

fn listener(
    key: &str,
    address: &str,
    name: Option<String>,
    mode: ListenerMode,
    auth: Option<AuthOffer>,
) -> Result<ListenerConfig, ConfigError> {
    let address: SocketAddr = address.parse().map_err(|_| {
        bad(
            key,
            format!("{address:?} is not an ADDR:PORT such as 127.0.0.1:2525 or [::]:25"),
        )
    })?;
    let name = name.unwrap_or_default();
    if !name.is_empty() {
        check_sensor(&format!("{key} name"), &name)?;
    }
    Ok(ListenerConfig {
        address,
        name,
        mode,
        auth: auth.unwrap_or(mode.default_auth()),
        persona: None,
    })
}

/// A persona name must be one of the built-in personas.
fn check_persona(key: &str, name: &str) -> Result<(), ConfigError> {
    if crate::smtp::Persona::builtin(name).is_none() {
        return Err(bad(
            key,
            format!(
                "unknown persona {name:?}; known: {}",
                crate::smtp::Persona::BUILTIN.join(", ")
            ),
        ));
    }
    Ok(())
}

/// A host name as it appears in replies: letters, digits, `-` and `.`.
fn check_hostname(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !ok {
        return Err(bad(key, format!("{name:?} is not a valid host name")));
    }
    Ok(())
}

/// The sensor name becomes a directory name: keep it to a safe alphabet.
fn check_sensor(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(bad(
            key,
            format!(
                "{name:?} must be 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"
            ),
        ));
    }
    Ok(())
}

fn sensor_from(hostname: &str) -> String {
    let name: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect();
    if name.is_empty() || name.starts_with('.') {
        "sensor".into()
    } else {
        name
    }
}

/// The machine's host name, or `localhost` if it has none usable.
pub fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // or truncates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if check_hostname("hostname", &name).is_ok() {
        name
    } else {
        "localhost".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_default() {
        let c = resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(c.listeners[0].address.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.spool, PathBuf::from(DEFAULT_SPOOL));
        assert!(c.fsync);
        assert!(!c.strict_order);
    }

    #[test]
    fn command_line_overrides_file() {
        let file: FileConfig = toml::from_str(
            "sensor = \"from-file\"\n[limits]\nmax_errors = 5\n[[listener]]\naddress = \"127.0.0.1:2600\"\n",
        )
        .unwrap();
        let cli = Overrides {
            sensor: Some("from-cli".into()),
            ..Overrides::default()
        };
        let c = resolve(file, cli).unwrap();
        assert_eq!(c.sensor, "from-cli");
        assert_eq!(c.limits.max_errors, 5);
        assert_eq!(c.listeners[0].address.port(), 2600);
    }

    #[test]
    fn personas_per_listener_and_from_the_command_line() {
        let file: FileConfig = toml::from_str(
            "persona = \"exim\"\n[[listener]]\naddress = \"127.0.0.1:2600\"\n\
             [[listener]]\naddress = \"127.0.0.1:2601\"\npersona = \"exchange\"\n",
        )
        .unwrap();
        let c = resolve(file, Overrides::default()).unwrap();
        assert_eq!(c.persona, "exim");
        assert_eq!(c.listeners[0].persona, None);
        assert_eq!(c.listeners[1].persona.as_deref(), Some("exchange"));
        assert!(!c.max_message_size_set);
        let c = resolve(
            FileConfig::default(),
            Overrides {
                persona: Some("exchange".into()),
                greeting_delay_ms: Some(0),
                max_message_size: Some(100_000),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.persona, "exchange");
        assert_eq!(c.greeting_delay_ms, Some(0));
        assert!(c.max_message_size_set);
        let file: FileConfig =
            toml::from_str("[[listener]]\naddress = \"127.0.0.1:2600\"\npersona = \"sendmail\"\n")
                .unwrap();
        let e = resolve(file, Overrides::default()).unwrap_err();
        assert_eq!(e.key, "listener[0].persona");
        assert!(e.reason.contains("postfix, exim, exchange"), "{}", e.reason);
    }

    #[test]
    fn bad_values_name_their_key() {
        let file: FileConfig = toml::from_str("[limits]\nmax_line_length = 10\n").unwrap();
        let e = resolve(file, Overrides::default()).unwrap_err();
        assert_eq!(e.key, "limits.max_line_length");
        let e = resolve(
            FileConfig::default(),
            Overrides {
                sensor: Some("../etc".into()),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.key, "sensor");
        let file: FileConfig = toml::from_str("[[listener]]\naddress = \"nowhere\"\n").unwrap();
        assert_eq!(
            resolve(file, Overrides::default()).unwrap_err().key,
            "listener[0].address"
        );
        assert!(toml::from_str::<FileConfig>("typo_key = 1\n").is_err());
    }
}
