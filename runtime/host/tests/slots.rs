//! The built-in slot modules and the host's isolation, through real Wasm.

use std::time::Duration;

use vss_builtin_slots::{LEAKY_BUCKET, TOKEN_BUCKET, testing};
use vss_slot_host::{
    Acquire, Acquired, CallError, Context, Custom, HostLimits, LoadError, Reply, Request, Response,
    SlotEngine, SlotError, SlotInstance,
};

fn engine() -> SlotEngine {
    SlotEngine::new(HostLimits {
        call_deadline: Duration::from_millis(200),
        memory_bytes: 16 << 20,
        epoch_tick: Duration::from_millis(5),
    })
    .expect("engine starts")
}

fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn start(engine: &SlotEngine, name: &str, bytes: &[u8], pairs: &[(&str, &str)]) -> SlotInstance {
    let module = engine.compile(name, bytes).expect("module compiles");
    SlotInstance::start(&module, config(pairs)).expect("instance starts")
}

fn at(now_ms: u64) -> Context {
    Context { now_ms, random: 0 }
}

fn acquire(
    slot: &mut SlotInstance,
    now_ms: u64,
    key: Option<&str>,
    tokens: Option<u32>,
) -> Acquired {
    let req = Request::Acquire(Acquire {
        key: key.map(String::from),
        tokens,
    });
    match slot.handle(at(now_ms), &req).expect("acquire succeeds") {
        Reply {
            response: Response::Acquired(a),
            effects,
        } => {
            assert!(effects.is_empty());
            a
        }
        other => panic!("unexpected reply {other:?}"),
    }
}

fn custom(slot: &mut SlotInstance, op: &str) -> Result<Vec<u8>, CallError> {
    let req = Request::Custom(Custom {
        op: op.into(),
        payload: Vec::new(),
    });
    slot.handle(at(0), &req).map(|r| match r.response {
        Response::Custom(bytes) => bytes,
        other => panic!("unexpected response {other:?}"),
    })
}

const SEED: &[(&str, &str)] = &[
    ("bucketSize", "200"),
    ("period", "second"),
    ("refreshRate", "100"),
];

#[test]
fn token_bucket_grants_the_seed_example_through_wasm() {
    let e = engine();
    let mut slot = start(&e, "token-bucket", TOKEN_BUCKET, SEED);
    for i in 0..200 {
        assert_eq!(
            acquire(&mut slot, 10_000, None, None).granted,
            1,
            "request {i}"
        );
    }
    let empty = acquire(&mut slot, 10_500, None, None);
    assert_eq!(
        (empty.granted, empty.remaining, empty.reset_ms),
        (0, 0, 500)
    );
    let refilled = acquire(&mut slot, 11_000, None, Some(150));
    assert_eq!((refilled.granted, refilled.remaining), (100, 0));
}

#[test]
fn token_bucket_keys_get_their_own_buckets_within_max_keys() {
    let e = engine();
    let mut slot = start(
        &e,
        "token-bucket",
        TOKEN_BUCKET,
        &[("bucketSize", "3"), ("period", "minute"), ("maxKeys", "2")],
    );
    assert_eq!(acquire(&mut slot, 0, Some("alice"), Some(3)).granted, 3);
    assert_eq!(acquire(&mut slot, 0, Some("alice"), None).granted, 0);
    assert_eq!(acquire(&mut slot, 0, Some("bob"), None).granted, 1);
    assert_eq!(
        acquire(&mut slot, 0, None, Some(3)).granted,
        3,
        "no key: the slot's own bucket"
    );
    // A third key evicts the least recently used non-full bucket (alice),
    // so alice starts over with a full bucket.
    assert_eq!(acquire(&mut slot, 1, Some("carol"), None).granted, 1);
    assert_eq!(acquire(&mut slot, 2, Some("alice"), None).remaining, 2);
}

