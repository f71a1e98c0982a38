//! Property tests: merge is a join (commutative, associative, idempotent),
//! replicas converge however merges are ordered or repeated, and the
//! converged value is the exact sum of the changes that were applied.

use super::tests::{call, change};
use super::*;
use proptest::prelude::*;

const INSTANCES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Step {
    Change {
        replica: usize,
        up: bool,
        amount: u64,
        request_id: u64,
    },
    Merge {
        from: usize,
        to: usize,
    },
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        // Few request ids, so retries (on the same or another replica) are common.
        6 => (0usize..3, any::<bool>(), 1u64..1_000, 0u64..8).prop_map(
            |(replica, up, amount, request_id)| Step::Change {
                replica,
                up,
                amount,
                request_id,
            }
        ),
        3 => (0usize..3, 0usize..3).prop_map(|(from, to)| Step::Merge { from, to }),
        1 => prop_oneof![0u64..5_000, Just(REQUEST_ID_TTL_MS + 1)].prop_map(Step::Advance),
    ]
}

/// Small bounds make pruning of request ids part of what merges see.
fn capacity() -> impl Strategy<Value = usize> {
    prop_oneof![1usize..5, Just(MAX_REQUEST_IDS)]
}

/// Runs `steps` on one replica per instance; returns the replicas and the
/// sum of the changes they applied.
fn run(capacity: usize, steps: &[Step]) -> (Vec<Counter>, i128) {
    let mut replicas: Vec<Counter> = INSTANCES
        .iter()
        .map(|id| Counter::with_request_id_capacity(*id, false, capacity))
        .collect();
    let mut now = 1_000u64;
    let mut applied = 0i128;
    for s in steps {
        match *s {
            Step::Change {
                replica,
                up,
                amount,
                request_id,
            } => {
                let op = if up { OP_INCREMENT } else { OP_DECREMENT };
                let v = call(&mut replicas[replica], op, change(amount, request_id), now)
                    .expect("small amounts never overflow");
                if v.applied {
                    let amount = i128::from(amount);
                    applied += if up { amount } else { -amount };
                }
            }
            Step::Merge { from, to } => {
                let state = replicas[from].snapshot();
                replicas[to].merge(&state).expect("a replica's snapshot");
            }
            Step::Advance(ms) => now += ms,
        }
    }
    (replicas, applied)
}

fn merged(into: &Counter, from: &Counter) -> Counter {
    let mut out = into.clone();
    out.merge(&from.snapshot()).expect("a replica's snapshot");
    out
}

fn history() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(step(), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn merge_is_commutative_associative_and_idempotent(
        capacity in capacity(),
        steps in history(),
    ) {
        let (r, _) = run(capacity, &steps);
        let (a, b, c) = (&r[0], &r[1], &r[2]);
        prop_assert_eq!(merged(a, b).snapshot(), merged(b, a).snapshot());
        prop_assert_eq!(
            merged(&merged(a, b), c).snapshot(),
            merged(a, &merged(b, c)).snapshot()
        );
        prop_assert_eq!(merged(a, a).snapshot(), a.snapshot());
        prop_assert_eq!(merged(&merged(a, b), b).snapshot(), merged(a, b).snapshot());
    }

    #[test]
    fn any_order_and_repetition_of_merges_converges(
        capacity in capacity(),
        steps in history(),
        order in proptest::collection::vec(0usize..3, 0..8)
            .prop_map(|mut v| { v.extend([0, 1, 2]); v })
            .prop_shuffle(),
    ) {
        let (r, _) = run(capacity, &steps);
        let all = merged(&merged(&r[0], &r[1]), &r[2]);
        let mut fresh = Counter::with_request_id_capacity("d", false, capacity);
        for &i in &order {
            fresh.merge(&r[i].snapshot()).expect("a replica's snapshot");
        }
        prop_assert_eq!(fresh.snapshot(), all.snapshot());
    }

    #[test]
    fn after_a_full_exchange_every_replica_reads_the_exact_sum(
        capacity in capacity(),
        steps in history(),
    ) {
        let (mut r, applied) = run(capacity, &steps);
        // Gossip along a ring twice: every state reaches every replica.
        for _ in 0..2 {
            for i in 0..r.len() {
                let next = (i + 1) % r.len();
                let state = r[i].snapshot();
                r[next].merge(&state).expect("a replica's snapshot");
            }
        }
        let first = r[0].snapshot();
        for replica in &r {
            prop_assert_eq!(replica.snapshot(), first.clone());
            prop_assert_eq!(i128::from(replica.read().value), applied);
        }
    }
}
