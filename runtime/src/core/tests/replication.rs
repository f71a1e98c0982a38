//! Owners' state to their standbys, and what peers may push.

use std::time::Duration;

use crate::core::cluster::link::{Heartbeat, Replicate, SlotState};
use crate::core::error::{Code, RequestError};
use crate::core::harness::{Fault, TestCluster, acquire};
use crate::core::node::Origin;

#[tokio::test(start_paused = true)]
async fn a_standby_counts_as_holding_a_slot_only_once_it_took_the_state() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let table = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let partition = cluster.node("a").slots().partition_for(0, "");
    let route = table.route_of(0, partition).expect("slot 0 routed").clone();
    let (owner, standby) = (route.owner, route.standby.expect("a standby"));
    let leader = table.leader.clone();
    // Whatever reached the standby so far, it restarts empty.
    let mut cluster = cluster;
    cluster
        .net
        .set_for(&owner, &standby, "replicate", Fault::Lost);
    cluster.kill(&standby).await;
    cluster.up(&standby);
    cluster.settled(&["a", "b", "c"]).await.expect("back");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !cluster
            .node(&standby)
            .cluster()
            .held_now()
            .contains(&(0, partition)),
        "a lost push is no state"
    );
    assert!(
        !cluster
            .node(&leader)
            .cluster()
            .holds(&standby, 0, partition)
    );
    cluster
        .net
        .set_for(&owner, &standby, "replicate", Fault::None);
    let holds = cluster
        .until(Duration::from_secs(2), |c| {
            c.node(&leader).cluster().holds(&standby, 0, partition)
        })
        .await;
    assert!(holds, "the leader hears that the standby holds it");
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_owner_refreshes_its_standby_once_a_second_and_pushes_a_change_at_once() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let table = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let route = table.routes.get(&0).expect("slot 0 routed").clone();
    let (owner, standby) = (route.owner, route.standby.expect("a standby"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cluster.net.calls(&owner, &standby, "replicate");
    assert!(before > 0, "the standby got the state");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = cluster.net.calls(&owner, &standby, "replicate") - before;
    assert!(
        idle <= 6,
        "fifty rounds of an idle owner send a refresh a second, not a push a round: {idle}"
    );
    let before = cluster.net.calls(&owner, &standby, "replicate");
    cluster
        .node(&owner)
        .acquire(Origin::Client, acquire(0, "", None))
        .await
        .expect("granted");
    let pushed = cluster
        .until(Duration::from_millis(300), |c| {
            c.net.calls(&owner, &standby, "replicate") > before
        })
        .await;
    assert!(pushed, "the change went to the standby within a few rounds");
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_standby_refuses_state_from_an_instance_that_does_not_own_the_slot() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let table = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let route = table.routes.get(&0).expect("slot 0 routed").clone();
    let standby = route.standby.expect("a standby");
    let impostor = ["a", "b", "c"]
        .into_iter()
        .find(|id| *id != route.owner && *id != standby)
        .expect("a third node");
    let refused = cluster
        .node(&standby)
        .replicate(Replicate {
            from: impostor.to_string(),
            epoch: table.epoch,
            slots: vec![SlotState {
                slot: 0,
                partition: cluster.node(&standby).slots().partition_for(0, ""),
                state: vec![1, 2, 3],
            }],
        })
        .await
        .expect_err("not the owner");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.to_string().contains("not by the sender"),
        "{refused}"
    );
    assert_eq!(
        cluster
            .node(&standby)
            .metrics()
            .cluster
            .refused_mesh_messages
            .get(),
        1
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_instance_outside_the_cluster_is_refused() {
    let cluster = TestCluster::start(&["a", "b"]);
    let refused = cluster
        .node("a")
        .heartbeat(&Heartbeat {
            from: "mallory".into(),
            epoch: 0,
        })
        .expect_err("a stranger");
    assert!(matches!(refused, RequestError::PermissionDenied(_)));
    let itself = cluster
        .node("a")
        .heartbeat(&Heartbeat {
            from: "a".into(),
            epoch: 0,
        })
        .expect_err("not from itself");
    assert_eq!(itself.code(), Code::PermissionDenied);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_served_data_keeps_a_slot_until_its_standby_has_the_state() {
    // Two nodes: the leader serves data. A third joins; the leader then
    // gives its slots away, but only those whose state reached the standby.
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.isolate("c");
    // No state leaves anyone for now.
    for from in ["a", "b", "c"] {
        for to in ["a", "b", "c"].into_iter().filter(|to| *to != from) {
            cluster.net.set_for(from, to, "replicate", Fault::Cut);
        }
    }
    let small = cluster.settled(&["a", "b"]).await.expect("a and b agree");
    let leader = small.leader.clone();
    // The slots with one owner (the data slots' state is everywhere).
    let owned: Vec<u8> = small
        .routes
        .iter()
        .filter(|(slot, r)| r.owner == leader && **slot < 20)
        .map(|(slot, _)| *slot)
        .collect();
    assert!(!owned.is_empty(), "the leader of two serves data");
    cluster.heal("c", "a");
    cluster.heal("c", "b");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = cluster.node(&leader).cluster().table().expect("a table");
    assert_eq!(held.members.len(), 3, "c joined");
    for slot in &owned {
        assert_eq!(
            held.routes.get(slot).map(|r| r.owner.as_str()),
            Some(leader.as_str()),
            "slot {slot} stays with the leader until its standby has the state"
        );
    }
    for other in ["a", "b", "c"].into_iter().filter(|id| *id != leader) {
        cluster
            .net
            .set_for(&leader, other, "replicate", Fault::None);
    }
    let shed = cluster
        .until(Duration::from_secs(3), |c| {
            c.node(&leader)
                .cluster()
                .table()
                .is_some_and(|t| t.routes.values().all(|r| r.owner != leader))
        })
        .await;
    assert!(shed, "once synced, the leader serves no slot");
    cluster.stop().await;
}
