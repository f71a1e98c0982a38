//! The node: every operation a client, a peer or the operator asks of this
//! instance, in domain types, and the one place that decides where a
//! request is served.
//!
//! A request names where it came from ([`Origin`]). One a client made is
//! served here if this instance executes its slot, else forwarded over the
//! slot's [`PeerLink`](crate::core::cluster::PeerLink) to the owner, then to
//! the standby ([`Node::at_owner`]); one a peer forwarded is served where it
//! lands, so a request crosses the mesh at most once. The edge converts its
//! transport's messages to these calls and back, and nothing else.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vss_config::ValidConfig;
use vss_slot_counter::wire as counter;
use vss_slot_host::Acquired;
use vss_slot_register::wire as register;
use vss_slot_registry::wire as registry;
use vss_slot_sdk::codec::Wire as _;
use vss_slot_sdk::limiter::{OP_RELEASE, OP_TAKE_ALL, Take, Taken};

use crate::core::calls::{
    AcquireCall, CustomCall, Delivery, MembershipCall, PublishCall, PublishOutcome,
};
use crate::core::cluster::link::{
    FetchedState, Forwarded, Heartbeat, HeartbeatReply, PeerError, Replicate,
};
use crate::core::cluster::{
    self, Cluster, Election, Everywhere, Peer, Placement, Replication, RoutingError, RoutingTable,
};
use crate::core::data::{DataSlots, ServiceChange, Tick};
use crate::core::denials::Denials;
use crate::core::error::RequestError;
use crate::core::hub::Hub;
use crate::core::leases::{LEASE_FOR, Leases, Unused, Want};
use crate::core::signals::Signals;
use crate::core::slot_table::{ReloadError, SlotTable};
use crate::ops::metrics::{Metrics, SlotLabels, Verb};

/// Longest wait for the owner of a slot to answer a forwarded request
/// (publishes wait for their slot's timeout on top).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest a peer may ask this instance to wait for acknowledgements.
const MAX_DELIVER_TIMEOUT: Duration = Duration::from_secs(61);

/// How often every slot's `tick` export is called.
pub const TICK_PERIOD: Duration = Duration::from_secs(1);

/// Longest a lease is waited for, or a lease's tokens given back for.
const LEASE_CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// Leases asked for and not yet sent for.
const WANTED_LEASES: usize = 256;

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// A client: served at the slot's owner.
    Client,
    /// Forwarded by peer `id`: served here.
    Peer(&'a str),
}

/// Status of one slot, as the status call shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStatus {
    pub id: u8,
    pub type_name: String,
    pub calls: u64,
    pub errors: u64,
    pub restarts: u64,
    pub delivered: u64,
    pub failed_deliveries: u64,
}

/// What this instance knows of a peer, as the status call shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub id: String,
    pub address: String,
    pub healthy: bool,
    pub rtt: Option<Duration>,
    pub epoch: u64,
    pub config_generation: u64,
}

/// This instance at a glance.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub instance: String,
    pub config_generation: u64,
    pub slots: Vec<SlotStatus>,
    pub routing: Option<Arc<RoutingTable>>,
    pub peers: Vec<PeerStatus>,
}

/// One instance of the cluster, as its clients and peers see it.
#[derive(Debug)]
pub struct Node {
    slots: Arc<SlotTable>,
    cluster: Arc<Cluster>,
    everywhere: Arc<Everywhere>,
    replication: Arc<Replication>,
    signals: Arc<Signals>,
    data: DataSlots,
    metrics: Metrics,
    /// Buckets known empty until their refill ([`crate::core::denials`]).
    denials: Denials,
    /// Tokens leased from hot buckets' owners ([`crate::core::leases`]).
    leases: Leases,
    /// Leases to ask for, taken by [`Node::run`]'s lease loop.
    wants: mpsc::Sender<Want>,
    wanted: std::sync::Mutex<Option<mpsc::Receiver<Want>>>,
    /// Owns the tasks of long-lived streams (watches, event streams).
    streams: TaskTracker,
    /// Cancelled when the instance stops: ends every stream.
    stop: CancellationToken,
}

