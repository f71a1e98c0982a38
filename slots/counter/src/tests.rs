//! The counter through its slot interface: config, every op and error,
//! deduplication, snapshots and merges.

use super::*;
use alloc::vec;
use vss_slot_sdk::Acquire;
use vss_slot_sdk::codec::Writer;

pub(crate) fn ctx(now_ms: u64) -> Context {
    Context { now_ms, random: 0 }
}

fn config(pairs: &[(&str, &str)]) -> Config {
    Config::from(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
    )
}

fn custom(op: &str, payload: Vec<u8>) -> Request {
    Request::Custom(Custom {
        op: op.into(),
        payload,
    })
}

/// Sends one op through `handle` and decodes the reply.
pub(crate) fn call(
    c: &mut Counter,
    op: &str,
    payload: Vec<u8>,
    now_ms: u64,
) -> Result<Value, SlotError> {
    let reply = c.handle(&ctx(now_ms), custom(op, payload))?;
    assert!(reply.effects.is_empty(), "counter ops have no effects");
    match reply.response {
        Response::Custom(bytes) => Ok(Value::from_bytes(&bytes).expect("a Value")),
        other => panic!("expected a custom response, got {other:?}"),
    }
}

pub(crate) fn change(amount: u64, request_id: u64) -> Vec<u8> {
    Change { amount, request_id }.to_bytes()
}

fn inc(c: &mut Counter, amount: u64, request_id: u64, now_ms: u64) -> Value {
    call(c, OP_INCREMENT, change(amount, request_id), now_ms).expect("increment")
}

fn dec(c: &mut Counter, amount: u64, request_id: u64, now_ms: u64) -> Value {
    call(c, OP_DECREMENT, change(amount, request_id), now_ms).expect("decrement")
}

fn read(c: &mut Counter) -> Value {
    call(c, OP_READ, Vec::new(), 0).expect("read")
}

fn merged_from(c: &mut Counter, other: &Counter) {
    c.merge(&other.snapshot())
        .expect("a snapshot of the same type");
}

