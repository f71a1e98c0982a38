//! Replication to standbys, every [`REPLICATE_EVERY`]: for each slot it
//! owns, the owner pushes the module's snapshot to the standby when the
//! slot changed since the last push. A failover therefore loses at most
//! the updates of the last interval plus one round trip.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::everywhere::Everywhere;
use super::link::{MESH_CALL_TIMEOUT, Replicate, SlotState};
use super::state::Cluster;
use crate::ops::metrics::PeerLabels;

/// Time between two replication rounds; the most updates a failover loses.
pub const REPLICATE_EVERY: Duration = Duration::from_millis(100);

/// A slot's snapshot and the slot version it was taken at.
type SnapshotAt = (u8, u64, Vec<u8>);

/// What this instance has pushed to the standbys of the slots it owns.
#[derive(Debug, Default)]
pub struct Replication {
    /// (slot, standby) → slot version last replicated there.
    replicated: Mutex<HashMap<(u8, String), u64>>,
}

impl Replication {
    /// Whether this instance has pushed `slot`'s state to `standby`. Under
    /// load the state changes all the time, so "pushed at least once" is
    /// the bar: what the standby misses is the replication window.
    pub fn synced(&self, slot: u8, standby: &str) -> bool {
        self.lock().contains_key(&(slot, standby.to_string()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u8, String), u64>> {
        self.replicated.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replicates every round until `stop`; each round also runs the
    /// anti-entropy of the slots kept on every instance.
    pub async fn run(
        self: Arc<Self>,
        cluster: Arc<Cluster>,
        everywhere: Arc<Everywhere>,
        stop: CancellationToken,
    ) {
        let mut every = tokio::time::interval(REPLICATE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = async {
                    everywhere.reconcile().await;
                    self.replicate_once(&cluster).await;
                } => {}
            }
        }
    }

    /// One round: pushes every changed slot this instance owns to its
    /// standby, one call per standby.
    pub async fn replicate_once(&self, cluster: &Cluster) {
        let sent = self.lock().clone();
        let Some(table) = cluster.table() else { return };
        let slots = cluster.slots();
        let mut batches: BTreeMap<&str, Vec<SnapshotAt>> = BTreeMap::new();
        // Standbys left without some slot's latest state by this round.
        let mut behind = BTreeSet::new();
        for (slot, route) in &table.routes {
            let (true, Some(standby)) = (route.owner == cluster.me(), route.standby.as_deref())
            else {
                continue;
            };
            if slots.is_everywhere(u32::from(*slot)) {
                continue;
            }
            let Some(version) = slots.version(*slot) else {
                continue;
            };
            if sent.get(&(*slot, standby.to_string())) == Some(&version) {
                continue;
            }
            match slots.snapshot(*slot).await {
                Ok(state) => batches
                    .entry(standby)
                    .or_default()
                    .push((*slot, version, state)),
                Err(e) => {
                    behind.insert(standby.to_string());
                    tracing::warn!(slot, error = %e, "snapshot failed")
                }
            }
        }
        let pushes = batches.into_iter().filter_map(|(standby, states)| {
            let peer = cluster.peers().get(standby)?.clone();
            let request = Replicate {
                from: cluster.me().to_string(),
                epoch: table.epoch,
                slots: states
                    .iter()
                    .map(|(slot, _, state)| SlotState {
                        slot: u32::from(*slot),
                        state: state.clone(),
                    })
                    .collect(),
            };
            Some(async move {
                let outcome =
                    tokio::time::timeout(MESH_CALL_TIMEOUT, peer.link().replicate(request)).await;
                (peer, states, outcome)
            })
        });
        for (peer, states, outcome) in futures_util::future::join_all(pushes).await {
            match outcome {
                Ok(Ok(())) => {
                    cluster
                        .metrics()
                        .cluster
                        .replicated
                        .get_or_create(&PeerLabels {
                            peer: peer.id().to_string(),
                        })
                        .inc();
                    let mut sent = self.lock();
                    for (slot, version, _) in states {
                        sent.insert((slot, peer.id().to_string()), version);
                    }
                }
                Ok(Err(e)) => {
                    behind.insert(peer.id().to_string());
                    tracing::debug!(peer = peer.id(), error = %e, "replication refused")
                }
                Err(_) => {
                    behind.insert(peer.id().to_string());
                    tracing::debug!(peer = peer.id(), "replication timed out")
                }
            }
        }
        let now = std::time::Instant::now();
        for peer in cluster.peers().keys() {
            cluster
                .metrics()
                .cluster
                .replication_lag
                .record(peer, !behind.contains(peer), now);
        }
    }
}
