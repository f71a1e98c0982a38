//! A limiter's semantics through every instance of a cluster of real
//! processes, with partitions, leased tokens and local denials on
//! (docs/cluster.md#partitions-leases-and-local-denials): a bucket
//! hammered through all three instances grants its bound and nearly all of
//! it, also while instances are SIGKILLed; the seed's table holds through
//! each instance; and a flood on an empty key is answered where it
//! arrives, not by the key's owner.

mod process;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use process::{ProcessCluster, metric_value};
use vss_client::{Acquire, Client};

/// A bucket of 1,000 refilled with 1,000 every second.
const HAMMERED: &str = "slots:
  - id: 5
    type: token-bucket
    bucketSize: 1000
    period: second
    refreshRate: 1000
  - id: 1
    type: token-bucket
    bucketSize: 10
    period: second
    refreshRate: 1
    maxKeys: 50000
  - id: 0
    type: token-bucket
    bucketSize: 200
    period: second
    refreshRate: 100
  - id: 6
    type: token-bucket
    bucketSize: 1000000
    period: hour
    refreshRate: 1
    maxKeys: 100
";
const BUCKET: u64 = 1_000;
const PER_SECOND: u64 = 1_000;
/// Ten whole refill periods, and half of one: the tenth refill (the
/// bucket refills whole periods after its first acquire) is well inside.
const HAMMER_FOR: Duration = Duration::from_millis(10_500);

#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    failed: AtomicU64,
    granted: AtomicU64,
    /// Acquires answered with nothing: the bucket was empty.
    refused: AtomicU64,
}

/// These tests measure what a cluster grants under load and what its
/// instances spend: one at a time, so they do not starve each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `workers` loops per client acquiring from slot 5 until `stop`.
fn hammer(
    clients: Vec<Client>,
    workers: usize,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for client in clients {
        for _ in 0..workers {
            let (client, tally, stop) = (client.clone(), tally.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    tally.calls.fetch_add(1, Ordering::Relaxed);
                    match client.acquire(5, Acquire::default()).await {
                        Ok(g) => {
                            tally
                                .granted
                                .fetch_add(u64::from(g.granted), Ordering::Relaxed);
                            if g.granted == 0 {
                                tally.refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("acquire failed: {e}");
                        }
                    }
                }
            }));
        }
    }
    tasks
}

/// At most: the burst, and a refill for every period boundary the run
/// could span.
fn most(elapsed: Duration) -> u64 {
    BUCKET + PER_SECOND * (elapsed.as_secs() + 1)
}

/// At least: 95 % of the burst and the refills of the whole seconds.
fn least(elapsed: Duration) -> u64 {
    (BUCKET + PER_SECOND * elapsed.as_secs()) * 95 / 100
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_hammered_through_every_instance_grants_its_bound_and_nearly_all_of_it() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let cluster = ProcessCluster::start_config(&["a", "b", "c"], &[0, 1, 2], &[], HAMMERED, &[])
        .expect("cluster");
    cluster
        .settled(&[0, 1, 2], Duration::from_secs(30))
        .await
        .expect("routing settles");
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    // One client per instance, each knowing that instance only: every
    // instance takes a third of the load, as behind a gateway that does
    // not route.
    let clients = (0..3).map(|i| cluster.client(i)).collect();
    let started = Instant::now();
    let tasks = hammer(clients, 16, &tally, &stop);
    tokio::time::sleep(HAMMER_FOR).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("worker");
    }
    let elapsed = started.elapsed();
    let granted = tally.granted.load(Ordering::Relaxed);
    let calls = tally.calls.load(Ordering::Relaxed);
    let mut leased = 0.0;
    let mut denied = 0.0;
    let mut returned = 0.0;
    for i in 0..3 {
        let m = cluster.metrics(i).await;
        leased += metric_value(&m, "vss_lease_decisions_total{slot=\"5\"}").unwrap_or(0.0);
        denied += metric_value(&m, "vss_local_denials_total{slot=\"5\"}").unwrap_or(0.0);
        returned += metric_value(&m, "vss_lease_returned_tokens_total{slot=\"5\"}").unwrap_or(0.0);
    }
    println!(
        "hammered {elapsed:?}: {calls} calls, {granted} granted (bound {}..={}), {leased} from leases, {returned} leased tokens returned, {denied} denied locally",
        least(elapsed),
        most(elapsed)
    );
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0, "no failed call");
    assert!(
        granted <= most(elapsed),
        "over-admission: {granted} > {}",
        most(elapsed)
    );
    assert!(
        granted >= least(elapsed),
        "under-admission: {granted} < {}",
        least(elapsed)
    );
    let refused = tally.refused.load(Ordering::Relaxed);
    assert!(
        refused >= 1_000,
        "the bucket ran empty again and again, so the bound was tested: {refused} refusals"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_hammered_while_instances_are_killed_fails_no_call_and_keeps_the_failover_bound() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut cluster =
        ProcessCluster::start_config(&["a", "b", "c"], &[0, 1, 2], &[], HAMMERED, &[])
            .expect("cluster");
    cluster
        .settled(&[0, 1, 2], Duration::from_secs(30))
        .await
        .expect("routing settles");
    let endpoints = cluster.endpoints();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients = (0..3)
        .map(|_| Client::new(&endpoints).expect("client"))
        .collect();
    let started = Instant::now();
    let tasks = hammer(clients, 16, &tally, &stop);
    let mut kills = 0;
    while started.elapsed() < HAMMER_FOR {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let victim = kills % 3;
        cluster.kill(victim);
        kills += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.spawn(victim).expect("restart");
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("worker");
    }
    let elapsed = started.elapsed();
    let granted = tally.granted.load(Ordering::Relaxed);
    // Each failover may grant again what its owner granted in the last
    // replication window: at most a bucketful (docs/cluster.md).
    let bound = most(elapsed) + kills as u64 * BUCKET;
    println!(
        "hammered {elapsed:?} with {kills} SIGKILLs: {} calls, {granted} granted (bound {bound})",
        tally.calls.load(Ordering::Relaxed)
    );
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0, "no failed call");
    assert!(
        granted <= bound,
        "over-admission past the failover bound: {granted} > {bound}"
    );
}

