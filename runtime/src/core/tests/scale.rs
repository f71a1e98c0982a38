//! Local denials and leased tokens: what other instances answer without
//! asking a bucket's owner, and the bounds they keep.

use std::time::Duration;

use vss_slot_sdk::codec::Wire as _;
use vss_slot_sdk::limiter::{OP_RELEASE, OP_TAKE_ALL, Take, Taken};

use crate::core::calls::CustomCall;
use crate::core::harness::{Fault, TestCluster, acquire};
use crate::core::leases::LEASE_FOR;
use crate::core::node::Origin;

/// The owner of `slot`'s bucket `key`, and a node that is neither it nor
/// the leader.
async fn owner_and_other(cluster: &TestCluster, slot: u8, key: &str) -> (String, String) {
    let table = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let partition = cluster
        .node("a")
        .slots()
        .partition_for(u32::from(slot), key);
    let owner = table
        .route_of(slot, partition)
        .expect("routed")
        .owner
        .clone();
    let other = ["a", "b", "c"]
        .into_iter()
        .find(|id| *id != owner && *id != table.leader)
        .unwrap_or("a")
        .to_string();
    (owner, other)
}

fn counter(cluster: &TestCluster, id: &str, name: &str, slot: u32) -> u64 {
    let m = &cluster.node(id).metrics().cluster;
    let labels = crate::ops::metrics::SlotLabels { slot };
    match name {
        "local_denials" => m.local_denials.get_or_create(&labels).get(),
        "lease_decisions" => m.lease_decisions.get_or_create(&labels).get(),
        "leased_tokens" => m.leased_tokens.get_or_create(&labels).get(),
        "returned_tokens" => m.returned_tokens.get_or_create(&labels).get(),
        other => panic!("no counter {other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_empty_bucket_is_denied_where_it_is_asked_without_its_owner() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, other) = owner_and_other(&cluster, 1, "flood").await;
    // Slot 1: a bucket of 10, one more token a second.
    for _ in 0..10 {
        cluster
            .node(&other)
            .acquire(Origin::Client, acquire(1, "flood", None))
            .await
            .expect("granted");
    }
    let empty = cluster
        .node(&other)
        .acquire(Origin::Client, acquire(1, "flood", None))
        .await
        .expect("answered");
    assert_eq!((empty.granted, empty.remaining), (0, 0));
    let asked = cluster.net.calls(&other, &owner, "forward");
    for _ in 0..1_000 {
        let denied = cluster
            .node(&other)
            .acquire(Origin::Client, acquire(1, "flood", None))
            .await
            .expect("answered");
        assert_eq!((denied.granted, denied.remaining), (0, 0));
        assert!(denied.reset_ms > 0 && denied.reset_ms <= 1_000);
    }
    assert_eq!(
        cluster.net.calls(&other, &owner, "forward"),
        asked,
        "a thousand over-limit acquires, none forwarded"
    );
    assert_eq!(counter(&cluster, &other, "local_denials", 1), 1_000);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_denial_lasts_until_the_refill_it_was_told_of() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, other) = owner_and_other(&cluster, 1, "k").await;
    let node = cluster.node(&other);
    for _ in 0..11 {
        node.acquire(Origin::Client, acquire(1, "k", None))
            .await
            .expect("answered");
    }
    let denied = node
        .acquire(Origin::Client, acquire(1, "k", None))
        .await
        .expect("answered");
    let asked = cluster.net.calls(&other, &owner, "forward");
    tokio::time::sleep(Duration::from_millis(denied.reset_ms + 1)).await;
    node.acquire(Origin::Client, acquire(1, "k", None))
        .await
        .expect("answered");
    assert_eq!(
        cluster.net.calls(&other, &owner, "forward"),
        asked + 1,
        "past the refill it asks the owner again"
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_batch_takes_local_denials_too() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, other) = owner_and_other(&cluster, 1, "batch").await;
    let node = cluster.node(&other);
    for _ in 0..11 {
        node.acquire(Origin::Client, acquire(1, "batch", None))
            .await
            .expect("answered");
    }
    let asked = cluster.net.calls(&other, &owner, "forward");
    let answers = node
        .acquire_batch(
            Origin::Client,
            (0..50).map(|_| acquire(1, "batch", None)).collect(),
            |_| Ok(()),
        )
        .await;
    assert!(answers.iter().all(|a| matches!(a, Ok(g) if g.granted == 0)));
    assert_eq!(cluster.net.calls(&other, &owner, "forward"), asked);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn envoys_take_all_is_denied_locally_and_a_release_reopens_the_bucket_at_its_owner() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, _) = owner_and_other(&cluster, 1, "gw").await;
    let take = |tokens| CustomCall {
        slot: 1,
        op: OP_TAKE_ALL.into(),
        payload: Take {
            key: "gw".into(),
            tokens,
        }
        .to_bytes(),
    };
    let node = cluster.node(&owner);
    let first = Taken::from_bytes(&node.call(Origin::Client, take(10)).await.expect("ok"))
        .expect("a Taken");
    assert!(first.granted);
    let refused =
        Taken::from_bytes(&node.call(Origin::Client, take(1)).await.expect("ok")).expect("a Taken");
    assert!(!refused.granted && refused.remaining == 0);
    let before = counter(&cluster, &owner, "local_denials", 1);
    node.call(Origin::Client, take(1)).await.expect("ok");
    assert_eq!(counter(&cluster, &owner, "local_denials", 1), before + 1);
    let release = CustomCall {
        slot: 1,
        op: OP_RELEASE.into(),
        payload: Take {
            key: "gw".into(),
            tokens: 4,
        }
        .to_bytes(),
    };
    node.call(Origin::Client, release).await.expect("released");
    let again =
        Taken::from_bytes(&node.call(Origin::Client, take(4)).await.expect("ok")).expect("a Taken");
    assert!(again.granted, "the released tokens are there, not denied");
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_hot_bucket_is_answered_from_leases_without_asking_its_owner() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, other) = owner_and_other(&cluster, 0, "").await;
    let node = cluster.node(&other);
    let mut granted = 0;
    for _ in 0..150 {
        let got = node
            .acquire(Origin::Client, acquire(0, "", None))
            .await
            .expect("answered");
        granted += got.granted;
        tokio::task::yield_now().await;
    }
    let forwarded = cluster.net.calls(&other, &owner, "forward");
    let from_leases = counter(&cluster, &other, "lease_decisions", 0);
    assert_eq!(granted, 150, "a bucket of 200 grants all 150");
    assert!(from_leases > 50, "most answered here: {from_leases} of 150");
    assert!(
        forwarded < 100,
        "fewer acquires reach the owner than were made: {forwarded}"
    );
    assert!(counter(&cluster, &other, "leased_tokens", 0) >= from_leases);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn acquires_refused_for_tokens_leased_meanwhile_are_answered_from_the_lease() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, other) = owner_and_other(&cluster, 2, "last").await;
    // Slot 2 (1,000 an hour, no refill within the test) left with 70.
    let drained = cluster
        .node(&owner)
        .acquire(Origin::Client, acquire(2, "last", Some(930)))
        .await
        .expect("granted");
    assert_eq!(drained.remaining, 70);
    cluster.net.set_for(
        &other,
        &owner,
        "forward",
        Fault::Delay(Duration::from_millis(10)),
    );
    let wave = |n: usize| {
        let runs: Vec<_> = (0..n)
            .map(|_| {
                let node = cluster.node(&other).clone();
                tokio::spawn(async move {
                    node.acquire(Origin::Client, acquire(2, "last", None))
                        .await
                        .map_or(0, |got| got.granted)
                })
            })
            .collect();
        async move {
            let mut granted = 0;
            for run in runs {
                granted += run.await.expect("joins");
            }
            granted
        }
    };
    // Ten at once make the bucket hot: a lease is asked for. The next 60,
    // sent while it is on its way, reach the owner after it: the owner
    // refuses those the lease took, and the lease answers them.
    let mut granted = wave(10).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    granted += wave(60).await;
    assert!(
        counter(&cluster, &other, "leased_tokens", 2) > 0,
        "the bucket got hot and was leased"
    );
    assert_eq!(granted, 70, "every token left is granted");
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn leases_never_grant_more_than_the_bucket_holds() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let started = std::time::Instant::now();
    // Every node at once, in a tight loop: 900 acquires on a bucket of
    // 200 refilled 100 a second (by the wall clock).
    let runs = ["a", "b", "c"].map(|id| {
        let node = cluster.node(id).clone();
        tokio::spawn(async move {
            let mut granted = 0;
            for _ in 0..300 {
                if let Ok(got) = node.acquire(Origin::Client, acquire(0, "", None)).await {
                    granted += u64::from(got.granted);
                }
                tokio::task::yield_now().await;
            }
            granted
        })
    });
    let mut granted = 0;
    for run in runs {
        granted += run.await.expect("joins");
    }
    let refills = started.elapsed().as_secs() * 100 + 100;
    assert!(
        granted <= 200 + refills,
        "{granted} granted, at most {} possible",
        200 + refills
    );
    assert!(granted >= 150, "the burst was granted: {granted}");
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn unused_leased_tokens_go_back_to_the_bucket() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let (owner, other) = owner_and_other(&cluster, 0, "").await;
    for _ in 0..40 {
        cluster
            .node(&other)
            .acquire(Origin::Client, acquire(0, "", None))
            .await
            .expect("answered");
        tokio::task::yield_now().await;
    }
    let leased = counter(&cluster, &other, "leased_tokens", 0);
    assert!(leased > 0, "the bucket got hot and was leased");
    // No more acquires: the lease runs out of time, its rest goes back.
    tokio::time::sleep(LEASE_FOR * 3).await;
    let returned = counter(&cluster, &other, "returned_tokens", 0);
    assert!(
        returned > 0,
        "unused tokens went back: {returned} of {leased}"
    );
    let at_owner = cluster
        .node(&owner)
        .acquire(Origin::Client, acquire(0, "", None))
        .await
        .expect("granted");
    assert!(
        at_owner.remaining >= 200 - 40 - 1,
        "the owner's bucket holds what was not spent: {}",
        at_owner.remaining
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_near_empty_bucket_is_not_leased() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let (_, other) = owner_and_other(&cluster, 1, "small").await;
    // Slot 1's bucket holds 10: a share of a tenth over three instances
    // is under the smallest lease.
    for _ in 0..30 {
        cluster
            .node(&other)
            .acquire(Origin::Client, acquire(1, "small", None))
            .await
            .expect("answered");
    }
    assert_eq!(counter(&cluster, &other, "leased_tokens", 1), 0);
    cluster.stop().await;
}
