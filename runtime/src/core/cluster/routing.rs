//! The routing table: who executes each slot, who stands by, who leads.
//!
//! Only the leader computes tables ([`RoutingTable::compute`]); every
//! instance installs the newest one it hears of ([`RoutingTable::is_newer_than`]).
//! Computation starts from the previous table so that assignments move as
//! little as possible: a live owner keeps its slot, and a lost owner is
//! replaced by its standby, which already holds the replicated state.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Who serves one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Executes the slot ("main data instance").
    pub owner: String,
    /// Receives the owner's state; None when only one instance holds data.
    pub standby: Option<String>,
}

/// One published routing decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTable {
    pub epoch: u64,
    pub leader: String,
    pub fallback_leader: Option<String>,
    /// Instances that were healthy when the table was made.
    pub members: BTreeSet<String>,
    pub routes: BTreeMap<u8, Route>,
}

/// Why a routing table from a peer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoutingError {
    #[error("routing table epoch 0 is reserved for \"no table\"")]
    ZeroEpoch,
    #[error("routing table names {id:?} as {role}, which is not a member of this cluster")]
    UnknownInstance { role: &'static str, id: String },
    #[error("routing table routes slot {0}, but slots are 0-99")]
    SlotOutOfRange(u32),
    #[error("routing table routes slot {0} twice")]
    DuplicateSlot(u8),
    #[error("routing table names {0:?} as both owner and standby of slot {1}")]
    OwnerIsStandby(String, u8),
    #[error(
        "routing epoch {offered} (leader {offered_leader}) is not newer than the held epoch {held} (leader {held_leader})"
    )]
    Stale {
        offered: u64,
        offered_leader: String,
        held: u64,
        held_leader: String,
    },
}

impl RoutingTable {
    /// The table the leader publishes for `healthy` (which includes the
    /// leader itself), keeping as much of `prev` as still holds.
    ///
    /// With three or more healthy instances the leader executes no slots,
    /// so deciding never competes with serving. A slot whose owner is gone
    /// moves to its standby. A slot the leader itself still owns (it served
    /// data while the cluster was small) moves to its standby only once
    /// `synced(slot, standby)` says the standby received the state;
    /// until then the leader keeps it, so no state is dropped on the way.
    /// New assignments go to the least loaded instance.
    pub fn compute(
        prev: Option<&RoutingTable>,
        leader: &str,
        healthy: &BTreeSet<String>,
        slots: impl IntoIterator<Item = u8>,
        synced: impl Fn(u8, &str) -> bool,
        epoch: u64,
    ) -> RoutingTable {
        let data: Vec<&str> = if healthy.len() >= 3 {
            healthy
                .iter()
                .map(String::as_str)
                .filter(|id| *id != leader)
                .collect()
        } else {
            healthy.iter().map(String::as_str).collect()
        };
        let is_data = |id: &str| data.contains(&id);
        let mut owned: HashMap<&str, usize> = data.iter().map(|d| (*d, 0)).collect();
        let mut standing: HashMap<&str, usize> = data.iter().map(|d| (*d, 0)).collect();
        let mut routes = BTreeMap::new();
        for slot in slots {
            if data.is_empty() {
                break;
            }
            let before = prev.and_then(|p| p.routes.get(&slot));
            let kept_owner = before.map(|r| r.owner.as_str()).filter(|o| is_data(o));
            let promoted = before
                .and_then(|r| r.standby.as_deref())
                .filter(|s| is_data(s));
            let leader_sheds = before.is_some_and(|r| r.owner == leader) && !is_data(leader);
            let owner = if leader_sheds {
                promoted.filter(|s| synced(slot, s)).unwrap_or(leader)
            } else {
                kept_owner
                    .or(promoted)
                    .unwrap_or_else(|| least_loaded(&data, &owned, slot, None))
            };
            *owned.entry(owner).or_default() += 1;
            let standby = if data.len() < 2 {
                None
            } else {
                // Whoever held the state before (old standby, or an old owner
                // that is still alive) is the best standby: nothing to copy.
                let held_state = before.into_iter().flat_map(|r| {
                    [r.standby.as_deref(), Some(r.owner.as_str())]
                        .into_iter()
                        .flatten()
                });
                let mut candidates = held_state.filter(|s| *s != owner && is_data(s));
                Some(
                    candidates
                        .next()
                        .unwrap_or_else(|| least_loaded(&data, &standing, slot + 1, Some(owner))),
                )
            };
            if let Some(s) = standby {
                *standing.entry(s).or_default() += 1;
            }
            routes.insert(
                slot,
                Route {
                    owner: owner.to_string(),
                    standby: standby.map(str::to_string),
                },
            );
        }
        let fallback_leader = prev
            .and_then(|p| p.fallback_leader.as_deref())
            .filter(|f| *f != leader && healthy.contains(*f))
            .or_else(|| healthy.iter().map(String::as_str).find(|id| *id != leader))
            .map(str::to_string);
        RoutingTable {
            epoch,
            leader: leader.to_string(),
            fallback_leader,
            members: healthy.clone(),
            routes,
        }
    }

