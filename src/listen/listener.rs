//! Accepting connections on one socket, under the connection limits.

use super::connection::Connection;
use super::deny::Verdict;
use super::limits::Refusal;
use super::shutdown::Shutdown;
use super::{Generation, Shared};
use crate::events::{EndReason, Endpoint, Event, EventRecord};
use crate::smtp::{Policy, Session};
use crate::spool::denials::ALLOWED_UNKNOWN_COUNTRY;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// One listening socket and what its sessions share.
pub struct Listener {
    pub tcp: TcpListener,
    /// Its place in the configuration's listeners (and each generation's policies).
    pub index: usize,
    /// The configuration in force; a SIGHUP replaces it.
    pub generation: watch::Receiver<Arc<Generation>>,
    pub shutdown: Shutdown,
    /// Cloned into every connection; the process waits for all clones to drop.
    pub done: mpsc::Sender<()>,
}

impl Listener {
    /// Accepts until shutdown.
    pub async fn run(mut self) {
        let allowed_unknown: Arc<str> = ALLOWED_UNKNOWN_COUNTRY.into();
        loop {
            let accepted = tokio::select! {
                _ = self.shutdown.recv() => return,
                accepted = self.tcp.accept() => accepted,
            };
            let (socket, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors or a transient error: back off
                    // instead of spinning.
                    let name = self.generation.borrow().config.listeners[self.index]
                        .name
                        .clone();
                    tracing::warn!(listener = %name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // The connection keeps this generation to its end.
            let generation = Arc::clone(&self.generation.borrow());
            if !generation.deny.is_empty() {
                match generation.deny.check(peer.ip()) {
                    Verdict::Allow => {}
                    Verdict::AllowUnknownCountry => generation.shared.denials.count(
                        crate::timestamp::now(),
                        peer.ip().to_canonical(),
                        &allowed_unknown,
                    ),
                    Verdict::Deny(rule) => {
                        self.deny(&generation, socket, peer, &rule);
                        continue;
                    }
                }
            }
            let _ = socket.set_nodelay(true);
            let local = socket
                .local_addr()
                .unwrap_or_else(|_| self.tcp.local_addr().expect("bound"));
            let shared = &generation.shared;
            let policy = &generation.policies[self.index];
            let name = &generation.config.listeners[self.index].name;
            match shared.connections.try_acquire(peer.ip()) {
                Ok(slot) => {
                    let connection = Connection {
                        transport: super::transport::Transport::Plain(socket),
                        peer,
                        local,
                        listener: name.clone(),
                        policy: Arc::clone(policy),
                        shared: Arc::clone(shared),
                        shutdown: self.shutdown.clone(),
                        slot,
                        done: self.done.clone(),
                    };
                    tokio::spawn(connection.run());
                }
                Err(refusal) => self.refuse(shared, policy, name, socket, peer, local, refusal),
            }
        }
    }

    /// A denied client: closed at once, before any greeting or session
    /// work, and counted. The cost is the accept, the lookup and a map
    /// update, so that a flood of them cannot slow anyone else down.
    fn deny(&self, generation: &Generation, socket: TcpStream, peer: SocketAddr, rule: &Arc<str>) {
        let at = crate::timestamp::now();
        let ip = peer.ip().to_canonical();
        let local = socket.local_addr();
        drop(socket);
        generation.shared.denials.count(at, ip, rule);
        if let Some(events) = &generation.shared.events {
            let local = local.unwrap_or_else(|_| self.tcp.local_addr().expect("bound"));
            events.emit(&EventRecord {
                at: crate::timestamp::rfc3339(at),
                sensor: generation.config.sensor.clone(),
                session_id: String::new(),
                client_ip: ip.to_string(),
                event: Event::Denied {
                    client: Endpoint::from(peer),
                    server: Endpoint::from(local),
                    listener: generation.config.listeners[self.index].name.clone(),
                    rule: rule.to_string(),
                },
            });
        }
    }

    /// Over a connection limit: answer 421 as Postfix does, and still record
    /// the attempt as a session. Refusals have their own small budget, so a
    /// flood cannot turn them into unbounded work; past it the socket is just closed.
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &self,
        shared: &Arc<Shared>,
        policy: &Arc<Policy>,
        listener: &str,
        mut socket: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        refusal: Refusal,
    ) {
        let Ok(permit) = Arc::clone(&shared.refusal_permits).try_acquire_owned() else {
            tracing::debug!(client = %peer, "refusal budget spent, closing");
            return;
        };
        let shared = Arc::clone(shared);
        let policy = Arc::clone(policy);
        let listener = listener.to_string();
        let done = self.done.clone();
        tokio::spawn(async move {
            let session = Session::new(Arc::clone(&policy));
            let client = Endpoint::from(peer);
            let reply = session.render(
                &policy.persona.replies.too_many_connections,
                client.ip.as_bytes(),
            );
            let connect = Event::Connect {
                client: client.clone(),
                server: Endpoint::from(local),
                hostname: shared.hostname.clone(),
                listener,
            };
            let writer = shared.spool.begin(
                crate::timestamp::now(),
                client.ip,
                connect,
                shared.events.clone(),
            );
            let bytes = reply.to_bytes();
            let _ = tokio::time::timeout(Duration::from_secs(5), socket.write_all(&bytes)).await;
            if let Ok(mut writer) = writer {
                let _ = writer.transcript().server(&bytes);
                let _ = writer.record(Event::Limit {
                    limit: refusal.limit_name().into(),
                });
                drop(socket);
                let _ = super::connection::seal(&shared, writer, EndReason::Limit, 0).await;
            }
            drop(permit);
            drop(done);
        });
    }
}
