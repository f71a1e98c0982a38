//! Request ids of recently applied changes, so a retried change is applied
//! once.
//!
//! The set is replicated with the totals, so a retry that reaches another
//! instance is recognised there too. It must stay a join-semilattice to keep
//! the counter's merge commutative, associative and idempotent, and it must
//! stay bounded. Both hold with this rule: a merge takes the union, keeping
//! for an id the *later* of two first-seen times, then keeps only the
//! `capacity` greatest `(seen_ms, id)` pairs.
//!
//! Why the later time: merging only ever raises a kept pair's rank, so a
//! pair that ranked below `capacity` others stays below them in every
//! larger union, and pruning early never changes a later result
//! (`prune(prune(a ∪ b) ∪ c) = prune(a ∪ b ∪ c)`). Keeping the earlier time
//! breaks that: an id pruned from `a ∪ b` with time 1 can come back from `c`
//! with time 3 and rank high, while the full union would keep time 1 and
//! prune it. Two first-seen times for one id only arise when two instances
//! applied it concurrently (neither had heard of the other's), so the choice
//! only moves when that id expires.
//!
//! Expiry by age is a local step (in `handle` and `tick`), never part of a
//! merge: it depends on the local clock, and a merge must not.

use alloc::collections::{BTreeMap, BTreeSet};

/// Request ids with the time each was first seen, at most `capacity` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentIds {
    by_id: BTreeMap<u64, u64>,
    /// The same pairs as `(seen_ms, id)`, oldest first, for pruning.
    by_age: BTreeSet<(u64, u64)>,
    capacity: usize,
}

impl RecentIds {
    /// An empty set; `capacity` is at least 1.
    pub fn new(capacity: usize) -> Self {
        Self {
            by_id: BTreeMap::new(),
            by_age: BTreeSet::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn contains(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// When `id` was first seen, if it is in the set.
    #[cfg(test)]
    pub fn seen_ms(&self, id: u64) -> Option<u64> {
        self.by_id.get(&id).copied()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Records a newly applied id. Returns false (and changes nothing) if
    /// the id was already known.
    pub fn insert(&mut self, id: u64, now_ms: u64) -> bool {
        if self.contains(id) {
            return false;
        }
        self.put(id, now_ms);
        self.prune();
        true
    }

    /// Folds in pairs from another replica (union, later time wins, then
    /// the bound).
    pub fn join(&mut self, pairs: impl IntoIterator<Item = (u64, u64)>) {
        for (id, seen_ms) in pairs {
            match self.by_id.get(&id) {
                Some(&ours) if ours >= seen_ms => {}
                _ => self.put(id, seen_ms),
            }
        }
        self.prune();
    }

    /// Forgets ids first seen more than `ttl_ms` before `now_ms`. A clock
    /// that went backwards forgets nothing.
    pub fn expire(&mut self, now_ms: u64, ttl_ms: u64) {
        let Some(cutoff) = now_ms.checked_sub(ttl_ms) else {
            return;
        };
        while let Some(&(seen_ms, id)) = self.by_age.first() {
            if seen_ms >= cutoff {
                break;
            }
            self.by_age.pop_first();
            self.by_id.remove(&id);
        }
    }

    /// `(id, seen_ms)` pairs in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.by_id.iter().map(|(&id, &seen)| (id, seen))
    }

    fn put(&mut self, id: u64, seen_ms: u64) {
        if let Some(old) = self.by_id.insert(id, seen_ms) {
            self.by_age.remove(&(old, id));
        }
        self.by_age.insert((seen_ms, id));
    }

    fn prune(&mut self) {
        while self.by_id.len() > self.capacity {
            let Some((_, id)) = self.by_age.pop_first() else {
                break;
            };
            self.by_id.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn of(capacity: usize, pairs: &[(u64, u64)]) -> RecentIds {
        let mut r = RecentIds::new(capacity);
        r.join(pairs.iter().copied());
        r
    }

    fn joined(a: &RecentIds, b: &RecentIds) -> RecentIds {
        let mut out = a.clone();
        out.join(b.iter());
        out
    }

    #[test]
    fn insert_reports_whether_the_id_was_new() {
        let mut r = RecentIds::new(8);
        assert!(r.insert(7, 100));
        assert!(!r.insert(7, 200));
        assert_eq!(r.seen_ms(7), Some(100), "a repeat keeps the first time");
    }

    #[test]
    fn keeps_the_newest_pairs_when_full() {
        let mut r = RecentIds::new(2);
        r.insert(1, 10);
        r.insert(2, 30);
        r.insert(3, 20);
        assert_eq!(r.iter().collect::<Vec<_>>(), [(2, 30), (3, 20)]);
        // Equal times rank by id.
        r.insert(4, 20);
        assert_eq!(r.iter().collect::<Vec<_>>(), [(2, 30), (4, 20)]);
    }

    #[test]
    fn join_keeps_the_later_time_of_an_id() {
        let mut r = of(8, &[(1, 10)]);
        r.join([(1, 5)]);
        assert_eq!(r.seen_ms(1), Some(10));
        r.join([(1, 15)]);
        assert_eq!(r.seen_ms(1), Some(15));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn expire_drops_ids_older_than_the_ttl_only() {
        let mut r = of(8, &[(1, 1_000), (2, 2_000), (3, 3_000)]);
        r.expire(2_500, 500);
        assert_eq!(r.iter().collect::<Vec<_>>(), [(2, 2_000), (3, 3_000)]);
        r.expire(100, 500);
        assert_eq!(r.len(), 2, "a clock before the ttl expires nothing");
    }

    #[test]
    fn keeping_the_earlier_time_would_not_be_associative() {
        // The counterexample from the module docs, with capacity 1: the
        // later-time rule gives the same answer both ways.
        let a = of(1, &[(10, 1)]);
        let b = of(1, &[(20, 2)]);
        let c = of(1, &[(10, 3)]);
        assert_eq!(
            joined(&joined(&a, &b), &c),
            joined(&a, &joined(&b, &c)),
            "(a ∪ b) ∪ c = a ∪ (b ∪ c)"
        );
    }

    fn pairs() -> impl Strategy<Value = Vec<(u64, u64)>> {
        // Few distinct ids and times, so ids collide and ranks tie.
        proptest::collection::vec((1u64..12, 0u64..8), 0..10)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn pruned_union_is_a_semilattice(
            cap in 1usize..5,
            a in pairs(),
            b in pairs(),
            c in pairs(),
        ) {
            let (a, b, c) = (of(cap, &a), of(cap, &b), of(cap, &c));
            prop_assert_eq!(joined(&a, &b), joined(&b, &a));
            prop_assert_eq!(joined(&joined(&a, &b), &c), joined(&a, &joined(&b, &c)));
            prop_assert_eq!(joined(&a, &a), a.clone());
            prop_assert!(joined(&a, &b).len() <= cap);
        }

        #[test]
        fn pruning_early_equals_pruning_once(cap in 1usize..5, a in pairs(), b in pairs()) {
            let mut all = a.clone();
            all.extend(b.iter().copied());
            prop_assert_eq!(joined(&of(cap, &a), &of(cap, &b)), of(cap, &all));
        }
    }
}
