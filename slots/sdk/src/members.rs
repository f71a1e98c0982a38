//! Registered clients of a signal slot, with their consecutive delivery
//! failures.
//!
//! A client is deregistered after `dereg_tries` failed deliveries in a row;
//! a delivered message resets its count. The number of members is bounded
//! (client ids come from the network).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::SlotError;
use crate::codec::{DecodeError, Reader, Writer};

/// Most members one slot keeps.
pub const MAX_MEMBERS: usize = 100_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    failures: BTreeMap<String, u64>,
    dereg_tries: u64,
}

impl Members {
    pub fn new(dereg_tries: u64) -> Self {
        Self {
            failures: BTreeMap::new(),
            dereg_tries: dereg_tries.max(1),
        }
    }

    pub fn register(&mut self, client: String) -> Result<(), SlotError> {
        if !self.failures.contains_key(&client) && self.failures.len() >= MAX_MEMBERS {
            return Err(SlotError::ResourceExhausted(format!(
                "slot has {MAX_MEMBERS} registered clients, the most allowed"
            )));
        }
        self.failures.insert(client, 0);
        Ok(())
    }

    pub fn deregister(&mut self, client: &str) -> bool {
        self.failures.remove(client).is_some()
    }

    /// Records a delivery outcome; returns true if the client was just
    /// deregistered for failing `dereg_tries` times in a row.
    pub fn record(&mut self, client: &str, delivered: bool) -> bool {
        let Some(count) = self.failures.get_mut(client) else {
            return false;
        };
        if delivered {
            *count = 0;
            return false;
        }
        *count += 1;
        if *count >= self.dereg_tries {
            self.failures.remove(client);
            return true;
        }
        false
    }

    pub fn ids(&self) -> impl ExactSizeIterator<Item = &String> {
        self.failures.keys()
    }

    pub fn len(&self) -> usize {
        self.failures.len()
    }

    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn contains(&self, client: &str) -> bool {
        self.failures.contains_key(client)
    }

    pub fn get(&self, index: usize) -> Option<&String> {
        self.failures.keys().nth(index)
    }

    /// The members as a snapshot (see [`Members::merge_snapshot`]).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.finish()
    }

    /// Merges a snapshot from [`Members::snapshot`] into this set.
    pub fn merge_snapshot(&mut self, state: &[u8]) -> Result<(), String> {
        let mut r = Reader::new(state);
        self.merge_from(&mut r).map_err(|e| format!("{e}"))?;
        r.end().map_err(|e| format!("{e}"))
    }

    pub fn encode(&self, w: &mut Writer) {
        w.u64(self.failures.len() as u64);
        for (client, failures) in &self.failures {
            w.str(client).u64(*failures);
        }
    }

    /// Reads members written by [`Members::encode`] into this set (union;
    /// the higher failure count wins).
    pub fn merge_from(&mut self, r: &mut Reader) -> Result<(), DecodeError> {
        let n = r.u64()?;
        let mut incoming = Vec::new();
        for _ in 0..n {
            incoming.push((r.str()?, r.u64()?));
        }
        for (client, failures) in incoming {
            if self.failures.len() >= MAX_MEMBERS && !self.failures.contains_key(&client) {
                break;
            }
            let ours = self.failures.entry(client).or_insert(failures);
            *ours = (*ours).max(failures);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_failures_deregister_and_success_resets() {
        let mut m = Members::new(2);
        m.register("a".into()).expect("room");
        assert!(!m.record("a", false));
        assert!(!m.record("a", true), "success resets the count");
        assert!(!m.record("a", false));
        assert!(m.record("a", false), "second failure in a row deregisters");
        assert!(!m.contains("a"));
        assert!(!m.record("a", false), "unknown clients are ignored");
    }

    #[test]
    fn snapshot_round_trips() {
        let mut m = Members::new(3);
        m.register("x".into()).expect("room");
        m.register("y".into()).expect("room");
        m.record("y", false);
        let mut w = Writer::new();
        m.encode(&mut w);
        let bytes = w.finish();
        let mut copy = Members::new(3);
        copy.merge_from(&mut Reader::new(&bytes)).expect("decodes");
        assert_eq!(copy, m);
    }
}
