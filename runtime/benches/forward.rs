//! Acquire through a non-owner (one forward hop) against acquire directly
//! at the slot's owner, on a 3-process cluster on loopback, in the same
//! run. `cargo bench -p vss-runtime --bench forward`.
//!
//! Latency: sequential calls, alternating rounds of each path; throughput:
//! 32 concurrent callers for a fixed time. Figures are medians over the
//! rounds, and the forwarded path is also given as a ratio of the direct.

mod common;
#[path = "../tests/process/mod.rs"]
mod process;

use std::time::{Duration, Instant};

use common::percentile;
use process::ProcessCluster;
use tonic::transport::Channel;
use vss_proto::v1::AcquireRequest;
use vss_proto::v1::vss_client::VssClient;

const SLOT: u32 = 0;
const ROUNDS: usize = 5;
const CALLS_PER_ROUND: usize = 2_000;
const CONCURRENCY: usize = 32;
const THROUGHPUT_WINDOW: Duration = Duration::from_millis(1_500);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = ProcessCluster::start(&["a", "b", "c"])?;
    let table = cluster.settled(&[0, 1, 2], Duration::from_secs(30)).await?;
    let route = table
        .routes
        .iter()
        .find(|r| r.slot == SLOT)
        .ok_or("slot 0 is routed")?;
    let owner = cluster.index_of(&route.owner);
    let entry = cluster.index_of(&table.leader);
    println!(
        "slot {SLOT}: owner {}, entry for the forwarded path: {} (leader)",
        route.owner, table.leader
    );
    let direct = VssClient::connect(cluster.url(owner)).await?;
    let forwarded = VssClient::connect(cluster.url(entry)).await?;
    // Warm both paths (connections, the mesh channel).
    sequential(&direct, 200).await?;
    sequential(&forwarded, 200).await?;

    let mut lat = [Vec::new(), Vec::new()];
    let mut tput = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (i, client) in [&direct, &forwarded].into_iter().enumerate() {
            let mut samples = sequential(client, CALLS_PER_ROUND).await?;
            samples.sort();
            lat[i].push((percentile(&samples, 0.50), percentile(&samples, 0.99)));
            tput[i].push(throughput(client).await?);
        }
    }
    println!(
        "{:<24} {:>12} {:>12} {:>14}",
        "path", "p50", "p99", "calls/s"
    );
    let mut medians = Vec::new();
    for (i, name) in ["direct at the owner", "via a non-owner (1 hop)"]
        .into_iter()
        .enumerate()
    {
        let p50 = median(lat[i].iter().map(|l| l.0).collect());
        let p99 = median(lat[i].iter().map(|l| l.1).collect());
        let calls = median_f64(tput[i].clone());
        println!("{name:<24} {p50:>12?} {p99:>12?} {calls:>14.0}");
        medians.push((p50, p99, calls));
    }
    let (d, f) = (medians[0], medians[1]);
    println!(
        "forwarded / direct: p50 {:.2}x, p99 {:.2}x, throughput {:.2}x",
        f.0.as_secs_f64() / d.0.as_secs_f64(),
        f.1.as_secs_f64() / d.1.as_secs_f64(),
        f.2 / d.2
    );
    Ok(())
}

async fn sequential(
    client: &VssClient<Channel>,
    calls: usize,
) -> Result<Vec<Duration>, tonic::Status> {
    let mut c = client.clone();
    let mut out = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        c.acquire(request()).await?;
        out.push(started.elapsed());
    }
    Ok(out)
}

async fn throughput(client: &VssClient<Channel>) -> Result<f64, Box<dyn std::error::Error>> {
    let until = Instant::now() + THROUGHPUT_WINDOW;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let mut c = client.clone();
        tasks.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                c.acquire(request()).await?;
                n += 1;
            }
            Ok::<u64, tonic::Status>(n)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done??;
    }
    Ok(total as f64 / THROUGHPUT_WINDOW.as_secs_f64())
}

fn request() -> AcquireRequest {
    AcquireRequest {
        slot: SLOT,
        key: String::new(),
        tokens: Some(1),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or_default()
}
