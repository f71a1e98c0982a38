//! One runtime instance: binds its ports, wires the core to the edge and
//! the operations side, and serves until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use vss_config::ValidConfig;
use vss_proto::v1::control_server::ControlServer;
use vss_proto::v1::mesh_server::MeshServer;
use vss_proto::v1::vss_server::VssServer;
use vss_slot_host::{HostLimits, SlotEngine};

use crate::core::access::{Access, AccessError};
use crate::core::cluster::{
    Cluster, ClusterError, Election, Members, MembersError, MeshElection, WatchElection,
};
use crate::core::executor::QueueLimits;
use crate::core::hub::{Hub, HubLimits};
use crate::core::signals::Signals;
use crate::core::slot_table::{ReloadError, SlotTable};
use crate::edge::admission::{Admit, AdmitLayer, ClientPort, MeshPort};
use crate::edge::connections::{ClientLimits, ConnectionGate};
use crate::edge::events::WithEvents;
use crate::edge::mesh_service::{Audited, ControlService, MeshService};
use crate::edge::tls::{ClientTlsFiles, PortTls, TlsError, TlsFiles};
use crate::edge::{http, rls, tls, vss_service};
use crate::ops::chaos;
use crate::ops::chaos::ChaosOptions;
use crate::ops::metrics::Metrics;

pub use vss_slot_host::HostLimits as WasmLimits;

/// How often every slot's `tick` export is called.
pub const TICK_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the config file is checked for changes.
pub const CONFIG_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Where and how an instance runs.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// This instance's id (shown in status).
    pub instance_id: String,
    /// gRPC address for clients (`vss.v1.Vss`, Envoy's rate limit
    /// service, reflection).
    pub listen: SocketAddr,
    /// gRPC address for peers and the operator (`vss.v1.Mesh`,
    /// `vss.v1.Control`, and `vss.v1.Vss` for forwarded requests). None: no
    /// such port, which only an instance without peers can do without.
    pub mesh_listen: Option<SocketAddr>,
    /// HTTP address for probes and metrics; None disables the port.
    pub http_listen: Option<SocketAddr>,
    /// Per-call deadline and memory cap of slot modules.
    pub wasm_limits: HostLimits,
    /// Depth, batch size and longest wait of every slot's queue.
    pub queue_limits: QueueLimits,
    /// Most clients, per-client queues and failure tolerance of event
    /// streams.
    pub hub_limits: HubLimits,
    /// Every instance of the cluster; None runs a cluster of one.
    pub members: Option<Members>,
    /// Leadership decided elsewhere (a Kubernetes Lease campaign); None
    /// elects over the mesh.
    pub lease: Option<watch::Receiver<bool>>,
    /// A config file to watch: a change is applied without restart under
    /// the next generation.
    pub watch_config: Option<PathBuf>,
    /// Folder that relative custom module paths are resolved against, in
    /// the watched config file and in configs pushed through the control API
    /// alike (in a pod: where the module ConfigMaps are mounted). None: the
    /// watched file's folder, and the working directory for pushed configs.
    pub module_root: Option<PathBuf>,
    /// Faults to inject into this instance (off by default).
    pub chaos: ChaosOptions,
    /// Certificate, key and CA for mTLS on the mesh port, reloaded when
    /// they change. None: the mesh port is plaintext.
    pub mesh_tls: Option<TlsFiles>,
    /// Certificate, key and optional client CA for TLS on the client port,
    /// reloaded when they change. None: the client port is plaintext.
    pub client_tls: Option<ClientTlsFiles>,
    /// Token file: every client call must carry one of its tokens, which
    /// grants permissions on slots ([`access`]). None: no tokens asked.
    pub client_tokens: Option<PathBuf>,
    /// Most concurrent streams (calls in flight) one client connection may
    /// open on the client port.
    pub client_max_streams: u32,
    /// Connections the client port holds, and calls per second each may
    /// start.
    pub client_limits: ClientLimits,
}

/// Default of [`RuntimeOptions::client_max_streams`]: well above what one
/// client needs (vss-client batches its acquires), and low enough that one
/// connection cannot queue the slots' whole capacity by itself.
pub const DEFAULT_CLIENT_MAX_STREAMS: u32 = 1024;

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            instance_id: "vss-0".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            mesh_listen: None,
            http_listen: None,
            wasm_limits: HostLimits::default(),
            queue_limits: QueueLimits::default(),
            hub_limits: HubLimits::default(),
            members: None,
            lease: None,
            watch_config: None,
            module_root: None,
            chaos: ChaosOptions::default(),
            mesh_tls: None,
            client_tls: None,
            client_tokens: None,
            client_max_streams: DEFAULT_CLIENT_MAX_STREAMS,
            client_limits: ClientLimits::default(),
        }
    }
}

