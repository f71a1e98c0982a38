//! The decision round, every [`DECIDE_EVERY`]: if the [`Election`] says
//! this instance leads, it recomputes the routing table from the instances
//! it is in contact with and publishes it under its next epoch when
//! anything changed ([`Cluster::next_epoch`]); every instance pushes its
//! table to peers that hold an older one, so a restarted instance catches
//! up within a heartbeat.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::election::Election;
use super::link::MESH_CALL_TIMEOUT;
use super::routing::RoutingTable;
use super::state::Cluster;

/// Time between two decision rounds.
pub const DECIDE_EVERY: Duration = Duration::from_millis(100);
/// Least time between two pushes of the routing table to one peer.
const PUSH_BACKOFF: Duration = Duration::from_millis(300);

/// Decides and spreads tables until `stop`; routing pushes still under way
/// are awaited before it returns.
pub async fn run(cluster: Arc<Cluster>, election: Box<dyn Election>, stop: CancellationToken) {
    let pushes = TaskTracker::new();
    let mut every = tokio::time::interval(DECIDE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        decide(&cluster, election.as_ref());
        spread_table(&cluster, &pushes);
    }
    pushes.close();
    pushes.wait().await;
}

/// One decision round: lead if elected, and publish a new table when the
/// healthy set or the configured slots changed.
pub fn decide(cluster: &Cluster, election: &dyn Election) {
    // An instance handing its slots over before it stops leads nothing.
    let leading = !cluster.is_leaving() && cluster.elect(|view| election.is_leader(view));
    if cluster.set_leading(leading) {
        tracing::info!(
            instance = cluster.me(),
            election = election.kind(),
            leading,
            "leadership changed"
        );
        cluster.metrics().cluster.leader.set(i64::from(leading));
    }
    if !leading {
        return;
    }
    let current = cluster.table();
    let healthy = cluster.healthy_ids();
    let mut next = RoutingTable::compute(
        current.as_deref(),
        cluster.me(),
        &healthy,
        cluster.slots().configured(),
        // Slots served where they arrive have their state everywhere.
        |slot, standby| {
            cluster.slots().served_locally(u32::from(slot)) || cluster.holds(standby, slot, 0)
        },
        0,
    );
    next.assign_partitions(
        current.as_deref(),
        &cluster.slots().partitioned(),
        |slot, partition, standby| cluster.holds(standby, slot, partition),
    );
    if current.as_deref().is_some_and(|c| c.same_assignment(&next)) {
        return;
    }
    // Above every epoch in sight, so peers that heard of a newer table
    // than ours (from a leader we did not see) still take this one.
    let seen = cluster
        .peers()
        .values()
        .map(|p| p.health().epoch)
        .chain(current.as_deref().map(|c| c.epoch))
        .max()
        .unwrap_or(0);
    next.epoch = cluster.next_epoch(seen);
    if let Err(e) = cluster.install(next) {
        tracing::warn!(error = %e, "could not install own routing table");
    }
    // Push now rather than waiting for the next heartbeat to show the
    // peers are behind.
    for peer in cluster.peers().values() {
        peer.update(|h| h.last_push = None);
    }
}

/// Pushes the table this instance leads to every healthy peer that holds
/// an older one. Only the leader pushes: with mTLS a peer takes a table
/// only from the instance it names as leader, and refuses (and counts) any
/// other sender's.
fn spread_table(cluster: &Cluster, pushes: &TaskTracker) {
    let Some(table) = cluster.table().filter(|t| t.leader == cluster.me()) else {
        return;
    };
    for peer in cluster.peers().values() {
        if !peer.healthy() {
            continue;
        }
        let h = peer.health();
        let behind = h.epoch < table.epoch || (h.epoch == table.epoch && h.leader != table.leader);
        let recently = h.last_push.is_some_and(|t| t.elapsed() < PUSH_BACKOFF);
        if !behind || recently {
            continue;
        }
        peer.update(|h| h.last_push = Some(Instant::now()));
        let (peer, table) = (peer.clone(), table.clone());
        pushes.spawn(async move {
            match tokio::time::timeout(MESH_CALL_TIMEOUT, peer.link().install_routing(table)).await
            {
                Ok(Ok(epoch)) => peer.update(|h| h.epoch = h.epoch.max(epoch)),
                Ok(Err(e)) => {
                    tracing::debug!(peer = peer.id(), error = %e, "routing push refused")
                }
                Err(_) => tracing::debug!(peer = peer.id(), "routing push timed out"),
            }
        });
    }
}
