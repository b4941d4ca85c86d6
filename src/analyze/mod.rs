//! `latrine analyze`: from spools to reports, as a pipeline of stages:
//! walk, load, enrich, aggregate, report.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `latrine analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Spool directories (one or many sensors' spools).
    #[arg(required = true, value_name = "SPOOL")]
    pub spools: Vec<PathBuf>,

    /// Directory to write the reports to.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(args: AnalyzeArgs) -> ExitCode {
    let _ = args;
    eprintln!("latrine analyze: not implemented yet");
    ExitCode::FAILURE
}
