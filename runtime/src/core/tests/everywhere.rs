//! The slots kept on every instance: writes spread before the answer,
//! anti-entropy, and the sync of a starting instance.

use std::time::Duration;

use super::SETTLE;
use crate::core::error::{Code, RequestError};
use crate::core::harness::{Fault, TestCluster};

async fn value(cluster: &TestCluster, id: &str) -> Result<i64, RequestError> {
    cluster.node(id).read_counter(20).await.map(|v| v.value)
}

#[tokio::test(start_paused = true)]
async fn a_write_is_on_every_peer_before_it_is_answered() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let ready = cluster
        .until(SETTLE, |c| {
            ["a", "b", "c"]
                .iter()
                .all(|id| c.node(id).metrics().cluster.everywhere_synced.get() == 1)
        })
        .await;
    assert!(ready, "every node synced after the start");
    let (v, replicas) = cluster
        .node("a")
        .change_counter(20, true, Some(5), 1)
        .await
        .expect("applied");
    assert_eq!((v.value, replicas), (5, 2));
    for id in ["b", "c"] {
        assert_eq!(
            value(&cluster, id).await.expect("read"),
            5,
            "on {id} at once"
        );
    }
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_repeated_request_id_counts_once() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    cluster
        .until(SETTLE, |c| {
            c.node("a").metrics().cluster.everywhere_synced.get() == 1
        })
        .await;
    for id in ["a", "b", "a"] {
        cluster
            .node(id)
            .change_counter(20, true, Some(3), 77)
            .await
            .expect("applied");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in ["a", "b", "c"] {
        assert_eq!(value(&cluster, id).await.expect("read"), 3, "{id}");
    }
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn anti_entropy_brings_a_missed_write_to_a_peer() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    cluster
        .until(SETTLE, |c| {
            c.node("a").metrics().cluster.everywhere_synced.get() == 1
        })
        .await;
    cluster.net.set_for("a", "b", "replicate", Fault::Cut);
    let (_, replicas) = cluster
        .node("a")
        .change_counter(20, true, Some(7), 1)
        .await
        .expect("applied");
    assert_eq!(replicas, 1, "only c took the push");
    assert_eq!(value(&cluster, "b").await.expect("read"), 0, "b missed it");
    cluster.net.set_for("a", "b", "replicate", Fault::None);
    let mut got = 0;
    for _ in 0..20 {
        got = value(&cluster, "b").await.expect("read");
        if got == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, 7, "a replication round later, b has it");
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_node_serves_no_less_than_it_had() {
    let mut cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    cluster
        .until(SETTLE, |c| {
            c.node("c").metrics().cluster.everywhere_synced.get() == 1
        })
        .await;
    for n in 0..4 {
        cluster
            .node("c")
            .change_counter(20, true, Some(10), 100 + n)
            .await
            .expect("applied");
    }
    cluster.kill("c").await;
    cluster.up("c");
    // Before it took its peers' state, it refuses; after, it has it all.
    match value(&cluster, "c").await {
        Err(e) => assert_eq!(e.code(), Code::Unavailable, "{e}"),
        Ok(v) => assert_eq!(v, 40, "synced already"),
    }
    let synced = cluster
        .until(SETTLE, |c| {
            c.node("c").metrics().cluster.everywhere_synced.get() == 1
        })
        .await;
    assert!(synced);
    assert_eq!(value(&cluster, "c").await.expect("read"), 40);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_node_that_reaches_no_peer_keeps_refusing_the_replicated_slots() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.isolate("c");
    tokio::time::sleep(Duration::from_secs(15)).await;
    let refused = value(&cluster, "c").await.expect_err("not synced");
    assert!(matches!(refused, RequestError::Syncing { .. }), "{refused}");
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_cluster_started_afresh_serves_once_every_member_answered() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let all_synced = cluster
        .until(SETTLE, |c| {
            ["a", "b", "c"]
                .iter()
                .all(|id| c.node(id).metrics().cluster.everywhere_synced.get() == 1)
        })
        .await;
    assert!(all_synced);
    for id in ["a", "b", "c"] {
        assert_eq!(value(&cluster, id).await.expect("read"), 0);
    }
    cluster.stop().await;
}
