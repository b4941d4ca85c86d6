//! Accepting connections on one socket, under the connection limits.

use super::Shared;
use super::connection::Connection;
use super::limits::Refusal;
use super::shutdown::Shutdown;
use crate::events::{EndReason, Endpoint, Event};
use crate::smtp::{Policy, Session};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One listening socket and what its sessions share.
pub struct Listener {
    pub tcp: TcpListener,
    pub name: String,
    pub policy: Arc<Policy>,
    pub shared: Arc<Shared>,
    pub shutdown: Shutdown,
    /// Cloned into every connection; the process waits for all clones to drop.
    pub done: mpsc::Sender<()>,
}

impl Listener {
    /// Accepts until shutdown.
    pub async fn run(mut self) {
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
                    tracing::warn!(listener = %self.name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let local = socket
                .local_addr()
                .unwrap_or_else(|_| self.tcp.local_addr().expect("bound"));
            match self.shared.connections.try_acquire(peer.ip()) {
                Ok(slot) => {
                    let connection = Connection {
                        transport: super::transport::Transport::Plain(socket),
                        peer,
                        local,
                        listener: self.name.clone(),
                        policy: Arc::clone(&self.policy),
                        shared: Arc::clone(&self.shared),
                        shutdown: self.shutdown.clone(),
                        slot,
                        done: self.done.clone(),
                    };
                    tokio::spawn(connection.run());
                }
                Err(refusal) => self.refuse(socket, peer, local, refusal),
            }
        }
    }

    /// Over a connection limit: answer 421 as Postfix does, and still record
    /// the attempt as a session. Refusals have their own small budget, so a
    /// flood cannot turn them into unbounded work; past it the socket is just closed.
    fn refuse(&self, mut socket: TcpStream, peer: SocketAddr, local: SocketAddr, refusal: Refusal) {
        let Ok(permit) = Arc::clone(&self.shared.refusal_permits).try_acquire_owned() else {
            tracing::debug!(client = %peer, "refusal budget spent, closing");
            return;
        };
        let shared = Arc::clone(&self.shared);
        let policy = Arc::clone(&self.policy);
        let listener = self.name.clone();
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
