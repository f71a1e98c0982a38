//! Talking to the runtime pods: read their status, push slot config.
//!
//! Behind [`PodControl`] so reconcile tests replace the network with a
//! recording fake.
//!
//! The pods' mesh port may require mTLS. Each call then carries a
//! [`PodTls`]: the client config of the cluster (the operator's certificate
//! of that cluster's CA, see [`crate::mesh_certs`]) and the name the pod's
//! certificate must carry. [`GrpcPodControl::with_mesh_tls`] replaces the
//! certificate and CA of every cluster with files (`--mesh-tls-*`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::Endpoint;
use vss_proto::v1::control_client::ControlClient;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{ApplyConfigRequest, StatusRequest};
use vss_wire::MeshConnector;

/// What a pod reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodReport {
    /// Generation of the slot config in force.
    pub config_generation: u64,
    /// Leader named by the pod's routing table; empty before it has one.
    pub leader: String,
}

/// Why a pod call failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("{address} refused the call: {status}")]
    Refused {
        address: String,
        status: tonic::Status,
    },
    #[error("{address}: invalid address: {reason}")]
    Address { address: String, reason: String },
    #[error("mesh TLS: {0}")]
    Tls(String),
}

/// How to reach one pod over mTLS.
#[derive(Debug, Clone)]
pub struct PodTls {
    /// The operator's certificate for the pod's cluster, and the CA the
    /// pod's certificate must be signed by.
    pub config: Arc<rustls::ClientConfig>,
    /// The name the pod's certificate must carry. Pods are dialed at their
    /// IP, which a certificate made before the pod existed cannot name.
    pub server_name: String,
}

