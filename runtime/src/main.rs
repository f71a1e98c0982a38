//! `vss-runtime`: one VSS instance.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use vss_runtime::ChaosOptions;
use vss_runtime::ClientLimits;
use vss_runtime::QueueLimits;
use vss_runtime::telemetry::{self, LogFormat};
use vss_runtime::{ClientTlsFiles, TlsFiles};
use vss_runtime::{DEFAULT_MAX_CLIENTS, HubLimits};
use vss_runtime::{Members, MembersError};
use vss_runtime::{Runtime, RuntimeOptions, WasmLimits, report};

#[derive(Debug, Parser)]
#[command(
    name = "vss-runtime",
    version,
    about = "Runs one VSS instance: 100 slots over gRPC"
)]
struct Args {
    /// Slot configuration file (YAML).
    #[arg(long, env = "VSS_CONFIG")]
    config: PathBuf,
    /// gRPC address for clients.
    #[arg(long, env = "VSS_LISTEN", default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// gRPC address for peers and the operator: the mesh, the control API
    /// and requests forwarded by peers. Keep it off the clients' network.
    #[arg(long, env = "VSS_MESH_LISTEN", default_value = "127.0.0.1:7702")]
    mesh_listen: SocketAddr,
    /// mTLS on the mesh port: this instance's certificate (PEM, leaf
    /// first), presented to the peers and the operator that call it and to
    /// the peers it calls. It needs the SAN its peers dial it at (the host
    /// in --peers: a DNS name, or an IP SAN for an address). With
    /// --mesh-tls-key and --mesh-tls-ca; the three are reloaded when they
    /// change.
    #[arg(long, env = "VSS_MESH_TLS_CERT", value_name = "FILE",
        requires_all = ["mesh_tls_key", "mesh_tls_ca"])]
    mesh_tls_cert: Option<PathBuf>,
    /// mTLS on the mesh port: the private key of --mesh-tls-cert (PEM).
    #[arg(long, env = "VSS_MESH_TLS_KEY", value_name = "FILE",
        requires_all = ["mesh_tls_cert", "mesh_tls_ca"])]
    mesh_tls_key: Option<PathBuf>,
    /// mTLS on the mesh port: the CA certificates (PEM) a peer's or the
    /// operator's certificate must be signed by; this instance checks its
    /// peers' server certificates against them too.
    #[arg(long, env = "VSS_MESH_TLS_CA", value_name = "FILE",
        requires_all = ["mesh_tls_cert", "mesh_tls_key"])]
    mesh_tls_ca: Option<PathBuf>,
    /// TLS on the client port: its certificate (PEM, leaf first), with
    /// --client-tls-key. Reloaded when it changes.
    #[arg(
        long,
        env = "VSS_CLIENT_TLS_CERT",
        value_name = "FILE",
        requires = "client_tls_key"
    )]
    client_tls_cert: Option<PathBuf>,
    /// TLS on the client port: the private key of --client-tls-cert (PEM).
    #[arg(
        long,
        env = "VSS_CLIENT_TLS_KEY",
        value_name = "FILE",
        requires = "client_tls_cert"
    )]
    client_tls_key: Option<PathBuf>,
    /// TLS on the client port: require client certificates signed by
    /// these CAs (PEM). Needs --client-tls-cert and --client-tls-key.
    #[arg(long, env = "VSS_CLIENT_TLS_CA", value_name = "FILE",
        requires_all = ["client_tls_cert", "client_tls_key"])]
    client_tls_ca: Option<PathBuf>,
    /// Client tokens (YAML): every call on the client port must carry
    /// `authorization: Bearer <token>` of a token the file grants the
    /// call's permission (acquire, publish, subscribe, admin) on the slot.
    /// Reloaded when it changes. See docs/security.md.
    #[arg(long, env = "VSS_CLIENT_TOKENS", value_name = "FILE")]
    client_tokens: Option<PathBuf>,
    /// Most calls in flight on one client connection (HTTP/2 streams);
    /// more wait for the client's own flow control.
    #[arg(long, default_value_t = vss_runtime::DEFAULT_CLIENT_MAX_STREAMS,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    client_max_streams: u32,
    /// Most client connections the client port holds at once; one more is
    /// closed at once (its client tries another instance).
    #[arg(long, default_value_t = vss_runtime::DEFAULT_MAX_CONNECTIONS as u64,
        value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    client_max_connections: u64,
    /// Most calls one client connection may start per second; more are
    /// refused with RESOURCE_EXHAUSTED naming this limit.
    #[arg(long, default_value_t = vss_runtime::DEFAULT_CALLS_PER_SECOND,
        value_parser = clap::value_parser!(u32).range(1..))]
    client_max_calls_per_second: u32,
    /// HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, env = "VSS_HTTP_LISTEN", default_value = "127.0.0.1:7701")]
    http_listen: SocketAddr,
    /// This instance's id; in-cluster, the pod name.
    #[arg(long, env = "VSS_ID", default_value = "vss-0")]
    id: String,
    /// Every instance of the cluster, this one included, at its mesh port
    /// (--mesh-listen): ID=HOST:PORT,...
    /// Without it (and without --in-cluster) the instance runs alone. With
    /// --in-cluster it replaces the headless Service's DNS names, for pods
    /// whose peers are reached at other addresses; with --headless-service
    /// their mesh certificates are still checked for those DNS names.
    #[arg(long, env = "VSS_PEERS")]
    peers: Option<String>,
    /// Run as a pod of a StatefulSet: identity from POD_NAME, peers through
    /// the headless Service (or --peers), leader through a Kubernetes Lease.
    #[arg(long)]
    in_cluster: bool,
    /// In-cluster: number of instances (the StatefulSet's replicas).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=32))]
    replicas: Option<u16>,
    /// In-cluster: the headless Service that gives each pod a DNS name.
    #[arg(long)]
    headless_service: Option<String>,
    /// Folder that relative custom module paths resolve against, in the
    /// config file and in pushed configs. Default: the config file's folder.
    #[arg(long, env = "VSS_MODULE_ROOT")]
    module_root: Option<PathBuf>,
    /// In-cluster: the Lease used for leader election (default
    /// <statefulset>-leader).
    #[arg(long)]
    lease_name: Option<String>,
    /// Apply changes of the --config file without restart (off in-cluster,
    /// where the operator pushes changes through the control API).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    watch_config: bool,
    /// Longest a single call into a slot module may run, in milliseconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    wasm_call_timeout_ms: u64,
    /// Most memory one slot instance may use, in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(2..=4096))]
    slot_memory_mib: u64,
    /// Requests one slot may hold waiting; more are refused with
    /// RESOURCE_EXHAUSTED at once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    slot_queue_depth: u64,
    /// Longest a request may wait in its slot's queue, in milliseconds;
    /// past it, it is answered RESOURCE_EXHAUSTED without running.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    slot_queue_wait_ms: u64,
    /// Most clients with an open event stream on this instance; one more
    /// is refused with RESOURCE_EXHAUSTED naming this limit.
    #[arg(long, env = "VSS_MAX_CLIENTS", default_value_t = DEFAULT_MAX_CLIENTS as u64,
        value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_clients: u64,
    /// How long to wait for in-flight requests after SIGTERM, in seconds
    /// (after the hand-over).
    #[arg(long, default_value_t = 10)]
    drain_seconds: u64,
    /// On SIGTERM, how long this instance may take to hand the slots it
    /// owns over to their standbys, with their final state, before it
    /// drains, in seconds.
    #[arg(long, env = "VSS_HANDOVER_SECONDS", default_value_t = 5)]
    handover_seconds: u64,
    /// Chaos: fraction (0-1) of incoming mesh messages dropped.
    #[arg(long, default_value_t = 0.0)]
    chaos_mesh_drop: f64,
    /// Chaos: fraction (0-1) of incoming mesh messages delayed.
    #[arg(long, default_value_t = 0.0)]
    chaos_mesh_delay_fraction: f64,
    /// Chaos: how long a delayed mesh message waits, in milliseconds.
    #[arg(long, default_value_t = 50)]
    chaos_mesh_delay_ms: u64,
    /// Chaos: fraction (0-1) of client calls refused with UNAVAILABLE.
    #[arg(long, default_value_t = 0.0)]
    chaos_refuse_calls: f64,
    /// Chaos: restart (exit 75) at random intervals around this many
    /// seconds, for the supervisor to start the instance again.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    chaos_restart_every_s: Option<u64>,
    /// Log format.
    #[arg(long, env = "VSS_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot start the async runtime: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        // Printed here rather than returned from `main`, which would repeat
        // causes under `Caused by:` and add a backtrace to a user's mistake.
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {}", report::message(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    raise_open_files_limit(args.max_clients);
    let module_root = match &args.module_root {
        Some(root) => root.clone(),
        None => args
            .config
            .parent()
            .map_or_else(|| PathBuf::from("."), PathBuf::from),
    };
    let config = vss_config::load_file_with_base(&args.config, &module_root)?;
    let (instance_id, members) = if args.in_cluster {
        let pod =
            std::env::var("POD_NAME").map_err(|_| MembersError::MissingEnv { var: "POD_NAME" })?;
        let members = match &args.peers {
            // Other addresses, same pods: their certificates still name
            // them through the headless Service.
            Some(list) => {
                let members = Members::parse(&pod, list)?;
                match (&args.headless_service, std::env::var("POD_NAMESPACE")) {
                    (Some(service), Ok(namespace)) => members.with_pod_dns(service, &namespace),
                    _ => members,
                }
            }
            None => {
                let (Some(replicas), Some(service)) = (args.replicas, &args.headless_service)
                else {
                    anyhow::bail!(
                        "--in-cluster needs --replicas and --headless-service (or --peers)"
                    );
                };
                let namespace =
                    std::env::var("POD_NAMESPACE").map_err(|_| MembersError::MissingEnv {
                        var: "POD_NAMESPACE",
                    })?;
                Members::stateful_set(
                    &pod,
                    &namespace,
                    service,
                    usize::from(replicas),
                    args.mesh_listen.port(),
                )?
            }
        };
        (pod, Some(members))
    } else {
        let members = match &args.peers {
            Some(list) => Some(Members::parse(&args.id, list)?),
            None => None,
        };
        (args.id, members)
    };
    let lease = if args.in_cluster {
        Some(start_lease(&instance_id, args.lease_name.as_deref()).await?)
    } else {
        None
    };
    let chaos = ChaosOptions {
        mesh_drop: args.chaos_mesh_drop,
        mesh_delay_fraction: args.chaos_mesh_delay_fraction,
        mesh_delay: Duration::from_millis(args.chaos_mesh_delay_ms),
        refuse_calls: args.chaos_refuse_calls,
        restart_every: args.chaos_restart_every_s.map(Duration::from_secs),
    };
    chaos.validate()?;
    let mesh_tls = match (args.mesh_tls_cert, args.mesh_tls_key, args.mesh_tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(TlsFiles { cert, key, ca }),
        (None, None, None) => None,
        // clap's `requires_all` already refused a partial set.
        _ => anyhow::bail!("--mesh-tls-cert, --mesh-tls-key and --mesh-tls-ca go together"),
    };
    if mesh_tls.is_none() && args.in_cluster {
        tracing::warn!(
            "the mesh port is plaintext: anyone who reaches it can act as a peer or the operator; pass --mesh-tls-cert, --mesh-tls-key and --mesh-tls-ca"
        );
    }
    let client_tls = match (args.client_tls_cert, args.client_tls_key) {
        (Some(cert), Some(key)) => Some(ClientTlsFiles {
            cert,
            key,
            ca: args.client_tls_ca,
        }),
        (None, None) => None,
        _ => anyhow::bail!("--client-tls-cert and --client-tls-key go together"),
    };
    let options = RuntimeOptions {
        chaos,
        mesh_tls,
        client_tls,
        client_tokens: args.client_tokens,
        client_max_streams: args.client_max_streams,
        handover: Duration::from_secs(args.handover_seconds),
        client_limits: ClientLimits {
            max_connections: usize::try_from(args.client_max_connections)
                .context("--client-max-connections")?,
            calls_per_second: args.client_max_calls_per_second,
        },
        instance_id,
        members,
        lease: lease.as_ref().map(|l| l.is_leader()),
        watch_config: (args.watch_config && !args.in_cluster).then(|| args.config.clone()),
        module_root: Some(module_root),
        listen: args.listen,
        mesh_listen: Some(args.mesh_listen),
        http_listen: Some(args.http_listen),
        wasm_limits: WasmLimits {
            call_deadline: Duration::from_millis(args.wasm_call_timeout_ms),
            memory_bytes: usize::try_from(args.slot_memory_mib << 20)
                .context("--slot-memory-mib")?,
            ..WasmLimits::default()
        },
        queue_limits: QueueLimits {
            depth: usize::try_from(args.slot_queue_depth).context("--slot-queue-depth")?,
            max_wait: Duration::from_millis(args.slot_queue_wait_ms),
            ..QueueLimits::default()
        },
        hub_limits: HubLimits {
            max_clients: usize::try_from(args.max_clients).context("--max-clients")?,
            ..HubLimits::default()
        },
    };
    let runtime = Runtime::bind(options, &config).await?;
    // Vacate the Lease first, so another pod leads (and routes this one's
    // slots away) at once instead of after the claim runs out.
    let vacate = async {
        if let Some(lease) = lease {
            lease.shutdown().await;
        }
    };
    vss_runtime::shutdown::run_until_signal(
        runtime,
        Duration::from_secs(args.drain_seconds),
        vacate,
    )
    .await
}

