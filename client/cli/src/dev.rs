//! `vss dev`: a local VSS cluster in the foreground. Each instance is a
//! separate process (this binary, re-run as a hidden `instance` command),
//! on loopback ports, so killing one with `kill -9` is a real failover.
//!
//! `vss dev` supervises its instances the way a StatefulSet does: one that
//! dies (a signal, a crash, a chaos restart's exit 75) is started again
//! under the same id, on the same ports, after a back-off ([`Backoff`]).
//! One task per instance ([`supervise`]) waits on its process, restarts it
//! and watches it rejoin; the tasks send one line per event to the main
//! loop, which prints them and, on Ctrl-C, stops the tasks, each draining
//! its instance.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vss_config::SlotsConfig;
use vss_runtime::ChaosOptions;
use vss_runtime::Members;
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
/// How often a restarted instance is asked whether it serves again.
const REJOIN_POLL: Duration = Duration::from_millis(200);
/// How long one such question may take.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// Event lines waiting to be printed; a supervisor waits when it is full.
const EVENT_QUEUE: usize = 64;

/// The chaos scenario's settings (`runtime/tests/chaos.rs`,
/// docs/chaos.md): 5 % of mesh messages dropped, 10 % delayed by 20 ms,
/// 2 % of client calls refused. Where the scenario's driver SIGKILLs an
/// instance every 4 s, each instance here exits 75 about every 30 s
/// (between 15 and 45), about one restart every 10 s among three.
fn chaos_settings() -> ChaosOptions {
    ChaosOptions {
        mesh_drop: 0.05,
        mesh_delay_fraction: 0.1,
        mesh_delay: Duration::from_millis(20),
        refuse_calls: 0.02,
        restart_every: Some(Duration::from_secs(30)),
    }
}

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
    /// Mesh address (peers and the control API) of the first instance; the
    /// others follow 10 apart.
    #[arg(long, default_value = "127.0.0.1:7702")]
    mesh_listen: SocketAddr,
    /// HTTP address (/healthz, /readyz, /metrics) of the first instance;
    /// the others follow 10 apart.
    #[arg(long, default_value = "127.0.0.1:7701")]
    http_listen: SocketAddr,
    /// Inject faults, as the chaos test does: drop 5% and delay 10% of mesh
    /// messages, refuse 2% of client calls, and make each instance exit
    /// (code 75) about every 30 s, to be restarted. Clients should notice
    /// nothing (see docs/chaos.md).
    #[arg(long)]
    chaos: bool,
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
    mesh_listen: SocketAddr,
    #[arg(long)]
    http_listen: SocketAddr,
    #[arg(long)]
    peers: String,
    /// Fault injection with [`chaos_settings`].
    #[arg(long)]
    chaos: bool,
}

/// What stays the same across an instance's restarts.
#[derive(Debug, Clone)]
struct Member {
    id: String,
    grpc: SocketAddr,
    mesh: SocketAddr,
    http: SocketAddr,
    log: PathBuf,
}

/// How every instance of this cluster is started.
#[derive(Debug)]
struct Launcher {
    exe: PathBuf,
    config: PathBuf,
    peers: String,
    chaos: bool,
}

impl Launcher {
    fn start(&self, member: &Member) -> anyhow::Result<Child> {
        // Appended to, so the log of a restarted instance keeps what the
        // dead one wrote.
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .with_context(|| format!("cannot open {}", member.log.display()))?;
        let mut command = Command::new(&self.exe);
        command
            .arg("instance")
            .arg("--config")
            .arg(&self.config)
            .args(["--id", &member.id])
            .args(["--listen", &member.grpc.to_string()])
            .args(["--mesh-listen", &member.mesh.to_string()])
            .args(["--http-listen", &member.http.to_string()])
            .args(["--peers", &self.peers]);
        if self.chaos {
            command.arg("--chaos");
        }
        #[cfg(unix)]
        // Out of the terminal's process group: Ctrl-C reaches `vss dev`
        // alone, which drains the instances, instead of every instance
        // at once, which would look like deaths to restart.
        command.process_group(0);
        let child = command
            // The instance stops when this pipe closes: when `vss dev` stops,
            // and also when it is killed and cannot stop them itself.
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start instance {}", member.id))?;
        Ok(child)
    }
}

/// A started instance.
struct Instance {
    member: Member,
    child: Child,
    /// The instance runs while this pipe is open. Held apart from `child`,
    /// whose `wait` would close it.
    stdin: Option<ChildStdin>,
}

