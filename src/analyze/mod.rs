//! `latrine analyze`: from spools to reports, offline, as a pipeline of
//! stages, one module each:
//!
//! 1. [`walk`]: find sealed sessions and the sensors' denial day files (a
//!    walker thread, in file-name order);
//! 2. [`load`]: read each manifest and message, hash the messages, parse
//!    their bodies ([`parse`]: [`campaign`]s and [`urls`]) — on worker
//!    threads, in parallel, since parsing is the heavy part;
//! 3. [`enrich`]: facts from elsewhere: GeoIP and ASN ([`geo`]), per
//!    session on the workers;
//! 4. [`aggregate`]: deduplicate and count (denials: [`denied`]), on the calling thread, in walk
//!    order ([`pipeline`] puts the workers' results back in order), then
//!    [`osint`]: VirusTotal, AbuseIPDB and OTX lookups of each distinct
//!    attachment and client address, cached and rate-limited;
//! 5. [`report`]: CSV, JSON and NDJSON files, and the [`summary`].
//!
//! Sessions stream through: memory grows with the number of distinct
//! things, not with the size of the spool. Problems with a session or a
//! message go to the `errors` table and the run goes on.

pub mod aggregate;
pub mod campaign;
pub mod config;
pub mod denied;
pub mod enrich;
pub mod geo;
pub mod html;
pub mod load;
pub mod osint;
pub mod parse;
pub mod pipeline;
pub mod report;
pub mod summary;
pub mod urls;
pub mod walk;

use clap::{Args, ValueEnum};
use load::{Loaded, LoadedSession, Problem};
use report::{Formats, Output};
use std::io::IsTerminal;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use walk::Found;

/// A report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One CSV file per table (RFC 4180).
    Csv,
    /// report.json: provenance, summary and every table.
    Json,
    /// One NDJSON file per table, one object a line.
    Ndjson,
}

/// Options of `latrine analyze`.
#[derive(Debug, Args)]
#[command(
    after_help = "Writes sessions, messages, campaigns, attachments, clients, credentials, \
    recipients, urls, domains and errors tables to DIR, and prints a summary. The same spools \
    and databases give byte-identical reports (set SOURCE_DATE_EPOCH to pin report.json's \
    generated_at)."
)]
pub struct AnalyzeArgs {
    /// Spool directories (one or many sensors' spools, or parts of them).
    #[arg(required = true, value_name = "SPOOL")]
    pub spools: Vec<PathBuf>,

    /// Directory to write the reports to (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Report formats, comma-separated or repeated. Default: csv,json.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "FORMAT")]
    pub format: Vec<Format>,

    /// MaxMind City or Country database (GeoLite2 or GeoIP2). Default: the
    /// config file's, else GeoLite2-City.mmdb (or -Country) in --geoip-dir.
    #[arg(long, value_name = "FILE")]
    pub geoip_city: Option<PathBuf>,

    /// MaxMind ASN (or ISP) database. Default: the config file's, else
    /// GeoLite2-ASN.mmdb in --geoip-dir.
    #[arg(long, value_name = "FILE")]
    pub geoip_asn: Option<PathBuf>,

    /// Where to look for databases not given; repeatable. Default:
    /// /var/lib/GeoIP, /usr/share/GeoIP, /usr/local/share/GeoIP.
    #[arg(long = "geoip-dir", value_name = "DIR")]
    pub geoip_dirs: Vec<PathBuf>,

    /// No GeoIP or ASN lookups, even if databases are found.
    #[arg(long)]
    pub no_geoip: bool,

    /// TOML file with an `[analyze]` table: geoip_city, geoip_asn,
    /// geoip_dirs, and `[analyze.osint]` for VirusTotal, AbuseIPDB and OTX
    /// (keys also from LATRINE_VT_KEY, LATRINE_ABUSEIPDB_KEY, LATRINE_OTX_KEY).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// No network request at all: OSINT answers come from the cache only.
    #[arg(long)]
    pub offline: bool,

    /// Ask the OSINT services again, ignoring cached answers (the new
    /// answers replace them).
    #[arg(long)]
    pub refresh: bool,

