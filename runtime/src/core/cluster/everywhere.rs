//! Slots kept on every instance (counter, register, registry): each
//! instance serves them from its own copy, and the copies converge because
//! every slot type's `merge` is a join (commutative, associative,
//! idempotent). Three paths move state between the copies:
//!
//! - **on a write**, before the client hears back, the instance pushes the
//!   slot's state to every healthy peer ([`Everywhere::spread`]); writes
//!   that arrive while a push is under way share the next one, so the cost
//!   is one snapshot and one round trip per peer per batch, not per write. An
//!   acknowledged write is therefore on every instance that was reachable,
//!   and a SIGKILL right after the answer loses nothing;
//! - **anti-entropy** every replication round: a slot whose state differs
//!   from what was last exchanged with a peer is pushed to it, which heals
//!   partitions and dropped pushes;
//! - **on start** an instance takes its peers' state ([`Everywhere::sync`])
//!   and refuses these slots until then: a restarted counter must not
//!   answer a read below what it answered before the restart, nor count
//!   its own entry up again from zero.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vss_proto::v1::{FetchStateRequest, ReplicateRequest, SlotState};

use super::{Cluster, MESH_CALL_TIMEOUT, Peer};

/// Longest a write waits for its push to the peers.
pub const SPREAD_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a starting instance waits for a synced peer or every member
/// before it serves from what a majority of the cluster holds (a whole
/// cluster restarted with one member down).
const FRESH_START_WAIT: Duration = Duration::from_secs(10);
/// A push that failed is tried once more within the same write.
const SPREAD_ATTEMPTS: usize = 2;

/// The slot version the last push of a slot covered, and how many peers
/// took it; the lock around it serialises the slot's pushes.
type LastPush = Arc<tokio::sync::Mutex<(u64, u32)>>;

/// State of the slots kept on every instance, as far as the mesh goes.
#[derive(Debug, Default)]
pub struct Everywhere {
    pushes: Mutex<HashMap<u8, LastPush>>,
    /// (slot, peer) → hash of the state last sent to or received from it.
    exchanged: Mutex<HashMap<(u8, String), u64>>,
    /// Per slot: the version and hash of the last anti-entropy snapshot, so
    /// an unchanged slot is not snapshotted every round.
    reconciled: Mutex<HashMap<u8, (u64, u64)>>,
    /// Whether this instance has taken its peers' state since it started.
    synced: AtomicBool,
    /// Peers whose state this instance has taken.
    fetched: Mutex<BTreeSet<String>>,
}

impl Everywhere {
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn push_lock(&self, slot: u8) -> LastPush {
        self.pushes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(slot)
            .or_default()
            .clone()
    }

    fn remember(&self, slot: u8, peer: &str, hash: u64) {
        self.exchanged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((slot, peer.to_string()), hash);
    }

    fn exchanged_with(&self, slot: u8, peer: &str) -> Option<u64> {
        self.exchanged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(slot, peer.to_string()))
            .copied()
    }
}

fn hash_of(state: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    state.hash(&mut h);
    h.finish()
}

impl Cluster {
    /// Whether this instance may serve the slots kept on every instance.
    pub fn everywhere_ready(&self) -> bool {
        self.everywhere.synced()
    }