    /// Whether this table should replace `held`: a higher epoch wins.
    /// Leaders publish disjoint sets of epochs, so equal epochs mean the
    /// same table; the leader id still breaks a tie with a peer that does
    /// not follow that rule, the same way on every instance.
    pub fn is_newer_than(&self, held: &RoutingTable) -> bool {
        (self.epoch, self.leader.as_str()) > (held.epoch, held.leader.as_str())
    }

    /// Same decisions as `other`, whatever the epoch.
    pub fn same_assignment(&self, other: &RoutingTable) -> bool {
        self.leader == other.leader
            && self.fallback_leader == other.fallback_leader
            && self.members == other.members
            && self.routes == other.routes
    }

    pub fn route(&self, slot: u8) -> Option<&Route> {
        self.routes.get(&slot)
    }

    /// Checks a table another instance offers against the cluster's
    /// members: `routes` are (slot, owner, standby), with "" for no
    /// fallback leader or standby, as they come from the wire.
    pub fn offered(
        epoch: u64,
        leader: String,
        fallback_leader: String,
        members: Vec<String>,
        routes: impl IntoIterator<Item = (u32, String, String)>,
        known: &HashSet<String>,
    ) -> Result<RoutingTable, RoutingError> {
        if epoch == 0 {
            return Err(RoutingError::ZeroEpoch);
        }
        let check = |role: &'static str, id: &str| {
            if known.contains(id) {
                Ok(())
            } else {
                Err(RoutingError::UnknownInstance {
                    role,
                    id: id.to_string(),
                })
            }
        };
        check("leader", &leader)?;
        let fallback_leader = (!fallback_leader.is_empty()).then_some(fallback_leader);
        if let Some(f) = &fallback_leader {
            check("fallback leader", f)?;
        }
        for m in &members {
            check("member", m)?;
        }
        let mut checked = BTreeMap::new();
        for (slot, owner, standby) in routes {
            let id = u8::try_from(slot)
                .ok()
                .filter(|s| usize::from(*s) < vss_config::MAX_SLOTS)
                .ok_or(RoutingError::SlotOutOfRange(slot))?;
            check("owner", &owner)?;
            let standby = (!standby.is_empty()).then_some(standby);
            if let Some(s) = &standby {
                check("standby", s)?;
                if *s == owner {
                    return Err(RoutingError::OwnerIsStandby(owner, id));
                }
            }
            if checked.insert(id, Route { owner, standby }).is_some() {
                return Err(RoutingError::DuplicateSlot(id));
            }
        }
        Ok(RoutingTable {
            epoch,
            leader,
            fallback_leader,
            members: members.into_iter().collect(),
            routes: checked,
        })
    }
}

/// The data instance holding the fewest assignments in `load`; ties go to
/// the instance at `hint` (mod the count), so a fresh table spreads
/// consecutive slots round-robin.
fn least_loaded<'a>(
    data: &[&'a str],
    load: &HashMap<&'a str, usize>,
    hint: u8,
    exclude: Option<&str>,
) -> &'a str {
    let n = data.len();
    let start = usize::from(hint) % n;
    (0..n)
        .map(|i| data[(start + i) % n])
        .filter(|d| Some(*d) != exclude)
        .min_by_key(|d| load.get(d).copied().unwrap_or(0))
        .unwrap_or(data[start])
}

