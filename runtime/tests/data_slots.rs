//! The data slot types (counter, register, registry, tick) in a cluster of
//! real `vss-runtime` processes on loopback: convergence across a real
//! partition (a TCP forwarder the test cuts), a SIGKILLed instance that
//! takes its peers' state before it answers, one last-writer-wins winner
//! everywhere, expiry at the same moment on every instance, and ticks that
//! neither repeat nor skip through a leader's SIGKILL.

mod process;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use process::{ProcessCluster, Proxy, SLOTS_YAML};
use tonic::Code;
use vss_client::{Client, ClientError, ServiceChangeKind};
use vss_proto::v1::WatchTicksRequest;
use vss_proto::v1::vss_client::VssClient;

const COUNTER: u32 = 20;
const REGISTER: u32 = 21;
const REGISTRY: u32 = 22;
const TICK: u32 = 23;
const GROW_ONLY: u32 = 24;
const SMALL_REGISTER: u32 = 25;
const TICK_MS: u64 = 100;

fn config() -> String {
    format!(
        "{SLOTS_YAML}  - id: {COUNTER}
    type: counter
  - id: {REGISTER}
    type: register
    maxKeyBytes: 32
    maxValueBytes: 64
  - id: {REGISTRY}
    type: registry
    defaultTtl: 2s
  - id: {TICK}
    type: tick
    interval: {TICK_MS}ms
  - id: {GROW_ONLY}
    type: counter
    growOnly: true
  - id: {SMALL_REGISTER}
    type: register
    maxKeys: 3
"
    )
}

fn start(ids: &[&str]) -> ProcessCluster {
    let all: Vec<usize> = (0..ids.len()).collect();
    ProcessCluster::start_config(ids, &all, &[], &config(), &[]).expect("start")
}

