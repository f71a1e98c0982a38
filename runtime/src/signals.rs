//! Publishing on signal slots: the host side of broadcast, multicast and
//! random.
//!
//! The slot module decides who gets a message and keeps membership; this
//! module carries its decisions out: it resolves recipients, hands events
//! to the [`Hub`], waits for acknowledgements until the slot's timeout, and
//! reports every outcome back to the module, which may answer with more
//! deliveries (a random slot retrying on another member).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::time::Instant;
use vss_config::Signal;
use vss_proto::v1::Event;
use vss_slot_host::{Delivery, DeliveryReport, Effect, Publish, Recipients, Request};

use crate::error::RequestError;
use crate::hub::{Hub, check_client_id};
use crate::metrics::{Metrics, Verb};
use crate::slots::{SlotTable, check_len};

/// Largest message, in bytes (a UUID in text fits).
pub const MAX_MESSAGE_BYTES: usize = 36;

/// What a publish achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    pub message_id: u64,
    pub delivered: u32,
    pub failed: u32,
    /// Random slots: the client that took the message.
    pub taken_by: Option<String>,
}

/// Publishes and manages membership on signal slots.
#[derive(Debug)]
pub struct Signals {
    slots: Arc<SlotTable>,
    hub: Arc<Hub>,
    next_message_id: AtomicU64,
    metrics: Metrics,
}

impl Signals {
    pub fn new(slots: Arc<SlotTable>, hub: Arc<Hub>, metrics: Metrics) -> Self {
        // Random start: ids of different instances and restarts rarely meet.
        let first = fastrand::u64(1..u64::MAX / 2);
        Self {
            slots,
            hub,
            next_message_id: AtomicU64::new(first),
            metrics,
        }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Publishes `message` on `slot`; returns when every delivery is
    /// acknowledged or has timed out.
    pub async fn publish(
        &self,
        slot: u32,
        message: Vec<u8>,
        publisher: &str,
    ) -> Result<PublishOutcome, RequestError> {
        check_len("message", message.len(), MAX_MESSAGE_BYTES)?;
        if !publisher.is_empty() {
            check_client_id(publisher)?;
        }
        let (id, signal) = self.slots.signal(slot)?;
        let message_id = self.next_message_id.fetch_add(1, Ordering::Relaxed);
        let publish = Request::Publish(Publish {
            message_id,
            payload: message,
            publisher: (!publisher.is_empty()).then(|| publisher.to_string()),
        });
        let reply = self.slots.request(slot, Verb::Publish, publish)?;
        let deadline = Instant::now() + signal.timeout;
        let attempt = attempt_timeout(&self.slots, slot, &signal);
        let mut outcome = PublishOutcome {
            message_id,
            delivered: 0,
            failed: 0,
            taken_by: None,
        };
        let mut inflight = FuturesUnordered::new();
        let start = |effects: Vec<Effect>, inflight: &mut FuturesUnordered<_>| {
            for Effect::Deliver(d) in effects {
                let attempt_deadline = deadline.min(Instant::now() + attempt);
                for client in self.resolve(slot, &d) {
                    let event = Event {
                        slot,
                        message_id: d.message_id,
                        payload: d.payload.clone(),
                        publisher: publisher.to_string(),
                    };
                    let delivery = self.hub.deliver(&client, event, attempt_deadline);
                    inflight.push(async move { (client, delivery.await) });
                }
            }
        };
        start(reply.effects, &mut inflight);
        let single_taker = self.slots.is_random(slot);
        while let Some(first) = inflight.next().await {
            // Take every outcome that is already in and report them to the
            // module in one call: a broadcast to 1,000 clients would
            // otherwise cross into Wasm 1,000 times.
            let mut done = vec![first];
            while let Some(Some(more)) = inflight.next().now_or_never() {
                done.push(more);
            }
            let mut reports = Vec::with_capacity(done.len());
            for (client, delivered) in done {
                if delivered {
                    outcome.delivered += 1;
                    if single_taker {
                        outcome.taken_by = Some(client.clone());
                    }
                } else {
                    outcome.failed += 1;
                }
                reports.push(DeliveryReport {
                    message_id,
                    client,
                    delivered,
                });
            }
            match self.slots.report(id, reports) {
                Ok(effects) if Instant::now() < deadline => start(effects, &mut inflight),
                Ok(_) => {}
                Err(e) => tracing::warn!(slot = id, error = %e, "delivery report failed"),
            }
        }
        self.metrics
            .record_deliveries(slot, outcome.delivered, outcome.failed);
        Ok(outcome)
    }

    fn resolve(&self, slot: u32, delivery: &Delivery) -> Vec<String> {
        match &delivery.recipients {
            Recipients::AllExcept(except) => self.hub.broadcast_recipients(slot, except),
            Recipients::Clients(clients) => clients.clone(),
        }
    }

    pub fn register(&self, slot: u32, client: &str) -> Result<(), RequestError> {
        check_client_id(client)?;
        self.slots.signal(slot)?;
        self.slots
            .request(slot, Verb::Register, Request::Register(client.to_string()))
            .map(drop)
    }

    pub fn deregister(&self, slot: u32, client: &str) -> Result<(), RequestError> {
        check_client_id(client)?;
        self.slots.signal(slot)?;
        self.slots
            .request(
                slot,
                Verb::Deregister,
                Request::Deregister(client.to_string()),
            )
            .map(drop)
    }
}

/// How long one delivery attempt may wait for its ack. A random slot may
/// try up to three members within its timeout; the others give each
/// recipient the whole timeout.
fn attempt_timeout(slots: &SlotTable, slot: u32, signal: &Signal) -> Duration {
    if slots.is_random(slot) {
        signal.timeout / 3
    } else {
        signal.timeout
    }
}
