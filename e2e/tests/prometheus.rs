//! The chart's alerts and dashboard against a real Prometheus scraping a
//! real local cluster.
//!
//! Runs only with `VSS_PROMETHEUS_BIN` (the `prometheus` binary; `promtool`
//! is taken from the same folder). Without it, it prints that nothing ran
//! and exits 0 with no passes claimed. With it:
//!
//! 1. renders the chart with Helm's own engine (`.ci/render_monitoring.py`,
//!    the helm-python-sdk of `.ci/check-chart`) with
//!    `e2e/testdata/prometheus-values.yaml` (short `for:`) and runs
//!    `promtool check rules` on the PrometheusRule's rules as rendered;
//! 2. starts 3 `vss-runtime` processes as a cluster on loopback
//!    (`VSS_RUNTIME_BIN`, else the one cargo built; `examples/slots.yaml`)
//!    and Prometheus scraping and evaluating every second, with the labels
//!    the chart's PodMonitor gives (`job`, `namespace`, `pod`,
//!    `vss_cluster`);
//! 3. drives acquires (granted, refused, forwarded, a bad key, an
//!    unconfigured slot) and a broadcast publish through `vss-client`;
//! 4. asserts through Prometheus's HTTP API that every instance is `up`,
//!    every rule evaluates without error, every dashboard query and every
//!    alert expression returns series (an alert whose condition is false,
//!    as all are on a healthy cluster, is checked through its left side:
//!    the query before the comparison with its threshold);
//! 5. SIGKILLs one instance and waits for `VssInstanceDown` (and
//!    `VssPeerUnreachable`) to fire for it.
//!
//! Every step has a deadline; every process is started here and killed by
//! its own handle when the test ends, fails or panics.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use vss_client::{Acquire, Client};
use vss_e2e::process::binary;
use vss_e2e::{Process, wait};

const ENABLE_VAR: &str = "VSS_PROMETHEUS_BIN";
/// What the chart's PodMonitor sets `job` to (`monitoring.runtimeJob`).
const JOB: &str = "vss-runtime";
/// Stand-ins for the labels Kubernetes service discovery adds.
const NAMESPACE: &str = "local";
const CLUSTER: &str = "dev";
/// What Grafana makes of `$__rate_interval` at a 1 s scrape interval is
/// about 4 s; a wider window keeps the rates steady between test steps.
const RATE_INTERVAL: &str = "15s";
const INSTANCES: usize = 3;
const POLL: Duration = Duration::from_millis(500);

struct Instance {
    id: String,
    grpc: u16,
    http: u16,
    process: Process,
}

fn main() -> Result<()> {
    let Some(prometheus) = std::env::var_os(ENABLE_VAR).filter(|v| !v.is_empty()) else {
        let rule = "=".repeat(72);
        println!(
            "{rule}\nNOT RUN: set {ENABLE_VAR} to the path of a `prometheus` binary (`promtool`\n\
             beside it; Debian: apt-get install prometheus, then {ENABLE_VAR}=/usr/bin/prometheus).\n\
             Nothing was tested: promtool, the chart's alerts and the dashboard queries\n\
             were NOT checked against a real Prometheus. These are not passes.\n{rule}"
        );
        println!("prometheus: 0 passed, 0 failed, 1 not run");
        return Ok(());
    };
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match rt.block_on(run(PathBuf::from(prometheus))) {
        Ok(()) => {
            println!("prometheus: 1 passed, 0 failed ({:.1?})", started.elapsed());
            Ok(())
        }
        Err(e) => {
            println!(
                "prometheus: 0 passed, 1 failed ({:.1?}): {e:#}",
                started.elapsed()
            );
            std::process::exit(1);
        }
    }
}

