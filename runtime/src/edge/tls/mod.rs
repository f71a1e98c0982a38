//! TLS on the mesh port and, optionally, on the client port.
//!
//! The mesh port lets a caller do what a peer or the operator may do, so
//! with `--mesh-tls-cert/key/ca` it speaks TLS 1.3 only and requires a
//! client certificate signed by the cluster's CA; peers dial each other
//! presenting the same certificate and check the server's against the same
//! CA. One certificate serves both ends, so it needs the server SANs its
//! peers dial (the DNS name or IP in `--peers`) and the client-auth usage.
//!
//! The client port takes `--client-tls-cert/key` for a server certificate
//! and, with `--client-tls-ca`, requires client certificates signed by that
//! CA. It allows TLS 1.2 as well, for clients that have nothing newer.
//!
//! Certificates are rotated without a restart: [`PortTls::watch`] re-reads
//! the files every [`crate::ops::reload::RELOAD_POLL`] and swaps in the configs built from
//! them. Each handshake reads the configs in force, so new connections
//! use the new certificate and CA while established ones carry on. A file
//! set that does not build (a key that does not match its certificate
//! because one file was written before the other, a CA file without a
//! certificate) is logged and the configs in force stay.
//!
//! [`accept`] turns a listener into a stream of TLS connections for
//! tonic; [`MeshConnector`] (in `vss-wire`, which the operator and clients share)
//! is the connector peers dial through.

pub mod accept;
pub mod x509;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::ops::metrics::TlsMetrics;

pub use vss_wire::MeshConnector;

/// The three PEM files of `--mesh-tls-cert`, `--mesh-tls-key` and
/// `--mesh-tls-ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This instance's certificate chain (leaf first).
    pub cert: PathBuf,
    /// The private key of the leaf (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates whose signature a peer's certificate must carry;
    /// during a CA rotation, the old and the new one.
    pub ca: PathBuf,
}

/// The files of `--client-tls-cert`, `--client-tls-key` and
/// `--client-tls-ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// The client port's certificate chain (leaf first).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// With it, clients must present a certificate signed by one of these
    /// CAs; without it, any client may connect (and tokens, if set, decide
    /// what it may do).
    pub ca: Option<PathBuf>,
}

/// Which port a set of files serves: it names the flags in errors and
/// decides what the other end must present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Mesh,
    Client,
}

impl Port {
    fn flags(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Port::Mesh => ("--mesh-tls-cert", "--mesh-tls-key", "--mesh-tls-ca"),
            Port::Client => ("--client-tls-cert", "--client-tls-key", "--client-tls-ca"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Port::Mesh => "mesh",
            Port::Client => "client",
        }
    }
}

/// The files of one port, whichever it is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Files {
    port: Port,
    cert: PathBuf,
    key: PathBuf,
    ca: Option<PathBuf>,
}

/// Why a port's TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {path}: {message}")]
    Pem {
        flag: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{flag} {path} holds no {expected}")]
    Empty {
        flag: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{flag} {path}: certificate {index} is not a usable CA: {source}")]
    Ca {
        flag: &'static str,
        path: PathBuf,
        index: usize,
        source: rustls::Error,
    },
    #[error("{flag} {path}: {source}")]
    Verifier {
        flag: &'static str,
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("{} {cert} with {} {key}: {source}", .port.flags().0, .port.flags().1)]
    Identity {
        port: Port,
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// The bytes of the files, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pems {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Option<Vec<u8>>,
}

impl Pems {
    async fn read(files: &Files) -> Result<Self, TlsError> {
        async fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
            tokio::fs::read(path)
                .await
                .map_err(|source| TlsError::Read {
                    flag,
                    path: path.to_path_buf(),
                    source,
                })
        }
        let (cert, key, ca) = files.port.flags();
        Ok(Self {
            cert: read(cert, &files.cert).await?,
            key: read(key, &files.key).await?,
            ca: match &files.ca {
                Some(path) => Some(read(ca, path).await?),
                None => None,
            },
        })
    }
}

/// Server and client configs built from one set of files.
#[derive(Debug)]
pub struct TlsConfig {
    pub server: Arc<ServerConfig>,
    /// For dialing peers: the mesh port only.
    pub client: Option<Arc<ClientConfig>>,
    /// The leaf certificate's notAfter, in seconds since the Unix epoch
    /// (None if it could not be read, which does not stop its use).
    pub not_after: Option<i64>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(
    flag: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            flag,
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            flag,
            path: path.to_path_buf(),
            expected: "PEM certificate",
        });
    }
    Ok(certs)
}

