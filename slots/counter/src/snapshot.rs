//! The counter's replicated state in binary form.
//!
//! Version 1: a version byte, the entries (instance id, increments,
//! decrements) in ascending id order, then the recent request ids
//! (id, first-seen ms) in ascending id order. The decoder accepts only that
//! canonical form, so equal states have equal bytes and a peer's garbage is
//! refused whole, before anything is merged.

use alloc::string::String;
use alloc::vec::Vec;
use vss_slot_sdk::codec::{DecodeError, Reader, Wire, Writer};

use crate::recent::RecentIds;
use crate::totals::{Entry, Totals};

pub const VERSION: u8 = 1;

/// Smallest encoded entry: an empty id's length prefix plus two totals.
const MIN_ENTRY_BYTES: usize = 8 + 8 + 8;
/// An encoded request id: the id and its first-seen time.
const RECENT_BYTES: usize = 8 + 8;

/// Writes the state in the canonical form.
pub fn encode(totals: &Totals, recent: &RecentIds) -> Vec<u8> {
    let mut w = Writer::new();
    write_parts(
        &mut w,
        (totals.len(), totals.iter()),
        (recent.len(), recent.iter()),
    );
    w.finish()
}

/// One writer for both the live state and a decoded [`Snapshot`], so the
/// two forms cannot drift apart. Each part comes with its length.
fn write_parts<'a>(
    w: &mut Writer,
    (n_entries, entries): (usize, impl Iterator<Item = (&'a str, Entry)>),
    (n_recent, recent): (usize, impl Iterator<Item = (u64, u64)>),
) {
    w.u8(VERSION);
    w.u64(n_entries as u64);
    for (id, e) in entries {
        w.str(id).u64(e.increments).u64(e.decrements);
    }
    w.u64(n_recent as u64);
    for (id, seen_ms) in recent {
        w.u64(id).u64(seen_ms);
    }
}

/// A decoded snapshot, not yet merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub entries: Vec<(String, Entry)>,
    pub recent: Vec<(u64, u64)>,
}

impl Wire for Snapshot {
    fn write(&self, w: &mut Writer) {
        write_parts(
            w,
            (
                self.entries.len(),
                self.entries.iter().map(|(id, e)| (id.as_str(), *e)),
            ),
            (self.recent.len(), self.recent.iter().copied()),
        );
    }

    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        if r.u8()? != VERSION {
            return Err(DecodeError("unknown counter snapshot version"));
        }
        let n = r.count(MIN_ENTRY_BYTES)?;
        let mut entries: Vec<(String, Entry)> = Vec::with_capacity(n);
        for _ in 0..n {
            let id = r.str()?;
            let entry = Entry {
                increments: r.u64()?,
                decrements: r.u64()?,
            };
            if entries.last().is_some_and(|(prev, _)| *prev >= id) {
                return Err(DecodeError("instance ids not in ascending order"));
            }
            entries.push((id, entry));
        }
        let m = r.count(RECENT_BYTES)?;
        let mut recent: Vec<(u64, u64)> = Vec::with_capacity(m);
        for _ in 0..m {
            let id = r.u64()?;
            let seen_ms = r.u64()?;
            if id == 0 {
                return Err(DecodeError(
                    "request id 0 (no deduplication) in the recent ids",
                ));
            }
            if recent.last().is_some_and(|&(prev, _)| prev >= id) {
                return Err(DecodeError("request ids not in ascending order"));
            }
            recent.push((id, seen_ms));
        }
        Ok(Self { entries, recent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            entries: alloc::vec![
                (
                    "a".into(),
                    Entry {
                        increments: 3,
                        decrements: 1
                    }
                ),
                (
                    "b".into(),
                    Entry {
                        increments: u64::MAX,
                        decrements: 0
                    }
                ),
            ],
            recent: alloc::vec![(1, 10), (u64::MAX, 20)],
        }
    }

    #[test]
    fn round_trips() {
        let s = sample();
        assert_eq!(Snapshot::from_bytes(&s.to_bytes()), Ok(s));
    }

    #[test]
    fn encode_matches_the_wire_form() {
        let s = sample();
        let mut totals = Totals::new();
        for (id, e) in &s.entries {
            totals.join(id.clone(), *e);
        }
        let mut recent = RecentIds::new(8);
        recent.join(s.recent.iter().copied());
        assert_eq!(encode(&totals, &recent), s.to_bytes());
    }

    #[test]
    fn refuses_non_canonical_forms() {
        let mut s = sample();
        s.entries.swap(0, 1);
        assert!(Snapshot::from_bytes(&s.to_bytes()).is_err(), "unsorted ids");

        let mut s = sample();
        s.entries[1].0 = "a".into();
        assert!(Snapshot::from_bytes(&s.to_bytes()).is_err(), "repeated id");

        let mut s = sample();
        s.recent = alloc::vec![(5, 1), (5, 2)];
        assert!(
            Snapshot::from_bytes(&s.to_bytes()).is_err(),
            "repeated request id"
        );

        let mut s = sample();
        s.recent = alloc::vec![(0, 1)];
        assert!(Snapshot::from_bytes(&s.to_bytes()).is_err(), "request id 0");
    }

    #[test]
    fn refuses_every_truncation_and_trailing_bytes() {
        let bytes = sample().to_bytes();
        for len in 0..bytes.len() {
            assert!(Snapshot::from_bytes(&bytes[..len]).is_err(), "length {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Snapshot::from_bytes(&longer).is_err());
    }

    #[test]
    fn refuses_forged_counts_without_allocating_for_them() {
        let mut w = Writer::new();
        w.u8(VERSION).u64(u64::MAX);
        assert!(Snapshot::from_bytes(&w.finish()).is_err());
        let mut w = Writer::new();
        w.u8(VERSION).u64(0).u64(u64::MAX / 2);
        assert!(Snapshot::from_bytes(&w.finish()).is_err());
    }

    #[test]
    fn refuses_other_versions() {
        let mut bytes = sample().to_bytes();
        bytes[0] = VERSION + 1;
        assert!(Snapshot::from_bytes(&bytes).is_err());
    }
}
