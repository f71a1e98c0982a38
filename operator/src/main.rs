//! `vss-operator crd` prints the CRD; `vss-operator run` runs the controller.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use kube::Client;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use vss_operator::controller::{self, Context};
use vss_operator::metrics::Metrics;
use vss_operator::push::{GrpcPodControl, MeshTlsFiles, mesh_client_config};
use vss_operator::resources::OperatorPods;
use vss_operator::{crd_yaml, http, leader};

#[derive(Parser, Debug)]
#[command(
    name = "vss-operator",
    version,
    about = "Kubernetes operator for VSS clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the VssCluster CRD as YAML.
    Crd,
    /// Run the controller (in-cluster config or KUBECONFIG).
    Run(Box<RunArgs>),
    /// Check VssCluster manifests offline: the CRD's schema and CEL rules
    /// and the runtime's slot validation. Checks every file; exits 1 if
    /// any is invalid or cannot be read.
    Validate {
        /// YAML files, each holding one or more VssClusters.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

#[derive(Parser, Debug)]
struct RunArgs {
    /// Namespace to watch; empty watches all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    watch_namespace: String,
    /// Runtime image of clusters that do not set `spec.image`.
    #[arg(long, env = "VSS_RUNTIME_IMAGE", default_value = concat!("ghcr.io/vss-dev/vss-runtime:", env!("CARGO_PKG_VERSION")))]
    runtime_image: String,
    #[arg(long, env = "VSS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Address of `/healthz`, `/readyz`, `/metrics`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    /// Identity in the operator's leader Lease.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Namespace of the operator's leader Lease; defaults to the client's.
    #[arg(long, env = "POD_NAMESPACE")]
    pod_namespace: Option<String>,
    /// Labels of the operator's own pods (`k=v,k=v`; the chart sets them):
    /// each cluster's NetworkPolicy admits these pods, in POD_NAMESPACE, to
    /// the mesh port. Unset, it admits only the cluster's own pods.
    #[arg(long, env = "VSS_OPERATOR_POD_LABELS", value_parser = parse_labels)]
    operator_pod_labels: Option<BTreeMap<String, String>>,
    /// Override of the mesh certificates the operator makes: dial every
    /// cluster's pods with this certificate (PEM, clientAuth usage) instead
    /// of the one it issues itself from each cluster's CA. Only for pods
    /// whose certificates come from a CA of yours. With --mesh-tls-key and
    /// --mesh-tls-ca; the files are read at every call.
    #[arg(long, env = "VSS_MESH_TLS_CERT", value_name = "FILE",
        requires_all = ["mesh_tls_key", "mesh_tls_ca"])]
    mesh_tls_cert: Option<std::path::PathBuf>,
    /// mTLS to the pods: the private key of --mesh-tls-cert (PEM).
    #[arg(long, env = "VSS_MESH_TLS_KEY", value_name = "FILE",
        requires_all = ["mesh_tls_cert", "mesh_tls_ca"])]
    mesh_tls_key: Option<std::path::PathBuf>,
    /// mTLS to the pods: the CA (PEM) their certificates must be signed by
    /// (replacing each cluster's own CA, see --mesh-tls-cert).
    #[arg(long, env = "VSS_MESH_TLS_CA", value_name = "FILE",
        requires_all = ["mesh_tls_cert", "mesh_tls_key"])]
    mesh_tls_ca: Option<std::path::PathBuf>,
    /// Timeout of each gRPC call to a runtime pod, in seconds.
    #[arg(long, default_value_t = 5)]
    pod_call_timeout: u64,
}

/// `k=v,k=v`, as Kubernetes label selectors write equality.
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .map(|pair| match pair.trim().split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!(
                "`{pair}`: expected key=value pairs separated by commas"
            )),
        })
        .collect()
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match command(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // Printed here rather than returned from `main`, which would print
        // the causes again under `Caused by:` and a backtrace when
        // RUST_BACKTRACE is set: noise around one sentence.
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated as anyhow's `{:#}` writes
/// them, leaving out a cause whose text is already on the line (as the
/// runtime's `report::message` does).
fn one_line(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let said = cause.to_string();
        if said.is_empty() || text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

fn command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Crd => {
            let yaml = crd_yaml().context("rendering the CRD")?;
            // `print!` would panic on a closed stdout (`vss-operator crd | head`).
            std::io::stdout()
                .lock()
                .write_all(yaml.as_bytes())
                .context("writing the CRD to stdout")
        }
        Command::Validate { files } => validate(&files),
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?
            .block_on(run(*args)),
    }
}