/// Builds the configs of `files` from their contents `pems`: pure, so
/// a reload can try a new set without touching the one in force.
fn build(files: &Files, pems: &Pems) -> Result<TlsConfig, TlsError> {
    let (cert_flag, key_flag, ca_flag) = files.port.flags();
    let chain = certs(cert_flag, &files.cert, &pems.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&pems.key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            flag: key_flag,
            path: files.key.clone(),
            expected: "PEM private key",
        },
        e => TlsError::Pem {
            flag: key_flag,
            path: files.key.clone(),
            message: e.to_string(),
        },
    })?;
    let roots = match (&files.ca, &pems.ca) {
        (Some(path), Some(pem)) => {
            let mut roots = RootCertStore::empty();
            for (index, ca) in certs(ca_flag, path, pem)?.into_iter().enumerate() {
                roots.add(ca).map_err(|source| TlsError::Ca {
                    flag: ca_flag,
                    path: path.clone(),
                    index,
                    source,
                })?;
            }
            Some((path, Arc::new(roots)))
        }
        _ => None,
    };
    let identity = |source| TlsError::Identity {
        port: files.port,
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let verifier = |path: &Path, source| TlsError::Verifier {
        flag: ca_flag,
        path: path.to_path_buf(),
        source,
    };
    let not_after = chain.first().and_then(|leaf| x509::not_after(leaf));
    let provider = provider();
    // The mesh is ours at both ends, so it takes TLS 1.3 only; clients may
    // have nothing newer than 1.2.
    let versions: &[&rustls::SupportedProtocolVersion] = match files.port {
        Port::Mesh => &[&rustls::version::TLS13],
        Port::Client => rustls::DEFAULT_VERSIONS,
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(identity)?;
    let builder = match &roots {
        Some((path, roots)) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| verifier(path, e))?,
        ),
        None => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(identity)?;
    server.alpn_protocols = vec![b"h2".to_vec()];

    let client = match (files.port, roots) {
        (Port::Mesh, Some((path, roots))) => {
            let servers = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| verifier(path, e))?;
            let mut client = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(identity)?
                .with_webpki_verifier(servers)
                .with_client_auth_cert(chain, key)
                .map_err(identity)?;
            client.alpn_protocols = vec![b"h2".to_vec()];
            Some(Arc::new(client))
        }
        _ => None,
    };

    Ok(TlsConfig {
        server: Arc::new(server),
        client,
        not_after,
    })
}

/// The TLS configs of one port in force, and the files they come from.
#[derive(Debug)]
pub struct PortTls {
    files: Files,
    server: ArcSwap<ServerConfig>,
    /// Shared with every [`MeshConnector`], so peers dial with the configs
    /// in force; the mesh port only.
    client: Option<Arc<ArcSwap<ClientConfig>>>,
    /// What the configs in force were built from.
    loaded: Mutex<Pems>,
    metrics: TlsMetrics,
}

impl PortTls {
    /// Reads and checks the mesh port's three files.
    pub async fn mesh(files: TlsFiles, metrics: TlsMetrics) -> Result<Self, TlsError> {
        let TlsFiles { cert, key, ca } = files;
        Self::load(
            Files {
                port: Port::Mesh,
                cert,
                key,
                ca: Some(ca),
            },
            metrics,
        )
        .await
    }

