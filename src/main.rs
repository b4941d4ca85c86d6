//! The `latrine` binary: parses the command line and hands over to the library.

use clap::Parser;
use latrine::cli::{Cli, Command};
use latrine::config;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match cli.command {
        Command::Analyze(args) => latrine::analyze::run(args),
        Command::Verify(args) => latrine::verify::run(args),
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

fn init_logging(level: &str) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("latrine={level}")));
    // ureq-proto traces every byte sent and received, API key headers
    // included: never, whatever RUST_LOG says. (ureq's own log hides them.)
    for directive in ["ureq_proto=off", "ureq_proto::util=off"] {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