    /// Where OSINT answers are cached (never inside a spool). Default: the
    /// config file's, else $XDG_CACHE_HOME/latrine/osint, else
    /// ~/.cache/latrine/osint.
    #[arg(long, value_name = "DIR")]
    pub osint_cache: Option<PathBuf>,

    /// Worker threads reading and parsing sessions. Default: one per CPU.
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// Larger messages are counted and hashed but their body is not parsed.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_parse_size: u64,

    /// Longest time to parse one message, in seconds; past it the message is
    /// reported and skipped.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub parse_timeout: f64,

    /// No HTML report (DIR/html/: dashboard, tables, session views).
    #[arg(long)]
    pub no_html: bool,

    /// No summary on standard output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Sessions per job handed to a worker.
const BATCH: usize = 16;

/// What a worker hands back for one thing the walk found.
enum Work {
    Loaded(Loaded),
    Denials(
        Box<walk::DenialsFile>,
        std::io::Result<crate::spool::denials::DayFile>,
    ),
    Walk(walk::WalkProblem),
}

fn usage(message: String) -> ExitCode {
    eprintln!("latrine analyze: {message}");
    ExitCode::from(2)
}

pub fn run(args: AnalyzeArgs) -> ExitCode {
    for spool in &args.spools {
        if !spool.is_dir() {
            return usage(format!("{}: not a directory", spool.display()));
        }
    }
    if !(args.parse_timeout.is_finite() && args.parse_timeout > 0.0) {
        return usage("--parse-timeout must be a positive number of seconds".into());
    }
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    if jobs == 0 {
        return usage("--jobs must be at least 1".into());
    }
    let mut formats = Formats::default();
    for f in &args.format {
        match f {
            Format::Csv => formats.csv = true,
            Format::Json => formats.json = true,
            Format::Ndjson => formats.ndjson = true,
        }
    }
    if args.format.is_empty() {
        formats.csv = true;
        formats.json = true;
    }
    let file = match &args.config {
        Some(path) => match config::read(path) {
            Ok(c) => c,
            Err(e) => return usage(e),
        },
        None => config::AnalyzeConfig::default(),
    };
    let geo_options = geo::GeoOptions {
        city: args.geoip_city.clone().or(file.geoip_city),
        asn: args.geoip_asn.clone().or(file.geoip_asn),
        dirs: if !args.geoip_dirs.is_empty() {
            args.geoip_dirs.clone()
        } else {
            file.geoip_dirs
                .unwrap_or_else(|| geo::DEFAULT_DIRS.iter().map(PathBuf::from).collect())
        },
        disabled: args.no_geoip,
    };
    let mut enrichment = enrich::Enrichment::new(args.offline);
    if let Err(e) = geo::add_sources(&geo_options, &mut enrichment) {
        return usage(e);
    }
    let command_line = osint::settings::CommandLine {
        cache_dir: args.osint_cache.clone(),
        refresh: args.refresh,
        offline: args.offline,
    };
    let osint = osint::settings::resolve(
        &file.osint.clone().unwrap_or_default(),
        &|name| std::env::var(name).ok(),
        &command_line,
        &args.spools,
    )
    .and_then(osint::Osint::new);
    let osint = match osint {
        Ok(o) => o,
        Err(e) => return usage(e),
    };
    let opened = Output::open(&args.out, formats).and_then(|mut o| {
        if !args.no_html {
            o.html = Some(html::HtmlReport::open(&args.out)?);
        }
        Ok(o)
    });
    let output = match opened {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "latrine analyze: cannot write to {}: {e}",
                args.out.display()
            );
            return ExitCode::FAILURE;
        }
    };
    quiet_parser_panics();
    match analyze(&args, jobs, formats, &enrichment, &osint, output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latrine analyze: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A panic in mail-parser is reported in the errors table; the default hook
/// would also print it on the terminal.
fn quiet_parser_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() != Some(parse::THREAD_NAME) {
            previous(info);
        }
    }));
}

/// The time of the run: `SOURCE_DATE_EPOCH` when set, for reproducible
/// reports, else now.
fn generated_at() -> String {
    let pinned = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok());
    crate::timestamp::rfc3339(pinned.unwrap_or_else(crate::timestamp::now))
}