async fn run(prometheus_bin: PathBuf) -> Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("e2e has a parent")?
        .to_path_buf();
    ensure!(
        prometheus_bin.is_file(),
        "{ENABLE_VAR}={} is not a file",
        prometheus_bin.display()
    );
    let promtool = prometheus_bin.with_file_name("promtool");
    ensure!(
        promtool.is_file(),
        "{} is missing: promtool must sit beside prometheus",
        promtool.display()
    );
    let runtime_bin = binary("VSS_RUNTIME_BIN", "vss-runtime")?;
    let work = repo.join("target/prometheus-e2e");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let logs = work.join("logs");

    // 1. The rules as the chart renders them, through promtool.
    let rendered = work.join("rendered");
    render_chart(&repo, &rendered).await?;
    let rules_file = rendered.join("prometheus-rules.yaml");
    let out = tokio::process::Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(&rules_file)
        .output()
        .await
        .with_context(|| format!("running {}", promtool.display()))?;
    ensure!(
        out.status.success(),
        "promtool check rules {} failed:\n{}{}",
        rules_file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "ok   promtool check rules: {}",
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .replace('\n', " ")
    );
    let alerts = alerts_of(
        &serde_json::from_str(&std::fs::read_to_string(
            rendered.join("prometheus-rules.json"),
        )?)
        .context("the rendered rules' JSON copy")?,
    )?;
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(
        rendered.join("grafana-dashboard.json"),
    )?)
    .context("the rendered dashboard is not JSON")?;

    // 2. The cluster and Prometheus.
    let mut instances = start_cluster(&runtime_bin, &repo, &logs)?;
    let prom_port = free_port()?;
    let config = work.join("prometheus.yml");
    std::fs::write(&config, prometheus_config(&instances, &rules_file))?;
    let mut cmd = tokio::process::Command::new(&prometheus_bin);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .arg("--storage.tsdb.retention.time=1h");
    let mut prometheus = Process::spawn("prometheus", cmd, &logs)?;
    let prom = Prom { port: prom_port };
    let result = checks(&prom, &mut instances, &alerts, &dashboard).await;
    if result.is_err() {
        for i in &instances {
            println!("{}", i.process.log_tail(15));
        }
        println!("{}", prometheus.log_tail(20));
    }
    prometheus.kill().await;
    for i in &mut instances {
        i.process.kill().await;
    }
    result
}

async fn checks(
    prom: &Prom,
    instances: &mut [Instance],
    alerts: &[Alert],
    dashboard: &Value,
) -> Result<()> {
    let up = format!("up{{job=\"{JOB}\"}}");
    wait::until(
        "Prometheus to scrape every instance with up == 1",
        Duration::from_secs(60),
        POLL,
        || async {
            let series = prom.query(&up).await?;
            let healthy = series.iter().filter(|s| value_of(s) == Some(1.0)).count();
            Ok((healthy == INSTANCES).then_some(()))
        },
    )
    .await?;
    println!("ok   up == 1 for all {INSTANCES} instances");
    wait::until("one leader", Duration::from_secs(30), POLL, || async {
        let series = prom
            .query(&format!("sum(vss_leader{{job=\"{JOB}\"}})"))
            .await?;
        Ok((series.first().and_then(value_of) == Some(1.0)).then_some(()))
    })
    .await?;
    println!("ok   one instance leads");

    drive_traffic(instances).await?;
    println!(
        "ok   traffic: acquires (granted, refused, forwarded, a bad key, an unconfigured slot), a delivered broadcast"
    );

    let rules = wait::until(
        "every rule evaluated, without error",
        Duration::from_secs(30),
        POLL,
        || async {
            let groups = prom.get("/api/v1/rules").await?;
            let rules: Vec<Value> = groups["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            for r in &rules {
                if r["health"] != "ok" {
                    bail!(
                        "rule {} health {} ({})",
                        r["name"],
                        r["health"],
                        r["lastError"]
                    );
                }
            }
            Ok((rules.len() == alerts.len()).then_some(rules.len()))
        },
    )
    .await?;
    println!("ok   all {rules} rules loaded and evaluating with health ok");

    for query in dashboard_queries(dashboard)? {
        let series = wait::until(
            &format!("dashboard query `{query}` to return series"),
            Duration::from_secs(30),
            POLL,
            || async { Ok(Some(prom.query(&query).await?).filter(|s| !s.is_empty())) },
        )
        .await?;
        println!("ok   dashboard: {} series: {query}", series.len());
    }
    for alert in alerts {
        let whole = prom.query(&alert.expr).await?;
        if !whole.is_empty() {
            println!(
                "ok   alert {}: expression returns {} series (condition true)",
                alert.name,
                whole.len()
            );
            continue;
        }
        let lhs = left_of_comparison(&alert.expr).with_context(|| {
            format!(
                "alert {}: `{}` has no top-level comparison",
                alert.name, alert.expr
            )
        })?;
        let series = wait::until(
            &format!("alert {}'s query `{lhs}` to return series", alert.name),
            Duration::from_secs(30),
            POLL,
            || async { Ok(Some(prom.query(lhs).await?).filter(|s| !s.is_empty())) },
        )
        .await?;
        println!(
            "ok   alert {}: condition false on a healthy cluster; its query returns {} series: {lhs}",
            alert.name,
            series.len()
        );
    }

    // 5. One instance dies.
    let victim = instances.last_mut().context("the cluster has instances")?;
    let pid = victim.process.pid();
    victim.process.kill().await;
    let victim = victim.id.clone();
    println!("     SIGKILLed {victim} (pid {pid:?})");
    let killed_at = Instant::now();
    for (alert, label) in [("VssInstanceDown", "pod"), ("VssPeerUnreachable", "peer")] {
        wait::until(
            &format!("{alert} firing for {victim}"),
            Duration::from_secs(45),
            POLL,
            || async {
                let v = prom.get("/api/v1/alerts").await?;
                let firing = v["data"]["alerts"].as_array().is_some_and(|a| {
                    a.iter().any(|a| {
                        a["labels"]["alertname"] == alert
                            && a["labels"][label] == victim.as_str()
                            && a["state"] == "firing"
                    })
                });
                Ok(firing.then_some(()))
            },
        )
        .await?;
        println!(
            "ok   {alert} fires for {victim} {:.1?} after the kill",
            killed_at.elapsed()
        );
    }
    Ok(())
}

