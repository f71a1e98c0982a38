//! A slot edited in place keeps its state when the edit keeps the state's
//! meaning, and starts fresh when it does not.

use crate::core::harness::{CONFIG, TestCluster, acquire};
use crate::core::node::{Node, Origin};

fn config(yaml: &str) -> vss_config::ValidConfig {
    vss_config::SlotsConfig::from_yaml(yaml)
        .expect("parses")
        .validate()
        .expect("valid")
}

async fn remaining(node: &Node, slot: u32, key: &str) -> u64 {
    node.acquire(Origin::Client, acquire(slot, key, None))
        .await
        .expect("granted")
        .remaining
}

#[tokio::test(start_paused = true)]
async fn a_new_rate_keeps_the_buckets_and_a_new_period_starts_them_fresh() {
    let cluster = TestCluster::start(&["a"]);
    cluster.settled(&["a"]).await.expect("a table");
    let node = cluster.node("a");
    for _ in 0..9 {
        remaining(node, 2, "").await;
        remaining(node, 1, "alice").await;
    }
    assert_eq!(remaining(node, 2, "").await, 990);
    assert_eq!(remaining(node, 1, "alice").await, 0);

    let rate = CONFIG
        .replace("refreshRate: 1}", "refreshRate: 2}")
        .replace("refreshRate: 1, maxKeys", "refreshRate: 2, maxKeys");
    assert_ne!(rate, CONFIG);
    assert_eq!(
        node.apply_config(config(&rate), 2).await.expect("applied"),
        2
    );
    assert_eq!(remaining(node, 2, "").await, 989, "the bucket went on");
    let denied = node
        .acquire(Origin::Client, acquire(1, "alice", None))
        .await
        .expect("answered");
    assert_eq!(denied.granted, 0, "every partition's keys went on");

    let period = rate.replace("period: hour", "period: minute");
    assert_eq!(
        node.apply_config(config(&period), 3)
            .await
            .expect("applied"),
        3
    );
    assert_eq!(
        remaining(node, 2, "").await,
        999,
        "a new period: a full bucket"
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_counter_made_grow_only_keeps_its_total() {
    let cluster = TestCluster::start(&["a"]);
    cluster.settled(&["a"]).await.expect("a table");
    let node = cluster.node("a");
    node.change_counter(20, true, Some(7), 1)
        .await
        .expect("applied");
    let grow_only = CONFIG.replace(
        "{id: 20, type: counter}",
        "{id: 20, type: counter, growOnly: true}",
    );
    assert_ne!(grow_only, CONFIG);
    node.apply_config(config(&grow_only), 2)
        .await
        .expect("applied");
    assert_eq!(node.read_counter(20).await.expect("read").value, 7);
    let refused = node.change_counter(20, false, Some(1), 2).await;
    assert!(refused.is_err(), "now grow-only: {refused:?}");
    cluster.stop().await;
}

/// Acquires keep coming while the rate is edited back and forth: every
/// decision an old instance made before the swap is in the state carried
/// over, so the bucket holds exactly its size minus every grant.
#[tokio::test]
async fn acquires_during_edits_are_all_carried_over() {
    let cluster = TestCluster::start(&["a"]);
    cluster.settled(&["a"]).await.expect("a table");
    let node = cluster.node("a").clone();
    let taker = {
        let node = node.clone();
        tokio::spawn(async move {
            let mut granted = 0;
            for _ in 0..600 {
                granted += node
                    .acquire(Origin::Client, acquire(2, "", None))
                    .await
                    .expect("answered")
                    .granted;
                tokio::task::yield_now().await;
            }
            granted
        })
    };
    let faster = CONFIG.replace("refreshRate: 1}", "refreshRate: 2}");
    for generation in 2..12 {
        let yaml = if generation % 2 == 0 { &faster } else { CONFIG };
        node.apply_config(config(yaml), generation)
            .await
            .expect("applied");
    }
    let granted = u64::from(taker.await.expect("the taker ran"));
    let left = remaining(&node, 2, "").await;
    assert_eq!(
        left + granted + 1,
        1_000,
        "{granted} granted during the edits; {left} left"
    );
    cluster.stop().await;
}