    /// Reads and checks the client port's files.
    pub async fn client(files: ClientTlsFiles, metrics: TlsMetrics) -> Result<Self, TlsError> {
        let ClientTlsFiles { cert, key, ca } = files;
        Self::load(
            Files {
                port: Port::Client,
                cert,
                key,
                ca,
            },
            metrics,
        )
        .await
    }

    async fn load(files: Files, metrics: TlsMetrics) -> Result<Self, TlsError> {
        let pems = Pems::read(&files).await?;
        let config = build(&files, &pems)?;
        metrics.record_expiry(config.not_after);
        Ok(Self {
            files,
            server: ArcSwap::new(config.server),
            client: config.client.map(|c| Arc::new(ArcSwap::new(c))),
            loaded: Mutex::new(pems),
            metrics,
        })
    }

    /// The server config for the next handshake.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.load_full()
    }

    /// A connector that dials peers with the client config in force at
    /// each connection; the mesh port's only.
    pub fn connector(&self) -> Option<MeshConnector> {
        self.client.clone().map(MeshConnector::reloading)
    }

    pub(crate) fn metrics(&self) -> &TlsMetrics {
        &self.metrics
    }

    /// Re-reads the files; if they changed and build, swaps the new configs
    /// in. Ok(true): swapped.
    pub async fn reload(&self) -> Result<bool, TlsError> {
        let pems = Pems::read(&self.files).await?;
        if *self.lock() == pems {
            return Ok(false);
        }
        let config = build(&self.files, &pems)?;
        self.server.store(config.server);
        if let (Some(in_force), Some(new)) = (&self.client, config.client) {
            in_force.store(new);
        }
        self.metrics.record_expiry(config.not_after);
        *self.lock() = pems;
        Ok(true)
    }

    /// Reloads on every change of the files until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let port = self.files.port.name();
        crate::ops::reload::watch(
            crate::ops::reload::RELOAD_POLL,
            stop,
            || self.reload(),
            || {
                self.metrics.reloads.inc();
                tracing::info!(port, cert = %self.files.cert.display(), "TLS certificate reloaded");
            },
            |e| {
                self.metrics.reload_failures.inc();
                tracing::warn!(port, error = %e, "TLS files changed but do not build; keeping the certificate in force");
            },
        )
        .await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pems> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Files {
        Files {
            port: Port::Mesh,
            cert: "cert.pem".into(),
            key: "key.pem".into(),
            ca: Some("ca.pem".into()),
        }
    }

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_set_builds_and_tells_its_expiry() {
        let (cert, key) = self_signed("a");
        let pems = Pems {
            ca: Some(cert.clone().into_bytes()),
            cert: cert.into_bytes(),
            key: key.into_bytes(),
        };
        let config = build(&files(), &pems).expect("builds");
        assert!(config.not_after.is_some_and(|t| t > 1_700_000_000));
    }

    // A rotation writes the key and the certificate one after the other; a
    // reload between the two must fail rather than serve a broken pair.
    #[test]
    fn a_key_that_does_not_match_its_certificate_is_refused() {
        let (cert, _) = self_signed("a");
        let (_, other_key) = self_signed("b");
        let pems = Pems {
            ca: Some(cert.clone().into_bytes()),
            cert: cert.into_bytes(),
            key: other_key.into_bytes(),
        };
        let e = build(&files(), &pems).expect_err("mismatched pair");
        assert!(
            e.to_string()
                .starts_with("--mesh-tls-cert cert.pem with --mesh-tls-key key.pem: "),
            "{e}"
        );
    }

    #[test]
    fn an_empty_ca_file_is_refused_naming_the_flag() {
        let pems = Pems {
            cert: Vec::new(),
            key: Vec::new(),
            ca: Some(Vec::new()),
        };
        let e = build(&files(), &pems).expect_err("nothing to build from");
        assert_eq!(
            e.to_string(),
            "--mesh-tls-cert cert.pem holds no PEM certificate"
        );
    }
}
