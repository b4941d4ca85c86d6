//! SIGHUP: the configuration file and the deny lists read again, without
//! dropping a connection.
//!
//! Each connection takes the [`Generation`] in force when it is accepted
//! and keeps it to the end, so a session open across a reload finishes
//! under the settings it started with and the next connection gets the
//! new ones. A new configuration is built completely (certificates, deny
//! files, country database, personas) before it replaces the old one: if
//! any part fails, the old one stays in force and the log says why.
//!
//! What the process was started with cannot change without a restart: the
//! listening sockets, the spool, the sensor name, the event stream, fsync,
//! the connection caps, the free-space thresholds and the user. A reload
//! that changes them keeps the old values and names each in a warning.

use super::limits::ConnectionLimits;
use super::{Generation, StartError, build_generation, storage};
use crate::config::ListenConfig;
use crate::events::EventStream;
use crate::spool::Spool;
use crate::spool::denials::DenialCounter;
use std::sync::Arc;
use tokio::sync::{Semaphore, watch};

/// What lives as long as the process, whatever the configuration.
#[derive(Clone)]
pub struct Process {
    pub spool: Arc<Spool>,
    pub events: Option<EventStream>,
    pub connections: Arc<ConnectionLimits>,
    pub seal_permits: Arc<Semaphore>,
    pub seal_backlog: Arc<Semaphore>,
    pub refusal_permits: Arc<Semaphore>,
    pub storage: Arc<storage::StorageGauge>,
    pub denials: DenialCounter,
}

/// Puts a new configuration in force.
#[derive(Clone)]
pub struct Reloader {
    process: Process,
    current: Arc<watch::Sender<Arc<Generation>>>,
}

impl Reloader {
    pub fn new(process: Process, current: watch::Sender<Arc<Generation>>) -> Reloader {
        Reloader {
            process,
            current: Arc::new(current),
        }
    }

    /// Builds `config` and makes it the one new connections get. Returns
    /// the settings that changed but need a restart (kept as they were).
    pub fn reload(&self, mut config: ListenConfig) -> Result<Vec<&'static str>, String> {
        let old = Arc::clone(&self.current.borrow());
        let kept = keep_restart_only(&old.config, &mut config);
        let generation =
            build_generation(config, &self.process, Some(&old)).map_err(|StartError(e)| e)?;
        self.current.send_replace(Arc::new(generation));
        Ok(kept)
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Generation> {
        Arc::clone(&self.current.borrow())
    }
}

/// Puts the running values of what needs a restart back into `new`;
/// returns the names of those that differed.
pub fn keep_restart_only(old: &ListenConfig, new: &mut ListenConfig) -> Vec<&'static str> {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($name:literal, $($field:tt)+) => {
            if old.$($field)+ != new.$($field)+ {
                new.$($field)+ = old.$($field)+.clone();
                kept.push($name);
            }
        };
    }
    keep!("listeners (the listening sockets)", listeners);
    keep!("spool", spool);
    keep!("sensor", sensor);
    keep!("events", events);
    keep!("fsync", fsync);
    keep!("limits.max_connections", limits.max_connections);
    keep!(
        "limits.max_connections_per_ip",
        limits.max_connections_per_ip
    );
    keep!("limits.min_free_mb", limits.min_free_bytes);
    keep!("limits.resume_free_mb", limits.resume_free_bytes);
    keep!("user", user);
    keep!("group", group);
    kept
}

/// Reloads on every SIGHUP, with `reread` reading the configuration again.
pub async fn on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    reloader: Reloader,
    reread: impl Fn() -> Result<ListenConfig, String>,
) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reading the configuration and deny lists again");
        // Reading files and the country database blocks; the runtime's
        // other threads go on serving meanwhile.
        let outcome = tokio::task::block_in_place(|| reread().and_then(|c| reloader.reload(c)));
        match outcome {
            Err(e) => {
                tracing::error!("reload refused, the running configuration stays in force: {e}")
            }
            Ok(kept) => {
                for name in kept {
                    tracing::warn!(
                        "reload: {name} changed, which needs a restart; the running value stays in force"
                    );
                }
                let deny = reloader.current().deny.describe();
                tracing::info!(
                    "configuration reloaded; new connections get it (deny lists: {deny})"
                );
            }
        }
    }
}