fn progress_bar(quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {human_pos} sessions, {msg} [{elapsed}]")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn analyze(
    args: &AnalyzeArgs,
    jobs: usize,
    formats: Formats,
    enrichment: &enrich::Enrichment,
    osint: &osint::Osint,
    mut output: Output,
) -> Result<(), String> {
    let spool_names: Vec<String> = args
        .spools
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut per_spool = vec![0u64; args.spools.len()];
    let options = load::LoadOptions {
        enrichment,
        max_parse: args.max_parse_size,
    };
    let timeout = Duration::from_secs_f64(args.parse_timeout);
    let runaway = Arc::new(AtomicUsize::new(0));
    let stop = AtomicBool::new(false);
    let mut aggregator = aggregate::Aggregator::new();
    let mut failure: Option<String> = None;
    let mut messages = 0u64;
    let bar = progress_bar(args.quiet);

    let mut handle = |work: pipeline::Outcome<Found, Work>,
                      output: &mut Output,
                      aggregator: &mut aggregate::Aggregator|
     -> std::io::Result<()> {
        let spool = |i: usize| spool_names.get(i).map_or("", String::as_str);
        match work {
            Ok(Work::Walk(p)) => output.write("errors", &report::walk_row(spool(p.spool), &p)),
            Ok(Work::Denials(file, day)) => {
                for problem in denied::problems(&day) {
                    output.write(
                        "errors",
                        &report::problem_row(spool(file.spool), &file.rel, None, &problem),
                    )?;
                }
                if let Ok(day) = day {
                    aggregator.add_denials(&file.sensor, &file.date, day.lines);
                }
                Ok(())
            }
            Ok(Work::Loaded(Loaded::Unreadable { dir, problems })) => {
                for p in &problems {
                    output.write(
                        "errors",
                        &report::problem_row(spool(dir.spool), &dir.rel, None, p),
                    )?;
                }
                Ok(())
            }
            Ok(Work::Loaded(Loaded::Session(s))) => {
                bar.inc(1);
                messages += s.messages.len() as u64;
                if !bar.is_hidden() {
                    bar.set_message(format!("{messages} messages"));
                }
                session(&s, spool(s.dir.spool), output, aggregator, &mut per_spool)
            }
            Err((found, panic)) => {
                let (spool_index, rel) = match &found {
                    Found::Session(d) => (d.spool, d.rel.clone()),
                    Found::Denials(d) => (d.spool, d.rel.clone()),
                    Found::Problem(p) => (p.spool, p.rel.clone()),
                };
                let problem = Problem {
                    file: String::new(),
                    stage: "analyze",
                    reason: format!("internal error, session skipped: {panic}"),
                };
                output.write(
                    "errors",
                    &report::problem_row(spool(spool_index), &rel, None, &problem),
                )
            }
        }
    };

    // Sessions travel in batches: one channel hand-off per batch rather
    // than per session.
    let new_parser = || parse::Guarded::new(timeout, Arc::clone(&runaway));
    pipeline::ordered(
        jobs,
        jobs * 8,
        |push| {
            let mut batch = Vec::with_capacity(BATCH);
            let mut going = true;
            walk::walk(&args.spools, &mut |found| {
                batch.push(found);
                if batch.len() == BATCH {
                    going = !stop.load(Ordering::Relaxed) && push(std::mem::take(&mut batch));
                }
                going
            });
            if going && !batch.is_empty() {
                push(batch);
            }
        },
        new_parser,
        |parser, batch: &Vec<Found>| {
            let mut results = Vec::with_capacity(batch.len());
            for found in batch {
                let work = || match found {
                    Found::Session(dir) => Work::Loaded(load::load(dir, &options, parser)),
                    Found::Denials(d) => Work::Denials(
                        d.clone(),
                        crate::spool::denials::read_day_path(&d.path, &d.sensor, &d.date),
                    ),
                    Found::Problem(p) => Work::Walk(p.clone()),
                };
                results.push(match catch_unwind(AssertUnwindSafe(work)) {
                    Ok(work) => Ok(work),
                    Err(panic) => {
                        // The parser may be half-way through: start afresh.
                        *parser = new_parser();
                        Err((found.clone(), pipeline::panic_message(panic.as_ref())))
                    }
                });
            }
            results
        },
        |outcome| {
            let results = match outcome {
                Ok(results) => results,
                Err((batch, panic)) => batch.into_iter().map(|f| Err((f, panic.clone()))).collect(),
            };
            for work in results {
                if failure.is_some() {
                    return;
                }
                if let Err(e) = handle(work, &mut output, &mut aggregator) {
                    failure = Some(format!("writing the reports failed: {e}"));
                    stop.store(true, Ordering::Relaxed);
                }
            }
        },
    );
    bar.finish_and_clear();
    if let Some(e) = failure {
        return Err(e);
    }

    let tables = aggregator.finish();
    let indicators = osint::Indicators {
        files: tables
            .attachments
            .iter()
            .map(|a| a.sha256.clone())
            .collect(),
        ips: tables.clients.iter().map(|c| c.ip.clone()).collect(),
    };
    let progress =
        osint::Progress::new(!args.quiet && std::io::stderr().is_terminal(), !args.quiet);
    let findings = osint.run(&osint::clock::SystemClock, &indicators, &progress);
    output
        .write_tables(&tables, &findings)
        .map_err(|e| format!("writing the reports failed: {e}"))?;
    let errors = output.rows("errors");
    let summary = summary::Summary::new(&tables, errors, enrichment.gaps());
    let provenance = serde_json::json!({
        "latrine": env!("CARGO_PKG_VERSION"),
        "generated_at": generated_at(),
        "spools": spool_names.iter().zip(&per_spool).map(|(path, sessions)| {
            serde_json::json!({"path": path, "sessions": sessions})
        }).collect::<Vec<_>>(),
        "formats": formats.names(),
        "offline": args.offline,
        "max_parse_size": args.max_parse_size,
        "parse_timeout_s": args.parse_timeout,
        "enrichment": enrichment.sources(),
        "osint": findings.provenance(),
    });
    let summary_json = serde_json::to_value(&summary).map_err(|e| e.to_string())?;
    let head = [
        ("format", serde_json::Value::from("latrine.report/1")),
        ("provenance", provenance),
        ("summary", summary_json),
    ];
    let html = output.html.take();
    let finished = output.finish(&head);
    if let Err(e) = finished {
        if let Some(html) = html {
            html.abandon();
        }
        return Err(format!("writing the reports failed: {e}"));
    }
    if let Some(html) = html {
        html.finish(&head[2].1)
            .map_err(|e| format!("writing the HTML report failed: {e}"))?;
    }
    if !args.quiet {
        let mut names = formats.names();
        if !args.no_html {
            names.push("html/index.html");
        }
        let reports = format!("{} ({})", args.out.display(), names.join(", "));
        let mut stdout = std::io::stdout().lock();
        // A closed pipe is no reason to fail a finished run.
        let _ = summary.print(
            &mut stdout,
            enrichment.sources(),
            &findings.summary_lines(),
            &reports,
        );
    }
    Ok(())
}

/// Adds one loaded session: its row, its problems, its aggregates.
fn session(
    s: &LoadedSession,
    spool: &str,
    output: &mut Output,
    aggregator: &mut aggregate::Aggregator,
    per_spool: &mut [u64],
) -> std::io::Result<()> {
    let id = Some(s.manifest.session_id.as_str());
    if !aggregator.add(s, spool) {
        let problem = Problem {
            file: String::new(),
            stage: "walk",
            reason: "same sensor and session id as a session already read: skipped".into(),
        };
        return output.write(
            "errors",
            &report::problem_row(spool, &s.dir.rel, id, &problem),
        );
    }
    if let Some(n) = per_spool.get_mut(s.dir.spool) {
        *n += 1;
    }
    output.write("sessions", &report::session_row(spool, s))?;
    if let Some(html) = &mut output.html {
        html.session(s)?;
    }
    for p in &s.problems {
        output.write("errors", &report::problem_row(spool, &s.dir.rel, id, p))?;
    }
    Ok(())
}