#[test]
fn zero_tokens_is_an_invalid_argument() {
    let e = engine();
    let mut slot = start(&e, "token-bucket", TOKEN_BUCKET, SEED);
    let req = Request::Acquire(Acquire {
        key: None,
        tokens: Some(0),
    });
    match slot.handle(at(0), &req) {
        Err(CallError::Slot(SlotError::InvalidArgument(m))) => assert!(m.contains("tokens"), "{m}"),
        other => panic!("expected invalid argument, got {other:?}"),
    }
}

#[test]
fn leaky_bucket_admits_a_burst_then_drips() {
    let e = engine();
    let mut slot = start(
        &e,
        "leaky-bucket",
        LEAKY_BUCKET,
        &[
            ("bucketSize", "5"),
            ("period", "second"),
            ("refreshRate", "5"),
        ],
    );
    for _ in 0..5 {
        assert_eq!(acquire(&mut slot, 0, None, None).granted, 1);
    }
    let full = acquire(&mut slot, 0, None, None);
    assert_eq!((full.granted, full.reset_ms), (0, 200));
    assert_eq!(acquire(&mut slot, 200, None, None).granted, 1);
}

#[test]
fn limiters_refuse_verbs_they_do_not_have() {
    let e = engine();
    let mut slot = start(&e, "token-bucket", TOKEN_BUCKET, SEED);
    match custom(&mut slot, "anything") {
        Err(CallError::Slot(SlotError::Unsupported(m))) => {
            assert!(
                m.contains(
                    "token-bucket has no operation `anything` (it has take-all and release)"
                ),
                "{m}"
            )
        }
        other => panic!("expected unsupported, got {other:?}"),
    }
}

#[test]
fn snapshot_merges_into_a_fresh_instance() {
    let e = engine();
    let mut owner = start(&e, "token-bucket", TOKEN_BUCKET, SEED);
    assert_eq!(acquire(&mut owner, 5, None, Some(150)).granted, 150);
    assert_eq!(acquire(&mut owner, 5, Some("k"), Some(199)).granted, 199);
    let state = owner.snapshot().expect("snapshot");

    let mut standby = start(&e, "token-bucket", TOKEN_BUCKET, SEED);
    standby.merge(&state).expect("merge");
    assert_eq!(
        acquire(&mut standby, 6, None, Some(100)).granted,
        50,
        "not reset to full"
    );
    assert_eq!(acquire(&mut standby, 6, Some("k"), Some(5)).granted, 1);
    assert!(matches!(
        standby.merge(b"garbage"),
        Err(CallError::Slot(SlotError::InvalidArgument(_)))
    ));
}

#[test]
fn replace_makes_the_owners_state_the_whole_state() {
    let e = engine();
    let mut owner = start(&e, "token-bucket", TOKEN_BUCKET, SEED);
    assert_eq!(acquire(&mut owner, 5, None, Some(50)).granted, 50);
    let state = owner.snapshot().expect("snapshot");

    // A copy that had seen the bucket lower (tokens since given back to the
    // owner) would keep the lower count through a merge.
    let mut standby = start(&e, "token-bucket", TOKEN_BUCKET, SEED);
    assert_eq!(acquire(&mut standby, 5, None, Some(180)).granted, 180);
    assert_eq!(acquire(&mut standby, 5, Some("gone"), Some(1)).granted, 1);
    standby.replace(&state).expect("replace");
    assert_eq!(acquire(&mut standby, 6, None, Some(200)).granted, 150);
    assert_eq!(
        acquire(&mut standby, 6, Some("gone"), Some(200)).granted,
        200,
        "a key the owner does not have is gone"
    );

    assert!(matches!(
        standby.replace(b"garbage"),
        Err(CallError::Slot(SlotError::InvalidArgument(_)))
    ));
    assert_eq!(
        acquire(&mut standby, 6, None, Some(1)).granted,
        0,
        "a refused state leaves the copy as it was"
    );
}

