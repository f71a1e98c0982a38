//! Replicas that apply random writes and exchange snapshots in any order
//! end up equal.

use super::*;
use alloc::vec;
use proptest::prelude::*;

const KEYS: [&str; 4] = ["a", "b", "c", "d"];
/// Each replica's wall clock is off by this much, so writes race.
const SKEW_MS: [i64; 3] = [0, -700, 400];

#[derive(Debug, Clone)]
enum Step {
    Set(usize, usize, Vec<u8>),
    Delete(usize, usize),
    /// A snapshot from one replica into another, mid-run.
    Sync(usize, usize),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3usize, 0..KEYS.len(), prop::collection::vec(0..3u8, 0..3))
            .prop_map(|(r, k, v)| Step::Set(r, k, v)),
        2 => (0..3usize, 0..KEYS.len()).prop_map(|(r, k)| Step::Delete(r, k)),
        1 => (0..3usize, 0..3usize).prop_map(|(from, to)| Step::Sync(from, to)),
        2 => (0..5u64).prop_map(Step::Wait),
    ]
}

fn replicas(steps: &[Step]) -> Vec<Register> {
    let mut rs: Vec<Register> = ["r0", "r1", "r2"]
        .iter()
        .map(|id| Register::new(id.to_string(), Limits::default()))
        .collect();
    let mut now: i64 = 1_000_000;
    let at = |r: usize, now: i64| now.saturating_add(SKEW_MS[r]).unsigned_abs();
    for s in steps {
        match s {
            Step::Set(r, k, v) => {
                let set = Set {
                    key: KEYS[*k].to_string(),
                    value: v.clone(),
                };
                rs[*r].set(at(*r, now), set).expect("keys and values fit");
            }
            Step::Delete(r, k) => {
                rs[*r].delete(at(*r, now), KEYS[*k]).expect("keys fit");
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
    let mut r = Register::new("m".into(), Limits::default());
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
        let mut own = Register::new("r0".into(), Limits::default());
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
        let snaps: Vec<Vec<u8>> = rs.iter().map(Register::snapshot).collect();
        let expected = merged(&[&snaps[0], &snaps[1], &snaps[2]]);
        let shuffled: Vec<&[u8]> = order.iter().map(|i| snaps[*i].as_slice()).collect();
        prop_assert_eq!(merged(&shuffled), expected.clone());
        // Every replica folding in the others' snapshots reaches the same map.
        for (i, mut r) in rs.into_iter().enumerate() {
            for j in order.iter().filter(|j| **j != i) {
                r.merge(&snaps[*j]).expect("own snapshots decode");
            }
            prop_assert_eq!(r.snapshot(), expected.clone());
        }
    }

    #[test]
    fn a_write_made_after_a_full_merge_wins_everywhere(
        steps in prop::collection::vec(step(), 0..40),
        writer in 0..3usize,
        key in 0..KEYS.len(),
        value in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut rs = replicas(&steps);
        let snaps: Vec<Vec<u8>> = rs.iter().map(Register::snapshot).collect();
        for s in &snaps {
            rs[writer].merge(s).expect("own snapshots decode");
        }
        // The writer's clock may be far behind what it merged: 0 ms.
        let set = Set { key: KEYS[key].to_string(), value: value.clone() };
        rs[writer].set(0, set).expect("keys and values fit");
        let last = rs[writer].snapshot();
        for r in &mut rs {
            r.merge(&last).expect("own snapshots decode");
            match r.get(KEYS[key]).expect("keys fit") {
                Found::Live(e) => prop_assert_eq!(&e.value, &value),
                other => prop_assert!(false, "expected the new value, got {:?}", other),
            }
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
        for op in [OP_SET, OP_GET, OP_DELETE, OP_LIST, "nope"] {
            let req = Request::Custom(Custom { op: op.to_string(), payload: noise.clone() });
            // Garbage payloads are answered, never a panic.
            let _ = rs[2].handle(&now, req);
        }
    }
}
