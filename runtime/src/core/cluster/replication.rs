//! Replication to standbys, every [`REPLICATE_EVERY`]: for each slot it
//! owns, the owner pushes the module's snapshot to the standby when the
//! slot changed since the last push. A failover therefore loses at most
//! the updates of the last interval plus one round trip.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::everywhere::{Everywhere, hash_of};
use super::link::{MESH_CALL_TIMEOUT, Replicate, SlotState};
use super::state::Cluster;
use crate::ops::metrics::PeerLabels;

/// Time between two replication rounds; the most updates a failover loses.
pub const REPLICATE_EVERY: Duration = Duration::from_millis(100);
/// Longest a standby goes without its slots' state even when nothing
/// changed: a standby that restarted (and lost its copy) has it again
/// within this.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// A slot's (or partition's) snapshot, and what it was taken at.
type SnapshotAt = (Part, Pushed, Vec<u8>);

/// A slot, or one partition of a split slot (partition 0 otherwise).
type Part = (u8, u16);

/// What a standby holds of a slot: the slot's version then, the hash of
/// its state, and when it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pushed {
    version: u64,
    hash: u64,
    at: tokio::time::Instant,
}

/// What this instance has pushed to the standbys of the slots it owns.
#[derive(Debug, Default)]
pub struct Replication {
    /// (slot, partition, standby) → what was last replicated there.
    replicated: Mutex<HashMap<(u8, u16, String), Pushed>>,
}

impl Replication {
    /// Whether this instance has pushed the state of `slot`'s `partition`
    /// (0 for a slot that is not split) to `standby`. Under load the state
    /// changes all the time, so "pushed at least once" is the bar: what
    /// the standby misses is the replication window.
    pub fn synced(&self, slot: u8, partition: u16, standby: &str) -> bool {
        self.lock()
            .contains_key(&(slot, partition, standby.to_string()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u8, u16, String), Pushed>> {
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

    /// One round: pushes every changed slot (and partition) this instance
    /// owns to its standby, one call per standby.
    pub async fn replicate_once(&self, cluster: &Cluster) {
        let sent = self.lock().clone();
        let Some(table) = cluster.table() else { return };
        let slots = cluster.slots();
        let mut batches: BTreeMap<&str, Vec<SnapshotAt>> = BTreeMap::new();
        // Standbys left without some slot's latest state by this round.
        let mut behind = BTreeSet::new();
        let whole = table
            .routes
            .iter()
            .filter(|(slot, _)| !table.partitions.contains_key(slot))
            .map(|(slot, route)| ((*slot, 0), route));
        let parts = table.partitions.iter().flat_map(|(slot, parts)| {
            parts
                .iter()
                .enumerate()
                .map(|(p, route)| ((*slot, u16::try_from(p).unwrap_or(u16::MAX)), route))
        });
        // Mine, with a standby; taken out of the table before any await.
        let mine: Vec<(Part, &str)> = whole
            .chain(parts)
            .filter(|(_, route)| route.owner == cluster.me())
            .filter_map(|(part, route)| Some((part, route.standby.as_deref()?)))
            .collect();
        for ((slot, partition), standby) in mine {
            if slots.is_everywhere(u32::from(slot)) {
                continue;
            }
            let Some(version) = slots.version(slot, partition) else {
                continue;
            };
            let key = (slot, partition, standby.to_string());
            let held = sent.get(&key).copied();
            if held.is_some_and(|h| h.version == version) {
                continue;
            }
            // Every call moves the version, ticks and the snapshot itself
            // included: a state the standby got less than REFRESH_EVERY ago
            // is not sent again, only the version it was seen at is noted.
            match slots.snapshot_versioned(slot, partition).await {
                Ok((version, state)) => {
                    let hash = hash_of(&state);
                    if let Some(h) = held
                        && h.hash == hash
                        && h.at.elapsed() < REFRESH_EVERY
                    {
                        let seen = Pushed { version, ..h };
                        self.lock().insert(key, seen);
                        continue;
                    }
                    let pushed = Pushed {
                        version,
                        hash,
                        at: tokio::time::Instant::now(),
                    };
                    batches
                        .entry(standby)
                        .or_default()
                        .push(((slot, partition), pushed, state))
                }
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
                    .map(|((slot, partition), _, state)| SlotState {
                        slot: u32::from(*slot),
                        partition: *partition,
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
                    for ((slot, partition), pushed, _) in states {
                        sent.insert((slot, partition, peer.id().to_string()), pushed);
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
