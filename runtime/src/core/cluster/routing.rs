//! The routing table: who executes each slot, who stands by, who leads.
//!
//! Only the leader computes tables ([`RoutingTable::compute`]); every
//! instance installs the newest one it hears of ([`RoutingTable::is_newer_than`]).
//! Computation starts from the previous table so that assignments move as
//! little as possible: a live owner keeps its slot, and a lost owner is
//! replaced by its standby, which already holds the replicated state.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use vss_wire::partition::{MAX_PARTITIONS, partition_of};

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
    /// The slots whose keys are split into partitions: each partition's
    /// route, by partition number. The slot's own route is that of the
    /// partition of the empty key.
    pub partitions: BTreeMap<u8, Vec<Route>>,
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
    #[error("routing table gives slot {slot} {offered} partitions, more than {max}")]
    TooManyPartitions { slot: u8, offered: usize, max: u16 },
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
        let data = data_instances(healthy, leader);
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
            partitions: BTreeMap::new(),
        }
    }

    /// Spreads the partitions of the split slots (`slots`: each with its
    /// partition count) over the instances that serve data, balanced per
    /// slot (no instance owns more than its share, rounded up), moving as
    /// few as possible from `prev`:
    /// - a live owner within its share keeps its partition;
    /// - a lost owner's partition goes to its standby, which holds the
    ///   state;
    /// - a partition that must move (its owner is over its share, or no
    ///   longer serves data) goes to its standby or the least loaded
    ///   instance, but only once `synced(slot, partition, target)` says the
    ///   target has the partition's state; until then the old owner keeps
    ///   it and the target stands by, so the state moves first.
    ///
    /// Each slot's own route becomes that of the empty key's partition.
    pub fn assign_partitions(
        &mut self,
        prev: Option<&RoutingTable>,
        slots: &[(u8, u16)],
        synced: impl Fn(u8, u16, &str) -> bool,
    ) {
        let data = data_instances(&self.members, &self.leader);
        self.partitions.clear();
        if data.is_empty() {
            return;
        }
        let is_data = |id: &str| data.contains(&id);
        let alive = |id: &str| self.members.contains(id);
        for &(slot, count) in slots {
            let n = usize::from(count);
            let before = prev
                .and_then(|p| p.partitions.get(&slot))
                .filter(|b| b.len() == n);
            let share = n.div_ceil(data.len());
            let mut owned: HashMap<&str, usize> = data.iter().map(|d| (*d, 0)).collect();
            let mut standing: HashMap<&str, usize> = data.iter().map(|d| (*d, 0)).collect();
            let mut routes: Vec<Option<Route>> = vec![None; n];
            // A live owner within its share keeps its partition.
            for (p, route) in routes.iter_mut().enumerate() {
                if let Some(old) = before.map(|b| &b[p])
                    && is_data(&old.owner)
                    && owned[old.owner.as_str()] < share
                {
                    *owned.entry(old.owner.as_str()).or_default() += 1;
                    *route = Some(Route {
                        owner: old.owner.clone(),
                        standby: None,
                    });
                }
            }
            for (p, route) in routes.iter_mut().enumerate() {
                if route.is_some() {
                    continue;
                }
                let part = u16::try_from(p).unwrap_or(u16::MAX);
                let hint = slot.wrapping_add(u8::try_from(p % 256).unwrap_or(0));
                let old = before.map(|b| &b[p]);
                let old_owner = old.map(|r| r.owner.as_str()).filter(|o| alive(o));
                let old_standby = old
                    .and_then(|r| r.standby.as_deref())
                    .filter(|s| is_data(s));
                let next = match (old_owner, old_standby) {
                    // Its owner is lost: the standby holds the state.
                    (None, Some(standby)) => Route {
                        owner: standby.to_string(),
                        standby: None,
                    },
                    (old_owner, _) => {
                        let target = old_standby
                            .filter(|s| owned[s] < share && Some(*s) != old_owner)
                            .unwrap_or_else(|| least_loaded(&data, &owned, hint, old_owner));
                        match old_owner {
                            Some(o) if o != target && !synced(slot, part, target) => Route {
                                owner: o.to_string(),
                                standby: Some(target.to_string()),
                            },
                            _ => Route {
                                owner: target.to_string(),
                                standby: None,
                            },
                        }
                    }
                };
                if let Some(d) = data.iter().find(|d| **d == next.owner) {
                    *owned.entry(d).or_default() += 1;
                }
                *route = Some(next);
            }
            let mut routes: Vec<Route> = routes.into_iter().flatten().collect();
            for (p, route) in routes.iter_mut().enumerate() {
                if let Some(s) = &route.standby {
                    if let Some(d) = data.iter().find(|d| **d == s.as_str()) {
                        *standing.entry(d).or_default() += 1;
                    }
                    continue;
                }
                if data.len() < 2 {
                    continue;
                }
                // Whoever held the state before is the best standby.
                let old = before.map(|b| &b[p]);
                let held = old.into_iter().flat_map(|r| {
                    [r.standby.as_deref(), Some(r.owner.as_str())]
                        .into_iter()
                        .flatten()
                });
                let mut candidates = held.filter(|s| *s != route.owner && is_data(s));
                let hint = slot.wrapping_add(u8::try_from((p + 1) % 256).unwrap_or(0));
                let standby = candidates.next().unwrap_or_else(|| {
                    least_loaded(&data, &standing, hint, Some(route.owner.as_str()))
                });
                if standby != route.owner {
                    *standing.entry(standby).or_default() += 1;
                    route.standby = Some(standby.to_string());
                }
            }
            if let Some(first) = routes.get(usize::from(partition_of("", count))) {
                self.routes.insert(slot, first.clone());
            }
            self.partitions.insert(slot, routes);
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
            && self.partitions == other.partitions
    }

    pub fn route(&self, slot: u8) -> Option<&Route> {
        self.routes.get(&slot)
    }

    /// The route of one partition of `slot` (the slot's own route for a
    /// slot that is not split).
    pub fn route_of(&self, slot: u8, partition: u16) -> Option<&Route> {
        match self.partitions.get(&slot) {
            Some(parts) => parts.get(usize::from(partition)),
            None => self.routes.get(&slot),
        }
    }

    /// Every route with what it routes: each slot that is not split (as
    /// partition 0) and each partition of those that are.
    pub fn parts(&self) -> impl Iterator<Item = ((u8, u16), &Route)> {
        let whole = self
            .routes
            .iter()
            .filter(|(slot, _)| !self.partitions.contains_key(slot))
            .map(|(slot, route)| ((*slot, 0), route));
        let split = self.partitions.iter().flat_map(|(slot, parts)| {
            parts
                .iter()
                .enumerate()
                .map(|(p, route)| ((*slot, u16::try_from(p).unwrap_or(u16::MAX)), route))
        });
        whole.chain(split)
    }

    /// Checks a table another instance offers against the cluster's
    /// members: `routes` are (slot, owner, standby), with "" for no
    /// fallback leader or standby, as they come from the wire.
    pub fn offered(
        epoch: u64,
        leader: String,
        fallback_leader: String,
        members: Vec<String>,
        routes: impl IntoIterator<Item = OfferedRoute>,
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
        let route = |id: u8, owner: String, standby: String| {
            check("owner", &owner)?;
            let standby = (!standby.is_empty()).then_some(standby);
            if let Some(s) = &standby {
                check("standby", s)?;
                if *s == owner {
                    return Err(RoutingError::OwnerIsStandby(owner, id));
                }
            }
            Ok(Route { owner, standby })
        };
        let mut checked = BTreeMap::new();
        let mut partitions = BTreeMap::new();
        for offered in routes {
            let id = u8::try_from(offered.slot)
                .ok()
                .filter(|s| usize::from(*s) < vss_config::MAX_SLOTS)
                .ok_or(RoutingError::SlotOutOfRange(offered.slot))?;
            if checked
                .insert(id, route(id, offered.owner, offered.standby)?)
                .is_some()
            {
                return Err(RoutingError::DuplicateSlot(id));
            }
            if offered.partitions.len() > usize::from(MAX_PARTITIONS) {
                return Err(RoutingError::TooManyPartitions {
                    slot: id,
                    offered: offered.partitions.len(),
                    max: MAX_PARTITIONS,
                });
            }
            if !offered.partitions.is_empty() {
                let parts = offered
                    .partitions
                    .into_iter()
                    .map(|(owner, standby)| route(id, owner, standby))
                    .collect::<Result<Vec<_>, _>>()?;
                partitions.insert(id, parts);
            }
        }
        Ok(RoutingTable {
            epoch,
            leader,
            fallback_leader,
            members: members.into_iter().collect(),
            routes: checked,
            partitions,
        })
    }
}

