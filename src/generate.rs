//! `latrine generate`: manual pages and shell completions, made from the
//! command line's own definition (`crate::cli`), so that they never drift
//! from `--help`. Hidden: packagers run it (scripts/package/deb.sh), not
//! operators.

use crate::cli::Cli;
use clap::{Args, CommandFactory, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub what: Generated,
}

#[derive(Debug, Subcommand)]
pub enum Generated {
    /// Manual pages into DIR: latrine.1 and latrine-<subcommand>.1.
    Man {
        /// Where to write them (created if missing).
        dir: PathBuf,
    },
    /// A completion script for SHELL into DIR (latrine.bash, _latrine,
    /// latrine.fish, ...).
    Completions {
        shell: clap_complete::Shell,
        /// Where to write it (created if missing).
        dir: PathBuf,
    },
}

pub fn run(args: GenerateArgs) -> ExitCode {
    let result = match &args.what {
        Generated::Man { dir } => man(dir),
        Generated::Completions { shell, dir } => completions(*shell, dir),
    };
    match result {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("latrine: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the manual pages; returns their paths.
pub fn man(dir: &Path) -> Result<Vec<PathBuf>, String> {
    create(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
        .map_err(|e| format!("cannot write manual pages in {}: {e}", dir.display()))?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("latrine") && n.ends_with(".1"))
        })
        .collect();
    written.sort();
    Ok(written)
}

/// Writes the completion script for `shell`; returns its path.
pub fn completions(shell: clap_complete::Shell, dir: &Path) -> Result<Vec<PathBuf>, String> {
    create(dir)?;
    let mut command = Cli::command();
    let path = clap_complete::generate_to(shell, &mut command, "latrine", dir)
        .map_err(|e| format!("cannot write {shell} completions in {}: {e}", dir.display()))?;
    Ok(vec![path])
}

fn create(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}
