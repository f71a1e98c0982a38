//! Dialing over TLS: a connector for tonic's
//! `Endpoint::connect_with_connector[_lazy]`, with which peers and the
//! operator dial the mesh port (mTLS), and clients a client port that
//! runs TLS.
//!
//! tonic's own TLS takes a config once, when the channel is built; peers
//! keep their channels for the life of the process, so this connector reads
//! the client config in force at every (re)connection instead, and a
//! rotated certificate or CA is used from the next connection on.
//!
//! The server's certificate must name the host it was dialed at: the DNS
//! name, or for an IP address an IP SAN; or, with
//! [`MeshConnector::verifying_as`], a name given apart from the address
//! (the operator dials pods at their IP, which no certificate made before
//! the pod existed can name, and checks the pod's DNS name instead).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::Uri;

/// Dials `host:port` of a URI over TCP, then TLS with the client config in
/// force.
#[derive(Debug, Clone)]
pub struct MeshConnector {
    config: Arc<ArcSwap<ClientConfig>>,
    server_name: Option<ServerName<'static>>,
}

impl MeshConnector {
    /// Follows the configs stored in `config`.
    pub fn reloading(config: Arc<ArcSwap<ClientConfig>>) -> Self {
        Self {
            config,
            server_name: None,
        }
    }

    /// Checks the server's certificate for `name` instead of the host
    /// dialed.
    pub fn verifying_as(self, name: ServerName<'static>) -> Self {
        Self {
            server_name: Some(name),
            ..self
        }
    }

    /// Always dials with `config` (tests, one-off tools).
    pub fn fixed(config: Arc<ClientConfig>) -> Self {
        Self::reloading(Arc::new(ArcSwap::new(config)))
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<TlsStream<TcpStream>>>> + Send>>;

impl tower::Service<Uri> for MeshConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.config.load_full();
        let name = self.server_name.clone();
        Box::pin(async move { connect(&uri, config, name).await.map(TokioIo::new) })
    }
}

async fn connect(
    uri: &Uri,
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
) -> io::Result<TlsStream<TcpStream>> {
    let invalid =
        |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: {what}"));
    let host = uri.host().ok_or_else(|| invalid("no host"))?;
    let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
    // An IPv6 host keeps its brackets in a URI.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = match server_name {
        Some(name) => name,
        None => ServerName::try_from(host.to_string())
            .map_err(|_| invalid("host is neither a DNS name nor an IP address"))?,
    };
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(config).connect(name, tcp).await
}
