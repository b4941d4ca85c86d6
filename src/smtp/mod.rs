//! The sans-IO SMTP core: bytes in, replies and events out.
//!
//! Nothing here reads a socket, a clock or a file. The tokio shell in
//! [`crate::listen`] feeds client bytes to a [`Session`] and acts on the
//! [`Step`]s it returns; tests and fuzzers do the same without a network.

pub mod auth;
pub mod command;
pub mod data;
pub mod ntlm;
pub mod persona;
pub mod reply;
pub mod rfc822;
pub mod session;

pub use auth::{AuthAttempt, AuthEnd, Mechanism};
pub use data::{DataFlags, DataSummary};
pub use persona::Persona;
pub use reply::Reply;
pub use session::{
    Action, AuthOffer, Effect, Envelope, MessageEnd, Outcome, Policy, Session, Step,
};
