//! The client conformance suite (`client/conformance/scenarios.json`, its
//! format in `client/conformance/README.md`) run with `vss-client`, the
//! Rust client, against 3 real `vss-runtime` processes on loopback.
//!
//! The binary is `VSS_RUNTIME_BIN`, else the one cargo built beside this
//! test (`cargo test --workspace` builds it); with neither, the suite fails
//! and says so. The Go client runs the same file
//! (`client/go/conformance`), and so does the Python client.
//!
//! One cluster serves every scenario, in file order; every process is
//! started here and killed by its own handle (SIGKILL in the failover
//! scenarios, on purpose) when the run ends, fails or panics.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use futures_util::future::join_all;
use serde_json::{Map, Value, json};
use tokio::sync::{Mutex, watch};
use vss_client::{Acquire, Client, ClientError, RoutingTable};
use vss_e2e::Process;
use vss_e2e::process::binary;

const RUNNER: &str = "rust client";
/// Longest the whole suite may take.
const WHOLE_RUN: Duration = Duration::from_secs(300);

fn main() -> Result<()> {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Every scenario bounds its own waits; this bounds the whole run.
    let outcome = rt.block_on(async {
        tokio::time::timeout(WHOLE_RUN, run())
            .await
            .unwrap_or_else(|_| Err(anyhow!("the suite did not finish within {WHOLE_RUN:?}")))
    });
    match outcome {
        Ok((passed, failed)) => {
            println!(
                "conformance ({RUNNER}): {passed} passed, {failed} failed ({:.1?})",
                started.elapsed()
            );
            if failed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Err(e) => {
            println!(
                "conformance ({RUNNER}): 0 passed, 1 failed ({:.1?}): {e:#}",
                started.elapsed()
            );
            std::process::exit(1);
        }
    }
}

async fn run() -> Result<(usize, usize)> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("e2e has a parent")?
        .to_path_buf();
    let bin = binary("VSS_RUNTIME_BIN", "vss-runtime").context(
        "the conformance suite needs a vss-runtime binary: set VSS_RUNTIME_BIN \
         (or build it: cargo build -p vss-runtime)",
    )?;
    let dir = repo.join("client/conformance");
    let run_id = format!(
        "rs-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let text = std::fs::read_to_string(dir.join("scenarios.json"))
        .context("reading client/conformance/scenarios.json")?
        .replace("{run}", &run_id);
    let suite: Value = serde_json::from_str(&text).context("client/conformance/scenarios.json")?;
    ensure!(
        suite["format"] == 1,
        "scenarios.json format {}: this runner reads format 1",
        suite["format"]
    );
    let config = dir.join(suite["config"].as_str().context("`config`")?);
    let slots = std::fs::read_to_string(&config)?.matches("- id:").count();
    let instances = suite["instances"].as_u64().context("`instances`")? as usize;
    let logs = repo.join("target/conformance-rust");
    if logs.exists() {
        std::fs::remove_dir_all(&logs)?;
    }
    let cluster = Cluster::start(bin.clone(), config, instances, logs)?;
    let t0 = Instant::now();
    if let Err(e) = cluster.settled(Duration::from_secs(30), slots).await {
        bail!("{e:#}\n{}", cluster.log_tails(20));
    }
    println!(
        "cluster of {instances} ({}) settled in {:.1?}",
        bin.display(),
        t0.elapsed()
    );
    let mut runner = Runner {
        client: Client::new(&cluster.endpoints())?,
        cluster,
        run_id,
        slots,
    };
    let (mut passed, mut failed) = (0, 0);
    for scenario in suite["scenarios"].as_array().context("`scenarios`")? {
        let name = scenario["name"].as_str().unwrap_or("?");
        let began = Instant::now();
        match runner.scenario(scenario).await {
            Ok(()) => {
                passed += 1;
                println!("scenario {name} ... ok ({:.1?})", began.elapsed());
            }
            Err(e) => {
                failed += 1;
                println!(
                    "scenario {name} ... FAILED ({:.1?}): {e:#}",
                    began.elapsed()
                );
            }
        }
    }
    if failed > 0 {
        println!("instance logs:\n{}", runner.cluster.log_tails(15));
    }
    runner.cluster.stop_all().await;
    Ok((passed, failed))
}

struct Node {
    id: String,
    grpc: String,
    mesh: String,
    http: String,
    process: Option<Process>,
}

/// `vss-runtime` processes on loopback, started and killed here.
struct Cluster {
    bin: PathBuf,
    config: PathBuf,
    peers: String,
    logs: PathBuf,
    nodes: Vec<Node>,
}

fn free_addr() -> Result<String> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string())
}