/// The client config of a cluster: TLS 1.3, `cert_pem`/`key_pem` as the
/// client's certificate, servers checked against `ca_pem`.
pub fn client_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
) -> Result<Arc<rustls::ClientConfig>, PushError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PushError::Tls(format!("certificate: {e}")))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| PushError::Tls(format!("key: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for root in CertificateDer::pem_slice_iter(ca_pem) {
        let root = root.map_err(|e| PushError::Tls(format!("CA: {e}")))?;
        roots
            .add(root)
            .map_err(|e| PushError::Tls(format!("CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(PushError::Tls("CA: no PEM certificate".into()));
    }
    build_config(roots, chain, key).map_err(|e| PushError::Tls(format!("certificate: {e}")))
}

fn build_config(
    roots: rustls::RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The operator's certificate, key and the cluster's CA (PEM files of
/// `--mesh-tls-cert`, `--mesh-tls-key`, `--mesh-tls-ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Reads `files` into a client config: TLS 1.3, this certificate as the
/// client's, servers checked against the CA and the host dialed.
pub async fn mesh_client_config(
    files: &MeshTlsFiles,
) -> Result<Arc<rustls::ClientConfig>, PushError> {
    async fn read(flag: &str, path: &std::path::Path) -> Result<Vec<u8>, PushError> {
        tokio::fs::read(path)
            .await
            .map_err(|e| PushError::Tls(format!("cannot read {flag} {}: {e}", path.display())))
    }
    let bad = |flag: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        PushError::Tls(format!("{flag} {}: {e}", path.display()))
    };
    let cert = read("--mesh-tls-cert", &files.cert).await?;
    let key = read("--mesh-tls-key", &files.key).await?;
    let ca = read("--mesh-tls-ca", &files.ca).await?;
    let chain = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("--mesh-tls-cert", &files.cert, &e))?;
    let key =
        PrivateKeyDer::from_pem_slice(&key).map_err(|e| bad("--mesh-tls-key", &files.key, &e))?;
    let mut roots = rustls::RootCertStore::empty();
    for root in CertificateDer::pem_slice_iter(&ca) {
        let root = root.map_err(|e| bad("--mesh-tls-ca", &files.ca, &e))?;
        roots
            .add(root)
            .map_err(|e| bad("--mesh-tls-ca", &files.ca, &e))?;
    }
    if roots.is_empty() {
        return Err(bad("--mesh-tls-ca", &files.ca, &"no PEM certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| PushError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad("--mesh-tls-cert", &files.cert, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The calls the operator makes to a runtime pod.
pub trait PodControl: Send + Sync {
    /// `vss.v1.Vss/Status` on `address` (`host:port`), over mTLS when
    /// `tls` is given.
    fn status(
        &self,
        address: String,
        tls: Option<PodTls>,
    ) -> BoxFuture<'static, Result<PodReport, PushError>>;
    /// `vss.v1.Control/ApplyConfig`; returns the generation in force after.
    fn apply_config(
        &self,
        address: String,
        tls: Option<PodTls>,
        config_yaml: String,
        generation: u64,
    ) -> BoxFuture<'static, Result<u64, PushError>>;
}

/// [`PodControl`] over gRPC, one short-lived connection per call: pushes
/// happen on spec changes and status reads every few seconds per cluster,
/// so pooling would buy little and hold sockets to pods that may be gone.
#[derive(Debug, Clone)]
pub struct GrpcPodControl {
    timeout: Duration,
    tls: Option<Arc<MeshTlsFiles>>,
}

impl GrpcPodControl {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, tls: None }
    }

    /// Dials the pods over mTLS with `files` instead of each cluster's
    /// certificate made by the operator. They are read at every call,
    /// which is cheap at the operator's rate and picks up a rotated
    /// certificate or CA without a watcher. A pod whose call carries no
    /// [`PodTls`] (a cluster with `meshTls.mode: Disabled`) is dialed
    /// with them too, checked for the IP dialed.
    pub fn with_mesh_tls(self, files: MeshTlsFiles) -> Self {
        Self {
            tls: Some(Arc::new(files)),
            ..self
        }
    }

    async fn connect(
        address: &str,
        timeout: Duration,
        files: Option<&MeshTlsFiles>,
        tls: Option<PodTls>,
    ) -> Result<tonic::transport::Channel, PushError> {
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| PushError::Address {
                address: address.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(timeout)
            .timeout(timeout);
        let config = match (files, &tls) {
            (Some(files), _) => Some(mesh_client_config(files).await?),
            (None, Some(tls)) => Some(tls.config.clone()),
            (None, None) => None,
        };
        let connected = match config {
            Some(config) => {
                let mut connector = MeshConnector::fixed(config);
                if let Some(tls) = tls {
                    let name = ServerName::try_from(tls.server_name.clone()).map_err(|e| {
                        PushError::Tls(format!("server name {}: {e}", tls.server_name))
                    })?;
                    connector = connector.verifying_as(name);
                }
                endpoint.connect_with_connector(connector).await
            }
            None => endpoint.connect().await,
        };
        connected.map_err(|source| PushError::Connect {
            address: address.to_string(),
            source,
        })
    }
}

impl PodControl for GrpcPodControl {
    fn status(
        &self,
        address: String,
        pod_tls: Option<PodTls>,
    ) -> BoxFuture<'static, Result<PodReport, PushError>> {
        let (timeout, tls) = (self.timeout, self.tls.clone());
        Box::pin(async move {
            let channel = Self::connect(&address, timeout, tls.as_deref(), pod_tls).await?;
            let reply = VssClient::new(channel)
                .status(StatusRequest {})
                .await
                .map_err(|status| PushError::Refused {
                    address: address.clone(),
                    status,
                })?
                .into_inner();
            Ok(PodReport {
                config_generation: reply.config_generation,
                leader: reply.routing.map(|r| r.leader).unwrap_or_default(),
            })
        })
    }

    fn apply_config(
        &self,
        address: String,
        pod_tls: Option<PodTls>,
        config_yaml: String,
        generation: u64,
    ) -> BoxFuture<'static, Result<u64, PushError>> {
        let (timeout, tls) = (self.timeout, self.tls.clone());
        Box::pin(async move {
            let channel = Self::connect(&address, timeout, tls.as_deref(), pod_tls).await?;
            let reply = ControlClient::new(channel)
                .apply_config(ApplyConfigRequest {
                    config_yaml,
                    generation,
                })
                .await
                .map_err(|status| PushError::Refused {
                    address: address.clone(),
                    status,
                })?
                .into_inner();
            Ok(reply.generation)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio_stream::wrappers::TcpListenerStream;
    use tokio_util::sync::CancellationToken;
    use tonic::{Request, Response, Status};
    use vss_proto::v1::control_server::{Control, ControlServer};
    use vss_proto::v1::vss_server::{Vss, VssServer};
    use vss_proto::v1::*;

    use super::*;

    /// A runtime pod as far as the operator sees it: a config generation
    /// that never goes back, and a routing table naming a leader.
    #[derive(Default)]
    struct FakeRuntime {
        generation: Mutex<u64>,
        config: Mutex<String>,
    }

    /// Shared handle: the test reads what the server received.
    #[derive(Clone, Default)]
    struct Fake(Arc<FakeRuntime>);

    #[tonic::async_trait]
    impl Control for Fake {
        async fn apply_config(
            &self,
            request: Request<ApplyConfigRequest>,
        ) -> Result<Response<ApplyConfigReply>, Status> {
            let req = request.into_inner();
            let mut generation = self.0.generation.lock().expect("lock");
            if req.generation < *generation {
                return Err(Status::failed_precondition(format!(
                    "generation {} is older than {}",
                    req.generation, *generation
                )));
            }
            *generation = req.generation;
            *self.0.config.lock().expect("lock") = req.config_yaml;
            Ok(Response::new(ApplyConfigReply {
                generation: *generation,
            }))
        }
    }

    fn unimplemented<T>() -> Result<Response<T>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    #[tonic::async_trait]
    impl Vss for Fake {
        async fn acquire(
            &self,
            _: Request<AcquireRequest>,
        ) -> Result<Response<AcquireReply>, Status> {
            unimplemented()
        }
        async fn acquire_batch(
            &self,
            _: Request<AcquireBatchRequest>,
        ) -> Result<Response<AcquireBatchReply>, Status> {
            unimplemented()
        }
        async fn call(&self, _: Request<CallRequest>) -> Result<Response<CallReply>, Status> {
            unimplemented()
        }
        async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
            Ok(Response::new(StatusReply {
                instance: "vss-2".into(),
                config_generation: *self.0.generation.lock().expect("lock"),
                routing: Some(RoutingTable {
                    epoch: 4,
                    leader: "vss-1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }))
        }
        async fn publish(
            &self,
            _: Request<PublishRequest>,
        ) -> Result<Response<PublishReply>, Status> {
            unimplemented()
        }
        async fn register(
            &self,
            _: Request<MembershipRequest>,
        ) -> Result<Response<MembershipReply>, Status> {
            unimplemented()
        }
        async fn deregister(
            &self,
            _: Request<MembershipRequest>,
        ) -> Result<Response<MembershipReply>, Status> {
            unimplemented()
        }
        type EventsStream = tokio_stream::Empty<Result<Event, Status>>;
        async fn events(
            &self,
            _: Request<tonic::Streaming<ClientMessage>>,
        ) -> Result<Response<Self::EventsStream>, Status> {
            unimplemented()
        }
        type WatchRoutingStream = tokio_stream::Empty<Result<vss_proto::v1::RoutingUpdate, Status>>;
        async fn watch_routing(
            &self,
            _: Request<vss_proto::v1::WatchRoutingRequest>,
        ) -> Result<Response<Self::WatchRoutingStream>, Status> {
            unimplemented()
        }
        async fn increment(
            &self,
            _: Request<vss_proto::v1::CounterChange>,
        ) -> Result<Response<vss_proto::v1::CounterValue>, Status> {
            unimplemented()
        }
        async fn decrement(
            &self,
            _: Request<vss_proto::v1::CounterChange>,
        ) -> Result<Response<vss_proto::v1::CounterValue>, Status> {
            unimplemented()
        }
        async fn read_counter(
            &self,
            _: Request<vss_proto::v1::ReadCounterRequest>,
        ) -> Result<Response<vss_proto::v1::CounterValue>, Status> {
            unimplemented()
        }
        async fn set(
            &self,
            _: Request<vss_proto::v1::SetRequest>,
        ) -> Result<Response<vss_proto::v1::WriteReply>, Status> {
            unimplemented()
        }
        async fn get(
            &self,
            _: Request<vss_proto::v1::GetRequest>,
        ) -> Result<Response<vss_proto::v1::GetReply>, Status> {
            unimplemented()
        }
        async fn delete(
            &self,
            _: Request<vss_proto::v1::DeleteRequest>,
        ) -> Result<Response<vss_proto::v1::WriteReply>, Status> {
            unimplemented()
        }
        async fn list_keys(
            &self,
            _: Request<vss_proto::v1::ListKeysRequest>,
        ) -> Result<Response<vss_proto::v1::ListKeysReply>, Status> {
            unimplemented()
        }
        async fn announce(
            &self,
            _: Request<vss_proto::v1::AnnounceRequest>,
        ) -> Result<Response<vss_proto::v1::AnnounceReply>, Status> {
            unimplemented()
        }
        async fn withdraw(
            &self,
            _: Request<vss_proto::v1::WithdrawRequest>,
        ) -> Result<Response<vss_proto::v1::WithdrawReply>, Status> {
            unimplemented()
        }
        async fn list_services(
            &self,
            _: Request<vss_proto::v1::ListServicesRequest>,
        ) -> Result<Response<vss_proto::v1::ListServicesReply>, Status> {
            unimplemented()
        }
        type WatchServicesStream =
            tokio_stream::Empty<Result<vss_proto::v1::ServiceChange, Status>>;
        async fn watch_services(
            &self,
            _: Request<vss_proto::v1::ListServicesRequest>,
        ) -> Result<Response<Self::WatchServicesStream>, Status> {
            unimplemented()
        }
        type WatchTicksStream = tokio_stream::Empty<Result<vss_proto::v1::Tick, Status>>;
        async fn watch_ticks(
            &self,
            _: Request<vss_proto::v1::WatchTicksRequest>,
        ) -> Result<Response<Self::WatchTicksStream>, Status> {
            unimplemented()
        }
    }

    #[tokio::test]
    async fn reads_status_and_pushes_config_over_grpc() {
        let fake = Fake::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let stop = CancellationToken::new();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ControlServer::new(fake.clone()))
                .add_service(VssServer::new(fake.clone()))
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    stop.clone().cancelled_owned(),
                ),
        );
        let pods = GrpcPodControl::new(Duration::from_secs(5));

        let report = pods.status(address.clone(), None).await.expect("status");
        assert_eq!(
            report,
            PodReport {
                config_generation: 0,
                leader: "vss-1".into()
            }
        );
        let applied = pods
            .apply_config(address.clone(), None, "slots: []\n".into(), 7)
            .await
            .expect("applied");
        assert_eq!(applied, 7);
        assert_eq!(*fake.0.config.lock().expect("lock"), "slots: []\n");
        assert_eq!(
            pods.status(address.clone(), None)
                .await
                .expect("status")
                .config_generation,
            7
        );

        // A pod never goes back to an older generation.
        match pods
            .apply_config(address.clone(), None, "slots: []\n".into(), 6)
            .await
        {
            Err(PushError::Refused { status, .. }) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }

        stop.cancel();
        server.await.expect("joined").expect("server ran");
    }

    fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().expect("key");
        rcgen::CertifiedIssuer::self_signed(params, key).expect("CA")
    }

    /// (certificate, key) PEMs for 127.0.0.1 and pod `demo-0`'s DNS name,
    /// signed by `ca`.
    fn leaf(ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) -> (String, String) {
        let params = rcgen::CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "demo-0.demo-peers.testns.svc".to_string(),
        ])
        .expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, ca).expect("leaf");
        (cert.pem(), key.serialize_pem())
    }

    fn write_files(
        dir: &std::path::Path,
        name: &str,
        (cert, key): (String, String),
        ca: String,
    ) -> MeshTlsFiles {
        let files = MeshTlsFiles {
            cert: dir.join(format!("{name}-cert.pem")),
            key: dir.join(format!("{name}-key.pem")),
            ca: dir.join(format!("{name}-ca.pem")),
        };
        std::fs::write(&files.cert, cert).expect("write");
        std::fs::write(&files.key, key).expect("write");
        std::fs::write(&files.ca, ca).expect("write");
        files
    }

    #[tokio::test]
    async fn pushes_over_mtls_only_with_a_certificate_of_the_clusters_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster_ca = ca("cluster CA");
        let other_ca = ca("another CA");
        // The pod's server side: TLS 1.3, client certificates of the
        // cluster's CA required.
        let pod = write_files(dir.path(), "pod", leaf(&cluster_ca), cluster_ca.pem());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cluster_ca.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("verifier");
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                CertificateDer::pem_file_iter(&pod.cert)
                    .expect("cert")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("cert"),
                PrivateKeyDer::from_pem_file(&pod.key).expect("key"),
            )
            .expect("server config");
        server.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        // Handshakes one at a time (enough for a test); a refused one does
        // not end the stream.
        let incoming = futures_util::stream::unfold((listener, acceptor), |(l, a)| async move {
            loop {
                let (tcp, _) = l.accept().await.ok()?;
                if let Ok(tls) = a.accept(tcp).await {
                    return Some((Ok::<_, std::io::Error>(tls), (l, a)));
                }
            }
        });
        let fake = Fake::default();
        let stop = CancellationToken::new();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ControlServer::new(fake.clone()))
                .add_service(VssServer::new(fake.clone()))
                .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()),
        );

        let operator = write_files(dir.path(), "operator", leaf(&cluster_ca), cluster_ca.pem());
        let pods = GrpcPodControl::new(Duration::from_secs(2)).with_mesh_tls(operator);
        let applied = pods
            .apply_config(address.clone(), None, "slots: []\n".into(), 3)
            .await
            .expect("pushed over mTLS");
        assert_eq!(applied, 3);

        let plaintext = GrpcPodControl::new(Duration::from_secs(2));
        let refused = plaintext.status(address.clone(), None).await;
        assert!(refused.is_err(), "plaintext: {refused:?}");
        let stranger = write_files(dir.path(), "stranger", leaf(&other_ca), cluster_ca.pem());
        let stranger = GrpcPodControl::new(Duration::from_secs(2)).with_mesh_tls(stranger);
        let refused = stranger.status(address.clone(), None).await;
        assert!(refused.is_err(), "another CA: {refused:?}");
        // Trusting another CA, the operator refuses the pod.
        let wary = write_files(dir.path(), "wary", leaf(&cluster_ca), other_ca.pem());
        let wary = GrpcPodControl::new(Duration::from_secs(2)).with_mesh_tls(wary);
        let refused = wary.status(address.clone(), None).await;
        assert!(refused.is_err(), "server of an untrusted CA: {refused:?}");

        // Per call, as for a cluster whose certificates the operator made:
        // the pod is dialed at its IP and checked for the name given.
        let (cert, key) = leaf(&cluster_ca);
        let config = client_config(cert.as_bytes(), key.as_bytes(), cluster_ca.pem().as_bytes())
            .expect("client config");
        let per_call = GrpcPodControl::new(Duration::from_secs(2));
        let as_pod = |name: &str| {
            Some(PodTls {
                config: config.clone(),
                server_name: name.to_string(),
            })
        };
        per_call
            .status(address.clone(), as_pod("demo-0.demo-peers.testns.svc"))
            .await
            .expect("the pod's certificate names demo-0");
        let refused = per_call
            .status(address.clone(), as_pod("demo-1.demo-peers.testns.svc"))
            .await;
        assert!(
            refused.is_err(),
            "demo-1 expected, though the IP dialed is in the certificate: {refused:?}"
        );

        stop.cancel();
        server.await.expect("joined").expect("server ran");
    }

    #[tokio::test]
    async fn an_unreachable_pod_is_a_connect_error() {
        // Bind then drop: the port is free and nothing listens on it.
        let address = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").to_string()
        };
        let pods = GrpcPodControl::new(Duration::from_secs(2));
        match pods.status(address.clone(), None).await {
            Err(PushError::Connect { address: a, .. }) => assert_eq!(a, address),
            other => panic!("expected a connect error, got {other:?}"),
        }
    }
}
