//! `vss-bench`: drives a running VSS cluster over gRPC and reports
//! throughput and latency percentiles (HDR histograms).
//!
//! Closed loop (default): every connection keeps `--in-flight` requests
//! outstanding. Open loop (`--rate`): requests are sent on a fixed schedule
//! whatever the answers do, and each latency counts from the time the
//! request was due, not from when it could be sent, so a stalled server
//! shows in the percentiles instead of hiding behind fewer requests
//! (no coordinated omission).
//!
//! Scenarios: `acquire` (the `vss.v1.Vss` API, one call per acquire),
//! `acquire-batch` (the same through `vss-client`, which coalesces
//! concurrent acquires into `AcquireBatch` calls), `rls` (Envoy's
//! `ShouldRateLimit`), `publish` (broadcast fan-out to subscribers in other
//! processes, each delivery acknowledged) and `connections` (the server's
//! memory per client on its own connection with an open event stream).

mod fanout;
mod stats;
mod subscribers;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use fanout::{Layout, Until};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::Endpoint;
use vss_client::{Conn, Security, SecurityArgs};
use vss_proto::v1::AcquireRequest;
use vss_proto::v1::vss_client::VssClient;

use stats::{Latencies, Summary};

#[derive(Debug, Parser)]
#[command(name = "vss-bench", version, about = "Load generator for VSS clusters")]
struct Cli {
    /// Instances to load, comma-separated host:port; connections are
    /// spread over them.
    #[arg(
        long,
        short = 'e',
        value_delimiter = ',',
        default_value = "127.0.0.1:7700",
        global = true
    )]
    endpoints: Vec<String>,
    /// HTTP/2 connections.
    #[arg(long, short = 'c', default_value_t = 4, global = true)]
    connections: usize,
    /// Requests outstanding per connection (closed loop), or the most
    /// outstanding per connection (open loop).
    #[arg(long, short = 'i', default_value_t = 16, global = true)]
    in_flight: usize,
    /// Measured time, e.g. 10s.
    #[arg(long, short = 'd', default_value = "10s", value_parser = duration, global = true)]
    duration: Duration,
    /// Time before measuring starts, e.g. 2s.
    #[arg(long, default_value = "2s", value_parser = duration, global = true)]
    warmup: Duration,
    /// Open loop: total requests per second offered.
    #[arg(long, global = true)]
    rate: Option<f64>,
    #[arg(long, short = 'o', value_enum, default_value = "text", global = true)]
    output: Format,
    // TLS and token, as the `vss` CLI takes them: used on every
    // connection, the subscriber processes' too.
    #[command(flatten)]
    security: SecurityArgs,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Subcommand)]
