//! The PN-counter proper: per instance, how much it added and how much it
//! took away.
//!
//! Each instance raises only its own entry, so an entry's totals only grow,
//! and the larger of two copies of an entry is the more recent one. Merging
//! takes the per-entry maximum of each total, which is commutative,
//! associative and idempotent: replicas that have seen the same entries hold
//! the same state, whatever order they heard it in and however often.

use alloc::collections::BTreeMap;
use alloc::string::String;

/// One instance's running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    pub increments: u64,
    pub decrements: u64,
}

impl Entry {
    /// The least entry that is at least both: what both copies have seen.
    pub fn join(self, other: Entry) -> Entry {
        Entry {
            increments: self.increments.max(other.increments),
            decrements: self.decrements.max(other.decrements),
        }
    }
}

/// Which total a change raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

/// Every instance's entry, by instance id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    by_instance: BTreeMap<String, Entry>,
}

impl Totals {
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry of `instance` (all zero if it never changed anything).
    pub fn get(&self, instance: &str) -> Entry {
        self.by_instance.get(instance).copied().unwrap_or_default()
    }

    /// Raises one total of `instance` by `amount`. On overflow nothing
    /// changes and the error holds the current total.
    pub fn add(&mut self, instance: &str, direction: Direction, amount: u64) -> Result<(), u64> {
        let mut entry = self.get(instance);
        let total = match direction {
            Direction::Up => &mut entry.increments,
            Direction::Down => &mut entry.decrements,
        };
        *total = total.checked_add(amount).ok_or(*total)?;
        self.by_instance.insert(String::from(instance), entry);
        Ok(())
    }

    /// Folds in a copy of `instance`'s entry seen elsewhere.
    pub fn join(&mut self, instance: String, entry: Entry) {
        let slot = self.by_instance.entry(instance).or_default();
        *slot = slot.join(entry);
    }

    /// Entries in instance-id order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Entry)> {
        self.by_instance.iter().map(|(k, v)| (k.as_str(), *v))
    }

    pub fn len(&self) -> usize {
        self.by_instance.len()
    }

    /// Sums of all increments and of all decrements. Each entry fits a u64
    /// but their sum may not, so the sums are exact in u128 (which holds
    /// the sum of 2^64 full entries).
    pub fn sums(&self) -> (u128, u128) {
        self.by_instance
            .values()
            .fold((0u128, 0u128), |(inc, dec), e| {
                (
                    inc.saturating_add(u128::from(e.increments)),
                    dec.saturating_add(u128::from(e.decrements)),
                )
            })
    }
}

/// `increments - decrements`, clamped to the i64 range.
pub fn clamped_difference(increments: u128, decrements: u128) -> i64 {
    if increments >= decrements {
        i64::try_from(increments - decrements).unwrap_or(i64::MAX)
    } else {
        // -(d) for d up to 2^63 is representable; anything larger clamps.
        let d = decrements - increments;
        i64::try_from(d).map(|d| -d).unwrap_or(i64::MIN)
    }
}

/// A sum shown as a u64, clamped.
pub fn clamped_u64(sum: u128) -> u64 {
    u64::try_from(sum).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_raises_only_the_named_total() {
        let mut t = Totals::new();
        t.add("a", Direction::Up, 5).expect("no overflow");
        t.add("a", Direction::Down, 2).expect("no overflow");
        assert_eq!(
            t.get("a"),
            Entry {
                increments: 5,
                decrements: 2
            }
        );
        assert_eq!(t.get("b"), Entry::default());
    }

    #[test]
    fn overflow_changes_nothing_and_reports_the_total() {
        let mut t = Totals::new();
        t.add("a", Direction::Up, u64::MAX).expect("fits exactly");
        assert_eq!(t.add("a", Direction::Up, 1), Err(u64::MAX));
        assert_eq!(t.get("a").increments, u64::MAX);
        assert!(t.add("a", Direction::Down, u64::MAX).is_ok());
    }

    #[test]
    fn join_takes_each_total_s_maximum() {
        let mut t = Totals::new();
        t.add("a", Direction::Up, 5).expect("no overflow");
        t.join(
            "a".into(),
            Entry {
                increments: 3,
                decrements: 4,
            },
        );
        assert_eq!(
            t.get("a"),
            Entry {
                increments: 5,
                decrements: 4
            }
        );
    }

    #[test]
    fn sums_exceed_u64_without_wrapping() {
        let mut t = Totals::new();
        t.add("a", Direction::Up, u64::MAX).expect("fits");
        t.add("b", Direction::Up, u64::MAX).expect("fits");
        let (inc, dec) = t.sums();
        assert_eq!(inc, 2 * u128::from(u64::MAX));
        assert_eq!(dec, 0);
        assert_eq!(clamped_u64(inc), u64::MAX);
        assert_eq!(clamped_difference(inc, dec), i64::MAX);
    }

    #[test]
    fn difference_clamps_at_both_ends() {
        assert_eq!(clamped_difference(7, 3), 4);
        assert_eq!(clamped_difference(3, 7), -4);
        assert_eq!(clamped_difference(0, 1 << 63), i64::MIN);
        assert_eq!(clamped_difference(0, (1 << 63) + 1), i64::MIN);
        assert_eq!(clamped_difference(0, (1 << 63) - 1), -i64::MAX);
        assert_eq!(clamped_difference(1 << 63, 0), i64::MAX);
    }
}
