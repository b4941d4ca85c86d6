//! `latrine listen`: the tokio shell around the SMTP core.
//!
//! It owns what the core must not: sockets, timeouts, connection limits,
//! the spool writer and shutdown. Start-up order matters: the spool is
//! opened and any session a crash left in `.incoming` is sealed *before* the
//! first connection is accepted, and every socket is bound before any is
//! served, so a bad address fails the start instead of half of it.

pub mod auth_policy;
mod connection;
mod handshake;
pub mod limits;
mod listener;
pub mod shutdown;
pub mod storage;
mod transport;

use crate::config::{Limits, ListenConfig, ListenerMode};
use crate::events::EventStream;
use crate::smtp::{AuthOffer, Persona, Policy};
use crate::spool::{Durability, Spool, recover};
use limits::ConnectionLimits;
use listener::Listener;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

/// Seals running at once. Sealing parses each message into memory (at most
/// `spool::attachments::MAX_EXTRACT_SIZE`), so this bounds that memory.
const CONCURRENT_SEALS: usize = 4;
/// Refused connections being answered and recorded at once.
const CONCURRENT_REFUSALS: usize = 64;

/// What every connection of the process shares.
pub struct Shared {
    pub spool: Arc<Spool>,
    /// The TLS configuration, when TLS is on.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Decides AUTH attempts; remembers failures per IP across sessions.
    pub auth: auth_policy::AuthJudge,
    pub events: Option<EventStream>,
    pub hostname: String,
    pub limits: Limits,
    pub connections: Arc<ConnectionLimits>,
    pub seal_permits: Semaphore,
    /// Ended sessions waiting to be sealed (their clients' slots are free).
    pub seal_backlog: Semaphore,
    pub refusal_permits: Arc<Semaphore>,
    /// Whether the spool is short of space (MAIL gets 452).
    pub storage: Arc<storage::StorageGauge>,
}

/// The error that stops `listen` from starting, with what to do about it.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A started listener: its bound addresses, and the future that serves
/// until `shutdown` resolves, then seals every open session.
pub struct Running {
    pub addresses: Vec<std::net::SocketAddr>,
    pub serve: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Opens the spool, recovers crashed sessions, binds every listener.
pub async fn start(
    config: &ListenConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    let durability = if config.fsync {
        Durability::Fsync
    } else {
        Durability::None
    };
    let spool = Spool::open(&config.spool, &config.sensor, durability)
        .map(Arc::new)
        .map_err(|e| StartError(format!("cannot open spool {}: {e}", config.spool.display())))?;
    let recovered = recover::recover(&spool)
        .map_err(|e| StartError(format!("cannot read {}: {e}", spool.incoming().display())))?;
    for r in &recovered {
        match &r.result {
            Ok(path) => tracing::warn!("recovered an interrupted session into {}", path.display()),
            Err(e) => tracing::error!(
                "cannot recover {}: {e} (left in place)",
                r.incoming.display()
            ),
        }
    }
    let events = match &config.events {
        Some(path) => Some(EventStream::open(path).map_err(|e| {
            StartError(format!("cannot open event stream {}: {e}", path.display()))
        })?),
        None => None,
    };
    let persona = listener_persona(config, &config.persona)?;
    let tls = match &config.tls {
        Some(source) => Some(crate::tls::server_config(source).map_err(StartError)?),
        None => None,
    };
    let policy = Policy {
        hostname: config.hostname.clone(),
        persona,
        max_message_size: config.limits.max_message_size,
        max_recipients: config.limits.max_recipients,
        max_messages: config.limits.max_messages_per_session,
        max_line_length: config.limits.max_line_length,
        max_errors: config.limits.max_errors,
        strict_order: config.strict_order,
        starttls: false,
        implicit_tls: false,
        auth: AuthOffer::Never,
    };
    let shared = Arc::new(Shared {
        spool,
        tls: tls.clone(),
        auth: auth_policy::AuthJudge::new(config.auth_policy),
        events,
        hostname: config.hostname.clone(),
        limits: config.limits.clone(),
        connections: ConnectionLimits::new(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
        ),
        seal_permits: Semaphore::new(CONCURRENT_SEALS),
        seal_backlog: Semaphore::new(config.limits.max_connections),
        refusal_permits: Arc::new(Semaphore::new(CONCURRENT_REFUSALS)),
        storage: Arc::new(storage::StorageGauge::default()),
    });
    // Read free space once before serving, then keep watching.
    if let Ok(free) = storage::free_bytes(&config.spool) {
        shared.storage.update(
            free,
            config.limits.min_free_bytes,
            config.limits.resume_free_bytes,
        );
    }
    tokio::spawn(storage::watch(
        Arc::clone(&shared.storage),
        config.spool.clone(),
        config.limits.min_free_bytes,
        config.limits.resume_free_bytes,
    ));

    raise_fd_limit(config.limits.max_connections);

    let mut sockets = Vec::new();
    for l in &config.listeners {
        let tcp = TcpListener::bind(l.address).await.map_err(|e| {
            let hint = if l.address.port() < 1024 && e.kind() == std::io::ErrorKind::PermissionDenied {
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE; or listen on 2525 and redirect 25 to it)"
            } else {
                ""
            };
            StartError(format!("cannot listen on {}: {e}{hint}", l.address))
        })?;
        // Each listener's mode decides what its sessions offer, its persona
        // what they say.
        let persona = match &l.persona {
            Some(name) => listener_persona(config, name)?,
            None => policy.persona.clone(),
        };
        let policy = Arc::new(Policy {
            starttls: tls.is_some() && l.mode != ListenerMode::Smtps,
            implicit_tls: l.mode == ListenerMode::Smtps,
            auth: l.auth,
            max_message_size: if config.max_message_size_set {
                config.limits.max_message_size
            } else {
                persona.message_size_limit
            },
            max_line_length: if config.max_line_length_set {
                config.limits.max_line_length
            } else {
                persona.line_length_limit
            },
            max_recipients: if config.max_recipients_set {
                config.limits.max_recipients
            } else {
                persona.recipient_limit
            },
            persona,
            ..policy.clone()
        });
        sockets.push((tcp, l.name.clone(), policy));
    }
    let addresses = sockets
        .iter()
        .map(|(tcp, _, _)| tcp.local_addr().expect("bound socket has an address"))
        .collect();

