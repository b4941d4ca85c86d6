//! The `latrine` binary: parses the command line and hands over to the library.

use clap::Parser;
use latrine::cli::{Cli, Command};
use latrine::config;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = match latrine::logging::init(&cli.log_options()) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("latrine: {e}");
            return ExitCode::from(2);
        }
    };
    // Commands without a runtime: a thread waits for SIGUSR1, if there is
    // a log file to reopen (`listen` always handles it, below).
    if log.has_file()
        && !matches!(cli.command, Command::Listen(_))
        && let Err(e) = log.reopen_on_sigusr1_in_thread()
    {
        eprintln!("latrine: cannot handle SIGUSR1 (log file reopening): {e}");
        return ExitCode::FAILURE;
    }
    match cli.command {
        Command::Analyze(args) => latrine::analyze::run(args),
        Command::Verify(args) => latrine::verify::run(args),
        Command::Generate(args) => latrine::generate::run(args),
        Command::Prune(args) => latrine::prune::run(args),
        Command::Show(args) => latrine::show::run(args),
        Command::Listen(args) => {
            // Read again, file and command line alike, on SIGHUP.
            let reread = move || {
                let file = match &args.config {
                    Some(path) => config::read_file(path),
                    None => Ok(config::FileConfig::default()),
                };
                file.and_then(|file| config::resolve(file, args.overrides()))
                    .map_err(|e| e.to_string())
            };
            let config = match reread() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("latrine: {e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("latrine: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Err(e) = log.reopen_on_sigusr1(runtime.handle()) {
                eprintln!("latrine: cannot handle SIGUSR1 (log file reopening): {e}");
                return ExitCode::FAILURE;
            }
            match runtime.block_on(latrine::listen::run(config, reread)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("latrine: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
