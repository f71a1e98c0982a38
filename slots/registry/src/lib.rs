//! The built-in `registry` slot type: service discovery, a list of which
//! addresses serve which app, held whole on every instance; entries live
//! for a TTL unless renewed.
//!
//! Config: `maxEntries` (default 10000, 1 to 100000) bounds the
//! (app, address) entries held, live or recently dead; `defaultTtlMs`
//! (default 30000, at least 1) is the TTL of an announce that names none;
//! `maxTtlMs` (default 3600000, at least `defaultTtlMs`) the longest one
//! may ask for. An app is 1 to 128 bytes, an address 1 to 256. The runtime
//! adds `instance`, this instance's id.
//!
//! Operations ([`wire`] has the payloads): `announce` adds an entry or
//! renews it (a heartbeat), `withdraw` removes it at once, `list` returns
//! the live entries of one app or of all, ordered by app then address.
//!
//! What it guarantees:
//! - Every instance answers from its own copy, so announces and lists
//!   never wait for a peer; copies meet by snapshot exchange, and an
//!   announce made on one instance shows on the others once a snapshot
//!   carrying it arrives.
//! - Per entry, the write with the higher [`Version`] wins (hybrid logical
//!   clock, then instance id; see [`vss_slot_sdk::lww`]). A renewal or a
//!   withdraw made after this instance has seen an announce wins over it
//!   even when this instance's clock is behind. Instances that have seen
//!   the same writes hold the same entries, whatever order the snapshots
//!   came in.
//! - An entry stores when it expires as a wall-clock time, not a TTL, so
//!   every instance drops it at the same moment (as far as their clocks
//!   agree), without any message passing at expiry.
//! - A dead entry (expired or withdrawn) is remembered until 60 s past
//!   its expiry, or past the expiry of the announces it replaced if that
//!   is later (as far as the instance that wrote it knew them), so a
//!   delayed copy of an older announce arriving from a peer is dead on
//!   arrival instead of bringing the entry back.
//! - Memory is bounded: an announce of a new entry is refused once the map
//!   holds `maxEntries` entries; snapshots from peers may bring it up to
//!   twice that (see [`Registry::merge_snapshot`]).
//!
//! What it is not: a health checker. An entry is live because someone
//! announced it and has not stopped renewing; whether the address answers
//! is the announcer's business.
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
use vss_slot_sdk::lww::{Clock, LwwMap, Version};
use vss_slot_sdk::{Config, Context, Custom, Effect, Reply, Request, Response, Slot, SlotError};

pub use limits::{Limits, MAX_ADDRESS_BYTES, MAX_APP_BYTES};
use wire::{
    Announce, Announced, ListApp, OP_ANNOUNCE, OP_LIST, OP_WITHDRAW, Service, Services, Withdraw,
    Withdrawn,
};

/// How long a dead entry is remembered past its expiry: long enough for
/// the write that killed it to reach every instance before an older copy
/// could come back.
pub const FORGET_AFTER_MS: u64 = 60_000;
const SNAPSHOT_VERSION: u8 = 1;
/// Two length prefixes and two times.
const MIN_ENTRY_BYTES: usize = 32;
const KNOWN_OPS: &str = "announce, withdraw, list";

/// (app, address): apps sort together, so listing one app is a range.
type EntryKey = (String, String);

/// One entry's replicated value. Ordered (expiry first) only to break
/// ties between equal versions, which honest writers never make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Lease {
    /// The entry is live while an instance's clock reads less than this
    /// (ms since the Unix epoch). It is an absolute time, fixed by the
    /// announcing instance and copied unchanged to every other, so every
    /// instance drops the entry at the same wall-clock moment, to within
    /// the skew of their clocks, and none needs to hear anything at expiry.
    /// A TTL counted from each instance's own receipt would instead expire
    /// later on instances that heard of the entry later, and a replica that
    /// merged an old snapshot would keep a long-gone address alive.
    expires_ms: u64,
    /// The latest expiry of the entries this write replaced, as the writing
    /// instance knew them: a withdraw or a shorter renewal keeps the entry
    /// remembered until those could no longer be live.
    replaced_expiry_ms: u64,
}

impl Lease {
    fn is_live_at(&self, now_ms: u64) -> bool {
        now_ms < self.expires_ms
    }

    /// When the entry may be forgotten: a copy of this write or of any
    /// write it replaced that arrives later is dead on arrival.
    fn forget_at_ms(&self) -> u64 {
        self.latest_expiry_ms().saturating_add(FORGET_AFTER_MS)
    }

