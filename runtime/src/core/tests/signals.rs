//! Publishing across nodes: deliveries to clients on every node, one
//! outcome per message id, the random slot's retry, multicast membership.

use std::time::Duration;

use super::Subscriber;
use crate::core::calls::{MembershipCall, PublishCall};
use crate::core::harness::{Fault, TestCluster};
use crate::core::node::Origin;

fn publish(slot: u32, message: &str, message_id: u64) -> PublishCall {
    PublishCall {
        slot,
        message: message.as_bytes().to_vec(),
        publisher: String::new(),
        message_id,
    }
}

fn join(slot: u32, client: &str) -> MembershipCall {
    MembershipCall {
        slot,
        client: client.to_string(),
        join: true,
    }
}

#[tokio::test(start_paused = true)]
async fn a_broadcast_reaches_the_clients_of_every_node_once() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let subs: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|id| Subscriber::connect(cluster.node(id), &format!("client-{id}"), vec![], true))
        .collect();
    let outcome = cluster
        .node("b")
        .publish(Origin::Client, publish(10, "hello", 0))
        .await
        .expect("published");
    assert_eq!((outcome.delivered, outcome.failed), (3, 0));
    for sub in &subs {
        assert_eq!(sub.received(), [(outcome.message_id, b"hello".to_vec())]);
    }
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_client_connected_to_several_nodes_counts_once() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let _everywhere: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|id| Subscriber::connect(cluster.node(id), "same-client", vec![], true))
        .collect();
    let outcome = cluster
        .node("a")
        .publish(Origin::Client, publish(10, "x", 0))
        .await
        .expect("published");
    assert_eq!((outcome.delivered, outcome.failed), (1, 0));
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_repeated_message_id_is_carried_out_once() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let sub = Subscriber::connect(cluster.node("a"), "listener", vec![10], true);
    let first = cluster
        .node("b")
        .publish(Origin::Client, publish(10, "once", 4242))
        .await
        .expect("published");
    let again = cluster
        .node("c")
        .publish(Origin::Client, publish(10, "once", 4242))
        .await
        .expect("answered");
    assert_eq!(first, again, "the retry gets the first outcome");
    assert_eq!(first.message_id, 4242);
    assert_eq!(sub.received().len(), 1, "delivered once");
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unacknowledged_delivery_fails_at_the_slot_timeout() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let _mute = Subscriber::connect(cluster.node("c"), "mute", vec![10], false);
    let _good = Subscriber::connect(cluster.node("a"), "good", vec![10], true);
    let started = tokio::time::Instant::now();
    let outcome = cluster
        .node("a")
        .publish(Origin::Client, publish(10, "x", 0))
        .await
        .expect("published");
    assert_eq!((outcome.delivered, outcome.failed), (1, 1));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
        "waited the slot's 1 s timeout: {waited:?}"
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_node_the_owner_cannot_reach_gets_no_delivery_but_the_others_do() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let table = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let owner = table.routes.get(&10).expect("slot 10 routed").owner.clone();
    let cut = ["a", "b", "c"]
        .into_iter()
        .find(|id| *id != owner)
        .expect("another node");
    cluster.net.set_for(&owner, cut, "deliver", Fault::Cut);
    let far = Subscriber::connect(cluster.node(cut), "far", vec![10], true);
    let near = Subscriber::connect(cluster.node(&owner), "near", vec![10], true);
    let outcome = cluster
        .node(&owner)
        .publish(Origin::Client, publish(10, "x", 0))
        .await
        .expect("published");
    assert_eq!(outcome.delivered, 1);
    assert_eq!(near.received().len(), 1);
    assert!(far.received().is_empty());
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_random_slot_retries_on_another_member_until_one_takes_it() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let _deaf_1 = Subscriber::connect(cluster.node("a"), "deaf-1", vec![], false);
    let _deaf_2 = Subscriber::connect(cluster.node("b"), "deaf-2", vec![], false);
    let taker = Subscriber::connect(cluster.node("c"), "taker", vec![], true);
    for client in ["deaf-1", "deaf-2", "taker"] {
        cluster
            .node("a")
            .membership(Origin::Client, join(12, client))
            .await
            .expect("registered");
    }
    for n in 1..=5 {
        let outcome = cluster
            .node("b")
            .publish(Origin::Client, publish(12, "job", 0))
            .await
            .expect("published");
        assert_eq!(outcome.delivered, 1, "message {n} taken once");
        assert_eq!(outcome.taken_by.as_deref(), Some("taker"));
        assert_eq!(taker.received().len(), n);
    }
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_multicast_member_that_keeps_failing_is_deregistered() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let _mute = Subscriber::connect(cluster.node("b"), "mute", vec![], false);
    let good = Subscriber::connect(cluster.node("c"), "good", vec![], true);
    for client in ["mute", "good"] {
        cluster
            .node("c")
            .membership(Origin::Client, join(11, client))
            .await
            .expect("registered");
    }
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let o = cluster
            .node("a")
            .publish(Origin::Client, publish(11, "m", 0))
            .await
            .expect("published");
        outcomes.push((o.delivered, o.failed));
    }
    // deregTries 2: two failures in a row, then it is no longer a member.
    assert_eq!(outcomes, [(1, 1), (1, 1), (1, 0)]);
    assert_eq!(good.received().len(), 3);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_publish_forwarded_to_the_owner_keeps_its_message_id() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let table = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let owner = table.routes.get(&10).expect("slot 10 routed").owner.clone();
    let other = ["a", "b", "c"]
        .into_iter()
        .find(|id| *id != owner)
        .expect("another node");
    let sub = Subscriber::connect(cluster.node(other), "s", vec![10], true);
    let outcome = cluster
        .node(other)
        .publish(Origin::Client, publish(10, "m", 99))
        .await
        .expect("published");
    assert_eq!(outcome.message_id, 99);
    assert_eq!(sub.received(), [(99, b"m".to_vec())]);
    assert_eq!(cluster.net.calls(other, &owner, "forward"), 1);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_publish_on_a_limiter_slot_is_refused_by_name() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let refused = cluster
        .node("a")
        .publish(Origin::Client, publish(0, "m", 0))
        .await
        .expect_err("not a signal slot");
    assert!(
        refused
            .to_string()
            .contains("slot 0 is a token-bucket slot"),
        "{refused}"
    );
    let long = cluster
        .node("a")
        .publish(Origin::Client, publish(10, &"x".repeat(37), 0))
        .await
        .expect_err("37 bytes");
    assert!(
        long.to_string()
            .contains("`message` is 37 bytes, at most 36 allowed"),
        "{long}"
    );
    cluster.stop().await;
}
