//! The built-in `tick` slot type: numbered ticks derived from the wall
//! clock.
//!
//! Config: `intervalMs` (required, 10 to 3600000).
//!
//! Op, as `Request::Custom` (see [`wire`]): `next` takes an empty payload
//! and answers a [`Next`]: the first tick due strictly after the call's
//! `now_ms`. Tick `n` is due at `n * intervalMs` ms since the Unix epoch, so
//! the answer is tick `now_ms / intervalMs + 1`.
//!
//! Guarantees: the number is a function of the time alone, so every
//! instance answers the same number for the same moment, with no leader
//! and no state to replicate; a failover can neither repeat nor skip a
//! number. Instances agree as closely as their clocks do: near a due time,
//! two instances whose clocks differ may answer neighbouring numbers. An
//! instance whose clock steps backwards answers an earlier number again.
//!
//! The snapshot is a version byte only; a merge accepts that (or an empty
//! state) and refuses anything else.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod wire;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use vss_slot_sdk::codec::Wire;
use vss_slot_sdk::{Config, Context, Custom, Reply, Request, Response, Slot, SlotError};
use wire::{Next, OP_NEXT};

/// Shortest `intervalMs` accepted.
pub const MIN_INTERVAL_MS: u64 = 10;
/// Longest `intervalMs` accepted (one hour).
pub const MAX_INTERVAL_MS: u64 = 3_600_000;
const SNAPSHOT_VERSION: u8 = 1;

/// A tick schedule: nothing but the interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    interval_ms: u64,
}

impl Tick {
    /// A schedule with ticks every `interval_ms`; the error names the
    /// `intervalMs` field and the bound it broke.
    pub fn new(interval_ms: u64) -> Result<Self, String> {
        if interval_ms < MIN_INTERVAL_MS {
            return Err(format!(
                "field `intervalMs` must be at least {MIN_INTERVAL_MS}, got {interval_ms}"
            ));
        }
        if interval_ms > MAX_INTERVAL_MS {
            return Err(format!(
                "field `intervalMs` must be at most {MAX_INTERVAL_MS}, got {interval_ms}"
            ));
        }
        Ok(Self { interval_ms })
    }

    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// The first tick due strictly after `now_ms`; None when its due time
    /// does not fit a u64 (some 584 million years from now).
    pub fn next(&self, now_ms: u64) -> Option<Next> {
        let number = (now_ms / self.interval_ms).checked_add(1)?;
        let due_ms = number.checked_mul(self.interval_ms)?;
        Some(Next {
            number,
            due_ms,
            interval_ms: self.interval_ms,
        })
    }
}

impl Slot for Tick {
    fn init(config: &Config) -> Result<Self, String> {
        Self::new(config.u64("intervalMs")?)
    }

    fn handle(&mut self, ctx: &Context, req: Request) -> Result<Reply, SlotError> {
        let Custom { op, payload } = match req {
            Request::Custom(custom) => custom,
            other => return Err(SlotError::unsupported("tick", &other)),
        };
        if op != OP_NEXT {
            return Err(SlotError::Unsupported(format!(
                "slot type tick has no op `{op}` (known: {OP_NEXT})"
            )));
        }
        if !payload.is_empty() {
            return Err(SlotError::InvalidArgument(format!(
                "`{OP_NEXT}` takes an empty payload, got {} bytes",
                payload.len()
            )));
        }
        let next = self.next(ctx.now_ms).ok_or_else(|| {
            SlotError::Internal(format!(
                "no tick after now_ms {} fits in a u64 of milliseconds",
                ctx.now_ms
            ))
        })?;
        Ok(Reply::of(Response::Custom(next.to_bytes())))
    }

    fn snapshot(&self) -> Vec<u8> {
        vec![SNAPSHOT_VERSION]
    }

    /// Nothing to fold in; checking the bytes still catches a peer that
    /// sends another type's state to this slot.
    fn merge(&mut self, state: &[u8]) -> Result<(), String> {
        match state {
            [] | [SNAPSHOT_VERSION] => Ok(()),
            [version] => Err(format!("unknown tick snapshot version {version}")),
            _ => Err(format!(
                "malformed snapshot: a tick snapshot is 1 byte, got {}",
                state.len()
            )),
        }
    }
}