fn invalid(result: Result<Value, SlotError>) -> String {
    match result {
        Err(SlotError::InvalidArgument(msg)) => msg,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

fn unsupported(result: Result<Value, SlotError>) -> String {
    match result {
        Err(SlotError::Unsupported(msg)) => msg,
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn init_reads_instance_and_grow_only() {
    let c = Counter::init(&config(&[("instance", "vss-0")])).expect("valid");
    assert_eq!(c.instance(), "vss-0");
    assert_eq!(c.grow_only(), DEFAULT_GROW_ONLY);
    let c = Counter::init(&config(&[("instance", "vss-0"), ("growOnly", "true")])).expect("valid");
    assert!(c.grow_only());
    let c = Counter::init(&config(&[("instance", "vss-0"), ("growOnly", "false")])).expect("valid");
    assert!(!c.grow_only());
}

#[test]
fn init_errors_name_the_field() {
    let err = Counter::init(&config(&[])).expect_err("no instance");
    assert!(err.contains("`instance` is required"), "{err}");
    let err = Counter::init(&config(&[("instance", "")])).expect_err("empty instance");
    assert!(err.contains("`instance` must not be empty"), "{err}");
    let err = Counter::init(&config(&[("instance", "a"), ("growOnly", "yes")]))
        .expect_err("not a boolean");
    assert!(err.contains("`growOnly`") && err.contains("`yes`"), "{err}");
}

#[test]
fn increments_and_decrements_sum_to_the_value() {
    let mut c = Counter::new("a", false);
    let v = inc(&mut c, 5, 0, 0);
    assert_eq!(
        v,
        Value {
            value: 5,
            increments: 5,
            decrements: 0,
            applied: true
        }
    );
    let v = dec(&mut c, 8, 0, 0);
    assert_eq!((v.value, v.increments, v.decrements), (-3, 5, 8));
    assert!(v.applied);
    assert_eq!(read(&mut c), v, "read answers the same value");
}

#[test]
fn read_of_a_new_counter_is_zero_and_applied() {
    let mut c = Counter::new("a", false);
    assert_eq!(
        read(&mut c),
        Value {
            value: 0,
            increments: 0,
            decrements: 0,
            applied: true
        }
    );
}

#[test]
fn amount_zero_is_invalid_for_both_changes() {
    let mut c = Counter::new("a", false);
    for op in [OP_INCREMENT, OP_DECREMENT] {
        let msg = invalid(call(&mut c, op, change(0, 1), 0));
        assert_eq!(msg, "`amount` must be at least 1");
    }
    assert_eq!(read(&mut c).value, 0);
    assert!(
        c.recent.is_empty(),
        "a refused change records no request id"
    );
}

#[test]
fn a_change_that_would_overflow_is_refused_and_changes_nothing() {
    let mut c = Counter::new("a", false);
    inc(&mut c, u64::MAX, 0, 0);
    let before = c.clone();
    let msg = invalid(call(&mut c, OP_INCREMENT, change(1, 9), 0));
    assert!(msg.contains("`amount`"), "{msg}");
    assert_eq!(c, before, "nothing changed, request id 9 not recorded");
    // The other total still has room.
    let v = dec(&mut c, u64::MAX, 0, 0);
    assert_eq!((v.value, v.decrements), (0, u64::MAX));
    let msg = invalid(call(&mut c, OP_DECREMENT, change(1, 0), 0));
    assert!(
        msg.contains("`amount`") && msg.contains("decrements"),
        "{msg}"
    );
}

#[test]
fn decrement_on_a_grow_only_counter_is_unsupported() {
    let mut c = Counter::new("a", true);
    inc(&mut c, 3, 0, 0);
    let msg = unsupported(call(&mut c, OP_DECREMENT, change(1, 0), 0));
    assert!(
        msg.contains("growOnly: true") && msg.contains("`decrement`"),
        "{msg}"
    );
    assert_eq!(read(&mut c).value, 3);
}

#[test]
fn bad_payloads_are_invalid_and_name_the_op() {
    let mut c = Counter::new("a", false);
    for op in [OP_INCREMENT, OP_DECREMENT] {
        for payload in [vec![], vec![1, 2, 3], {
            let mut p = change(1, 1);
            p.push(0);
            p
        }] {
            let msg = invalid(call(&mut c, op, payload, 0));
            assert!(msg.contains(&format!("`{op}`")), "{msg}");
        }
    }
    let msg = invalid(call(&mut c, OP_READ, vec![0], 0));
    assert!(msg.contains("`read`"), "{msg}");
    assert_eq!(read(&mut c).value, 0);
}

#[test]
fn unknown_ops_list_the_known_ones() {
    let mut c = Counter::new("a", false);
    let msg = unsupported(call(&mut c, "reset", Vec::new(), 0));
    assert!(msg.contains("`reset`"), "{msg}");
    for op in [OP_INCREMENT, OP_DECREMENT, OP_READ] {
        assert!(msg.contains(op), "{msg}");
    }
}

#[test]
fn other_verbs_are_unsupported() {
    let mut c = Counter::new("a", false);
    let err = c
        .handle(
            &ctx(0),
            Request::Acquire(Acquire {
                key: None,
                tokens: None,
            }),
        )
        .expect_err("not a counter verb");
    assert_eq!(
        err,
        SlotError::Unsupported("slot type counter does not support `acquire`".into())
    );
}

#[test]
fn a_repeated_request_id_is_applied_once() {
    let mut c = Counter::new("a", false);
    assert!(inc(&mut c, 5, 42, 1_000).applied);
    let v = inc(&mut c, 5, 42, 2_000);
    assert!(!v.applied);
    assert_eq!(v.value, 5, "the repeat answers the current value");
    // Request ids name a change, whatever its direction.
    let v = dec(&mut c, 5, 42, 3_000);
    assert!(!v.applied);
    assert_eq!(v.value, 5);
}

#[test]
fn request_id_zero_is_never_deduplicated() {
    let mut c = Counter::new("a", false);
    inc(&mut c, 1, 0, 0);
    assert!(inc(&mut c, 1, 0, 0).applied);
    assert_eq!(read(&mut c).value, 2);
    assert!(c.recent.is_empty());
}

#[test]
fn a_retry_on_another_instance_is_applied_once_after_merging() {
    let mut a = Counter::new("a", false);
    let mut b = Counter::new("b", false);
    assert!(inc(&mut a, 7, 99, 1_000).applied);
    merged_from(&mut b, &a);
    let v = inc(&mut b, 7, 99, 1_500);
    assert!(!v.applied, "b has seen request 99 through a's state");
    assert_eq!(v.value, 7);
    merged_from(&mut a, &b);
    assert_eq!(a.snapshot(), b.snapshot());
    assert_eq!(read(&mut a).value, 7);
}

#[test]
fn request_ids_expire_after_ten_minutes() {
    let mut c = Counter::new("a", false);
    inc(&mut c, 1, 5, 1_000);
    assert!(
        !inc(&mut c, 1, 5, 1_000 + REQUEST_ID_TTL_MS).applied,
        "exactly ten minutes old is still remembered"
    );
    assert!(inc(&mut c, 1, 5, 1_001 + REQUEST_ID_TTL_MS).applied);
    assert_eq!(read(&mut c).value, 2);
}

#[test]
fn tick_expires_request_ids_and_emits_nothing() {
    let mut c = Counter::new("a", false);
    inc(&mut c, 1, 5, 1_000);
    assert!(c.tick(&ctx(1_000 + REQUEST_ID_TTL_MS)).is_empty());
    assert!(c.recent.contains(5));
    assert!(c.tick(&ctx(1_001 + REQUEST_ID_TTL_MS)).is_empty());
    assert!(!c.recent.contains(5));
}

#[test]
fn merge_never_expires_request_ids() {
    let mut a = Counter::new("a", false);
    inc(&mut a, 1, 5, 1_000);
    let mut b = Counter::new("b", false);
    // b's clock is long past a's; only b's own handle/tick would expire.
    b.tick(&ctx(u64::MAX));
    merged_from(&mut b, &a);
    assert!(b.recent.contains(5));
}

#[test]
fn request_ids_are_bounded_keeping_the_newest() {
    let mut c = Counter::new("a", false);
    let n = MAX_REQUEST_IDS as u64 + 1;
    for id in 1..=n {
        inc(&mut c, 1, id, id);
    }
    assert_eq!(c.recent.len(), MAX_REQUEST_IDS);
    assert!(!c.recent.contains(1), "the oldest id was dropped");
    assert!(c.recent.contains(n));
    assert!(inc(&mut c, 1, 1, n).applied, "a forgotten id applies again");
}

#[test]
fn snapshot_round_trips_and_starts_with_the_version() {
    let mut a = Counter::new("a", false);
    inc(&mut a, 10, 1, 100);
    dec(&mut a, 3, 2, 200);
    let mut other = Counter::new("b", false);
    inc(&mut other, 4, 3, 300);
    merged_from(&mut a, &other);

    let bytes = a.snapshot();
    assert_eq!(bytes[0], snapshot::VERSION);
    let mut copy = Counter::new("c", false);
    copy.merge(&bytes).expect("own snapshot");
    assert_eq!(copy.snapshot(), bytes);
    assert_eq!(read(&mut copy), read(&mut a));
    assert_eq!(copy.totals, a.totals);
    assert_eq!(copy.recent, a.recent);
}

#[test]
fn equal_states_give_equal_snapshots() {
    let mut a = Counter::new("a", false);
    let mut b = Counter::new("b", false);
    inc(&mut a, 1, 1, 0);
    inc(&mut b, 2, 2, 0);
    let (mut ab, mut ba) = (a.clone(), b.clone());
    merged_from(&mut ab, &b);
    merged_from(&mut ba, &a);
    assert_eq!(ab.snapshot(), ba.snapshot());
}

#[test]
fn merge_of_garbage_fails_and_changes_nothing() {
    let mut c = Counter::new("a", false);
    inc(&mut c, 5, 1, 0);
    let before = c.clone();
    let valid = c.snapshot();

    let mut wrong_version = valid.clone();
    wrong_version[0] = 0;
    let mut trailing = valid.clone();
    trailing.push(7);
    let forged_count = {
        let mut w = Writer::new();
        w.u8(snapshot::VERSION).u64(u64::MAX);
        w.finish()
    };
    // A well-formed entry followed by a broken id list: the entry must not
    // be merged either.
    let half_valid = {
        let mut w = Writer::new();
        w.u8(snapshot::VERSION)
            .u64(1)
            .str("z")
            .u64(1_000)
            .u64(0)
            .u64(1)
            .u64(0)
            .u64(0);
        w.finish()
    };
    let garbage: [&[u8]; 7] = [
        &[],
        &[0xff; 40],
        &valid[..valid.len() - 1],
        &wrong_version,
        &trailing,
        &forged_count,
        &half_valid,
    ];
    for bytes in garbage {
        assert!(c.merge(bytes).is_err(), "{bytes:?}");
        assert_eq!(c, before, "{bytes:?}");
    }
}

#[test]
fn merge_takes_the_larger_copy_of_each_total() {
    let mut a = Counter::new("a", false);
    inc(&mut a, 10, 0, 0);
    let old = a.clone();
    inc(&mut a, 5, 0, 0);
    dec(&mut a, 2, 0, 0);
    let mut b = Counter::new("b", false);
    merged_from(&mut b, &a);
    merged_from(&mut b, &old);
    let v = read(&mut b);
    assert_eq!((v.value, v.increments, v.decrements), (13, 15, 2));
    // Even this instance's own entry: a peer may hold a later copy of it.
    let mut a_again = old.clone();
    merged_from(&mut a_again, &a);
    assert_eq!(read(&mut a_again).value, 13);
}

#[test]
fn sums_past_u64_clamp_in_the_reply() {
    let mut a = Counter::new("a", false);
    let mut b = Counter::new("b", false);
    inc(&mut a, u64::MAX, 0, 0);
    inc(&mut b, u64::MAX, 0, 0);
    merged_from(&mut a, &b);
    let v = read(&mut a);
    assert_eq!((v.value, v.increments), (i64::MAX, u64::MAX));
    dec(&mut a, u64::MAX, 0, 0);
    dec(&mut b, u64::MAX, 0, 0);
    merged_from(&mut a, &b);
    assert_eq!(read(&mut a).value, 0, "exact in between the clamps");
}
