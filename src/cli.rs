//! The command line. Each option's doc comment is its `--help` text.

use crate::config::Overrides;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "latrine",
    version,
    propagate_version = true,
    about = "SMTP honeypot and spam-forensics toolkit",
    long_about = "latrine speaks SMTP like a real MTA, looks like an open relay, never \
                  delivers anything, and keeps every session as sealed, hashed evidence \
                  in a spool directory."
)]
pub struct Cli {
    /// Log verbosity: error, warn, info, debug or trace (RUST_LOG overrides it).
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,

    /// Log record shape: text (for people) or json (one object a line).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        value_name = "FORMAT"
    )]
    pub log_format: crate::logging::LogFormat,

    /// Append the log to FILE instead of standard error. SIGUSR1 reopens it
    /// once logrotate has renamed it (the package's /etc/logrotate.d/latrine).
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "syslog")]
    pub log_file: Option<PathBuf>,

    /// Log to syslog (/dev/log) in RFC 5424 instead of standard error.
    #[arg(long, global = true)]
    pub syslog: bool,

    /// Syslog facility: daemon, user, mail, auth, authpriv, local0..local7, ...
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        default_value = "daemon",
        requires = "syslog"
    )]
    pub syslog_facility: crate::logging::Facility,

    /// The syslog socket (tests stand one in for /dev/log).
    #[arg(long, global = true, hide = true, value_name = "PATH", default_value = crate::logging::SYSLOG_SOCKET)]
    pub syslog_socket: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the SMTP honeypot. With no options: 127.0.0.1:2525, spool ./spool.
    Listen(Box<ListenArgs>),
    /// Turn one or many spools into reports (CSV, JSON, NDJSON).
    Analyze(crate::analyze::AnalyzeArgs),
    /// Check every sealed session against its manifest (chain of custody).
    Verify(crate::verify::VerifyArgs),
    /// Delete from a spool the sessions whose copy elsewhere verifies byte for byte.
    Prune(crate::prune::PruneArgs),
    /// Print one session: its transcript in colour, then its summary.
    Show(crate::show::ShowArgs),
    /// Write manual pages or shell completions (for packagers).
    #[command(hide = true)]
    Generate(crate::generate::GenerateArgs),
}

impl Cli {
    /// The logging options given.
    pub fn log_options(&self) -> crate::logging::Options {
        use crate::logging::Destination;
        let destination = if self.syslog {
            Destination::Syslog {
                facility: self.syslog_facility,
                socket: self.syslog_socket.clone(),
            }
        } else if let Some(file) = &self.log_file {
            Destination::File(file.clone())
        } else {
            Destination::Stderr
        };
        crate::logging::Options {
            level: self.log_level.clone(),
            format: self.log_format,
            destination,
        }
    }
}

/// Options of `latrine listen`. Each overrides the same key of `--config`.
#[derive(Debug, Args)]
#[command(
    after_help = "Every option can also be set in the TOML file given with --config; \
    scripts/latrine.example.toml documents each key. Command-line options win over the file. \
    A bad value is refused at start with the key and the reason."
)]
pub struct ListenArgs {
    /// TOML configuration file (see scripts/latrine.example.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address and port to listen on; repeat for several. Default 127.0.0.1:2525.
    /// Replaces the file's [[listener]] list when given.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    pub listen: Vec<String>,

    /// Also listen for submission (port 587 style: STARTTLS and AUTH offered); repeatable.
    #[arg(long = "listen-submission", value_name = "ADDR:PORT")]
    pub listen_submission: Vec<String>,

    /// Also listen with implicit TLS (port 465 style, "SMTPS"); repeatable.
    #[arg(long = "listen-smtps", value_name = "ADDR:PORT")]
    pub listen_smtps: Vec<String>,

    /// Offer no TLS at all (no STARTTLS; smtps listeners are refused).
    #[arg(long)]
    pub no_tls: bool,

    /// PEM certificate (chain) for TLS. Default: a self-signed one for the
    /// host name, made at first start and kept in the state directory.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Where the generated certificate is kept. Default: beside the spool,
    /// <spool>.state (not inside it, so the key never travels with the evidence).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// What to answer to credentials: accept, reject, or accept-after:N (reject
    /// the first N complete attempts per client IP, then accept). Default
    /// accept-after:5: brute-force lists are captured, and a spammer who
    /// "succeeds" goes on to send mail.
    #[arg(long, value_name = "POLICY")]
    pub auth_policy: Option<String>,

    /// Spool directory where sealed sessions are written. Default ./spool.
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,

    /// Sensor name: the first directory level in the spool, so that spools of
    /// several sensors merge without collisions. Default: the host name.
    #[arg(long, value_name = "NAME")]
    pub sensor: Option<String>,

    /// Host name given in the greeting and replies. Default: the machine's host name.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Greeting text after "220 ", replacing the persona's
    /// ("<hostname> ESMTP Postfix (Debian/GNU)").
    #[arg(long, value_name = "TEXT")]
    pub banner: Option<String>,

    /// The server to imitate: postfix (Debian's Postfix 3.7, the default),
    /// exim (Debian's Exim 4.96) or exchange (Microsoft Exchange 2019).
    /// A listener in the config file may name its own.
    #[arg(long, value_name = "NAME")]
    pub persona: Option<String>,

