//! Typed operations of the data slot types: `counter`, `register` and
//! `registry`, kept on every instance, and `tick`, which every instance
//! derives from its clock.
//!
//! Each is a Wasm module spoken to through custom requests whose payloads
//! the slot crate defines (`vss_slot_counter::wire` and so on); this module
//! encodes them, checks that the slot has the right type, refuses service
//! until a starting instance has its peers' state, and pushes every write
//! to the peers before answering ([`Everywhere::spread`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vss_slot_counter::wire as counter;
use vss_slot_register::wire as register;
use vss_slot_registry::wire as registry;
use vss_slot_sdk::codec::Wire;
use vss_slot_tick::wire as tick;

use crate::core::cluster::{Cluster, Everywhere};
use crate::core::error::RequestError;
use crate::core::slot_table::SlotTable;
use crate::ops::metrics::Verb;

/// How often a registry watch looks for changes (and expiries).
pub const WATCH_POLL: Duration = Duration::from_millis(100);
/// Ticks a late tick stream catches up at once; beyond, it says it skipped.
const MAX_CATCH_UP: u64 = 1_000;
/// Messages buffered per watch stream; a reader that falls this far behind
/// is dropped (it reconnects and starts from the current entries).
const STREAM_BUFFER: usize = 256;

/// What changed in a registry slot, as a watch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added = 1,
    Renewed = 2,
    /// Expired or withdrawn.
    Expired = 3,
}

/// One change of a registry slot's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChange {
    pub kind: ChangeKind,
    pub service: registry::Service,
}

/// One tick of a tick slot, as this instance sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    pub slot: u32,
    pub number: u64,
    /// When the tick was due (ms since the Unix epoch).
    pub due_ms: u64,
    /// When this instance sent it, by its own clock.
    pub sent_ms: u64,
    pub instance: String,
}

/// The data slot types' operations on this instance.
#[derive(Debug, Clone)]
pub struct DataSlots {
    slots: Arc<SlotTable>,
    cluster: Arc<Cluster>,
    everywhere: Arc<Everywhere>,
}

impl DataSlots {
    pub fn new(slots: Arc<SlotTable>, cluster: Arc<Cluster>, everywhere: Arc<Everywhere>) -> Self {
        Self {
            slots,
            cluster,
            everywhere,
        }
    }

    fn ready(&self) -> Result<(), RequestError> {
        if self.everywhere.ready() {
            return Ok(());
        }
        Err(RequestError::Syncing {
            instance: self.cluster.me().to_string(),
        })
    }

    async fn run<R: Wire>(
        &self,
        slot: u32,
        verb: Verb,
        type_name: &'static str,
        op: &'static str,
        payload: Vec<u8>,
    ) -> Result<(u8, R), RequestError> {
        let bytes = self.slots.op(slot, verb, type_name, op, payload).await?;
        let id = u8::try_from(slot).unwrap_or(u8::MAX);
        R::from_bytes(&bytes)
            .map(|r| (id, r))
            .map_err(|e| RequestError::BadReply {
                slot: id,
                reason: e.to_string(),
            })
    }

    async fn read<R: Wire>(
        &self,
        slot: u32,
        verb: Verb,
        type_name: &'static str,
        op: &'static str,
        payload: Vec<u8>,
    ) -> Result<R, RequestError> {
        self.ready()?;
        Ok(self.run(slot, verb, type_name, op, payload).await?.1)
    }

    /// A write: applied here, then pushed to the peers; returns the reply
    /// and how many peers took it.
    async fn write<R: Wire>(
        &self,
        slot: u32,
        verb: Verb,
        type_name: &'static str,
        op: &'static str,
        payload: Vec<u8>,
    ) -> Result<(R, u32), RequestError> {
        self.ready()?;
        let (id, reply) = self.run(slot, verb, type_name, op, payload).await?;
        Ok((reply, self.everywhere.spread(id).await))
    }

