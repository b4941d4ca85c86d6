//! latrine: an SMTP honeypot that keeps evidence, and the tools to analyse it.
//!
//! - [`smtp`]: the sans-IO SMTP core (bytes in, replies and events out).
//! - [`listen`]: the tokio shell around it: sockets, timeouts, limits, shutdown.
//! - [`spool`]: the on-disk evidence format, written by `listen`, read by `analyze`.
//! - [`events`]: the vocabulary of session events shared by the spool and the event stream.
//! - [`analyze`]: the analyst's pipeline over spools: walk, load, enrich, aggregate, report.
//! - [`verify`]: the chain-of-custody check of sealed sessions.
//! - [`prune`]: deletes from a sensor the sessions verified in a copy.
//! - [`show`]: one session in the terminal: transcript and summary.
//! - [`config`]: options from the command line and the TOML file, checked at start.
//! - [`logging`]: latrine's own log: text or JSON, to stderr, a file or syslog.

pub mod analyze;
pub mod cli;
pub mod config;
pub mod escape;
pub mod events;
pub mod generate;
pub mod listen;
pub mod logging;
pub mod prune;
pub mod show;
pub mod smtp;
pub mod spool;
pub mod timestamp;
pub mod tls;
pub mod verify;
