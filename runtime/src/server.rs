//! One runtime instance: binds its ports, wires the core to the edge and
//! the operations side, and serves until told to stop.
//!
//! [`Runtime::bind`] builds the [`Node`] (slots, hub, cluster over gRPC
//! links) and binds the ports; [`Runtime::serve`] starts each part as a
//! task of its own (the `spawn_*` functions below), and on shutdown turns
//! not-ready, stops accepting, drains in-flight requests and streams, and
//! returns.

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
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_reflection::server::v1::ServerReflectionServer;
use vss_config::ValidConfig;
use vss_proto::v1::control_server::ControlServer;
use vss_proto::v1::mesh_server::MeshServer;
use vss_proto::v1::vss_server::VssServer;
use vss_slot_host::{HostLimits, SlotEngine};

use crate::core::access::{Access, AccessError};
use crate::core::cluster::{
    Cluster, ClusterError, Election, Members, MembersError, MeshElection, PeerLink, WatchElection,
};
use crate::core::executor::QueueLimits;
use crate::core::hub::{Hub, HubLimits};
use crate::core::node::Node;
use crate::core::slot_table::{ReloadError, SlotTable};
use crate::edge::admission::{self, Admit, AdmitLayer, MeshPort};
use crate::edge::connections::{ClientLimits, ConnectionGate};
use crate::edge::control_service::ControlService;
use crate::edge::events::WithEvents;
use crate::edge::grpc_link::GrpcLink;
use crate::edge::mesh_service::{Audited, MeshService};
use crate::edge::rls::RateLimiter;
use crate::edge::tls::{ClientTlsFiles, PortTls, TlsError, TlsFiles};
use crate::edge::vss_service::VssService;
use crate::edge::{http, tls};
use crate::ops::chaos::{self, ChaosOptions};
use crate::ops::metrics::Metrics;
use crate::ops::reload;

pub use vss_slot_host::HostLimits as WasmLimits;

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
    /// On shutdown, how long the instance may take to hand the slots it
    /// owns over ([`crate::core::node::Node::hand_over`]) before it drains.
    pub handover: std::time::Duration,
}

/// Default of [`RuntimeOptions::handover`].
pub const DEFAULT_HANDOVER: std::time::Duration = std::time::Duration::from_secs(5);

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
            handover: DEFAULT_HANDOVER,
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
    node: Arc<Node>,
    election: Box<dyn Election>,
    metrics: Metrics,
    mesh_tls: Option<Arc<PortTls>>,
    client_tls: Option<Arc<PortTls>>,
    access: Option<Arc<Access>>,
    /// Cancelled when serving stops; ends every event stream.
    stop: CancellationToken,
    // Keeps the epoch ticker alive as long as the runtime.
    _engine: SlotEngine,
}