/// Raises the soft open-file limit to the hard one. Every client on its own
/// connection costs a file descriptor, and the usual soft limit (1,024) is
/// far below `--max-clients`; the hard limit is what the operator allowed,
/// so taking it all is safe. Failure only means fewer clients fit: warn.
fn raise_open_files_limit(max_clients: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit.maximum,
            Err(e) => {
                tracing::warn!(error = %e, "cannot raise the open-file limit");
                limit.current
            }
        }
    } else {
        limit.current
    };
    // None: unlimited.
    if let Some(soft) = soft
        && soft < max_clients
    {
        tracing::warn!(
            open_files = soft,
            max_clients,
            "the open-file limit is below --max-clients: clients on their own connections will be refused by the kernel first"
        );
    }
}

/// Campaigns for the StatefulSet's Lease (`<statefulset>-leader` unless
/// named) in the pod's namespace.
async fn start_lease(pod: &str, name: Option<&str>) -> anyhow::Result<vss_lease::LeaseHandle> {
    let namespace = std::env::var("POD_NAMESPACE").context("POD_NAMESPACE")?;
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            let set = pod.rsplit_once('-').map_or(pod, |(set, _)| set);
            format!("{set}-leader")
        }
    };
    let client = kube::Client::try_default()
        .await
        .context("in-cluster: cannot reach the Kubernetes API for the leader Lease")?;
    let config = vss_lease::LeaseConfig::new(namespace, name, pod);
    let handle = vss_lease::LeaseElection::start(client, config, CancellationToken::new())
        .await
        .context("in-cluster: leader Lease")?;
    Ok(handle)
}
