//! The `[analyze]` table of a TOML file (`--config`). The file may be the
//! listener's own configuration: other tables are ignored, but unknown keys
//! inside `[analyze]` are refused, so that a typo does not go unnoticed.
//!
//! ```toml
//! [analyze]
//! geoip_city = "/var/lib/GeoIP/GeoLite2-City.mmdb"   # or a Country database
//! geoip_asn = "/var/lib/GeoIP/GeoLite2-ASN.mmdb"
//! geoip_dirs = ["/var/lib/GeoIP"]                     # where to look otherwise
//!
//! [analyze.osint]                  # see super::osint::settings
//! cache_dir = "/var/cache/latrine-osint"
//! [analyze.osint.virustotal]
//! key = "..."
//! ```
//!
//! Relative paths are relative to the file's directory. Command-line options
//! win over the file.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    analyze: AnalyzeConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeConfig {
    pub geoip_city: Option<PathBuf>,
    pub geoip_asn: Option<PathBuf>,
    pub geoip_dirs: Option<Vec<PathBuf>>,
    /// `[analyze.osint]`: network lookups.
    pub osint: Option<super::osint::settings::OsintConfig>,
}

/// Reads the `[analyze]` table of `path`.
pub fn read(path: &Path) -> Result<AnalyzeConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // The message and the line only: toml's full error quotes the line,
    // which may hold an API key.
    let file: File = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
        format!("{}: {}{at}", path.display(), e.message().trim_end())
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
    let c = file.analyze;
    Ok(AnalyzeConfig {
        geoip_city: c.geoip_city.map(resolve),
        geoip_asn: c.geoip_asn.map(resolve),
        geoip_dirs: c.geoip_dirs.map(|d| d.into_iter().map(resolve).collect()),
        osint: c.osint.map(|mut o| {
            o.cache_dir = o.cache_dir.map(resolve);
            o
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_analyze_table_only() {
        let dir =
            std::env::temp_dir().join(format!("latrine-analyze-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("latrine.toml");
        std::fs::write(
            &path,
            "spool = \"x\"\n[limits]\nmax_errors = 3\n[analyze]\ngeoip_city = \"db/City.mmdb\"\n\
             geoip_asn = \"/abs/ASN.mmdb\"\n",
        )
        .unwrap();
        let c = read(&path).unwrap();
        assert_eq!(c.geoip_city, Some(dir.join("db/City.mmdb")));
        assert_eq!(c.geoip_asn, Some(PathBuf::from("/abs/ASN.mmdb")));
        std::fs::write(&path, "[analyze]\ngeoip_cty = \"typo\"\n").unwrap();
        assert!(read(&path).unwrap_err().contains("geoip_cty"));
        std::fs::write(
            &path,
            "[analyze.osint]\ncache_dir = \"c\"\n[analyze.osint.otx]\nkey = \"k\"\nper_minute = 10\n",
        )
        .unwrap();
        let c = read(&path).unwrap();
        let osint = c.osint.unwrap();
        assert_eq!(osint.cache_dir, Some(dir.join("c")));
        assert_eq!(osint.otx.unwrap().per_minute, Some(10));
        std::fs::write(&path, "[analyze.osint.otx]\napi_key = \"k\"\n").unwrap();
        assert!(read(&path).unwrap_err().contains("api_key"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_example_config_serves_both_commands() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/latrine.example.toml");
        let c = read(&example).unwrap();
        assert!(c.osint.is_some(), "the example documents [analyze.osint]");
        crate::config::read_file(&example).unwrap();
    }
}
