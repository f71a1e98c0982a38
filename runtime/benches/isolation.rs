//! Slot isolation: what a slot whose calls all run to their deadline costs
//! the others. One instance on loopback with a token-bucket slot 0 and the
//! `misbehave` test module as slot 20. First slot 0's acquires and
//! `/healthz` alone (the baseline), then the same while 50 callers loop
//! `call 20 loop` (each call runs to the 100 ms deadline and is stopped).
//! Prints medians, p99s and the ratio to the baseline of the same run;
//! `docs/benchmarks.md` records them.
//!
//! `cargo bench -p vss-runtime --bench isolation`

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vss_client::{Acquire, Client};
use vss_config::SlotsConfig;
use vss_runtime::{Runtime, RuntimeOptions, WasmLimits};

mod common;
use common::summary;

const CONFIG: &str = "slots:
- {id: 0, type: token-bucket, bucketSize: 1000000000, period: second, refreshRate: 1000000000}
- {id: 20, type: custom, custom: {module: misbehave.wasm}}
";
const HOSTILE_CALLERS: usize = 50;
const ACQUIRES: usize = 2_000;
const PROBES: usize = 200;

async fn healthz(addr: &str) -> anyhow::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    anyhow::ensure!(body.ends_with("ok\n"), "unexpected probe answer {body:?}");
    Ok(())
}

/// Slot 0's acquire and the probe's latencies, measured one at a time.
async fn measure(
    client: &Client,
    http: &str,
    label: &str,
) -> anyhow::Result<[(Duration, Duration); 2]> {
    let mut acquires = Vec::with_capacity(ACQUIRES);
    for _ in 0..ACQUIRES {
        let t = Instant::now();
        client.acquire(0, Acquire::default()).await?;
        acquires.push(t.elapsed());
    }
    let mut probes = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        let t = Instant::now();
        healthz(http).await?;
        probes.push(t.elapsed());
    }
    Ok([
        summary(&format!("acquire slot 0, {label}"), acquires),
        summary(&format!("/healthz, {label}"), probes),
    ])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        // `cargo bench -- --list` and `cargo test --benches` probe for tests.
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("misbehave.wasm"),
        vss_builtin_slots::testing::MISBEHAVE,
    )?;
    let config = SlotsConfig::from_yaml(CONFIG)?.validate_with_base(dir.path())?;
    let options = RuntimeOptions {
        instance_id: "bench".into(),
        listen: "127.0.0.1:0".parse()?,
        http_listen: Some("127.0.0.1:0".parse()?),
        wasm_limits: WasmLimits::default(),
        module_root: Some(Path::new(dir.path()).to_path_buf()),
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::bind(options, &config).await?;
    let endpoint = runtime.grpc_addr().to_string();
    let http = runtime
        .http_addr()
        .ok_or_else(|| anyhow::anyhow!("no HTTP port"))?
        .to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(runtime.serve(async {
        let _ = stopped.await;
    }));

    let client = Client::new(std::slice::from_ref(&endpoint))?;
    for _ in 0..200 {
        client.acquire(0, Acquire::default()).await?;
    }
    let [alone, probe_alone] = measure(&client, &http, "alone").await?;

    let hostile = Client::new(std::slice::from_ref(&endpoint))?;
    let (done, calls) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..HOSTILE_CALLERS {
        let (hostile, done, calls) = (hostile.clone(), done.clone(), calls.clone());
        callers.spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let looped = hostile.call(20, "loop", Vec::new()).await;
                debug_assert!(looped.is_err(), "`loop` never answers");
                calls.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // Let the hostile queue fill before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let [loaded, probe_loaded] = measure(&client, &http, "50 callers on slot 20").await?;
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    while callers.join_next().await.is_some() {}
    let calls = calls.load(Ordering::Relaxed);
    println!(
        "slot 20: {calls} calls stopped at the deadline, {:.0}/s while measuring",
        calls as f64 / (elapsed.as_secs_f64() + 0.5)
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "under hostile load vs alone: acquire median {:.2}x, p99 {:.2}x; /healthz median {:.2}x, p99 {:.2}x",
        ratio(loaded.0, alone.0),
        ratio(loaded.1, alone.1),
        ratio(probe_loaded.0, probe_alone.0),
        ratio(probe_loaded.1, probe_alone.1),
    );
    let _ = stop.send(());
    server.await??;
    Ok(())
}
