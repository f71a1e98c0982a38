//! The chaos scenario: a 3-instance cluster of real processes with fault
//! injection on (dropped and delayed mesh messages, refused client calls),
//! clients acquiring and publishing at a steady rate, and a driver that
//! SIGKILLs an instance every few seconds (the leader every third time)
//! and restarts it. Asserts what the product promises: no failed client
//! call, every broadcast reached every subscriber, the tokens granted stay
//! within the configured rate plus the documented failover window, the
//! counter ends at exactly the number of acknowledged increments on every
//! instance, every acknowledged register write is visible or superseded,
//! and the leader changed.
//!
//! The mesh runs mTLS, as it does in-cluster by default: every instance
//! SIGKILLed and restarted rejoins through a handshake.
//!
//! Runs for `VSS_CHAOS_SECONDS` (default 60). Soak: see e2e/README.md.

mod pki;
mod process;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pki::{Ca, write_atomic};
use process::{ProcessCluster, SLOTS_YAML, metric_value};
use tokio::sync::Mutex;
use vss_client::{Acquire, Client};

/// Slot 0 of the test config: bucketSize 200, refill 100 per second.
const LIMITER: u32 = 0;
const BUCKET: u64 = 200;
const REFILL_PER_SECOND: u64 = 100;
const BROADCAST: u32 = 10;
const SUBSCRIBERS: usize = 3;
const COUNTER: u32 = 20;
const REGISTER: u32 = 21;
/// Register keys the writer cycles through.
const KEYS: u64 = 8;
const CHAOS_FLAGS: &[&str] = &[
    "--chaos-mesh-drop",
    "0.05",
    "--chaos-mesh-delay-fraction",
    "0.1",
    "--chaos-mesh-delay-ms",
    "20",
    "--chaos-refuse-calls",
    "0.02",
];