    let (trigger, shutdown_listener) = shutdown::channel();
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    for (tcp, name, policy) in sockets {
        let listener = Listener {
            tcp,
            name,
            policy,
            shared: Arc::clone(&shared),
            shutdown: shutdown_listener.clone(),
            done: done_tx.clone(),
        };
        tokio::spawn(listener.run());
    }
    drop(done_tx);
    let shared_at_end = Arc::clone(&shared);
    let serve = async move {
        shutdown.await;
        tracing::info!("shutting down: telling clients 421 and sealing open sessions");
        trigger.trigger();
        // Every listener and connection holds a sender; all dropped = all sealed.
        let _ = done_rx.recv().await;
        tracing::info!("all sessions sealed");
        if let Some(stats) = shared_at_end.spool.commit_stats() {
            tracing::info!(
                "group commit: {} directory syncs served {} requests",
                stats.dir_syncs,
                stats.dir_waiters
            );
        }
    };
    Ok(Running {
        addresses,
        serve: Box::pin(serve),
    })
}

/// Raises the soft limit on open files to the hard one, as a connection
/// flood needs (the usual soft default, 1024, is below the default
/// `max_connections` plus the spool's files); warns when even that is short.
fn raise_fd_limit(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write one rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    // A session holds its socket and, while writing, a few files. (rlim_t
    // is u64 on Linux, not everywhere.)
    #[allow(clippy::unnecessary_cast)]
    let current = limit.rlim_cur as u64;
    let needed = (max_connections as u64)
        .saturating_mul(4)
        .saturating_add(64);
    if current < needed {
        tracing::warn!(
            "open file limit {} is low for --max-connections {max_connections} (about {needed} \
             wanted): past it, accepting fails and new clients wait; raise `ulimit -n`",
            current
        );
    }
}

/// A built-in persona with the configuration's banner and timing applied.
fn listener_persona(config: &ListenConfig, name: &str) -> Result<Persona, StartError> {
    let mut persona =
        Persona::builtin(name).ok_or_else(|| StartError(format!("unknown persona {name:?}")))?;
    if let Some(banner) = &config.banner {
        persona.greeting = format!("220 {banner}");
    }
    if let Some(ms) = config.greeting_delay_ms {
        persona.timing.greeting_delay_ms = ms;
    }
    if let Some(ms) = config.greeting_jitter_ms {
        persona.timing.greeting_jitter_ms = ms;
    }
    Ok(persona)
}

/// `latrine listen`: runs until SIGINT or SIGTERM.
pub async fn run(config: ListenConfig) -> Result<(), StartError> {
    let running = start(&config, termination()).await?;
    for (l, address) in config.listeners.iter().zip(&running.addresses) {
        // One line per listener says where it listens, where evidence goes
        // and, on loopback, how to take real traffic.
        let expose = if address.ip().is_loopback() && l.mode == ListenerMode::Smtp {
            format!(
                "; to serve port 25: `iptables -t nat -A PREROUTING -p tcp --dport 25 -j REDIRECT --to-ports {}` \
                 or --listen 0.0.0.0:25 with CAP_NET_BIND_SERVICE",
                address.port()
            )
        } else {
            String::new()
        };
        tracing::info!(
            "listening on {address} ({}) as {} (persona {}), spool {} (sensor {}), fsync {}, auth {}{expose}",
            if l.name == l.mode.name() {
                l.name.clone()
            } else {
                format!("{}, {}", l.name, l.mode.name())
            },
            config.hostname,
            l.persona.as_deref().unwrap_or(&config.persona),
            config.spool.display(),
            config.sensor,
            if config.fsync { "on" } else { "off" },
            config.auth_policy,
        );
    }
    if !config.hostname.contains('.') {
        tracing::warn!(
            "host name {:?} is not fully qualified; a real MTA's is: set --hostname mx1.example.com",
            config.hostname
        );
    }
    running.serve.await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn termination() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
