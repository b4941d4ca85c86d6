//! The shipped systemd unit (scripts/systemd/latrine.service) and the
//! Debian package's configuration (scripts/debian/latrine.toml), checked
//! with systemd's own tools and the real binary.

mod support;

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::Command;

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/systemd/latrine.service"
);
const PACKAGED_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/debian/latrine.toml");
const EXEC_START: &str = "ExecStart=/usr/bin/latrine listen --config /etc/latrine/latrine.toml";

/// A copy of the unit in `dir` whose ExecStart is the binary under test
/// (`systemd-analyze verify` checks that the program exists).
fn unit_for_built_binary(dir: &Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert_eq!(
        unit.lines()
            .filter(|l| l.starts_with("ExecStart="))
            .collect::<Vec<_>>(),
        [EXEC_START],
        "the unit's ExecStart"
    );
    let copy = dir.join("latrine.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/latrine", env!("CARGO_BIN_EXE_latrine")),
    )
    .unwrap();
    copy
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if !support::require_tool("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_built_binary(dir.path());
    // --man=no: the Documentation= pages are installed by the package
    // (.ci/run verifies the installed unit with them).
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // Unknown or misspelt keys are only warnings: none may be printed.
    assert_eq!(stderr.trim(), "", "systemd-analyze verify warned");
}

#[test]
fn unit_exposure_is_ok_or_better() {
    if !support::require_tool("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_built_binary(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .env("SYSTEMD_COLORS", "0")
        .output()
        .expect("run systemd-analyze security");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze security failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "→ Overall exposure level for latrine.service: 1.4 OK 🙂"
    let overall = stdout
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for latrine.service: ")
                .nth(1)
        })
        .unwrap_or_else(|| panic!("no overall exposure line:\n{stdout}"));
    let mut words = overall.split_whitespace();
    let score: f64 = words
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {overall:?}"));
    let level = words.next().unwrap_or_default();
    // systemd's levels: PERFECT 0, SAFE below 1.0, OK below 5.0, then
    // MEDIUM, EXPOSED, UNSAFE, DANGEROUS.
    assert!(
        ["PERFECT", "SAFE", "OK"].contains(&level) && score < 5.0,
        "exposure {score} {level}, worse than OK:\n{stdout}"
    );
    eprintln!("systemd-analyze security: exposure {score} {level}");
}

#[test]
fn packaged_config_is_accepted_by_listen() {
    let config = std::fs::read_to_string(PACKAGED_CONFIG).unwrap();
    assert!(
        config.contains("spool = \"/var/lib/latrine/spool\"")
            && config.contains("address = \"0.0.0.0:25\""),
        "the package's sensor: port 25, spool under /var/lib/latrine"
    );
    // The same file with the unit's paths under a temp dir and port 25 on
    // loopback port 0: every key must be one listen knows.
    let dir = tempfile::tempdir().unwrap();
    let local = config
        .replace("/var/lib/latrine", &dir.path().display().to_string())
        .replace("0.0.0.0:25", "127.0.0.1:0");
    let path = dir.path().join("latrine.toml");
    std::fs::write(&path, local).unwrap();
    let config_arg = format!("--config={}", path.display());
    let mut h = support::Honeypot::start_on(&dir.path().join("spool"), &[&config_arg]);
    // A session, which also lets the start finish (SIGTERM's handler).
    let mut client = std::io::BufReader::new(h.connect());
    let mut line = String::new();
    client.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 "), "{line:?}");
    client.get_mut().write_all(b"QUIT\r\n").unwrap();
    line.clear();
    client.read_line(&mut line).unwrap();
    assert!(line.starts_with("221 "), "{line:?}");
    assert_eq!(h.terminate(), Some(0), "{}", h.log.lock().unwrap());
    assert!(
        dir.path().join("state").is_dir(),
        "state_dir from the file: {}",
        h.log.lock().unwrap()
    );
}