/// Acquires that are granted, refused, forwarded to the owner and
/// failed, and a broadcast delivered to a subscriber, so every series the
/// dashboard and the rules read exists.
async fn drive_traffic(instances: &[Instance]) -> Result<()> {
    let endpoints: Vec<String> = instances
        .iter()
        .map(|i| format!("127.0.0.1:{}", i.grpc))
        .collect();
    let client = Client::with_timeout(&endpoints, Duration::from_secs(3))?;
    // Through each instance alone: the two that do not own slot 0 forward.
    for endpoint in &endpoints {
        let one = Client::with_timeout(std::slice::from_ref(endpoint), Duration::from_secs(3))?;
        for _ in 0..5 {
            one.acquire(0, Acquire::default())
                .await
                .with_context(|| format!("acquire on slot 0 through {endpoint}"))?;
        }
    }
    // Slot 3 is a leaky bucket of 5: the rest are refused.
    let mut refused = 0;
    for _ in 0..10 {
        let grant = client.acquire(3, Acquire::default()).await?;
        refused += u32::from(grant.granted == 0);
    }
    ensure!(refused > 0, "no acquire on slot 3 was refused");
    let long_key = "k".repeat(300);
    let bad = client
        .acquire(
            0,
            Acquire {
                key: Some(long_key),
                tokens: None,
            },
        )
        .await;
    ensure!(
        bad.as_ref().err().and_then(|e| e.code()) == Some(tonic::Code::InvalidArgument),
        "a 300-byte key was not refused with INVALID_ARGUMENT: {bad:?}"
    );
    let missing = client.acquire(50, Acquire::default()).await;
    ensure!(
        missing.as_ref().err().and_then(|e| e.code()) == Some(tonic::Code::NotFound),
        "unconfigured slot 50 did not answer NOT_FOUND: {missing:?}"
    );
    // A subscriber acknowledges what it gets; the publish waits for it.
    let mut subscription = client.subscribe("watcher", &[10]).await?;
    let acks = tokio::spawn(async move {
        while let Some(delivery) = subscription.next().await {
            let _ = delivery.ack().await;
        }
    });
    let published = wait::until(
        "a broadcast delivered to the subscriber",
        Duration::from_secs(20),
        POLL,
        || async {
            let p = client.publish(10, b"hello", "publisher").await?;
            Ok((p.delivered > 0).then_some(p))
        },
    )
    .await;
    acks.abort();
    published?;
    Ok(())
}

fn start_cluster(runtime: &Path, repo: &Path, logs: &Path) -> Result<Vec<Instance>> {
    let config = repo.join("examples/slots.yaml");
    let ports: Vec<(u16, u16, u16)> = (0..INSTANCES)
        .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
        .collect::<Result<_>>()?;
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, (_, mesh, _))| format!("vss-{i}=127.0.0.1:{mesh}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut instances = Vec::new();
    for (i, (grpc, mesh, http)) in ports.into_iter().enumerate() {
        let id = format!("vss-{i}");
        let mut cmd = tokio::process::Command::new(runtime);
        cmd.arg("--config")
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{grpc}")])
            .args(["--mesh-listen", &format!("127.0.0.1:{mesh}")])
            .args(["--http-listen", &format!("127.0.0.1:{http}")])
            .args(["--id", &id, "--peers", &peers])
            .env("RUST_LOG", "info");
        let process = Process::spawn(&id, cmd, logs)?;
        instances.push(Instance {
            id,
            grpc,
            http,
            process,
        });
    }
    Ok(instances)
}

/// Scrapes and evaluates every second, with the labels the chart's
/// PodMonitor gives a runtime pod.
fn prometheus_config(instances: &[Instance], rules: &Path) -> String {
    let targets: String = instances
        .iter()
        .map(|i| {
            format!(
                "      - targets: [\"127.0.0.1:{}\"]\n        labels: {{namespace: {NAMESPACE}, vss_cluster: {CLUSTER}, pod: {}}}\n",
                i.http, i.id
            )
        })
        .collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: {JOB}\n    metrics_path: /metrics\n    static_configs:\n{targets}",
        rules.display()
    )
}

