//! The cluster with real processes on loopback: each instance is a
//! `vss-runtime` process started by the test and killed with SIGKILL by
//! PID, as a crash would.

mod process;

use std::time::{Duration, Instant};

use process::{ProcessCluster, SLOTS_YAML};
use tonic::Code;
use vss_client::Acquire;
use vss_proto::v1::control_client::ControlClient;
use vss_proto::v1::mesh_client::MeshClient;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{
    AcquireBatchRequest, AcquireRequest, ApplyConfigRequest, RoutingTable, SlotRoute,
};

/// Slot 2 of the test config: 1,000 tokens a minute, 20 per acquire, so
/// refills cannot hide a bucket that was reset.
const LIMITER: u32 = 2;
const BROADCAST: u32 = 10;
const MULTICAST: u32 = 11;

fn acquire_20() -> Acquire {
    Acquire::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_and_leader_failover_with_real_processes() {
    let mut cluster = ProcessCluster::start(&["a", "b", "c"]).expect("start cluster");
    let table = cluster
        .settled(&[0, 1, 2], Duration::from_secs(20))
        .await
        .expect("the three instances agree on a routing table");
    let leader = cluster.index_of(&table.leader);
    let route = route_of(&table, LIMITER);
    let owner = cluster.index_of(&route.owner);
    let standby = cluster.index_of(&route.standby);
    assert_ne!(owner, leader, "with 3 instances the leader owns no slot");
    assert_ne!(
        standby, leader,
        "with 3 instances the leader stands by for no slot"
    );
    println!(
        "epoch {} leader {} slot {LIMITER}: owner {} standby {}",
        table.epoch, table.leader, route.owner, route.standby
    );

    // Through the leader, which forwards to the owner.
    let via_leader = cluster.client(leader);
    let mut remaining = 0;
    for _ in 0..5 {
        remaining = via_leader
            .acquire(LIMITER, acquire_20())
            .await
            .expect("acquire")
            .remaining;
    }
    assert_eq!(remaining, 900, "5 acquires of 20 from 1,000");
    let served_by_owner = cluster.slot_calls(owner, LIMITER).await;
    assert!(
        served_by_owner >= 5,
        "the owner served the forwarded calls, saw {served_by_owner}"
    );
    assert_eq!(
        cluster.slot_calls(leader, LIMITER).await,
        0,
        "the leader forwarded, it did not serve"
    );
    // Let replication carry the state to the standby.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGKILL the owner: the standby serves, with the replicated bucket.
    cluster.kill(owner);
    let killed_at = Instant::now();
    let grant = loop {
        match via_leader.acquire(LIMITER, acquire_20()).await {
            Ok(g) => break g,
            Err(e) => {
                assert!(
                    killed_at.elapsed() < Duration::from_secs(10),
                    "no grant after the owner died: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let served_after = killed_at.elapsed();
    println!(
        "owner killed: first grant after {served_after:?}, remaining {}",
        grant.remaining
    );
    assert_eq!(grant.granted, 20);
    assert_eq!(
        grant.remaining, 880,
        "the standby continued the bucket instead of starting full (980)"
    );
    assert!(
        served_after < Duration::from_secs(2),
        "standby served after {served_after:?}"
    );

    let survivors: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    let promoted = cluster
        .wait_for_table(&survivors, Duration::from_secs(10), |t| {
            t.epoch > table.epoch && route_of(t, LIMITER).owner == route.standby
        })
        .await
        .expect("the leader promotes the standby");
    println!(
        "standby promoted in epoch {} after {:?}",
        promoted.epoch,
        killed_at.elapsed()
    );

    // Restart the killed instance: it rejoins and gets a role again.
    cluster.spawn(owner).expect("restart");
    let me = cluster.id(owner).to_string();
    let rejoined = cluster
        .wait_for_table(&[0, 1, 2], Duration::from_secs(15), |t| {
            t.members.contains(&me) && t.routes.iter().any(|r| r.owner == me || r.standby == me)
        })
        .await
        .expect("the restarted instance rejoins with a role");
    println!("rejoined in epoch {}", rejoined.epoch);

    // SIGKILL the leader: another instance takes over with a newer epoch.
    let leader_id = cluster.id(leader).to_string();
    cluster.kill(leader);
    let killed_at = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let after = cluster
        .wait_for_table(&survivors, Duration::from_secs(10), |t| {
            t.leader != leader_id && t.epoch > rejoined.epoch
        })
        .await
        .expect("a new leader publishes a newer epoch");
    let took = killed_at.elapsed();
    println!(
        "leader {leader_id} killed: {} leads from epoch {} after {took:?}",
        after.leader, after.epoch
    );
    // Detection takes 0.8 s plus a decision round; the bound leaves room
    // for a loaded machine (the measured figure is printed above).
    assert!(took < Duration::from_secs(3), "new leader after {took:?}");
    let survivor = cluster.client(survivors[0]);
    let grant = survivor
        .acquire(LIMITER, acquire_20())
        .await
        .expect("acquire after leader loss");
    assert!(
        grant.remaining < 880,
        "bucket kept across the leader change: {grant:?}"
    );
}

/// (granted, remaining) of each outcome of an `AcquireBatch` of `n`
/// acquires on `slot`, sent to instance `i`.
async fn batch_at(cluster: &ProcessCluster, i: usize, slot: u32, n: usize) -> Vec<(u32, u64)> {
    use vss_proto::v1::acquire_outcome::Outcome;
    let mut grpc = VssClient::connect(cluster.url(i)).await.expect("connect");
    let request = AcquireBatchRequest {
        requests: vec![
            AcquireRequest {
                slot,
                key: String::new(),
                tokens: None,
            };
            n
        ],
    };
    grpc.acquire_batch(request)
        .await
        .expect("batch")
        .into_inner()
        .outcomes
        .into_iter()
        .map(|o| match o.outcome {
            Some(Outcome::Reply(r)) => (r.granted, r.remaining),
            other => panic!("acquire failed: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_batches_are_forwarded_to_the_owner_and_fail_over_to_the_standby() {
    let mut cluster = ProcessCluster::start(&["a", "b", "c"]).expect("start cluster");
    let table = cluster
        .settled(&[0, 1, 2], Duration::from_secs(20))
        .await
        .expect("the three instances agree on a routing table");
    let leader = cluster.index_of(&table.leader);
    let owner = cluster.index_of(&route_of(&table, LIMITER).owner);
    assert_eq!(
        batch_at(&cluster, leader, LIMITER, 3).await,
        [(20, 980), (20, 960), (20, 940)],
        "the leader forwarded the batch to the owner's bucket"
    );
    // Concurrent single acquires at the leader share batches to the owner.
    let grpc = VssClient::connect(cluster.url(leader))
        .await
        .expect("connect");
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let mut grpc = grpc.clone();
        callers.spawn(async move {
            let req = AcquireRequest {
                slot: LIMITER,
                key: String::new(),
                tokens: None,
            };
            grpc.acquire(req)
                .await
                .expect("acquire")
                .into_inner()
                .granted
        });
    }
    let mut granted = 0;
    while let Some(g) = callers.join_next().await {
        granted += g.expect("caller");
    }
    assert_eq!(granted, 800, "40 acquires of 20 from the 940 left");
    assert_eq!(cluster.slot_calls(leader, LIMITER).await, 0);
    assert!(cluster.slot_calls(owner, LIMITER).await >= 43);
    let batches = cluster
        .metrics(owner)
        .await
        .lines()
        .find_map(|l| {
            l.strip_prefix("vss_request_duration_seconds_count{verb=\"acquire_batch\"} ")
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    assert!(
        batches >= 2,
        "the owner got {batches} AcquireBatch calls: the forwarded acquires went one by one"
    );
    // Let replication carry the bucket to the standby, then kill the owner.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill(owner);
    let after = batch_at(&cluster, leader, LIMITER, 2).await;
    // 140 were left. The leader may answer from tokens the owner leased it
    // (docs/cluster.md#leased-tokens), whose `remaining` is the leader's
    // estimate of the bucket's rest: at most what was left, never a fresh
    // bucket.
    assert!(
        after
            .iter()
            .all(|(granted, remaining)| *granted == 20 && *remaining <= 120),
        "the standby continued the bucket: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_cross_instances() {
    let cluster = ProcessCluster::start(&["a", "b", "c"]).expect("start cluster");
    cluster
        .settled(&[0, 1, 2], Duration::from_secs(20))
        .await
        .expect("routing settles");
    // A subscriber connected to instance c only.
    let on_c = cluster.client(2);
    let mut sub = on_c
        .subscribe("only-on-c", &[])
        .await
        .expect("subscribe on c");
    // Acks every delivery as it arrives, and reports (slot, payload).
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel(16);
    let reader = tokio::spawn(async move {
        while let Some(d) = sub.next().await {
            let _ = d.ack().await;
            if seen_tx.send((d.slot, d.payload)).await.is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let on_a = cluster.client(0);
    let published = on_a
        .publish(BROADCAST, b"hello-from-a", "publisher-on-a")
        .await
        .expect("publish on a");
    assert_eq!(
        (published.delivered, published.failed),
        (1, 0),
        "{published:?}"
    );
    let got = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("delivery within 5 s");
    assert_eq!(got, Some((BROADCAST, b"hello-from-a".to_vec())));

    // Membership lives with the slot's owner: register through b, publish
    // through a, receive on c.
    // A client connected to all three instances gets each message from
    // each of them, acks every copy, and sees it once; the publish counts
    // it once.
    let everywhere = vss_client::Client::new(&cluster.endpoints()).expect("client");
    let mut all = everywhere
        .subscribe("everywhere", &[BROADCAST])
        .await
        .expect("subscribe everywhere");
    let (copies_tx, mut copies) = tokio::sync::mpsc::channel(16);
    let all_reader = tokio::spawn(async move {
        while let Some(d) = all.next().await {
            let _ = d.ack().await;
            if copies_tx.send(d.message_id).await.is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let twice = on_a
        .publish(BROADCAST, b"to-two-clients", "publisher-on-a")
        .await
        .expect("publish");
    assert_eq!((twice.delivered, twice.failed), (2, 0), "{twice:?}");
    let got = tokio::time::timeout(Duration::from_secs(5), copies.recv())
        .await
        .expect("delivery to the client on every instance");
    assert_eq!(got, Some(twice.message_id));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        copies.try_recv().is_err(),
        "the message was handed out once"
    );
    all_reader.abort();
    let got = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("second broadcast on c");
    assert_eq!(got, Some((BROADCAST, b"to-two-clients".to_vec())));

    cluster
        .client(1)
        .register(MULTICAST, "only-on-c")
        .await
        .expect("register via b");
    let published = on_a
        .publish(MULTICAST, b"to-members", "")
        .await
        .expect("multicast publish on a");
    assert_eq!(
        (published.delivered, published.failed),
        (1, 0),
        "{published:?}"
    );
    let got = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("multicast delivery within 5 s");
    assert_eq!(got, Some((MULTICAST, b"to-members".to_vec())));
    reader.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_refuse_stale_epochs_foreign_ids_and_garbage() {
    // "c" is listed but never started: "a" and "b" are a majority.
    let cluster = ProcessCluster::start_some(&["a", "b", "c"], &[0, 1]).expect("start a, b");
    let held = cluster
        .settled(&[0, 1], Duration::from_secs(20))
        .await
        .expect("a and b agree on a table");
    let mut mesh = MeshClient::connect(cluster.mesh_url(0))
        .await
        .expect("connect");

    let mut same_epoch = held.clone();
    same_epoch.routes.push(SlotRoute {
        slot: 99,
        owner: "a".into(),
        standby: String::new(),
        partitions: Vec::new(),
    });
    let refused = mesh
        .install_routing(same_epoch)
        .await
        .expect_err("same epoch, other content");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("not newer than the held epoch"),
        "{}",
        refused.message()
    );

    let mut foreign = held.clone();
    foreign.epoch += 10;
    foreign.leader = "mallory".into();
    let refused = mesh
        .install_routing(foreign)
        .await
        .expect_err("unknown leader");
    assert!(
        refused.message().contains("\"mallory\""),
        "{}",
        refused.message()
    );

    let refused = mesh
        .heartbeat(vss_proto::v1::HeartbeatRequest {
            from: "mallory".into(),
            epoch: 1,
        })
        .await
        .expect_err("unknown sender");
    assert_eq!(refused.code(), Code::PermissionDenied);

    let garbage = process::send_raw(
        &cluster.mesh_url(0),
        "/vss.v1.Mesh/InstallRouting",
        vec![0xff; 64],
    )
    .await
    .expect_err("garbage is refused");
    assert_eq!(garbage.code(), Code::Internal, "{garbage:?}");

    // The held table did not move, and every refusal was counted and logged.
    let still = cluster.table(0).await.expect("status");
    assert_eq!(still.epoch, held.epoch);
    let metrics = cluster.metrics(0).await;
    let refusals =
        process::metric_value(&metrics, "vss_refused_mesh_messages_total").unwrap_or(0.0);
    assert!(refusals >= 4.0, "refusals counted: {refusals}\n{metrics}");
    let log = cluster.log(0);
    assert!(log.contains("refused a mesh message"), "log: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reach_neither_the_mesh_nor_the_control_api_nor_pass_for_a_peer() {
    let cluster = ProcessCluster::start(&["a", "b", "c"]).expect("start cluster");
    let table = cluster
        .settled(&[0, 1, 2], Duration::from_secs(20))
        .await
        .expect("the three instances agree on a routing table");
    let leader = cluster.index_of(&table.leader);
    let owner = cluster.index_of(&route_of(&table, LIMITER).owner);

    // The client port serves neither the mesh nor the control API.
    let mut mesh = MeshClient::connect(cluster.url(0)).await.expect("connect");
    let status = mesh
        .install_routing(table.clone())
        .await
        .expect_err("mesh call on the client port");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    let mut control = ControlClient::connect(cluster.url(0))
        .await
        .expect("connect");
    let status = control
        .apply_config(ApplyConfigRequest {
            config_yaml: SLOTS_YAML.into(),
            generation: 1000,
        })
        .await
        .expect_err("control call on the client port");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");

    // A client that sets the forwarding header on the client port is
    // still sent to the owner: the leader does not serve the slot itself.
    let mut grpc = VssClient::connect(cluster.url(leader))
        .await
        .expect("connect");
    let mut request = tonic::Request::new(AcquireRequest {
        slot: LIMITER,
        key: String::new(),
        tokens: None,
    });
    request
        .metadata_mut()
        .insert("x-vss-forwarded-by", "c".parse().expect("header"));
    let reply = grpc.acquire(request).await.expect("acquire").into_inner();
    assert_eq!((reply.granted, reply.remaining), (20, 980));
    assert_eq!(cluster.slot_calls(leader, LIMITER).await, 0);
    assert_eq!(cluster.slot_calls(owner, LIMITER).await, 1);
}

#[tokio::test]
async fn an_id_missing_from_peers_exits_with_a_clear_message() {
    let out = ProcessCluster::run_once(&["--id", "x", "--peers", "a=127.0.0.1:1,b=127.0.0.1:2"])
        .expect("run vss-runtime");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"x\" is not in --peers (a, b)"),
        "stderr: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_apply_without_restart_with_generations() {
    let cluster = ProcessCluster::start(&["a"]).expect("start");
    cluster
        .wait_for_table(&[0], Duration::from_secs(20), |t| t.epoch >= 1)
        .await
        .expect("ready");
    let client = cluster.client(0);
    let before = client
        .acquire(LIMITER, acquire_20())
        .await
        .expect("acquire");
    assert_eq!(before.remaining, 980);

    // Push: slot 5 added, slot 2 untouched (keeps its state).
    let mut control = ControlClient::connect(cluster.mesh_url(0))
        .await
        .expect("connect");
    let with_slot_5 = format!(
        "{SLOTS_YAML}  - id: 5\n    type: token-bucket\n    bucketSize: 3\n    period: hour\n"
    );
    let applied = control
        .apply_config(ApplyConfigRequest {
            config_yaml: with_slot_5.clone(),
            generation: 7,
        })
        .await
        .expect("apply generation 7");
    assert_eq!(applied.get_ref().generation, 7);
    let status = cluster.status(0).await.expect("status");
    assert_eq!(status.config_generation, 7);
    assert!(status.slots.iter().any(|s| s.id == 5));
    assert_eq!(
        client
            .acquire(5, Acquire::default())
            .await
            .expect("new slot")
            .remaining,
        2
    );
    assert_eq!(
        client
            .acquire(LIMITER, acquire_20())
            .await
            .expect("kept slot")
            .remaining,
        960,
        "an unchanged slot keeps its state across a reload"
    );

    // Older generation, same generation with other content, bad config.
    let stale = control
        .apply_config(ApplyConfigRequest {
            config_yaml: SLOTS_YAML.into(),
            generation: 6,
        })
        .await
        .expect_err("older generation");
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert!(
        stale
            .message()
            .contains("older than the generation in force (7)"),
        "{}",
        stale.message()
    );
    let conflict = control
        .apply_config(ApplyConfigRequest {
            config_yaml: SLOTS_YAML.into(),
            generation: 7,
        })
        .await
        .expect_err("same generation, other config");
    assert_eq!(conflict.code(), Code::FailedPrecondition);
    control
        .apply_config(ApplyConfigRequest {
            config_yaml: with_slot_5,
            generation: 7,
        })
        .await
        .expect("re-sending the generation in force is a no-op");
    let bad = control
        .apply_config(ApplyConfigRequest {
            config_yaml: "slots:\n  - id: 100\n    type: token-bucket\n".into(),
            generation: 8,
        })
        .await
        .expect_err("invalid config");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("id"), "{}", bad.message());
    // A pushed config cannot make the runtime open a file outside its
    // module folder, nor learn anything of that file's content.
    let probe = control
        .apply_config(ApplyConfigRequest {
            config_yaml: "slots:\n  - id: 9\n    type: custom\n    custom: {module: /etc/passwd}\n"
                .into(),
            generation: 8,
        })
        .await
        .expect_err("a module outside the module folder");
    assert_eq!(probe.code(), Code::InvalidArgument);
    assert!(
        probe
            .message()
            .contains("slot 9: field `custom.module`: must be a path inside the module folder"),
        "{}",
        probe.message()
    );
    assert!(!probe.message().contains("0x"), "{}", probe.message());
    assert_eq!(
        cluster.status(0).await.expect("status").config_generation,
        7
    );

    // The watched file: a change is applied under the next generation.
    cluster.write_config(&format!(
        "{SLOTS_YAML}  - id: 6\n    type: leaky-bucket\n    bucketSize: 1\n    period: second\n"
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = cluster.status(0).await.expect("status");
        if s.config_generation == 8 && s.slots.iter().any(|x| x.id == 6) {
            assert!(
                !s.slots.iter().any(|x| x.id == 5),
                "slot 5 left with the file change"
            );
            break;
        }
        assert!(Instant::now() < deadline, "file change not applied: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn route_of(table: &RoutingTable, slot: u32) -> SlotRoute {
    table
        .routes
        .iter()
        .find(|r| r.slot == slot)
        .cloned()
        .unwrap_or_else(|| panic!("slot {slot} is routed: {table:?}"))
}

#[tokio::test]
async fn chaos_restart_exits_with_75_for_the_supervisor() {
    let started = Instant::now();
    let out = ProcessCluster::run_once(&[
        "--id",
        "a",
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--chaos-restart-every-s",
        "1",
    ])
    .expect("run vss-runtime");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "stderr: {stderr}");
    assert!(stderr.contains("chaos: restarting"), "stderr: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));

    let bad = ProcessCluster::run_once(&["--chaos-mesh-drop", "2"]).expect("run");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--chaos-mesh-drop: 2 is not a fraction between 0 and 1"),
        "stderr: {stderr}"
    );
}