impl Instance {
    fn start(launcher: &Launcher, member: Member) -> anyhow::Result<Instance> {
        let mut child = launcher.start(&member)?;
        let stdin = child.stdin.take();
        Ok(Instance {
            member,
            child,
            stdin,
        })
    }

    fn restart(&mut self, launcher: &Launcher) -> anyhow::Result<()> {
        let mut child = launcher.start(&self.member)?;
        self.stdin = child.stdin.take();
        self.child = child;
        Ok(())
    }
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
            let full = path
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", path.display()))?;
            (full, path.display().to_string())
        }
        None => {
            SlotsConfig::from_yaml(EXAMPLE_CONFIG)?.validate()?;
            let copy = dir.path().join("slots.yaml");
            std::fs::write(&copy, EXAMPLE_CONFIG)
                .with_context(|| format!("cannot write {}", copy.display()))?;
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
        .map(|(i, (_, mesh, _))| format!("vss-{i}={mesh}"))
        .collect::<Vec<_>>()
        .join(",");
    let launcher = Arc::new(Launcher {
        exe: std::env::current_exe().context("cannot find the vss binary to start instances")?,
        config,
        peers,
        chaos: args.chaos,
    });
    let mut instances = Vec::new();
    for (i, (grpc, mesh, http)) in ports.into_iter().enumerate() {
        let id = format!("vss-{i}");
        let log = dir.path().join(format!("{id}.log"));
        let member = Member {
            id,
            grpc,
            mesh,
            http,
            log,
        };
        instances.push(Instance::start(&launcher, member)?);
    }
    if let Err(e) = wait_ready(&mut instances).await {
        for inst in &mut instances {
            stop_instance(inst).await;
        }
        return Err(e);
    }
    match print_banner(&instances, &source, args.chaos) {
        Ok(()) => {}
        // Nobody reads: stop as quietly as after Ctrl-C.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            for inst in &mut instances {
                stop_instance(inst).await;
            }
            return Ok(());
        }
        Err(e) => return Err(e).context("cannot print to stdout"),
    }
    supervise_until_stopped(instances, launcher).await
}

fn print_banner(instances: &[Instance], source: &str, chaos: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "VSS dev cluster: {} instances, slots from {source}",
        instances.len()
    )?;
    for inst in instances {
        let m = &inst.member;
        writeln!(
            out,
            "  {}  pid {}  gRPC {}  metrics http://{}/metrics  log {}",
            m.id,
            pid_of(&inst.child),
            m.grpc,
            m.http,
            m.log.display()
        )?;
    }
    if chaos {
        writeln!(
            out,
            "chaos: mesh messages dropped 5% and delayed 10%, client calls refused 2%, each instance exits 75 about every 30 s"
        )?;
    }
    let endpoints: Vec<String> = instances
        .iter()
        .map(|i| i.member.grpc.to_string())
        .collect();
    writeln!(out, "endpoints {}", endpoints.join(","))?;
    writeln!(
        out,
        "Try: vss -e {} status    (an instance that dies is restarted; Ctrl-C stops every instance)",
        endpoints.join(",")
    )?;
    out.flush()
}

fn pid_of(child: &Child) -> String {
    child
        .id()
        .map_or_else(|| "?".to_string(), |pid| pid.to_string())
}

/// Runs a supervisor per instance and prints their events until Ctrl-C or
/// SIGTERM (or until stdout closes), then stops every instance.
async fn supervise_until_stopped(
    instances: Vec<Instance>,
    launcher: Arc<Launcher>,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let (events_tx, mut events) = mpsc::channel::<String>(EVENT_QUEUE);
    let mut supervisors = JoinSet::new();
    for inst in instances {
        supervisors.spawn(supervise(
            inst,
            launcher.clone(),
            stop.clone(),
            events_tx.clone(),
        ));
    }
    drop(events_tx);
    let shutdown = vss_runtime::shutdown::shutdown_signal();
    tokio::pin!(shutdown);
    let mut failure = None;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            line = events.recv() => {
                let Some(line) = line else { break };
                let mut out = std::io::stdout().lock();
                match writeln!(out, "{line}").and_then(|()| out.flush()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
                    Err(e) => {
                        failure = Some(anyhow::Error::new(e).context("cannot print to stdout"));
                        break;
                    }
                }
            }
            done = supervisors.join_next() => {
                // Supervisors run until told to stop; one that ended early
                // panicked.
                if let Some(Err(e)) = done {
                    failure = Some(anyhow::anyhow!("an instance's supervisor failed: {e}"));
                }
                break;
            }
        }
    }
    stop.cancel();
    // Supervisors no longer wait for room to report while they stop.
    drop(events);
    while supervisors.join_next().await.is_some() {}
    failure.map_or(Ok(()), Err)
}