enum Scenario {
    /// Acquire tokens from a limiter slot (token or leaky bucket).
    #[command(after_help = "Example: vss-bench -c 4 -i 16 -d 10s acquire --slot 1 --keys 1000")]
    Acquire(Acquires),
    /// Acquires through `vss-client`, which coalesces the concurrent
    /// acquires of a client into `AcquireBatch` calls. One client (with a
    /// connection to every endpoint) per `--connections`.
    #[command(
        name = "acquire-batch",
        after_help = "Example: vss-bench -c 1 -i 64 -d 10s acquire-batch --slot 1"
    )]
    AcquireBatch(Acquires),
    /// Envoy's `ShouldRateLimit` with one descriptor `[{key, value}]`.
    #[command(
        after_help = "Example: vss-bench -c 4 -i 16 -d 10s rls --domain edge --key remote_address --values 1000"
    )]
    Rls {
        #[arg(long, default_value = "edge")]
        domain: String,
        /// The descriptor's one entry key.
        #[arg(long, default_value = "remote_address")]
        key: String,
        /// Spread requests over this many values (each its own bucket
        /// under a key-only rule).
        #[arg(long, default_value_t = 1)]
        values: u64,
    },
    /// Broadcast fan-out: one 36-byte publish at a time on a broadcast
    /// slot to S subscribers in other processes, each acknowledging every
    /// event; times each publish until every delivery is acknowledged.
    /// `-c` is the HTTP/2 connections per subscriber process.
    #[command(
        after_help = "Example: vss-bench -c 8 -d 10s publish --slot 10 --subscribers 1000 --processes 2"
    )]
    Publish {
        /// A broadcast slot.
        #[arg(long, default_value_t = 10)]
        slot: u32,
        /// Subscribers every publish must reach.
        #[arg(long, short = 's', default_value_t = 100)]
        subscribers: usize,
        /// Subscriber processes (copies of vss-bench) to spread them over.
        #[arg(long, default_value_t = 2)]
        processes: usize,
    },
    /// C clients, each on its own TCP connection with an open event stream
    /// on a broadcast slot, from several processes (and 127.0.0.x source
    /// addresses); reports the server's RSS growth per client, then
    /// optionally broadcasts to them all.
    #[command(
        after_help = "Example: vss-bench connections --clients 15000 --processes 4 --server-pid 1234 --broadcasts 20"
    )]
    Connections {
        /// A broadcast slot the clients subscribe to.
        #[arg(long, default_value_t = 10)]
        slot: u32,
        #[arg(long, default_value_t = 1_000)]
        clients: usize,
        #[arg(long, default_value_t = 4)]
        processes: usize,
        /// The server's process id, whose /proc/<pid>/status VmRSS is read.
        #[arg(long)]
        server_pid: u32,
        /// Broadcasts to every client after the memory is read (0: none).
        #[arg(long, default_value_t = 0)]
        broadcasts: u64,
    },
    /// A subscriber process of `publish` and `connections` (internal).
    #[command(hide = true)]
    Subscribers {
        #[arg(long)]
        slot: u32,
        #[arg(long)]
        clients: usize,
        #[arg(long)]
        id_prefix: String,
        #[arg(long)]
        own_connections: bool,
        #[arg(long)]
        source: Option<std::net::IpAddr>,
    },
}

/// What the `acquire` and `acquire-batch` scenarios ask for.
#[derive(Debug, Clone, clap::Args)]
struct Acquires {
    /// Slot id.
    #[arg(long, default_value_t = 0)]
    slot: u32,
    /// Spread requests over this many keys (0: the slot's single bucket).
    #[arg(long, default_value_t = 0)]
    keys: u64,
    /// Tokens per acquire (default: the slot's tokensPerReq).
    #[arg(long)]
    tokens: Option<u32>,
}

/// One connection's clients.
#[derive(Clone)]
struct Clients {
    vss: VssClient<Conn>,
    rls: RateLimitServiceClient<Conn>,
    /// The library client, for `acquire-batch`.
    library: vss_client::Client,
}

impl Clients {
    fn new(channel: Conn, endpoints: &[String], security: &Security) -> anyhow::Result<Self> {
        Ok(Self {
            vss: VssClient::new(channel.clone()),
            rls: RateLimitServiceClient::new(channel),
            library: vss_client::Client::with_security(
                endpoints,
                vss_client::DEFAULT_CALL_TIMEOUT,
                security,
            )?,
        })
    }
}