vss_slot_sdk::export_slot!(Tick);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vss_slot_sdk::Acquire;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from(
            pairs
                .iter()
                .map(|(k, v)| (String::from(*k), String::from(*v)))
                .collect::<Vec<_>>(),
        )
    }

    fn ctx(now_ms: u64) -> Context {
        Context { now_ms, random: 0 }
    }

    fn custom(op: &str, payload: Vec<u8>) -> Request {
        Request::Custom(Custom {
            op: op.into(),
            payload,
        })
    }

    fn next(t: &mut Tick, now_ms: u64) -> Next {
        let reply = t
            .handle(&ctx(now_ms), custom(OP_NEXT, Vec::new()))
            .expect("next");
        assert!(reply.effects.is_empty());
        match reply.response {
            Response::Custom(bytes) => Next::from_bytes(&bytes).expect("a Next"),
            other => panic!("expected a custom response, got {other:?}"),
        }
    }

    fn tick(interval_ms: u64) -> Tick {
        Tick::new(interval_ms).expect("valid interval")
    }

    #[test]
    fn init_reads_the_interval() {
        let t = Tick::init(&config(&[("intervalMs", "250")])).expect("valid");
        assert_eq!(t.interval_ms(), 250);
        for ok in [MIN_INTERVAL_MS, MAX_INTERVAL_MS] {
            let t = Tick::init(&config(&[("intervalMs", &ok.to_string())])).expect("in range");
            assert_eq!(t.interval_ms(), ok);
        }
    }

    #[test]
    fn init_errors_name_the_field_and_the_limit() {
        let err = Tick::init(&config(&[])).expect_err("missing");
        assert!(err.contains("`intervalMs` is required"), "{err}");
        let err = Tick::init(&config(&[("intervalMs", "soon")])).expect_err("not a number");
        assert!(err.contains("`intervalMs`"), "{err}");
        let err = Tick::init(&config(&[("intervalMs", "9")])).expect_err("too short");
        assert!(
            err.contains("`intervalMs`") && err.contains("at least 10"),
            "{err}"
        );
        let err = Tick::init(&config(&[("intervalMs", "3600001")])).expect_err("too long");
        assert!(
            err.contains("`intervalMs`") && err.contains("at most 3600000"),
            "{err}"
        );
    }

    #[test]
    fn next_is_the_first_tick_strictly_after_now() {
        let mut t = tick(1_000);
        assert_eq!(
            next(&mut t, 0),
            Next {
                number: 1,
                due_ms: 1_000,
                interval_ms: 1_000
            }
        );
        assert_eq!(next(&mut t, 1_234).number, 2);
        assert_eq!(next(&mut t, 1_234).due_ms, 2_000);
    }

    #[test]
    fn boundaries_are_exact() {
        let mut t = tick(250);
        let k = 4_000_000u64;
        let due = k * 250;
        assert_eq!(
            (next(&mut t, due - 1).number, next(&mut t, due - 1).due_ms),
            (k, due)
        );
        assert_eq!(
            (next(&mut t, due).number, next(&mut t, due).due_ms),
            (k + 1, due + 250),
            "a tick due now is not after now"
        );
        assert_eq!(next(&mut t, due + 1).number, k + 1);
    }

    #[test]
    fn two_instances_agree_for_the_same_moment() {
        let (mut a, mut b) = (tick(100), tick(100));
        for now in [0, 99, 100, 1_700_000_000_123, u64::MAX / 2] {
            assert_eq!(next(&mut a, now), next(&mut b, now));
        }
    }

    #[test]
    fn the_last_representable_moments_do_not_overflow() {
        let t = tick(10);
        let last = u64::MAX / 10 * 10;
        assert_eq!(t.next(last - 1).map(|n| n.due_ms), Some(last));
        assert_eq!(t.next(last), None);
        assert_eq!(t.next(u64::MAX), None);
        let err = tick(10)
            .handle(&ctx(u64::MAX), custom(OP_NEXT, Vec::new()))
            .expect_err("no tick fits");
        assert!(matches!(err, SlotError::Internal(_)), "{err:?}");
    }

    #[test]
    fn a_payload_is_invalid_and_names_the_op() {
        let err = tick(100)
            .handle(&ctx(0), custom(OP_NEXT, vec![0]))
            .expect_err("payload");
        match err {
            SlotError::InvalidArgument(msg) => assert!(msg.contains("`next`"), "{msg}"),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn unknown_ops_and_other_verbs_are_unsupported() {
        let err = tick(100)
            .handle(&ctx(0), custom("previous", Vec::new()))
            .expect_err("unknown op");
        match err {
            SlotError::Unsupported(msg) => {
                assert!(msg.contains("`previous`") && msg.contains(OP_NEXT), "{msg}")
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
        let err = tick(100)
            .handle(
                &ctx(0),
                Request::Acquire(Acquire {
                    key: None,
                    tokens: None,
                }),
            )
            .expect_err("not a tick verb");
        assert_eq!(
            err,
            SlotError::Unsupported("slot type tick does not support `acquire`".into())
        );
    }

    #[test]
    fn snapshot_is_a_version_byte_and_merges_back() {
        let mut t = tick(100);
        let state = t.snapshot();
        assert_eq!(state, [SNAPSHOT_VERSION]);
        assert_eq!(t.merge(&state), Ok(()));
        assert_eq!(t.merge(&[]), Ok(()));
        assert_eq!(t, tick(100));
    }

    #[test]
    fn merge_refuses_anything_else() {
        let mut t = tick(100);
        for garbage in [&[0u8][..], &[2], &[1, 0], &[0xff; 16]] {
            assert!(t.merge(garbage).is_err(), "{garbage:?}");
            assert_eq!(t, tick(100));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn next_is_due_within_one_interval_after_now(
            interval in MIN_INTERVAL_MS..=MAX_INTERVAL_MS,
            now in 0u64..(1u64 << 50),
        ) {
            let n = tick(interval).next(now).expect("far from overflow");
            prop_assert!(n.due_ms > now);
            prop_assert!(n.due_ms - now <= interval);
            prop_assert_eq!(n.due_ms, n.number * interval);
            prop_assert_eq!(n.interval_ms, interval);
        }

        #[test]
        fn numbers_never_go_down_and_rise_once_a_tick_is_due(
            interval in MIN_INTERVAL_MS..=MAX_INTERVAL_MS,
            now in 0u64..(1u64 << 50),
            later in 0u64..(1u64 << 24),
        ) {
            let t = tick(interval);
            let first = t.next(now).expect("far from overflow");
            let second = t.next(now + later).expect("far from overflow");
            prop_assert!(second.number >= first.number);
            if now + later >= first.due_ms {
                prop_assert!(second.number > first.number);
            } else {
                prop_assert_eq!(second, first);
            }
        }
    }
}
