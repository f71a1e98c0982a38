//! What this instance knows of the cluster: its members and their links,
//! the routing table in force, and whether it leads.
//!
//! The loops that keep it current (heartbeats, decisions, replication)
//! live beside it and share it; the node reads it to place requests.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::election::ElectionView;
use super::link::PeerLink;
use super::members::Members;
use super::peer::Peer;
use super::routing::{self, RoutingError, RoutingTable};
use crate::core::slot_table::SlotTable;
use crate::ops::metrics::{Metrics, PeerLabels};

/// Where a request for a slot is served.
#[derive(Debug, Clone)]
pub enum Placement {
    Local,
    Remote(Arc<Peer>),
}

/// Why the cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("peer {id} at {addr}: {reason}")]
    PeerAddress {
        id: String,
        addr: String,
        reason: String,
    },
}

/// This instance's part of the cluster.
#[derive(Debug)]
pub struct Cluster {
    members: Members,
    known: HashSet<String>,
    peers: BTreeMap<String, Arc<Peer>>,
    table: RwLock<Option<Arc<RoutingTable>>>,
    leading: AtomicBool,
    started: Instant,
    slots: Arc<SlotTable>,
    metrics: Metrics,
    /// Every installed table, for clients watching the routing.
    installed: tokio::sync::watch::Sender<Option<Arc<RoutingTable>>>,
    /// (slot, partition) → the owner whose state this instance took for
    /// it as standby, and that owner's epoch then.
    held: std::sync::Mutex<HashMap<(u8, u16), (String, u64)>>,
    /// Set once this instance is stopping: it hands what it owns over.
    leaving: AtomicBool,
    /// Slots and partitions this instance took over from an owner that is
    /// still alive: served once that owner's final state is in (or after
    /// [`HANDOVER_WAIT`]).
    awaiting: std::sync::Mutex<HashMap<(u8, u16), Awaited>>,
    /// How many are awaited, read on every request without the lock.
    awaited: std::sync::atomic::AtomicUsize,
    handed: tokio::sync::Notify,
    /// Slots and partitions this instance owned and a later table moved
    /// away: peers with an older table may still forward their requests
    /// here ([`Cluster::relay_to`]).
    moved_away: std::sync::Mutex<HashSet<(u8, u16)>>,
    /// Slots and partitions a later table moved away from here while their
    /// final state was still awaited: the copy here is a replica, not the
    /// state, and is not handed over as final.
    moved_unserved: std::sync::Mutex<HashSet<(u8, u16)>>,
}

/// A slot or partition taken over from a live owner, waiting for its
/// final state.
#[derive(Debug, Clone)]
struct Awaited {
    from: String,
    until: Instant,
    /// The epoch of the table that moved it here.
    moved_at: u64,
}

/// Longest a new owner waits for the previous, live owner's final state of
/// a slot or partition before serving it from its replicated copy.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(1);

impl Cluster {
    /// The cluster of `members`, reaching each peer through the link
    /// `dial(id, address)` makes.
    pub fn new(
        members: Members,
        slots: Arc<SlotTable>,
        metrics: Metrics,
        dial: impl Fn(&str, &str) -> Result<Arc<dyn PeerLink>, String>,
    ) -> Result<Self, ClusterError> {
        let mut peers = BTreeMap::new();
        for (id, addr) in members.peers() {
            let link = dial(id, addr).map_err(|reason| ClusterError::PeerAddress {
                id: id.to_string(),
                addr: addr.to_string(),
                reason,
            })?;
            peers.insert(id.to_string(), Arc::new(Peer::new(id, addr, link)));
        }
        Ok(Self {
            known: members.ids().map(str::to_string).collect(),
            members,
            peers,
            table: RwLock::new(None),
            leading: AtomicBool::new(false),
            started: Instant::now(),
            slots,
            metrics,
            installed: tokio::sync::watch::Sender::new(None),
            held: std::sync::Mutex::default(),
            leaving: AtomicBool::new(false),
            awaiting: std::sync::Mutex::default(),
            awaited: std::sync::atomic::AtomicUsize::new(0),
            handed: tokio::sync::Notify::new(),
            moved_away: std::sync::Mutex::default(),
            moved_unserved: std::sync::Mutex::default(),
        })
    }

    pub fn me(&self) -> &str {
        self.members.me()
    }

    pub fn peers(&self) -> &BTreeMap<String, Arc<Peer>> {
        &self.peers
    }

    pub fn is_member(&self, id: &str) -> bool {
        self.known.contains(id)
    }

