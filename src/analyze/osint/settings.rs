//! Where the OSINT settings come from: the `[analyze.osint]` tables of the
//! config file, the environment (keys and base URLs, which win over the
//! file), and the command line (`--osint-cache`, `--refresh`, `--offline`).
//!
//! Keys are never taken from the command line (it shows in `ps`), and an
//! [`ApiKey`] cannot be printed: its `Debug` hides it and it has no
//! `Display` or `Serialize`, so it cannot slip into a report or a log.

use super::Service;
use super::rate_limit::Limits;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An API key. Read it with [`ApiKey::expose`], only to put it in a header.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<hidden>)")
    }
}

/// `[analyze.osint]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsintConfig {
    pub cache_dir: Option<PathBuf>,
    pub timeout_secs: Option<u64>,
    pub virustotal: Option<ServiceConfig>,
    pub abuseipdb: Option<ServiceConfig>,
    pub otx: Option<ServiceConfig>,
}

/// `[analyze.osint.virustotal]`, `[analyze.osint.abuseipdb]`, `[analyze.osint.otx]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub key: Option<ApiKey>,
    pub url: Option<String>,
    /// 0: no limit.
    pub per_minute: Option<u32>,
    /// 0: no limit.
    pub per_day: Option<u32>,
    pub cache_ttl_hours: Option<u64>,
    /// AbuseIPDB only.
    pub max_age_days: Option<u32>,
}

/// What the command line says.
#[derive(Debug, Clone, Default)]
pub struct CommandLine {
    pub cache_dir: Option<PathBuf>,
    pub refresh: bool,
    pub offline: bool,
}

pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// One service, resolved.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub service: Service,
    /// None: the service is off.
    pub key: Option<ApiKey>,
    /// Where the key came from (`LATRINE_VT_KEY`, `config file`), for the
    /// provenance; never the key.
    pub key_source: Option<String>,
    pub base_url: String,
    pub limits: Limits,
    pub ttl: Duration,
    /// AbuseIPDB's `maxAgeInDays`.
    pub max_age_days: u32,
}

impl ServiceSettings {
    /// A service's defaults: the free tiers' limits.
    pub fn defaults(service: Service) -> ServiceSettings {
        let (url, per_minute, per_day, ttl_hours) = match service {
            Service::VirusTotal => (super::virustotal::DEFAULT_URL, Some(4), Some(500), 7 * 24),
            Service::AbuseIpdb => (super::abuseipdb::DEFAULT_URL, None, Some(1000), 24),
            Service::Otx => (super::otx::DEFAULT_URL, Some(60), None, 24),
        };
        ServiceSettings {
            service,
            key: None,
            key_source: None,
            base_url: url.to_string(),
            limits: Limits {
                per_minute,
                per_day,
            },
            ttl: Duration::from_secs(ttl_hours * 3600),
            max_age_days: super::abuseipdb::DEFAULT_MAX_AGE_DAYS,
        }
    }
}

/// Everything the OSINT stage needs.
#[derive(Debug, Clone)]
pub struct OsintSettings {
    /// Every service, in [`Service::ALL`] order, on or off.
    pub services: Vec<ServiceSettings>,
    /// None when no service is on, or (under `--offline`) when no place for
    /// it is known.
    pub cache_dir: Option<PathBuf>,
    pub refresh: bool,
    pub offline: bool,
    pub timeout: Duration,
}

impl OsintSettings {
    pub fn any_on(&self) -> bool {
        self.services.iter().any(|s| s.key.is_some())
    }
}

/// The default cache: `$XDG_CACHE_HOME/latrine/osint`, else
/// `$HOME/.cache/latrine/osint`.
pub fn default_cache_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let xdg = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        env("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|h| h.join(".cache"))
    })?;
    Some(base.join("latrine").join("osint"))
}

/// A key must be printable ASCII without spaces: it goes into a header.
fn check_key(key: &str, source: &str) -> Result<(), String> {
    if key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(format!(
            "{source}: an API key is printable ASCII without spaces (the key is not shown)"
        ))
    }
}

