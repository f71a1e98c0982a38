//! Broadcast fan-out on one instance: time from publish to the last
//! acknowledged delivery, with 100 and 1,000 connected clients.
//!
//! Runs the runtime and the clients in this process over loopback. Each
//! client acknowledges every event as soon as it arrives. The publish RPC
//! returns only when every delivery is acknowledged, so its latency seen by
//! the publisher is the figure. The baseline is an acquire round trip in the
//! same run. Prints medians and p99s; `docs/benchmarks.md` records them.
//!
//! `cargo bench -p vss-runtime --bench fanout`

use std::path::Path;
use std::time::Instant;

use vss_client::{Acquire, Client};
use vss_config::SlotsConfig;
use vss_runtime::{Runtime, RuntimeOptions, WasmLimits};

mod common;
use common::summary;

const CONFIG: &str = "slots:
- {id: 0, type: token-bucket, bucketSize: 1000000000, period: second, refreshRate: 1000000000}
- {id: 10, type: broadcast, timeout: 5s}
";
/// Client connections the subscribers are spread over (HTTP/2 multiplexes
/// many streams on one).
const CONNECTIONS: usize = 16;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        // `cargo bench -- --list` and `cargo test --benches` probe for tests.
        return Ok(());
    }
    let config = SlotsConfig::from_yaml(CONFIG)?.validate_with_base(Path::new("."))?;
    let options = RuntimeOptions {
        instance_id: "bench".into(),
        listen: "127.0.0.1:0".parse()?,
        http_listen: None,
        wasm_limits: WasmLimits::default(),
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::bind(options, &config).await?;
    let endpoint = runtime.grpc_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(runtime.serve(async {
        let _ = stopped.await;
    }));

    let publisher = Client::new(std::slice::from_ref(&endpoint))?;
    let mut acquires = Vec::new();
    for _ in 0..2_000 {
        let t = Instant::now();
        publisher.acquire(0, Acquire::default()).await?;
        acquires.push(t.elapsed());
    }
    let (baseline, _) = summary("acquire round trip", acquires);

    let connections: Vec<Client> = (0..CONNECTIONS)
        .map(|_| Client::new(std::slice::from_ref(&endpoint)))
        .collect::<Result<_, _>>()?;
    let mut subscribers = tokio::task::JoinSet::new();
    let mut connected = 0;
    for (clients, rounds) in [(100usize, 500usize), (1_000, 200)] {
        while connected < clients {
            let client = &connections[connected % CONNECTIONS];
            let mut sub = client.subscribe(&format!("sub-{connected}"), &[10]).await?;
            subscribers.spawn(async move {
                while let Some(event) = sub.next().await {
                    if event.ack().await.is_err() {
                        break;
                    }
                }
            });
            connected += 1;
        }
        let mut samples = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            let p = publisher
                .publish(10, b"0f8fad5b-d9cb-469f-a165-70867728950e", "")
                .await?;
            samples.push(t.elapsed());
            anyhow::ensure!(
                p.delivered as usize == clients && p.failed == 0,
                "lost deliveries: {p:?}"
            );
        }
        let (median, _) = summary(&format!("broadcast to {clients} clients"), samples);
        println!(
            "{:<36} {:.1}x the acquire round trip",
            "",
            median.as_secs_f64() / baseline.as_secs_f64()
        );
    }
    subscribers.abort_all();
    let _ = stop.send(());
    server.await??;
    Ok(())
}
