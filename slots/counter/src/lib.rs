//! The built-in `counter` slot type: a PN-counter that every instance holds
//! and changes locally, converging by exchanging state (a state-based CRDT).
//!
//! Config: `instance` (added by the runtime: this instance's id; required,
//! non-empty), `growOnly` (`true` or `false`, default `false`).
//!
//! Ops, as `Request::Custom` (see [`wire`]): `increment` and `decrement` take
//! a [`Change`] and answer a [`Value`]; `read` takes an empty payload and
//! answers a [`Value`] with `applied: true`.
//!
//! State: per instance id, the total that instance added and the total it
//! took away. An instance raises only its own entry; a merge takes each
//! total's maximum. The value is the sum of all increments minus the sum of
//! all decrements, clamped to the i64 range (the reply's `increments` and
//! `decrements` are clamped to u64).
//!
//! Guarantees:
//! - Replicas that have merged the same states hold the same state, byte
//!   for byte, in whatever order and however often the merges happened
//!   (request ids an instance expired locally since are the only
//!   difference); a merge never loses a change or counts one twice. Once
//!   every instance has the others' latest state, every `read` answers the
//!   exact sum of the applied changes.
//! - `amount` must be at least 1. A change that would take this instance's
//!   own total past `u64::MAX` is refused, never wrapped.
//! - With `growOnly: true`, `decrement` is refused, so the value never goes
//!   down as long as every instance of the slot is grow-only (a merge takes
//!   whatever the peers hold).
//! - A change with a non-zero `request_id` is applied at most once by any
//!   state that has seen it: a repeat answers `applied: false` and the
//!   current value. So a client retry of the same request id on another
//!   instance is applied once provided the first instance's state reached
//!   it, which the runtime ensures by replicating a write before
//!   acknowledging it. A retry sent while the first attempt is still
//!   unacknowledged can race it and be applied on both instances.
//! - Request ids are remembered for 10 minutes after they were first seen,
//!   and at most the 65536 newest are kept; a retry later than that, or
//!   behind more newer ids, is applied again.
//!
//! The runtime must give an instance that lost its state a fresh id, or
//! merge its old state back before it takes writes: changes made under an
//! id whose older, larger entry is still held by peers are absorbed by that
//! entry when the states meet.
//!
//! Compiled to a Wasm component by `slots/builtin`; natively it is a plain
//! library, which the runtime links for [`wire`].
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

mod recent;
mod snapshot;
mod totals;
pub mod wire;

#[cfg(test)]
mod laws;
#[cfg(test)]
mod tests;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use recent::RecentIds;
use snapshot::Snapshot;
use totals::{Direction, Totals};
use vss_slot_sdk::codec::{Wire, op_payload};
use vss_slot_sdk::{Config, Context, Custom, Effect, Reply, Request, Response, Slot, SlotError};
use wire::{Change, OP_DECREMENT, OP_INCREMENT, OP_READ, Value};

/// Default of `growOnly`.
pub const DEFAULT_GROW_ONLY: bool = false;
/// Most request ids remembered for deduplication.
pub const MAX_REQUEST_IDS: usize = 65_536;
/// How long a request id is remembered after it was first seen, ms.
pub const REQUEST_ID_TTL_MS: u64 = 10 * 60 * 1_000;

/// A PN-counter replica: this instance's id, every instance's totals, and
/// the request ids applied recently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    instance: String,
    grow_only: bool,
    totals: Totals,
    recent: RecentIds,
}

impl Counter {
    /// An empty counter that writes as `instance`.
    pub fn new(instance: impl Into<String>, grow_only: bool) -> Self {
        Self::with_request_id_capacity(instance, grow_only, MAX_REQUEST_IDS)
    }