/// Why the runtime could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "instance {instance} has peers but no mesh port: give it --mesh-listen (peers and the operator call it there)"
    )]
    NoMeshPort { instance: String },
    #[error("mesh TLS: {0}")]
    MeshTls(TlsError),
    #[error("client TLS: {0}")]
    ClientTls(TlsError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("cannot start the Wasm engine: {0}")]
    Engine(String),
    #[error(transparent)]
    Slots(#[from] ReloadError),
    #[error(transparent)]
    Members(#[from] MembersError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A bound, loaded runtime instance, ready to serve.
#[derive(Debug)]
pub struct Runtime {
    options: RuntimeOptions,
    grpc: TcpListener,
    mesh: Option<TcpListener>,
    http: Option<TcpListener>,
    slots: Arc<SlotTable>,
    signals: Arc<Signals>,
    cluster: Arc<Cluster>,
    metrics: Metrics,
    mesh_tls: Option<Arc<PortTls>>,
    client_tls: Option<Arc<PortTls>>,
    access: Option<Arc<Access>>,
    /// Cancelled when serving stops; ends every event stream.
    stop: CancellationToken,
    // Keeps the epoch ticker alive as long as the runtime.
    _engine: SlotEngine,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, RuntimeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RuntimeError::Bind { addr, source })
}

impl Runtime {
    /// Binds the ports and loads every slot of `config`.
    pub async fn bind(options: RuntimeOptions, config: &ValidConfig) -> Result<Self, RuntimeError> {
        if options.mesh_listen.is_none() && options.members.as_ref().is_some_and(|m| m.len() > 1) {
            return Err(RuntimeError::NoMeshPort {
                instance: options.instance_id.clone(),
            });
        }
        let engine = SlotEngine::new(options.wasm_limits)
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let metrics = Metrics::new();
        let mesh_tls = match &options.mesh_tls {
            Some(files) => Some(Arc::new(
                PortTls::mesh(files.clone(), metrics.mesh_tls.clone())
                    .await
                    .map_err(RuntimeError::MeshTls)?,
            )),
            None => None,
        };
        let client_tls = match &options.client_tls {
            Some(files) => Some(Arc::new(
                PortTls::client(files.clone(), metrics.client_tls.clone())
                    .await
                    .map_err(RuntimeError::ClientTls)?,
            )),
            None => None,
        };
        let access = match &options.client_tokens {
            Some(path) => Some(Arc::new(
                Access::load(path.clone(), metrics.access.clone()).await?,
            )),
            None => None,
        };
        let slots = {
            let (engine, config, metrics) = (engine.clone(), config.clone(), metrics.clone());
            let queue = options.queue_limits;
            let instance = options.instance_id.clone();
            // Compiling modules is CPU-bound work; keep it off the reactor.
            tokio::task::spawn_blocking(move || {
                SlotTable::load(&engine, &config, queue, metrics, &instance)
            })
            .await??
        };
        let grpc = bind(options.listen).await?;
        let mesh = match options.mesh_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let http = match options.http_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let slots = Arc::new(slots);
        let stop = CancellationToken::new();
        let hub = Arc::new(Hub::new(
            options.hub_limits,
            stop.child_token(),
            metrics.connected_clients.clone(),
        ));
        let members = match &options.members {
            Some(m) => m.clone(),
            None => Members::alone(&options.instance_id)?,
        };
        let election: Box<dyn Election> = match &options.lease {
            Some(holds) => Box::new(WatchElection::new(holds.clone())),
            None => Box::new(MeshElection::default()),
        };
        let cluster = Arc::new(Cluster::new(
            members,
            election,
            slots.clone(),
            metrics.clone(),
            mesh_tls.as_ref().and_then(|tls| tls.connector()),
        )?);
        let signals = Arc::new(Signals::new(
            slots.clone(),
            hub,
            cluster.clone(),
            metrics.clone(),
        ));
        Ok(Self {
            options,
            grpc,
            mesh,
            http,
            slots,
            signals,
            cluster,
            metrics,
            mesh_tls,
            client_tls,
            access,
            stop,
            _engine: engine,
        })
    }

    /// The bound gRPC address (the real port when bound to port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.options.listen)
    }

    /// The bound mesh address, if the port is enabled.
    pub fn mesh_addr(&self) -> Option<SocketAddr> {
        self.mesh.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound HTTP address, if the port is enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then drains and returns.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RuntimeError> {
        let stop = self.stop.clone();
        let streams = TaskTracker::new();
        let ready = Arc::new(AtomicBool::new(false));
        // v1 and v1alpha both: grpcurl before 1.9 (the one PyPI ships),
        // Postman and Evans only ask for v1alpha.
        let described = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(vss_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(vss_proto::ENVOY_RLS_FILE_DESCRIPTOR_SET)
        };
        let reflection = described()
            .build_v1()
            .map_err(|e| RuntimeError::Reflection(e.to_string()))?;
        let reflection_v1alpha = described()
            .build_v1alpha()
            .map_err(|e| RuntimeError::Reflection(e.to_string()))?;
        let service = vss_service::VssService::new(
            self.slots.clone(),
            self.signals.clone(),
            self.cluster.clone(),
            self.metrics.clone(),
            streams.clone(),
            stop.clone(),
        );
        let rate_limiter =
            rls::RateLimiter::new(service.clone(), self.slots.clone(), self.metrics.clone());
        let mesh = MeshService::new(self.cluster.clone(), self.signals.clone());
        let control = ControlService::new(
            self.cluster.clone(),
            self.options
                .module_root
                .clone()
                .unwrap_or_else(|| PathBuf::from(".")),
        );
        let grpc_addr = self.grpc_addr();
        let mesh_addr = self.mesh_addr();
        let http_addr = self.http_addr();
        let chaos = self.options.chaos;
        if !chaos.is_off() {
            tracing::warn!(?chaos, "fault injection is on");
        }

        let mut tasks: JoinSet<Result<(), RuntimeError>> = JoinSet::new();
        // Two planes: clients on one port, peers and the operator on the
        // other, so a client cannot reach the mesh or the control API, nor
        // pass for a peer forwarding a request.
        // The RLS endpoint checks tokens itself, then calls the slots
        // through the service as the instance.
        let limits = self.options.client_limits;
        let gate = ConnectionGate::new(limits, self.metrics.connections.clone());
        let client_router = Server::builder()
            .max_concurrent_streams(self.options.client_max_streams)
            .layer(AdmitLayer::new(ClientPort::new(
                limits,
                &self.metrics.connections,
                chaos,
            )))
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .add_service(WithEvents::new(
                VssServer::new(service.with_access(self.access.clone())),
                self.signals.hub().clone(),
                streams.clone(),
                self.access.clone(),
            ))
            .add_service(RateLimitServiceServer::new(
                rate_limiter.with_access(self.access.clone()),
            ));
        let client_shutdown = stop.clone().cancelled_owned();
        match &self.client_tls {
            Some(tls) => {
                let incoming = gate.limit(tls::accept::incoming(self.grpc, tls.clone()));
                let server = client_router.serve_with_incoming_shutdown(incoming, client_shutdown);
                tasks.spawn(async move { server.await.map_err(RuntimeError::from) });
                let (tls, watch_stop) = (tls.clone(), stop.clone());
                tasks.spawn(async move {
                    tls.watch(watch_stop).await;
                    Ok(())
                });
            }
            None => {
                let incoming = gate.limit(TcpIncoming::from(self.grpc).with_nodelay(Some(true)));
                let server = client_router.serve_with_incoming_shutdown(incoming, client_shutdown);
                tasks.spawn(async move { server.await.map_err(RuntimeError::from) });
            }
        }
        if let Some(access) = &self.access {
            let (access, watch_stop) = (access.clone(), stop.clone());
            tasks.spawn(async move {
                access.watch(watch_stop).await;
                Ok(())
            });
        }
        if let Some(listener) = self.mesh {
            let router = Server::builder()
                .add_service(Audited::new(
                    Admit::new(MeshServer::new(mesh), MeshPort(chaos)),
                    self.metrics.clone(),
                ))
                .add_service(ControlServer::new(control))
                .add_service(VssServer::new(service.for_peers()));
            let shutdown = stop.clone().cancelled_owned();
            match &self.mesh_tls {
                Some(tls) => {
                    let incoming = tls::accept::incoming(listener, tls.clone());
                    let mesh_server = router.serve_with_incoming_shutdown(incoming, shutdown);
                    tasks.spawn(async move { mesh_server.await.map_err(RuntimeError::from) });
                    let (tls, watch_stop) = (tls.clone(), stop.clone());
                    tasks.spawn(async move {
                        tls.watch(watch_stop).await;
                        Ok(())
                    });
                }
                None => {
                    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                    let mesh_server = router.serve_with_incoming_shutdown(incoming, shutdown);
                    tasks.spawn(async move { mesh_server.await.map_err(RuntimeError::from) });
                }
            }
        }
        if let Some(listener) = self.http {
            let app = http::router(self.metrics.clone(), ready.clone());
            let server =
                axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
            tasks.spawn(async move { server.await.map_err(RuntimeError::Http) });
        }
        let signals = self.signals.clone();
        let ticker_stop = stop.clone();
        tasks.spawn(async move {
            let mut every = tokio::time::interval(TICK_PERIOD);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    () = ticker_stop.cancelled() => return Ok(()),
                    _ = every.tick() => {}
                }
                // One round at a time: a round still delivering delays the next.
                tokio::select! {
                    () = ticker_stop.cancelled() => return Ok(()),
                    () = signals.tick() => {}
                }
            }
        });
        let cluster = self.cluster.clone();
        let cluster_stop = stop.clone();
        tasks.spawn(async move {
            cluster.run(cluster_stop).await;
            Ok(())
        });
        if let Some(path) = self.options.watch_config.clone() {
            let (slots, watch_stop) = (self.slots.clone(), stop.clone());
            let root = self.options.module_root.clone();
            tasks.spawn(async move {
                watch_config(path, root, slots, watch_stop).await;
                Ok(())
            });
        }
        if let Some(after) = chaos.next_restart() {
            let restart_stop = stop.clone();
            tasks.spawn(async move {
                tokio::select! {
                    () = restart_stop.cancelled() => {}
                    () = tokio::time::sleep(after) => {
                        tracing::warn!(after = ?after, "chaos: restarting (exit {})", chaos::RESTART_EXIT_CODE);
                        std::process::exit(chaos::RESTART_EXIT_CODE);
                    }
                }
                Ok(())
            });
        }
        ready.store(true, Ordering::Relaxed);
        tracing::info!(
            instance = %self.cluster.me(),
            grpc = %grpc_addr,
            mesh = ?mesh_addr,
            mesh_tls = self.mesh_tls.is_some(),
            client_tls = self.client_tls.is_some(),
            client_tokens = self.access.is_some(),
            http = ?http_addr,
            "serving"
        );

        let early = tokio::select! {
            () = shutdown => None,
            done = tasks.join_next() => done,
        };
        ready.store(false, Ordering::Relaxed);
        stop.cancel();
        tracing::info!("draining");
        let mut result = match early {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(RuntimeError::Task(e)),
        };
        while let Some(done) = tasks.join_next().await {
            let outcome = done.map_err(RuntimeError::Task).and_then(|r| r);
            if let (Ok(()), Err(e)) = (&result, outcome) {
                result = Err(e);
            }
        }
        streams.close();
        streams.wait().await;
        tracing::info!("stopped");
        result
    }
}

/// Applies changes of the config file while serving. A file that fails to
/// parse or validate is reported and the configuration in force stays.
async fn watch_config(
    path: PathBuf,
    module_root: Option<PathBuf>,
    slots: Arc<SlotTable>,
    stop: CancellationToken,
) {
    let mut last = tokio::fs::read(&path).await.ok();
    let mut every = tokio::time::interval(CONFIG_POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let Ok(now) = tokio::fs::read(&path).await else {
            continue;
        };
        if last.as_ref() == Some(&now) {
            continue;
        }
        last = Some(now);
        let loaded = match &module_root {
            Some(root) => vss_config::load_file_with_base(&path, root),
            None => vss_config::load_file(&path),
        };
        let config = match loaded {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "config file changed but is invalid; keeping the configuration in force");
                continue;
            }
        };
        let slots = slots.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let next = slots.generation() + 1;
            slots.reload(&config, next)
        })
        .await;
        match applied {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(path = %path.display(), error = %e, "config file change not applied")
            }
            Err(e) => tracing::error!(error = %e, "config reload task failed"),
        }
    }
}