impl Cluster {
    fn start(bin: PathBuf, config: PathBuf, n: usize, logs: PathBuf) -> Result<Self> {
        let mut nodes = Vec::new();
        for i in 0..n {
            nodes.push(Node {
                id: format!("vss-{i}"),
                grpc: free_addr()?,
                mesh: free_addr()?,
                http: free_addr()?,
                process: None,
            });
        }
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.mesh))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            bin,
            config,
            peers,
            logs,
            nodes,
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    /// (Re)starts instance `i` on its ports.
    fn spawn(&mut self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("--config")
            .arg(&self.config)
            .args(["--id", &node.id])
            .args(["--listen", &node.grpc])
            .args(["--mesh-listen", &node.mesh])
            .args(["--http-listen", &node.http])
            .args(["--peers", &self.peers])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let process = Process::spawn(&node.id, cmd, &self.logs)?;
        self.nodes[i].process = Some(process);
        Ok(())
    }

    /// SIGKILLs instance `i` (the process started here).
    async fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            p.kill().await;
        }
    }

    async fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i).await;
        }
    }

    fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.grpc.clone()).collect()
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    fn log_tails(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .filter_map(|n| n.process.as_ref().map(|p| p.log_tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until every instance holds the same table, with every
    /// instance a member and a route for each of `slots` slots.
    async fn settled(&self, within: Duration, slots: usize) -> Result<RoutingTable> {
        let client = Client::with_timeout(&self.endpoints(), Duration::from_secs(1))?;
        let n = self.nodes.len();
        vss_e2e::wait::until(
            "the routing table to settle",
            within,
            Duration::from_millis(100),
            || async {
                let statuses = client.status().await;
                let mut first: Option<RoutingTable> = None;
                for (endpoint, status) in statuses {
                    let table = status
                        .map_err(|e| anyhow!("{endpoint}: {e}"))?
                        .routing
                        .with_context(|| format!("{endpoint}: no table yet"))?;
                    ensure!(
                        table.epoch >= 1 && table.members.len() == n && table.routes.len() == slots,
                        "{endpoint}: epoch {}, {} members, {} routes",
                        table.epoch,
                        table.members.len(),
                        table.routes.len()
                    );
                    match &first {
                        None => first = Some(table),
                        Some(f) => ensure!(*f == table, "{endpoint} holds another table"),
                    }
                }
                Ok(first)
            },
        )
        .await
    }
}

struct Runner {
    cluster: Cluster,
    client: Client,
    run_id: String,
    slots: usize,
}

fn u(v: &Value, name: &str) -> Result<u64> {
    v[name]
        .as_u64()
        .with_context(|| format!("`{name}` must be a number, got {}", v[name]))
}

impl Runner {
    async fn scenario(&mut self, s: &Value) -> Result<()> {
        let params = &s["params"];
        let expect = &s["expect"];
        match s["kind"].as_str().unwrap_or("") {
            "steps" => self.steps(s["steps"].as_array().context("`steps`")?).await,
            "broadcast_fanout" => self.broadcast_fanout(params, expect).await,
            "multicast_deregistration" => self.multicast_deregistration(params, expect).await,
            "random_single_delivery" => self.random_single_delivery(params, expect).await,
            "ticks" => self.ticks(params, expect).await,
            "subscription_reopens_after_restart" => self.subscription_reopens(params, expect).await,
            "failover" => self.failover(params, expect).await,
            other => bail!("unknown scenario kind {other:?}: this runner must learn it"),
        }
    }

    async fn steps(&self, steps: &[Value]) -> Result<()> {
        let mut last_reset = 0u64;
        for (i, step) in steps.iter().enumerate() {
            if let Some(wait) = step.get("wait_reset") {
                let plus = wait["plus_ms"].as_u64().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(last_reset + plus)).await;
                continue;
            }
            if let Some(ms) = step.get("sleep_ms").and_then(Value::as_u64) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                continue;
            }
            let verb = step["call"].as_str().context("`call`")?;
            let args = &step["args"];
            let clients = if step["via"] == "each" {
                self.cluster
                    .endpoints()
                    .iter()
                    .map(|e| Client::new(&[e]))
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                vec![self.client.clone()]
            };
            let repeat = step["repeat"].as_u64().unwrap_or(1).max(1) as usize;
            for (ci, client) in clients.iter().enumerate() {
                let outcomes: Vec<Result<Value, ClientError>> = if step["concurrent"] == true {
                    let calls = (0..repeat).map(|_| call(client, verb, args));
                    join_all(calls).await
                } else {
                    let mut out = Vec::new();
                    for _ in 0..repeat {
                        out.push(call(client, verb, args).await);
                    }
                    out
                };
                for (k, outcome) in outcomes.into_iter().enumerate() {
                    if let Ok(reply) = &outcome
                        && let Some(r) = reply.get("reset_ms").and_then(Value::as_u64)
                    {
                        last_reset = r;
                    }
                    check(step, outcome).with_context(|| {
                        format!("step {i} ({verb} {args}), repeat {k}, client {ci}")
                    })?;
                }
            }
        }
        Ok(())
    }

    async fn broadcast_fanout(&self, params: &Value, expect: &Value) -> Result<()> {
        let slot = u(params, "slot")? as u32;
        let n = u(params, "subscribers")? as usize;
        // Four clients share the subscriptions (each: one connection per
        // instance), as several processes of an application would.
        let clients = (0..4)
            .map(|_| Client::new(&self.cluster.endpoints()))
            .collect::<Result<Vec<_>, _>>()?;
        let opening = (0..n).map(|i| {
            let client = clients[i % clients.len()].clone();
            let id = format!("{}/sub-{i}", self.run_id);
            async move { Listener::open(&client, id, slot).await }
        });
        let mut listeners = Vec::new();
        let mut failure = None;
        for l in join_all(opening).await {
            match l {
                Ok(l) => listeners.push(l),
                Err(e) => failure = Some(e),
            }
        }
        let result = async {
            if let Some(e) = failure {
                return Err(e);
            }
            tokio::time::sleep(Duration::from_millis(u(params, "settle_ms")?)).await;
            let mut payloads = Vec::new();
            for j in 0..u(params, "messages")? {
                let payload = format!("{}/m{j}", self.run_id);
                let began = Instant::now();
                let p = self
                    .client
                    .publish(
                        slot,
                        payload.as_bytes(),
                        &format!("{}/publisher", self.run_id),
                    )
                    .await
                    .with_context(|| format!("publish {j}"))?;
                println!(
                    "  publish {j}: delivered {}, failed {} in {:.0?}",
                    p.delivered,
                    p.failed,
                    began.elapsed()
                );
                ensure!(
                    u64::from(p.delivered) == u(expect, "delivered")?
                        && u64::from(p.failed) == u(expect, "failed")?,
                    "publish {j}: delivered {}, failed {}; expected {} and {}",
                    p.delivered,
                    p.failed,
                    expect["delivered"],
                    expect["failed"]
                );
                payloads.push(payload);
            }
            wait_seen(
                &listeners,
                &payloads,
                u(expect, "copies_seen_by_application")?,
            )
            .await
        }
        .await;
        close_all(listeners).await;
        result
    }

    async fn multicast_deregistration(&self, params: &Value, expect: &Value) -> Result<()> {
        let slot = u(params, "slot")? as u32;
        let c = &self.client;
        let mut live = Vec::new();
        let result = async {
            for i in 0..u(params, "live")? {
                let id = format!("{}/live-{i}", self.run_id);
                live.push(Listener::open(c, id.clone(), slot).await?);
                c.register(slot, &id).await?;
            }
            for i in 0..u(params, "absent")? {
                c.register(slot, &format!("{}/absent-{i}", self.run_id))
                    .await?;
            }
            tokio::time::sleep(Duration::from_millis(u(params, "settle_ms")?)).await;
            let tries = u(params, "dereg_tries")?;
            let mut payloads = Vec::new();
            for j in 0..=tries {
                let want = if j == tries {
                    &expect["after_deregistration"]
                } else {
                    &expect["before_deregistration"]
                };
                let payload = format!("{}/mc{j}", self.run_id);
                let p = c.publish(slot, payload.as_bytes(), "").await?;
                println!(
                    "  publish {j}: delivered {}, failed {}",
                    p.delivered, p.failed
                );
                ensure!(
                    u64::from(p.delivered) == u(want, "delivered")?
                        && u64::from(p.failed) == u(want, "failed")?,
                    "publish {j}: delivered {}, failed {}; expected {want}",
                    p.delivered,
                    p.failed
                );
                payloads.push(payload);
            }
            wait_seen(&live, &payloads, u(expect, "copies_seen_by_application")?).await
        }
        .await;
        for l in &live {
            let _ = c.deregister(slot, &l.id).await;
        }
        close_all(live).await;
        result
    }

    async fn random_single_delivery(&self, params: &Value, expect: &Value) -> Result<()> {
        let slot = u(params, "slot")? as u32;
        let c = &self.client;
        let mut members = Vec::new();
        let result = async {
            for i in 0..u(params, "members")? {
                let id = format!("{}/member-{i}", self.run_id);
                members.push(Listener::open(c, id.clone(), slot).await?);
                c.register(slot, &id).await?;
            }
            tokio::time::sleep(Duration::from_millis(u(params, "settle_ms")?)).await;
            let mut takers = BTreeMap::new();
            for j in 0..u(params, "messages")? {
                let payload = format!("{}/r{j}", self.run_id);
                let p = c.publish(slot, payload.as_bytes(), "").await?;
                ensure!(
                    u64::from(p.delivered) == u(expect, "delivered")?
                        && u64::from(p.failed) == u(expect, "failed")?,
                    "publish {j}: delivered {}, failed {}; expected {} and {}",
                    p.delivered,
                    p.failed,
                    expect["delivered"],
                    expect["failed"]
                );
                let taker = p.taken_by.unwrap_or_default();
                ensure!(
                    members.iter().any(|m| m.id == taker),
                    "publish {j}: taken by {taker:?}, not a member"
                );
                takers.insert(payload, taker);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            for (payload, taker) in &takers {
                for m in &members {
                    let want = usize::from(m.id == *taker);
                    let got = m.count(payload).await;
                    ensure!(
                        got == want,
                        "{payload:?} (taken by {taker}): {}'s application saw it {got} times, expected {want}",
                        m.id
                    );
                }
            }
            let distinct: BTreeSet<&String> = takers.values().collect();
            println!(
                "  {} messages over {} distinct members",
                takers.len(),
                distinct.len()
            );
            ensure!(
                distinct.len() as u64 >= u(expect, "min_distinct_takers")?,
                "{} messages went to {} distinct members, expected at least {}",
                takers.len(),
                distinct.len(),
                expect["min_distinct_takers"]
            );
            Ok(())
        }
        .await;
        for m in &members {
            let _ = c.deregister(slot, &m.id).await;
        }
        close_all(members).await;
        result
    }

    async fn ticks(&self, params: &Value, expect: &Value) -> Result<()> {
        let (count, interval) = (u(params, "count")?, u(params, "interval_ms")?);
        let limit = Duration::from_millis(count * interval) + Duration::from_secs(5);
        let mut watch = self.client.watch_ticks(u(params, "slot")? as u32).await?;
        tokio::time::timeout(limit, async {
            let mut last = None;
            for k in 0..count {
                let tick = watch
                    .next()
                    .await
                    .with_context(|| format!("tick {k}: the watch ended"))?;
                if expect["consecutive"] == true
                    && let Some(l) = last
                {
                    ensure!(tick.number == l + 1, "tick {} after {l}", tick.number);
                }
                if expect["due_ms_is_number_times_interval"] == true {
                    ensure!(
                        tick.due_ms == tick.number * interval,
                        "tick {} due at {}, expected {}",
                        tick.number,
                        tick.due_ms,
                        tick.number * interval
                    );
                }
                last = Some(tick.number);
            }
            Ok(())
        })
        .await
        .with_context(|| format!("{count} ticks did not come within {limit:?}"))?
    }

    async fn subscription_reopens(&mut self, params: &Value, expect: &Value) -> Result<()> {
        let slot = u(params, "slot")? as u32;
        let victim = u(params, "instance")? as usize;
        ensure!(
            victim < self.cluster.nodes.len(),
            "instance {victim}: the cluster has {}",
            self.cluster.nodes.len()
        );
        let ms = |name: &str| u(params, name).map(Duration::from_millis);
        let client = Client::new(&self.cluster.endpoints())?;
        let listener = Listener::open(&client, format!("{}/reopen", self.run_id), slot).await?;
        let result = async {
            tokio::time::sleep(ms("settle_ms")?).await;
            self.cluster.kill(victim).await;
            self.cluster.spawn(victim)?;
            self.cluster
                .settled(ms("rejoin_timeout_ms")?, self.slots)
                .await
                .context("the restarted instance did not rejoin")?;
            let want = u(expect, "restarted_instance_connected_clients_min")? as f64;
            let http = self.cluster.nodes[victim].http.clone();
            let id = self.cluster.nodes[victim].id.clone();
            let connected = vss_e2e::wait::until(
                "the subscription's stream to the restarted instance",
                ms("reopen_timeout_ms")?,
                Duration::from_millis(50),
                || {
                    let (http, id) = (http.clone(), id.clone());
                    async move {
                        let n = metric(&http, "vss_connected_clients").await?;
                        ensure!(
                            n >= want,
                            "{id} reports vss_connected_clients {n}, expected at least {want}"
                        );
                        Ok(Some(n))
                    }
                },
            )
            .await?;
            println!(
                "  {} counts {connected} connected client(s) after its restart",
                self.cluster.nodes[victim].id
            );
            let mut payloads = Vec::new();
            for j in 0..u(params, "messages")? {
                let payload = format!("{}/reopen{j}", self.run_id);
                let p = self
                    .client
                    .publish(
                        slot,
                        payload.as_bytes(),
                        &format!("{}/publisher", self.run_id),
                    )
                    .await
                    .with_context(|| format!("publish {j}"))?;
                ensure!(
                    u64::from(p.delivered) == u(expect, "delivered")?
                        && u64::from(p.failed) == u(expect, "failed")?,
                    "publish {j}: delivered {}, failed {}; expected {} and {}",
                    p.delivered,
                    p.failed,
                    expect["delivered"],
                    expect["failed"]
                );
                payloads.push(payload);
            }
            wait_seen(
                std::slice::from_ref(&listener),
                &payloads,
                u(expect, "copies_seen_by_application")?,
            )
            .await
        }
        .await;
        close_all(vec![listener]).await;
        result
    }

    async fn failover(&mut self, params: &Value, expect: &Value) -> Result<()> {
        let slot = u(params, "slot")? as u32;
        let key = params["key"].as_str().context("`key`")?.to_string();
        let ms = |name: &str| u(params, name).map(Duration::from_millis);
        let table = self
            .cluster
            .settled(ms("rejoin_timeout_ms")?, self.slots)
            .await?;
        let target = match params["target"].as_str() {
            Some("leader") => table.leader.clone(),
            Some("owner") => table
                .routes
                .iter()
                .find(|r| r.slot == slot)
                .map(|r| r.owner.clone())
                .with_context(|| format!("no route for slot {slot}"))?,
            other => bail!("unknown failover target {other:?}"),
        };
        let victim = self
            .cluster
            .index(&target)
            .with_context(|| format!("{target:?} is not an instance of this cluster"))?;
        let client = Client::new(&self.cluster.endpoints())?;
        let calls = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let granted = Arc::new(AtomicU64::new(0));
        let first_error = Arc::new(Mutex::new(None::<String>));
        let running = Arc::new(AtomicBool::new(true));
        let mut workers = Vec::new();
        for _ in 0..u(params, "concurrency")? {
            let (client, calls, failed, granted, first_error, running, key) = (
                client.clone(),
                calls.clone(),
                failed.clone(),
                granted.clone(),
                first_error.clone(),
                running.clone(),
                key.clone(),
            );
            workers.push(tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    calls.fetch_add(1, Ordering::Relaxed);
                    let asked = Acquire {
                        key: Some(key.clone()),
                        tokens: Some(1),
                    };
                    match client.acquire(slot, asked).await {
                        Ok(g) => {
                            granted.fetch_add(u64::from(g.granted), Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            first_error.lock().await.get_or_insert(e.to_string());
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(ms("before_kill_ms")?).await;
        let at_kill = calls.load(Ordering::Relaxed);
        self.cluster.kill(victim).await;
        tokio::time::sleep(ms("after_kill_ms")?).await;
        let at_restart = calls.load(Ordering::Relaxed);
        self.cluster.spawn(victim)?;
        let rejoined = self
            .cluster
            .settled(ms("rejoin_timeout_ms")?, self.slots)
            .await;
        tokio::time::sleep(ms("after_restart_ms")?).await;
        running.store(false, Ordering::Relaxed);
        for w in workers {
            w.await?;
        }
        let (n, f) = (
            calls.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        );
        println!(
            "  conformance ({RUNNER}) failover: SIGKILL of the {} ({target}): {n} calls ({at_kill} before the kill, {} while it was down, {} after its restart), {f} failed, {} tokens granted",
            params["target"].as_str().unwrap_or("?"),
            at_restart - at_kill,
            n - at_restart,
            granted.load(Ordering::Relaxed)
        );
        rejoined.context("the restarted instance did not rejoin")?;
        ensure!(
            f == u(expect, "failed_calls")?,
            "{f} failed calls (first: {:?}), expected {}",
            first_error.lock().await,
            expect["failed_calls"]
        );
        ensure!(
            n >= u(expect, "min_calls")?,
            "{n} calls, expected at least {}",
            expect["min_calls"]
        );
        Ok(())
    }
}

/// A subscription whose application counts what it sees (by payload) and
/// acknowledges every delivery.
struct Listener {
    id: String,
    seen: Arc<Mutex<HashMap<Vec<u8>, usize>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn open(client: &Client, id: String, slot: u32) -> Result<Self> {
        let mut sub = client
            .subscribe(&id, &[slot])
            .await
            .with_context(|| format!("subscribe {id}"))?;
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let (stop, mut stopped) = watch::channel(false);
        let counts = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    d = sub.next() => {
                        let Some(d) = d else { break };
                        *counts.lock().await.entry(d.payload.clone()).or_insert(0) += 1;
                        let _ = d.ack().await;
                    }
                    _ = stopped.changed() => break,
                }
            }
            sub.close().await;
        });
        Ok(Self {
            id,
            seen,
            stop,
            task,
        })
    }

    async fn count(&self, payload: &str) -> usize {
        self.seen
            .lock()
            .await
            .get(payload.as_bytes())
            .copied()
            .unwrap_or(0)
    }
}

async fn close_all(listeners: Vec<Listener>) {
    for l in &listeners {
        let _ = l.stop.send(true);
    }
    for l in listeners {
        let _ = l.task.await;
    }
}

/// Waits (at most 5 s) until every listener saw every payload, then
/// 300 ms more for duplicates; each must have seen each exactly `want`
/// times.
async fn wait_seen(listeners: &[Listener], payloads: &[String], want: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    'wait: while Instant::now() < deadline {
        for l in listeners {
            for p in payloads {
                if l.count(p).await == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue 'wait;
                }
            }
        }
        break;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for l in listeners {
        for p in payloads {
            let got = l.count(p).await as u64;
            ensure!(
                got == want,
                "{}'s application saw {p:?} {got} times, expected {want}",
                l.id
            );
        }
    }
    Ok(())
}

/// One unlabelled value of the `/metrics` an instance serves at `addr`.
async fn metric(addr: &str, name: &str) -> Result<f64> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        anyhow::Ok(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(1), get)
        .await
        .with_context(|| format!("GET http://{addr}/metrics: no answer in 1 s"))??;
    body.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.trim().parse().ok())
        .with_context(|| format!("no {name} in http://{addr}/metrics"))
}