fn scenario_length() -> Duration {
    let secs = std::env::var("VSS_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    failed: AtomicU64,
    granted: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_without_failed_calls() {
    let length = scenario_length();
    let yaml = format!(
        "{SLOTS_YAML}  - id: {COUNTER}\n    type: counter\n  - id: {REGISTER}\n    type: register\n"
    );
    let ids = ["a", "b", "c"];
    let mut cluster =
        ProcessCluster::start_config(&ids, &[], CHAOS_FLAGS, &yaml, &[]).expect("cluster");
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("chaos CA");
    write_atomic(&certs.path().join("ca.pem"), &ca.pem());
    for (i, id) in ids.iter().enumerate() {
        let leaf = ca.leaf(id);
        let path = |f: &str| certs.path().join(format!("{id}-{f}")).display().to_string();
        write_atomic(Path::new(&path("cert.pem")), &leaf.cert);
        write_atomic(Path::new(&path("key.pem")), &leaf.key);
        let ca_file = certs.path().join("ca.pem").display().to_string();
        cluster.set_own_args(
            i,
            &[
                "--mesh-tls-cert",
                &path("cert.pem"),
                "--mesh-tls-key",
                &path("key.pem"),
                "--mesh-tls-ca",
                &ca_file,
            ],
        );
        cluster.spawn(i).expect("spawn");
    }
    cluster
        .settled(&[0, 1, 2], Duration::from_secs(30))
        .await
        .expect("routing settles");
    let endpoints = cluster.endpoints();
    let client = || Client::new(&endpoints).expect("client");

    // Subscribers on every instance, collecting message ids.
    let mut received = Vec::new();
    let mut readers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let mut sub = client()
            .subscribe(&format!("subscriber-{i}"), &[BROADCAST])
            .await
            .expect("subscribe");
        let seen = Arc::new(Mutex::new(HashSet::new()));
        received.push(seen.clone());
        readers.push(tokio::spawn(async move {
            while let Some(d) = sub.next().await {
                let _ = d.ack().await;
                seen.lock().await.insert(d.message_id);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let running = Arc::new(AtomicBool::new(true));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();

    // Acquirers: 4 × every 10 ms, 1 token each: well above the refill, so
    // the bucket is the limit.
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (c, running, tally) = (client(), running.clone(), tally.clone());
        workers.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(10));
            while running.load(Ordering::Relaxed) {
                every.tick().await;
                tally.calls.fetch_add(1, Ordering::Relaxed);
                match c
                    .acquire(
                        LIMITER,
                        Acquire {
                            key: None,
                            tokens: Some(1),
                        },
                    )
                    .await
                {
                    Ok(g) => {
                        tally
                            .granted
                            .fetch_add(u64::from(g.granted), Ordering::Relaxed);
                    }
                    Err(e) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("acquire failed: {e}");
                    }
                }
            }
        }));
    }
    // Publisher: one broadcast every 200 ms.
    let published = Arc::new(Mutex::new(BTreeSet::new()));
    {
        let (c, running, tally, published) =
            (client(), running.clone(), tally.clone(), published.clone());
        workers.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(200));
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                every.tick().await;
                n += 1;
                tally.calls.fetch_add(1, Ordering::Relaxed);
                match c
                    .publish(BROADCAST, format!("m{n}").as_bytes(), "publisher")
                    .await
                {
                    Ok(p) => {
                        published.lock().await.insert(p.message_id);
                    }
                    Err(e) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("publish failed: {e}");
                    }
                }
            }
        }));
    }

    // Counter: 2 × one increment every 20 ms. Register: one write every
    // 30 ms, each key's value counting up, so a later write supersedes.
    let acked_increments = Arc::new(AtomicU64::new(0));
    for _ in 0..2 {
        let (c, running, tally, acked) = (
            client(),
            running.clone(),
            tally.clone(),
            acked_increments.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(20));
            while running.load(Ordering::Relaxed) {
                every.tick().await;
                tally.calls.fetch_add(1, Ordering::Relaxed);
                match c.increment(COUNTER, 1).await {
                    Ok(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("increment failed: {e}");
                    }
                }
            }
        }));
    }
    let last_set = Arc::new(Mutex::new(vec![0u64; KEYS as usize]));
    {
        let (c, running, tally, last_set) =
            (client(), running.clone(), tally.clone(), last_set.clone());
        workers.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(30));
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                every.tick().await;
                n += 1;
                let key = n % KEYS;
                tally.calls.fetch_add(1, Ordering::Relaxed);
                match c
                    .set(REGISTER, &format!("k{key}"), n.to_string().as_bytes())
                    .await
                {
                    Ok(_) => last_set.lock().await[key as usize] = n,
                    Err(e) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("set failed: {e}");
                    }
                }
            }
        }));
    }

    // The chaos driver: kill an instance every 4 s (every third time the
    // leader), restart it 1.5 s later; watch the leader throughout.
    let watcher = client();
    let mut leaders = Vec::new();
    let mut kills = 0u32;
    let mut next_kill = Instant::now() + Duration::from_secs(3);
    let mut down: Option<(usize, Instant)> = None;
    while started.elapsed() < length {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(t) = watcher.routing()
            && leaders.last() != Some(&t.leader)
        {
            leaders.push(t.leader.clone());
        }
        if let Some((i, at)) = down
            && at.elapsed() >= Duration::from_millis(1_500)
        {
            cluster.spawn(i).expect("restart");
            down = None;
        }
        if down.is_none() && Instant::now() >= next_kill {
            kills += 1;
            let target = match watcher.routing() {
                Some(t) if kills.is_multiple_of(3) => cluster.index_of(&t.leader),
                _ => fastrand::usize(..cluster.len()),
            };
            println!(
                "{:>5.1}s kill -9 {}",
                started.elapsed().as_secs_f64(),
                cluster.id(target)
            );
            cluster.kill(target);
            down = Some((target, Instant::now()));
            next_kill = Instant::now() + Duration::from_secs(4);
        }
    }
    running.store(false, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let elapsed = started.elapsed();
    if let Some((i, _)) = down {
        cluster.spawn(i).expect("restart");
    }
    // Deliveries still in flight land within the broadcast timeout (2 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for r in &readers {
        r.abort();
    }

    // Every instance converges on the counter and the register.
    let acked = acked_increments.load(Ordering::Relaxed);
    let last_set = last_set.lock().await.clone();
    let mut data_problems = Vec::new();
    for i in 0..cluster.len() {
        let one = cluster.client(i);
        let deadline = Instant::now() + Duration::from_secs(10);
        let value = loop {
            let read = one.read_counter(COUNTER).await.map(|v| v.value);
            if read.as_ref().is_ok_and(|v| *v == acked as i64) || Instant::now() > deadline {
                break read;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if value.as_ref().ok() != Some(&(acked as i64)) {
            data_problems.push(format!(
                "{} counter {value:?}, acknowledged increments {acked}",
                cluster.id(i)
            ));
        }
        for (key, n) in last_set.iter().enumerate() {
            let got = one.get(REGISTER, &format!("k{key}")).await;
            let held = got
                .as_ref()
                .ok()
                .and_then(|g| std::str::from_utf8(&g.value).ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            if held < *n {
                data_problems.push(format!(
                    "{} k{key} holds {held}, last acknowledged write {n}",
                    cluster.id(i)
                ));
            }
        }
    }

    let calls = tally.calls.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let granted = tally.granted.load(Ordering::Relaxed);
    let allowed = BUCKET + REFILL_PER_SECOND * (elapsed.as_secs() + 1);
    // Each owner failover may grant again what the owner granted in its
    // last replication window (100 ms + a round trip): at most one refill
    // under this load, and never more than a full bucket.
    let bound = allowed + u64::from(kills) * BUCKET;
    let published = published.lock().await.clone();
    let mut missing = Vec::new();
    for (i, seen) in received.iter().enumerate() {
        let seen = seen.lock().await;
        let lost: Vec<_> = published.iter().filter(|id| !seen.contains(id)).collect();
        if !lost.is_empty() {
            missing.push(format!(
                "subscriber-{i} missed {} of {}",
                lost.len(),
                published.len()
            ));
        }
    }
    let mut handshakes_refused = 0.0;
    for i in 0..ids.len() {
        let metrics = cluster.metrics(i).await;
        assert!(
            metric_value(&metrics, "vss_mesh_tls_cert_expiry_seconds").is_some_and(|t| t > 0.0),
            "instance {i} serves the mesh over mTLS"
        );
        handshakes_refused +=
            metric_value(&metrics, "vss_mesh_tls_handshake_failures_total").unwrap_or(0.0);
    }
    println!("chaos for {elapsed:.1?}: {kills} kills, leaders {leaders:?}");
    println!("mesh over mTLS; handshakes refused since the last restarts: {handshakes_refused}");
    println!("client calls {calls}, failed {failed}");
    println!(
        "broadcasts {} published, each to {SUBSCRIBERS} subscribers: {}",
        published.len(),
        if missing.is_empty() {
            "all delivered".to_string()
        } else {
            missing.join("; ")
        }
    );
    println!(
        "tokens granted {granted}; the config allows {allowed} in {:.0} s; bound with {kills} failovers {bound}",
        elapsed.as_secs_f64()
    );

    println!(
        "counter: {acked} acknowledged increments; register: {} keys checked on every instance: {}",
        KEYS,
        if data_problems.is_empty() {
            "all converged".to_string()
        } else {
            data_problems.join("; ")
        }
    );

    assert_eq!(failed, 0, "client calls failed under chaos");
    assert!(data_problems.is_empty(), "{data_problems:?}");
    assert!(missing.is_empty(), "{missing:?}");
    assert!(!published.is_empty());
    assert!(granted <= bound, "granted {granted} > bound {bound}");
    assert!(
        granted >= allowed / 2,
        "granted {granted}: the limiter should still serve about its rate ({allowed})"
    );
    assert!(leaders.len() >= 2, "the leader never changed: {leaders:?}");
}
