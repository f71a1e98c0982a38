//! Replication to standbys, every [`REPLICATE_EVERY`]: for each slot it
//! owns, the owner pushes the module's snapshot to the standby when the
//! slot changed since the last push. A failover therefore loses at most
//! the updates of the last interval plus one round trip.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// What this instance owned as of its last round.
    owned: Mutex<BTreeSet<Part>>,
    /// What moved from here to another instance that is alive, and still
    /// waits for its final state: part → its new owner.
    handing: Mutex<BTreeMap<Part, String>>,
    /// The epoch of the last table whose moves [`Replication::hand_over`]
    /// has dealt with.
    handed_for: AtomicU64,
}

impl Replication {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u8, u16, String), Pushed>> {
        self.replicated.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replicates every round until `stop`; each round also runs the
    /// anti-entropy of the slots kept on every instance. Hand-overs run
    /// beside the rounds, never behind one: a round held up by a slow
    /// standby (up to a mesh call's timeout per standby) would otherwise
    /// hold a final state past the new owner's wait for it.
    pub async fn run(
        self: Arc<Self>,
        cluster: Arc<Cluster>,
        everywhere: Arc<Everywhere>,
        stop: CancellationToken,
    ) {
        let rounds = async {
            let mut every = tokio::time::interval(REPLICATE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                everywhere.reconcile().await;
                self.replicate_once(&cluster).await;
            }
        };
        let hand_overs = async {
            let mut every = tokio::time::interval(REPLICATE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // A new table may move slots away: their final state goes at
            // once; the ticks retry pushes that timed out.
            let mut tables = cluster.watch_routing();
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = tables.changed() => {}
                }
                self.hand_over(&cluster).await;
            }
        };
        tokio::select! {
            () = stop.cancelled() => {}
            () = rounds => {}
            () = hand_overs => {}
        }
    }

    /// Whether everything the table of `epoch` (or a later one) moved away
    /// from here went with its final state. Until the replication loop
    /// has seen that table, it has not even started: a leaving instance
    /// that took "nothing pending" for done would stop before the push.
    pub fn handed_over(&self, epoch: u64) -> bool {
        self.handed_for.load(Ordering::Acquire) >= epoch
            && self
                .handing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }

    /// Hands what moved from here to a live instance over: its final state,
    /// taken after every request queued here before the move (the slot's
    /// queue is in order), pushed under the table's epoch. The new owner
    /// serves it once that is in.
    pub async fn hand_over(&self, cluster: &Cluster) {
        let Some(table) = cluster.table() else { return };
        let now: BTreeSet<Part> = table
            .parts()
            .filter(|(_, r)| r.owner == cluster.me())
            .map(|(part, _)| part)
            .collect();
        let before = std::mem::replace(
            &mut *self.owned.lock().unwrap_or_else(|p| p.into_inner()),
            now.clone(),
        );
        let mut handing = self
            .handing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for part in before.difference(&now) {
            if let Some(route) = table.route_of(part.0, part.1)
                && route.owner != cluster.me()
                && !cluster.moved_unserved(*part)
            {
                handing.insert(*part, route.owner.clone());
            }
        }
        // A later table may have moved a part on again: its final state
        // follows it, under this table's epoch, which its owner now awaits.
        handing.retain(|part, to| match table.route_of(part.0, part.1) {
            Some(route) if route.owner != cluster.me() => {
                to.clone_from(&route.owner);
                true
            }
            _ => false,
        });
        // Gone or unreachable: the new owner serves from its copy.
        handing.retain(|_, to| cluster.peers().get(to).is_some_and(|p| p.healthy()));
        let slots = cluster.slots();
        let mut batches: BTreeMap<String, Vec<SlotState>> = BTreeMap::new();
        for ((slot, partition), to) in &handing {
            match slots.snapshot(*slot, *partition).await {
                Ok(state) => batches.entry(to.clone()).or_default().push(SlotState {
                    slot: u32::from(*slot),
                    partition: *partition,
                    state,
                }),
                Err(e) => {
                    tracing::warn!(slot, partition, error = %e, "snapshot for a hand-over failed")
                }
            }
        }
        for (to, states) in batches {
            let Some(peer) = cluster.peers().get(&to) else {
                continue;
            };
            let parts: Vec<Part> = states
                .iter()
                .map(|s| (u8::try_from(s.slot).unwrap_or(u8::MAX), s.partition))
                .collect();
            let request = Replicate {
                from: cluster.me().to_string(),
                epoch: table.epoch,
                slots: states,
            };
            match tokio::time::timeout(MESH_CALL_TIMEOUT, peer.link().replicate(request)).await {
                Ok(Ok(())) => {
                    tracing::info!(to = %to, epoch = table.epoch, handed = parts.len(), parts = ?parts, "handed slots over with their final state");
                    cluster
                        .metrics()
                        .cluster
                        .handed_over
                        .inc_by(u64::try_from(parts.len()).unwrap_or(u64::MAX));
                    for part in parts {
                        handing.remove(&part);
                    }
                }
                // Refused by an owner a newer table replaced: it goes on to
                // that one. Otherwise best effort: the new owner's wait for
                // it is bounded.
                Ok(Err(e)) => {
                    let newer = cluster.table().filter(|t| t.epoch > table.epoch);
                    let (follow, drop): (Vec<Part>, Vec<Part>) =
                        parts.into_iter().partition(|part| {
                            newer.as_deref().is_some_and(|t| {
                                t.route_of(part.0, part.1).is_some_and(|r| r.owner != to)
                            })
                        });
                    if !follow.is_empty() {
                        tracing::info!(to = %to, parts = follow.len(), "hand-over refused by an owner a newer table replaced; following the parts to their new owner");
                    }
                    if !drop.is_empty() {
                        tracing::warn!(to = %to, error = %e, "hand-over refused");
                    }
                    for part in drop {
                        handing.remove(&part);
                    }
                }
                Err(_) => tracing::warn!(to = %to, "hand-over timed out; trying again"),
            }
        }
        *self.handing.lock().unwrap_or_else(|p| p.into_inner()) = handing;
        self.handed_for.fetch_max(table.epoch, Ordering::Release);
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
        // Mine, with a standby; taken out of the table before any await.
        let mine: Vec<(Part, &str)> = table
            .parts()
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