/// A string argument; `{"repeat": "k", "times": N}` included.
fn string(args: &Value, name: &str) -> String {
    match &args[name] {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("repeat")
            .and_then(Value::as_str)
            .unwrap_or("")
            .repeat(o.get("times").and_then(Value::as_u64).unwrap_or(0) as usize),
        _ => String::new(),
    }
}

/// One call through `vss-client`; the reply as the suite names its fields.
async fn call(client: &Client, verb: &str, args: &Value) -> Result<Value, ClientError> {
    let slot = args["slot"].as_u64().unwrap_or(0) as u32;
    let num = |name: &str| args[name].as_u64();
    Ok(match verb {
        "acquire" => {
            let key = string(args, "key");
            let g = client
                .acquire(
                    slot,
                    Acquire {
                        key: (!key.is_empty()).then_some(key),
                        tokens: num("tokens").map(|t| t as u32),
                    },
                )
                .await?;
            json!({"granted": g.granted, "remaining": g.remaining, "reset_ms": g.reset_ms})
        }
        "publish" => {
            let p = client
                .publish(
                    slot,
                    string(args, "message").as_bytes(),
                    &string(args, "client_id"),
                )
                .await?;
            json!({"delivered": p.delivered, "failed": p.failed, "taken_by": p.taken_by.unwrap_or_default()})
        }
        "register" => {
            client.register(slot, &string(args, "client_id")).await?;
            json!({})
        }
        "deregister" => {
            client.deregister(slot, &string(args, "client_id")).await?;
            json!({})
        }
        "increment" | "decrement" | "read_counter" => {
            let amount = num("amount").unwrap_or(1);
            let v = match verb {
                "increment" => client.increment(slot, amount).await?,
                "decrement" => client.decrement(slot, amount).await?,
                _ => client.read_counter(slot).await?,
            };
            json!({"value": v.value, "increments": v.increments, "decrements": v.decrements, "applied": v.applied})
        }
        "set" => {
            let w = client
                .set(slot, &string(args, "key"), string(args, "value").as_bytes())
                .await?;
            json!({"existed": w.existed})
        }
        "delete" => {
            let w = client.delete(slot, &string(args, "key")).await?;
            json!({"existed": w.existed})
        }
        "get" => {
            let g = client.get(slot, &string(args, "key")).await?;
            json!({"found": g.found, "value": String::from_utf8_lossy(&g.value), "deleted": g.deleted})
        }
        "list_keys" => {
            let l = client
                .list_keys(
                    slot,
                    &string(args, "prefix"),
                    num("limit").unwrap_or(0) as u32,
                )
                .await?;
            let keys: Vec<String> = l.entries.into_iter().map(|e| e.key).collect();
            json!({"keys": keys, "truncated": l.truncated})
        }
        "announce" => {
            let ttl = num("ttl_ms").map(Duration::from_millis);
            let a = client
                .announce(slot, &string(args, "app"), &string(args, "address"), ttl)
                .await?;
            json!({"added": a.added})
        }
        "withdraw" => {
            let w = client
                .withdraw(slot, &string(args, "app"), &string(args, "address"))
                .await?;
            json!({"removed": w.removed})
        }
        "list_services" => {
            let services: Vec<String> = client
                .services(slot, &string(args, "app"))
                .await?
                .into_iter()
                .map(|s| format!("{} {}", s.app, s.address))
                .collect();
            json!({"services": services})
        }
        other => {
            return Err(ClientError::InvalidEndpoint {
                endpoint: String::new(),
                reason: format!("unknown call {other:?}: this runner must learn it"),
            });
        }
    })
}