    /// The latest expiry a write replacing this one must keep in mind.
    fn latest_expiry_ms(&self) -> u64 {
        self.expires_ms.max(self.replaced_expiry_ms)
    }
}

/// One instance's copy of a registry slot.
#[derive(Debug)]
pub struct Registry {
    instance: String,
    limits: Limits,
    clock: Clock,
    entries: LwwMap<EntryKey, Lease>,
}

impl Registry {
    /// An empty registry on instance `instance`.
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

    /// Entries held, live and dead.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Adds or renews an entry, live for its TTL from `now_ms`.
    pub fn announce(
        &mut self,
        now_ms: u64,
        Announce {
            app,
            address,
            ttl_ms,
        }: Announce,
    ) -> Result<Announced, SlotError> {
        check_app(&app)?;
        check_address(&address)?;
        let ttl_ms = match ttl_ms {
            None => self.limits.default_ttl_ms,
            Some(0) => {
                return Err(SlotError::InvalidArgument(
                    "`ttl` must be at least 1 ms".to_string(),
                ));
            }
            Some(t) if t > self.limits.max_ttl_ms => {
                return Err(SlotError::InvalidArgument(format!(
                    "`ttl` is {t} ms, at most {} (maxTtlMs)",
                    self.limits.max_ttl_ms
                )));
            }
            Some(t) => t,
        };
        let key = (app, address);
        let old = self.entries.get(&key).map(|s| s.value);
        if old.is_none() {
            self.make_room(now_ms)?;
        }
        let expires_ms = now_ms.saturating_add(ttl_ms);
        self.write(now_ms, key, expires_ms, old);
        Ok(Announced {
            expires_ms,
            added: !old.is_some_and(|l| l.is_live_at(now_ms)),
        })
    }

    /// Kills an entry everywhere by writing a newer version that expired
    /// at `now_ms`. An entry this instance does not know is left alone.
    pub fn withdraw(
        &mut self,
        now_ms: u64,
        Withdraw { app, address }: Withdraw,
    ) -> Result<Withdrawn, SlotError> {
        check_app(&app)?;
        check_address(&address)?;
        let key = (app, address);
        let Some(old) = self.entries.get(&key).map(|s| s.value) else {
            return Ok(Withdrawn { removed: false });
        };
        // Written even when already dead: it also overrules renewals
        // older than this instance's clock that are still on their way.
        self.write(now_ms, key, now_ms, Some(old));
        Ok(Withdrawn {
            removed: old.is_live_at(now_ms),
        })
    }

    /// Live entries of `app` (every app when empty), ordered by app then
    /// address.
    pub fn list(&self, now_ms: u64, ListApp { app }: &ListApp) -> Result<Services, SlotError> {
        if app.len() > MAX_APP_BYTES {
            return Err(too_long("app", app.len(), MAX_APP_BYTES));
        }
        let from = (app.clone(), String::new());
        let services = self
            .entries
            .range::<EntryKey, _>((Bound::Included(&from), Bound::Unbounded))
            .take_while(|((a, _), _)| app.is_empty() || a == app)
            .filter(|(_, s)| s.value.is_live_at(now_ms))
            .map(|((app, address), s)| Service {
                app: app.clone(),
                address: address.clone(),
                updated_ms: s.version.physical_ms(),
                expires_ms: s.value.expires_ms,
            })
            .collect();
        Ok(Services { services })
    }

    /// Forgets entries [`FORGET_AFTER_MS`] past their expiry (and the
    /// expiry of what they replaced), not earlier: until then a dead entry
    /// is what keeps a late copy of an older announce from reviving it.
    pub fn forget_dead(&mut self, now_ms: u64) {
        self.entries.retain(|_, s| now_ms < s.value.forget_at_ms());
    }

    /// Folds a peer's snapshot in. The snapshot is decoded whole first: on
    /// an error nothing changes.
    ///
    /// Entries with an app or address this instance would refuse from a
    /// client are skipped. New entries are taken up to twice `maxEntries`;
    /// past that, new entries are dropped in (app, address) order (entries
    /// already held are still resolved), so replicas whose entries together
    /// exceed that cap may disagree about which entries exist, never about
    /// the version of one both hold.
    pub fn merge_snapshot(&mut self, state: &[u8]) -> Result<(), DecodeError> {
        let incoming = decode_snapshot(state)?;
        self.entries.merge(
            incoming,
            self.limits.merge_cap(),
            &mut self.clock,
            |(app, address), _| check_app(app).is_ok() && check_address(address).is_ok(),
        );
        Ok(())
    }