    /// Like [`Counter::new`] with a smaller request-id bound, so tests can
    /// reach it.
    fn with_request_id_capacity(
        instance: impl Into<String>,
        grow_only: bool,
        capacity: usize,
    ) -> Self {
        Self {
            instance: instance.into(),
            grow_only,
            totals: Totals::new(),
            recent: RecentIds::new(capacity),
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn grow_only(&self) -> bool {
        self.grow_only
    }

    /// The current value.
    pub fn read(&self) -> Value {
        self.value(true)
    }

    /// Adds `change.amount` to this instance's increments, unless its
    /// request id was applied before.
    pub fn increment(&mut self, change: Change, now_ms: u64) -> Result<Value, SlotError> {
        self.apply(Direction::Up, change, now_ms)
    }

    /// Adds `change.amount` to this instance's decrements, unless its
    /// request id was applied before. Refused on a grow-only counter.
    pub fn decrement(&mut self, change: Change, now_ms: u64) -> Result<Value, SlotError> {
        if self.grow_only {
            return Err(SlotError::Unsupported(
                "slot is grow-only (growOnly: true): `decrement` is not allowed".into(),
            ));
        }
        self.apply(Direction::Down, change, now_ms)
    }

    fn apply(
        &mut self,
        direction: Direction,
        change: Change,
        now_ms: u64,
    ) -> Result<Value, SlotError> {
        if change.amount == 0 {
            return Err(SlotError::InvalidArgument(
                "`amount` must be at least 1".into(),
            ));
        }
        self.recent.expire(now_ms, REQUEST_ID_TTL_MS);
        let dedup = change.request_id != 0;
        if dedup && self.recent.contains(change.request_id) {
            return Ok(self.value(false));
        }
        self.totals
            .add(&self.instance, direction, change.amount)
            .map_err(|total| {
                let which = match direction {
                    Direction::Up => "increments",
                    Direction::Down => "decrements",
                };
                SlotError::InvalidArgument(format!(
                    "`amount` {} would take this instance's {which} past {} (now {total})",
                    change.amount,
                    u64::MAX
                ))
            })?;
        if dedup {
            self.recent.insert(change.request_id, now_ms);
        }
        Ok(self.value(true))
    }

    fn value(&self, applied: bool) -> Value {
        let (increments, decrements) = self.totals.sums();
        Value {
            value: totals::clamped_difference(increments, decrements),
            increments: totals::clamped_u64(increments),
            decrements: totals::clamped_u64(decrements),
            applied,
        }
    }
}

/// Decodes an op's payload; the error names the op.
fn empty_payload(op: &str, bytes: &[u8]) -> Result<(), SlotError> {
    if bytes.is_empty() {
        Ok(())
    } else {
        Err(SlotError::InvalidArgument(format!(
            "`{op}` takes an empty payload, got {} bytes",
            bytes.len()
        )))
    }
}

impl Slot for Counter {
    fn init(config: &Config) -> Result<Self, String> {
        let instance = config.non_empty("instance")?;
        let grow_only = config.bool_or("growOnly", DEFAULT_GROW_ONLY)?;
        Ok(Self::new(instance, grow_only))
    }

    fn handle(&mut self, ctx: &Context, req: Request) -> Result<Reply, SlotError> {
        let Custom { op, payload: bytes } = match req {
            Request::Custom(custom) => custom,
            other => return Err(SlotError::unsupported("counter", &other)),
        };
        let value = match op.as_str() {
            OP_INCREMENT => self.increment(op_payload(OP_INCREMENT, &bytes)?, ctx.now_ms)?,
            OP_DECREMENT => self.decrement(op_payload(OP_DECREMENT, &bytes)?, ctx.now_ms)?,
            OP_READ => {
                empty_payload(OP_READ, &bytes)?;
                self.read()
            }
            other => {
                return Err(SlotError::Unsupported(format!(
                    "slot type counter has no op `{other}` (known: {OP_INCREMENT}, {OP_DECREMENT}, {OP_READ})"
                )));
            }
        };
        Ok(Reply::of(Response::Custom(value.to_bytes())))
    }

    fn tick(&mut self, ctx: &Context) -> Vec<Effect> {
        self.recent.expire(ctx.now_ms, REQUEST_ID_TTL_MS);
        Vec::new()
    }

    fn snapshot(&self) -> Vec<u8> {
        snapshot::encode(&self.totals, &self.recent)
    }

    fn merge(&mut self, state: &[u8]) -> Result<(), String> {
        let theirs = Snapshot::from_bytes(state).map_err(|e| e.to_string())?;
        for (instance, entry) in theirs.entries {
            self.totals.join(instance, entry);
        }
        self.recent.join(theirs.recent);
        Ok(())
    }
}

vss_slot_sdk::export_slot!(Counter);
