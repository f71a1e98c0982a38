//! The cluster: the mesh of instances, the election, routing, forwarding
//! targets and state replication.
//!
//! Every instance runs the same loops ([`Cluster::run`]):
//! - a heartbeat per peer every 200 ms, which measures the round trip and
//!   learns the peer's routing epoch; a peer silent for 800 ms is down;
//! - a decision round every 100 ms: if the [`Election`] says this instance
//!   leads, it recomputes the routing table from the instances it is in
//!   contact with and publishes it under its next epoch when anything
//!   changed ([`Cluster::next_epoch`]); every instance
//!   pushes its table to peers that hold an older one, so a restarted
//!   instance catches up within a heartbeat;
//! - replication every 100 ms: for each slot it owns, the owner pushes the
//!   module's snapshot to the standby when the slot changed since the last
//!   push. A failover therefore loses at most the updates of the last
//!   interval plus one round trip.

pub mod election;
pub mod everywhere;
pub mod members;
pub mod peer;
pub mod routing;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vss_proto::v1::{HeartbeatRequest, ReplicateRequest, SlotState};

pub use election::{Election, MeshElection, WatchElection};
pub use members::{Members, MembersError};
pub use peer::Peer;
pub use routing::{RoutingError, RoutingTable};

use crate::core::slot_table::SlotTable;
use crate::edge::tls::MeshConnector;
use crate::ops::metrics::{Metrics, PeerLabels};

/// Time between two decision rounds.
pub const DECIDE_EVERY: Duration = Duration::from_millis(100);
/// Time between two replication rounds; the most updates a failover loses.
pub const REPLICATE_EVERY: Duration = Duration::from_millis(100);
/// Least time between two pushes of the routing table to one peer.
const PUSH_BACKOFF: Duration = Duration::from_millis(300);
/// Longest wait for a mesh call other than heartbeats.
pub const MESH_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// A slot's snapshot and the slot version it was taken at.
type SnapshotAt = (u8, u64, Vec<u8>);

/// Where a request for a slot is served.
#[derive(Debug, Clone)]
pub enum Placement {
    Local,
    Remote(Arc<Peer>),
}

/// Why the cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("peer {id} at {addr}: {source}")]
    PeerAddress {
        id: String,
        addr: String,
        source: tonic::transport::Error,
    },
}

/// This instance's part of the cluster.
#[derive(Debug)]
pub struct Cluster {
    members: Members,
    known: HashSet<String>,
    peers: BTreeMap<String, Arc<Peer>>,
    table: RwLock<Option<Arc<RoutingTable>>>,
    election: Box<dyn Election>,
    leading: AtomicBool,
    started: Instant,
    slots: Arc<SlotTable>,
    metrics: Metrics,
    /// Owns routing pushes started by the decision loop.
    pushes: TaskTracker,
    /// (slot, standby) → slot version last replicated there.
    replicated: std::sync::Mutex<HashMap<(u8, String), u64>>,
    /// Every installed table, for clients watching the routing.
    installed: tokio::sync::watch::Sender<Option<Arc<RoutingTable>>>,
    /// The slots kept on every instance.
    everywhere: everywhere::Everywhere,
}

impl Cluster {
    pub fn new(
        members: Members,
        election: Box<dyn Election>,
        slots: Arc<SlotTable>,
        metrics: Metrics,
        mesh_tls: Option<MeshConnector>,
    ) -> Result<Self, ClusterError> {
        let mut peers = BTreeMap::new();
        for (id, addr) in members.peers() {
            // A pod dialed at an address its certificate cannot name (a
            // `--peers` IP) is checked for its pod DNS name instead.
            let tls = mesh_tls.as_ref().map(|c| {
                match members
                    .tls_name(id)
                    .and_then(|n| rustls::pki_types::ServerName::try_from(n).ok())
                {
                    Some(name) => c.clone().verifying_as(name),
                    None => c.clone(),
                }
            });
            let peer =
                Peer::new(id, addr, tls.as_ref()).map_err(|source| ClusterError::PeerAddress {
                    id: id.to_string(),
                    addr: addr.to_string(),
                    source,
                })?;
            peers.insert(id.to_string(), Arc::new(peer));
        }
        Ok(Self {
            known: members.ids().map(str::to_string).collect(),
            members,
            peers,
            table: RwLock::new(None),
            election,
            leading: AtomicBool::new(false),
            started: Instant::now(),
            slots,
            metrics,
            pushes: TaskTracker::new(),
            replicated: std::sync::Mutex::new(HashMap::new()),
            installed: tokio::sync::watch::Sender::new(None),
            everywhere: everywhere::Everywhere::default(),
        })
    }

    pub fn me(&self) -> &str {
        self.members.me()
    }

