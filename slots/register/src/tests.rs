use super::*;
use alloc::vec;

fn config(pairs: &[(&str, &str)]) -> Config {
    Config::from(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
    )
}

fn register(instance: &str) -> Register {
    Register::new(instance.to_string(), Limits::default())
}

fn small(instance: &str, max_keys: usize) -> Register {
    Register::new(
        instance.to_string(),
        Limits {
            max_keys,
            ..Limits::default()
        },
    )
}

fn ctx(now_ms: u64) -> Context {
    Context { now_ms, random: 0 }
}

fn call(r: &mut Register, now_ms: u64, op: &str, payload: Vec<u8>) -> Result<Vec<u8>, SlotError> {
    let req = Request::Custom(Custom {
        op: op.to_string(),
        payload,
    });
    match r.handle(&ctx(now_ms), req)?.response {
        Response::Custom(bytes) => Ok(bytes),
        other => panic!("unexpected response {other:?}"),
    }
}

fn set(r: &mut Register, now_ms: u64, key: &str, value: &[u8]) -> Result<Written, SlotError> {
    let payload = Set {
        key: key.to_string(),
        value: value.to_vec(),
    }
    .to_bytes();
    let reply = call(r, now_ms, OP_SET, payload)?;
    Ok(Written::from_bytes(&reply).expect("the module encodes its replies"))
}

fn get(r: &mut Register, key: &str) -> Result<Found, SlotError> {
    let reply = call(r, 0, OP_GET, Key { key: key.into() }.to_bytes())?;
    Ok(Found::from_bytes(&reply).expect("the module encodes its replies"))
}

fn delete(r: &mut Register, now_ms: u64, key: &str) -> Result<Written, SlotError> {
    let reply = call(r, now_ms, OP_DELETE, Key { key: key.into() }.to_bytes())?;
    Ok(Written::from_bytes(&reply).expect("the module encodes its replies"))
}

fn list(r: &mut Register, prefix: &str, limit: u64) -> Listed {
    let payload = List {
        prefix: prefix.to_string(),
        limit,
    }
    .to_bytes();
    let reply = call(r, 0, OP_LIST, payload).expect("list never fails");
    Listed::from_bytes(&reply).expect("the module encodes its replies")
}

fn live_value(r: &mut Register, key: &str) -> Option<Vec<u8>> {
    match get(r, key).expect("valid key") {
        Found::Live(e) => Some(e.value),
        _ => None,
    }
}

