//! What a built-in slot reads from outside its instance: a peer's snapshot
//! (`merge`, on replication and state transfer) and the payload of a custom
//! operation (`Call` carries a client's bytes to the module as they are).
//! Neither may panic (a panic traps the module and loses the slot's
//! state); a merge that succeeds leaves a state whose own snapshot merges.
//!
//! Input: one byte picks the slot type, one the operation, the rest is the
//! payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vss_slot_sdk::{Config, Context, Custom, Request, Slot};

const LIMITER: &[&str] = &["take-all", "release", "reset"];
const COUNTER: &[&str] = &["increment", "decrement", "read"];
const REGISTER: &[&str] = &["set", "get", "delete", "list"];
const REGISTRY: &[&str] = &["announce", "withdraw", "list"];
const TICK: &[&str] = &["next"];
const SIGNAL: &[&str] = &["publish"];

fn config(pairs: &[(&str, &str)]) -> Config {
    Config::from(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect::<Vec<_>>(),
    )
}

fn exercise<S: Slot>(cfg: &Config, ops: &[&str], op: u8, payload: &[u8]) {
    let mut slot = match S::init(cfg) {
        Ok(slot) => slot,
        Err(e) => panic!("the fuzz target's own config is refused: {e}"),
    };
    let ctx = Context {
        now_ms: 1_700_000_000_000,
        random: 42,
    };
    let op = ops[usize::from(op) % ops.len()];
    let _ = slot.handle(
        &ctx,
        Request::Custom(Custom {
            op: op.to_string(),
            payload: payload.to_vec(),
        }),
    );
    if slot.merge(payload).is_ok() {
        let own = slot.snapshot();
        if let Err(e) = slot.merge(&own) {
            panic!("a state merged from a peer cannot merge its own snapshot: {e}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [kind, op, payload @ ..] = data else {
        return;
    };
    let bucket = config(&[("bucketSize", "10"), ("period", "second")]);
    let none = config(&[]);
    // The runtime adds `instance` to the config of the slots kept on every
    // instance.
    let everywhere = config(&[("instance", "vss-0")]);
    match kind % 9 {
        0 => exercise::<vss_slot_token_bucket::TokenBucket>(&bucket, LIMITER, *op, payload),
        1 => exercise::<vss_slot_leaky_bucket::LeakyBucket>(&bucket, LIMITER, *op, payload),
        2 => exercise::<vss_slot_broadcast::Broadcast>(&none, SIGNAL, *op, payload),
        3 => exercise::<vss_slot_multicast::Multicast>(&none, SIGNAL, *op, payload),
        4 => exercise::<vss_slot_random::Random>(&none, SIGNAL, *op, payload),
        5 => exercise::<vss_slot_counter::Counter>(&everywhere, COUNTER, *op, payload),
        6 => exercise::<vss_slot_register::Register>(&everywhere, REGISTER, *op, payload),
        7 => exercise::<vss_slot_registry::Registry>(&everywhere, REGISTRY, *op, payload),
        _ => {
            exercise::<vss_slot_tick::Tick>(&config(&[("intervalMs", "1000")]), TICK, *op, payload)
        }
    }
});
