//! Publishing on signal slots: the host side of broadcast, multicast and
//! random.
//!
//! The slot module decides who gets a message and keeps membership; this
//! module carries its decisions out: it resolves recipients, hands events
//! to the [`Hub`], waits for acknowledgements until the slot's timeout, and
//! reports every outcome back to the module, which may answer with more
//! deliveries (a random slot retrying on another member).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::sync::watch;
use tokio::time::Instant;
use vss_slot_host::{DeliveryReport, Effect, Publish, Recipients, Request};

use crate::core::calls::{Delivery, PublishOutcome, Targets};
use crate::core::cluster::state::Cluster;
use crate::core::error::RequestError;
use crate::core::hub::{EncodedEvent, Hub, check_client_id};
use crate::core::slot_table::{SlotTable, check_len};
use crate::ops::metrics::{Metrics, Verb};

/// Largest message, in bytes (a UUID in text fits).
pub const MAX_MESSAGE_BYTES: usize = 36;

/// How one set of deliveries is carried out.
struct Plan<'a> {
    slot: u8,
    deadline: Instant,
    /// Longest one delivery attempt waits for its ack.
    attempt: Duration,
    publisher: &'a str,
    /// One taker per message (random): remember who took it.
    single_taker: bool,
}

/// Client-chosen message ids remembered, so a retried publish is carried
/// out once.
const RECENT_PUBLISHES: usize = 10_000;

/// Publishes by client-chosen id: the outcome, once known.
#[derive(Debug, Default)]
struct Recent {
    order: VecDeque<(u32, u64)>,
    outcomes: HashMap<(u32, u64), watch::Receiver<Option<PublishOutcome>>>,
}

/// Whether this call carries a publish out or repeats one.
enum Claim {
    First(watch::Sender<Option<PublishOutcome>>),
    Repeat(watch::Receiver<Option<PublishOutcome>>),
}

/// Extra time a peer gets to answer a delivery request after its own
/// deadline, so its answer is not lost to the owner's timeout.
const PEER_ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// One delivery's outcome: message id, client, acknowledged in time.
type Outcome = (u64, String, bool);

#[derive(Debug, Default)]
struct Tally {
    delivered: u32,
    failed: u32,
    taken_by: Option<String>,
}

/// Publishes and manages membership on signal slots.
#[derive(Debug)]
pub struct Signals {
    slots: Arc<SlotTable>,
    hub: Arc<Hub>,
    cluster: Arc<Cluster>,
    next_message_id: AtomicU64,
    recent: std::sync::Mutex<Recent>,
    metrics: Metrics,
}

