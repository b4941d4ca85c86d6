//! `latrine listen`: the tokio shell around the SMTP core.
//!
//! It owns what the core must not: sockets, timeouts, connection limits,
//! the spool writer, deny lists, reloads and shutdown. Start-up order
//! matters: every socket is bound before any is served, so a bad address
//! fails the start instead of half of it; then root is given up (`--user`);
//! then the spool is opened and any session a crash left in `.incoming` is
//! sealed, all *before* the first connection is accepted.

pub mod auth_policy;
mod connection;
pub mod deny;
mod handshake;
pub mod limits;
mod listener;
pub mod privileges;
pub mod reload;
pub mod shutdown;
pub mod storage;
mod transport;

use crate::config::{Limits, ListenConfig, ListenerMode};
use crate::events::EventStream;
use crate::smtp::{AuthOffer, Persona, Policy};
use crate::spool::denials::{DenialCounter, DenialLog};
use crate::spool::{Durability, Spool, recover};
use deny::DenyList;
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

/// What the connections accepted under one configuration share. Most of
/// it lives as long as the process (the spool, the connection caps); the
/// rest (TLS, host name, session limits, AUTH policy) is replaced by a
/// SIGHUP, and a session keeps the `Shared` it started with.
pub struct Shared {
    pub spool: Arc<Spool>,
    /// The TLS configuration, when TLS is on.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Decides AUTH attempts; remembers failures per IP across sessions.
    pub auth: Arc<auth_policy::AuthJudge>,
    pub events: Option<EventStream>,
    pub hostname: String,
    pub limits: Limits,
    pub connections: Arc<ConnectionLimits>,
    pub seal_permits: Arc<Semaphore>,
    /// Ended sessions waiting to be sealed (their clients' slots are free).
    pub seal_backlog: Arc<Semaphore>,
    pub refusal_permits: Arc<Semaphore>,
    /// Whether the spool is short of space (MAIL gets 452).
    pub storage: Arc<storage::StorageGauge>,
    /// Where denied connections are counted.
    pub denials: DenialCounter,
}

/// One loaded configuration: what each new connection is served under.
pub struct Generation {
    pub config: ListenConfig,
    pub shared: Arc<Shared>,
    /// One per listener, in the configuration's order.
    pub policies: Vec<Arc<Policy>>,
    pub deny: DenyList,
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

/// A started listener: its bound addresses, the future that serves until
/// `shutdown` resolves (then seals every open session), and the handle that
/// puts a new configuration in force.
pub struct Running {
    pub addresses: Vec<std::net::SocketAddr>,
    pub serve: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    pub reloader: reload::Reloader,
}

/// Binds every listener, drops privileges, opens the spool and recovers
/// crashed sessions, in that order.
pub async fn start(
    config: &ListenConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    // Sockets first: binding 25 is the one thing that needs root.
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
        sockets.push(tcp);
    }
    let addresses = sockets
        .iter()
        .map(|tcp| tcp.local_addr().expect("bound socket has an address"))
        .collect();
    drop_privileges(config)?;

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
    let denial_log = DenialLog::new(&config.spool, &config.sensor);
    let process = reload::Process {
        spool,
        events,
        connections: ConnectionLimits::new(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
        ),
        seal_permits: Arc::new(Semaphore::new(CONCURRENT_SEALS)),
        seal_backlog: Arc::new(Semaphore::new(config.limits.max_connections)),
        refusal_permits: Arc::new(Semaphore::new(CONCURRENT_REFUSALS)),
        storage: Arc::new(storage::StorageGauge::default()),
        denials: denial_log.counter(),
    };
    let generation = Arc::new(build_generation(config.clone(), &process, None)?);
    if !generation.deny.is_empty() {
        tracing::info!("deny lists: {}", generation.deny.describe());
    }
    // Read free space once before serving, then keep watching.
    if let Ok(free) = storage::free_bytes(&config.spool) {
        process.storage.update(
            free,
            config.limits.min_free_bytes,
            config.limits.resume_free_bytes,
        );
    }
    tokio::spawn(storage::watch(
        Arc::clone(&process.storage),
        config.spool.clone(),
        config.limits.min_free_bytes,
        config.limits.resume_free_bytes,
    ));

    raise_fd_limit(config.limits.max_connections);