/// Keeps one instance running until `stop`: restarts it after a back-off
/// when it dies, and reports when it serves again.
async fn supervise(
    mut inst: Instance,
    launcher: Arc<Launcher>,
    stop: CancellationToken,
    events: mpsc::Sender<String>,
) {
    let id = inst.member.id.clone();
    let status =
        match vss_client::Client::with_timeout(&[inst.member.grpc.to_string()], STATUS_TIMEOUT) {
            Ok(client) => Some(client),
            Err(e) => {
                let _ = events
                    .send(format!("{id}: cannot watch its status: {e}"))
                    .await;
                None
            }
        };
    let mut backoff = Backoff::default();
    let mut up_since = Instant::now();
    // Started by `run`, which waited for it to serve.
    let mut serving = true;
    loop {
        let exit = tokio::select! {
            () = stop.cancelled() => {
                stop_instance(&mut inst).await;
                return;
            }
            exit = inst.child.wait() => exit,
            epoch = rejoined(status.as_ref(), &id), if !serving => {
                serving = true;
                let pid = pid_of(&inst.child);
                let _ = events.send(format!("{id} rejoined, epoch {epoch} (pid {pid})")).await;
                continue;
            }
        };
        let why = match exit {
            Ok(status) => describe_exit(status),
            Err(e) => format!("lost track of its process: {e}"),
        };
        // Restart until one start succeeds; each failure backs off more.
        let mut event = format!("{id} died ({why})");
        loop {
            let delay = backoff.after_exit(up_since.elapsed());
            let _ = events
                .send(format!(
                    "{event}; restarting in {:.1} s",
                    delay.as_secs_f64()
                ))
                .await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            up_since = Instant::now();
            match inst.restart(&launcher) {
                Ok(()) => {
                    serving = false;
                    break;
                }
                Err(e) => {
                    event = format!(
                        "{id} could not start ({})",
                        vss_runtime::report::message(e.as_ref())
                    );
                }
            }
        }
    }
}

/// Completes with the routing epoch once the instance serves again: it
/// holds a routing table whose members include it. Never completes without
/// a status client.
async fn rejoined(status: Option<&vss_client::Client>, id: &str) -> u64 {
    let Some(client) = status else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(REJOIN_POLL).await;
        let answers = client.status().await;
        let epoch = answers.into_iter().find_map(|(_, answer)| {
            let routing = answer.ok()?.routing?;
            (routing.epoch > 0 && routing.members.iter().any(|m| m == id)).then_some(routing.epoch)
        });
        if let Some(epoch) = epoch {
            return epoch;
        }
    }
}

/// Why a process ended, as a person reads it: `SIGKILL`, `exit 1`,
/// `exit 75, chaos restart`.
fn describe_exit(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return signal_name(signal);
        }
    }
    match status.code() {
        Some(code) if code == vss_runtime::RESTART_EXIT_CODE => {
            format!("exit {code}, chaos restart")
        }
        Some(code) => format!("exit {code}"),
        None => status.to_string(),
    }
}

/// Names of the signals whose numbers are the same on Linux and macOS.
fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        other => return format!("signal {other}"),
    };
    name.to_string()
}

/// How long to wait before restarting an instance that died: 0.5 s, then
/// doubling up to 8 s while it keeps dying soon after each start, and
/// 0.5 s again once it had stayed up for 10 s. An instance that cannot
/// start (its port taken, a broken module) is retried without spinning,
/// and a single death costs half a second.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(8);
    /// Up this long, an instance counts as healthy again.
    const STABLE: Duration = Duration::from_secs(10);

    /// The delay before restarting an instance that died after running
    /// for `up_for`.
    fn after_exit(&mut self, up_for: Duration) -> Duration {
        if up_for >= Self::STABLE {
            self.next = Self::FIRST;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

/// gRPC and HTTP address of every instance.
/// Client, mesh and HTTP address of each instance.
fn ports(args: &DevArgs, n: usize) -> anyhow::Result<Vec<(SocketAddr, SocketAddr, SocketAddr)>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let pick = |base: SocketAddr| -> anyhow::Result<SocketAddr> {
            if base.port() == 0 {
                let port = TcpListener::bind((base.ip(), 0))
                    .and_then(|l| l.local_addr())
                    .with_context(|| format!("cannot find a free port on {}", base.ip()))?
                    .port();
                return Ok(SocketAddr::new(base.ip(), port));
            }
            let offset = u16::try_from(i)? * PORT_STRIDE;
            let port = base
                .port()
                .checked_add(offset)
                .with_context(|| format!("port {} + {offset} is beyond 65535", base.port()))?;
            Ok(SocketAddr::new(base.ip(), port))
        };
        out.push((
            pick(args.listen)?,
            pick(args.mesh_listen)?,
            pick(args.http_listen)?,
        ));
    }
    Ok(out)
}