fn validate(files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let mut bad = 0;
    let mut out = std::io::stdout().lock();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let written = match vss_operator::validate::validate_manifests(&text) {
            Ok(n) => writeln!(out, "ok   {} ({n} VssCluster)", file.display()),
            Err(problems) => {
                bad += 1;
                writeln!(out, "FAIL {}", file.display()).and_then(|()| {
                    problems
                        .iter()
                        .try_for_each(|p| writeln!(out, "  - {}", p.replace('\n', "\n    ")))
                })
            }
        };
        written.context("writing to stdout")?;
    }
    anyhow::ensure!(
        bad == 0,
        "{bad} of {} file(s) invalid (problems above)",
        files.len()
    );
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    let mut pods = GrpcPodControl::new(Duration::from_secs(args.pod_call_timeout));
    if let (Some(cert), Some(key), Some(ca)) = (
        args.mesh_tls_cert.clone(),
        args.mesh_tls_key.clone(),
        args.mesh_tls_ca.clone(),
    ) {
        let files = MeshTlsFiles { cert, key, ca };
        // Read once now so a wrong path stops the start, not every push.
        mesh_client_config(&files).await?;
        pods = pods.with_mesh_tls(files);
    }
    let client = Client::try_default()
        .await
        .context("no Kubernetes config (in-cluster or KUBECONFIG)")?;
    let identity = match args.pod_name.clone() {
        Some(name) => name,
        None => format!("vss-operator-{}", std::process::id()),
    };
    let lease_ns = args
        .pod_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());

    let mut registry = Registry::default();
    let metrics = Metrics::default().register(&mut registry);
    let registry = Arc::new(registry);

    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(wait_for_signal(shutdown.clone()));
    // Bound here so a taken port stops the start instead of leaving the
    // operator without probes.
    let listener = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("binding {}", args.http_listen))?;
    let http_task = tokio::spawn(http::serve(listener, registry, shutdown.clone()));

    let operator_pods = match (&args.pod_namespace, &args.operator_pod_labels) {
        (Some(namespace), Some(labels)) => Some(OperatorPods {
            namespace: namespace.clone(),
            labels: labels.clone(),
        }),
        _ => {
            warn!(
                "POD_NAMESPACE or VSS_OPERATOR_POD_LABELS is unset: clusters' NetworkPolicies admit only their own pods to the mesh port, so where policies are enforced this operator cannot push config"
            );
            None
        }
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(pods),
        args.runtime_image.clone(),
        Some(identity.clone()),
        metrics,
        operator_pods,
    ));
    let watch_ns = (!args.watch_namespace.is_empty()).then(|| args.watch_namespace.clone());

    let led = lead(
        client,
        &lease_ns,
        &identity,
        ctx,
        watch_ns,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    signals.abort();
    let _ = signals.await;
    let served = http_task.await.context("http task panicked")?;
    led?;
    served.context("http server failed")
}

/// Waits for the Lease, runs the controller while holding it, and releases
/// it on shutdown.
async fn lead(
    client: Client,
    lease_ns: &str,
    identity: &str,
    ctx: Arc<Context>,
    watch_ns: Option<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let election = leader::start(client, lease_ns, identity)
        .await
        .context("starting leader election")?;
    info!(%identity, lease = leader::LEASE_NAME, namespace = %lease_ns, "waiting for leadership");
    let is_leader = election.is_leader;
    leader::while_leading(is_leader.clone(), shutdown, |stop| {
        controller::run(ctx.clone(), watch_ns.clone(), stop)
    })
    .await;

    // Dropping the receiver makes the election task release the Lease so a
    // standby takes over without waiting for it to expire.
    drop(is_leader);
    match election.task.await {
        Ok(Ok(_)) => info!("lease released"),
        Ok(Err(e)) => warn!(error = %e, "releasing the lease failed"),
        Err(e) => warn!(error = %e, "election task panicked"),
    }
    Ok(())
}

async fn wait_for_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    info!("shutdown requested");
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::{one_line, parse_labels};

    #[test]
    fn an_error_reads_as_one_line_without_repeated_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(io).context("reading a.yaml");
        assert_eq!(one_line(&e), "reading a.yaml: no such file");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(io).context("reading a.yaml: no such file");
        assert_eq!(one_line(&e), "reading a.yaml: no such file");
    }

    #[test]
    fn operator_pod_labels_are_key_value_pairs() {
        let labels =
            parse_labels("app.kubernetes.io/name=vss-operator,app.kubernetes.io/instance=r1")
                .expect("valid");
        assert_eq!(labels["app.kubernetes.io/name"], "vss-operator");
        assert_eq!(labels["app.kubernetes.io/instance"], "r1");
        let e = parse_labels("a=b,oops").expect_err("no =");
        assert!(e.contains("`oops`"), "{e}");
    }
}