#[test]
fn a_trapping_module_fails_the_call_and_is_rebuilt() {
    let e = engine();
    let mut bad = start(&e, "misbehave", testing::MISBEHAVE, &[]);
    let mut good = start(&e, "token-bucket", TOKEN_BUCKET, SEED);
    assert_eq!(
        custom(&mut bad, "count").expect("count"),
        1u64.to_le_bytes()
    );
    match custom(&mut bad, "trap") {
        Err(CallError::Trap(m)) => assert!(m.contains("panicked"), "{m}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(bad.restarts(), 1);
    assert_eq!(
        custom(&mut bad, "count").expect("rebuilt instance answers"),
        1u64.to_le_bytes()
    );
    assert_eq!(acquire(&mut good, 0, None, None).granted, 1);
}

#[test]
fn a_looping_module_is_stopped_at_its_deadline() {
    let e = engine();
    let mut bad = start(&e, "misbehave", testing::MISBEHAVE, &[]);
    let started = std::time::Instant::now();
    match custom(&mut bad, "loop") {
        Err(CallError::Timeout(d)) => assert_eq!(d, Duration::from_millis(200)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the loop was interrupted"
    );
    assert_eq!(
        custom(&mut bad, "echo").expect("serves again"),
        Vec::<u8>::new()
    );
}

#[test]
fn a_memory_hungry_module_hits_its_cap() {
    let e = engine();
    let mut bad = start(&e, "misbehave", testing::MISBEHAVE, &[]);
    match custom(&mut bad, "alloc") {
        Err(CallError::MemoryLimit(limit)) => assert_eq!(limit, 16 << 20),
        other => panic!("expected the memory limit, got {other:?}"),
    }
    assert_eq!(
        custom(&mut bad, "count").expect("serves again"),
        1u64.to_le_bytes()
    );
}

#[test]
fn malformed_wasm_is_refused_with_its_name() {
    let e = engine();
    let err = e
        .compile("/tmp/broken.wasm", b"not wasm at all")
        .expect_err("refused");
    assert!(matches!(err, LoadError::Invalid { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("/tmp/broken.wasm: not a valid slot component"),
        "{err}"
    );
    // Nothing of the file's content is quoted (a config could name any
    // readable file).
    let passwd = e
        .compile("/etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n")
        .expect_err("refused")
        .to_string();
    assert!(
        !passwd.contains("0x72") && !passwd.contains("root:"),
        "{passwd}"
    );
    assert!(passwd.contains("not a WebAssembly file"), "{passwd}");
    // A file that is Wasm but broken still says why.
    let broken = e
        .compile("broken.wasm", b"\0asm\x0d\0\x01\0garbage")
        .expect_err("refused")
        .to_string();
    assert!(
        broken.starts_with("broken.wasm: not a valid slot component: "),
        "{broken}"
    );
}

#[test]
fn init_errors_name_the_field() {
    let e = engine();
    let module = e.compile("token-bucket", TOKEN_BUCKET).expect("compiles");
    let err = SlotInstance::start(&module, config(&[("period", "second")])).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "token-bucket: init failed: field `bucketSize` is required"
    );
    let module = e
        .compile("misbehave", testing::MISBEHAVE)
        .expect("compiles");
    let err = SlotInstance::start(&module, config(&[("failInit", "true")])).expect_err("refused");
    assert!(err.to_string().contains("failInit"), "{err}");
}

#[test]
fn the_example_custom_slot_answers_custom_ops() {
    let e = engine();
    let mut fw = start(
        &e,
        "fixed-window",
        testing::FIXED_WINDOW,
        &[("limit", "1"), ("window", "second")],
    );
    let reply = custom(&mut fw, "hit").expect("hit");
    assert_eq!(
        String::from_utf8_lossy(&reply),
        r#"{"allowed":true,"remaining":0,"resetMs":1000}"#
    );
    let reply = custom(&mut fw, "hit").expect("hit");
    assert!(String::from_utf8_lossy(&reply).contains(r#""allowed":false"#));
}