    /// Every member's id, this instance's included.
    pub fn known(&self) -> &HashSet<String> {
        &self.known
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn slots(&self) -> &Arc<SlotTable> {
        &self.slots
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The routing table in force, if one arrived yet.
    pub fn table(&self) -> Option<Arc<RoutingTable>> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn epoch(&self) -> u64 {
        self.table().map_or(0, |t| t.epoch)
    }

    /// This instance and every peer it is in contact with both ways
    /// ([`Peer::in_contact`]), sorted: who the election counts and who
    /// the leader routes slots to.
    ///
    /// Instances that are leaving are left out: they lead nothing and own
    /// nothing while they hand their slots over.
    pub fn healthy_ids(&self) -> BTreeSet<String> {
        let mut ids: BTreeSet<String> = self
            .peers
            .values()
            .filter(|p| p.in_contact() && !p.health().leaving)
            .map(|p| p.id().to_string())
            .collect();
        if !self.is_leaving() {
            ids.insert(self.me().to_string());
        }
        ids
    }

    /// Instances in the cluster, this one included.
    pub fn size(&self) -> usize {
        self.peers.len() + 1
    }

    /// Asks `decide` whether this instance leads, showing it what this
    /// instance sees now.
    pub fn elect(&self, decide: impl FnOnce(&ElectionView<'_>) -> bool) -> bool {
        let in_contact = self.healthy_ids();
        let table = self.table();
        decide(&ElectionView {
            me: self.me(),
            size: self.size(),
            in_contact: &in_contact,
            uptime: self.uptime(),
            table: table.as_deref(),
        })
    }

    /// Records whether this instance leads; true when that changed.
    pub fn set_leading(&self, leading: bool) -> bool {
        leading != self.leading.swap(leading, Ordering::Relaxed)
    }

    /// The first epoch above `seen` that this instance may publish
    /// ([`routing::next_epoch`]).
    pub fn next_epoch(&self, seen: u64) -> u64 {
        let index = self
            .peers
            .keys()
            .filter(|id| id.as_str() < self.me())
            .count();
        routing::next_epoch(seen, index, self.size())
    }

    pub fn healthy_peers(&self) -> Vec<Arc<Peer>> {
        self.peers
            .values()
            .filter(|p| p.healthy())
            .cloned()
            .collect()
    }

    /// Installs `table` if it is newer than the one held. Re-installing the
    /// held table is accepted and changes nothing.
    pub fn install(&self, table: RoutingTable) -> Result<bool, RoutingError> {
        let mut held = self.table.write().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = held.as_deref()
            && !table.is_newer_than(current)
        {
            if *current == table {
                return Ok(false);
            }
            return Err(RoutingError::Stale {
                offered: table.epoch,
                offered_leader: table.leader,
                held: current.epoch,
                held_leader: current.leader.clone(),
            });
        }
        tracing::info!(
            epoch = table.epoch,
            leader = %table.leader,
            fallback = ?table.fallback_leader,
            members = ?table.members,
            "routing table installed"
        );
        self.metrics
            .cluster
            .routing_epoch
            .set(i64::try_from(table.epoch).unwrap_or(i64::MAX));
        let owned = table
            .partitions
            .values()
            .flatten()
            .filter(|r| r.owner == self.me())
            .count();
        self.metrics
            .cluster
            .partitions_owned
            .set(i64::try_from(owned).unwrap_or(i64::MAX));
        self.await_handovers(held.as_deref(), &table);
        self.note_moved_away(held.as_deref(), &table);
        let table = Arc::new(table);
        *held = Some(table.clone());
        drop(held);
        self.installed.send_replace(Some(table));
        Ok(true)
    }

    /// Where a request for `slot` may be served, best first: the owner,
    /// then the standby (it holds the freshest copy of the state while the
    /// leader has not yet noticed a lost owner), skipping peers that do
    /// not answer heartbeats. Ends with [`Placement::Local`]: if this
    /// instance is in line it serves, and if nobody else can, it serves
    /// rather than fail the call.
    ///
    /// None while this instance, one of several, holds no routing table
    /// yet: it cannot know the owner, and serving from its fresh state
    /// could grant what the owner already gave out.
    ///
    /// A slot split into partitions is placed by `partition`'s route.
    pub fn placement(&self, slot: u32, partition: u16) -> Option<Vec<Placement>> {
        if self.slots.served_locally(slot) {
            return Some(vec![Placement::Local]);
        }
        let table = self.table();
        if table.is_none() && !self.peers.is_empty() {
            return None;
        }
        let mut line = Vec::new();
        let route = u8::try_from(slot)
            .ok()
            .and_then(|s| table.as_deref()?.route_of(s, partition).cloned());
        if let Some(route) = route {
            for id in std::iter::once(route.owner.as_str()).chain(route.standby.as_deref()) {
                if id == self.me() {
                    break;
                }
                if let Some(peer) = self.peers.get(id).filter(|p| p.healthy()) {
                    line.push(Placement::Remote(peer.clone()));
                }
            }
        }
        line.push(Placement::Local);
        Some(line)
    }

    /// Where to relay a request a peer forwarded for `slot`'s `partition`,
    /// if this instance owned it and handed it over: to the owner the table
    /// names now, once. The state went there with the hand-over, so a
    /// request served on the copy left here would be lost. That owner may
    /// be the sender itself, its table not yet showing the move: it waits for
    /// it ([`Cluster::caught_up_with`]) and serves. Not to an owner this
    /// instance cannot reach: then it is served here, as before the move.
    pub fn relay_to(&self, slot: u32, partition: u16) -> Option<Arc<Peer>> {
        let part = (u8::try_from(slot).ok()?, partition);
        if !self
            .moved_away
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&part)
        {
            return None;
        }
        let table = self.table()?;
        let owner = table.route_of(part.0, part.1)?.owner.as_str();
        if owner == self.me() {
            return None;
        }
        self.peers.get(owner).filter(|p| p.healthy()).cloned()
    }

    /// Waits until this instance's table no longer names `from` the owner
    /// of `slot`'s `partition`, at most [`HANDOVER_WAIT`]. An owner forwards
    /// nothing it owns, so a request from the owner the table names says
    /// the table is behind: it moved the partition here, and serving it
    /// before the move is installed (and the final state awaited) would
    /// serve it on the standby's copy, which that final state replaces.
    pub async fn caught_up_with(&self, slot: u32, partition: u16, from: &str) {
        let Ok(slot) = u8::try_from(slot) else { return };
        let names_from = || {
            self.table()
                .as_deref()
                .and_then(|t| t.route_of(slot, partition))
                .is_some_and(|r| r.owner == from)
        };
        if !names_from() {
            return;
        }
        let mut tables = self.installed.subscribe();
        let until = Instant::now() + HANDOVER_WAIT;
        while names_from() {
            match tokio::time::timeout_at(until, tables.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::warn!(
                        slot,
                        partition,
                        from,
                        "a request from the owner of a partition and no table moving it here within 1 s; serving it"
                    );
                    return;
                }
            }
        }
    }

    /// Notes what `next` moves away from this instance, and what it gives
    /// back.
    fn note_moved_away(&self, prev: Option<&RoutingTable>, next: &RoutingTable) {
        let mut moved = self.moved_away.lock().unwrap_or_else(|p| p.into_inner());
        for (part, route) in next.parts() {
            if route.owner == self.me() {
                moved.remove(&part);
            } else if prev
                .and_then(|p| p.route_of(part.0, part.1))
                .is_some_and(|r| r.owner == self.me())
            {
                moved.insert(part);
            }
        }
    }

    /// The table in force now and every one installed after it.
    pub fn watch_routing(&self) -> tokio::sync::watch::Receiver<Option<Arc<RoutingTable>>> {
        self.installed.subscribe()
    }

    /// Whether this instance executes `slot` (also before any table).
    pub fn owns(&self, slot: u8) -> bool {
        self.table()
            .as_deref()
            .and_then(|t| t.route(slot))
            .is_none_or(|r| r.owner == self.me())
    }

    /// Records that this instance, as standby, took the state of `slot`'s
    /// `partition` from its owner `from`, as of `from`'s `epoch`.
    pub fn note_held(&self, slot: u8, partition: u16, from: &str, epoch: u64) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((slot, partition), (from.to_string(), epoch));
    }