    /// A custom call (`Call`) on a slot served where it arrives: refused
    /// while syncing like the typed calls, and pushed to the peers after,
    /// since the verb may have written.
    pub async fn call(
        &self,
        slot: u32,
        op: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, RequestError> {
        if self.slots.is_everywhere(slot) {
            self.ready()?;
        }
        let reply = self.slots.call(slot, op, payload).await?;
        if let (true, Ok(id)) = (self.slots.is_everywhere(slot), u8::try_from(slot)) {
            self.everywhere.spread(id).await;
        }
        Ok(reply)
    }

    pub async fn change(
        &self,
        slot: u32,
        up: bool,
        amount: Option<u64>,
        request_id: u64,
    ) -> Result<(counter::Value, u32), RequestError> {
        let (verb, op) = if up {
            (Verb::Increment, counter::OP_INCREMENT)
        } else {
            (Verb::Decrement, counter::OP_DECREMENT)
        };
        let change = counter::Change {
            amount: amount.unwrap_or(1),
            request_id,
        };
        self.write(slot, verb, "counter", op, change.to_bytes())
            .await
    }

    pub async fn read_counter(&self, slot: u32) -> Result<counter::Value, RequestError> {
        self.read(
            slot,
            Verb::ReadCounter,
            "counter",
            counter::OP_READ,
            Vec::new(),
        )
        .await
    }

    pub async fn set(
        &self,
        slot: u32,
        key: String,
        value: Vec<u8>,
    ) -> Result<(register::Written, u32), RequestError> {
        let set = register::Set { key, value };
        self.write(
            slot,
            Verb::Set,
            "register",
            register::OP_SET,
            set.to_bytes(),
        )
        .await
    }

    pub async fn delete(
        &self,
        slot: u32,
        key: String,
    ) -> Result<(register::Written, u32), RequestError> {
        let key = register::Key { key };
        self.write(
            slot,
            Verb::Delete,
            "register",
            register::OP_DELETE,
            key.to_bytes(),
        )
        .await
    }

    /// The key's value here; refused as [`RequestError::Behind`] when this
    /// instance has not yet seen `at_least` (the client reads its own
    /// write elsewhere).
    pub async fn get(
        &self,
        slot: u32,
        key: String,
        at_least: Option<register::Version>,
    ) -> Result<register::Found, RequestError> {
        let payload = register::Key { key: key.clone() }.to_bytes();
        let found: register::Found = self
            .read(slot, Verb::Get, "register", register::OP_GET, payload)
            .await?;
        if let Some(asked) = at_least {
            let held = match &found {
                register::Found::Live(e) => Some(&e.version),
                register::Found::Deleted(v) => Some(v),
                register::Found::Absent => None,
            };
            if held.is_none_or(|h| *h < asked) {
                return Err(RequestError::Behind {
                    instance: self.cluster.me().to_string(),
                    key,
                    held: held.map_or(0, |h| h.hlc),
                    asked: asked.hlc,
                });
            }
        }
        Ok(found)
    }

    pub async fn list_keys(
        &self,
        slot: u32,
        prefix: String,
        limit: u32,
    ) -> Result<register::Listed, RequestError> {
        let list = register::List {
            prefix,
            limit: u64::from(limit),
        };
        self.read(
            slot,
            Verb::ListKeys,
            "register",
            register::OP_LIST,
            list.to_bytes(),
        )
        .await
    }

    pub async fn announce(
        &self,
        slot: u32,
        app: String,
        address: String,
        ttl_ms: Option<u64>,
    ) -> Result<(registry::Announced, u32), RequestError> {
        let announce = registry::Announce {
            app,
            address,
            ttl_ms,
        };
        self.write(
            slot,
            Verb::Announce,
            "registry",
            registry::OP_ANNOUNCE,
            announce.to_bytes(),
        )
        .await
    }

    pub async fn withdraw(
        &self,
        slot: u32,
        app: String,
        address: String,
    ) -> Result<(registry::Withdrawn, u32), RequestError> {
        let withdraw = registry::Withdraw { app, address };
        self.write(
            slot,
            Verb::Withdraw,
            "registry",
            registry::OP_WITHDRAW,
            withdraw.to_bytes(),
        )
        .await
    }

    pub async fn services(
        &self,
        slot: u32,
        app: String,
        verb: Verb,
    ) -> Result<Vec<registry::Service>, RequestError> {
        let list = registry::ListApp { app };
        let services: registry::Services = self
            .read(slot, verb, "registry", registry::OP_LIST, list.to_bytes())
            .await?;
        Ok(services.services)
    }

    /// The live entries as ADDED, then each change this instance sees, until
    /// the client goes away or `stop`. Fails at once if the slot is not a
    /// registry slot.
    pub async fn watch_services(
        &self,
        slot: u32,
        app: String,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<mpsc::Receiver<ServiceChange>, RequestError> {
        let mut known = self
            .services(slot, app.clone(), Verb::WatchServices)
            .await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let this = self.clone();
        tasks.spawn(async move {
            for s in &known {
                if tx.try_send(change(ChangeKind::Added, s)).is_err() {
                    return;
                }
            }
            let mut every = tokio::time::interval(WATCH_POLL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tx.closed() => return,
                    _ = every.tick() => {}
                }
                let now = match this.services(slot, app.clone(), Verb::WatchServices).await {
                    Ok(now) => now,
                    // Syncing after a restart of this instance cannot
                    // happen mid-stream; anything else ends the stream.
                    Err(e) => {
                        tracing::debug!(slot, error = %e, "registry watch ended");
                        return;
                    }
                };
                for c in diff(&known, &now) {
                    // A reader this far behind is dropped rather than
                    // buffered without bound.
                    if tx.try_send(c).is_err() {
                        return;
                    }
                }
                known = now;
            }
        });
        Ok(rx)
    }

    /// Every tick of a tick slot from now on, sent when this instance's
    /// clock reaches its due time. A stream that falls behind (the
    /// instance stalled) sends the ticks it missed, up to
    /// [`MAX_CATCH_UP`], so a reader sees every number.
    pub async fn watch_ticks(
        &self,
        slot: u32,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<mpsc::Receiver<Tick>, RequestError> {
        let first: tick::Next = self
            .run(slot, Verb::WatchTicks, "tick", tick::OP_NEXT, Vec::new())
            .await?
            .1;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let this = self.clone();
        tasks.spawn(async move {
            let mut next = first;
            let mut sent: Option<u64> = None;
            loop {
                let wait = Duration::from_millis(next.due_ms.saturating_sub(now_ms()));
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tx.closed() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                // Timers may fire a little before the wall clock agrees.
                if now_ms() < next.due_ms {
                    continue;
                }
                let from = match sent {
                    Some(last) if next.number > last + 1 => {
                        (last + 1).max(next.number.saturating_sub(MAX_CATCH_UP))
                    }
                    _ => next.number,
                };
                for number in from..=next.number {
                    let due_ms = number.saturating_mul(next.interval_ms);
                    let sent_ms = now_ms();
                    this.cluster
                        .metrics()
                        .cluster
                        .tick_lateness_seconds
                        .observe(sent_ms.saturating_sub(due_ms) as f64 / 1_000.0);
                    let t = Tick {
                        slot,
                        number,
                        due_ms,
                        sent_ms,
                        instance: this.cluster.me().to_string(),
                    };
                    if tx.try_send(t).is_err() {
                        return;
                    }
                }
                sent = Some(next.number);
                match this
                    .run::<tick::Next>(slot, Verb::WatchTicks, "tick", tick::OP_NEXT, Vec::new())
                    .await
                {
                    Ok((_, n)) => next = n,
                    Err(e) => {
                        tracing::debug!(slot, error = %e, "tick stream ended");
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn change(kind: ChangeKind, s: &registry::Service) -> ServiceChange {
    ServiceChange {
        kind,
        service: s.clone(),
    }
}

/// What changed between two listings, both ordered by (app, address).
fn diff(before: &[registry::Service], after: &[registry::Service]) -> Vec<ServiceChange> {
    let key = |s: &registry::Service| (s.app.clone(), s.address.clone());
    let old: std::collections::BTreeMap<_, _> = before.iter().map(|s| (key(s), s)).collect();
    let new: std::collections::BTreeMap<_, _> = after.iter().map(|s| (key(s), s)).collect();
    let mut out = Vec::new();
    for (k, s) in &new {
        match old.get(k) {
            None => out.push(change(ChangeKind::Added, s)),
            Some(o) if o.updated_ms != s.updated_ms || o.expires_ms != s.expires_ms => {
                out.push(change(ChangeKind::Renewed, s));
            }
            Some(_) => {}
        }
    }
    for (k, s) in &old {
        if !new.contains_key(k) {
            out.push(change(ChangeKind::Expired, s));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(app: &str, address: &str, updated_ms: u64) -> registry::Service {
        registry::Service {
            app: app.into(),
            address: address.into(),
            updated_ms,
            expires_ms: updated_ms + 1_000,
        }
    }

    #[test]
    fn diff_reports_added_renewed_and_expired() {
        let before = [svc("api", "a:1", 10), svc("api", "b:1", 10)];
        let after = [svc("api", "a:1", 20), svc("web", "c:1", 20)];
        let kinds: Vec<_> = diff(&before, &after)
            .into_iter()
            .map(|c| (c.kind as i32, c.service.address))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (ChangeKind::Renewed as i32, "a:1".to_string()),
                (ChangeKind::Added as i32, "c:1".to_string()),
                (ChangeKind::Expired as i32, "b:1".to_string()),
            ]
        );
        assert!(diff(&after, &after).is_empty());
    }
}
