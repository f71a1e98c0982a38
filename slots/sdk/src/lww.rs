//! Last-writer-wins building blocks for slot types whose state lives on
//! every instance: a hybrid logical clock, the version it stamps, and a map
//! that keeps the winning write of each key.
//!
//! A hybrid logical clock (HLC) reads the wall clock but never goes back
//! and never falls behind a version it has seen: a write made after seeing
//! another write always gets the higher version, however far the two
//! instances' clocks are apart. Wall-clock skew then only decides between
//! writes that were truly concurrent.
//!
//! [`LwwMap`] is the state of the `register` and `registry` slot types:
//! each instance writes locally and folds in its peers' maps, and because
//! the winner of every key is decided by a total order, not by arrival
//! order, all instances end with the same map once they have seen the same
//! writes.

use alloc::collections::{BTreeMap, btree_map};
use alloc::string::String;
use core::borrow::Borrow;
use core::cmp::Ordering;
use core::ops::RangeBounds;

use crate::codec::{DecodeError, Reader, Wire, Writer};

/// Bits of an HLC value that count writes within one millisecond.
pub const LOGICAL_BITS: u32 = 16;

/// When and where a write was made. Versions order by HLC, then by
/// instance id, so every instance picks the same winner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Version {
    /// Milliseconds since the Unix epoch in the high 48 bits, a counter in
    /// the low 16.
    pub hlc: u64,
    /// The instance that made the write.
    pub instance: String,
}

impl Version {
    /// The wall-clock part, ms since the Unix epoch.
    pub fn physical_ms(&self) -> u64 {
        self.hlc >> LOGICAL_BITS
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.hlc
            .cmp(&other.hlc)
            .then_with(|| self.instance.cmp(&other.instance))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Wire for Version {
    fn write(&self, w: &mut Writer) {
        w.u64(self.hlc).str(&self.instance);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            hlc: r.u64()?,
            instance: r.str()?,
        })
    }
}

/// A hybrid logical clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    last: u64,
}

impl Clock {
    /// A fresh HLC value for a local write at wall-clock `now_ms`: above
    /// every value handed out or observed before.
    pub fn tick(&mut self, now_ms: u64) -> u64 {
        let physical = now_ms.min(u64::MAX >> LOGICAL_BITS) << LOGICAL_BITS;
        self.last = physical.max(self.last.saturating_add(1));
        self.last
    }

    /// Takes in a value seen in a peer's state, so later local writes
    /// order after it.
    pub fn observe(&mut self, hlc: u64) {
        self.last = self.last.max(hlc);
    }

    /// The highest value handed out or observed.
    pub fn last(&self) -> u64 {
        self.last
    }
}

/// A value and the version of the write that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped<V> {
    pub version: Version,
    pub value: V,
}

impl<V: Ord> Stamped<V> {
    /// Whether this write wins over `other`: the higher version, and for
    /// equal versions (which only a forged or corrupted snapshot holds) the
    /// greater value, so the order is total and every instance keeps the
    /// same one whatever order the copies arrive in.
    pub fn beats(&self, other: &Self) -> bool {
        (&self.version, &self.value) > (&other.version, &other.value)
    }
}

/// Bytes a [`Version`] takes at least in a snapshot: the HLC and the
/// length of the instance id.
const MIN_VERSION_BYTES: usize = 16;

/// A last-writer-wins map: per key, the [`Stamped`] value that
/// [`beats`](Stamped::beats) every other one seen.
///
/// Folding the same writes in any order, any number of times, gives the
/// same map (merge is commutative, associative and idempotent, as long as
/// the keys stay under the cap [`LwwMap::merge`] is given), so instances
/// that exchange their maps converge. Iteration is in key order,
/// so equal maps encode to equal bytes.
///
/// The map removes nothing by itself: deletes are writes of a tombstone
/// value, and when those may be forgotten is the slot type's call
/// ([`LwwMap::retain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LwwMap<K, V> {
    entries: BTreeMap<K, Stamped<V>>,
}

impl<K, V> Default for LwwMap<K, V> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
        }
    }
}