    /// Pushes `slot`'s state, which includes a write just applied here, to
    /// every healthy peer; returns how many took it. Never fails: the
    /// write is applied, and anti-entropy carries it to the peers missed.
    pub async fn spread(&self, slot: u8) -> u32 {
        let Some(written) = self.slots.version(slot) else {
            return 0;
        };
        let lock = self.everywhere.push_lock(slot);
        let mut last = lock.lock().await;
        if last.0 >= written {
            // A push that started after this write was applied covered it.
            return last.1;
        }
        let Some(version) = self.slots.version(slot) else {
            return 0;
        };
        let state = match self.slots.snapshot(slot).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(slot, error = %e, "snapshot for a write's push failed");
                return 0;
            }
        };
        let hash = hash_of(&state);
        let mut took = 0;
        for peer in self.spread_order() {
            for _ in 0..SPREAD_ATTEMPTS {
                if self.push(&peer, slot, state.clone(), SPREAD_TIMEOUT).await {
                    took += 1;
                    self.everywhere.remember(slot, peer.id(), hash);
                    break;
                }
            }
        }
        *last = (version, took);
        took
    }

    /// The healthy peers in the order a client retries a failed call: the
    /// ids after this one, then from the first (clients are given the
    /// instances in id order). Pushed one after the other in that order, a
    /// write cut short by this instance's death is on a prefix of the
    /// list, so the client's retry lands first on a peer that has it and
    /// the counter's request id makes the retry a no-op there.
    fn spread_order(&self) -> Vec<Arc<Peer>> {
        let (before, after): (Vec<_>, Vec<_>) = self
            .healthy_peers()
            .into_iter()
            .partition(|p| p.id() < self.me());
        after.into_iter().chain(before).collect()
    }

    /// One push of a slot's state to a peer.
    async fn push(&self, peer: &Peer, slot: u8, state: Vec<u8>, limit: Duration) -> bool {
        let request = ReplicateRequest {
            from: self.me().to_string(),
            epoch: self.epoch(),
            slots: vec![SlotState {
                slot: u32::from(slot),
                state,
            }],
        };
        let mut client = peer.mesh();
        match tokio::time::timeout(limit, client.replicate(request)).await {
            Ok(Ok(_)) => true,
            Ok(Err(status)) => {
                tracing::debug!(peer = peer.id(), slot, error = %status.message(), "push refused");
                false
            }
            Err(_) => {
                tracing::debug!(peer = peer.id(), slot, "push timed out");
                false
            }
        }
    }

    /// A peer's state of `slot`, merged into this instance's copy.
    pub(crate) async fn take_everywhere(
        &self,
        from: &str,
        slot: u8,
        state: Vec<u8>,
    ) -> Result<(), String> {
        let hash = hash_of(&state);
        self.slots
            .merge(slot, state)
            .await
            .map_err(|e| e.to_string())?;
        self.everywhere.remember(slot, from, hash);
        Ok(())
    }

    /// Anti-entropy round: pushes every slot kept on every instance to
    /// each healthy peer whose last exchange differs from the state now.
    pub(super) async fn reconcile_everywhere(&self) {
        let slots = self.slots.everywhere();
        if slots.is_empty() || !self.everywhere_ready() {
            return;
        }
        let peers = self.healthy_peers();
        for slot in slots {
            let known = self
                .everywhere
                .reconciled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&slot)
                .copied();
            if let (Some(v), Some((seen, hash))) = (self.slots.version(slot), known)
                && v == seen
                && peers
                    .iter()
                    .all(|p| self.everywhere.exchanged_with(slot, p.id()) == Some(hash))
            {
                continue;
            }
            let state = match self.slots.snapshot(slot).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(slot, error = %e, "snapshot failed");
                    continue;
                }
            };
            let hash = hash_of(&state);
            // Read after the snapshot, which itself counts as a call.
            if let Some(v) = self.slots.version(slot) {
                self.everywhere
                    .reconciled
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(slot, (v, hash));
            }
            let behind: Vec<_> = peers
                .iter()
                .filter(|p| self.everywhere.exchanged_with(slot, p.id()) != Some(hash))
                .collect();
            let pushes = behind
                .iter()
                .map(|peer| self.push(peer, slot, state.clone(), MESH_CALL_TIMEOUT));
            for (peer, ok) in behind
                .iter()
                .zip(futures_util::future::join_all(pushes).await)
            {
                if ok {
                    self.everywhere.remember(slot, peer.id(), hash);
                }
            }
        }
    }

    /// What [`Cluster::fetch_state`] answers a peer: every slot kept on
    /// every instance, and whether this copy is trustworthy (synced).
    pub(crate) async fn everywhere_states(&self) -> (Vec<SlotState>, bool) {
        let mut states = Vec::new();
        for slot in self.slots.everywhere() {
            match self.slots.snapshot(slot).await {
                Ok(state) => states.push(SlotState {
                    slot: u32::from(slot),
                    state,
                }),
                Err(e) => tracing::warn!(slot, error = %e, "snapshot for a peer failed"),
            }
        }
        (states, self.everywhere_ready())
    }

    /// Takes the state of every peer in contact until this instance may
    /// serve: once one synced peer's state is in (it holds every write
    /// acknowledged while it was reachable), or once every member has
    /// answered and none was synced (the whole cluster started afresh),
    /// or at once when this instance is alone or has no such slots.
    pub(super) async fn sync_everywhere(&self) {
        if self.everywhere_ready() {
            return;
        }
        if self.peers.is_empty() || self.slots.everywhere().is_empty() {
            self.mark_synced("no peers or no replicated slots");
            return;
        }
        let mut trusted = false;
        for peer in self.peers.values().filter(|p| p.in_contact()) {
            if self
                .everywhere
                .fetched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(peer.id())
            {
                continue;
            }
            let request = FetchStateRequest {
                from: self.me().to_string(),
            };
            let mut client = peer.mesh();
            let reply = match tokio::time::timeout(MESH_CALL_TIMEOUT, client.fetch_state(request))
                .await
            {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(status)) => {
                    tracing::debug!(peer = peer.id(), error = %status.message(), "state fetch refused");
                    continue;
                }
                Err(_) => continue,
            };
            for state in reply.slots {
                let Ok(slot) = u8::try_from(state.slot) else {
                    continue;
                };
                if !self.slots.is_everywhere(state.slot) {
                    continue;
                }
                if let Err(e) = self.take_everywhere(peer.id(), slot, state.state).await {
                    tracing::warn!(peer = peer.id(), slot, error = %e, "peer state not merged");
                }
            }
            self.everywhere
                .fetched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(peer.id().to_string());
            trusted |= reply.synced;
            tracing::info!(
                peer = peer.id(),
                synced = reply.synced,
                "took a peer's state of the replicated slots"
            );
        }
        let fetched = self
            .everywhere
            .fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        if trusted {
            self.mark_synced("took the state of a synced peer");
        } else if fetched == self.peers.len() {
            self.mark_synced("every member answered and none held older state");
        } else if self.uptime() > FRESH_START_WAIT && (fetched + 1) * 2 > self.size() {
            tracing::warn!(
                fetched,
                members = self.size(),
                "no synced peer answered and some members are unreachable; serving the replicated slots from what a majority holds"
            );
            self.mark_synced("a majority answered and no synced peer is reachable");
        }
    }

    fn mark_synced(&self, why: &str) {
        if !self.everywhere.synced.swap(true, Ordering::AcqRel) {
            tracing::info!(why, "replicated slots ready to serve");
            self.metrics.cluster.everywhere_synced.set(1);
        }
    }
}
