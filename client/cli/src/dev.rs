//! `vss dev`: a local VSS cluster in the foreground. Each instance is a
//! separate process (this binary, re-run as a hidden `instance` command),
//! on loopback ports, so killing one with `kill -9` is a real failover.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};
use vss_config::SlotsConfig;
use vss_runtime::cluster::Members;
use vss_runtime::telemetry::{self, LogFormat};
use vss_runtime::{Runtime, RuntimeOptions};

/// `examples/slots.yaml`, built in so `vss dev` works from anywhere.
const EXAMPLE_CONFIG: &str = include_str!("../../../examples/slots.yaml");

/// Instance i listens on the base port + i × this (gRPC) and + 1 (HTTP).
const PORT_STRIDE: u16 = 10;
/// How long instances get to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long instances get to drain after Ctrl-C before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Slot configuration file, watched for changes; default: a copy of the
    /// built-in examples/slots.yaml in the instances' folder.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Number of instances (separate processes).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    instances: u16,
    /// gRPC address of the first instance; the others take the next ports
    /// 10 apart (7710, 7720, ...). Port 0 picks free ports.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// HTTP address (/healthz, /readyz, /metrics) of the first instance;
    /// the others follow 10 apart.
    #[arg(long, default_value = "127.0.0.1:7701")]
    http_listen: SocketAddr,
}

/// One instance of a dev cluster (run by `vss dev` itself).
#[derive(Debug, clap::Args)]
pub struct InstanceArgs {
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    id: String,
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    http_listen: SocketAddr,
    #[arg(long)]
    peers: String,
}

struct Instance {
    id: String,
    grpc: SocketAddr,
    http: SocketAddr,
    child: Child,
    log: PathBuf,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("vss-dev-")
        .tempdir()
        .context("cannot create a folder for the instances' logs")?;
    let (config, source) = match &args.config {
        Some(path) => {
            // Fail here, with the file's own error, rather than in N children.
            vss_config::load_file(path)?;
            (path.canonicalize()?, path.display().to_string())
        }
        None => {
            SlotsConfig::from_yaml(EXAMPLE_CONFIG)?.validate()?;
            let copy = dir.path().join("slots.yaml");
            std::fs::write(&copy, EXAMPLE_CONFIG)?;
            (
                copy.clone(),
                format!("built-in examples/slots.yaml (copy at {})", copy.display()),
            )
        }
    };
    let n = usize::from(args.instances);
    let ports = ports(&args, n)?;
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, (grpc, _))| format!("vss-{i}={grpc}"))
        .collect::<Vec<_>>()
        .join(",");
    let exe = std::env::current_exe().context("cannot find the vss binary to start instances")?;
    let mut instances = Vec::new();
    for (i, (grpc, http)) in ports.into_iter().enumerate() {
        let id = format!("vss-{i}");
        let log = dir.path().join(format!("{id}.log"));
        let child = spawn(&exe, &config, &id, grpc, http, &peers, &log)?;
        instances.push(Instance {
            id,
            grpc,
            http,
            child,
            log,
        });
    }
    if let Err(e) = wait_ready(&mut instances).await {
        stop(&mut instances).await;
        return Err(e);
    }
    println!("VSS dev cluster: {n} instances, slots from {source}");
    for inst in &instances {
        println!(
            "  {}  gRPC {}  metrics http://{}/metrics  log {}",
            inst.id,
            inst.grpc,
            inst.http,
            inst.log.display()
        );
    }
    let endpoints: Vec<String> = instances.iter().map(|i| i.grpc.to_string()).collect();
    println!("endpoints {}", endpoints.join(","));
    println!(
        "Try: vss -e {} status    (Ctrl-C stops every instance)",
        endpoints.join(",")
    );
    let exited = tokio::select! {
        () = vss_runtime::signal::shutdown_signal() => None,
        done = first_exit(&mut instances) => Some(done),
    };
    stop(&mut instances).await;
    if let Some((id, status)) = exited {
        anyhow::bail!("instance {id} exited on its own ({status}); stopped the others");
    }
    Ok(())
}