/// Keys of slot 6 the rolling restart acquires from, spread over its
/// partitions ("" is the slot's single bucket).
const ROLLED: [&str; 6] = ["", "alpha", "bravo", "charlie", "delta", "echo"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_by_sigterm_fails_no_call_and_loses_no_decision() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut cluster =
        ProcessCluster::start_config(&["a", "b", "c"], &[0, 1, 2], &[], HAMMERED, &[])
            .expect("cluster");
    cluster
        .settled(&[0, 1, 2], Duration::from_secs(30))
        .await
        .expect("routing settles");
    let endpoints = cluster.endpoints();
    let granted: Arc<Vec<AtomicU64>> = Arc::new(ROLLED.iter().map(|_| AtomicU64::new(0)).collect());
    let (calls, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..12 {
        let client = Client::new(&endpoints).expect("client");
        let (granted, calls, failed, stop) =
            (granted.clone(), calls.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let k = n % ROLLED.len();
                let key = Some(ROLLED[k].to_string()).filter(|k| !k.is_empty());
                calls.fetch_add(1, Ordering::Relaxed);
                match client.acquire(6, Acquire { key, tokens: None }).await {
                    Ok(g) => granted[k].fetch_add(u64::from(g.granted), Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("acquire failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for victim in 0..3 {
        let code = cluster.terminate(victim, Duration::from_secs(20)).await;
        assert_eq!(
            code,
            Some(0),
            "instance {victim} stops by itself on SIGTERM"
        );
        cluster.spawn(victim).expect("restart");
        cluster
            .wait_for_table(&[0, 1, 2], Duration::from_secs(30), |t| {
                t.routes
                    .iter()
                    .any(|r| r.partitions.iter().any(|p| p.owner == cluster.id(victim)))
            })
            .await
            .unwrap_or_else(|e| panic!("instance {victim} owns partitions again: {e}"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("worker");
    }
    let (calls, failed) = (
        calls.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "rolling restart by SIGTERM in {:?}: {calls} calls, {failed} failed",
        started.elapsed()
    );
    assert_eq!(failed, 0, "no failed call");
    // Leased tokens go back to their buckets within a lease's life; then
    // each bucket's owner answers what it holds.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let client = Client::new(&endpoints).expect("client").coalescing(false);
    for (k, key) in ROLLED.iter().enumerate() {
        let granted = granted[k].load(Ordering::Relaxed);
        let last = client
            .acquire(
                6,
                Acquire {
                    key: Some(key.to_string()).filter(|k| !k.is_empty()),
                    tokens: None,
                },
            )
            .await
            .expect("answered");
        println!(
            "key {key:?}: {granted} granted, {} left after one more",
            last.remaining
        );
        assert!(granted > 100, "key {key:?} was under load: {granted}");
        assert_eq!(
            last.remaining,
            1_000_000 - granted - 1,
            "key {key:?}: every decision kept exactly once through the hand-overs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seed_table_holds_through_each_instance() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let cluster = ProcessCluster::start_config(&["a", "b", "c"], &[0, 1, 2], &[], HAMMERED, &[])
        .expect("cluster");
    cluster
        .settled(&[0, 1, 2], Duration::from_secs(30))
        .await
        .expect("routing settles");
    for i in 0..3 {
        // Slot 0: 200 burst, 100 a second. Two seconds refill it whole.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let client = cluster.client(i).coalescing(false);
        let started = Instant::now();
        let mut granted = Vec::new();
        for _ in 0..250 {
            granted.push(
                client
                    .acquire(0, Acquire::default())
                    .await
                    .expect("answered")
                    .granted,
            );
        }
        let refilled = 100 * (started.elapsed().as_secs() + 1);
        let total: u64 = granted.iter().map(|g| u64::from(*g)).sum();
        assert!(
            granted[..200].iter().all(|g| *g == 1),
            "instance {i}: the burst of 200 is granted one by one"
        );
        assert!(
            total <= 200 + refilled,
            "instance {i}: {total} granted, at most {}",
            200 + refilled
        );
        // Asking more than is left gets the rest.
        let rest = client
            .acquire(
                0,
                Acquire {
                    key: None,
                    tokens: Some(500),
                },
            )
            .await
            .expect("answered");
        assert!(
            rest.granted < 500 && u64::from(rest.granted) <= refilled,
            "instance {i}: {rest:?}"
        );
        let none = client
            .acquire(0, Acquire::default())
            .await
            .expect("answered");
        assert_eq!(
            (none.granted, none.remaining),
            (0, 0),
            "instance {i}: empty"
        );
        assert!(
            none.reset_ms <= 1_000,
            "instance {i}: refills within a second"
        );
    }
}

/// CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime, in clock ticks (100 a second on Linux).
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_on_an_empty_key_is_answered_where_it_arrives_not_by_its_owner() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let cluster = ProcessCluster::start_config(&["a", "b", "c"], &[0, 1, 2], &[], HAMMERED, &[])
        .expect("cluster");
    let table = cluster
        .settled(&[0, 1, 2], Duration::from_secs(30))
        .await
        .expect("routing settles");
    let route = table
        .routes
        .iter()
        .find(|r| r.slot == 1)
        .expect("slot 1 routed");
    let count = u16::try_from(route.partitions.len()).expect("few partitions");
    let partition = vss_wire::partition::partition_of("flood", count);
    let owner = cluster.index_of(&route.partitions[usize::from(partition)].owner);
    let flooders: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    // Empty the bucket (10 tokens).
    let drain = cluster.client(flooders[0]);
    for _ in 0..12 {
        drain
            .acquire(
                1,
                Acquire {
                    key: Some("flood".into()),
                    tokens: None,
                },
            )
            .await
            .expect("answered");
    }
    let pids: Vec<u32> = (0..3).map(|i| cluster.pid(i).expect("running")).collect();
    let before: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in &flooders {
        for _ in 0..8 {
            let client = cluster.client(*i).coalescing(false);
            let (stop, calls) = (stop.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let got = client
                        .acquire(
                            1,
                            Acquire {
                                key: Some("flood".into()),
                                tokens: None,
                            },
                        )
                        .await
                        .expect("answered");
                    assert!(got.granted <= 1);
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("flooder");
    }
    let used: Vec<f64> = pids
        .iter()
        .zip(&before)
        .map(|(p, b)| cpu_seconds(*p) - b)
        .collect();
    let total: f64 = used.iter().sum();
    let mut denied = 0.0;
    for i in &flooders {
        denied += metric_value(
            &cluster.metrics(*i).await,
            "vss_local_denials_total{slot=\"1\"}",
        )
        .unwrap_or(0.0);
    }
    let flood = calls.load(Ordering::Relaxed);
    println!(
        "{flood} acquires on an empty key in 3 s, {denied} denied where they arrived; CPU s by instance {used:?} (owner {owner})"
    );
    assert!(denied >= flood as f64 * 0.9, "most were denied locally");
    assert!(
        used[owner] <= total * 0.2,
        "the owner did a fifth of the work or less: {:.2} of {total:.2} CPU s",
        used[owner]
    );
}
