//! The built-in `leaky-bucket` slot type.
//!
//! Config: `bucketSize` (required), `period` (second/minute/hour, required),
//! `refreshRate` (tokens leaked per period, default 1), `maxKeys` (default
//! 10000). A request puts its tokens (default 1) in the bucket of its key if
//! they fit; the reply says how many went in (all or none) and the
//! milliseconds until there is room again.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod bucket;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use bucket::{Admission, Bucket, Limits};
use vss_slot_sdk::codec::{DecodeError, Reader, Writer};
use vss_slot_sdk::keyed::Keyed;
use vss_slot_sdk::limiter;
use vss_slot_sdk::{Acquire, Acquired, Config, Context, Reply, Request, Response, Slot, SlotError};

pub const DEFAULT_MAX_KEYS: u64 = 10_000;
const SNAPSHOT_VERSION: u8 = 1;

#[derive(Debug)]
pub struct LeakyBucket {
    limits: Limits,
    buckets: Keyed<Bucket>,
}

impl LeakyBucket {
    pub fn new(limits: Limits, max_keys: usize) -> Self {
        Self {
            limits,
            buckets: Keyed::new(max_keys),
        }
    }

    pub fn put(&mut self, key: Option<&str>, tokens: u32, now_ms: u64) -> Admission {
        let limits = &self.limits;
        self.buckets
            .entry(key, now_ms, || Bucket::empty(limits, now_ms))
            .put(tokens, now_ms)
    }
}

impl limiter::Limiter for LeakyBucket {
    fn take_all(&mut self, take: &limiter::Take, now_ms: u64) -> limiter::Taken {
        let limits = &self.limits;
        self.buckets
            .entry(take.bucket(), now_ms, || Bucket::empty(limits, now_ms))
            .put_all(take.tokens, now_ms)
    }

    fn release(&mut self, take: &limiter::Take, now_ms: u64) -> limiter::Taken {
        match self.buckets.get_mut(take.bucket()) {
            Some(bucket) => bucket.take_out(take.tokens, now_ms),
            // Evicted since: it was idle, i.e. empty already.
            None => Bucket::empty(&self.limits, now_ms).take_out(0, now_ms),
        }
    }
}

impl Slot for LeakyBucket {
    fn init(config: &Config) -> Result<Self, String> {
        let limits = Limits {
            bucket_size: config.u64_at_least("bucketSize", 1, None)?,
            period_ms: config.period_ms("period")?,
            refresh_rate: config.u64_at_least("refreshRate", 1, Some(1))?,
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
                let a = self.put(key.as_deref(), tokens.unwrap_or(1), ctx.now_ms);
                Ok(Reply::of(Response::Acquired(Acquired {
                    granted: a.granted,
                    remaining: a.remaining,
                    reset_ms: a.reset_ms,
                })))
            }
            Request::Custom(custom) => limiter::handle(self, "leaky-bucket", ctx.now_ms, custom),
            other => Err(SlotError::unsupported("leaky-bucket", &other)),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(SNAPSHOT_VERSION);
        let put = |w: &mut Writer, b: &Bucket| {
            let level = u64::try_from(b.level).unwrap_or(u64::MAX);
            w.u64(level).u64(b.last_leak_ms).u64(b.last_used_ms);
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

    /// Merging keeps, per key, the fuller bucket: the conservative choice
    /// that never admits more than either side would have.
    fn merge(&mut self, state: &[u8]) -> Result<(), String> {
        let (single, keyed) = decode_snapshot(&self.limits, state).map_err(|e| e.to_string())?;
        let entries = single
            .map(|b| (None, b))
            .into_iter()
            .chain(keyed.into_iter().map(|(k, b)| (Some(k), b)));
        for (key, theirs) in entries {
            let now = theirs.last_used_ms;
            if let Some(ours) = self.buckets.get(key.as_deref())
                && ours.level_at(now) >= theirs.level_at(now)
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
    let capacity = u128::from(limits.bucket_size) * u128::from(limits.period_ms);
    let read = |r: &mut Reader| -> Result<Bucket, DecodeError> {
        let mut b = Bucket::empty(limits, 0);
        b.level = u128::from(r.u64()?).min(capacity);
        b.last_leak_ms = r.u64()?;
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

vss_slot_sdk::export_slot!(LeakyBucket);