async fn render_chart(repo: &Path, out: &Path) -> Result<()> {
    let python = match std::env::var_os("VSS_CHART_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => repo.join("target/ci-venv-chart/bin/python"),
    };
    ensure!(
        python.is_file(),
        "{} is missing: run .ci/check-chart once (it installs Helm's engine there) \
         or set VSS_CHART_PYTHON to a python with helm-python-sdk",
        python.display()
    );
    let out_status = tokio::process::Command::new(&python)
        .arg(repo.join(".ci/render_monitoring.py"))
        .arg("--chart")
        .arg(repo.join("charts/vss-operator"))
        .arg("--values")
        .arg(repo.join("e2e/testdata/prometheus-values.yaml"))
        .arg("--out")
        .arg(out)
        .output()
        .await
        .with_context(|| format!("running {}", python.display()))?;
    ensure!(
        out_status.status.success(),
        "rendering the chart failed:\n{}{}",
        String::from_utf8_lossy(&out_status.stdout),
        String::from_utf8_lossy(&out_status.stderr)
    );
    println!(
        "ok   {}",
        String::from_utf8_lossy(&out_status.stdout).trim()
    );
    Ok(())
}

struct Alert {
    name: String,
    expr: String,
}

/// The alerting rules of the rendered rule file, from the JSON copy
/// render_monitoring.py writes beside it.
fn alerts_of(rules: &Value) -> Result<Vec<Alert>> {
    let mut alerts = Vec::new();
    for group in rules["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let (Some(name), Some(expr)) = (rule["alert"].as_str(), rule["expr"].as_str()) else {
                bail!("a rule without alert or expr: {rule}");
            };
            alerts.push(Alert {
                name: name.to_string(),
                expr: expr.to_string(),
            });
        }
    }
    ensure!(!alerts.is_empty(), "the rule file has no alerts");
    Ok(alerts)
}

/// Every PromQL query of the dashboard with its variables filled in as
/// Grafana would for the test's namespace and cluster. A `label_values`
/// variable becomes its series selector.
fn dashboard_queries(dashboard: &Value) -> Result<Vec<String>> {
    let mut queries = BTreeSet::new();
    let panels = dashboard["panels"]
        .as_array()
        .context("the dashboard has no panels")?;
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .with_context(|| format!("panel {} has a target without expr", panel["title"]))?;
            queries.insert(expr.to_string());
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(q) = var["query"]["query"].as_str()
            && let Some(inner) = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
        {
            let (selector, _label) = inner
                .rsplit_once(',')
                .with_context(|| format!("variable {}: {q}", var["name"]))?;
            queries.insert(selector.trim().to_string());
        }
    }
    ensure!(
        queries.len() > 10,
        "only {} dashboard queries",
        queries.len()
    );
    queries
        .into_iter()
        .map(|q| {
            let filled = q
                .replace("$__rate_interval", RATE_INTERVAL)
                .replace("$namespace", NAMESPACE)
                .replace("$cluster", CLUSTER);
            ensure!(
                !filled.contains('$'),
                "query uses a variable the test does not know: {q}"
            );
            Ok(filled)
        })
        .collect()
}

/// The query of `lhs <cmp> threshold`: the text before the last
/// comparison outside brackets and quotes.
fn left_of_comparison(expr: &str) -> Option<&str> {
    let bytes = expr.as_bytes();
    let (mut depth, mut quote, mut at) = (0i32, None, None);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(_) if c == b'\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'"' | b'\'' | b'`' => quote = Some(c),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                b'=' | b'!' | b'>' | b'<' if depth == 0 => {
                    let next = bytes.get(i + 1).copied();
                    if matches!(c, b'>' | b'<') || next == Some(b'=') {
                        at = Some(i);
                        if next == Some(b'=') {
                            i += 1;
                        }
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    at.map(|i| expr[..i].trim())
}

struct Prom {
    port: u16,
}

impl Prom {
    /// An instant query's result vector.
    async fn query(&self, promql: &str) -> Result<Vec<Value>> {
        let v = self
            .get(&format!("/api/v1/query?query={}", percent_encode(promql)))
            .await
            .with_context(|| format!("query `{promql}`"))?;
        ensure!(v["status"] == "success", "query `{promql}`: {}", v["error"]);
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// GET on the HTTP API, as HTTP/1.0 so the body is not chunked.
    async fn get(&self, path: &str) -> Result<Value> {
        let io = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
            stream
                .write_all(
                    format!(
                        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
                        self.port
                    )
                    .as_bytes(),
                )
                .await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            anyhow::Ok(response)
        };
        let response = tokio::time::timeout(Duration::from_secs(5), io)
            .await
            .context("Prometheus did not answer within 5 s")??;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .context("Prometheus answered without a header")?;
        serde_json::from_str(body).with_context(|| {
            format!(
                "Prometheus answered `{}` with a body that is not JSON",
                head.lines().next().unwrap_or_default()
            )
        })
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The sample value of an instant vector element.
fn value_of(series: &Value) -> Option<f64> {
    series["value"][1].as_str()?.parse().ok()
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