/// The first epoch above `seen` that the `index`-th of `members` sorted
/// instances may publish: its epochs are those ≡ `index` (mod `members`).
/// Two leaders (a stale one and a new one, during a change of view)
/// therefore never publish different tables under one epoch.
pub fn next_epoch(seen: u64, index: usize, members: usize) -> u64 {
    let n = u64::try_from(members.max(1)).unwrap_or(u64::MAX);
    let index = u64::try_from(index).unwrap_or(0) % n;
    let next = seen.saturating_add(1);
    next.saturating_add((index + n - next % n) % n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn table(prev: Option<&RoutingTable>, leader: &str, healthy: &[&str]) -> RoutingTable {
        RoutingTable::compute(
            prev,
            leader,
            &set(healthy),
            [0, 1, 2, 3, 10, 11],
            |_, _| true,
            1,
        )
    }

    #[test]
    fn leader_owns_nothing_with_three_instances() {
        let t = table(None, "a", &["a", "b", "c"]);
        for r in t.routes.values() {
            assert_ne!(r.owner, "a");
            assert_ne!(r.standby.as_deref(), Some("a"));
            assert!(r.standby.is_some());
            assert_ne!(r.standby.as_deref(), Some(r.owner.as_str()));
        }
        let on_b = t.routes.values().filter(|r| r.owner == "b").count();
        assert_eq!(on_b, 3, "slots spread evenly: {t:?}");
        assert_eq!(t.fallback_leader.as_deref(), Some("b"));
    }

    #[test]
    fn lost_owner_is_replaced_by_its_standby() {
        let before = table(None, "a", &["a", "b", "c"]);
        let after = table(Some(&before), "a", &["a", "c"]);
        for (slot, r) in &before.routes {
            let now = &after.routes[slot];
            if r.owner == "b" {
                assert_eq!(now.owner, "c", "slot {slot} goes to its standby");
                assert_eq!(now.standby.as_deref(), Some("a"));
            } else {
                assert_eq!(now.owner, r.owner, "slot {slot} stays");
            }
        }
    }

    #[test]
    fn rejoined_instance_gets_roles_and_leader_sheds_data() {
        let three = table(None, "a", &["a", "b", "c"]);
        let two = table(Some(&three), "a", &["a", "c"]);
        let back = table(Some(&two), "a", &["a", "b", "c"]);
        for (slot, r) in &back.routes {
            assert_ne!(r.owner, "a", "slot {slot}");
            assert_ne!(r.standby.as_deref(), Some("a"), "slot {slot}");
            // Nothing moves away from the instance that kept serving.
            assert_eq!(r.owner, "c", "slot {slot}");
            assert_eq!(r.standby.as_deref(), Some("b"), "slot {slot}");
        }
    }

    #[test]
    fn leader_keeps_its_slots_until_the_standby_has_the_state() {
        let alone = table(None, "c", &["c"]);
        let healthy = set(&["a", "b", "c"]);
        let slots = [0, 1, 2, 3, 10, 11];
        let first = RoutingTable::compute(Some(&alone), "c", &healthy, slots, |_, _| false, 2);
        for (slot, r) in &first.routes {
            assert_eq!(
                r.owner, "c",
                "slot {slot} stays with the leader until synced"
            );
            let standby = r.standby.as_deref().expect("a standby to sync");
            assert_ne!(standby, "c");
        }
        let second = RoutingTable::compute(Some(&first), "c", &healthy, slots, |_, _| true, 3);
        for (slot, r) in &second.routes {
            assert_eq!(
                Some(r.owner.as_str()),
                first.routes[slot].standby.as_deref(),
                "slot {slot} moves to the synced standby"
            );
            assert_ne!(r.standby.as_deref(), Some("c"));
        }
    }

    #[test]
    fn single_instance_owns_everything_without_standby() {
        let t = table(None, "a", &["a"]);
        assert!(
            t.routes
                .values()
                .all(|r| r.owner == "a" && r.standby.is_none())
        );
        assert_eq!(t.fallback_leader, None);
    }

    #[test]
    fn newer_breaks_epoch_ties_by_leader() {
        let mut a = table(None, "a", &["a", "b", "c"]);
        let mut b = table(None, "b", &["a", "b", "c"]);
        a.epoch = 4;
        b.epoch = 4;
        assert!(b.is_newer_than(&a));
        assert!(!a.is_newer_than(&b));
        a.epoch = 5;
        assert!(a.is_newer_than(&b));
        assert!(!a.is_newer_than(&a.clone()));
    }

    #[test]
    fn leaders_take_disjoint_epochs_above_all_seen() {
        assert_eq!(next_epoch(0, 0, 1), 1);
        assert_eq!(next_epoch(7, 0, 1), 8);
        // Three members: a takes 3, 6, ...; b 1, 4, ...; c 2, 5, ...
        assert_eq!(next_epoch(0, 0, 3), 3);
        assert_eq!(next_epoch(0, 1, 3), 1);
        assert_eq!(next_epoch(0, 2, 3), 2);
        assert_eq!(next_epoch(4, 1, 3), 7);
        for seen in 0..50 {
            let mut taken = std::collections::HashSet::new();
            for index in 0..5 {
                let e = next_epoch(seen, index, 5);
                assert!(e > seen && e <= seen + 5, "seen {seen} index {index}: {e}");
                assert_eq!(e % 5, index as u64);
                assert!(taken.insert(e), "two members got epoch {e}");
            }
        }
    }
}
