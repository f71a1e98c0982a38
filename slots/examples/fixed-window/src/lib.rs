//! Example custom slot type: a fixed-window counter limiter.
//!
//! Allows `limit` hits per `window` (second, minute or hour), counted per key
//! in windows aligned to the clock (e.g. every whole minute). It answers the
//! typed `acquire` verb like a built-in limiter, and two custom operations:
//!
//! - `hit` (payload: optional key as UTF-8) counts one hit and replies
//!   `{"allowed":true,"remaining":9,"resetMs":532}`;
//! - `peek` (same payload) replies the same without counting.
//!
//! `docs/custom-slots.md` builds and loads it step by step.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vss_slot_sdk::codec::{Reader, Writer};
use vss_slot_sdk::{
    Acquire, Acquired, Config, Context, Custom, Reply, Request, Response, Slot, SlotError,
};

/// Most keys tracked; the oldest windows are dropped first.
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start_ms: u64,
    hits: u64,
}

#[derive(Debug)]
pub struct FixedWindow {
    limit: u64,
    window_ms: u64,
    windows: BTreeMap<String, Window>,
}

/// The answer to one hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub remaining: u64,
    pub reset_ms: u64,
}

impl FixedWindow {
    pub fn new(limit: u64, window_ms: u64) -> Self {
        Self {
            limit,
            window_ms,
            windows: BTreeMap::new(),
        }
    }

    /// Counts (if `count`) a hit for `key` at `now_ms`.
    pub fn hit(&mut self, key: &str, now_ms: u64, count: bool) -> Verdict {
        let start = now_ms - now_ms % self.window_ms;
        if !self.windows.contains_key(key) && self.windows.len() >= MAX_KEYS {
            self.windows.retain(|_, w| w.start_ms == start);
        }
        let w = self.windows.entry(String::from(key)).or_insert(Window {
            start_ms: start,
            hits: 0,
        });
        if w.start_ms != start {
            *w = Window {
                start_ms: start,
                hits: 0,
            };
        }
        let allowed = w.hits < self.limit;
        if allowed && count {
            w.hits += 1;
        }
        Verdict {
            allowed,
            remaining: self.limit - w.hits,
            reset_ms: start + self.window_ms - now_ms,
        }
    }
}

impl Slot for FixedWindow {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Self::new(
            config.u64_at_least("limit", 1, None)?,
            config.period_ms("window")?,
        ))
    }

    fn handle(&mut self, ctx: &Context, req: Request) -> Result<Reply, SlotError> {
        match req {
            Request::Acquire(Acquire { key, .. }) => {
                let v = self.hit(key.as_deref().unwrap_or(""), ctx.now_ms, true);
                Ok(Reply::of(Response::Acquired(Acquired {
                    granted: u32::from(v.allowed),
                    remaining: v.remaining,
                    reset_ms: v.reset_ms,
                })))
            }
            Request::Custom(Custom { op, payload }) => {
                let count = match op.as_str() {
                    "hit" => true,
                    "peek" => false,
                    other => {
                        return Err(SlotError::InvalidArgument(format!(
                            "unknown operation `{other}` (fixed-window knows `hit` and `peek`)"
                        )));
                    }
                };
                let key = core::str::from_utf8(&payload).map_err(|_| {
                    SlotError::InvalidArgument("payload must be a UTF-8 key".into())
                })?;
                let v = self.hit(key, ctx.now_ms, count);
                let json = format!(
                    "{{\"allowed\":{},\"remaining\":{},\"resetMs\":{}}}",
                    v.allowed, v.remaining, v.reset_ms
                );
                Ok(Reply::of(Response::Custom(json.into_bytes())))
            }
            other => Err(SlotError::unsupported("fixed-window", &other)),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.windows.len() as u64);
        for (k, win) in &self.windows {
            w.str(k).u64(win.start_ms).u64(win.hits);
        }
        w.finish()
    }

    /// Keeps, per key, the later window, and within the same window the
    /// higher count.
    fn merge(&mut self, state: &[u8]) -> Result<(), String> {
        let mut r = Reader::new(state);
        let n = r.u64().map_err(|e| format!("{e}"))?;
        let mut incoming = Vec::new();
        for _ in 0..n {
            let k = r.str().map_err(|e| format!("{e}"))?;
            let start_ms = r.u64().map_err(|e| format!("{e}"))?;
            let hits = r.u64().map_err(|e| format!("{e}"))?;
            incoming.push((k, Window { start_ms, hits }));
        }
        r.end().map_err(|e| format!("{e}"))?;
        for (k, theirs) in incoming {
            let ours = self.windows.entry(k).or_insert(theirs);
            if (theirs.start_ms, theirs.hits) > (ours.start_ms, ours.hits) {
                *ours = theirs;
            }
        }
        Ok(())
    }
}

vss_slot_sdk::export_slot!(FixedWindow);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_limit_hits_per_window_then_refuses() {
        let mut fw = FixedWindow::new(2, 1_000);
        assert!(fw.hit("a", 100, true).allowed);
        assert!(fw.hit("a", 200, true).allowed);
        let v = fw.hit("a", 300, true);
        assert_eq!((v.allowed, v.remaining, v.reset_ms), (false, 0, 700));
        assert!(fw.hit("b", 300, true).allowed, "keys are counted apart");
        assert!(
            fw.hit("a", 1_000, true).allowed,
            "a new window starts fresh"
        );
    }

    #[test]
    fn peek_does_not_count() {
        let mut fw = FixedWindow::new(1, 1_000);
        assert!(fw.hit("", 0, false).allowed);
        assert!(fw.hit("", 0, true).allowed);
        assert!(!fw.hit("", 0, false).allowed);
    }

    #[test]
    fn snapshot_merges_into_a_fresh_instance() {
        let mut a = FixedWindow::new(5, 60_000);
        a.hit("k", 10, true);
        a.hit("k", 20, true);
        let mut b = FixedWindow::new(5, 60_000);
        b.merge(&a.snapshot()).expect("own snapshot merges");
        assert_eq!(b.hit("k", 30, false).remaining, 3);
        assert!(b.merge(&[1, 2, 3]).is_err());
    }
}