/// One slot's route as another instance offers it, "" for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedRoute {
    pub slot: u32,
    pub owner: String,
    pub standby: String,
    /// (owner, standby) of each partition, for a split slot.
    pub partitions: Vec<(String, String)>,
}

/// The instances that serve data: with three or more healthy instances
/// every one but the leader, so deciding never competes with serving;
/// with fewer, all of them.
fn data_instances<'a>(healthy: &'a BTreeSet<String>, leader: &str) -> Vec<&'a str> {
    if healthy.len() >= 3 {
        healthy
            .iter()
            .map(String::as_str)
            .filter(|id| *id != leader)
            .collect()
    } else {
        healthy.iter().map(String::as_str).collect()
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

    fn split(
        prev: Option<&RoutingTable>,
        leader: &str,
        healthy: &[&str],
        synced: impl Fn(u8, u16, &str) -> bool,
    ) -> RoutingTable {
        let mut t = table(prev, leader, healthy);
        t.assign_partitions(prev, &[(1, 16)], synced);
        t
    }

    fn owners(t: &RoutingTable) -> BTreeMap<String, usize> {
        let mut count = BTreeMap::new();
        for r in &t.partitions[&1] {
            *count.entry(r.owner.clone()).or_default() += 1;
        }
        count
    }

    #[test]
    fn partitions_spread_evenly_over_the_instances_that_serve_data() {
        let t = split(None, "a", &["a", "b", "c"], |_, _, _| true);
        assert_eq!(t.partitions[&1].len(), 16);
        assert_eq!(
            owners(&t),
            BTreeMap::from([("b".into(), 8), ("c".into(), 8)])
        );
        for r in &t.partitions[&1] {
            assert!(r.standby.is_some() && r.standby.as_deref() != Some(r.owner.as_str()));
        }
        let five = split(None, "a", &["a", "b", "c", "d", "e"], |_, _, _| true);
        assert!(
            owners(&five).values().all(|n| *n == 4),
            "{:?}",
            owners(&five)
        );
    }

    #[test]
    fn the_slot_route_is_that_of_the_empty_keys_partition() {
        let t = split(None, "a", &["a", "b", "c"], |_, _, _| true);
        let p = usize::from(partition_of("", 16));
        assert_eq!(t.routes[&1], t.partitions[&1][p]);
        assert_eq!(t.route_of(1, 3), t.partitions[&1].get(3));
        assert_eq!(t.route_of(0, 3), t.routes.get(&0), "slot 0 is not split");
    }

    #[test]
    fn a_lost_owner_hands_its_partitions_to_their_standbys() {
        let before = split(None, "a", &["a", "b", "c", "d"], |_, _, _| true);
        let after = split(Some(&before), "a", &["a", "c", "d"], |_, _, _| false);
        for (p, (old, new)) in before.partitions[&1]
            .iter()
            .zip(&after.partitions[&1])
            .enumerate()
        {
            if old.owner == "b" {
                assert_eq!(
                    Some(new.owner.as_str()),
                    old.standby.as_deref(),
                    "partition {p}"
                );
            } else {
                assert_eq!(new.owner, old.owner, "partition {p} stays");
            }
        }
    }

    #[test]
    fn a_new_instance_takes_partitions_only_once_it_has_their_state() {
        let before = split(None, "a", &["a", "b", "c"], |_, _, _| true);
        // d joins; nothing has reached it yet.
        let waiting = split(Some(&before), "a", &["a", "b", "c", "d"], |_, _, _| false);
        assert_eq!(owners(&waiting), owners(&before), "no owner moves yet");
        let to_d: Vec<usize> = waiting.partitions[&1]
            .iter()
            .enumerate()
            .filter(|(_, r)| r.standby.as_deref() == Some("d"))
            .map(|(p, _)| p)
            .collect();
        assert_eq!(to_d.len(), 4, "d stands by for the partitions it will own");
        // Their state reached d: they move, and only they.
        let moved = split(Some(&waiting), "a", &["a", "b", "c", "d"], |_, _, s| {
            s == "d"
        });
        let changed: Vec<usize> = (0..16)
            .filter(|p| moved.partitions[&1][*p].owner != before.partitions[&1][*p].owner)
            .collect();
        assert_eq!(
            changed, to_d,
            "the fewest moves: the partitions d stood by for"
        );
        assert!(
            changed
                .iter()
                .all(|p| moved.partitions[&1][*p].owner == "d")
        );
        assert_eq!(
            owners(&moved).values().copied().collect::<Vec<_>>(),
            [6, 6, 4],
            "within one share of each other"
        );
        // The old owner stands by: it holds the state.
        for p in changed {
            assert_eq!(
                moved.partitions[&1][p].standby.as_deref(),
                Some(before.partitions[&1][p].owner.as_str())
            );
        }
    }

    #[test]
    fn a_leader_that_owned_partitions_keeps_them_until_its_standby_is_synced() {
        // Two instances: the leader serves data too.
        let small = split(None, "a", &["a", "b"], |_, _, _| true);
        assert!(owners(&small).contains_key("a"));
        let grown = split(Some(&small), "a", &["a", "b", "c"], |_, _, _| false);
        assert_eq!(
            owners(&grown),
            owners(&small),
            "nothing moves before a sync"
        );
        let shed = split(Some(&grown), "a", &["a", "b", "c"], |_, _, _| true);
        assert!(!owners(&shed).contains_key("a"), "{:?}", owners(&shed));
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