impl Node {
    pub fn new(
        slots: Arc<SlotTable>,
        cluster: Arc<Cluster>,
        hub: Arc<Hub>,
        metrics: Metrics,
        stop: CancellationToken,
    ) -> Self {
        let everywhere = Arc::new(Everywhere::new(cluster.clone()));
        let signals = Arc::new(Signals::new(
            slots.clone(),
            hub,
            cluster.clone(),
            metrics.clone(),
        ));
        let data = DataSlots::new(slots.clone(), cluster.clone(), everywhere.clone());
        let (wants, wanted) = mpsc::channel(WANTED_LEASES);
        Self {
            slots,
            cluster,
            everywhere,
            replication: Arc::default(),
            signals,
            data,
            metrics,
            denials: Denials::default(),
            leases: Leases::default(),
            wants,
            wanted: std::sync::Mutex::new(Some(wanted)),
            streams: TaskTracker::new(),
            stop,
        }
    }

    pub fn me(&self) -> &str {
        self.cluster.me()
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub fn slots(&self) -> &Arc<SlotTable> {
        &self.slots
    }

    pub fn hub(&self) -> &Arc<Hub> {
        self.signals.hub()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The tasks of long-lived streams, awaited when the instance drains.
    pub fn streams(&self) -> &TaskTracker {
        &self.streams
    }

    /// Cancelled when the instance stops.
    pub fn stopping(&self) -> &CancellationToken {
        &self.stop
    }

    /// Runs the cluster's loops, the slots' ticks and the leases until
    /// `stop`; then gives back the leases' unused tokens.
    pub async fn run(self: Arc<Self>, election: Box<dyn Election>, stop: CancellationToken) {
        let mut tasks = JoinSet::new();
        tasks.spawn(cluster::run(
            self.cluster.clone(),
            election,
            self.everywhere.clone(),
            self.replication.clone(),
            stop.clone(),
        ));
        tasks.spawn(self.clone().run_ticks(stop.clone()));
        let wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(wanted) = wanted {
            tasks.spawn(self.clone().run_leases(wanted, stop));
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Hands what this instance owns over before it stops: it tells its
    /// peers it is leaving, the leader routes its slots and partitions to
    /// their standbys, and each goes with its final state (the new owner
    /// serves it once that is in). Returns once the table in force names
    /// this instance for nothing and every final state is delivered, or
    /// after `within`.
    pub async fn hand_over(&self, within: Duration) {
        if self.cluster.peers().is_empty() {
            return;
        }
        self.cluster.leave();
        // Leased tokens go back first, so they are in the final states.
        self.give_back(self.leases.end_all()).await;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let table = self.cluster.table();
            let done = table.as_deref().is_some_and(|t| {
                t.leader != self.me()
                    && t.parts().all(|(_, r)| r.owner != self.me())
                    && self.replication.handed_over(t.epoch)
            });
            if done {
                tracing::info!("handed every slot over");
                return;
            }
            let staying = self
                .cluster
                .peers()
                .values()
                .any(|p| p.healthy() && !p.health().leaving);
            if !staying {
                // The whole cluster is stopping (or alone): nobody to take over.
                tracing::info!("no instance stays to take the slots over");
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    seconds = within.as_secs_f64(),
                    "hand-over not finished in time; stopping anyway"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asks owners for the leases hot buckets want, and gives back what
    /// expired leases did not spend; at the end, every lease's unused tokens.
    async fn run_leases(
        self: Arc<Self>,
        mut wanted: mpsc::Receiver<Want>,
        stop: CancellationToken,
    ) {
        let mut every = tokio::time::interval(LEASE_FOR / 5);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                want = wanted.recv() => match want {
                    Some(want) => self.fetch_lease(want).await,
                    None => break,
                },
                _ = every.tick() => self.give_back(self.leases.expire()).await,
            }
        }
        self.give_back(self.leases.end_all()).await;
    }

    /// Asks the bucket's owner for a lease; answers come back to the
    /// leases. Never from this instance's own copy: a lease must come out
    /// of the bucket its owner keeps.
    async fn fetch_lease(&self, want: Want) {
        let partition = self.slots.partition_for(want.slot, &want.key);
        let owner = match self.cluster.placement(want.slot, partition).as_deref() {
            Some([Placement::Remote(peer), ..]) => peer.clone(),
            _ => {
                self.leases.refused(want.slot, &want.key);
                return;
            }
        };
        let call = AcquireCall {
            slot: want.slot,
            key: want.key.clone(),
            tokens: Some(u32::try_from(want.tokens).unwrap_or(u32::MAX)),
        };
        let asked = owner.link().forward_acquire(call, LEASE_CALL_TIMEOUT);
        match tokio::time::timeout(LEASE_CALL_TIMEOUT, asked).await {
            Ok(Ok(granted)) => {
                let labels = SlotLabels { slot: want.slot };
                self.metrics.cluster.leases.get_or_create(&labels).inc();
                self.metrics
                    .cluster
                    .leased_tokens
                    .get_or_create(&labels)
                    .inc_by(u64::from(granted.granted));
                if let Some(unused) = self.leases.granted(want.slot, &want.key, &granted) {
                    self.give_back(vec![unused]).await;
                }
            }
            _ => self.leases.refused(want.slot, &want.key),
        }
    }

    /// Gives unused leased tokens back to their buckets (`release`), best
    /// effort: tokens that cannot be given back are under-admission.
    async fn give_back(&self, unused: Vec<Unused>) {
        for u in unused {
            let call = CustomCall {
                slot: u.slot,
                op: OP_RELEASE.to_string(),
                payload: Take {
                    key: u.key.clone(),
                    tokens: u.tokens,
                }
                .to_bytes(),
            };
            match tokio::time::timeout(LEASE_CALL_TIMEOUT, self.call(Origin::Client, call)).await {
                Ok(Ok(_)) => {
                    self.metrics
                        .cluster
                        .returned_tokens
                        .get_or_create(&SlotLabels { slot: u.slot })
                        .inc_by(u.tokens);
                }
                Ok(Err(e)) => {
                    tracing::debug!(slot = u.slot, error = %e, "unused leased tokens not given back")
                }
                Err(_) => tracing::debug!(slot = u.slot, "giving back leased tokens timed out"),
            }
        }
    }

    /// An acquire this instance answers without asking the slot: a lease
    /// covers it (a client's acquire; the leased tokens go first, they are
    /// the bucket's), or the bucket is known empty until its refill.
    fn answer_here(&self, origin: Origin<'_>, call: &AcquireCall) -> Option<Acquired> {
        if let Some(got) = self.answer_from_lease(origin, call) {
            return Some(got);
        }
        let labels = SlotLabels { slot: call.slot };
        let denied = self.denials.denied(call.slot, &call.key)?;
        self.metrics
            .cluster
            .local_denials
            .get_or_create(&labels)
            .inc();
        Some(denied)
    }

    /// A client's acquire answered from this instance's lease of the bucket.
    fn answer_from_lease(&self, origin: Origin<'_>, call: &AcquireCall) -> Option<Acquired> {
        if origin != Origin::Client {
            return None;
        }
        let per_req = self.slots.lease_tokens(call.slot)?;
        let asked = call.tokens.map_or(per_req, u64::from);
        let got = self.leases.take(call.slot, &call.key, asked)?;
        self.metrics
            .cluster
            .lease_decisions
            .get_or_create(&SlotLabels { slot: call.slot })
            .inc();
        Some(got)
    }

    /// The answer to a client's forwarded acquire. The owner refuses what
    /// it has leased out, and a lease granted here while the acquire was on
    /// its way holds those tokens: they answer it instead of a denial, or
    /// they would sit unused while this instance's clients are refused.
    async fn after_forward(
        &self,
        origin: Origin<'_>,
        call: &AcquireCall,
        answer: Acquired,
    ) -> Acquired {
        if origin != Origin::Client {
            // Relayed for a peer: its rate is the peer's to lease for.
            return answer;
        }
        self.learn_forwarded(call, &answer);
        if answer.granted > 0 {
            return answer;
        }
        self.leases
            .asked(call.slot, &call.key, LEASE_CALL_TIMEOUT)
            .await;
        self.answer_from_lease(origin, call).unwrap_or(answer)
    }

    /// What a forwarded acquire's answer teaches: an empty bucket, and a
    /// bucket hot enough here to lease.
    fn learn_forwarded(&self, call: &AcquireCall, answer: &Acquired) {
        if self.slots.lease_tokens(call.slot).is_none() || self.cluster.is_leaving() {
            return;
        }
        let instances = self.cluster.table().map_or(1, |t| t.members.len());
        if let Some(want) = self
            .leases
            .forwarded(call.slot, &call.key, answer, instances)
        {
            let (slot, key) = (want.slot, want.key.clone());
            if self.wants.try_send(want).is_err() {
                self.leases.refused(slot, &key);
            }
        }
    }

    /// Calls every slot's `tick` each [`TICK_PERIOD`], one round at a time:
    /// a round still delivering delays the next.
    async fn run_ticks(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(TICK_PERIOD);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.signals.tick() => {}
            }
        }
    }

    /// Waits, if `part` was just taken over from a live owner, for that
    /// owner's final state.
    async fn ready_to_serve(&self, (slot, partition): (u32, u16)) {
        if let Ok(slot) = u8::try_from(slot) {
            self.cluster.ready_to_serve(slot, partition).await;
        }
    }

    fn observe(&self, verb: Verb, started: Instant) {
        self.metrics
            .observe_request(verb, started.elapsed().as_secs_f64());
    }

    /// Serves a client's request at the slot's owner when that is another
    /// instance: tries the owner, then its standby, each within `timeout`,
    /// and answers None when this instance should serve it (it is next in
    /// line, or nobody else could be reached). Requests a peer forwarded
    /// are served where they land, but for those of a partition handed over
    /// from here: they go on to its owner.
    async fn at_owner<T, F, Fut>(
        &self,
        origin: Origin<'_>,
        (slot, partition): (u32, u16),
        timeout: Duration,
        forward: F,
    ) -> Option<Result<T, RequestError>>
    where
        F: Fn(Arc<Peer>) -> Fut,
        Fut: Future<Output = Forwarded<T>>,
    {
        if let Origin::Peer(from) = origin {
            // Relayed if it was handed over from here; else served here,
            // once this instance's table has caught up with the sender's.
            let Some(owner) = self.cluster.relay_to(slot, partition) else {
                self.cluster.caught_up_with(slot, partition, from).await;
                return None;
            };
            self.cluster.record_forward(owner.id());
            return match tokio::time::timeout(timeout, forward(owner.clone())).await {
                Ok(Ok(answer)) => Some(Ok(answer)),
                Ok(Err(PeerError::Unreachable(_))) | Err(_) => None,
                Ok(Err(refused)) => Some(Err(refused.into_request_error())),
            };
        }
        let Some(line) = self.cluster.placement(slot, partition) else {
            return Some(Err(RequestError::Joining));
        };
        for target in line {
            let Placement::Remote(peer) = target else {
                return None;
            };
            self.cluster.record_forward(peer.id());
            let answer = tokio::time::timeout(timeout, forward(peer.clone()))
                .await
                .unwrap_or_else(|_| {
                    Err(PeerError::Unreachable(format!(
                        "no answer within {} ms",
                        timeout.as_millis()
                    )))
                });
            match answer {
                Err(PeerError::Unreachable(why)) => {
                    tracing::warn!(peer = peer.id(), slot, error = %why, "slot owner unreachable; trying the next in line");
                }
                Err(refused) => return Some(Err(refused.into_request_error())),
                Ok(answer) => return Some(Ok(answer)),
            }
        }
        None
    }

    /// Takes tokens from a limiter slot's bucket.
    pub async fn acquire(
        &self,
        origin: Origin<'_>,
        call: AcquireCall,
    ) -> Result<Acquired, RequestError> {
        let started = Instant::now();
        if let Some(answer) = self.answer_here(origin, &call) {
            self.observe(Verb::Acquire, started);
            return Ok(answer);
        }
        let part = (call.slot, self.slots.partition_for(call.slot, &call.key));
        let forwarded = self
            .at_owner(origin, part, FORWARD_TIMEOUT, |peer| {
                let call = call.clone();
                async move { peer.link().forward_acquire(call, FORWARD_TIMEOUT).await }
            })
            .await;
        let answer = match forwarded {
            Some(Ok(answer)) => Ok(self.after_forward(origin, &call, answer).await),
            Some(Err(e)) => Err(e),
            None => {
                self.ready_to_serve(part).await;
                self.slots.acquire(call.slot, &call.key, call.tokens).await
            }
        };
        if let Ok(a) = &answer {
            self.denials.learn(call.slot, &call.key, a);
        }
        self.observe(Verb::Acquire, started);
        answer.inspect_err(|e| tracing::debug!(error = %e, "acquire refused"))
    }

    /// Many acquires at once, one answer each, in order. The acquires of
    /// each slot's partition keep their order and go to its owner together;
    /// partitions are served at once. `allow` refuses the slots the caller
    /// may not acquire on: that fails their acquires, not the batch.
    pub async fn acquire_batch(
        &self,
        origin: Origin<'_>,
        calls: Vec<AcquireCall>,
        allow: impl Fn(u32) -> Result<(), RequestError>,
    ) -> Vec<Result<Acquired, RequestError>> {
        let started = Instant::now();
        let count = calls.len();
        type Group = (Vec<usize>, Vec<AcquireCall>);
        let mut groups: std::collections::BTreeMap<(u32, u16), Group> = Default::default();
        let mut here: Vec<(usize, Result<Acquired, RequestError>)> = Vec::new();
        for (i, call) in calls.into_iter().enumerate() {
            let local = match allow(call.slot) {
                Err(e) => Some(Err(e)),
                Ok(()) => self.answer_here(origin, &call).map(Ok),
            };
            if let Some(answer) = local {
                here.push((i, answer));
                continue;
            }
            let partition = self.slots.partition_for(call.slot, &call.key);
            let group = groups.entry((call.slot, partition)).or_default();
            group.0.push(i);
            group.1.push(call);
        }
        let answered = futures_util::future::join_all(
            groups.into_iter().map(|(part, (at, calls))| async move {
                (at, self.acquire_group(origin, part, calls).await)
            }),
        )
        .await;
        let mut outcomes: Vec<Result<Acquired, RequestError>> =
            (0..count).map(|_| Err(RequestError::Joining)).collect();
        for (at, group) in answered {
            for (i, outcome) in at.into_iter().zip(group) {
                outcomes[i] = outcome;
            }
        }
        for (i, outcome) in here {
            outcomes[i] = outcome;
        }
        self.metrics
            .observe_acquire_batch(started.elapsed().as_secs_f64());
        outcomes
    }

    /// One partition's share of a batch, at its owner.
    async fn acquire_group(
        &self,
        origin: Origin<'_>,
        (slot, partition): (u32, u16),
        calls: Vec<AcquireCall>,
    ) -> Vec<Result<Acquired, RequestError>> {
        let count = calls.len();
        let forwarded = self
            .at_owner(origin, (slot, partition), FORWARD_TIMEOUT, |peer| {
                let calls = calls.clone();
                async move {
                    let answers = peer.link().forward_acquires(calls, FORWARD_TIMEOUT).await?;
                    if answers.len() == count {
                        return Ok(answers);
                    }
                    let wrong = RequestError::Remote {
                        code: crate::core::error::Code::Internal,
                        message: format!(
                            "instance {} answered {} of {count} acquires",
                            peer.id(),
                            answers.len()
                        ),
                    };
                    Ok((0..count).map(|_| Err(wrong.clone())).collect())
                }
            })
            .await;
        let answers = match forwarded {
            Some(Ok(answers)) => {
                let mut out = Vec::with_capacity(count);
                for (call, answer) in calls.iter().zip(answers) {
                    out.push(match answer {
                        Ok(a) => Ok(self.after_forward(origin, call, a).await),
                        Err(e) => Err(e),
                    });
                }
                out
            }
            Some(Err(e)) => return (0..count).map(|_| Err(e.clone())).collect(),
            None => {
                self.ready_to_serve((slot, partition)).await;
                let items: Vec<(String, Option<u32>)> =
                    calls.iter().map(|c| (c.key.clone(), c.tokens)).collect();
                self.slots.acquire_many(slot, &items).await
            }
        };
        for (call, answer) in calls.iter().zip(&answers) {
            if let Ok(a) = answer {
                self.denials.learn(slot, &call.key, a);
            }
        }
        answers
    }

    /// A custom operation, at the slot's owner (or here, for the slots
    /// served where they arrive).
    pub async fn call(
        &self,
        origin: Origin<'_>,
        call: CustomCall,
    ) -> Result<Vec<u8>, RequestError> {
        let started = Instant::now();
        let take = (call.op == OP_TAKE_ALL || call.op == OP_RELEASE)
            .then(|| Take::from_bytes(&call.payload).ok())
            .flatten();
        if let Some(take) = &take {
            if call.op == OP_RELEASE {
                // Tokens come back: the bucket is no longer empty here.
                self.denials.forget(call.slot, &take.key);
            } else if origin == Origin::Client
                && let Some(denied) = self.denials.denied(call.slot, &take.key)
            {
                self.metrics
                    .cluster
                    .local_denials
                    .get_or_create(&SlotLabels { slot: call.slot })
                    .inc();
                self.observe(Verb::Call, started);
                let taken = Taken {
                    granted: false,
                    remaining: 0,
                    reset_ms: denied.reset_ms,
                };
                return Ok(taken.to_bytes());
            }
        }
        let partition = self
            .slots
            .partition_for_call(call.slot, &call.op, &call.payload);
        let forwarded = self
            .at_owner(origin, (call.slot, partition), FORWARD_TIMEOUT, |peer| {
                let call = call.clone();
                async move { peer.link().forward_call(call, FORWARD_TIMEOUT).await }
            })
            .await;
        let answer = match forwarded {
            Some(answer) => answer,
            None => {
                self.ready_to_serve((call.slot, partition)).await;
                self.data.call(call.slot, &call.op, call.payload).await
            }
        };
        if let (Some(take), Ok(bytes)) = (&take, &answer)
            && call.op == OP_TAKE_ALL
            && let Ok(taken) = Taken::from_bytes(bytes)
        {
            let seen = Acquired {
                granted: u32::from(taken.granted),
                remaining: taken.remaining,
                reset_ms: taken.reset_ms,
            };
            self.denials.learn(call.slot, &take.key, &seen);
        }
        self.observe(Verb::Call, started);
        answer.inspect_err(|e| tracing::debug!(error = %e, "call refused"))
    }

    /// Publishes on a signal slot, at its owner; answers when every
    /// delivery is acknowledged or has timed out.
    pub async fn publish(
        &self,
        origin: Origin<'_>,
        call: PublishCall,
    ) -> Result<PublishOutcome, RequestError> {
        let started = Instant::now();
        // A publish waits for its deliveries: up to the slot's timeout.
        let wait = self
            .slots
            .signal(call.slot)
            .map(|(_, s)| s.config.timeout)
            .unwrap_or_default()
            + FORWARD_TIMEOUT;
        let forwarded = self
            .at_owner(origin, (call.slot, 0), wait, |peer| {
                let call = call.clone();
                async move { peer.link().forward_publish(call, wait).await }
            })
            .await;
        let answer = match forwarded {
            Some(answer) => answer,
            None => {
                self.ready_to_serve((call.slot, 0)).await;
                self.signals
                    .publish(call.slot, call.message, &call.publisher, call.message_id)
                    .await
            }
        };
        self.observe(Verb::Publish, started);
        answer
    }

    /// Registers or deregisters a client on a multicast or random slot, at
    /// its owner.
    pub async fn membership(
        &self,
        origin: Origin<'_>,
        call: MembershipCall,
    ) -> Result<(), RequestError> {
        let forwarded = self
            .at_owner(origin, (call.slot, 0), FORWARD_TIMEOUT, |peer| {
                let call = call.clone();
                async move { peer.link().forward_membership(call, FORWARD_TIMEOUT).await }
            })
            .await;
        if let Some(answer) = forwarded {
            return answer;
        }
        self.ready_to_serve((call.slot, 0)).await;
        let started = Instant::now();
        let (verb, answer) = if call.join {
            let answer = self.signals.register(call.slot, &call.client).await;
            (Verb::Register, answer)
        } else {
            let answer = self.signals.deregister(call.slot, &call.client).await;
            (Verb::Deregister, answer)
        };
        self.observe(verb, started);
        answer
    }

    async fn timed<T>(&self, verb: Verb, f: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = f.await;
        self.observe(verb, started);
        out
    }

    /// Increments (`up`) or decrements a counter slot; answers the value
    /// and how many peers took the write.
    pub async fn change_counter(
        &self,
        slot: u32,
        up: bool,
        amount: Option<u64>,
        request_id: u64,
    ) -> Result<(counter::Value, u32), RequestError> {
        let verb = if up { Verb::Increment } else { Verb::Decrement };
        self.timed(verb, self.data.change(slot, up, amount, request_id))
            .await
    }

    pub async fn read_counter(&self, slot: u32) -> Result<counter::Value, RequestError> {
        self.timed(Verb::ReadCounter, self.data.read_counter(slot))
            .await
    }

    pub async fn set(
        &self,
        slot: u32,
        key: String,
        value: Vec<u8>,
    ) -> Result<(register::Written, u32), RequestError> {
        self.timed(Verb::Set, self.data.set(slot, key, value)).await
    }

    pub async fn delete(
        &self,
        slot: u32,
        key: String,
    ) -> Result<(register::Written, u32), RequestError> {
        self.timed(Verb::Delete, self.data.delete(slot, key)).await
    }

    pub async fn get(
        &self,
        slot: u32,
        key: String,
        at_least: Option<register::Version>,
    ) -> Result<register::Found, RequestError> {
        self.timed(Verb::Get, self.data.get(slot, key, at_least))
            .await
    }

    pub async fn list_keys(
        &self,
        slot: u32,
        prefix: String,
        limit: u32,
    ) -> Result<register::Listed, RequestError> {
        self.timed(Verb::ListKeys, self.data.list_keys(slot, prefix, limit))
            .await
    }

    pub async fn announce(
        &self,
        slot: u32,
        app: String,
        address: String,
        ttl_ms: Option<u64>,
    ) -> Result<(registry::Announced, u32), RequestError> {
        self.timed(
            Verb::Announce,
            self.data.announce(slot, app, address, ttl_ms),
        )
        .await
    }

    pub async fn withdraw(
        &self,
        slot: u32,
        app: String,
        address: String,
    ) -> Result<(registry::Withdrawn, u32), RequestError> {
        self.timed(Verb::Withdraw, self.data.withdraw(slot, app, address))
            .await
    }

    pub async fn list_services(
        &self,
        slot: u32,
        app: String,
    ) -> Result<Vec<registry::Service>, RequestError> {
        self.timed(
            Verb::ListServices,
            self.data.services(slot, app, Verb::ListServices),
        )
        .await
    }

    /// A registry slot's live entries, then each change, until the reader
    /// goes away or the instance stops.
    pub async fn watch_services(
        &self,
        slot: u32,
        app: String,
    ) -> Result<mpsc::Receiver<ServiceChange>, RequestError> {
        self.data
            .watch_services(slot, app, &self.streams, self.stop.clone())
            .await
    }

    /// Every tick of a tick slot from now on.
    pub async fn watch_ticks(&self, slot: u32) -> Result<mpsc::Receiver<Tick>, RequestError> {
        self.data
            .watch_ticks(slot, &self.streams, self.stop.clone())
            .await
    }

    /// The routing table in force now and every one installed after it.
    pub fn watch_routing(&self) -> watch::Receiver<Option<Arc<RoutingTable>>> {
        self.cluster.watch_routing()
    }

    pub fn status(&self) -> NodeStatus {
        let slots = self
            .slots
            .summaries()
            .into_iter()
            .map(|s| {
                let (delivered, failed_deliveries) = self.metrics.deliveries_of(u32::from(s.id));
                SlotStatus {
                    id: s.id,
                    type_name: s.type_name,
                    calls: s.calls,
                    errors: s.errors,
                    restarts: s.restarts,
                    delivered,
                    failed_deliveries,
                }
            })
            .collect();
        let peers = self
            .cluster
            .peers()
            .values()
            .map(|p| {
                let h = p.health();
                PeerStatus {
                    id: p.id().to_string(),
                    address: p.addr().to_string(),
                    healthy: p.healthy(),
                    rtt: h.rtt,
                    epoch: h.epoch,
                    config_generation: h.config_generation,
                }
            })
            .collect();
        NodeStatus {
            instance: self.me().to_string(),
            config_generation: self.slots.generation(),
            slots,
            routing: self.cluster.table(),
            peers,
        }
    }

    /// Applies a new slot configuration as `generation`, keeping the slots
    /// whose type and fields did not change and the state of those whose
    /// change keeps its meaning ([`vss_config::SlotKind::keeps_state_of`]);
    /// answers the generation in force after.
    pub async fn apply_config(
        &self,
        config: ValidConfig,
        generation: u64,
    ) -> Result<u64, ReloadError> {
        let slots = self.slots.clone();
        // Compiling modules is CPU-bound work; keep it off the reactor.
        tokio::task::spawn_blocking(move || slots.reload(&config, generation))
            .await
            .map_err(|e| ReloadError::Interrupted(e.to_string()))??;
        // What was learned of the old buckets does not hold for new ones.
        self.denials.clear();
        drop(self.leases.end_all());
        Ok(self.slots.generation())
    }

    /// Counts and logs a peer's message refused as `what`.
    pub fn refused(&self, what: &str, why: &str) {
        self.metrics.cluster.refused_mesh_messages.inc();
        tracing::warn!(what, why, "refused a mesh message");
    }

    /// Refuses messages from instances outside the cluster (or claiming to
    /// be this one).
    pub fn check_sender(&self, from: &str, what: &str) -> Result<(), RequestError> {
        if !self.cluster.is_member(from) || from == self.me() {
            self.refused(
                what,
                &format!("sender {from:?} is not a peer of this cluster"),
            );
            return Err(RequestError::PermissionDenied(format!(
                "{what}: {from:?} is not a peer of this cluster"
            )));
        }
        Ok(())
    }

    /// A peer's heartbeat: answers what this instance holds and hears.
    pub fn heartbeat(&self, beat: &Heartbeat) -> Result<HeartbeatReply, RequestError> {
        self.check_sender(&beat.from, "heartbeat")?;
        let table = self.cluster.table();
        Ok(HeartbeatReply {
            from: self.me().to_string(),
            epoch: table.as_ref().map_or(0, |t| t.epoch),
            leader: table.map(|t| t.leader.clone()).unwrap_or_default(),
            config_generation: self.slots.generation(),
            hears: self
                .cluster
                .healthy_peers()
                .iter()
                .map(|p| p.id().to_string())
                .collect(),
            held: self.cluster.held_now(),
            leaving: self.cluster.is_leaving(),
        })
    }

    /// A routing table a peer offers; answers the epoch held after.
    pub fn install_routing(&self, table: RoutingTable) -> Result<u64, RoutingError> {
        match self.cluster.install(table) {
            Ok(_) => Ok(self.cluster.epoch()),
            Err(e) => {
                self.refused("routing table", &e.to_string());
                Err(e)
            }
        }
    }

    /// Slot states a peer pushes: a standby takes its owner's, and every
    /// member's state of the slots kept on every instance is merged.
    pub async fn replicate(&self, pushed: Replicate) -> Result<(), RequestError> {
        self.check_sender(&pushed.from, "replicate")?;
        let table = self.cluster.table();
        let mut refused = Vec::new();
        for state in pushed.slots {
            if self.slots.is_everywhere(state.slot) {
                let slot = u8::try_from(state.slot).unwrap_or(u8::MAX);
                if let Err(e) = self.everywhere.take(&pushed.from, slot, state.state).await {
                    refused.push(format!("slot {slot}: {e}"));
                }
                continue;
            }
            let partition = state.partition;
            let owner = u8::try_from(state.slot).ok().and_then(|s| {
                table
                    .as_ref()?
                    .route_of(s, partition)
                    .map(|route| (s, route.owner.clone()))
            });
            let what = |slot| match self.slots.partitions(slot) {
                Some(n) if n > 1 => format!("slot {slot} partition {partition}"),
                _ => format!("slot {slot}"),
            };
            match owner {
                Some((slot, owner)) if owner == pushed.from => {
                    match self.slots.replace(slot, partition, state.state).await {
                        Ok(()) => {
                            self.cluster
                                .note_held(slot, partition, &pushed.from, pushed.epoch)
                        }
                        Err(e) => refused.push(format!("{}: {e}", what(slot))),
                    }
                }
                // The previous owner's final state of what moved here.
                Some((slot, owner))
                    if owner == self.me() && self.cluster.awaits(slot, partition, pushed.epoch) =>
                {
                    match self.slots.replace(slot, partition, state.state).await {
                        Ok(()) => {
                            tracing::info!(slot, partition, from = %pushed.from, epoch = pushed.epoch, "took the final state of a slot moved here");
                            self.cluster.handed_over(slot, partition)
                        }
                        Err(e) => refused.push(format!("{}: {e}", what(slot))),
                    }
                }
                Some((slot, owner)) => refused.push(format!(
                    "{}: owned by {owner:?} in epoch {}, not by the sender",
                    what(slot),
                    table.as_ref().map_or(0, |t| t.epoch)
                )),
                None => refused.push(format!("slot {}: not routed here", state.slot)),
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        let why = refused.join("; ");
        self.refused("replicate", &why);
        Err(RequestError::Contradicts(why))
    }

    /// This instance's state of the slots kept on every instance, for a
    /// peer that is starting.
    pub async fn fetch_state(&self, from: &str) -> Result<FetchedState, RequestError> {
        self.check_sender(from, "state fetch")?;
        let (slots, synced) = self.everywhere.states().await;
        Ok(FetchedState { slots, synced })
    }

    /// A message a peer asks this instance to deliver to its clients.
    pub async fn deliver(&self, delivery: Delivery) -> Vec<(String, bool)> {
        let timeout = delivery.timeout.min(MAX_DELIVER_TIMEOUT);
        self.signals
            .deliver_here(
                delivery.slot,
                delivery.message_id,
                delivery.payload,
                &delivery.publisher,
                &delivery.targets,
                tokio::time::Instant::now() + timeout,
            )
            .await
    }
}