    /// Every entry, in (app, address) order, so equal maps give equal
    /// bytes.
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(SNAPSHOT_VERSION);
        self.entries.write_with(&mut w, |w, (app, address), lease| {
            w.str(app)
                .str(address)
                .u64(lease.expires_ms)
                .u64(lease.replaced_expiry_ms);
        });
        w.finish()
    }

    fn write(&mut self, now_ms: u64, key: EntryKey, expires_ms: u64, old: Option<Lease>) {
        let version = Version {
            hlc: self.clock.tick(now_ms),
            instance: self.instance.clone(),
        };
        let lease = Lease {
            expires_ms,
            replaced_expiry_ms: old.map_or(0, |l| l.latest_expiry_ms()),
        };
        // Stored without fail: the clock has seen every version in the map
        // (written here or observed by merge), so the fresh one is higher,
        // short of a forged snapshot that ran the clock up to u64::MAX.
        self.entries.put(key, version, lease);
    }

    /// Before refusing a new entry, forgets the dead entries that may go.
    fn make_room(&mut self, now_ms: u64) -> Result<(), SlotError> {
        if self.entries.len() < self.limits.max_entries {
            return Ok(());
        }
        self.forget_dead(now_ms);
        if self.entries.len() < self.limits.max_entries {
            return Ok(());
        }
        Err(SlotError::ResourceExhausted(format!(
            "registry holds {} entries (live, or dead less than {} s), at most {} (maxEntries)",
            self.entries.len(),
            FORGET_AFTER_MS / 1_000,
            self.limits.max_entries
        )))
    }

    fn call(&mut self, now_ms: u64, op: &str, payload: &[u8]) -> Result<Vec<u8>, SlotError> {
        match op {
            OP_ANNOUNCE => Ok(self.announce(now_ms, op_payload(op, payload)?)?.to_bytes()),
            OP_WITHDRAW => Ok(self.withdraw(now_ms, op_payload(op, payload)?)?.to_bytes()),
            OP_LIST => Ok(self.list(now_ms, &op_payload(op, payload)?)?.to_bytes()),
            _ => Err(SlotError::Unsupported(format!(
                "slot type registry has no op `{op}`; known ops: {KNOWN_OPS}"
            ))),
        }
    }
}

impl Slot for Registry {
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
            other => Err(SlotError::unsupported("registry", &other)),
        }
    }

    fn tick(&mut self, ctx: &Context) -> Vec<Effect> {
        self.forget_dead(ctx.now_ms);
        Vec::new()
    }

    fn snapshot(&self) -> Vec<u8> {
        self.snapshot_bytes()
    }

    fn merge(&mut self, state: &[u8]) -> Result<(), String> {
        self.merge_snapshot(state).map_err(|e| e.to_string())
    }
}

fn check_app(app: &str) -> Result<(), SlotError> {
    check_len("app", app, MAX_APP_BYTES)
}

fn check_address(address: &str) -> Result<(), SlotError> {
    check_len("address", address, MAX_ADDRESS_BYTES)
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), SlotError> {
    if value.is_empty() {
        return Err(SlotError::InvalidArgument(format!(
            "`{field}` must not be empty"
        )));
    }
    if value.len() > max {
        return Err(too_long(field, value.len(), max));
    }
    Ok(())
}

fn too_long(field: &str, len: usize, max: usize) -> SlotError {
    SlotError::InvalidArgument(format!("`{field}` is {len} bytes, at most {max}"))
}

fn decode_snapshot(bytes: &[u8]) -> Result<LwwMap<EntryKey, Lease>, DecodeError> {
    let mut r = Reader::new(bytes);
    if r.u8()? != SNAPSHOT_VERSION {
        return Err(DecodeError("unknown snapshot version"));
    }
    let map = LwwMap::read_with(&mut r, MIN_ENTRY_BYTES, |r| {
        let key = (r.str()?, r.str()?);
        let lease = Lease {
            expires_ms: r.u64()?,
            replaced_expiry_ms: r.u64()?,
        };
        Ok((key, lease))
    })?;
    r.end()?;
    Ok(map)
}

vss_slot_sdk::export_slot!(Registry);