    /// Notes the slots and partitions `next` moves here from an owner that
    /// is alive: their requests wait for that owner's final state, unless
    /// it already came (pushed under `next`'s epoch or later).
    fn await_handovers(&self, prev: Option<&RoutingTable>, next: &RoutingTable) {
        let Some(prev) = prev else { return };
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mut awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + HANDOVER_WAIT;
        let mut unserved = self
            .moved_unserved
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (part, route) in next.parts() {
            if route.owner != self.me() {
                if awaiting.remove(&part).is_some() {
                    unserved.insert(part);
                }
                continue;
            }
            unserved.remove(&part);
            let Some(from) = prev
                .route_of(part.0, part.1)
                .map(|r| r.owner.as_str())
                .filter(|o| *o != self.me())
            else {
                continue;
            };
            let alive = self.peers.get(from).is_some_and(|p| p.healthy());
            let final_in = held
                .get(&part)
                .is_some_and(|(f, epoch)| f == from && *epoch >= next.epoch);
            if alive && !final_in {
                tracing::info!(
                    slot = part.0,
                    partition = part.1,
                    from,
                    epoch = next.epoch,
                    "awaiting the final state of a slot moved here"
                );
                awaiting.insert(
                    part,
                    Awaited {
                        from: from.to_string(),
                        until,
                        moved_at: next.epoch,
                    },
                );
            }
        }
        self.awaited.store(awaiting.len(), Ordering::Release);
    }