/// gRPC and HTTP address of every instance.
fn ports(args: &DevArgs, n: usize) -> anyhow::Result<Vec<(SocketAddr, SocketAddr)>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let pick = |base: SocketAddr| -> anyhow::Result<SocketAddr> {
            if base.port() == 0 {
                let port = TcpListener::bind((base.ip(), 0))?.local_addr()?.port();
                return Ok(SocketAddr::new(base.ip(), port));
            }
            let offset = u16::try_from(i)? * PORT_STRIDE;
            let port = base
                .port()
                .checked_add(offset)
                .with_context(|| format!("port {} + {offset} is beyond 65535", base.port()))?;
            Ok(SocketAddr::new(base.ip(), port))
        };
        out.push((pick(args.listen)?, pick(args.http_listen)?));
    }
    Ok(out)
}

fn spawn(
    exe: &Path,
    config: &Path,
    id: &str,
    grpc: SocketAddr,
    http: SocketAddr,
    peers: &str,
    log: &Path,
) -> anyhow::Result<Child> {
    let log_file = std::fs::File::create(log)?;
    let child = Command::new(exe)
        .arg("instance")
        .arg("--config")
        .arg(config)
        .args(["--id", id])
        .args(["--listen", &grpc.to_string()])
        .args(["--http-listen", &http.to_string()])
        .args(["--peers", peers])
        // The instance stops when this pipe closes: when `vss dev` stops,
        // and also when it is killed and cannot stop them itself.
        .stdin(Stdio::piped())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start instance {id}"))?;
    Ok(child)
}

async fn wait_ready(instances: &mut [Instance]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    for inst in instances.iter_mut() {
        loop {
            if let Some(status) = inst.child.try_wait()? {
                let log = std::fs::read_to_string(&inst.log).unwrap_or_default();
                anyhow::bail!(
                    "instance {} exited during start ({status}):\n{log}",
                    inst.id
                );
            }
            if tokio::net::TcpStream::connect(inst.grpc).await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "instance {} did not listen on {} within {START_TIMEOUT:?}; log: {}",
                    inst.id,
                    inst.grpc,
                    inst.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Listening is not serving: an instance refuses slot calls until it
    // holds a routing table (the leader publishes one after its election).
    let endpoints: Vec<String> = instances.iter().map(|i| i.grpc.to_string()).collect();
    let client = vss_client::Client::new(&endpoints)?;
    loop {
        let answers = client.status().await;
        if answers
            .iter()
            .all(|(_, a)| a.as_ref().is_ok_and(|s| s.routing.is_some()))
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("the instances did not agree on a leader within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn first_exit(instances: &mut [Instance]) -> (String, std::process::ExitStatus) {
    loop {
        for inst in instances.iter_mut() {
            if let Ok(Some(status)) = inst.child.try_wait() {
                return (inst.id.clone(), status);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Closes every instance's stdin (they drain and exit), then kills the
/// ones still running after [`STOP_TIMEOUT`].
async fn stop(instances: &mut [Instance]) {
    for inst in instances.iter_mut() {
        drop(inst.child.stdin.take());
    }
    for inst in instances.iter_mut() {
        match tokio::time::timeout(STOP_TIMEOUT, inst.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("instance {} did not stop in time; killing it", inst.id);
                let _ = inst.child.kill().await;
            }
        }
    }
}

/// Runs one instance until SIGINT/SIGTERM or until its stdin closes.
pub async fn instance(args: InstanceArgs) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Text);
    let config = vss_config::load_file(&args.config)?;
    let members = Members::parse(&args.id, &args.peers)?;
    let options = RuntimeOptions {
        instance_id: args.id,
        listen: args.listen,
        http_listen: Some(args.http_listen),
        members: Some(members),
        watch_config: Some(args.config),
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::bind(options, &config).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Blocking read on a plain thread: it ends when the parent goes away.
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = stop_tx.send(());
    });
    runtime
        .serve(async {
            tokio::select! {
                () = vss_runtime::signal::shutdown_signal() => {}
                _ = stop_rx => {}
            }
        })
        .await?;
    Ok(())
}
