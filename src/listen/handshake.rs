//! The TLS handshake of one connection, recording what the client sent.
//!
//! rustls consumes the ClientHello without showing its raw bytes, and JA3/JA4
//! need them (extension order, GREASE). So the socket is wrapped in a
//! [`Recorder`] that keeps a copy of the first bytes read during the
//! handshake; the fingerprints are computed from that copy. The first bytes
//! written are copied too, for the fingerprints of our ServerHello.

use crate::events::TlsRecord;
use crate::tls::{client_hello, server_hello};
use rustls::ServerConfig;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Most of a ClientHello kept; real ones are well under 2 KB, hostile ones are cut.
const MAX_RECORDED: usize = 16 * 1024;
/// Of what we write, the ServerHello is first and well under this.
const MAX_SENT_RECORDED: usize = 4 * 1024;

/// A stream that copies the bytes read from it while recording is on. The
/// copy is shared, so that it survives a handshake that times out (the
/// stream is dropped with the handshake's future).
pub struct Recorder<S> {
    inner: S,
    recorded: Option<Arc<Mutex<Vec<u8>>>>,
    sent: Option<Arc<Mutex<Vec<u8>>>>,
}

impl<S> Recorder<S> {
    fn new(inner: S, recorded: Arc<Mutex<Vec<u8>>>, sent: Arc<Mutex<Vec<u8>>>) -> Recorder<S> {
        Recorder {
            inner,
            recorded: Some(recorded),
            sent: Some(sent),
        }
    }

    /// Stops copying; later reads and writes (the SMTP dialog) are not kept here.
    fn stop(&mut self) {
        self.recorded = None;
        self.sent = None;
    }
}

fn take(shared: &Mutex<Vec<u8>>) -> Vec<u8> {
    std::mem::take(&mut *shared.lock().unwrap_or_else(|e| e.into_inner()))
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorder<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Some(recorded), Poll::Ready(Ok(()))) = (&self.recorded, &result) {
            let mut recorded = recorded.lock().unwrap_or_else(|e| e.into_inner());
            let room = MAX_RECORDED.saturating_sub(recorded.len());
            let new = &buf.filled()[before..];
            recorded.extend_from_slice(&new[..new.len().min(room)]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorder<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A handshake that fails ends in a TLS alert from rustls; Postfix
        // (OpenSSL) just closes. Alerts (record type 21) during the handshake
        // are dropped so that a failed handshake looks the same.
        if self.recorded.is_some() && buf.first() == Some(&21) {
            return Poll::Ready(Ok(buf.len()));
        }
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let (Some(sent), Poll::Ready(Ok(n))) = (&self.sent, &result) {
            let mut sent = sent.lock().unwrap_or_else(|e| e.into_inner());
            let room = MAX_SENT_RECORDED.saturating_sub(sent.len());
            sent.extend_from_slice(&buf[..(*n).min(room)]);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub type ServerStream = TlsStream<Recorder<TcpStream>>;

/// The result of a handshake: the stream when it worked, and always the record.
pub struct Handshake {
    pub stream: Option<ServerStream>,
    pub record: TlsRecord,
    /// The raw bytes the client sent during the handshake (at most 16 KiB).
    pub client_bytes: Vec<u8>,
}

/// Runs the server side of a TLS handshake on `socket`, within `limit`.
pub async fn accept(
    socket: TcpStream,
    config: Arc<ServerConfig>,
    mode: &str,
    limit: Duration,
) -> Handshake {
    let acceptor = TlsAcceptor::from(config);
    let mut record = TlsRecord {
        mode: mode.to_string(),
        ..TlsRecord::default()
    };
    let shared = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let handshake = acceptor
        .accept(Recorder::new(
            socket,
            Arc::clone(&shared),
            Arc::clone(&sent),
        ))
        .into_fallible();
    let stream = match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(mut stream)) => {
            stream.get_mut().0.stop();
            let (_, connection) = stream.get_ref();
            record.version = connection
                .protocol_version()
                .map(|v| format!("{v:?}").replace('_', "."));
            record.cipher = connection
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()));
            record.alpn = connection.alpn_protocol().map(crate::escape::escape_text);
            Some(stream)
        }
        Ok(Err((error, _))) => {
            record.error = Some(error.to_string());
            None
        }
        Err(_) => {
            record.error = Some(format!(
                "handshake not finished within {} s",
                limit.as_secs()
            ));
            None
        }
    };
    let client_bytes = take(&shared);
    if let Some(hello) = client_hello::parse(&client_bytes) {
        record.sni = hello.sni.clone();
        record.offered_alpn = hello
            .alpn
            .iter()
            .map(|p| crate::escape::escape_text(p))
            .collect();
        record.ja3 = Some(hello.ja3());
        record.ja3_string = Some(hello.ja3_string());
        record.ja4 = Some(hello.ja4());
    }
    if let Some(hello) = server_hello::parse(&take(&sent)) {
        record.ja3s = Some(hello.ja3s());
        record.ja3s_string = Some(hello.ja3s_string());
        record.ja4s = Some(hello.ja4s());
    }
    record.client_hello_bytes = client_bytes.len() as u64;
    Handshake {
        stream,
        record,
        client_bytes,
    }
}
