//! A limiter slot's keys split into partitions over the data instances.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::core::harness::{TestCluster, acquire};
use crate::core::node::Origin;

#[tokio::test(start_paused = true)]
async fn a_keys_bucket_is_one_bucket_through_every_node() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let table = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let owners: BTreeSet<&str> = table.partitions[&1]
        .iter()
        .map(|r| r.owner.as_str())
        .collect();
    assert_eq!(
        owners.len(),
        2,
        "both data instances own partitions of slot 1"
    );
    for key in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        let mut remaining = Vec::new();
        for id in ["a", "b", "c", "a"] {
            let got = cluster
                .node(id)
                .acquire(Origin::Client, acquire(1, key, None))
                .await
                .expect("granted");
            remaining.push(got.remaining);
        }
        assert_eq!(remaining, [9, 8, 7, 6], "{key}: one bucket of 10");
    }
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_key_reaches_its_partitions_owner_and_no_other() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let table = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    for key in ["k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8"] {
        let partition = cluster.node("a").slots().partition_for(1, key);
        let owner = table.route_of(1, partition).expect("routed").owner.clone();
        let others: Vec<&str> = ["b", "c"].into_iter().filter(|id| *id != owner).collect();
        let before: Vec<u64> = others
            .iter()
            .map(|o| cluster.net.calls("a", o, "forward"))
            .collect();
        let owner_before = cluster.net.calls("a", &owner, "forward");
        cluster
            .node("a")
            .acquire(Origin::Client, acquire(1, key, None))
            .await
            .expect("granted");
        assert_eq!(
            cluster.net.calls("a", &owner, "forward"),
            owner_before + 1,
            "{key}"
        );
        let after: Vec<u64> = others
            .iter()
            .map(|o| cluster.net.calls("a", o, "forward"))
            .collect();
        assert_eq!(after, before, "{key} went to its owner only");
    }
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_batch_of_many_keys_is_answered_in_order_across_owners() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let keys: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let calls = keys.iter().map(|k| acquire(1, k, Some(3))).collect();
    let first = cluster
        .node("a")
        .acquire_batch(Origin::Client, calls, |_| Ok(()))
        .await;
    assert!(
        first
            .iter()
            .all(|a| matches!(a, Ok(g) if g.granted == 3 && g.remaining == 7))
    );
    let calls = keys.iter().map(|k| acquire(1, k, Some(3))).collect();
    let second = cluster
        .node("b")
        .acquire_batch(Origin::Client, calls, |_| Ok(()))
        .await;
    assert!(
        second
            .iter()
            .all(|a| matches!(a, Ok(g) if g.remaining == 4)),
        "the same buckets, through another node"
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_partitions_standby_continues_its_buckets_when_the_owner_dies() {
    let mut cluster = TestCluster::start(&["a", "b", "c"]);
    let table = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let partition = cluster.node("a").slots().partition_for(1, "zoe");
    let route = table.route_of(1, partition).expect("routed").clone();
    let standby = route.standby.clone().expect("a standby");
    for _ in 0..8 {
        cluster
            .node(&route.owner)
            .acquire(Origin::Client, acquire(1, "zoe", None))
            .await
            .expect("granted");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(&route.owner).await;
    let got = cluster
        .node(&standby)
        .acquire(Origin::Client, acquire(1, "zoe", None))
        .await
        .expect("granted");
    assert!(
        got.remaining <= 2,
        "zoe's bucket continued: {} left",
        got.remaining
    );
    let others: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|id| *id != route.owner)
        .collect();
    let after = cluster.settled(&others).await.expect("a new table");
    assert_eq!(
        after.route_of(1, partition).map(|r| r.owner.as_str()),
        Some(standby.as_str()),
        "the standby owns the partition in the next table"
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn every_node_agrees_on_each_keys_owner_in_an_epoch() {
    let mut cluster = TestCluster::start(&["a", "b", "c", "d"]);
    let all = ["a", "b", "c", "d"];
    cluster.settled(&all).await.expect("a table");
    cluster.kill("d").await;
    let table = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    for id in ["a", "b", "c"] {
        let held = cluster.node(id).cluster().table().expect("a table");
        assert_eq!(held.epoch, table.epoch);
        assert_eq!(
            held.partitions, table.partitions,
            "{id} routes each key as the others"
        );
    }
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_joining_instance_gets_its_share_of_partitions_with_their_state() {
    let cluster = TestCluster::start(&["a", "b", "c", "d"]);
    cluster.isolate("d");
    let before = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    // Spend from every partition's bucket of one key each, so the state
    // that moves is not a fresh one.
    for p in 0..16u16 {
        let key = (0..)
            .map(|i| format!("key-{i}"))
            .find(|k| cluster.node("a").slots().partition_for(1, k) == p)
            .expect("a key of each partition");
        for _ in 0..4 {
            cluster
                .node("a")
                .acquire(Origin::Client, acquire(1, &key, None))
                .await
                .expect("granted");
        }
    }
    for other in ["a", "b", "c"] {
        cluster.heal("d", other);
    }
    let after = cluster
        .settled(&["a", "b", "c", "d"])
        .await
        .expect("a table with d");
    let moved = cluster
        .until(Duration::from_secs(10), |c| {
            c.node("a")
                .cluster()
                .table()
                .is_some_and(|t| t.partitions[&1].iter().any(|r| r.owner == "d"))
        })
        .await;
    let last = cluster.node("a").cluster().table().expect("a table");
    assert!(
        moved,
        "d owns partitions of slot 1 after joining: {:?} (before {:?}, at join {:?})",
        last.partitions[&1], before.partitions[&1], after.partitions[&1]
    );
    // The buckets moved with their state: 6 left of 10 in each.
    for p in 0..16u16 {
        let key = (0..)
            .map(|i| format!("key-{i}"))
            .find(|k| cluster.node("a").slots().partition_for(1, k) == p)
            .expect("a key of each partition");
        let got = cluster
            .node("b")
            .acquire(Origin::Client, acquire(1, &key, None))
            .await
            .expect("granted");
        assert!(
            got.remaining <= 5,
            "partition {p}: {key} continued, {} left",
            got.remaining
        );
    }
    cluster.stop().await;
}