impl Signals {
    pub fn new(
        slots: Arc<SlotTable>,
        hub: Arc<Hub>,
        cluster: Arc<Cluster>,
        metrics: Metrics,
    ) -> Self {
        // Random start: ids of different instances and restarts rarely meet.
        let first = fastrand::u64(1..u64::MAX / 2);
        Self {
            slots,
            hub,
            cluster,
            next_message_id: AtomicU64::new(first),
            recent: std::sync::Mutex::new(Recent::default()),
            metrics,
        }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Publishes `message` on `slot`; returns when every delivery is
    /// acknowledged or has timed out. A non-zero `message_id` is the
    /// client's: a publish repeating a recent id is not carried out again
    /// and gets the first one's outcome.
    pub async fn publish(
        &self,
        slot: u32,
        message: Vec<u8>,
        publisher: &str,
        message_id: u64,
    ) -> Result<PublishOutcome, RequestError> {
        check_len("message", message.len(), MAX_MESSAGE_BYTES)?;
        if !publisher.is_empty() {
            check_client_id(publisher)?;
        }
        if message_id == 0 {
            let id = self.next_message_id.fetch_add(1, Ordering::Relaxed);
            return self.publish_once(slot, message, publisher, id).await;
        }
        match self.claim(slot, message_id) {
            Claim::Repeat(mut first) => {
                if let Ok(outcome) = first.wait_for(Option::is_some).await
                    && let Some(outcome) = outcome.clone()
                {
                    tracing::debug!(slot, message_id, "repeated publish answered from the first");
                    return Ok(outcome);
                }
                // The first attempt failed; this one carries it out.
                self.publish_once(slot, message, publisher, message_id)
                    .await
            }
            Claim::First(done) => {
                let outcome = self
                    .publish_once(slot, message, publisher, message_id)
                    .await;
                match &outcome {
                    Ok(o) => {
                        let _ = done.send(Some(o.clone()));
                    }
                    Err(_) => {
                        self.lock_recent().outcomes.remove(&(slot, message_id));
                    }
                }
                outcome
            }
        }
    }

    fn lock_recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claim(&self, slot: u32, message_id: u64) -> Claim {
        let mut recent = self.lock_recent();
        if let Some(first) = recent.outcomes.get(&(slot, message_id)) {
            return Claim::Repeat(first.clone());
        }
        let (tx, rx) = watch::channel(None);
        recent.outcomes.insert((slot, message_id), rx);
        recent.order.push_back((slot, message_id));
        while recent.order.len() > RECENT_PUBLISHES {
            if let Some(old) = recent.order.pop_front() {
                recent.outcomes.remove(&old);
            }
        }
        Claim::First(tx)
    }

    async fn publish_once(
        &self,
        slot: u32,
        message: Vec<u8>,
        publisher: &str,
        message_id: u64,
    ) -> Result<PublishOutcome, RequestError> {
        let (id, signal) = self.slots.signal(slot)?;
        let publish = Request::Publish(Publish {
            message_id,
            payload: message,
            publisher: (!publisher.is_empty()).then(|| publisher.to_string()),
        });
        let reply = self.slots.request(slot, Verb::Publish, publish).await?;
        let plan = Plan {
            slot: id,
            deadline: Instant::now() + signal.config.timeout,
            attempt: signal.attempt_timeout(),
            publisher,
            single_taker: signal.single_taker,
        };
        let tally = self.carry_out(&plan, reply.effects).await;
        Ok(PublishOutcome {
            message_id,
            delivered: tally.delivered,
            failed: tally.failed,
            taken_by: tally.taken_by,
        })
    }

    /// Carries out a slot's delivery effects: delivers, waits for the acks
    /// until the plan's deadline, reports every outcome back to the module
    /// and carries out what it answers (a random slot's next candidate).
    async fn carry_out(&self, plan: &Plan<'_>, effects: Vec<Effect>) -> Tally {
        let slot = u32::from(plan.slot);
        let mut tally = Tally::default();
        let mut inflight = FuturesUnordered::new();
        let start = |effects: Vec<Effect>, inflight: &mut FuturesUnordered<_>| {
            for Effect::Deliver(d) in effects {
                let attempt_deadline = plan.deadline.min(Instant::now() + plan.attempt);
                inflight.push(self.deliver_everywhere(
                    plan.slot,
                    d,
                    plan.publisher,
                    attempt_deadline,
                ));
            }
        };
        start(effects, &mut inflight);
        while let Some(first) = inflight.next().await {
            // Take every outcome that is already in and report them to the
            // module in one call: a broadcast to 1,000 clients would
            // otherwise cross into Wasm 1,000 times.
            let mut done = first;
            while let Some(Some(more)) = inflight.next().now_or_never() {
                done.extend(more);
            }
            let mut reports = Vec::with_capacity(done.len());
            for (message_id, client, delivered) in done {
                if delivered {
                    tally.delivered += 1;
                    if plan.single_taker {
                        tally.taken_by = Some(client.clone());
                    }
                } else {
                    tally.failed += 1;
                }
                reports.push(DeliveryReport {
                    message_id,
                    client,
                    delivered,
                });
            }
            match self.slots.report(plan.slot, reports).await {
                Ok(effects) if Instant::now() < plan.deadline => start(effects, &mut inflight),
                Ok(_) => {}
                Err(e) => tracing::warn!(slot, error = %e, "delivery report failed"),
            }
        }
        self.metrics
            .record_deliveries(slot, tally.delivered, tally.failed);
        tally
    }

    /// Calls every slot's `tick` and carries out the deliveries they ask
    /// for, each within its slot's timeout (1 s for non-signal slots).
    pub async fn tick(&self) {
        let ticked = self.slots.tick_all().await;
        // Copies held for standby duty must not act: only the owner's
        // module speaks for the slot.
        let owned = ticked
            .into_iter()
            .filter(|(slot, _)| self.cluster.owns(*slot));
        let rounds = owned.map(|(slot, effects)| async move {
            let timeout = self
                .slots
                .signal(u32::from(slot))
                .map(|(_, s)| s.config.timeout)
                .unwrap_or(vss_config::DEFAULT_SIGNAL_TIMEOUT);
            let plan = Plan {
                slot,
                deadline: Instant::now() + timeout,
                attempt: timeout,
                publisher: "",
                single_taker: false,
            };
            self.carry_out(&plan, effects).await
        });
        futures_util::future::join_all(rounds).await;
    }

    /// Delivers one message to its recipients on every instance: to the
    /// clients connected here, and through each healthy peer to the clients
    /// connected there. A client connected to several instances counts
    /// once, as delivered if any instance got its ack; a named recipient
    /// that no instance has is a failed delivery.
    async fn deliver_everywhere(
        &self,
        slot: u8,
        delivery: vss_slot_host::Delivery,
        publisher: &str,
        deadline: Instant,
    ) -> Vec<Outcome> {
        let vss_slot_host::Delivery {
            message_id,
            payload,
            recipients,
        } = delivery;
        let targets = match recipients {
            Recipients::AllExcept(except) => Targets::AllExcept(except),
            Recipients::Clients(clients) => Targets::Clients(clients),
        };
        let peers = self.cluster.healthy_peers();
        let remote = peers.into_iter().map(|peer| {
            let left = deadline.saturating_duration_since(Instant::now());
            let delivery = Delivery {
                slot: u32::from(slot),
                message_id,
                payload: payload.clone(),
                publisher: publisher.to_string(),
                targets: targets.clone(),
                timeout: left,
            };
            async move {
                match tokio::time::timeout(left + PEER_ANSWER_MARGIN, peer.link().deliver(delivery))
                    .await
                {
                    Ok(Ok(outcomes)) => outcomes,
                    Ok(Err(e)) => {
                        tracing::warn!(peer = peer.id(), slot, error = %e, "peer delivery failed");
                        Vec::new()
                    }
                    Err(_) => {
                        tracing::warn!(peer = peer.id(), slot, "peer delivery timed out");
                        Vec::new()
                    }
                }
            }
        });
        let local = self.deliver_here(
            u32::from(slot),
            message_id,
            payload.clone(),
            publisher,
            &targets,
            deadline,
        );
        let (local, remote) =
            futures_util::future::join(local, futures_util::future::join_all(remote)).await;
        let mut merged: BTreeMap<String, bool> = BTreeMap::new();
        for (client, delivered) in local.into_iter().chain(remote.into_iter().flatten()) {
            *merged.entry(client).or_default() |= delivered;
        }
        if let Targets::Clients(named) = &targets {
            for client in named {
                merged.entry(client.clone()).or_insert(false);
            }
        }
        merged
            .into_iter()
            .map(|(client, delivered)| (message_id, client, delivered))
            .collect()
    }

    /// Delivers a message to the recipients connected to this instance and
    /// waits for their acks until `deadline`. Recipients connected
    /// elsewhere are left out of the answer.
    pub async fn deliver_here(
        &self,
        slot: u32,
        message_id: u64,
        payload: Vec<u8>,
        publisher: &str,
        targets: &Targets,
        deadline: Instant,
    ) -> Vec<(String, bool)> {
        let clients = match targets {
            Targets::AllExcept(except) => self.hub.broadcast_recipients(slot, except),
            Targets::Clients(named) => named
                .iter()
                .filter(|c| self.hub.is_connected(c))
                .cloned()
                .collect(),
        };
        // One encoding and one deadline for the whole fan-out rather than
        // an encoding and a timer per delivery.
        let event = EncodedEvent::new(slot, message_id, payload, publisher);
        self.hub.send(clients, &event).wait(deadline).await
    }

    pub async fn register(&self, slot: u32, client: &str) -> Result<(), RequestError> {
        check_client_id(client)?;
        self.slots.signal(slot)?;
        self.slots
            .request(slot, Verb::Register, Request::Register(client.to_string()))
            .await
            .map(drop)
    }

    pub async fn deregister(&self, slot: u32, client: &str) -> Result<(), RequestError> {
        check_client_id(client)?;
        self.slots.signal(slot)?;
        self.slots
            .request(
                slot,
                Verb::Deregister,
                Request::Deregister(client.to_string()),
            )
            .await
            .map(drop)
    }
}