    pub fn peers(&self) -> &BTreeMap<String, Arc<Peer>> {
        &self.peers
    }

    pub fn peer(&self, id: &str) -> Option<&Arc<Peer>> {
        self.peers.get(id)
    }

    pub fn is_member(&self, id: &str) -> bool {
        self.known.contains(id)
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
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
    pub fn healthy_ids(&self) -> BTreeSet<String> {
        let mut ids: BTreeSet<String> = self
            .peers
            .values()
            .filter(|p| p.in_contact())
            .map(|p| p.id().to_string())
            .collect();
        ids.insert(self.me().to_string());
        ids
    }

    /// Instances in the cluster, this one included.
    pub fn size(&self) -> usize {
        self.peers.len() + 1
    }

    /// Whether this instance is in contact with more than half of the
    /// cluster, itself included.
    pub fn sees_majority(&self) -> bool {
        self.healthy_ids().len() * 2 > self.size()
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
    pub fn placement(&self, slot: u32) -> Option<Vec<Placement>> {
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
            .and_then(|s| table.as_deref()?.route(s).cloned());
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

    /// Runs the mesh until `stop` is cancelled.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut tasks = JoinSet::new();
        for peer in self.peers.values() {
            tasks.spawn(self.clone().heartbeats(peer.clone(), stop.clone()));
        }
        tasks.spawn(self.clone().decide_loop(stop.clone()));
        tasks.spawn(self.clone().replicate_loop(stop.clone()));
        tasks.spawn(self.clone().sync_loop(stop.clone()));
        while tasks.join_next().await.is_some() {}
        self.pushes.close();
        self.pushes.wait().await;
    }

    async fn heartbeats(self: Arc<Self>, peer: Arc<Peer>, stop: CancellationToken) {
        let labels = PeerLabels {
            peer: peer.id().to_string(),
        };
        let up = self.metrics.cluster.peer_up.get_or_create(&labels).clone();
        let rtt_gauge = self
            .metrics
            .cluster
            .peer_rtt_seconds
            .get_or_create(&labels)
            .clone();
        let mut every = tokio::time::interval(peer::HEARTBEAT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_healthy = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let request = HeartbeatRequest {
                from: self.me().to_string(),
                epoch: self.epoch(),
            };
            let sent = Instant::now();
            let mut client = peer.mesh();
            let answer =
                tokio::time::timeout(peer::HEARTBEAT_TIMEOUT, client.heartbeat(request)).await;
            match answer {
                Ok(Ok(reply)) if reply.get_ref().from == peer.id() => {
                    let reply = reply.into_inner();
                    let rtt = sent.elapsed();
                    rtt_gauge.set(rtt.as_secs_f64());
                    peer.update(|h| {
                        h.last_ok = Some(Instant::now());
                        h.rtt = Some(rtt);
                        h.epoch = reply.epoch;
                        h.leader = reply.leader;
                        h.config_generation = reply.config_generation;
                        h.hears_me = reply.hears.iter().any(|id| id == self.me());
                    });
                }
                Ok(Ok(reply)) => {
                    tracing::warn!(
                        peer = peer.id(),
                        addr = peer.addr(),
                        answered_as = %reply.get_ref().from,
                        "peer address answers with another instance id; check --peers"
                    );
                }
                Ok(Err(status)) => {
                    tracing::debug!(peer = peer.id(), error = %status.message(), "heartbeat failed");
                }
                Err(_) => tracing::debug!(peer = peer.id(), "heartbeat timed out"),
            }
            let healthy = peer.healthy();
            if healthy != was_healthy {
                if healthy {
                    tracing::info!(peer = peer.id(), addr = peer.addr(), "peer up");
                } else {
                    tracing::warn!(peer = peer.id(), addr = peer.addr(), "peer down");
                }
                up.set(i64::from(healthy));
                was_healthy = healthy;
            }
        }
    }

    async fn decide_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(DECIDE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            self.decide();
            self.spread_table();
        }
    }

    /// One decision round: lead if elected, and publish a new table when
    /// the healthy set or the configured slots changed.
    fn decide(&self) {
        let leading = self.election.is_leader(self);
        if leading != self.leading.swap(leading, Ordering::Relaxed) {
            tracing::info!(
                instance = self.me(),
                election = self.election.kind(),
                leading,
                "leadership changed"
            );
            self.metrics.cluster.leader.set(i64::from(leading));
        }
        if !leading {
            return;
        }
        let current = self.table();
        let healthy = self.healthy_ids();
        let mut next = RoutingTable::compute(
            current.as_deref(),
            self.me(),
            &healthy,
            self.slots.configured(),
            |slot, standby| self.synced(slot, standby),
            0,
        );
        if current.as_deref().is_some_and(|c| c.same_assignment(&next)) {
            return;
        }
        // Above every epoch in sight, so peers that heard of a newer table
        // than ours (from a leader we did not see) still take this one.
        let seen = self
            .peers
            .values()
            .map(|p| p.health().epoch)
            .chain(current.as_deref().map(|c| c.epoch))
            .max()
            .unwrap_or(0);
        next.epoch = self.next_epoch(seen);
        if let Err(e) = self.install(next) {
            tracing::warn!(error = %e, "could not install own routing table");
        }
        // Push now rather than waiting for the next heartbeat to show the
        // peers are behind.
        for peer in self.peers.values() {
            peer.update(|h| h.last_push = None);
        }
    }

    /// Pushes the held table to every healthy peer that holds an older one.
    fn spread_table(&self) {
        let Some(table) = self.table() else { return };
        for peer in self.peers.values() {
            if !peer.healthy() {
                continue;
            }
            let h = peer.health();
            let behind =
                h.epoch < table.epoch || (h.epoch == table.epoch && h.leader != table.leader);
            let recently = h.last_push.is_some_and(|t| t.elapsed() < PUSH_BACKOFF);
            if !behind || recently {
                continue;
            }
            peer.update(|h| h.last_push = Some(Instant::now()));
            let (peer, proto) = (peer.clone(), table.to_proto());
            self.pushes.spawn(async move {
                let mut client = peer.mesh();
                match tokio::time::timeout(MESH_CALL_TIMEOUT, client.install_routing(proto)).await {
                    Ok(Ok(reply)) => peer.update(|h| h.epoch = h.epoch.max(reply.get_ref().epoch)),
                    Ok(Err(status)) => tracing::debug!(peer = peer.id(), error = %status.message(), "routing push refused"),
                    Err(_) => tracing::debug!(peer = peer.id(), "routing push timed out"),
                }
            });
        }
    }

    /// Whether this instance has pushed `slot`'s state to `standby`. Under
    /// load the state changes all the time, so "pushed at least once" is
    /// the bar: what the standby misses is the replication window.
    fn synced(&self, slot: u8, standby: &str) -> bool {
        self.replicated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&(slot, standby.to_string()))
    }