fn invalid(e: SlotError) -> String {
    match e {
        SlotError::InvalidArgument(m) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn init_reads_defaults_and_requires_instance() {
    let r = Register::init(&config(&[("instance", "vss-0")])).expect("valid config");
    assert_eq!(*r.limits(), Limits::default());
    assert_eq!(r.limits().max_keys, 10_000);
    let missing = Register::init(&config(&[])).expect_err("no instance");
    assert!(missing.contains("`instance` is required"), "{missing}");
    let empty = Register::init(&config(&[("instance", "")])).expect_err("empty instance");
    assert!(empty.contains("`instance` must not be empty"), "{empty}");
}

#[test]
fn init_errors_name_the_field_and_the_limit() {
    let cases = [
        ("maxKeys", "0", "field `maxKeys` must be at least 1"),
        (
            "maxKeys",
            "100001",
            "field `maxKeys` must be at most 100000",
        ),
        (
            "maxKeyBytes",
            "1025",
            "field `maxKeyBytes` must be at most 1024",
        ),
        (
            "maxValueBytes",
            "0",
            "field `maxValueBytes` must be at least 1",
        ),
        (
            "maxValueBytes",
            "65537",
            "field `maxValueBytes` must be at most 65536",
        ),
        (
            "tombstoneTtlMs",
            "999",
            "field `tombstoneTtlMs` must be at least 1000",
        ),
        (
            "maxKeys",
            "many",
            "field `maxKeys`: expected an unsigned integer",
        ),
    ];
    for (field, value, expected) in cases {
        let err = Register::init(&config(&[("instance", "a"), (field, value)]))
            .expect_err("out of range");
        assert!(err.contains(expected), "{field}={value}: {err}");
    }
    let r = Register::init(&config(&[
        ("instance", "a"),
        ("maxKeys", "100000"),
        ("maxKeyBytes", "1"),
        ("maxValueBytes", "65536"),
        ("tombstoneTtlMs", "1000"),
    ]))
    .expect("bounds are inclusive");
    assert_eq!(r.limits().max_value_bytes, 65_536);
}

#[test]
fn set_then_get_returns_the_value_and_its_version() {
    let mut r = register("a");
    let w = set(&mut r, 1_000, "colour", b"teal").expect("valid set");
    assert!(!w.existed);
    assert_eq!(w.version.instance, "a");
    assert_eq!(w.version.physical_ms(), 1_000);
    assert_eq!(
        get(&mut r, "colour"),
        Ok(Found::Live(Entry {
            key: "colour".into(),
            value: b"teal".to_vec(),
            version: w.version,
        }))
    );
    assert_eq!(get(&mut r, "shape"), Ok(Found::Absent));
}

#[test]
fn set_reports_whether_the_key_was_live() {
    let mut r = register("a");
    let first = set(&mut r, 1_000, "k", b"1").expect("valid set");
    let second = set(&mut r, 1_000, "k", b"2").expect("valid set");
    assert!(!first.existed && second.existed);
    assert!(
        second.version > first.version,
        "same millisecond, still newer"
    );
    assert_eq!(live_value(&mut r, "k"), Some(b"2".to_vec()));
}

#[test]
fn delete_leaves_a_tombstone_that_a_later_set_replaces() {
    let mut r = register("a");
    set(&mut r, 1_000, "k", b"v").expect("valid set");
    let d = delete(&mut r, 2_000, "k").expect("valid delete");
    assert!(d.existed);
    assert_eq!(get(&mut r, "k"), Ok(Found::Deleted(d.version.clone())));
    assert_eq!(r.key_count(), 1, "the tombstone is kept");
    let again = set(&mut r, 3_000, "k", b"w").expect("valid set");
    assert!(!again.existed, "a deleted key is not live");
    assert_eq!(live_value(&mut r, "k"), Some(b"w".to_vec()));
}

#[test]
fn deleting_an_absent_or_deleted_key_writes_nothing() {
    let mut r = register("a");
    let absent = delete(&mut r, 1_000, "ghost").expect("valid delete");
    assert_eq!(
        absent,
        Written {
            version: Version::default(),
            existed: false
        }
    );
    assert_eq!(r.key_count(), 0, "no tombstone for a key never seen");
    set(&mut r, 1_000, "k", b"v").expect("valid set");
    let first = delete(&mut r, 2_000, "k").expect("valid delete");
    let second = delete(&mut r, 3_000, "k").expect("valid delete");
    assert!(!second.existed);
    assert_eq!(second.version, first.version, "the tombstone is unchanged");
}

#[test]
fn list_returns_live_keys_under_the_prefix_in_key_order() {
    let mut r = register("a");
    for key in ["user/b", "user/a", "team/x", "user/c", "users"] {
        set(&mut r, 1_000, key, key.as_bytes()).expect("valid set");
    }
    delete(&mut r, 1_000, "user/c").expect("valid delete");
    let listed = list(&mut r, "user/", 0);
    let keys: Vec<&str> = listed.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["user/a", "user/b"]);
    assert!(!listed.truncated);
    assert_eq!(listed.entries[0].value, b"user/a");
    assert_eq!(list(&mut r, "", 0).entries.len(), 4);

    let limited = list(&mut r, "", 2);
    assert_eq!(limited.entries.len(), 2);
    assert!(limited.truncated, "more keys matched than the limit");
    assert!(
        !list(&mut r, "", 4).truncated,
        "exactly the limit is complete"
    );
}

#[test]
fn list_caps_the_limit_at_a_thousand_entries() {
    let mut r = register("a");
    for i in 0..1_005 {
        set(&mut r, 1_000, &format!("k{i:04}"), b"v").expect("valid set");
    }
    for limit in [0, 1_001, u64::MAX] {
        let listed = list(&mut r, "", limit);
        assert_eq!(listed.entries.len(), MAX_LIST_ENTRIES, "limit {limit}");
        assert!(listed.truncated);
    }
}

#[test]
fn list_stops_near_a_mebibyte_of_data() {
    let mut r = Register::new(
        "a".into(),
        Limits {
            max_value_bytes: 65_536,
            ..Limits::default()
        },
    );
    let big = vec![7u8; 65_536];
    for i in 0..20 {
        set(&mut r, 1_000, &format!("k{i:02}"), &big).expect("valid set");
    }
    let listed = list(&mut r, "", 0);
    assert_eq!(
        listed.entries.len(),
        15,
        "16 values of 64 KiB plus keys exceed 1 MiB"
    );
    assert!(listed.truncated);
}

#[test]
fn empty_and_oversized_keys_are_refused_by_every_op() {
    let mut r = register("a");
    let long = "k".repeat(257);
    assert_eq!(
        invalid(set(&mut r, 0, "", b"v").expect_err("empty key")),
        "`key` must not be empty"
    );
    assert_eq!(
        invalid(set(&mut r, 0, &long, b"v").expect_err("long key")),
        "`key` is 257 bytes, at most 256 (maxKeyBytes)"
    );
    assert!(invalid(get(&mut r, "").expect_err("empty key")).contains("must not be empty"));
    assert!(invalid(delete(&mut r, 0, &long).expect_err("long key")).contains("maxKeyBytes"));
    assert!(
        set(&mut r, 0, &"k".repeat(256), b"v").is_ok(),
        "256 bytes fit"
    );
}

#[test]
fn oversized_values_are_refused() {
    let mut r = register("a");
    let err = set(&mut r, 0, "k", &[0u8; 1025]).expect_err("long value");
    assert_eq!(
        invalid(err),
        "`value` is 1025 bytes, at most 1024 (maxValueBytes)"
    );
    assert!(set(&mut r, 0, "k", &[0u8; 1024]).is_ok());
    assert!(
        set(&mut r, 0, "k", b"").is_ok(),
        "an empty value is a value"
    );
    assert_eq!(live_value(&mut r, "k"), Some(Vec::new()));
}

#[test]
fn a_new_key_past_max_keys_is_refused_naming_the_limit() {
    let mut r = small("a", 2);
    set(&mut r, 1_000, "a", b"1").expect("room");
    set(&mut r, 1_000, "b", b"1").expect("room");
    match set(&mut r, 1_000, "c", b"1") {
        Err(SlotError::ResourceExhausted(m)) => {
            assert!(m.contains("at most 2 (maxKeys)"), "{m}")
        }
        other => panic!("expected ResourceExhausted, got {other:?}"),
    }
    set(&mut r, 1_000, "a", b"2").expect("overwriting a held key needs no room");
}

#[test]
fn tombstones_hold_their_room_until_they_expire() {
    let mut r = small("a", 2);
    set(&mut r, 1_000, "a", b"1").expect("room");
    set(&mut r, 1_000, "b", b"1").expect("room");
    delete(&mut r, 2_000, "b").expect("valid delete");
    assert!(
        matches!(
            set(&mut r, 61_999, "c", b"1"),
            Err(SlotError::ResourceExhausted(_))
        ),
        "a fresh tombstone still counts"
    );
    set(&mut r, 62_000, "c", b"1").expect("the expired tombstone made room");
    assert_eq!(get(&mut r, "b"), Ok(Found::Absent));
}

#[test]
fn tick_forgets_tombstones_after_their_ttl_and_keeps_values() {
    let mut r = register("a");
    set(&mut r, 1_000, "kept", b"v").expect("valid set");
    set(&mut r, 1_000, "gone", b"v").expect("valid set");
    delete(&mut r, 5_000, "gone").expect("valid delete");
    r.tick(&ctx(64_999));
    assert!(matches!(get(&mut r, "gone"), Ok(Found::Deleted(_))));
    r.tick(&ctx(65_000));
    assert_eq!(get(&mut r, "gone"), Ok(Found::Absent));
    r.tick(&ctx(10_000_000));
    assert_eq!(live_value(&mut r, "kept"), Some(b"v".to_vec()));
}

#[test]
fn a_write_after_seeing_a_newer_one_wins_even_with_a_clock_behind() {
    let mut ahead = register("a");
    let mut behind = register("b");
    set(&mut ahead, 10_000, "k", b"from a").expect("valid set");
    behind.merge(&ahead.snapshot()).expect("valid snapshot");
    let w = set(&mut behind, 5_000, "k", b"from b").expect("valid set");
    assert!(w.existed);
    ahead.merge(&behind.snapshot()).expect("valid snapshot");
    assert_eq!(live_value(&mut ahead, "k"), Some(b"from b".to_vec()));
    assert_eq!(ahead.snapshot(), behind.snapshot());
}

#[test]
fn a_delete_after_seeing_a_value_wins_over_it() {
    let mut ahead = register("a");
    let mut behind = register("b");
    set(&mut ahead, 10_000, "k", b"v").expect("valid set");
    behind.merge(&ahead.snapshot()).expect("valid snapshot");
    assert!(
        delete(&mut behind, 1_000, "k")
            .expect("valid delete")
            .existed
    );
    ahead.merge(&behind.snapshot()).expect("valid snapshot");
    assert!(matches!(get(&mut ahead, "k"), Ok(Found::Deleted(_))));
}

#[test]
fn concurrent_writes_pick_the_same_winner_everywhere() {
    let mut a = register("a");
    let mut b = register("b");
    set(&mut a, 1_000, "k", b"a").expect("valid set");
    set(&mut b, 1_000, "k", b"b").expect("valid set");
    let (sa, sb) = (a.snapshot(), b.snapshot());
    a.merge(&sb).expect("valid snapshot");
    b.merge(&sa).expect("valid snapshot");
    assert_eq!(a.snapshot(), b.snapshot());
    assert_eq!(
        live_value(&mut a, "k"),
        Some(b"b".to_vec()),
        "same ms: higher instance id"
    );
}

#[test]
fn equal_versions_with_different_values_resolve_the_same_in_any_order() {
    let forged = |value: Value| {
        let mut m = LwwMap::new();
        let version = Version {
            hlc: 42 << 16,
            instance: "x".into(),
        };
        m.put(String::from("k"), version, value);
        let mut w = Writer::new();
        w.u8(SNAPSHOT_VERSION);
        m.write_with(&mut w, |w, k, v| {
            w.str(k);
            match v {
                Some(v) => w.u8(1).bytes(v),
                None => w.u8(0),
            };
        });
        w.finish()
    };
    let (tomb, low, high) = (
        forged(None),
        forged(Some(b"a".to_vec())),
        forged(Some(b"b".to_vec())),
    );
    let mut one = register("m");
    let mut two = register("m");
    for s in [&low, &tomb, &high] {
        one.merge(s).expect("valid snapshot");
    }
    for s in [&high, &low, &tomb] {
        two.merge(s).expect("valid snapshot");
    }
    assert_eq!(one.snapshot(), two.snapshot());
    assert_eq!(live_value(&mut one, "k"), Some(b"b".to_vec()));
    let mut three = register("m");
    three.merge(&tomb).expect("valid snapshot");
    three.merge(&low).expect("valid snapshot");
    assert_eq!(
        live_value(&mut three, "k"),
        Some(b"a".to_vec()),
        "a value beats a tombstone"
    );
}

#[test]
fn snapshot_round_trips_into_an_equal_copy() {
    let mut a = register("a");
    set(&mut a, 1_000, "x", b"1").expect("valid set");
    set(&mut a, 1_001, "y", b"").expect("valid set");
    delete(&mut a, 1_002, "x").expect("valid delete");
    let snap = a.snapshot();
    assert_eq!(snap[0], SNAPSHOT_VERSION);
    let mut b = register("b");
    b.merge(&snap).expect("valid snapshot");
    assert_eq!(b.snapshot(), snap);
    assert!(matches!(get(&mut b, "x"), Ok(Found::Deleted(_))));
    assert_eq!(live_value(&mut b, "y"), Some(Vec::new()));
    assert!(
        b.clock.last() >= a.clock.last(),
        "merge observed every version"
    );
}

#[test]
fn merging_garbage_fails_and_changes_nothing() {
    let mut peer = register("p");
    set(&mut peer, 1_000, "x", b"1").expect("valid set");
    delete(&mut peer, 9_000_000, "x").expect("valid delete");
    set(&mut peer, 9_000_000, "y", b"2").expect("valid set");
    let good = peer.snapshot();

    let mut r = register("a");
    set(&mut r, 1_000, "mine", b"v").expect("valid set");
    let (before, clock) = (r.snapshot(), r.clock);
    let mut bad_tag = good.clone();
    bad_tag[1 + 8 + 8 + 1] = 7;
    let mut wrong_version = good.clone();
    wrong_version[0] = 99;
    let mut trailing = good.clone();
    trailing.push(0);
    let mut cases = vec![Vec::new(), wrong_version, trailing, bad_tag];
    cases.push(
        [1u8]
            .iter()
            .chain(&u64::MAX.to_le_bytes())
            .copied()
            .collect(),
    );
    cases.extend((1..good.len()).map(|cut| good[..cut].to_vec()));
    for garbage in &cases {
        assert!(r.merge(garbage).is_err(), "{garbage:?}");
        assert_eq!(r.snapshot(), before);
        assert_eq!(r.clock, clock, "not even the clock moved");
    }
    r.merge(&good).expect("the intact snapshot still merges");
}

#[test]
fn merge_skips_entries_over_this_instances_limits() {
    let mut loose = Register::new(
        "p".into(),
        Limits {
            max_key_bytes: 1024,
            max_value_bytes: 4096,
            ..Limits::default()
        },
    );
    set(&mut loose, 1_000, &"k".repeat(300), b"v").expect("fits the peer");
    set(&mut loose, 1_000, "big", &[1u8; 2000]).expect("fits the peer");
    set(&mut loose, 1_000, "ok", b"v").expect("fits both");
    let mut strict = register("a");
    strict.merge(&loose.snapshot()).expect("valid snapshot");
    assert_eq!(strict.key_count(), 1);
    assert_eq!(live_value(&mut strict, "ok"), Some(b"v".to_vec()));
    assert_eq!(
        strict.clock.last(),
        loose.clock.last(),
        "skipped entries are still observed, so later writes here beat them"
    );
}

#[test]
fn merge_takes_up_to_twice_max_keys_then_drops_new_keys() {
    let mut a = small("a", 3);
    let mut b = small("b", 3);
    let mut c = small("c", 3);
    for (r, prefix) in [(&mut a, "a"), (&mut b, "b"), (&mut c, "c")] {
        for i in 0..3 {
            set(r, 1_000, &format!("{prefix}{i}"), b"v").expect("room");
        }
    }
    a.merge(&b.snapshot()).expect("valid snapshot");
    assert_eq!(
        a.key_count(),
        6,
        "concurrent writes past maxKeys still converge"
    );
    a.merge(&c.snapshot()).expect("valid snapshot");
    assert_eq!(a.key_count(), 6, "bounded at twice maxKeys");
    assert_eq!(get(&mut a, "c0"), Ok(Found::Absent));
    assert!(matches!(
        set(&mut a, 2_000, "new", b"v"),
        Err(SlotError::ResourceExhausted(_))
    ));
    set(&mut a, 2_000, "b0", b"w").expect("held keys can still be written");
    b.merge(&a.snapshot()).expect("valid snapshot");
    assert_eq!(live_value(&mut b, "b0"), Some(b"w".to_vec()));
}

#[test]
fn other_verbs_unknown_ops_and_bad_payloads_are_refused() {
    let mut r = register("a");
    let acquire = Request::Acquire(vss_slot_sdk::Acquire {
        key: None,
        tokens: None,
    });
    match r.handle(&ctx(0), acquire) {
        Err(SlotError::Unsupported(m)) => assert!(m.contains("register"), "{m}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    match call(&mut r, 0, "increment", Vec::new()) {
        Err(SlotError::Unsupported(m)) => {
            assert!(
                m.contains("`increment`") && m.contains("set, get, delete, list"),
                "{m}"
            )
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    for op in [OP_SET, OP_GET, OP_DELETE, OP_LIST] {
        let err = call(&mut r, 0, op, vec![1, 2, 3]).expect_err("garbage payload");
        assert!(invalid(err).contains(&format!("`{op}` payload")), "{op}");
    }
    let mut extra = Key { key: "k".into() }.to_bytes();
    extra.push(0);
    assert!(call(&mut r, 0, OP_GET, extra).is_err(), "trailing bytes");
}