    /// Whether `part` moved away from here before its final state came:
    /// what this instance holds of it is not the state to hand over.
    pub fn moved_unserved(&self, part: (u8, u16)) -> bool {
        self.moved_unserved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&part)
    }

    /// Whether this instance waits for the final state of `slot`'s
    /// `partition` and a push under `epoch` is it: pushed by an owner that
    /// saw the table moving it here. An earlier push (the previous owner's
    /// replication, in flight at the move) lacks what that owner served
    /// after it; the pusher need not be the owner this instance's previous
    /// table named, as tables in between may have moved it, unseen here.
    pub fn awaits(&self, slot: u8, partition: u16, epoch: u64) -> bool {
        self.awaiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(slot, partition))
            .is_some_and(|a| epoch >= a.moved_at)
    }

    /// `from`'s final state of `slot`'s `partition` is in: its requests go
    /// ahead.
    pub fn handed_over(&self, slot: u8, partition: u16) {
        let mut awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
        if awaiting.remove(&(slot, partition)).is_some() {
            self.awaited.store(awaiting.len(), Ordering::Release);
            self.handed.notify_waiters();
        }
    }

    /// Waits until this instance may serve `slot`'s `partition`: at once,
    /// unless it took it over from a live owner whose final state is not in
    /// yet (then at most until [`HANDOVER_WAIT`] after the takeover).
    pub async fn ready_to_serve(&self, slot: u8, partition: u16) {
        if self.awaited.load(Ordering::Acquire) == 0 {
            return;
        }
        loop {
            let handed = self.handed.notified();
            let until = {
                let mut awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
                match awaiting.get(&(slot, partition)) {
                    None => return,
                    Some(a) if a.until <= Instant::now() => {
                        tracing::warn!(
                            slot,
                            partition,
                            from = %a.from,
                            "the previous owner did not hand over within 1 s; serving from the replicated state"
                        );
                        self.metrics.cluster.handover_waits_expired.inc();
                        awaiting.remove(&(slot, partition));
                        self.awaited.store(awaiting.len(), Ordering::Release);
                        return;
                    }
                    Some(a) => a.until,
                }
            };
            let _ = tokio::time::timeout_at(until, handed).await;
        }
    }

    /// The slots and partitions whose state this instance holds from the
    /// owner its table names now.
    pub fn held_now(&self) -> Vec<(u8, u16)> {
        let Some(table) = self.table() else {
            return Vec::new();
        };
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((slot, partition), (from, _))| {
                table
                    .route_of(*slot, *partition)
                    .is_some_and(|r| r.owner == *from)
            })
            .map(|(part, _)| *part)
            .collect()
    }

    /// Whether instance `id` holds the state of `slot`'s `partition` (as
    /// its heartbeats report, or this instance's own record).
    pub fn holds(&self, id: &str, slot: u8, partition: u16) -> bool {
        if id == self.me() {
            return self.held_now().contains(&(slot, partition));
        }
        self.peers
            .get(id)
            .is_some_and(|p| p.health().held.contains(&(slot, partition)))
    }

    /// Marks this instance as stopping: the leader routes its slots away.
    pub fn leave(&self) {
        if !self.leaving.swap(true, Ordering::AcqRel) {
            tracing::info!("leaving the cluster: handing slots over");
        }
    }

    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Acquire)
    }

    /// Counts a request forwarded to `peer`.
    pub fn record_forward(&self, peer: &str) {
        self.metrics
            .cluster
            .forwarded
            .get_or_create(&PeerLabels {
                peer: peer.to_string(),
            })
            .inc();
    }
}
