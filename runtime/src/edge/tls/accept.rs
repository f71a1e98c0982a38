//! A TLS port's listener (the mesh's, or the clients') as a stream of TLS
//! connections, for tonic's `serve_with_incoming_shutdown`.
//!
//! Handshakes run concurrently, each within [`HANDSHAKE_TIMEOUT`], so a
//! caller that opens a connection and sends nothing cannot hold up the
//! peers behind it; at most [`MAX_PENDING_HANDSHAKES`] are in progress,
//! past which the listener waits (the kernel's backlog holds the rest). A
//! failed handshake (no certificate, another CA, plaintext) ends that
//! connection only: it is logged at debug and counted.
//!
//! The handshakes are driven by the stream itself, which the server polls
//! until shutdown, so there is no task to own.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, Stream, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::PortTls;

/// Longest a connection may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most handshakes in progress at once.
pub const MAX_PENDING_HANDSHAKES: usize = 256;
/// Pause after a failed accept (e.g. out of file descriptors), so the loop
/// does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

type Handshake =
    Pin<Box<dyn Future<Output = (SocketAddr, Result<TlsStream<TcpStream>, String>)> + Send>>;

struct Acceptor {
    listener: TcpListener,
    tls: Arc<PortTls>,
    handshakes: FuturesUnordered<Handshake>,
}

impl Acceptor {
    fn start_handshake(&mut self, tcp: TcpStream, from: SocketAddr) {
        // Small messages (heartbeats, forwarded acquires) must not wait
        // for Nagle.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%from, error = %e, "cannot set TCP_NODELAY on a TLS connection");
        }
        let acceptor = TlsAcceptor::from(self.tls.server_config());
        self.handshakes.push(Box::pin(async move {
            let outcome = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no handshake within {HANDSHAKE_TIMEOUT:?}")),
            };
            (from, outcome)
        }));
    }

    async fn next(&mut self) -> TlsStream<TcpStream> {
        loop {
            let room = self.handshakes.len() < MAX_PENDING_HANDSHAKES;
            tokio::select! {
                accepted = self.listener.accept(), if room => match accepted {
                    Ok((tcp, from)) => self.start_handshake(tcp, from),
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS port: accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some((from, outcome)) = self.handshakes.next(), if !self.handshakes.is_empty() => {
                    match outcome {
                        Ok(stream) => return stream,
                        Err(e) => {
                            self.tls.metrics().handshake_failures.inc();
                            tracing::debug!(%from, error = %e, "TLS handshake failed");
                        }
                    }
                }
            }
        }
    }
}

/// TLS connections accepted on `listener` with the configs of `tls` in
/// force at each handshake. Never ends and never yields an error: a failed
/// connection is dropped here.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<PortTls>,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>> + Send + 'static {
    let acceptor = Acceptor {
        listener,
        tls,
        handshakes: FuturesUnordered::new(),
    };
    futures_util::stream::unfold(acceptor, |mut acceptor| async move {
        let stream = acceptor.next().await;
        Some((Ok(stream), acceptor))
    })
}