async fn wait_ready(instances: &mut [Instance]) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    for inst in instances.iter_mut() {
        let m = &inst.member;
        loop {
            if let Some(status) = inst.child.try_wait()? {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                anyhow::bail!(
                    "instance {} exited during start ({}): {}",
                    m.id,
                    describe_exit(status),
                    last_error(&log).unwrap_or("it printed nothing")
                );
            }
            if tokio::net::TcpStream::connect(m.grpc).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "instance {} did not listen on {} within {START_TIMEOUT:?}; log: {}",
                    m.id,
                    m.grpc,
                    m.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Listening is not serving: an instance refuses slot calls until it
    // holds a routing table (the leader publishes one after its election).
    let endpoints: Vec<String> = instances
        .iter()
        .map(|i| i.member.grpc.to_string())
        .collect();
    let client = vss_client::Client::new(&endpoints)?;
    loop {
        let answers = client.status().await;
        if answers
            .iter()
            .all(|(_, a)| a.as_ref().is_ok_and(|s| s.routing.is_some()))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("the instances did not agree on a leader within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The line of an instance's log that says why it stopped: the one its
/// `main` printed (`error: ...`), else the last one.
fn last_error(log: &str) -> Option<&str> {
    let lines = || log.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .rfind(|l| l.starts_with("error:"))
        .or_else(|| lines().next_back())
}

/// Closes the instance's stdin (it drains and exits), then kills it if it
/// still runs after [`STOP_TIMEOUT`].
async fn stop_instance(inst: &mut Instance) {
    drop(inst.stdin.take());
    if tokio::time::timeout(STOP_TIMEOUT, inst.child.wait())
        .await
        .is_err()
    {
        let _ = writeln!(
            std::io::stderr(),
            "instance {} did not stop in time; killing it",
            inst.member.id
        );
        let _ = inst.child.kill().await;
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
        mesh_listen: Some(args.mesh_listen),
        http_listen: Some(args.http_listen),
        members: Some(members),
        watch_config: Some(args.config),
        chaos: if args.chaos {
            chaos_settings()
        } else {
            ChaosOptions::default()
        },
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
                () = vss_runtime::shutdown::shutdown_signal() => {}
                _ = stop_rx => {}
            }
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_while_an_instance_keeps_dying() {
        let mut b = Backoff::default();
        let soon = Duration::from_secs(1);
        let delays: Vec<f64> = (0..7).map(|_| b.after_exit(soon).as_secs_f64()).collect();
        assert_eq!(delays, [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]);
    }

    #[test]
    fn backoff_starts_over_after_an_instance_stayed_up() {
        let mut b = Backoff::default();
        for _ in 0..4 {
            b.after_exit(Duration::ZERO);
        }
        assert_eq!(b.after_exit(Backoff::STABLE), Backoff::FIRST);
        assert_eq!(b.after_exit(Duration::ZERO), Duration::from_secs(1));
    }

    #[cfg(unix)]
    #[test]
    fn exits_are_described_by_signal_or_code() {
        use std::os::unix::process::ExitStatusExt as _;
        // Wait statuses: a signal in the low bits, an exit code above them.
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "SIGKILL");
        assert_eq!(describe_exit(ExitStatus::from_raw(11)), "SIGSEGV");
        assert_eq!(describe_exit(ExitStatus::from_raw(33)), "signal 33");
        assert_eq!(
            describe_exit(ExitStatus::from_raw(75 << 8)),
            "exit 75, chaos restart"
        );
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit 1");
    }

    #[test]
    fn the_reason_an_instance_stopped_is_its_error_line() {
        let log = "INFO serving\nerror: cannot listen on 127.0.0.1:7700: Address in use\n\n";
        assert_eq!(
            last_error(log),
            Some("error: cannot listen on 127.0.0.1:7700: Address in use")
        );
        assert_eq!(last_error("a\nb\n"), Some("b"));
        assert_eq!(last_error(""), None);
    }

    #[test]
    fn chaos_settings_are_valid() {
        assert_eq!(chaos_settings().validate(), Ok(()));
        assert!(!chaos_settings().is_off());
    }
}