/// Reads the counter on instance `i` until it equals `want`, or panics
/// with what it read last.
async fn await_value(cluster: &ProcessCluster, i: usize, want: i64, within: Duration) {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(v) = cluster.client(i).read_counter(COUNTER).await {
            if v.value == want {
                return;
            }
            last = Some(v.value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} reads {last:?}, expected {want} within {within:?}",
        cluster.id(i)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counter_converges_across_a_partition_and_a_restart_reads_the_full_value() {
    let ids = ["a", "b", "c"];
    let mut cluster =
        ProcessCluster::start_config(&ids, &[], &[], &config(), &[]).expect("cluster");
    // a and b reach each other only through forwarders the test can cut;
    // c reaches both directly.
    let to_b = Proxy::start(cluster.mesh_addr(1)).await.expect("proxy");
    let to_a = Proxy::start(cluster.mesh_addr(0)).await.expect("proxy");
    cluster.route_peer_via(0, 1, to_b.addr());
    cluster.route_peer_via(1, 0, to_a.addr());
    for i in 0..3 {
        cluster.spawn(i).expect("spawn");
    }
    cluster
        .settled(&[0, 1, 2], Duration::from_secs(30))
        .await
        .expect("settles");

    to_a.cut();
    to_b.cut();
    // Both directions between a and b are down once each has missed its
    // heartbeats.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut expected = 0i64;
    let mut writers = Vec::new();
    for i in 0..3 {
        let client = cluster.client(i);
        writers.push(tokio::spawn(async move {
            let mut sum = 0i64;
            for n in 0..100u64 {
                let amount = 1 + (n % 3);
                let v = client.increment(COUNTER, amount).await.expect("increment");
                assert!(v.applied);
                sum += amount as i64;
                if n % 10 == 0 {
                    client.decrement(COUNTER, 1).await.expect("decrement");
                    sum -= 1;
                }
            }
            sum
        }));
    }
    for w in writers {
        expected += w.await.expect("writer");
    }
    to_a.heal();
    to_b.heal();
    for i in 0..3 {
        await_value(&cluster, i, expected, Duration::from_secs(10)).await;
    }

    // A SIGKILLed, restarted instance answers nothing below the full value:
    // until it has its peers' state it answers UNAVAILABLE.
    cluster.kill(2);
    cluster.spawn(2).expect("restart");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut refused = 0;
    loop {
        assert!(Instant::now() < deadline, "c never answered after restart");
        match cluster.client(2).read_counter(COUNTER).await {
            Ok(v) => {
                assert_eq!(v.value, expected, "first answer after restart");
                break;
            }
            // Not up yet, or up and still taking its peers' state.
            Err(ClientError::Unreachable(_)) => refused += 1,
            Err(e) => panic!("unexpected error after restart: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("restarted instance refused {refused} reads before answering {expected}");
    // Its own entry came back from the peers: new increments add to it
    // rather than restarting it from zero.
    let c = cluster.client(2);
    for _ in 0..10 {
        c.increment(COUNTER, 1)
            .await
            .expect("increment after restart");
    }
    for i in 0..3 {
        await_value(&cluster, i, expected + 10, Duration::from_secs(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn register_picks_one_winner_everywhere_and_reads_your_writes() {
    let cluster = start(&["a", "b", "c"]);
    cluster
        .settled(&[0, 1, 2], Duration::from_secs(30))
        .await
        .expect("settles");
    // Concurrent writes of one key on every instance.
    let mut writes = Vec::new();
    for round in 0..20 {
        for i in 0..3 {
            let client = cluster.client(i);
            writes.push(tokio::spawn(async move {
                client
                    .set(REGISTER, "color", format!("v{round}-{i}").as_bytes())
                    .await
                    .expect("set")
            }));
        }
    }
    let mut newest = None;
    for w in writes {
        let reply = w.await.expect("writer");
        let v = reply.version.expect("a version");
        if newest
            .as_ref()
            .is_none_or(|n: &vss_client::Version| (v.hlc, &v.instance) > (n.hlc, &n.instance))
        {
            newest = Some(v);
        }
    }
    let newest = newest.expect("some write");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut seen = Vec::new();
        for i in 0..3 {
            let g = cluster.client(i).get(REGISTER, "color").await.expect("get");
            seen.push((g.value, g.version));
        }
        if seen.iter().all(|s| *s == seen[0]) && seen[0].1.as_ref() == Some(&newest) {
            println!(
                "every instance holds {:?}",
                String::from_utf8_lossy(&seen[0].0)
            );
            break;
        }
        assert!(Instant::now() < deadline, "instances disagree: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Read your writes from another instance, and deletes.
    let w = cluster
        .client(0)
        .set(REGISTER, "mine", b"1")
        .await
        .expect("set");
    assert_eq!(w.replicas, 2, "both peers took the write before the answer");
    let g = cluster
        .client(2)
        .get_at_least(REGISTER, "mine", w.version.expect("version"))
        .await
        .expect("read own write elsewhere");
    assert_eq!(g.value, b"1");
    let d = cluster
        .client(1)
        .delete(REGISTER, "mine")
        .await
        .expect("delete");
    assert!(d.existed);
    let g = cluster.client(0).get(REGISTER, "mine").await.expect("get");
    assert!(!g.found && g.deleted, "{g:?}");
    let listed = cluster
        .client(2)
        .list_keys(REGISTER, "co", 0)
        .await
        .expect("list");
    assert_eq!(listed.entries.len(), 1);
    assert_eq!(listed.entries[0].key, "color");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_entries_expire_at_the_same_moment_everywhere() {
    let cluster = start(&["a", "b", "c"]);
    cluster
        .settled(&[0, 1, 2], Duration::from_secs(30))
        .await
        .expect("settles");
    let endpoints = cluster.endpoints();
    let client = Client::new(&endpoints).expect("client");
    let mut watch = client
        .watch_services(REGISTRY, "checkout")
        .await
        .expect("watch");
    let ttl = Duration::from_millis(1_500);
    let a = cluster
        .client(0)
        .announce(REGISTRY, "checkout", "10.0.0.7:8080", Some(ttl))
        .await
        .expect("announce");
    assert!(a.added);
    assert_eq!(a.replicas, 2);
    // Renewed once by another instance: the expiry moves for everyone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let renewed = cluster
        .client(1)
        .announce(REGISTRY, "checkout", "10.0.0.7:8080", Some(ttl))
        .await
        .expect("renew");
    assert!(!renewed.added && renewed.expires_ms > a.expires_ms);

    // Poll every instance; note when each stops listing the entry.
    let mut gone: HashMap<usize, u64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while gone.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "not expired everywhere: {gone:?}"
        );
        for i in 0..3 {
            if gone.contains_key(&i) {
                continue;
            }
            let services = cluster
                .client(i)
                .services(REGISTRY, "checkout")
                .await
                .expect("list");
            if services.is_empty() {
                gone.insert(i, now_ms());
            } else {
                assert_eq!(services[0].expires_ms, renewed.expires_ms);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = gone.values().min().copied().unwrap_or(0);
    let last = gone.values().max().copied().unwrap_or(0);
    println!(
        "expired on every instance within {} ms of each other, {} ms after the due time",
        last - first,
        last.saturating_sub(renewed.expires_ms)
    );
    assert!(first >= renewed.expires_ms, "no instance drops it early");

    let kinds: Vec<_> = [
        watch.next().await.expect("added"),
        watch.next().await.expect("renewed"),
        watch.next().await.expect("expired"),
    ]
    .iter()
    .map(|c| c.kind())
    .collect();
    assert_eq!(
        kinds,
        [
            ServiceChangeKind::Added,
            ServiceChangeKind::Renewed,
            ServiceChangeKind::Expired
        ]
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ticks_neither_repeat_nor_skip_through_a_leader_sigkill() {
    let mut cluster = start(&["a", "b", "c"]);
    let table = cluster
        .settled(&[0, 1, 2], Duration::from_secs(30))
        .await
        .expect("settles");
    let client = Client::new(&cluster.endpoints()).expect("client");
    let mut ticks = client.watch_ticks(TICK).await.expect("watch");

    // Every instance's own stream, to measure how far apart they send.
    let mut raw = Vec::new();
    for i in 0..3 {
        let mut grpc = VssClient::connect(cluster.url(i)).await.expect("connect");
        let mut stream = grpc
            .watch_ticks(WatchTicksRequest { slot: TICK })
            .await
            .expect("stream")
            .into_inner();
        raw.push(tokio::spawn(async move {
            let mut sent = BTreeMap::new();
            while let Ok(Some(t)) = stream.message().await {
                sent.insert(t.number, t.sent_ms);
                if sent.len() >= 20 {
                    break;
                }
            }
            sent
        }));
    }

    let mut numbers = Vec::new();
    let started = Instant::now();
    let mut killed = false;
    while started.elapsed() < Duration::from_secs(4) {
        let t = tokio::time::timeout(Duration::from_secs(2), ticks.next())
            .await
            .expect("a tick within 2 s")
            .expect("stream open");
        numbers.push(t.number);
        if !killed && started.elapsed() > Duration::from_millis(1_500) {
            cluster.kill(cluster.index_of(&table.leader));
            killed = true;
        }
    }
    for pair in numbers.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "ticks {numbers:?}");
    }
    assert!(numbers.len() >= 30, "{} ticks in 4 s", numbers.len());

    let mut per_instance = Vec::new();
    for r in raw {
        per_instance.push(r.await.expect("reader"));
    }
    let mut worst = 0;
    for (n, first) in &per_instance[0] {
        for other in &per_instance[1..] {
            if let Some(t) = other.get(n) {
                worst = worst.max(first.abs_diff(*t));
            }
        }
    }
    println!(
        "{} ticks in order through the leader's SIGKILL; instances sent the same number at most {worst} ms apart",
        numbers.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_names_the_field_and_the_limit() {
    let cluster = start(&["a"]);
    cluster
        .settled(&[0], Duration::from_secs(30))
        .await
        .expect("up");
    let c = cluster.client(0);
    let code_and_message = |e: ClientError| match e {
        ClientError::Server { code, message, .. } => (code, message),
        other => panic!("expected a server error, got {other}"),
    };
    let cases: Vec<(Result<(), ClientError>, Code, &str)> = vec![
        (
            c.set(REGISTER, &"k".repeat(33), b"v").await.map(drop),
            Code::InvalidArgument,
            "at most 32",
        ),
        (
            c.set(REGISTER, "k", &[0; 65]).await.map(drop),
            Code::InvalidArgument,
            "at most 64",
        ),
        (
            c.set(REGISTER, "", b"v").await.map(drop),
            Code::InvalidArgument,
            "`key`",
        ),
        (
            c.announce(REGISTRY, "app", "addr", Some(Duration::ZERO))
                .await
                .map(drop),
            Code::InvalidArgument,
            "`ttl`",
        ),
        (
            c.decrement(GROW_ONLY, 1).await.map(drop),
            Code::FailedPrecondition,
            "grow-only",
        ),
        (
            c.increment(COUNTER, 0).await.map(drop),
            Code::InvalidArgument,
            "`amount`",
        ),
        (
            c.increment(REGISTER, 1).await.map(drop),
            Code::FailedPrecondition,
            "is a register slot; increment needs a counter slot",
        ),
    ];
    for (result, code, text) in cases {
        let (got, message) = code_and_message(result.expect_err("refused"));
        assert_eq!(got, code, "{message}");
        assert!(message.contains(text), "{message:?} should say {text:?}");
    }
    for k in ["a", "b", "c"] {
        c.set(SMALL_REGISTER, k, b"1").await.expect("room");
    }
    let (code, message) = code_and_message(
        c.set(SMALL_REGISTER, "d", b"1")
            .await
            .expect_err("a fourth key"),
    );
    assert_eq!(code, Code::ResourceExhausted);
    assert!(message.contains("maxKeys"), "{message}");
    // A refused write changed nothing.
    assert_eq!(c.read_counter(COUNTER).await.expect("read").value, 0);
    assert!(!c.get(REGISTER, "").await.map(|g| g.found).unwrap_or(false));
}
