//! Who leads, and the tables leaders publish.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::SETTLE;
use crate::core::cluster::RoutingTable;
use crate::core::harness::{Fault, TestCluster};

fn leads(cluster: &TestCluster, id: &str) -> bool {
    cluster.node(id).metrics().cluster.leader.get() == 1
}

#[tokio::test(start_paused = true)]
async fn three_nodes_elect_one_leader_that_serves_no_slot() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let table = cluster
        .settled(&["a", "b", "c"])
        .await
        .expect("one table on every node");
    let leaders: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .filter(|id| leads(&cluster, id))
        .collect();
    assert_eq!(leaders, [table.leader.as_str()]);
    assert_eq!(table.routes.len(), 7, "every configured slot is routed");
    for route in table.routes.values() {
        assert_ne!(route.owner, table.leader);
        assert_ne!(route.standby.as_deref(), Some(table.leader.as_str()));
        assert!(route.standby.is_some());
    }
    assert!(table.fallback_leader.is_some());
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_lone_node_leads_and_owns_every_slot() {
    let cluster = TestCluster::start(&["a"]);
    let table = cluster.settled(&["a"]).await.expect("a table");
    assert_eq!(table.leader, "a");
    assert!(
        table
            .routes
            .values()
            .all(|r| r.owner == "a" && r.standby.is_none())
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_node_cut_off_from_the_start_never_leads_nor_publishes() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.isolate("c");
    cluster.settled(&["a", "b"]).await.expect("a and b agree");
    tokio::time::sleep(SETTLE).await;
    assert!(!leads(&cluster, "c"));
    assert!(
        cluster.node("c").cluster().table().is_none(),
        "no table of its own, and none reached it"
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_isolated_leader_steps_down_and_publishes_nothing_newer() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    let before = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let old = before.leader.clone();
    cluster.isolate(&old);
    let others: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|id| *id != old)
        .collect();
    let after = cluster.settled(&others).await.expect("the others agree");
    assert_ne!(after.leader, old, "the majority elects another leader");
    assert!(after.epoch > before.epoch);
    assert!(
        !leads(&cluster, &old),
        "without a majority it does not lead"
    );
    let held = cluster
        .node(&old)
        .cluster()
        .table()
        .expect("its last table");
    assert_eq!(
        held.epoch, before.epoch,
        "it published nothing while cut off"
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_fallback_leader_takes_over_a_lost_leader() {
    let mut cluster = TestCluster::start(&["a", "b", "c"]);
    let before = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let fallback = before.fallback_leader.clone().expect("a fallback leader");
    cluster.kill(&before.leader).await;
    let others: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|id| *id != before.leader)
        .collect();
    let after = cluster.settled(&others).await.expect("the others agree");
    assert_eq!(after.leader, fallback);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_leader_does_not_take_the_role_back() {
    let mut cluster = TestCluster::start(&["a", "b", "c"]);
    let first = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    cluster.kill(&first.leader).await;
    let others: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|id| *id != first.leader)
        .collect();
    let second = cluster.settled(&others).await.expect("a new leader");
    cluster.up(&first.leader);
    let third = cluster
        .settled(&["a", "b", "c"])
        .await
        .expect("all three again");
    assert_eq!(third.leader, second.leader);
    assert!(!leads(&cluster, &first.leader));
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_node_takes_the_table_in_force_within_a_second() {
    let mut cluster = TestCluster::start(&["a", "b", "c"]);
    let table = cluster.settled(&["a", "b", "c"]).await.expect("a table");
    let follower = ["a", "b", "c"]
        .into_iter()
        .find(|id| *id != table.leader)
        .expect("a follower");
    cluster.kill(follower).await;
    let others: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|id| *id != follower)
        .collect();
    cluster.settled(&others).await.expect("the others agree");
    cluster.up(follower);
    let caught_up = cluster
        .until(Duration::from_secs(1), |c| {
            c.node(follower).cluster().table().is_some()
        })
        .await;
    assert!(caught_up, "a table arrived within a second of the restart");
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_healed_partition_converges_on_one_table() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    cluster.isolate("a");
    cluster.settled(&["b", "c"]).await.expect("b and c agree");
    cluster.heal("a", "b");
    cluster.heal("a", "c");
    let table = cluster
        .settled(&["a", "b", "c"])
        .await
        .expect("one table again");
    assert_eq!(table.members.len(), 3);
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn two_tables_never_share_an_epoch() {
    let mut cluster = TestCluster::start(&["a", "b", "c", "d", "e"]);
    let all = ["a", "b", "c", "d", "e"];
    let mut seen: BTreeMap<u64, RoutingTable> = BTreeMap::new();
    let mut watches: HashMap<&str, _> = all
        .iter()
        .map(|id| (*id, cluster.node(id).watch_routing()))
        .collect();
    type Watch = tokio::sync::watch::Receiver<Option<std::sync::Arc<RoutingTable>>>;
    let mut record = |watches: &mut HashMap<&str, Watch>| {
        for w in watches.values_mut() {
            let table = w.borrow_and_update().clone();
            if let Some(t) = table {
                let held = seen.entry(t.epoch).or_insert_with(|| (*t).clone());
                assert!(
                    held.same_assignment(&t),
                    "epoch {} names two tables: {held:?} and {t:?}",
                    t.epoch
                );
            }
        }
    };
    cluster.settled(&all).await.expect("a table");
    // Leaders come and go; views differ for a moment at each change.
    for round in 0..3 {
        let leader = cluster
            .node("a")
            .cluster()
            .table()
            .expect("a table")
            .leader
            .clone();
        cluster.kill(&leader).await;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            record(&mut watches);
        }
        cluster.up(&leader);
        watches.insert(
            all.iter().find(|id| **id == leader).copied().unwrap_or("a"),
            cluster.node(&leader).watch_routing(),
        );
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            record(&mut watches);
        }
        assert!(
            cluster.settled(&all).await.is_some(),
            "round {round} settles"
        );
    }
    assert!(
        seen.len() >= 4,
        "several tables were published: {}",
        seen.len()
    );
    cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn links_that_work_one_way_only_do_not_count_for_the_majority() {
    let cluster = TestCluster::start(&["a", "b", "c"]);
    cluster.settled(&["a", "b", "c"]).await.expect("a table");
    // a can no longer reach b, though b still reaches a.
    cluster.net.set("a", "b", Fault::Cut);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let healthy_a = cluster.node("a").cluster().healthy_ids();
    let healthy_b = cluster.node("b").cluster().healthy_ids();
    assert!(!healthy_a.contains("b"));
    assert!(!healthy_b.contains("a"), "b hears a, but a does not hear b");
    assert!(healthy_a.contains("c") && healthy_b.contains("c"));
    cluster.stop().await;
}