/// The tasks `serve` owns; each ends when the runtime stops.
type Tasks = JoinSet<Result<(), RuntimeError>>;

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
        let connector = mesh_tls.as_ref().and_then(|tls| tls.connector());
        let dial = |id: &str, addr: &str| -> Result<Arc<dyn PeerLink>, String> {
            // A pod dialed at an address its certificate cannot name (a
            // `--peers` IP) is checked for its pod DNS name instead.
            let tls = connector.as_ref().map(|c| {
                match members
                    .tls_name(id)
                    .and_then(|n| rustls::pki_types::ServerName::try_from(n).ok())
                {
                    Some(name) => c.clone().verifying_as(name),
                    None => c.clone(),
                }
            });
            let link = GrpcLink::dial(members.me(), addr, tls).map_err(|e| e.to_string())?;
            Ok(link)
        };
        let cluster = Arc::new(Cluster::new(
            members.clone(),
            slots.clone(),
            metrics.clone(),
            dial,
        )?);
        let node = Arc::new(Node::new(
            slots,
            cluster,
            hub,
            metrics.clone(),
            stop.clone(),
        ));
        Ok(Self {
            options,
            grpc,
            mesh,
            http,
            node,
            election,
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

    /// How long a shutdown may spend handing slots over.
    pub fn handover_timeout(&self) -> std::time::Duration {
        self.options.handover
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
        let (grpc_addr, mesh_addr, http_addr) =
            (self.grpc_addr(), self.mesh_addr(), self.http_addr());
        let Runtime {
            options,
            grpc,
            mesh,
            http,
            node,
            election,
            metrics,
            mesh_tls,
            client_tls,
            access,
            stop,
            _engine,
        } = self;
        if !options.chaos.is_off() {
            tracing::warn!(chaos = ?options.chaos, "fault injection is on");
        }
        let ready = Arc::new(AtomicBool::new(false));
        let service = VssService::new(node.clone());
        let mut tasks = Tasks::new();
        let client_port = ClientPort {
            listener: grpc,
            tls: client_tls.clone(),
            access: access.clone(),
        };
        client_port.spawn(&mut tasks, &node, &service, &options, &stop)?;
        if let Some(listener) = mesh {
            spawn_mesh_port(
                &mut tasks,
                listener,
                &node,
                &service,
                &options,
                mesh_tls.as_ref(),
                &stop,
            );
        }
        if let Some(listener) = http {
            spawn_http(&mut tasks, listener, &metrics, &ready, &stop);
        }
        for tls in [&mesh_tls, &client_tls].into_iter().flatten() {
            spawn_watch(&mut tasks, tls.clone().watch(stop.clone()));
        }
        if let Some(access) = &access {
            spawn_watch(&mut tasks, access.clone().watch(stop.clone()));
        }
        spawn_node(&mut tasks, &node, election, &stop);
        if let Some(path) = options.watch_config.clone() {
            let root = options.module_root.clone();
            spawn_watch(
                &mut tasks,
                watch_config(path, root, node.clone(), stop.clone()),
            );
        }
        if let Some(after) = options.chaos.next_restart() {
            spawn_chaos_restart(&mut tasks, after, &stop);
        }
        ready.store(true, Ordering::Relaxed);
        tracing::info!(
            instance = %node.me(),
            grpc = %grpc_addr,
            mesh = ?mesh_addr,
            mesh_tls = mesh_tls.is_some(),
            client_tls = client_tls.is_some(),
            client_tokens = access.is_some(),
            http = ?http_addr,
            "serving"
        );
        let early = tokio::select! {
            () = shutdown => None,
            done = tasks.join_next() => done,
        };
        ready.store(false, Ordering::Relaxed);
        if early.is_none() {
            // A planned stop: nothing it owns is lost.
            node.hand_over(options.handover).await;
        }
        drain(early, tasks, &node, &stop).await
    }
}

/// Stops every task (the first one that ended may have failed), then waits
/// for the open streams to end.
async fn drain(
    early: Option<Result<Result<(), RuntimeError>, tokio::task::JoinError>>,
    mut tasks: Tasks,
    node: &Node,
    stop: &CancellationToken,
) -> Result<(), RuntimeError> {
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
    node.streams().close();
    node.streams().wait().await;
    tracing::info!("stopped");
    result
}

/// The services the client port serves, which its reflection lists: the
/// client API, Envoy's rate limit service and reflection itself (both
/// versions). `vss.v1.Mesh` and `vss.v1.Control` are served on the mesh
/// port only, so they are not listed, though their file stays readable:
/// `vss.proto` imports messages of `cluster.proto`, which defines them.
const CLIENT_PORT_SERVICES: [&str; 4] = [
    vss_proto::v1::vss_server::SERVICE_NAME,
    envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::SERVICE_NAME,
    tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
    tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
];

/// gRPC server reflection, v1 and v1alpha both: grpcurl before 1.9 (the
/// one PyPI ships), Postman and Evans only ask for v1alpha. Each lists
/// [`CLIENT_PORT_SERVICES`] and describes them.
fn reflection() -> Result<
    (
        ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    RuntimeError,
> {
    let described = || {
        CLIENT_PORT_SERVICES.into_iter().fold(
            tonic_reflection::server::Builder::configure()
                // Both versions are registered below, so each lists both.
                .include_reflection_service(false)
                .register_encoded_file_descriptor_set(vss_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(vss_proto::ENVOY_RLS_FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                ),
            |builder, service| builder.with_service_name(service),
        )
    };
    let v1 = described()
        .build_v1()
        .map_err(|e| RuntimeError::Reflection(e.to_string()))?;
    let v1alpha = described()
        .build_v1alpha()
        .map_err(|e| RuntimeError::Reflection(e.to_string()))?;
    Ok((v1, v1alpha))
}

/// The client port and what its services check.
struct ClientPort {
    listener: TcpListener,
    tls: Option<Arc<PortTls>>,
    access: Option<Arc<Access>>,
}

impl ClientPort {
    /// Serves `vss.v1.Vss` (event streams beside it), Envoy's rate limit
    /// service and reflection, behind the connection gate and the client
    /// port's admission. Peers and the operator use the other port, so a
    /// client can reach neither the mesh nor the control API, nor pass for
    /// a peer forwarding a request.
    fn spawn(
        self,
        tasks: &mut Tasks,
        node: &Arc<Node>,
        service: &VssService,
        options: &RuntimeOptions,
        stop: &CancellationToken,
    ) -> Result<(), RuntimeError> {
        let (reflection, reflection_v1alpha) = reflection()?;
        let limits = options.client_limits;
        let metrics = node.metrics();
        let gate = ConnectionGate::new(limits, metrics.connections.clone());
        // The RLS endpoint checks tokens itself, then calls the slots
        // through the node.
        let rate_limiter =
            RateLimiter::new(node.clone(), metrics.clone()).with_access(self.access.clone());
        let router = Server::builder()
            .max_concurrent_streams(options.client_max_streams)
            .layer(AdmitLayer::new(admission::ClientPort::new(
                limits,
                &metrics.connections,
                options.chaos,
            )))
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .add_service(WithEvents::new(
                VssServer::new(service.with_access(self.access.clone())),
                node.hub().clone(),
                node.streams().clone(),
                self.access,
            ))
            .add_service(RateLimitServiceServer::new(rate_limiter));
        let shutdown = stop.clone().cancelled_owned();
        match &self.tls {
            Some(tls) => {
                let incoming = gate.limit(tls::accept::incoming(self.listener, tls.clone()));
                let server = router.serve_with_incoming_shutdown(incoming, shutdown);
                tasks.spawn(async move { server.await.map_err(RuntimeError::from) });
            }
            None => {
                let incoming =
                    gate.limit(TcpIncoming::from(self.listener).with_nodelay(Some(true)));
                let server = router.serve_with_incoming_shutdown(incoming, shutdown);
                tasks.spawn(async move { server.await.map_err(RuntimeError::from) });
            }
        }
        Ok(())
    }
}

/// The mesh port: `vss.v1.Mesh` for peers (audited, with the mesh's
/// faults), `vss.v1.Control` for the operator, and `vss.v1.Vss` for the
/// requests peers forward.
fn spawn_mesh_port(
    tasks: &mut Tasks,
    listener: TcpListener,
    node: &Arc<Node>,
    service: &VssService,
    options: &RuntimeOptions,
    mesh_tls: Option<&Arc<PortTls>>,
    stop: &CancellationToken,
) {
    let module_root = options
        .module_root
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let router = Server::builder()
        .add_service(Audited::new(
            Admit::new(
                MeshServer::new(MeshService::new(node.clone())),
                MeshPort(options.chaos),
            ),
            node.metrics().clone(),
        ))
        .add_service(ControlServer::new(ControlService::new(
            node.clone(),
            module_root,
        )))
        .add_service(VssServer::new(service.for_peers()));
    let shutdown = stop.clone().cancelled_owned();
    match mesh_tls {
        Some(tls) => {
            let incoming = tls::accept::incoming(listener, tls.clone());
            let server = router.serve_with_incoming_shutdown(incoming, shutdown);
            tasks.spawn(async move { server.await.map_err(RuntimeError::from) });
        }
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            let server = router.serve_with_incoming_shutdown(incoming, shutdown);
            tasks.spawn(async move { server.await.map_err(RuntimeError::from) });
        }
    }
}

/// The HTTP side port: probes and `/metrics`.
fn spawn_http(
    tasks: &mut Tasks,
    listener: TcpListener,
    metrics: &Metrics,
    ready: &Arc<AtomicBool>,
    stop: &CancellationToken,
) {
    let app = http::router(metrics.clone(), ready.clone());
    let server = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
    tasks.spawn(async move { server.await.map_err(RuntimeError::Http) });
}

/// The node's own loops: the cluster (heartbeats, decisions, replication)
/// and the slots' ticks.
fn spawn_node(
    tasks: &mut Tasks,
    node: &Arc<Node>,
    election: Box<dyn Election>,
    stop: &CancellationToken,
) {
    let running = node.clone().run(election, stop.clone());
    tasks.spawn(async move {
        running.await;
        Ok(())
    });
}

/// A watcher of files reloaded at run time; it ends with the runtime.
fn spawn_watch(tasks: &mut Tasks, watching: impl Future<Output = ()> + Send + 'static) {
    tasks.spawn(async move {
        watching.await;
        Ok(())
    });
}

/// Exits with [`chaos::RESTART_EXIT_CODE`] after `after`, for the
/// supervisor to start the instance again.
fn spawn_chaos_restart(tasks: &mut Tasks, after: std::time::Duration, stop: &CancellationToken) {
    let stop = stop.clone();
    tasks.spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(after) => {
                tracing::warn!(after = ?after, "chaos: restarting (exit {})", chaos::RESTART_EXIT_CODE);
                std::process::exit(chaos::RESTART_EXIT_CODE);
            }
        }
        Ok(())
    });
}

/// Applies changes of the config file while serving, each under the next
/// generation. A file that fails to parse or validate is reported and the
/// configuration in force stays.
async fn watch_config(
    path: PathBuf,
    module_root: Option<PathBuf>,
    node: Arc<Node>,
    stop: CancellationToken,
) {
    let last = std::sync::Mutex::new(tokio::fs::read(&path).await.ok());
    let apply = || async {
        // An unreadable file (being replaced) is looked at again next time.
        let Ok(now) = tokio::fs::read(&path).await else {
            return Ok(false);
        };
        {
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            if last.as_ref() == Some(&now) {
                return Ok(false);
            }
            *last = Some(now);
        }
        let loaded = match &module_root {
            Some(root) => vss_config::load_file_with_base(&path, root),
            None => vss_config::load_file(&path),
        };
        let config = loaded.map_err(|e| e.to_string())?;
        let next = node.slots().generation() + 1;
        node.apply_config(config, next)
            .await
            .map(|_| true)
            .map_err(|e| e.to_string())
    };
    reload::watch(
        CONFIG_POLL,
        stop,
        apply,
        || {},
        |e: &String| {
            tracing::error!(path = %path.display(), error = %e, "config file changed but was not applied; keeping the configuration in force");
        },
    )
    .await;
}
