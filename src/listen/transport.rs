//! The connection's byte stream: plain TCP, or TLS after STARTTLS or on an
//! implicit-TLS port.

use super::handshake::ServerStream;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most bytes asked of the socket per read. A partial command line plus one
/// read is the most a session ever holds as input.
pub const READ_SIZE: usize = 64 * 1024;
/// A connection's first read buffer. It doubles, up to [`READ_SIZE`], each
/// time a read fills it (a message streaming in): thousands of connections
/// that each send a command line then hold a few KiB, not 64.
const FIRST_READ_SIZE: usize = 4 * 1024;
/// TLS reads are smaller: the buffer must be reserved before waiting.
const TLS_READ_SIZE: usize = 16 * 1024;

pub enum Transport {
    Plain(TcpStream),
    Tls(Box<ServerStream>),
    /// Between taking the plain socket for a handshake and getting TLS back.
    Detached,
}

impl Transport {
    /// Waits for input and appends it to `input`; `Ok(0)` at end of stream.
    /// Cancel-safe: nothing is lost if the wait is abandoned.
    pub async fn read(&mut self, input: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => loop {
                // Reserve only once there is something to read: an idle
                // plaintext connection holds no read buffer.
                socket.readable().await?;
                input.reserve(FIRST_READ_SIZE);
                let spare = input.capacity() - input.len();
                match socket.try_read_buf(input) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Ok(n) if n == spare && input.capacity() < READ_SIZE => {
                        input.reserve(input.capacity());
                        return Ok(n);
                    }
                    other => return other,
                }
            },
            Transport::Tls(stream) => {
                input.reserve(TLS_READ_SIZE);
                stream.read_buf(input).await
            }
            Transport::Detached => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Transport::Plain(socket) => socket.write_all(bytes).await,
            Transport::Tls(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
            Transport::Detached => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Takes the plain socket out, for a TLS handshake.
    pub fn take_plain(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, Transport::Detached) {
            Transport::Plain(socket) => Some(socket),
            other => {
                *self = other;
                None
            }
        }
    }
}