fn key_of(keys: u64) -> String {
    if keys == 0 {
        String::new()
    } else {
        format!("k{}", fastrand::u64(..keys))
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` needs a unit: ms, s or m"))?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 10s or 1m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("`{text}`: the unit must be ms, s or m")),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One line, as the other binaries print errors: returning the error
    // from `main` would add `Caused by:` lists and, under RUST_BACKTRACE,
    // a backtrace for a refused connection.
    match bench().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn bench() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(cli.in_flight > 0, "--in-flight must be at least 1");
    if let Some(rate) = cli.rate {
        anyhow::ensure!(rate > 0.0, "--rate must be more than 0");
    }
    let security = cli.security.load()?;
    let (json, text) = match &cli.scenario {
        Scenario::Acquire(_) | Scenario::AcquireBatch(_) | Scenario::Rls { .. } => {
            let channels = connect(&cli, &security).await?;
            let summary = run(&cli, channels, &security).await?;
            (summary.json(), summary.text())
        }
        Scenario::Publish {
            slot,
            subscribers,
            processes,
        } => {
            raise_open_files_limit();
            let layout = layout(&cli, &security, *slot, *subscribers, *processes, false)?;
            let publisher = connect_one(&layout.endpoint, &security).await?;
            let until = Until::Time {
                warmup: cli.warmup,
                measured: cli.duration,
            };
            let summary = fanout::publish(&layout, publisher, until).await?;
            (summary.json(), summary.text())
        }
        Scenario::Connections {
            slot,
            clients,
            processes,
            server_pid,
            broadcasts,
        } => {
            let layout = layout(&cli, &security, *slot, *clients, *processes, true)?;
            let publisher = connect_one(&layout.endpoint, &security).await?;
            let summary = fanout::connections(&layout, *server_pid, publisher, *broadcasts).await?;
            (summary.json(), summary.text())
        }
        Scenario::Subscribers {
            slot,
            clients,
            id_prefix,
            own_connections,
            source,
        } => {
            let share = subscribers::Share {
                endpoint: first_endpoint(&cli)?.to_string(),
                slot: *slot,
                clients: *clients,
                connections: cli.connections,
                own_connections: *own_connections,
                source: *source,
                id_prefix: id_prefix.clone(),
            };
            return subscribers::serve(share, &security).await;
        }
    };
    match cli.output {
        Format::Json => println!("{json}"),
        Format::Text => println!("{text}"),
    }
    Ok(())
}

fn first_endpoint(cli: &Cli) -> anyhow::Result<&str> {
    cli.endpoints
        .first()
        .map(String::as_str)
        .context("--endpoints is empty")
}

fn layout(
    cli: &Cli,
    security: &Security,
    slot: u32,
    subscribers: usize,
    processes: usize,
    own_connections: bool,
) -> anyhow::Result<Layout> {
    anyhow::ensure!(subscribers > 0, "at least one subscriber is needed");
    anyhow::ensure!(processes > 0, "--processes must be at least 1");
    Ok(Layout {
        endpoint: first_endpoint(cli)?.to_string(),
        slot,
        subscribers,
        processes,
        connections: cli.connections,
        own_connections,
        // The token as read, so the subscriber processes need not read
        // its file again.
        security: SecurityArgs {
            token: security.token.clone(),
            token_file: None,
            ..cli.security.clone()
        },
    })
}

/// Raises the soft open-file limit to the hard one: a process holding
/// thousands of connections needs more than the usual 1,024. Failing only
/// means fewer connections fit, which the connecting code reports.
pub(crate) fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}

fn endpoint(at: &str) -> anyhow::Result<Endpoint> {
    let uri = if at.contains("://") {
        at.to_string()
    } else {
        format!("http://{at}")
    };
    Ok(Endpoint::from_shared(uri)
        .with_context(|| format!("endpoint {at}"))?
        .tcp_nodelay(true))
}

async fn connect_one(at: &str, security: &Security) -> anyhow::Result<Conn> {
    security
        .connect(endpoint(at)?)
        .await
        .with_context(|| format!("cannot connect to {at}"))
}

/// One channel (one HTTP/2 connection) per `--connections`, round-robin
/// over the endpoints, each connected before the run starts.
async fn connect(cli: &Cli, security: &Security) -> anyhow::Result<Vec<Conn>> {
    anyhow::ensure!(!cli.endpoints.is_empty(), "--endpoints is empty");
    let mut channels = Vec::new();
    for i in 0..cli.connections {
        channels.push(connect_one(&cli.endpoints[i % cli.endpoints.len()], security).await?);
    }
    Ok(channels)
}

/// What one request did.
enum Outcome {
    Granted,
    Refused,
    Failed,
}

async fn one(clients: &mut Clients, scenario: &Scenario) -> Outcome {
    match scenario {
        // Not request-per-call scenarios: `main` runs them on their own.
        Scenario::Publish { .. } | Scenario::Connections { .. } | Scenario::Subscribers { .. } => {
            Outcome::Failed
        }
        Scenario::Acquire(Acquires { slot, keys, tokens }) => {
            let req = AcquireRequest {
                slot: *slot,
                key: key_of(*keys),
                tokens: *tokens,
            };
            match clients.vss.acquire(req).await {
                Ok(r) if r.get_ref().granted > 0 => Outcome::Granted,
                Ok(_) => Outcome::Refused,
                Err(_) => Outcome::Failed,
            }
        }
        Scenario::AcquireBatch(Acquires { slot, keys, tokens }) => {
            let opts = vss_client::Acquire {
                key: Some(key_of(*keys)),
                tokens: *tokens,
            };
            match clients.library.acquire(*slot, opts).await {
                Ok(g) if g.granted > 0 => Outcome::Granted,
                Ok(_) => Outcome::Refused,
                Err(_) => Outcome::Failed,
            }
        }
        Scenario::Rls {
            domain,
            key,
            values,
        } => {
            let req = RateLimitRequest {
                domain: domain.clone(),
                descriptors: vec![RateLimitDescriptor {
                    entries: vec![Entry {
                        key: key.clone(),
                        value: format!("v{}", fastrand::u64(..(*values).max(1))),
                    }],
                    ..Default::default()
                }],
                hits_addend: 0,
            };
            match clients.rls.should_rate_limit(req).await {
                Ok(r) if r.get_ref().overall_code == i32::from(Code::Ok) => Outcome::Granted,
                Ok(_) => Outcome::Refused,
                Err(_) => Outcome::Failed,
            }
        }
    }
}

/// Per-worker tallies, merged at the end.
#[derive(Default)]
struct Tally {
    latencies: Latencies,
    ok: u64,
    granted: u64,
    errors: u64,
}

impl Tally {
    fn count(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Granted => {
                self.ok += 1;
                self.granted += 1;
            }
            Outcome::Refused => self.ok += 1,
            // Failed calls are counted, not timed: their latency is the
            // time to fail, which says nothing about serving.
            Outcome::Failed => {
                self.errors += 1;
                return;
            }
        }
        self.latencies.record(latency);
    }
}

async fn run(cli: &Cli, channels: Vec<Conn>, security: &Security) -> anyhow::Result<Summary> {
    let start = Instant::now();
    let measure_from = start + cli.warmup;
    let end = measure_from + cli.duration;
    let mut workers: JoinSet<Tally> = JoinSet::new();
    // Open loop: one thread paces the requests of every connection.
    let mut lanes = Vec::new();
    let mut pacer = None;
    if let Some(rate) = cli.rate {
        let mut senders = Vec::new();
        for _ in 0..channels.len() {
            let (tx, rx) = tokio::sync::mpsc::channel(cli.in_flight.max(64));
            senders.push(tx);
            lanes.push(rx);
        }
        let (start, end) = (start.into_std(), end.into_std());
        pacer = Some(tokio::task::spawn_blocking(move || {
            pace(rate, start, end, &senders);
        }));
    }
    let mut lanes = lanes.into_iter();
    for channel in channels {
        let client = Clients::new(channel, &cli.endpoints, security)?;
        match lanes.next() {
            None => {
                for _ in 0..cli.in_flight {
                    let (mut client, scenario) = (client.clone(), cli.scenario.clone());
                    workers.spawn(async move {
                        let mut tally = Tally::default();
                        while Instant::now() < end {
                            let sent = Instant::now();
                            let outcome = one(&mut client, &scenario).await;
                            if sent >= measure_from {
                                tally.count(outcome, sent.elapsed());
                            }
                        }
                        tally
                    });
                }
            }
            Some(due) => {
                workers.spawn(open_loop(
                    client,
                    cli.scenario.clone(),
                    due,
                    cli.in_flight,
                    measure_from,
                ));
            }
        }
    }
    let mut total = Tally::default();
    if let Some(pacer) = pacer {
        pacer.await?;
    }
    while let Some(done) = workers.join_next().await {
        if let Ok(t) = done {
            total.latencies.add(&t.latencies);
            total.ok += t.ok;
            total.granted += t.granted;
            total.errors += t.errors;
        }
    }
    Ok(Summary {
        scenario: scenario_name(&cli.scenario),
        connections: cli.connections,
        in_flight: cli.in_flight,
        rate: cli.rate,
        measured: cli.duration,
        ok: total.ok,
        granted: total.granted,
        errors: total.errors,
        latencies: total.latencies,
    })
}

/// Hands out due times, `rate` per second in all, round-robin over the
/// lanes, from `start` until `end`. A thread sleeping between requests
/// keeps the schedule to tens of microseconds; Tokio's timers tick every
/// millisecond, and latencies count from the due time, so pacing with
/// them would add up to a millisecond of the load generator's own to
/// every figure.
fn pace(
    rate: f64,
    start: std::time::Instant,
    end: std::time::Instant,
    lanes: &[tokio::sync::mpsc::Sender<Instant>],
) {
    let mut n = 0u64;
    loop {
        let due = start + Duration::from_secs_f64(n as f64 / rate);
        if due >= end {
            return;
        }
        let now = std::time::Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        // A full lane waits: the request still counts from its due time.
        let lane = &lanes[(n % lanes.len() as u64) as usize];
        if lane.blocking_send(Instant::from_std(due)).is_err() {
            return;
        }
        n += 1;
    }
}

/// Sends a request for each due time received, with at most `in_flight`
/// outstanding; a request that waits for room still counts from its due
/// time.
async fn open_loop(
    client: Clients,
    scenario: Scenario,
    mut due: tokio::sync::mpsc::Receiver<Instant>,
    in_flight: usize,
    measure_from: Instant,
) -> Tally {
    let room = Arc::new(Semaphore::new(in_flight));
    let mut requests: JoinSet<(Instant, Outcome, Duration)> = JoinSet::new();
    let mut tally = Tally::default();
    while let Some(due) = due.recv().await {
        let Ok(permit) = room.clone().acquire_owned().await else {
            break;
        };
        let (mut client, scenario) = (client.clone(), scenario.clone());
        requests.spawn(async move {
            let outcome = one(&mut client, &scenario).await;
            drop(permit);
            (due, outcome, due.elapsed())
        });
        while let Some(Ok((due, outcome, latency))) = requests.try_join_next() {
            if due >= measure_from {
                tally.count(outcome, latency);
            }
        }
    }
    while let Some(Ok((due, outcome, latency))) = requests.join_next().await {
        if due >= measure_from {
            tally.count(outcome, latency);
        }
    }
    tally
}

fn scenario_name(s: &Scenario) -> String {
    match s {
        Scenario::Acquire(Acquires { slot, keys, .. }) if *keys > 0 => {
            format!("acquire slot {slot} over {keys} keys")
        }
        Scenario::Acquire(Acquires { slot, .. }) => format!("acquire slot {slot}"),
        Scenario::AcquireBatch(Acquires { slot, keys, .. }) => {
            format!("acquire-batch (vss-client) slot {slot} over {keys} keys")
        }
        Scenario::Rls {
            domain,
            key,
            values,
        } => format!("rls domain {domain} {key} over {values} values"),
        Scenario::Publish { slot, .. } => format!("publish slot {slot}"),
        Scenario::Connections { .. } => "connections".into(),
        Scenario::Subscribers { .. } => "subscribers".into(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_token_and_tls_flags_go_with_every_scenario() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-0123456789\n").expect("write");
        let cli = Cli::try_parse_from([
            "vss-bench".as_ref(),
            "-c".as_ref(),
            "64".as_ref(),
            "acquire".as_ref(),
            "--slot".as_ref(),
            "1".as_ref(),
            "--token-file".as_ref(),
            token.as_os_str(),
        ])
        .expect("parses");
        let security = cli.security.load().expect("reads the token file");
        assert_eq!(security.token.as_deref(), Some("s3cret-0123456789"));
        assert!(security.ca_pem.is_none());
        let missing = Cli::try_parse_from([
            "vss-bench",
            "--tls-ca",
            "/nonexistent/ca.pem",
            "acquire-batch",
        ])
        .expect("parses");
        let e = missing.security.load().expect_err("no such file");
        assert!(
            e.to_string().starts_with("--tls-ca /nonexistent/ca.pem: "),
            "{e}"
        );
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert!(duration("10").is_err());
        assert!(duration("1h").is_err());
    }
}