    let (current, watched) = tokio::sync::watch::channel(Arc::clone(&generation));
    let (trigger, shutdown_listener) = shutdown::channel();
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    for (index, tcp) in sockets.into_iter().enumerate() {
        let listener = Listener {
            tcp,
            index,
            generation: watched.clone(),
            shutdown: shutdown_listener.clone(),
            done: done_tx.clone(),
        };
        tokio::spawn(listener.run());
    }
    drop(done_tx);
    let (stop_denials, denials_stopped) = tokio::sync::oneshot::channel::<()>();
    let denial_writer = tokio::spawn(denial_log.run(async move {
        let _ = denials_stopped.await;
    }));
    let spool_at_end = Arc::clone(&process.spool);
    let serve = async move {
        shutdown.await;
        tracing::info!("shutting down: telling clients 421 and sealing open sessions");
        trigger.trigger();
        // Every listener and connection holds a sender; all dropped = all sealed.
        let _ = done_rx.recv().await;
        tracing::info!("all sessions sealed");
        let _ = stop_denials.send(());
        let _ = denial_writer.await;
        if let Some(stats) = spool_at_end.commit_stats() {
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
        reloader: reload::Reloader::new(process, current),
    })
}

/// `--user`: gives the spool and state directories to the user and
/// becomes it. Without it, a process running as root is warned about.
fn drop_privileges(config: &ListenConfig) -> Result<(), StartError> {
    let Some(user) = &config.user else {
        if privileges::effective_uid() == 0 {
            tracing::warn!("{}", privileges::ROOT_WARNING);
        }
        return Ok(());
    };
    let mut dirs = vec![config.spool.as_path()];
    if let Some(crate::tls::CertificateSource::Generated { state_dir, .. }) = &config.tls {
        dirs.push(state_dir.as_path());
    }
    let account = privileges::apply(user, config.group.as_deref(), &dirs).map_err(StartError)?;
    tracing::info!(
        "running as user {} (uid {}, gid {})",
        account.user,
        account.uid,
        account.gid
    );
    Ok(())
}

/// Makes what a configuration says into the settings connections are
/// served under; `previous` keeps the AUTH failure counts when the policy
/// did not change. Everything that can fail (TLS files, deny lists,
/// personas) is read here, so that a bad reload changes nothing.
pub(crate) fn build_generation(
    config: ListenConfig,
    process: &reload::Process,
    previous: Option<&Generation>,
) -> Result<Generation, StartError> {
    let persona = listener_persona(&config, &config.persona)?;
    let tls = match &config.tls {
        Some(source) => Some(crate::tls::server_config(source).map_err(StartError)?),
        None => None,
    };
    let deny = DenyList::load(&config.deny).map_err(StartError)?;
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
    let mut policies = Vec::new();
    for l in &config.listeners {
        // Each listener's mode decides what its sessions offer, its persona
        // what they say.
        let persona = match &l.persona {
            Some(name) => listener_persona(&config, name)?,
            None => policy.persona.clone(),
        };
        policies.push(Arc::new(Policy {
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
        }));
    }
    let auth = match previous {
        Some(p) if p.config.auth_policy == config.auth_policy => Arc::clone(&p.shared.auth),
        _ => Arc::new(auth_policy::AuthJudge::new(config.auth_policy)),
    };
    let shared = Arc::new(Shared {
        spool: Arc::clone(&process.spool),
        tls,
        auth,
        events: process.events.clone(),
        hostname: config.hostname.clone(),
        limits: config.limits.clone(),
        connections: Arc::clone(&process.connections),
        seal_permits: Arc::clone(&process.seal_permits),
        seal_backlog: Arc::clone(&process.seal_backlog),
        refusal_permits: Arc::clone(&process.refusal_permits),
        storage: Arc::clone(&process.storage),
        denials: process.denials.clone(),
    });
    Ok(Generation {
        config,
        shared,
        policies,
        deny,
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

/// `latrine listen`: runs until SIGINT or SIGTERM; SIGHUP reloads.
/// `reread` reads the configuration again (the file and the same command
/// line) for SIGHUP.
pub async fn run(
    config: ListenConfig,
    reread: impl Fn() -> Result<ListenConfig, String> + Send + 'static,
) -> Result<(), StartError> {
    // Before anything else: the default action of SIGHUP and SIGTERM would
    // end the process without sealing, if one came before serving begins.
    use tokio::signal::unix::{SignalKind, signal};
    let hangups = signal(SignalKind::hangup())
        .map_err(|e| StartError(format!("cannot watch for SIGHUP: {e}")))?;
    let terminate = signal(SignalKind::terminate())
        .map_err(|e| StartError(format!("cannot watch for SIGTERM: {e}")))?;
    let interrupt = signal(SignalKind::interrupt())
        .map_err(|e| StartError(format!("cannot watch for SIGINT: {e}")))?;
    let running = start(&config, termination(terminate, interrupt)).await?;
    tokio::spawn(reload::on_hangup(hangups, running.reloader.clone(), reread));
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
async fn termination(
    mut terminate: tokio::signal::unix::Signal,
    mut interrupt: tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}