    async fn replicate_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(REPLICATE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.replicate_once() => {}
            }
        }
    }

    /// Takes the peers' state of the slots kept on every instance after a
    /// start; then ends.
    async fn sync_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(DECIDE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.everywhere_ready() {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.sync_everywhere() => {}
            }
        }
    }

    async fn replicate_once(&self) {
        self.reconcile_everywhere().await;
        let sent = self
            .replicated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(table) = self.table() else { return };
        let mut batches: BTreeMap<&str, Vec<SnapshotAt>> = BTreeMap::new();
        // Standbys left without some slot's latest state by this round.
        let mut behind = BTreeSet::new();
        for (slot, route) in &table.routes {
            let (true, Some(standby)) = (route.owner == self.me(), route.standby.as_deref()) else {
                continue;
            };
            if self.slots.is_everywhere(u32::from(*slot)) {
                continue;
            }
            let Some(version) = self.slots.version(*slot) else {
                continue;
            };
            if sent.get(&(*slot, standby.to_string())) == Some(&version) {
                continue;
            }
            match self.slots.snapshot(*slot).await {
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
            let peer = self.peers.get(standby)?.clone();
            let request = ReplicateRequest {
                from: self.me().to_string(),
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
                let mut client = peer.mesh();
                let outcome =
                    tokio::time::timeout(MESH_CALL_TIMEOUT, client.replicate(request)).await;
                (peer, states, outcome)
            })
        });
        for (peer, states, outcome) in futures_util::future::join_all(pushes).await {
            match outcome {
                Ok(Ok(_)) => {
                    self.metrics
                        .cluster
                        .replicated
                        .get_or_create(&PeerLabels {
                            peer: peer.id().to_string(),
                        })
                        .inc();
                    let mut sent = self.replicated.lock().unwrap_or_else(|p| p.into_inner());
                    for (slot, version, _) in states {
                        sent.insert((slot, peer.id().to_string()), version);
                    }
                }
                Ok(Err(status)) => {
                    behind.insert(peer.id().to_string());
                    tracing::debug!(peer = peer.id(), error = %status.message(), "replication refused")
                }
                Err(_) => {
                    behind.insert(peer.id().to_string());
                    tracing::debug!(peer = peer.id(), "replication timed out")
                }
            }
        }
        let now = std::time::Instant::now();
        for peer in self.peers.keys() {
            self.metrics
                .cluster
                .replication_lag
                .record(peer, !behind.contains(peer), now);
        }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn slots(&self) -> &Arc<SlotTable> {
        &self.slots
    }
}
