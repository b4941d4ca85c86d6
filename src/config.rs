//! Configuration of `latrine listen`: built-in defaults, then the TOML file
//! (`--config`), then command-line options, each overriding the one before.
//! Every value is checked once, at start; a bad one is refused with its key
//! and the reason, so that a sensor never starts half-configured.
//!
//! `scripts/latrine.example.toml` documents every key.

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
    pub strict_order: Option<bool>,
    pub fsync: Option<bool>,
    pub events: Option<PathBuf>,
    #[serde(default)]
    pub limits: FileLimits,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<FileListener>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListener {
    pub address: String,
    pub name: Option<String>,
}

/// Options given on the command line; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Vec<String>,
    pub spool: Option<PathBuf>,
    pub sensor: Option<String>,
    pub hostname: Option<String>,
    pub banner: Option<String>,
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
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    /// Recorded in each session's manifest (`server.listener`).
    pub name: String,
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
            max_connections_per_ip: 20,
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
    pub persona: String,
    pub strict_order: bool,
    pub fsync: bool,
    pub events: Option<PathBuf>,
    pub limits: Limits,
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
    };

    let listeners = if !cli.listen.is_empty() {
        cli.listen
            .iter()
            .enumerate()
            .map(|(i, a)| listener("--listen", a, None, i))
            .collect::<Result<Vec<_>, _>>()?
    } else if !file.listeners.is_empty() {
        file.listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                listener(
                    &format!("listener[{i}].address"),
                    &l.address,
                    l.name.clone(),
                    i,
                )
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![listener("--listen", DEFAULT_LISTEN, None, 0)?]
    };
    for (i, a) in listeners.iter().enumerate() {
        if listeners[..i].iter().any(|b| b.address == a.address) {
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
    let persona = file.persona.unwrap_or_else(|| "postfix".into());
    if crate::smtp::Persona::builtin(&persona).is_none() {
        return Err(bad(
            "persona",
            format!("unknown persona {persona:?}; known: postfix"),
        ));
    }
    let spool = cli
        .spool
        .or(file.spool)
        .unwrap_or_else(|| DEFAULT_SPOOL.into());
    if spool.as_os_str().is_empty() {
        return Err(bad("spool", "must not be empty"));
    }
    Ok(ListenConfig {
        listeners,
        spool,
        sensor,
        hostname,
        banner,
        persona,
        strict_order: cli.strict_order.or(file.strict_order).unwrap_or(false),
        fsync: cli.fsync.or(file.fsync).unwrap_or(true),
        events: cli.events.or(file.events),
        limits,
    })
}

fn range(key: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if value < min || value > max {
        return Err(bad(key, format!("{value} is out of range {min}..={max}")));
    }
    Ok(value)
}

fn listener(
    key: &str,
    address: &str,
    name: Option<String>,
    index: usize,
) -> Result<ListenerConfig, ConfigError> {
    let address: SocketAddr = address.parse().map_err(|_| {
        bad(
            key,
            format!("{address:?} is not an ADDR:PORT such as 127.0.0.1:2525 or [::]:25"),
        )
    })?;
    let name = name.unwrap_or_else(|| {
        if index == 0 {
            "smtp".into()
        } else {
            format!("smtp{index}")
        }
    });
    check_sensor(&format!("{key} name"), &name)?;
    Ok(ListenerConfig { address, name })
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
