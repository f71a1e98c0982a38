//! The built-in `register` slot type: a small key-value map held whole on
//! every instance, where the last writer wins.
//!
//! Config: `maxKeys` (default 10000, 1 to 100000) bounds the keys held,
//! live or recently deleted; `maxKeyBytes` (default 256, 1 to 1024) and
//! `maxValueBytes` (default 1024, 1 to 65536) bound each key and value;
//! `tombstoneTtlMs` (default 60000, at least 1000) is how long a deleted
//! key is remembered. The runtime adds `instance`, this instance's id.
//!
//! Operations ([`wire`] has the payloads): `set` writes a value, `get`
//! reads one key, `delete` removes a live key, `list` returns live keys
//! under a prefix in key order (at most 1000 and about 1 MiB per call,
//! with a flag when more matched).
//!
//! What it guarantees:
//! - Every instance answers from its own copy, so reads and writes never
//!   wait for a peer. Copies meet by snapshot exchange: a write made on one
//!   instance shows on the others once a snapshot carrying it arrives.
//! - Per key, the write with the higher [`Version`] wins (hybrid logical
//!   clock, then instance id; see [`vss_slot_sdk::lww`]). Instances that
//!   have seen the same writes hold the same map, whatever order and how
//!   often the snapshots came.
//! - A write made after this instance has seen another write of the same
//!   key wins over it, even when this instance's wall clock is behind.
//!   Clock skew only decides between writes that were truly concurrent.
//! - A delete leaves a tombstone for `tombstoneTtlMs`, so it wins over
//!   older copies of the value still on their way. An instance cut off
//!   for longer than that can bring a deleted key back when it rejoins.
//! - Memory is bounded: a local write of a new key is refused once the
//!   map holds `maxKeys` keys; snapshots from peers may bring it up to
//!   twice that (see [`Register::merge_snapshot`]).
//!
//! What it is not: storage. The map lives in the instances' memory only,
//! and there is no compare-and-set: two concurrent writes of one key both
//! succeed and one of them silently wins.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod limits;
pub mod wire;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::Bound;
use vss_slot_sdk::codec::{DecodeError, Reader, Wire, Writer, op_payload};
use vss_slot_sdk::lww::{Clock, LwwMap};
use vss_slot_sdk::{Config, Context, Custom, Effect, Reply, Request, Response, Slot, SlotError};

pub use limits::Limits;
use wire::{
    Entry, Found, Key, List, Listed, OP_DELETE, OP_GET, OP_LIST, OP_SET, Set, Version, Written,
};

/// Most entries one `list` returns, and what a limit of 0 means.
pub const MAX_LIST_ENTRIES: usize = 1_000;
/// Most bytes of keys and values one `list` returns, since 1000 values of
/// 64 KiB would not fit a reply. The first entry is returned whatever its
/// size, so every key can be listed.
pub const MAX_LIST_BYTES: usize = 1 << 20;
const SNAPSHOT_VERSION: u8 = 1;
/// A key's length prefix and a value's presence tag.
const MIN_ENTRY_BYTES: usize = 9;
const KNOWN_OPS: &str = "set, get, delete, list";

/// A key's value; None is a tombstone (the key was deleted).
type Value = Option<Vec<u8>>;

/// One instance's copy of a register slot.
#[derive(Debug)]
pub struct Register {
    instance: String,
    limits: Limits,
    clock: Clock,
    entries: LwwMap<String, Value>,
}

