//! Per-key state with a bound on the number of keys.
//!
//! Limiters keep one bucket per caller key (a user id, an IP) so one slot can
//! limit per user. Keys arrive from the network, so their number must be
//! bounded: when a new key would exceed `max_keys`, entries that are idle
//! (their state equals a fresh one, e.g. a bucket that has refilled to full)
//! are dropped first, since forgetting them changes nothing; only if none is
//! idle is the least recently used entry evicted.

use alloc::collections::BTreeMap;
use alloc::string::String;

/// State that can tell whether forgetting it would change any answer.
pub trait Evictable {
    /// True when this entry, at `now_ms`, is indistinguishable from a new one.
    fn is_idle_at(&self, now_ms: u64) -> bool;
    /// When the entry was last used, for least-recently-used eviction.
    fn last_used_ms(&self) -> u64;
}

/// One unkeyed entry plus up to `max_keys` keyed entries.
#[derive(Debug, Clone)]
pub struct Keyed<T> {
    single: Option<T>,
    keys: BTreeMap<String, T>,
    max_keys: usize,
    evictions: u64,
}

impl<T: Evictable> Keyed<T> {
    pub fn new(max_keys: usize) -> Self {
        Self {
            single: None,
            keys: BTreeMap::new(),
            max_keys: max_keys.max(1),
            evictions: 0,
        }
    }

    /// The entry for `key` (None: the unkeyed one), created with `make` on first use.
    pub fn entry(&mut self, key: Option<&str>, now_ms: u64, make: impl FnOnce() -> T) -> &mut T {
        let Some(key) = key else {
            return self.single.get_or_insert_with(make);
        };
        if !self.keys.contains_key(key) {
            if self.keys.len() >= self.max_keys {
                self.make_room(now_ms);
            }
            self.keys.insert(String::from(key), make());
        }
        self.keys
            .get_mut(key)
            .expect("the key was inserted just above if it was missing")
    }

    fn make_room(&mut self, now_ms: u64) {
        let before = self.keys.len();
        self.keys.retain(|_, v| !v.is_idle_at(now_ms));
        if self.keys.len() >= self.max_keys {
            let oldest = self
                .keys
                .iter()
                .min_by_key(|(_, v)| v.last_used_ms())
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.keys.remove(&k);
            }
        }
        self.evictions += (before - self.keys.len()) as u64;
    }

    /// Entries dropped to stay within `max_keys` since creation.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub fn single(&self) -> Option<&T> {
        self.single.as_ref()
    }

    pub fn keys(&self) -> impl Iterator<Item = (&str, &T)> {
        self.keys.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Sets an entry directly (used when merging a snapshot), keeping the bound.
    pub fn put(&mut self, key: Option<String>, value: T, now_ms: u64) {
        match key {
            None => self.single = Some(value),
            Some(k) => {
                if !self.keys.contains_key(&k) && self.keys.len() >= self.max_keys {
                    self.make_room(now_ms);
                }
                self.keys.insert(k, value);
            }
        }
    }

    pub fn get(&self, key: Option<&str>) -> Option<&T> {
        match key {
            None => self.single.as_ref(),
            Some(k) => self.keys.get(k),
        }
    }

    pub fn get_mut(&mut self, key: Option<&str>) -> Option<&mut T> {
        match key {
            None => self.single.as_mut(),
            Some(k) => self.keys.get_mut(k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Entry {
        idle: bool,
        used: u64,
    }

    impl Evictable for Entry {
        fn is_idle_at(&self, _now_ms: u64) -> bool {
            self.idle
        }
        fn last_used_ms(&self) -> u64 {
            self.used
        }
    }

    #[test]
    fn unkeyed_entry_does_not_count_against_max_keys() {
        let mut k = Keyed::new(1);
        k.entry(None, 0, || Entry {
            idle: false,
            used: 0,
        });
        k.entry(Some("a"), 0, || Entry {
            idle: false,
            used: 0,
        });
        assert_eq!(k.key_count(), 1);
        assert!(k.single().is_some());
    }

    #[test]
    fn idle_entries_are_evicted_before_busy_ones() {
        let mut k = Keyed::new(2);
        k.entry(Some("busy-old"), 0, || Entry {
            idle: false,
            used: 1,
        });
        k.entry(Some("idle-new"), 0, || Entry {
            idle: true,
            used: 5,
        });
        k.entry(Some("c"), 10, || Entry {
            idle: false,
            used: 10,
        });
        assert!(k.get(Some("busy-old")).is_some());
        assert!(k.get(Some("idle-new")).is_none());
        assert_eq!(k.evictions(), 1);
    }

    #[test]
    fn least_recently_used_is_evicted_when_none_is_idle() {
        let mut k = Keyed::new(2);
        k.entry(Some("a"), 0, || Entry {
            idle: false,
            used: 3,
        });
        k.entry(Some("b"), 0, || Entry {
            idle: false,
            used: 1,
        });
        k.entry(Some("c"), 10, || Entry {
            idle: false,
            used: 10,
        });
        assert_eq!(k.key_count(), 2);
        assert!(k.get(Some("b")).is_none());
        assert!(k.get(Some("a")).is_some());
    }
}
