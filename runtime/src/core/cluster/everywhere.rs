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

use tokio_util::sync::CancellationToken;

use super::link::{MESH_CALL_TIMEOUT, Replicate, SlotState};
use super::peer::Peer;
use super::state::Cluster;

/// Longest a write waits for its push to the peers.
pub const SPREAD_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a starting instance waits for a synced peer or every member
/// before it serves from what a majority of the cluster holds (a whole
/// cluster restarted with one member down).
const FRESH_START_WAIT: Duration = Duration::from_secs(10);
/// A push that failed is tried once more within the same write.
const SPREAD_ATTEMPTS: usize = 2;
/// Time between two attempts to take the peers' state after a start.
const SYNC_EVERY: Duration = Duration::from_millis(100);

/// The slot version the last push of a slot covered, and how many peers
/// took it; the lock around it serialises the slot's pushes.
type LastPush = Arc<tokio::sync::Mutex<(u64, u32)>>;

/// The slots kept on every instance, as far as the mesh goes.
#[derive(Debug)]
pub struct Everywhere {
    cluster: Arc<Cluster>,
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

/// A state's fingerprint, to tell whether a peer already holds it.
pub fn hash_of(state: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    state.hash(&mut h);
    h.finish()
}

impl Everywhere {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Self {
            cluster,
            pushes: Mutex::default(),
            exchanged: Mutex::default(),
            reconciled: Mutex::default(),
            synced: AtomicBool::new(false),
            fetched: Mutex::default(),
        }
    }