    /// Wait this long before the greeting, in milliseconds (default: the
    /// persona's, 5 for postfix). 0 with --greeting-jitter-ms 0 for benchmarks.
    #[arg(long, value_name = "MS")]
    pub greeting_delay_ms: Option<u64>,

    /// Add a random wait of up to this many milliseconds to the greeting
    /// delay (default: the persona's, 4 for postfix).
    #[arg(long, value_name = "MS")]
    pub greeting_jitter_ms: Option<u64>,

    /// Refuse MAIL before HELO/EHLO with 503 (the original's "compliant" mode).
    /// Off by default, as in Postfix 3.7.
    #[arg(long)]
    pub strict_order: bool,

    /// Do not fsync before answering 250 to a message. Faster; a power cut may
    /// then lose acknowledged messages (a crash of latrine alone does not).
    #[arg(long)]
    pub no_fsync: bool,

    /// Also write every session event as one JSON line to FILE, or to standard
    /// output with "-", for a SIEM.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// Largest message kept, in bytes; advertised in EHLO SIZE. Longer messages
    /// get 552 and their first BYTES are kept, marked truncated. Default: the
    /// persona's (10240000 for postfix, 52428800 for exim).
    #[arg(long, value_name = "BYTES")]
    pub max_message_size: Option<u64>,

    /// Recipients accepted per message (then 452). Default: the persona's
    /// (1000 for postfix, 50000 for exim).
    #[arg(long, value_name = "N")]
    pub max_recipients: Option<u64>,

    /// Messages accepted per session (then 452). Default 100.
    #[arg(long, value_name = "N")]
    pub max_messages_per_session: Option<u64>,

    /// Longest command line, in bytes; longer lines are answered once and
    /// skipped. Default: the persona's (2048 for postfix, 16384 for exim).
    #[arg(long, value_name = "BYTES")]
    pub max_line_length: Option<u64>,

    /// Protocol errors before "421 Error: too many errors" and a hang-up. Default 20.
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,

    /// Seconds without input before "421 timeout exceeded". Default 300.
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,

    /// Longest session in seconds, whatever the client does. Default 1800.
    #[arg(long, value_name = "SECS")]
    pub session_timeout: Option<u64>,

    /// Concurrent sessions in all (extra connections get 421 and are recorded). Default 1000.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u64>,

    /// Concurrent sessions per client IP (extra ones get 421 and are recorded). Default 50, as Postfix.
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<u64>,

    /// Free space (MiB) on the spool's file system below which MAIL gets
    /// "452 4.3.1 Insufficient system storage"; sessions are still recorded. Default 256.
    #[arg(long, value_name = "MIB")]
    pub min_free_mb: Option<u64>,

    /// Free space (MiB) at which mail is taken again. Default 512.
    #[arg(long, value_name = "MIB")]
    pub resume_free_mb: Option<u64>,

    /// Close connections from the addresses and CIDR blocks in FILE at once,
    /// without a greeting, and count them (one per line, `#` comments);
    /// repeatable. Replaces the file's [deny] files. Reread on SIGHUP.
    #[arg(long = "deny-file", value_name = "FILE")]
    pub deny_files: Vec<PathBuf>,

    /// Close connections from these countries (ISO 3166 alpha-2, comma-separated
    /// or repeated), by --geoip-country. Addresses the database does not know
    /// are allowed, and counted.
    #[arg(long = "deny-country", value_name = "CC[,CC...]")]
    pub deny_countries: Vec<String>,

    /// MaxMind City or Country database for --deny-country. Default:
    /// /var/lib/GeoIP/GeoLite2-Country.mmdb (geoipupdate's) when it exists.
    #[arg(long, value_name = "FILE")]
    pub geoip_country: Option<PathBuf>,

    /// Once every socket is bound, run as this user (setgroups, setgid,
    /// setuid), before the spool is opened or a client accepted.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// With --user: run as this group. Default: the user's primary group.
    #[arg(long, value_name = "NAME", requires = "user")]
    pub group: Option<String>,
}

impl ListenArgs {
    /// The options given, as overrides of the config file.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            listen_submission: self.listen_submission.clone(),
            listen_smtps: self.listen_smtps.clone(),
            tls: self.no_tls.then_some(false),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            state_dir: self.state_dir.clone(),
            auth_policy: self.auth_policy.clone(),
            spool: self.spool.clone(),
            sensor: self.sensor.clone(),
            hostname: self.hostname.clone(),
            banner: self.banner.clone(),
            persona: self.persona.clone(),
            greeting_delay_ms: self.greeting_delay_ms,
            greeting_jitter_ms: self.greeting_jitter_ms,
            strict_order: self.strict_order.then_some(true),
            fsync: self.no_fsync.then_some(false),
            events: self.events.clone(),
            max_message_size: self.max_message_size,
            max_recipients: self.max_recipients,
            max_messages_per_session: self.max_messages_per_session,
            max_line_length: self.max_line_length,
            max_errors: self.max_errors,
            idle_timeout_secs: self.idle_timeout,
            session_timeout_secs: self.session_timeout,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            min_free_mb: self.min_free_mb,
            resume_free_mb: self.resume_free_mb,
            deny_files: self.deny_files.clone(),
            deny_countries: self.deny_countries.clone(),
            geoip_country: self.geoip_country.clone(),
            user: self.user.clone(),
            group: self.group.clone(),
        }
    }
}
