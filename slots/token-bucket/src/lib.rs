//! The built-in `token-bucket` slot type.
//!
//! Config: `bucketSize` (required), `period` (second/minute/hour, required),
//! `refreshRate` (default 1), `tokensPerReq` (default 1), `maxKeys` (default
//! 10000). Each distinct acquire key gets its own bucket; no key means the
//! slot's single bucket. Compiled to a Wasm component by `slots/builtin`;
//! natively it is a plain library (unit tests, benchmarks).
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod bucket;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use bucket::{Bucket, Grant, Limits};
use vss_slot_sdk::codec::{DecodeError, Reader, Writer};
use vss_slot_sdk::keyed::Keyed;
use vss_slot_sdk::limiter;
use vss_slot_sdk::{Acquire, Acquired, Config, Context, Reply, Request, Response, Slot, SlotError};

/// Default bound on distinct keys per slot.
pub const DEFAULT_MAX_KEYS: u64 = 10_000;
const SNAPSHOT_VERSION: u8 = 1;

/// A token-bucket slot: limits plus one bucket per key.
#[derive(Debug)]
pub struct TokenBucket {
    limits: Limits,
    buckets: Keyed<Bucket>,
}

impl TokenBucket {
    pub fn new(limits: Limits, max_keys: usize) -> Self {
        Self {
            limits,
            buckets: Keyed::new(max_keys),
        }
    }

    /// Takes tokens from the bucket of `key`, creating it full on first use.
    pub fn acquire(&mut self, key: Option<&str>, asked: Option<u32>, now_ms: u64) -> Grant {
        let limits = &self.limits;
        let asked = asked.unwrap_or(limits.tokens_per_req);
        self.buckets
            .entry(key, now_ms, || Bucket::full(limits, now_ms))
            .take(asked, now_ms)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl limiter::Limiter for TokenBucket {
    fn take_all(&mut self, take: &limiter::Take, now_ms: u64) -> limiter::Taken {
        let limits = &self.limits;
        self.buckets
            .entry(take.bucket(), now_ms, || Bucket::full(limits, now_ms))
            .take_all(take.tokens, now_ms)
    }

    fn release(&mut self, take: &limiter::Take, now_ms: u64) -> limiter::Taken {
        match self.buckets.get_mut(take.bucket()) {
            Some(bucket) => bucket.give_back(take.tokens, now_ms),
            // Evicted since: it was idle, i.e. full already.
            None => Bucket::full(&self.limits, now_ms).give_back(0, now_ms),
        }
    }
}

impl Slot for TokenBucket {
    fn init(config: &Config) -> Result<Self, String> {
        let limits = Limits {
            bucket_size: config.u64_at_least("bucketSize", 1, None)?,
            period_ms: config.period_ms("period")?,
            refresh_rate: config.u64_at_least("refreshRate", 1, Some(1))?,
            tokens_per_req: u32::try_from(config.u64_at_least("tokensPerReq", 1, Some(1))?)
                .map_err(|_| "field `tokensPerReq` must be at most 4294967295")?,
        };
        let max_keys = config.u64_at_least("maxKeys", 1, Some(DEFAULT_MAX_KEYS))?;
        Ok(Self::new(
            limits,
            usize::try_from(max_keys).unwrap_or(usize::MAX),
        ))
    }

    fn handle(&mut self, ctx: &Context, req: Request) -> Result<Reply, SlotError> {
        match req {
            Request::Acquire(Acquire { key, tokens }) => {
                if tokens == Some(0) {
                    return Err(SlotError::InvalidArgument(
                        "`tokens` must be at least 1".into(),
                    ));
                }
                let g = self.acquire(key.as_deref(), tokens, ctx.now_ms);
                Ok(Reply::of(Response::Acquired(Acquired {
                    granted: g.granted,
                    remaining: g.remaining,
                    reset_ms: g.reset_ms,
                })))
            }
            Request::Custom(custom) => limiter::handle(self, "token-bucket", ctx.now_ms, custom),
            other => Err(SlotError::unsupported("token-bucket", &other)),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(SNAPSHOT_VERSION);
        let put = |w: &mut Writer, b: &Bucket| {
            w.u64(b.tokens).u64(b.last_refill_ms).u64(b.last_used_ms);
        };
        match self.buckets.single() {
            Some(b) => {
                w.u8(1);
                put(&mut w, b);
            }
            None => {
                w.u8(0);
            }
        }
        w.u64(self.buckets.key_count() as u64);
        for (k, b) in self.buckets.keys() {
            w.str(k);
            put(&mut w, b);
        }
        w.finish()
    }

    /// Merging keeps, per key, whichever bucket holds fewer tokens: after a
    /// failover the replica may lag, and the conservative choice never
    /// grants more than either side would have.
    fn merge(&mut self, state: &[u8]) -> Result<(), String> {
        let (single, keyed) = decode_snapshot(&self.limits, state).map_err(|e| e.to_string())?;
        let entries = single
            .map(|b| (None, b))
            .into_iter()
            .chain(keyed.into_iter().map(|(k, b)| (Some(k), b)));
        for (key, theirs) in entries {
            let now = theirs.last_used_ms;
            if let Some(ours) = self.buckets.get(key.as_deref())
                && ours.tokens_at(now) <= theirs.tokens_at(now)
            {
                continue;
            }
            self.buckets.put(key, theirs, now);
        }
        Ok(())
    }
}

type Snapshot = (Option<Bucket>, Vec<(String, Bucket)>);

fn decode_snapshot(limits: &Limits, bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let mut r = Reader::new(bytes);
    if r.u8()? != SNAPSHOT_VERSION {
        return Err(DecodeError("unknown snapshot version"));
    }
    let read = |r: &mut Reader| -> Result<Bucket, DecodeError> {
        let mut b = Bucket::full(limits, 0);
        b.tokens = r.u64()?.min(limits.bucket_size);
        b.last_refill_ms = r.u64()?;
        b.last_used_ms = r.u64()?;
        Ok(b)
    };
    let single = match r.u8()? {
        0 => None,
        _ => Some(read(&mut r)?),
    };
    let n = r.u64()?;
    let mut keyed = Vec::new();
    for _ in 0..n {
        let k = r.str()?;
        keyed.push((k, read(&mut r)?));
    }
    r.end()?;
    Ok((single, keyed))
}

vss_slot_sdk::export_slot!(TokenBucket);