fn check_url(url: &str, source: &str) -> Result<String, String> {
    let trimmed = url.trim_end_matches('/');
    let scheme_ok = trimmed.starts_with("http://") || trimmed.starts_with("https://");
    let host_ok = trimmed
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.is_empty());
    if scheme_ok && host_ok && !trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(trimmed.to_string())
    } else {
        Err(format!("{source}: not an http:// or https:// URL"))
    }
}

/// The absolute, symlink-free form of `path`, even when its end does not
/// exist yet (the nearest existing ancestor is resolved).
fn resolved(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut rest = Vec::new();
    let mut at = absolute.as_path();
    loop {
        if let Ok(real) = at.canonicalize() {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                at = parent;
            }
            _ => return absolute,
        }
    }
}

/// Resolves the settings; `env` reads the environment (a parameter, for
/// tests). Errors name the key or variable at fault.
pub fn resolve(
    config: &OsintConfig,
    env: &dyn Fn(&str) -> Option<String>,
    cli: &CommandLine,
    spools: &[PathBuf],
) -> Result<OsintSettings, String> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut services = Vec::new();
    for service in Service::ALL {
        let mut s = ServiceSettings::defaults(service);
        let file = match service {
            Service::VirusTotal => &config.virustotal,
            Service::AbuseIpdb => &config.abuseipdb,
            Service::Otx => &config.otx,
        };
        let table = format!("[analyze.osint.{}]", service.name());
        let file = file.clone().unwrap_or_default();
        let key_var = format!("LATRINE_{}_KEY", service.env_name());
        let url_var = format!("LATRINE_{}_URL", service.env_name());
        if let Some(key) = env(&key_var) {
            check_key(key.trim(), &key_var)?;
            s.key = Some(ApiKey::new(key.trim()));
            s.key_source = Some(key_var);
        } else if let Some(key) = file.key.filter(|k| !k.expose().trim().is_empty()) {
            let source = format!("{table} key");
            check_key(key.expose().trim(), &source)?;
            s.key = Some(ApiKey::new(key.expose().trim()));
            s.key_source = Some("config file".into());
        }
        if let Some(url) = env(&url_var) {
            s.base_url = check_url(url.trim(), &url_var)?;
        } else if let Some(url) = &file.url {
            s.base_url = check_url(url.trim(), &format!("{table} url"))?;
        }
        let nonzero = |v: u32| (v > 0).then_some(v);
        if let Some(v) = file.per_minute {
            s.limits.per_minute = nonzero(v);
        }
        if let Some(v) = file.per_day {
            s.limits.per_day = nonzero(v);
        }
        if let Some(hours) = file.cache_ttl_hours {
            s.ttl = Duration::from_secs(hours.saturating_mul(3600));
        }
        if let Some(days) = file.max_age_days {
            if service != Service::AbuseIpdb {
                return Err(format!("{table} max_age_days: AbuseIPDB only"));
            }
            if !(1..=365).contains(&days) {
                return Err(format!(
                    "{table} max_age_days: {days} is out of range 1..=365"
                ));
            }
            s.max_age_days = days;
        }
        services.push(s);
    }
    let timeout_secs = config.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if !(1..=600).contains(&timeout_secs) {
        return Err(format!(
            "[analyze.osint] timeout_secs: {timeout_secs} is out of range 1..=600"
        ));
    }
    let mut settings = OsintSettings {
        services,
        cache_dir: None,
        refresh: cli.refresh,
        offline: cli.offline,
        timeout: Duration::from_secs(timeout_secs),
    };
    if !settings.any_on() {
        return Ok(settings);
    }
    let chosen = cli
        .cache_dir
        .clone()
        .or_else(|| config.cache_dir.clone())
        .or_else(|| default_cache_dir(&env));
    let Some(dir) = chosen else {
        if cli.offline {
            return Ok(settings);
        }
        return Err("no place for the OSINT cache: give --osint-cache DIR, or \
                    [analyze.osint] cache_dir, or set XDG_CACHE_HOME or HOME"
            .into());
    };
    let real = resolved(&dir);
    for spool in spools {
        let spool_real = resolved(spool);
        if real.starts_with(&spool_real) {
            return Err(format!(
                "the OSINT cache {} is inside the spool {}: a spool is evidence and \
                 analyze writes nothing there; choose another --osint-cache",
                dir.display(),
                spool.display()
            ));
        }
    }
    settings.cache_dir = Some(dir);
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn keys_from_the_environment_win_and_never_print() {
        let config: OsintConfig = toml::from_str(
            "[virustotal]\nkey = \"file-vt-key\"\nper_minute = 0\n\
             [otx]\nkey = \"file-otx-key\"\nurl = \"http://127.0.0.1:9/\"\n",
        )
        .unwrap();
        let env = env_of(&[
            ("LATRINE_VT_KEY", "env-vt-key"),
            ("LATRINE_ABUSEIPDB_KEY", ""),
            ("HOME", "/home/analyst"),
        ]);
        let s = resolve(&config, &env, &CommandLine::default(), &[]).unwrap();
        let vt = &s.services[0];
        assert_eq!(vt.key.as_ref().unwrap().expose(), "env-vt-key");
        assert_eq!(vt.key_source.as_deref(), Some("LATRINE_VT_KEY"));
        assert_eq!(vt.limits.per_minute, None);
        assert_eq!(vt.limits.per_day, Some(500));
        assert!(s.services[1].key.is_none(), "an empty variable is no key");
        assert_eq!(s.services[2].key_source.as_deref(), Some("config file"));
        assert_eq!(s.services[2].base_url, "http://127.0.0.1:9");
        assert_eq!(
            s.cache_dir,
            Some(PathBuf::from("/home/analyst/.cache/latrine/osint"))
        );
        let shown = format!("{s:?} {config:?}");
        for key in ["env-vt-key", "file-vt-key", "file-otx-key"] {
            assert!(!shown.contains(key), "{shown}");
        }
    }

    #[test]
    fn bad_values_are_named_without_the_key() {
        let none = OsintConfig::default();
        let cli = CommandLine::default();
        let err = resolve(
            &none,
            &env_of(&[("LATRINE_OTX_KEY", "secret with space"), ("HOME", "/h")]),
            &cli,
            &[],
        )
        .unwrap_err();
        assert!(err.starts_with("LATRINE_OTX_KEY: "), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = resolve(
            &none,
            &env_of(&[
                ("LATRINE_OTX_KEY", "k"),
                ("LATRINE_OTX_URL", "ftp://x"),
                ("HOME", "/h"),
            ]),
            &cli,
            &[],
        )
        .unwrap_err();
        assert!(err.starts_with("LATRINE_OTX_URL: "), "{err}");
        let err = resolve(&none, &env_of(&[("LATRINE_VT_KEY", "k")]), &cli, &[]).unwrap_err();
        assert!(err.contains("--osint-cache"), "{err}");
        // No key, no cache needed.
        assert!(resolve(&none, &env_of(&[]), &cli, &[]).is_ok());
    }

    #[test]
    fn the_cache_stays_out_of_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(spool.join("s1")).unwrap();
        let env = env_of(&[("LATRINE_VT_KEY", "k")]);
        let cli = |cache: PathBuf| CommandLine {
            cache_dir: Some(cache),
            ..CommandLine::default()
        };
        let config = OsintConfig::default();
        let spools = [spool.clone()];
        for inside in [spool.clone(), spool.join("s1/not-yet/cache")] {
            let err = resolve(&config, &env, &cli(inside), &spools).unwrap_err();
            assert!(err.contains("inside the spool"), "{err}");
        }
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&spool, &link).unwrap();
        assert!(resolve(&config, &env, &cli(link.join("c")), &spools).is_err());
        let beside = dir.path().join("cache");
        let s = resolve(&config, &env, &cli(beside.clone()), &spools).unwrap();
        assert_eq!(s.cache_dir, Some(beside));
    }
}
