//! __TYPE_NAME__: a VSS slot type. A counter per key, as a place to start.
//!
//! - `hit` (payload: the key, any bytes) counts one hit and replies the new
//!   count as text;
//! - `get` (same payload) replies the count without counting.
//!
//! Config: `maxKeys` (default 1000), the most keys kept. Build and load it
//! as the README says.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vss_slot_sdk::codec::{DecodeError, Reader, Writer};
use vss_slot_sdk::{Config, Context, Custom, Reply, Request, Response, Slot, SlotError};

pub struct __TYPE_NAME__ {
    max_keys: usize,
    hits: BTreeMap<Vec<u8>, u64>,
}

impl Slot for __TYPE_NAME__ {
    fn init(config: &Config) -> Result<Self, String> {
        // Config's errors name the field: "field `maxKeys` must be at least 1, got 0".
        let max_keys = config.u64_at_least("maxKeys", 1, Some(1000))?;
        Ok(Self {
            max_keys: usize::try_from(max_keys).unwrap_or(usize::MAX),
            hits: BTreeMap::new(),
        })
    }

    fn handle(&mut self, _ctx: &Context, req: Request) -> Result<Reply, SlotError> {
        let Request::Custom(Custom { op, payload: key }) = req else {
            return Err(SlotError::unsupported("__CRATE_NAME__", &req));
        };
        let count = match op.as_str() {
            "hit" => {
                // Anything keyed by client input needs a bound: the
                // instance has a memory cap.
                if !self.hits.contains_key(&key) && self.hits.len() >= self.max_keys {
                    return Err(SlotError::ResourceExhausted(format!(
                        "more than maxKeys ({}) keys",
                        self.max_keys
                    )));
                }
                let n = self.hits.entry(key).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            "get" => self.hits.get(&key).copied().unwrap_or(0),
            other => {
                return Err(SlotError::InvalidArgument(format!(
                    "unknown op `{other}` (hit, get)"
                )));
            }
        };
        Ok(Reply::of(Response::Custom(format!("{count}").into_bytes())))
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.hits.len() as u64);
        for (key, n) in &self.hits {
            // Keys are bytes, written as bytes: text-only encoding would
            // mangle a non-UTF-8 key on its way to the standby.
            w.bytes(key).u64(*n);
        }
        w.finish()
    }

    fn merge(&mut self, state: &[u8]) -> Result<(), String> {
        let e = |e: DecodeError| format!("{e}");
        let mut r = Reader::new(state);
        // A key is at least its length prefix and a count: 16 bytes.
        for _ in 0..r.count(16).map_err(e)? {
            let (key, n) = (r.bytes().map_err(e)?, r.u64().map_err(e)?);
            if !self.hits.contains_key(&key) && self.hits.len() >= self.max_keys {
                continue;
            }
            let ours = self.hits.entry(key).or_insert(0);
            *ours = (*ours).max(n);
        }
        r.end().map_err(e)
    }
}

vss_slot_sdk::export_slot!(__TYPE_NAME__);

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(max_keys: u64) -> __TYPE_NAME__ {
        let config = Config::from(alloc::vec![("maxKeys".into(), format!("{max_keys}"))]);
        __TYPE_NAME__::init(&config).expect("valid config")
    }

    fn call(s: &mut __TYPE_NAME__, op: &str, key: &[u8]) -> Result<String, SlotError> {
        let ctx = Context {
            now_ms: 0,
            random: 0,
        };
        let req = Request::Custom(Custom {
            op: op.into(),
            payload: key.to_vec(),
        });
        match s.handle(&ctx, req)?.response {
            Response::Custom(bytes) => Ok(String::from_utf8(bytes).expect("text")),
            other => panic!("unexpected response {other:?}"),
        }
    }

    #[test]
    fn hits_count_per_key() {
        let mut s = slot(10);
        assert_eq!(call(&mut s, "hit", b"alice").as_deref(), Ok("1"));
        assert_eq!(call(&mut s, "hit", b"alice").as_deref(), Ok("2"));
        assert_eq!(call(&mut s, "get", b"alice").as_deref(), Ok("2"));
        assert_eq!(call(&mut s, "get", b"bob").as_deref(), Ok("0"));
        assert!(matches!(
            call(&mut s, "nope", b""),
            Err(SlotError::InvalidArgument(_))
        ));
    }

    #[test]
    fn keys_are_bounded_by_max_keys() {
        let mut s = slot(1);
        call(&mut s, "hit", b"a").expect("first key");
        assert!(matches!(
            call(&mut s, "hit", b"b"),
            Err(SlotError::ResourceExhausted(_))
        ));
        let bad = Config::from(alloc::vec![("maxKeys".into(), "0".into())]);
        let error = __TYPE_NAME__::init(&bad).err().expect("maxKeys 0 is refused");
        assert!(error.contains("maxKeys"), "{error}");
    }

    #[test]
    fn a_snapshot_merges_into_a_standby_with_every_key_intact() {
        let mut owner = slot(10);
        let odd_key = [0xff, 0xfe, b'k'];
        call(&mut owner, "hit", &odd_key).expect("hit");
        call(&mut owner, "hit", &odd_key).expect("hit");
        let mut standby = slot(10);
        standby.merge(&owner.snapshot()).expect("merge");
        assert_eq!(call(&mut standby, "get", &odd_key).as_deref(), Ok("2"));
    }

    #[test]
    fn a_merge_keeps_to_max_keys_and_refuses_garbage() {
        let mut owner = slot(10);
        for key in [b"a", b"b", b"c"] {
            call(&mut owner, "hit", key).expect("hit");
        }
        let mut small = slot(2);
        small.merge(&owner.snapshot()).expect("merge");
        assert_eq!(small.hits.len(), 2);
        assert!(small.merge(&[0xff; 9]).is_err());
    }
}
