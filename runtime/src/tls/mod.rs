//! Mutual TLS on the mesh port.
//!
//! The mesh port lets a caller do what a peer or the operator may do, so
//! with `--mesh-tls-cert/key/ca` it speaks TLS 1.3 only and requires a
//! client certificate signed by the cluster's CA; peers dial each other
//! presenting the same certificate and check the server's against the same
//! CA. One certificate serves both ends, so it needs the server SANs its
//! peers dial (the DNS name or IP in `--peers`) and the client-auth usage.
//!
//! Certificates are rotated without a restart: [`MeshTls::watch`] re-reads
//! the three files every [`RELOAD_POLL`] and swaps in the configs built
//! from them. Each handshake reads the configs in force, so new connections
//! use the new certificate and CA while established ones carry on. A file
//! set that does not build (a key that does not match its certificate
//! because one file was written before the other, a CA file without a
//! certificate) is logged and the configs in force stay.
//!
//! [`accept`] turns the mesh listener into a stream of TLS connections for
//! tonic; [`MeshConnector`] (in `vss-client`, which the operator shares)
//! is the connector peers dial through.

pub mod accept;
mod expiry;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::metrics::MeshTlsMetrics;

pub use vss_client::mesh_tls::MeshConnector;

/// How often the certificate, key and CA files are checked for changes.
/// Kubernetes updates a mounted Secret within about a minute, and
/// cert-manager renews well before expiry, so seconds are plenty.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

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

/// Why the mesh TLS files cannot be used.
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
    #[error("--mesh-tls-ca {path}: certificate {index} is not a usable CA: {source}")]
    Ca {
        path: PathBuf,
        index: usize,
        source: rustls::Error,
    },
    #[error("--mesh-tls-ca {path}: {source}")]
    Verifier {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("--mesh-tls-cert {cert} with --mesh-tls-key {key}: {source}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// The bytes of the three files, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pems {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

impl Pems {
    async fn read(files: &TlsFiles) -> Result<Self, TlsError> {
        async fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
            tokio::fs::read(path)
                .await
                .map_err(|source| TlsError::Read {
                    flag,
                    path: path.to_path_buf(),
                    source,
                })
        }
        Ok(Self {
            cert: read("--mesh-tls-cert", &files.cert).await?,
            key: read("--mesh-tls-key", &files.key).await?,
            ca: read("--mesh-tls-ca", &files.ca).await?,
        })
    }
}

/// Server and client configs built from one set of files.
#[derive(Debug)]
pub struct MeshTlsConfig {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
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
fn build(files: &TlsFiles, pems: &Pems) -> Result<MeshTlsConfig, TlsError> {
    let chain = certs("--mesh-tls-cert", &files.cert, &pems.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&pems.key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            flag: "--mesh-tls-key",
            path: files.key.clone(),
            expected: "PEM private key",
        },
        e => TlsError::Pem {
            flag: "--mesh-tls-key",
            path: files.key.clone(),
            message: e.to_string(),
        },
    })?;
    let mut roots = RootCertStore::empty();
    for (index, ca) in certs("--mesh-tls-ca", &files.ca, &pems.ca)?
        .into_iter()
        .enumerate()
    {
        roots.add(ca).map_err(|source| TlsError::Ca {
            path: files.ca.clone(),
            index,
            source,
        })?;
    }
    let roots = Arc::new(roots);
    let identity = |source| TlsError::Identity {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let not_after = chain.first().and_then(|leaf| expiry::not_after(leaf));
    let provider = provider();

    let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|source| TlsError::Verifier {
            path: files.ca.clone(),
            source,
        })?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(identity)?
        .with_client_cert_verifier(clients)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(identity)?;
    server.alpn_protocols = vec![b"h2".to_vec()];

    let servers = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|source| TlsError::Verifier {
            path: files.ca.clone(),
            source,
        })?;
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(identity)?
        .with_webpki_verifier(servers)
        .with_client_auth_cert(chain, key)
        .map_err(identity)?;
    client.alpn_protocols = vec![b"h2".to_vec()];

    Ok(MeshTlsConfig {
        server: Arc::new(server),
        client: Arc::new(client),
        not_after,
    })
}

/// The mesh TLS configs in force, and the files they come from.
#[derive(Debug)]
pub struct MeshTls {
    files: TlsFiles,
    server: ArcSwap<ServerConfig>,
    /// Shared with every [`MeshConnector`], so peers dial with the configs
    /// in force.
    client: Arc<ArcSwap<ClientConfig>>,
    /// What the configs in force were built from.
    loaded: Mutex<Pems>,
    metrics: MeshTlsMetrics,
}

impl MeshTls {
    /// Reads and checks the three files.
    pub async fn load(files: TlsFiles, metrics: MeshTlsMetrics) -> Result<Self, TlsError> {
        let pems = Pems::read(&files).await?;
        let config = build(&files, &pems)?;
        metrics.record_expiry(config.not_after);
        Ok(Self {
            files,
            server: ArcSwap::new(config.server),
            client: Arc::new(ArcSwap::new(config.client)),
            loaded: Mutex::new(pems),
            metrics,
        })
    }

    /// The server config for the next handshake.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.load_full()
    }

    /// A connector that dials peers with the client config in force at
    /// each connection.
    pub fn connector(&self) -> MeshConnector {
        MeshConnector::reloading(self.client.clone())
    }

    pub(crate) fn metrics(&self) -> &MeshTlsMetrics {
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
        self.client.store(config.client);
        self.metrics.record_expiry(config.not_after);
        *self.lock() = pems;
        Ok(true)
    }

    /// Reloads on every change of the files until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(RELOAD_POLL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate and the files were just read.
        every.tick().await;
        // A half-written set fails the same way on every poll until it is
        // complete: log it once.
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            match self.reload().await {
                Ok(false) => {}
                Ok(true) => {
                    failing = false;
                    self.metrics.reloads.inc();
                    tracing::info!(cert = %self.files.cert.display(), "mesh TLS certificate reloaded");
                }
                Err(e) => {
                    if !failing {
                        self.metrics.reload_failures.inc();
                        tracing::warn!(error = %e, "mesh TLS files changed but do not build; keeping the certificate in force");
                    }
                    failing = true;
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pems> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> TlsFiles {
        TlsFiles {
            cert: "cert.pem".into(),
            key: "key.pem".into(),
            ca: "ca.pem".into(),
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
            ca: cert.clone().into_bytes(),
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
            ca: cert.clone().into_bytes(),
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
            ca: Vec::new(),
        };
        let e = build(&files(), &pems).expect_err("nothing to build from");
        assert_eq!(
            e.to_string(),
            "--mesh-tls-cert cert.pem holds no PEM certificate"
        );
    }
}
