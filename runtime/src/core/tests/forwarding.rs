//! Where requests are served: the owner, then the standby, once.

use std::time::Duration;

use super::SETTLE;
use crate::core::calls::CustomCall;
use crate::core::error::{Code, RequestError};
use crate::core::harness::{Fault, TestCluster, acquire};
use crate::core::node::Origin;

/// The owner, the standby and the third node of `slot`'s bucket `key`.
async fn roles(cluster: &TestCluster, slot: u8, key: &str) -> (String, String, String) {
    let table = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let partition = cluster
        .node("a")
        .slots()
        .partition_for(u32::from(slot), key);
    let route = table
        .route_of(slot, partition)
        .expect("the slot is routed")
        .clone();
    let standby = route.standby.expect("a standby");
    let third = ["a", "b", "c"]
        .into_iter()
        .find(|id| *id != route.owner && *id != standby)
        .expect("a third node")
        .to_string();
    (route.owner, standby, third)
}

#[tokio::test(start_paused = true)]
async fn an_acquire_through_any_node_takes_from_the_one_bucket() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    roles(&cluster, 0, "").await;
    let mut remaining = Vec::new();
    for id in ["a", "b", "c", "a", "b", "c"] {
        let got = cluster
            .node(id)
            .acquire(Origin::Client, acquire(0, "", None))
            .await
            .expect("granted");
        assert_eq!(got.granted, 1);
        remaining.push(got.remaining);
    }
    assert_eq!(remaining, [199, 198, 197, 196, 195, 194]);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_request_a_peer_forwarded_is_served_where_it_lands() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, _, third) = roles(&cluster, 0, "").await;
    for _ in 0..5 {
        cluster
            .node(&owner)
            .acquire(Origin::Client, acquire(0, "", None))
            .await
            .expect("granted");
    }
    let landed = cluster
        .node(&third)
        .acquire(Origin::Peer(&owner), acquire(0, "", None))
        .await
        .expect("served here");
    assert_eq!(
        landed.remaining, 199,
        "from this node's own copy, not forwarded again"
    );
    assert_eq!(cluster.net.calls(&third, &owner, "forward"), 0);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_owner_sends_the_request_to_the_standby() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, standby, third) = roles(&cluster, 0, "").await;
    cluster.net.set_for(&third, &owner, "forward", Fault::Cut);
    let got = cluster
        .node(&third)
        .acquire(Origin::Client, acquire(0, "", None))
        .await
        .expect("served by the standby");
    assert_eq!(got.granted, 1);
    assert_eq!(cluster.net.calls(&third, &owner, "forward"), 1);
    assert_eq!(cluster.net.calls(&third, &standby, "forward"), 1);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_owner_that_loses_the_request_is_given_up_at_the_deadline() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, standby, third) = roles(&cluster, 0, "").await;
    cluster.net.set_for(&third, &owner, "forward", Fault::Lost);
    let started = tokio::time::Instant::now();
    let got = cluster
        .node(&third)
        .acquire(Origin::Client, acquire(0, "", None))
        .await
        .expect("served by the standby");
    assert_eq!(got.granted, 1);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
        "one forward timeout, then the standby: {waited:?}"
    );
    assert_eq!(cluster.net.calls(&third, &standby, "forward"), 1);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_owner_and_standby_both_unreachable_leave_the_request_here() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, standby, third) = roles(&cluster, 0, "").await;
    cluster.net.set_for(&third, &owner, "forward", Fault::Cut);
    cluster.net.set_for(&third, &standby, "forward", Fault::Cut);
    let got = cluster
        .node(&third)
        .acquire(Origin::Client, acquire(0, "", None))
        .await
        .expect("served here rather than failed");
    assert_eq!(got.remaining, 199, "from this node's own copy");
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_owners_refusal_goes_back_as_it_is_and_is_not_retried() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let long_key = "k".repeat(300);
    let (owner, standby, third) = roles(&cluster, 1, &long_key).await;
    let refused = cluster
        .node(&third)
        .acquire(Origin::Client, acquire(1, &long_key, None))
        .await
        .expect_err("a key over the limit");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused
            .to_string()
            .contains("`key` is 300 bytes, at most 256 allowed"),
        "{refused}"
    );
    assert_eq!(cluster.net.calls(&third, &owner, "forward"), 1);
    assert_eq!(cluster.net.calls(&third, &standby, "forward"), 0);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_node_without_a_table_refuses_rather_than_guess() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.isolate("c");
    cluster.settled(&["a", "b"]).await.expect("a and b agree");
    let refused = cluster
        .node("c")
        .acquire(Origin::Client, acquire(0, "", None))
        .await
        .expect_err("no table yet");
    assert!(matches!(refused, RequestError::Joining));
    assert_eq!(
        refused.code(),
        Code::Unavailable,
        "clients try another instance"
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_batch_is_split_by_slot_and_answered_in_order() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let table = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let calls = vec![
        acquire(0, "", None),
        acquire(1, "alice", Some(4)),
        acquire(0, "", Some(3)),
        acquire(1, "alice", Some(4)),
        acquire(1, "alice", Some(4)),
        acquire(42, "", None),
    ];
    let answers = cluster
        .node(&table.leader)
        .acquire_batch(Origin::Client, calls, |_| Ok(()))
        .await;
    let granted: Vec<_> = answers
        .iter()
        .map(|a| {
            a.as_ref()
                .map(|g| (g.granted, g.remaining))
                .map_err(RequestError::code)
        })
        .collect();
    assert_eq!(
        granted,
        [
            Ok((1, 199)),
            Ok((4, 6)),
            Ok((3, 196)),
            Ok((4, 2)),
            Ok((2, 0)),
            Err(Code::NotFound),
        ]
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_slot_fails_only_its_part_of_a_batch() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let calls = vec![
        acquire(0, "", None),
        acquire(1, "bob", None),
        acquire(0, "", None),
    ];
    let answers = cluster
        .node("a")
        .acquire_batch(Origin::Client, calls, |slot| {
            if slot == 1 {
                Err(RequestError::PermissionDenied("not slot 1".into()))
            } else {
                Ok(())
            }
        })
        .await;
    assert!(answers[0].is_ok() && answers[2].is_ok());
    assert!(matches!(&answers[1], Err(RequestError::PermissionDenied(m)) if m == "not slot 1"));
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_batch_to_an_unreachable_owner_goes_to_the_standby() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, standby, third) = roles(&cluster, 0, "").await;
    cluster.net.set_for(&third, &owner, "forward", Fault::Cut);
    let answers = cluster
        .node(&third)
        .acquire_batch(
            Origin::Client,
            vec![acquire(0, "", None), acquire(0, "", None)],
            |_| Ok(()),
        )
        .await;
    let remaining: Vec<_> = answers
        .into_iter()
        .map(|a| a.expect("granted").remaining)
        .collect();
    assert_eq!(remaining, [199, 198]);
    assert_eq!(cluster.net.calls(&third, &standby, "forward"), 1);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_owner_that_dies_while_a_forward_is_on_its_way_hands_it_to_the_standby() {
    let mut cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, standby, third) = roles(&cluster, 0, "").await;
    cluster.net.set_for(
        &third,
        &owner,
        "forward",
        Fault::Delay(Duration::from_millis(300)),
    );
    let node = cluster.node(&third).clone();
    let forward =
        tokio::spawn(async move { node.acquire(Origin::Client, acquire(0, "", None)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    cluster.kill(&owner).await;
    let got = forward.await.expect("joins").expect("granted");
    assert_eq!(got.granted, 1);
    assert_eq!(cluster.net.calls(&third, &standby, "forward"), 1);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn after_a_routing_change_requests_go_to_the_new_owner() {
    let mut cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, standby, _) = roles(&cluster, 0, "").await;
    cluster.kill(&owner).await;
    let others: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|id| *id != owner)
        .collect();
    let table = cluster.settled(&others).await.expect("a new table");
    let route = table.routes.get(&0).expect("slot 0 routed");
    assert_eq!(
        route.owner, standby,
        "the standby, which holds the state, owns it now"
    );
    let other = others
        .iter()
        .find(|id| **id != standby)
        .expect("another node");
    let before = cluster.net.calls(other, &standby, "forward");
    cluster
        .node(other)
        .acquire(Origin::Client, acquire(0, "", None))
        .await
        .expect("granted");
    assert_eq!(
        cluster.net.calls(other, &standby, "forward"),
        before + 1,
        "forwarded to the new owner"
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_custom_call_is_forwarded_like_an_acquire() {
    use vss_slot_sdk::codec::Wire as _;
    use vss_slot_sdk::limiter::{OP_TAKE_ALL, Take, Taken};
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, _, third) = roles(&cluster, 1, "carol").await;
    let take = Take {
        key: "carol".into(),
        tokens: 4,
    };
    let call = CustomCall {
        slot: 1,
        op: OP_TAKE_ALL.into(),
        payload: take.to_bytes(),
    };
    let first = cluster
        .node(&third)
        .call(Origin::Client, call.clone())
        .await
        .expect("answered");
    let first = Taken::from_bytes(&first).expect("a Taken");
    assert!(first.granted);
    let second = cluster
        .node(&owner)
        .call(Origin::Client, call)
        .await
        .expect("answered");
    let second = Taken::from_bytes(&second).expect("a Taken");
    assert_eq!(
        second.remaining,
        first.remaining - 4,
        "one bucket, at the owner"
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failover_keeps_the_bucket_within_the_replication_window() {
    let mut cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, standby, _) = roles(&cluster, 0, "").await;
    for _ in 0..150 {
        cluster
            .node(&owner)
            .acquire(Origin::Client, acquire(0, "", None))
            .await
            .expect("granted");
    }
    // A replication round carries the state to the standby.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(&owner).await;
    let got = cluster
        .node(&standby)
        .acquire(Origin::Client, acquire(0, "", None))
        .await
        .expect("granted by the standby");
    // The bucket refills 100/s by wall clock; the standby continues from
    // the owner's 50, not from a full 200.
    assert!(
        got.remaining < 100,
        "the standby continued the drained bucket: {} left",
        got.remaining
    );
    tokio::time::sleep(SETTLE).await;
    cluster.stop().await;
}
