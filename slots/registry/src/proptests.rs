//! Replicas that apply random announces and withdraws and exchange
//! snapshots in any order end up equal.

use super::*;
use alloc::vec;
use proptest::prelude::*;

const ENTRIES: [(&str, &str); 4] = [("api", "a"), ("api", "b"), ("web", "a"), ("web", "c")];
/// Each replica's wall clock is off by this much, so writes race.
const SKEW_MS: [i64; 3] = [0, -700, 400];

#[derive(Debug, Clone)]
enum Step {
    Announce(usize, usize, Option<u64>),
    Withdraw(usize, usize),
    /// A snapshot from one replica into another, mid-run.
    Sync(usize, usize),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3usize, 0..ENTRIES.len(), prop::option::of(1..5_000u64))
            .prop_map(|(r, e, ttl)| Step::Announce(r, e, ttl)),
        2 => (0..3usize, 0..ENTRIES.len()).prop_map(|(r, e)| Step::Withdraw(r, e)),
        1 => (0..3usize, 0..3usize).prop_map(|(from, to)| Step::Sync(from, to)),
        2 => (0..2_000u64).prop_map(Step::Wait),
    ]
}

fn entry(e: usize) -> (String, String) {
    (ENTRIES[e].0.to_string(), ENTRIES[e].1.to_string())
}

fn replicas(steps: &[Step]) -> Vec<Registry> {
    let mut rs: Vec<Registry> = ["r0", "r1", "r2"]
        .iter()
        .map(|id| Registry::new(id.to_string(), Limits::default()))
        .collect();
    let mut now: i64 = 1_000_000;
    let at = |r: usize, now: i64| now.saturating_add(SKEW_MS[r]).unsigned_abs();
    for s in steps {
        match s {
            Step::Announce(r, e, ttl_ms) => {
                let (app, address) = entry(*e);
                let a = Announce {
                    app,
                    address,
                    ttl_ms: *ttl_ms,
                };
                rs[*r]
                    .announce(at(*r, now), a)
                    .expect("entries and ttls fit");
            }
            Step::Withdraw(r, e) => {
                let (app, address) = entry(*e);
                rs[*r]
                    .withdraw(at(*r, now), Withdraw { app, address })
                    .expect("entries fit");
            }
            Step::Sync(from, to) => {
                let snap = rs[*from].snapshot();
                rs[*to].merge(&snap).expect("own snapshots decode");
            }
            Step::Wait(ms) => now += *ms as i64,
        }
    }
    rs
}

/// A fresh replica's snapshot after merging `snaps` in order.
fn merged(snaps: &[&[u8]]) -> Vec<u8> {
    let mut r = Registry::new("m".into(), Limits::default());
    for s in snaps {
        r.merge(s).expect("own snapshots decode");
    }
    r.snapshot()
}

/// An order of merges that names each of three snapshots at least once,
/// some more than once.
fn merge_order() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..3usize, 0..6).prop_flat_map(|extra| {
        let mut all = vec![0, 1, 2];
        all.extend(extra);
        Just(all).prop_shuffle()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn merge_is_commutative_associative_and_idempotent(
        steps in prop::collection::vec(step(), 0..40),
    ) {
        let rs = replicas(&steps);
        let (a, b, c) = (rs[0].snapshot(), rs[1].snapshot(), rs[2].snapshot());
        prop_assert_eq!(merged(&[&a, &b]), merged(&[&b, &a]));
        let ab = merged(&[&a, &b]);
        let bc = merged(&[&b, &c]);
        prop_assert_eq!(merged(&[&ab, &c]), merged(&[&a, &bc]));
        prop_assert_eq!(merged(&[&a, &a]), a.clone());
        let mut own = Registry::new("r0".into(), Limits::default());
        own.merge(&a).expect("own snapshots decode");
        own.merge(&a).expect("own snapshots decode");
        prop_assert_eq!(own.snapshot(), a);
    }

    #[test]
    fn any_order_and_repetition_of_merges_converges(
        steps in prop::collection::vec(step(), 0..40),
        order in merge_order(),
    ) {
        let rs = replicas(&steps);
        let snaps: Vec<Vec<u8>> = rs.iter().map(Registry::snapshot).collect();
        let expected = merged(&[&snaps[0], &snaps[1], &snaps[2]]);
        let shuffled: Vec<&[u8]> = order.iter().map(|i| snaps[*i].as_slice()).collect();
        prop_assert_eq!(merged(&shuffled), expected.clone());
        // Every replica folding in the others' snapshots reaches the same
        // map, and so lists the same services at any moment.
        let mut lists = Vec::new();
        for (i, mut r) in rs.into_iter().enumerate() {
            for j in order.iter().filter(|j| **j != i) {
                r.merge(&snaps[*j]).expect("own snapshots decode");
            }
            prop_assert_eq!(r.snapshot(), expected.clone());
            lists.push(r.list(1_010_000, &ListApp { app: String::new() }).expect("valid app"));
        }
        prop_assert!(lists.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn an_announce_made_after_a_full_merge_wins_everywhere(
        steps in prop::collection::vec(step(), 0..40),
        writer in 0..3usize,
        e in 0..ENTRIES.len(),
    ) {
        let mut rs = replicas(&steps);
        let snaps: Vec<Vec<u8>> = rs.iter().map(Registry::snapshot).collect();
        for s in &snaps {
            rs[writer].merge(s).expect("own snapshots decode");
        }
        // The writer's clock may be far behind what it merged.
        let (app, address) = entry(e);
        let a = Announce { app: app.clone(), address, ttl_ms: Some(3_600_000) };
        let announced = rs[writer].announce(0, a).expect("entries and ttls fit");
        let last = rs[writer].snapshot();
        for r in &mut rs {
            r.merge(&last).expect("own snapshots decode");
            let services = r.list(0, &ListApp { app: app.clone() }).expect("valid app");
            let found = services.services.iter().find(|s| s.address == ENTRIES[e].1);
            prop_assert_eq!(found.map(|s| s.expires_ms), Some(announced.expires_ms));
        }
    }

    #[test]
    fn garbage_and_corrupted_snapshots_fail_cleanly_or_merge(
        steps in prop::collection::vec(step(), 0..20),
        noise in prop::collection::vec(any::<u8>(), 0..64),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut rs = replicas(&steps);
        let mut corrupted = rs[1].snapshot();
        for (i, byte) in &flips {
            if !corrupted.is_empty() {
                let at = i.index(corrupted.len());
                corrupted[at] ^= byte | 1;
            }
        }
        for bad in [noise.clone(), corrupted] {
            let (before, clock) = (rs[0].snapshot(), rs[0].clock);
            if rs[0].merge(&bad).is_err() {
                prop_assert_eq!(rs[0].snapshot(), before);
                prop_assert_eq!(rs[0].clock, clock);
            }
        }
        let now = Context { now_ms: 1_000_000, random: 0 };
        for op in [OP_ANNOUNCE, OP_WITHDRAW, OP_LIST, "nope"] {
            let req = Request::Custom(Custom { op: op.to_string(), payload: noise.clone() });
            // Garbage payloads are answered, never a panic.
            let _ = rs[2].handle(&now, req);
        }
    }
}