impl<K: Ord, V: Ord> LwwMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&Stamped<V>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.get(key)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.contains_key(key)
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &Stamped<V>)> {
        self.entries.iter()
    }

    /// Entries whose keys fall in `range`, in key order.
    pub fn range<Q, R>(&self, range: R) -> impl Iterator<Item = (&K, &Stamped<V>)>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
        R: RangeBounds<Q>,
    {
        self.entries.range(range)
    }

    /// Stores the write unless the entry already held beats it; returns
    /// whether it was stored.
    ///
    /// A local write stamped with a fresh [`Clock::tick`] always wins, as
    /// long as every version in the map went through the same clock (made
    /// here, or [`observe`](Clock::observe)d by [`LwwMap::merge`]).
    pub fn put(&mut self, key: K, version: Version, value: V) -> bool {
        let write = Stamped { version, value };
        match self.entries.entry(key) {
            btree_map::Entry::Vacant(slot) => {
                slot.insert(write);
                true
            }
            btree_map::Entry::Occupied(mut slot) => {
                let won = write.beats(slot.get());
                if won {
                    slot.insert(write);
                }
                won
            }
        }
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &Stamped<V>) -> bool) {
        self.entries.retain(|k, v| keep(k, v));
    }

    /// Folds a peer's map into this one, taking every incoming version into
    /// `clock` so a later local write orders after all of them.
    ///
    /// Entries `admit` refuses are skipped (a slot type passes its own
    /// bounds on keys and values, so a peer with looser ones cannot grow
    /// this map past them); their versions are still observed, since the
    /// peer keeps them and a later local write must beat them there too.
    ///
    /// Keys this map already holds are always resolved. A new key is taken
    /// only while the map holds fewer than `cap` entries; past that, new
    /// keys are dropped, visiting `incoming` in key order, so the same map
    /// and the same snapshot always keep the same keys. Memory stays
    /// bounded; the price is that replicas whose union of keys exceeds
    /// `cap` may disagree about which keys exist (never about the value of
    /// a key they both hold). Returns how many incoming entries were not
    /// taken, refused or past the cap.
    pub fn merge(
        &mut self,
        incoming: Self,
        cap: usize,
        clock: &mut Clock,
        mut admit: impl FnMut(&K, &Stamped<V>) -> bool,
    ) -> usize {
        let mut not_taken = 0;
        for (key, write) in incoming.entries {
            clock.observe(write.version.hlc);
            let past_cap = self.entries.len() >= cap && !self.entries.contains_key(&key);
            if past_cap || !admit(&key, &write) {
                not_taken += 1;
                continue;
            }
            self.put(key, write.version, write.value);
        }
        not_taken
    }

    /// Writes the entries in key order, each as `put` writes its key and
    /// value, followed by its version.
    pub fn write_with(&self, w: &mut Writer, mut put: impl FnMut(&mut Writer, &K, &V)) {
        w.u64(self.entries.len() as u64);
        for (key, write) in &self.entries {
            put(w, key, &write.value);
            write.version.write(w);
        }
    }

    /// Reads what [`LwwMap::write_with`] wrote, `get` reading one key and
    /// value of at least `min_entry_bytes` bytes. A key that appears twice
    /// keeps the write that wins, as if the two had been merged.
    pub fn read_with(
        r: &mut Reader,
        min_entry_bytes: usize,
        mut get: impl FnMut(&mut Reader) -> Result<(K, V), DecodeError>,
    ) -> Result<Self, DecodeError> {
        let n = r.count(min_entry_bytes.saturating_add(MIN_VERSION_BYTES))?;
        let mut map = Self::new();
        for _ in 0..n {
            let (key, value) = get(r)?;
            let version = Version::read(r)?;
            map.put(key, version, value);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_back_and_passes_what_it_saw() {
        let mut c = Clock::default();
        let a = c.tick(1_000);
        let b = c.tick(999);
        assert!(b > a, "a clock that steps back still moves forward");
        c.observe((5_000 << LOGICAL_BITS) + 3);
        let d = c.tick(1_001);
        assert!(
            d > (5_000 << LOGICAL_BITS) + 3,
            "a write after seeing a newer one orders after it"
        );
    }

    #[test]
    fn versions_break_ties_by_instance() {
        let a = Version {
            hlc: 7,
            instance: "a".into(),
        };
        let b = Version {
            hlc: 7,
            instance: "b".into(),
        };
        assert!(b > a);
        assert!(
            Version {
                hlc: 8,
                instance: "a".into()
            } > b
        );
    }

    fn v(hlc: u64, instance: &str) -> Version {
        Version {
            hlc,
            instance: instance.into(),
        }
    }

    fn map(writes: &[(&str, u64, &str, u8)]) -> LwwMap<String, u8> {
        let mut m = LwwMap::new();
        for (key, hlc, instance, value) in writes {
            m.put(String::from(*key), v(*hlc, instance), *value);
        }
        m
    }

    fn encode(m: &LwwMap<String, u8>) -> alloc::vec::Vec<u8> {
        let mut w = Writer::new();
        m.write_with(&mut w, |w, k, val| {
            w.str(k).u8(*val);
        });
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<LwwMap<String, u8>, DecodeError> {
        let mut r = Reader::new(bytes);
        let m = LwwMap::read_with(&mut r, 9, |r| Ok((r.str()?, r.u8()?)))?;
        r.end()?;
        Ok(m)
    }

    #[test]
    fn put_keeps_the_higher_version() {
        let mut m = map(&[("k", 5, "a", 1)]);
        assert!(!m.put("k".into(), v(4, "z"), 2), "an older write loses");
        assert!(m.put("k".into(), v(6, "a"), 3));
        assert_eq!(m.get("k").map(|s| s.value), Some(3));
    }

    #[test]
    fn equal_versions_are_decided_by_the_value() {
        let one_way = map(&[("k", 5, "a", 1), ("k", 5, "a", 9)]);
        let other_way = map(&[("k", 5, "a", 9), ("k", 5, "a", 1)]);
        assert_eq!(one_way, other_way);
        assert_eq!(one_way.get("k").map(|s| s.value), Some(9));
    }

    #[test]
    fn merge_is_order_independent_and_observes_every_version() {
        let a = map(&[("x", 1, "a", 1), ("y", 9, "a", 1)]);
        let b = map(&[("x", 3, "b", 2), ("z", 2, "b", 2)]);
        let (mut ab, mut ba) = (a.clone(), b.clone());
        let (mut c1, mut c2) = (Clock::default(), Clock::default());
        ab.merge(b.clone(), 10, &mut c1, |_, _| true);
        ba.merge(a.clone(), 10, &mut c2, |_, _| true);
        assert_eq!(ab, ba);
        assert_eq!(c1.last(), 3, "saw b's versions");
        assert_eq!(c2.last(), 9, "saw a's versions");
        let again = ab.clone();
        ab.merge(again.clone(), 10, &mut c1, |_, _| true);
        assert_eq!(ab, again, "merging a map into itself changes nothing");
    }

    #[test]
    fn merge_past_the_cap_still_resolves_known_keys_but_drops_new_ones() {
        let mut m = map(&[("b", 1, "a", 1)]);
        let incoming = map(&[("a", 5, "b", 2), ("b", 5, "b", 2), ("c", 5, "b", 2)]);
        let dropped = m.merge(incoming, 2, &mut Clock::default(), |_, _| true);
        assert_eq!(dropped, 1);
        let keys: alloc::vec::Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b"], "new keys are taken in key order");
        assert_eq!(m.get("b").map(|s| s.value), Some(2));
    }

    #[test]
    fn merge_skips_refused_entries_but_observes_them() {
        let mut m = LwwMap::new();
        let mut clock = Clock::default();
        let incoming = map(&[("ok", 3, "b", 1), ("refused", 8, "b", 1)]);
        let not_taken = m.merge(incoming, 10, &mut clock, |k: &String, _| k != "refused");
        assert_eq!(not_taken, 1);
        assert_eq!(m, map(&[("ok", 3, "b", 1)]));
        assert_eq!(clock.last(), 8);
    }

    #[test]
    fn encoding_round_trips_in_key_order() {
        let m = map(&[("b", 2, "x", 7), ("a", 1, "y", 8)]);
        let bytes = encode(&m);
        assert_eq!(decode(&bytes), Ok(m.clone()));
        assert_eq!(bytes, encode(&decode(&bytes).unwrap_or_default()));
    }

    #[test]
    fn decoding_refuses_garbage_without_panicking() {
        let bytes = encode(&map(&[("a", 1, "y", 8)]));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&u64::MAX.to_le_bytes()).is_err(), "forged count");
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
    }
}