impl Register {
    /// An empty register on instance `instance`.
    pub fn new(instance: String, limits: Limits) -> Self {
        Self {
            instance,
            limits,
            clock: Clock::default(),
            entries: LwwMap::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Keys held, live and tombstones.
    pub fn key_count(&self) -> usize {
        self.entries.len()
    }

    /// Writes `value` under `key`.
    pub fn set(&mut self, now_ms: u64, Set { key, value }: Set) -> Result<Written, SlotError> {
        self.check_key(&key)?;
        if value.len() > self.limits.max_value_bytes {
            return Err(SlotError::InvalidArgument(format!(
                "`value` is {} bytes, at most {} (maxValueBytes)",
                value.len(),
                self.limits.max_value_bytes
            )));
        }
        if !self.entries.contains_key(key.as_str()) {
            self.make_room(now_ms)?;
        }
        let existed = self.is_live(&key);
        Ok(Written {
            version: self.write(now_ms, key, Some(value)),
            existed,
        })
    }

    /// The live value of `key`, or its tombstone.
    pub fn get(&self, key: &str) -> Result<Found, SlotError> {
        self.check_key(key)?;
        Ok(match self.entries.get(key) {
            None => Found::Absent,
            Some(s) => match &s.value {
                Some(value) => Found::Live(Entry {
                    key: key.to_string(),
                    value: value.clone(),
                    version: s.version.clone(),
                }),
                None => Found::Deleted(s.version.clone()),
            },
        })
    }

    /// Deletes a live key, leaving a tombstone. A key that is absent or
    /// already deleted is left as it is (`existed` false); the reply then
    /// carries the existing tombstone's version, or the zero version for a
    /// key this instance does not know.
    pub fn delete(&mut self, now_ms: u64, key: &str) -> Result<Written, SlotError> {
        self.check_key(key)?;
        if !self.is_live(key) {
            let version = self
                .entries
                .get(key)
                .map(|s| s.version.clone())
                .unwrap_or_default();
            return Ok(Written {
                version,
                existed: false,
            });
        }
        Ok(Written {
            version: self.write(now_ms, key.to_string(), None),
            existed: true,
        })
    }

    /// Live entries whose key starts with `prefix`, in key order.
    pub fn list(&self, List { prefix, limit }: &List) -> Listed {
        let limit = match usize::try_from(*limit) {
            Ok(0) | Err(_) => MAX_LIST_ENTRIES,
            Ok(n) => n.min(MAX_LIST_ENTRIES),
        };
        let matching = self
            .entries
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix.as_str()))
            .filter_map(|(key, s)| s.value.as_ref().map(|value| (key, value, &s.version)));
        let mut listed = Listed {
            entries: Vec::new(),
            truncated: false,
        };
        let mut bytes = 0usize;
        for (key, value, version) in matching {
            let size = key.len() + value.len();
            let over_budget = !listed.entries.is_empty() && bytes + size > MAX_LIST_BYTES;
            if listed.entries.len() >= limit || over_budget {
                listed.truncated = true;
                break;
            }
            bytes += size;
            listed.entries.push(Entry {
                key: key.clone(),
                value: value.clone(),
                version: version.clone(),
            });
        }
        listed
    }

    /// Drops tombstones `tombstoneTtlMs` after their delete. Until then a
    /// tombstone must stay: it is what makes the delete win over an older
    /// copy of the value arriving from a peer.
    pub fn forget_tombstones(&mut self, now_ms: u64) {
        let ttl = self.limits.tombstone_ttl_ms;
        self.entries.retain(|_, s| {
            s.value.is_some() || now_ms < s.version.physical_ms().saturating_add(ttl)
        });
    }

    /// Folds a peer's snapshot in. The snapshot is decoded whole first: on
    /// an error nothing changes.
    ///
    /// Entries this instance would refuse from a client (an empty key, a
    /// key or value over this instance's limits) are skipped, so a peer
    /// with looser limits cannot grow this one past its bounds. New keys
    /// are taken up to twice `maxKeys` entries; past that, new keys are
    /// dropped in key order (keys already held are still resolved), so
    /// replicas whose keys together exceed that cap may disagree about
    /// which keys exist, never about the value of a key both hold.
    pub fn merge_snapshot(&mut self, state: &[u8]) -> Result<(), DecodeError> {
        let incoming = decode_snapshot(state)?;
        let limits = self.limits;
        self.entries
            .merge(incoming, limits.merge_cap(), &mut self.clock, |key, s| {
                !key.is_empty()
                    && key.len() <= limits.max_key_bytes
                    && s.value
                        .as_ref()
                        .is_none_or(|v| v.len() <= limits.max_value_bytes)
            });
        Ok(())
    }