    /// Whether this instance may serve the slots kept on every instance.
    pub fn ready(&self) -> bool {
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

    /// Pushes `slot`'s state, which includes a write just applied here, to
    /// every healthy peer; returns how many took it. Never fails: the
    /// write is applied, and anti-entropy carries it to the peers missed.
    pub async fn spread(&self, slot: u8) -> u32 {
        let slots = self.cluster.slots();
        let Some(written) = slots.version(slot, 0) else {
            return 0;
        };
        let lock = self.push_lock(slot);
        let mut last = lock.lock().await;
        if last.0 >= written {
            // A push that started after this write was applied covered it.
            return last.1;
        }
        let Some(version) = slots.version(slot, 0) else {
            return 0;
        };
        let state = match slots.snapshot(slot, 0).await {
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
                    self.remember(slot, peer.id(), hash);
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
        let me = self.cluster.me();
        let (before, after): (Vec<_>, Vec<_>) = self
            .cluster
            .healthy_peers()
            .into_iter()
            .partition(|p| p.id() < me);
        after.into_iter().chain(before).collect()
    }

    /// One push of a slot's state to a peer.
    async fn push(&self, peer: &Peer, slot: u8, state: Vec<u8>, limit: Duration) -> bool {
        let request = Replicate {
            from: self.cluster.me().to_string(),
            epoch: self.cluster.epoch(),
            slots: vec![SlotState {
                slot: u32::from(slot),
                partition: 0,
                state,
            }],
        };
        match tokio::time::timeout(limit, peer.link().replicate(request)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!(peer = peer.id(), slot, error = %e, "push refused");
                false
            }
            Err(_) => {
                tracing::debug!(peer = peer.id(), slot, "push timed out");
                false
            }
        }
    }

    /// A peer's state of `slot`, merged into this instance's copy.
    pub async fn take(&self, from: &str, slot: u8, state: Vec<u8>) -> Result<(), String> {
        let hash = hash_of(&state);
        self.cluster
            .slots()
            .merge(slot, 0, state)
            .await
            .map_err(|e| e.to_string())?;
        self.remember(slot, from, hash);
        Ok(())
    }

    /// Anti-entropy round: pushes every slot kept on every instance to
    /// each healthy peer whose last exchange differs from the state now.
    pub async fn reconcile(&self) {
        let slots = self.cluster.slots();
        let everywhere = slots.everywhere();
        if everywhere.is_empty() || !self.ready() {
            return;
        }
        let peers = self.cluster.healthy_peers();
        for slot in everywhere {
            let known = self
                .reconciled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&slot)
                .copied();
            if let (Some(v), Some((seen, hash))) = (slots.version(slot, 0), known)
                && v == seen
                && peers
                    .iter()
                    .all(|p| self.exchanged_with(slot, p.id()) == Some(hash))
            {
                continue;
            }
            let state = match slots.snapshot(slot, 0).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(slot, error = %e, "snapshot failed");
                    continue;
                }
            };
            let hash = hash_of(&state);
            // Read after the snapshot, which itself counts as a call.
            if let Some(v) = slots.version(slot, 0) {
                self.reconciled
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(slot, (v, hash));
            }
            let behind: Vec<_> = peers
                .iter()
                .filter(|p| self.exchanged_with(slot, p.id()) != Some(hash))
                .collect();
            let pushes = behind
                .iter()
                .map(|peer| self.push(peer, slot, state.clone(), MESH_CALL_TIMEOUT));
            for (peer, ok) in behind
                .iter()
                .zip(futures_util::future::join_all(pushes).await)
            {
                if ok {
                    self.remember(slot, peer.id(), hash);
                }
            }
        }
    }

    /// What a peer fetching state is answered: every slot kept on every
    /// instance, and whether this copy is trustworthy (synced).
    pub async fn states(&self) -> (Vec<SlotState>, bool) {
        let slots = self.cluster.slots();
        let mut states = Vec::new();
        for slot in slots.everywhere() {
            match slots.snapshot(slot, 0).await {
                Ok(state) => states.push(SlotState {
                    slot: u32::from(slot),
                    partition: 0,
                    state,
                }),
                Err(e) => tracing::warn!(slot, error = %e, "snapshot for a peer failed"),
            }
        }
        (states, self.ready())
    }

    /// Takes the peers' state after a start, every [`SYNC_EVERY`], until
    /// this instance may serve; then ends.
    pub async fn run_sync(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(SYNC_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.ready() {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.sync() => {}
            }
        }
    }

    /// Takes the state of every peer in contact until this instance may
    /// serve: once one synced peer's state is in (it holds every write
    /// acknowledged while it was reachable), or once every member has
    /// answered and none was synced (the whole cluster started afresh),
    /// or at once when this instance is alone or has no such slots.
    pub async fn sync(&self) {
        if self.ready() {
            return;
        }
        let cluster = &self.cluster;
        let slots = cluster.slots();
        if cluster.peers().is_empty() || slots.everywhere().is_empty() {
            self.mark_synced("no peers or no replicated slots");
            return;
        }
        let mut trusted = false;
        for peer in cluster.peers().values().filter(|p| p.in_contact()) {
            if self
                .fetched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(peer.id())
            {
                continue;
            }
            let reply = match tokio::time::timeout(
                MESH_CALL_TIMEOUT,
                peer.link().fetch_state(cluster.me()),
            )
            .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::debug!(peer = peer.id(), error = %e, "state fetch refused");
                    continue;
                }
                Err(_) => continue,
            };
            for state in reply.slots {
                let Ok(slot) = u8::try_from(state.slot) else {
                    continue;
                };
                if !slots.is_everywhere(state.slot) {
                    continue;
                }
                if let Err(e) = self.take(peer.id(), slot, state.state).await {
                    tracing::warn!(peer = peer.id(), slot, error = %e, "peer state not merged");
                }
            }
            self.fetched
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
        let fetched = self.fetched.lock().unwrap_or_else(|p| p.into_inner()).len();
        if trusted {
            self.mark_synced("took the state of a synced peer");
        } else if fetched == cluster.peers().len() {
            self.mark_synced("every member answered and none held older state");
        } else if cluster.uptime() > FRESH_START_WAIT && (fetched + 1) * 2 > cluster.size() {
            tracing::warn!(
                fetched,
                members = cluster.size(),
                "no synced peer answered and some members are unreachable; serving the replicated slots from what a majority holds"
            );
            self.mark_synced("a majority answered and no synced peer is reachable");
        }
    }

    fn mark_synced(&self, why: &str) {
        if !self.synced.swap(true, Ordering::AcqRel) {
            tracing::info!(why, "replicated slots ready to serve");
            self.cluster.metrics().cluster.everywhere_synced.set(1);
        }
    }
}
