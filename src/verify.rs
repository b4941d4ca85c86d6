//! `latrine verify`: checks sealed sessions against their manifests.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `latrine verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Spool directories to check.
    #[arg(required = true, value_name = "SPOOL")]
    pub spools: Vec<PathBuf>,
}

pub fn run(args: VerifyArgs) -> ExitCode {
    let _ = args;
    eprintln!("latrine verify: not implemented yet");
    ExitCode::FAILURE
}