/// Compares a call's outcome with the step's `expect` or `expect_error`.
fn check(step: &Value, outcome: Result<Value, ClientError>) -> Result<()> {
    if let Some(want) = step.get("expect_error") {
        let (code, contains) = (
            want["code"].as_str().unwrap_or(""),
            want["message_contains"].as_str().unwrap_or(""),
        );
        return match outcome {
            Ok(reply) => bail!("expected {code} ({contains:?}), got a reply {reply}"),
            Err(ClientError::Server {
                code: got, message, ..
            }) => {
                let name = code_name(got);
                ensure!(
                    name == code && message.contains(contains),
                    "expected {code} containing {contains:?}, got {name}: {message:?}"
                );
                Ok(())
            }
            Err(e) => bail!("expected {code} from the server, got {e}"),
        };
    }
    let reply = outcome.map_err(|e| anyhow!("call failed: {e}"))?;
    let empty = Map::new();
    for (field, want) in step["expect"].as_object().unwrap_or(&empty) {
        let got = reply
            .get(field)
            .with_context(|| format!("the reply has no field {field:?} (reply {reply})"))?;
        ensure!(
            matches(field, want, got),
            "{field}: expected {want}, got {got} (reply {reply})"
        );
    }
    Ok(())
}

fn matches(field: &str, want: &Value, got: &Value) -> bool {
    match want {
        Value::Object(bounds) => {
            let Some(g) = got.as_f64() else { return false };
            bounds
                .get("min")
                .and_then(Value::as_f64)
                .is_none_or(|lo| g >= lo)
                && bounds
                    .get("max")
                    .and_then(Value::as_f64)
                    .is_none_or(|hi| g <= hi)
        }
        Value::Number(n) => got.as_f64() == n.as_f64(),
        Value::Array(items) if field == "services" => {
            let set = |v: &[Value]| v.iter().map(Value::to_string).collect::<BTreeSet<_>>();
            got.as_array().is_some_and(|g| set(g) == set(items))
        }
        _ => want == got,
    }
}

/// The google.rpc.Code name of `code`, as the suite writes it.
fn code_name(code: vss_client::Code) -> String {
    use vss_client::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
    .to_string()
}
