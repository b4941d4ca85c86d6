//! `latrine generate`: the man pages and shell completions the package
//! installs, made by the real binary from its clap definitions.

mod support;

use clap::CommandFactory;
use std::path::Path;
use std::process::Command;

fn generate(args: &[&str], dir: &Path) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_latrine"))
        .arg("generate")
        .args(args)
        .arg(dir)
        .output()
        .expect("run latrine generate");
    assert!(
        out.status.success(),
        "latrine generate {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It prints the paths it wrote, one a line.
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The subcommands an operator sees in `latrine --help`.
fn visible_subcommands() -> Vec<String> {
    latrine::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect()
}

#[test]
fn man_pages_name_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let written = generate(&["man"], dir.path());
    let subcommands = visible_subcommands();
    assert!(
        ["listen", "analyze", "verify"]
            .iter()
            .all(|s| subcommands.iter().any(|c| c == s)),
        "{subcommands:?}"
    );

    let main = std::fs::read_to_string(dir.path().join("latrine.1")).unwrap();
    assert!(main.starts_with(".ie"), "not roff: {main:.200}");
    assert!(main.contains(".TH latrine 1"), "{main:.400}");
    for name in &subcommands {
        assert!(
            main.contains(&format!("latrine\\-{name}(1)")),
            "latrine.1 does not name {name}:\n{main}"
        );
        let page = dir.path().join(format!("latrine-{name}.1"));
        let text = std::fs::read_to_string(&page)
            .unwrap_or_else(|e| panic!("{}: {e}; written: {written:?}", page.display()));
        assert!(
            text.contains(&format!(
                ".TH latrine-{name} 1  \"{name} {}\"",
                env!("CARGO_PKG_VERSION")
            )),
            "{text:.400}"
        );
        assert!(written.contains(&page.display().to_string()), "{written:?}");
    }
    // The packagers' own command is hidden from operators.
    assert!(!main.contains("generate"), "{main}");
    assert!(!dir.path().join("latrine-generate.1").exists());

    let listen = std::fs::read_to_string(dir.path().join("latrine-listen.1")).unwrap();
    for option in [
        "\\-\\-config",
        "\\-\\-log\\-file",
        "\\-\\-syslog\\-facility",
    ] {
        assert!(listen.contains(option), "latrine-listen.1 lacks {option}");
    }

    // man itself renders it, when installed.
    if Command::new("man").arg("--version").output().is_ok() {
        let out = Command::new("man")
            .arg("-l")
            .arg(dir.path().join("latrine-listen.1"))
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("latrine-listen"),
            "{text}"
        );
    }
}

#[test]
fn bash_completion_completes_subcommands_and_options() {
    if !support::require_tool("bash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let written = generate(&["completions", "bash"], dir.path());
    let script = dir.path().join("latrine.bash");
    assert_eq!(written, [script.display().to_string()]);

    // What bash-completion does on `latrine l<TAB>` and
    // `latrine listen --sys<TAB>`.
    let out = Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(
            r#"source "$1" || exit 1
               COMP_WORDS=(latrine l); COMP_CWORD=1; _latrine latrine l latrine
               echo "sub: ${COMPREPLY[*]}"
               COMP_WORDS=(latrine listen --sys); COMP_CWORD=2; _latrine latrine --sys listen
               echo "opt: ${COMPREPLY[*]}""#,
        )
        .arg("bash")
        .arg(&script)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sub: listen"), "{stdout}");
    assert!(
        stdout.contains("--syslog") && stdout.contains("--syslog-facility"),
        "{stdout}"
    );

    for (shell, file) in [("zsh", "_latrine"), ("fish", "latrine.fish")] {
        let written = generate(&["completions", shell], dir.path());
        let path = dir.path().join(file);
        assert_eq!(written, [path.display().to_string()]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("listen") && text.contains("log-format"),
            "{file}"
        );
    }
}

#[test]
fn generate_into_an_unusable_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latrine"))
        .args(["generate", "man"])
        .arg(file.join("man"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot create") && stderr.contains("a-file"),
        "{stderr}"
    );
}
