//! Graceful shutdown as a first-class path: every task holds a [`Shutdown`]
//! and checks it while waiting, so that on SIGINT/SIGTERM each open session
//! tells its client `421` and is sealed before the process exits.

use tokio::sync::watch;

/// Whether the shutdown signal has arrived, and a way to wait for it.
#[derive(Debug, Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

/// The sending side, kept by whoever decides to stop.
#[derive(Debug)]
pub struct ShutdownTrigger {
    sender: watch::Sender<bool>,
}

/// A connected trigger and listener pair.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (ShutdownTrigger { sender }, Shutdown { receiver })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.sender.send(true);
    }
}

impl Shutdown {
    pub fn is_shutdown(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Waits until shutdown is triggered (or the trigger is dropped).
    pub async fn recv(&mut self) {
        let _ = self.receiver.wait_for(|stop| *stop).await;
    }
}