    /// The whole map, in key order, so equal maps give equal bytes.
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(SNAPSHOT_VERSION);
        self.entries.write_with(&mut w, |w, key, value| {
            w.str(key);
            match value {
                Some(v) => w.u8(1).bytes(v),
                None => w.u8(0),
            };
        });
        w.finish()
    }

    fn write(&mut self, now_ms: u64, key: String, value: Value) -> Version {
        let version = Version {
            hlc: self.clock.tick(now_ms),
            instance: self.instance.clone(),
        };
        // Stored without fail: the clock has seen every version in the map
        // (written here or observed by merge), so the fresh one is higher,
        // short of a forged snapshot that ran the clock up to u64::MAX.
        self.entries.put(key, version.clone(), value);
        version
    }

    fn is_live(&self, key: &str) -> bool {
        self.entries.get(key).is_some_and(|s| s.value.is_some())
    }

    fn check_key(&self, key: &str) -> Result<(), SlotError> {
        if key.is_empty() {
            return Err(SlotError::InvalidArgument(
                "`key` must not be empty".to_string(),
            ));
        }
        if key.len() > self.limits.max_key_bytes {
            return Err(SlotError::InvalidArgument(format!(
                "`key` is {} bytes, at most {} (maxKeyBytes)",
                key.len(),
                self.limits.max_key_bytes
            )));
        }
        Ok(())
    }

    /// Before refusing a new key, forgets the tombstones that may go.
    fn make_room(&mut self, now_ms: u64) -> Result<(), SlotError> {
        if self.entries.len() < self.limits.max_keys {
            return Ok(());
        }
        self.forget_tombstones(now_ms);
        if self.entries.len() < self.limits.max_keys {
            return Ok(());
        }
        Err(SlotError::ResourceExhausted(format!(
            "register holds {} keys (live, or deleted less than tombstoneTtlMs ago), \
             at most {} (maxKeys)",
            self.entries.len(),
            self.limits.max_keys
        )))
    }

    fn call(&mut self, now_ms: u64, op: &str, payload: &[u8]) -> Result<Vec<u8>, SlotError> {
        match op {
            OP_SET => Ok(self.set(now_ms, op_payload(op, payload)?)?.to_bytes()),
            OP_GET => {
                let Key { key } = op_payload(op, payload)?;
                Ok(self.get(&key)?.to_bytes())
            }
            OP_DELETE => {
                let Key { key } = op_payload(op, payload)?;
                Ok(self.delete(now_ms, &key)?.to_bytes())
            }
            OP_LIST => Ok(self.list(&op_payload(op, payload)?).to_bytes()),
            _ => Err(SlotError::Unsupported(format!(
                "slot type register has no op `{op}`; known ops: {KNOWN_OPS}"
            ))),
        }
    }
}

impl Slot for Register {
    fn init(config: &Config) -> Result<Self, String> {
        let instance = config.non_empty("instance")?;
        Ok(Self::new(instance, Limits::from_config(config)?))
    }

    fn handle(&mut self, ctx: &Context, req: Request) -> Result<Reply, SlotError> {
        match req {
            Request::Custom(Custom { op, payload }) => {
                let reply = self.call(ctx.now_ms, &op, &payload)?;
                Ok(Reply::of(Response::Custom(reply)))
            }
            other => Err(SlotError::unsupported("register", &other)),
        }
    }

    fn tick(&mut self, ctx: &Context) -> Vec<Effect> {
        self.forget_tombstones(ctx.now_ms);
        Vec::new()
    }

    fn snapshot(&self) -> Vec<u8> {
        self.snapshot_bytes()
    }

    fn merge(&mut self, state: &[u8]) -> Result<(), String> {
        self.merge_snapshot(state).map_err(|e| e.to_string())
    }
}

fn decode_snapshot(bytes: &[u8]) -> Result<LwwMap<String, Value>, DecodeError> {
    let mut r = Reader::new(bytes);
    if r.u8()? != SNAPSHOT_VERSION {
        return Err(DecodeError("unknown snapshot version"));
    }
    let map = LwwMap::read_with(&mut r, MIN_ENTRY_BYTES, |r| {
        let key = r.str()?;
        let value = match r.u8()? {
            0 => None,
            1 => Some(r.bytes()?),
            _ => return Err(DecodeError("bad value tag")),
        };
        Ok((key, value))
    })?;
    r.end()?;
    Ok(map)
}

vss_slot_sdk::export_slot!(Register);
