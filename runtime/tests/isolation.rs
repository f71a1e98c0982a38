//! A slot whose every call runs to its deadline must not stall anything
//! else: 50 callers hammer such a slot at its owner in a 3-instance cluster
//! of real processes while another client acquires on slot 0 at the same
//! instance and the probes are polled. Asserts on events, not latencies: no
//! peer marked down, the routing table never changes, one leader
//! throughout, every acquire and every probe answered.
//!
//! And the election rule under the mesh fault injection: an instance whose
//! incoming mesh messages are all dropped (so its peers cannot hear it,
//! though it hears them) never leads and never gets a table published.

mod process;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use process::{ProcessCluster, SLOTS_YAML};
use vss_client::{Acquire, ClientError};
use vss_proto::v1::RoutingTable;

const HOSTILE: u32 = 20;
const CALLERS: usize = 50;
const LOAD: Duration = Duration::from_secs(6);
/// kubelet's default probe timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

fn config() -> String {
    format!(
        "{SLOTS_YAML}  - id: {HOSTILE}\n    type: custom\n    custom: {{module: misbehave.wasm}}\n"
    )
}

fn routes_everything(t: &RoutingTable, members: usize) -> bool {
    t.epoch >= 1 && t.members.len() == members && t.routes.len() == 7
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_running_to_its_deadline_stalls_nothing_else() {
    let cluster = ProcessCluster::start_config(
        &["a", "b", "c"],
        &[0, 1, 2],
        &[],
        &config(),
        &[("misbehave.wasm", vss_builtin_slots::testing::MISBEHAVE)],
    )
    .expect("start cluster");
    let table = cluster
        .wait_for_table(&[0, 1, 2], Duration::from_secs(20), |t| {
            routes_everything(t, 3)
        })
        .await
        .expect("the three instances agree on a table");
    let owner = cluster.index_of(
        &table
            .routes
            .iter()
            .find(|r| r.slot == HOSTILE)
            .expect("hostile slot routed")
            .owner,
    );
    println!(
        "epoch {} leader {}; slot {HOSTILE} owned by {}",
        table.epoch,
        table.leader,
        cluster.id(owner)
    );
    let cluster = Arc::new(cluster);
    let stop = Arc::new(AtomicBool::new(false));

    let hostile_calls = Arc::new(AtomicU64::new(0));
    let mut hostile = tokio::task::JoinSet::new();
    for _ in 0..CALLERS {
        let (client, stop, calls) = (cluster.client(owner), stop.clone(), hostile_calls.clone());
        hostile.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let looped = client.call(HOSTILE, "loop", Vec::new()).await;
                calls.fetch_add(1, Ordering::Relaxed);
                if let Err(ClientError::Server { message, .. }) = &looped {
                    // The deadline, or a full queue; never an answer.
                    assert!(
                        message.contains("call deadline") || message.contains("queue"),
                        "{message}"
                    );
                }
            }
        });
    }

    let started = Instant::now();
    let (mut acquires, mut acquire_failures) = (0u32, Vec::new());
    let (mut probes, mut probe_failures) = (0u32, Vec::new());
    let mut views = Vec::new();
    let limiter = cluster.client(owner);
    let http = cluster.http_addr(owner);
    while started.elapsed() < LOAD {
        acquires += 1;
        if let Err(e) = limiter.acquire(0, Acquire::default()).await {
            acquire_failures.push(e.to_string());
        }
        probes += 1;
        match tokio::time::timeout(PROBE_TIMEOUT, process::http_get(&http, "/healthz")).await {
            Ok(Ok(body)) if body.contains("ok") => {}
            other => probe_failures.push(format!("{other:?}")),
        }
        if acquires % 10 == 0 {
            for i in 0..3 {
                views.push((i, cluster.table(i).await));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    while hostile.join_next().await.is_some() {}
    let hostile_calls = hostile_calls.load(Ordering::Relaxed);
    println!(
        "{hostile_calls} hostile calls; {acquires} acquires, {} failed; {probes} probes, {} failed",
        acquire_failures.len(),
        probe_failures.len()
    );

    assert!(
        hostile_calls >= CALLERS as u64,
        "the hostile load ran: {hostile_calls} calls"
    );
    let metrics = cluster.metrics(owner).await;
    let timeouts = metrics
        .lines()
        .filter(|l| l.starts_with(&format!("vss_slot_restarts_total{{slot=\"{HOSTILE}\"}}")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(
        timeouts >= 10.0,
        "slot {HOSTILE} ran to its deadline {timeouts} times"
    );
    assert!(acquire_failures.is_empty(), "{acquire_failures:#?}");
    assert!(probe_failures.is_empty(), "{probe_failures:#?}");
    for (i, view) in &views {
        assert_eq!(
            view.as_ref(),
            Some(&table),
            "{} changed its routing table under the load",
            cluster.id(*i)
        );
    }
    for i in 0..3 {
        let log = cluster.log(i);
        assert!(
            !log.contains("peer down"),
            "{} marked a peer down:\n{log}",
            cluster.id(i)
        );
        let leading = process::metric_value(&cluster.metrics(i).await, "vss_leader");
        let expected = f64::from(u8::from(cluster.id(i) == table.leader));
        assert_eq!(leading, Some(expected), "{} leader gauge", cluster.id(i));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_cut_off_from_its_peers_never_leads() {
    // "a" is the lowest id: with no table yet, it is everyone's first
    // candidate, so without the majority rule it would lead at once.
    let mut cluster = ProcessCluster::start_some(&["a", "b", "c"], &[]).expect("cluster");
    cluster.set_own_args(0, &["--chaos-mesh-drop", "1.0"]);
    for i in 0..3 {
        cluster.spawn(i).expect("start");
    }
    let table = cluster
        .wait_for_table(&[1, 2], Duration::from_secs(20), |t| {
            t.epoch >= 1 && t.members.len() == 2 && t.routes.len() == 6
        })
        .await
        .expect("b and c agree on a table without a");
    assert_ne!(table.leader, "a");
    assert!(!table.members.iter().any(|m| m == "a"), "{table:?}");

    // Watch for a while: a leads at no moment, and no table names it.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(4) {
        let a = cluster.status(0).await.expect("a answers status");
        assert!(
            a.routing.is_none(),
            "a published or received a table: {:?}",
            a.routing
        );
        for i in [1, 2] {
            let t = cluster.table(i).await.expect("table");
            assert_ne!(t.leader, "a", "{t:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = cluster.metrics(0).await;
    assert_eq!(process::metric_value(&metrics, "vss_leader"), Some(0.0));
    let log = cluster.log(0);
    assert!(!log.contains("leading=true"), "a led:\n{log}");
    assert!(!log.contains("routing table installed"), "a:\n{log}");

    // Healed, it rejoins under the leader of the majority.
    cluster.kill(0);
    cluster.set_own_args(0, &[]);
    cluster.spawn(0).expect("restart a");
    let healed = cluster
        .wait_for_table(&[0, 1, 2], Duration::from_secs(20), |t| {
            t.members.len() == 3 && t.epoch > table.epoch
        })
        .await
        .expect("a rejoins");
    assert_eq!(healed.leader, table.leader, "the majority's leader stays");
}
