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

fn registry(instance: &str) -> Registry {
    Registry::new(instance.to_string(), Limits::default())
}

fn ctx(now_ms: u64) -> Context {
    Context { now_ms, random: 0 }
}

fn call(r: &mut Registry, now_ms: u64, op: &str, payload: Vec<u8>) -> Result<Vec<u8>, SlotError> {
    let req = Request::Custom(Custom {
        op: op.to_string(),
        payload,
    });
    match r.handle(&ctx(now_ms), req)?.response {
        Response::Custom(bytes) => Ok(bytes),
        other => panic!("unexpected response {other:?}"),
    }
}

fn announce(
    r: &mut Registry,
    now_ms: u64,
    app: &str,
    address: &str,
    ttl_ms: Option<u64>,
) -> Result<Announced, SlotError> {
    let payload = Announce {
        app: app.into(),
        address: address.into(),
        ttl_ms,
    }
    .to_bytes();
    let reply = call(r, now_ms, OP_ANNOUNCE, payload)?;
    Ok(Announced::from_bytes(&reply).expect("the module encodes its replies"))
}

fn withdraw(r: &mut Registry, now_ms: u64, app: &str, address: &str) -> Result<bool, SlotError> {
    let payload = Withdraw {
        app: app.into(),
        address: address.into(),
    }
    .to_bytes();
    let reply = call(r, now_ms, OP_WITHDRAW, payload)?;
    Ok(Withdrawn::from_bytes(&reply)
        .expect("the module encodes its replies")
        .removed)
}

fn list(r: &mut Registry, now_ms: u64, app: &str) -> Vec<Service> {
    let reply =
        call(r, now_ms, OP_LIST, ListApp { app: app.into() }.to_bytes()).expect("valid list");
    Services::from_bytes(&reply)
        .expect("the module encodes its replies")
        .services
}

fn addresses(r: &mut Registry, now_ms: u64, app: &str) -> Vec<String> {
    list(r, now_ms, app)
        .into_iter()
        .map(|s| format!("{}/{}", s.app, s.address))
        .collect()
}

fn invalid(e: SlotError) -> String {
    match e {
        SlotError::InvalidArgument(m) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn init_reads_defaults_and_requires_instance() {
    let r = Registry::init(&config(&[("instance", "vss-0")])).expect("valid config");
    assert_eq!(*r.limits(), Limits::default());
    assert_eq!(r.limits().default_ttl_ms, 30_000);
    let missing = Registry::init(&config(&[])).expect_err("no instance");
    assert!(missing.contains("`instance` is required"), "{missing}");
    let empty = Registry::init(&config(&[("instance", "")])).expect_err("empty instance");
    assert!(empty.contains("`instance` must not be empty"), "{empty}");
}

#[test]
fn init_errors_name_the_field_and_the_limit() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("maxEntries", "0")],
            "field `maxEntries` must be at least 1",
        ),
        (
            &[("maxEntries", "100001")],
            "field `maxEntries` must be at most 100000",
        ),
        (
            &[("defaultTtlMs", "0")],
            "field `defaultTtlMs` must be at least 1",
        ),
        (
            &[("defaultTtlMs", "5000"), ("maxTtlMs", "4999")],
            "field `maxTtlMs` must be at least defaultTtlMs (5000), got 4999",
        ),
        (
            &[("maxTtlMs", "soon")],
            "field `maxTtlMs`: expected an unsigned integer",
        ),
    ];
    for (fields, expected) in cases {
        let mut pairs = vec![("instance", "a")];
        pairs.extend_from_slice(fields);
        let err = Registry::init(&config(&pairs)).expect_err("bad config");
        assert!(err.contains(expected), "{fields:?}: {err}");
    }
    let r = Registry::init(&config(&[
        ("instance", "a"),
        ("maxEntries", "100000"),
        ("defaultTtlMs", "1"),
        ("maxTtlMs", "1"),
    ]))
    .expect("bounds are inclusive");
    assert_eq!(r.limits().max_ttl_ms, 1);
}

#[test]
fn announce_adds_then_renews_with_the_default_ttl() {
    let mut r = registry("a");
    let first = announce(&mut r, 1_000, "api", "10.0.0.1:80", None).expect("valid announce");
    assert_eq!(
        first,
        Announced {
            expires_ms: 31_000,
            added: true
        }
    );
    let renewed = announce(&mut r, 11_000, "api", "10.0.0.1:80", None).expect("valid announce");
    assert_eq!(
        renewed,
        Announced {
            expires_ms: 41_000,
            added: false
        }
    );
    assert_eq!(
        list(&mut r, 11_000, "api"),
        [Service {
            app: "api".into(),
            address: "10.0.0.1:80".into(),
            updated_ms: 11_000,
            expires_ms: 41_000,
        }]
    );
}

#[test]
fn announce_takes_an_explicit_ttl_within_bounds() {
    let mut r = registry("a");
    let a = announce(&mut r, 1_000, "api", "x", Some(1)).expect("1 ms is allowed");
    assert_eq!(a.expires_ms, 1_001);
    let max = announce(&mut r, 1_000, "api", "y", Some(3_600_000)).expect("the max is allowed");
    assert_eq!(max.expires_ms, 3_601_000);
    let zero = announce(&mut r, 1_000, "api", "z", Some(0)).expect_err("ttl 0");
    assert_eq!(invalid(zero), "`ttl` must be at least 1 ms");
    let long = announce(&mut r, 1_000, "api", "z", Some(3_600_001)).expect_err("ttl too long");
    assert_eq!(
        invalid(long),
        "`ttl` is 3600001 ms, at most 3600000 (maxTtlMs)"
    );
    assert_eq!(r.entry_count(), 2, "refused announces store nothing");
}

#[test]
fn empty_and_oversized_apps_and_addresses_are_refused() {
    let mut r = registry("a");
    let cases = [
        ("", "x", "`app` must not be empty"),
        ("api", "", "`address` must not be empty"),
        (&"a".repeat(129), "x", "`app` is 129 bytes, at most 128"),
        (
            "api",
            &"x".repeat(257),
            "`address` is 257 bytes, at most 256",
        ),
    ];
    for (app, address, expected) in cases {
        let err = announce(&mut r, 0, app, address, None).expect_err("bad entry");
        assert_eq!(invalid(err), expected);
        let err = withdraw(&mut r, 0, app, address).expect_err("bad entry");
        assert_eq!(invalid(err), expected);
    }
    announce(&mut r, 0, &"a".repeat(128), &"x".repeat(256), None).expect("the limits fit");
    let err = call(
        &mut r,
        0,
        OP_LIST,
        ListApp {
            app: "a".repeat(129),
        }
        .to_bytes(),
    );
    assert!(invalid(err.expect_err("app too long")).contains("at most 128"));
}

#[test]
fn entries_expire_at_their_expiry_and_come_back_as_added() {
    let mut r = registry("a");
    announce(&mut r, 1_000, "api", "x", Some(500)).expect("valid announce");
    assert_eq!(addresses(&mut r, 1_499, "api"), ["api/x"]);
    assert!(
        addresses(&mut r, 1_500, "api").is_empty(),
        "dead at expires_ms"
    );
    let again = announce(&mut r, 2_000, "api", "x", Some(500)).expect("valid announce");
    assert!(again.added, "an expired entry is added anew");
}

#[test]
fn withdraw_removes_a_live_entry_at_once() {
    let mut r = registry("a");
    announce(&mut r, 1_000, "api", "x", None).expect("valid announce");
    assert_eq!(withdraw(&mut r, 2_000, "api", "x"), Ok(true));
    assert!(list(&mut r, 2_000, "api").is_empty());
    assert_eq!(
        withdraw(&mut r, 2_000, "api", "x"),
        Ok(false),
        "already dead"
    );
    assert_eq!(withdraw(&mut r, 2_000, "api", "never"), Ok(false));
    assert_eq!(r.entry_count(), 1, "an unknown entry is not written");
    let back = announce(&mut r, 3_000, "api", "x", None).expect("valid announce");
    assert!(back.added);
}

#[test]
fn list_orders_by_app_then_address_and_filters_by_app() {
    let mut r = registry("a");
    for (app, address) in [
        ("web", "b"),
        ("api", "z"),
        ("web", "a"),
        ("api2", "m"),
        ("api", "c"),
    ] {
        announce(&mut r, 1_000, app, address, None).expect("valid announce");
    }
    announce(&mut r, 1_000, "api", "short", Some(10)).expect("valid announce");
    assert_eq!(
        addresses(&mut r, 2_000, ""),
        ["api/c", "api/z", "api2/m", "web/a", "web/b"]
    );
    assert_eq!(
        addresses(&mut r, 2_000, "api"),
        ["api/c", "api/z"],
        "not api2"
    );
    assert!(addresses(&mut r, 2_000, "db").is_empty());
}

#[test]
fn a_new_entry_past_max_entries_is_refused_naming_the_limit() {
    let mut r = Registry::new(
        "a".into(),
        Limits {
            max_entries: 2,
            ..Limits::default()
        },
    );
    announce(&mut r, 1_000, "api", "x", Some(1_000)).expect("room");
    announce(&mut r, 1_000, "api", "y", None).expect("room");
    match announce(&mut r, 1_000, "api", "z", None) {
        Err(SlotError::ResourceExhausted(m)) => {
            assert!(m.contains("at most 2 (maxEntries)"), "{m}")
        }
        other => panic!("expected ResourceExhausted, got {other:?}"),
    }
    announce(&mut r, 1_000, "api", "y", None).expect("renewing needs no room");
    assert!(
        announce(&mut r, 61_999, "api", "z", None).is_err(),
        "x died at 2000 and is remembered until 62000"
    );
    announce(&mut r, 62_000, "api", "z", None).expect("the forgotten entry made room");
}

#[test]
fn tick_forgets_dead_entries_a_minute_after_expiry_not_earlier() {
    let mut r = registry("a");
    announce(&mut r, 1_000, "api", "x", Some(1_000)).expect("valid announce");
    announce(&mut r, 1_000, "api", "y", Some(600_000)).expect("valid announce");
    r.tick(&ctx(61_999));
    assert_eq!(r.entry_count(), 2);
    r.tick(&ctx(62_000));
    assert_eq!(r.entry_count(), 1);
    assert_eq!(addresses(&mut r, 62_000, "api"), ["api/y"]);
}

#[test]
fn a_withdrawn_entry_is_remembered_until_the_announce_it_replaced_is_dead() {
    let mut announcer = registry("a");
    let mut other = registry("b");
    announce(&mut announcer, 1_000, "api", "x", Some(3_600_000)).expect("valid announce");
    let stale = announcer.snapshot();
    other.merge(&stale).expect("valid snapshot");
    assert_eq!(withdraw(&mut other, 2_000, "api", "x"), Ok(true));
    // Well past a minute after the withdraw, the old announce (live until
    // 3_601_000) arrives again from a peer that missed the withdraw.
    other.tick(&ctx(600_000));
    other.merge(&stale).expect("valid snapshot");
    assert!(
        list(&mut other, 600_000, "api").is_empty(),
        "the withdraw holds"
    );
    other.tick(&ctx(3_660_999));
    assert_eq!(other.entry_count(), 1);
    other.tick(&ctx(3_661_000));
    assert_eq!(other.entry_count(), 0);
    other.merge(&stale).expect("valid snapshot");
    assert!(
        list(&mut other, 3_661_000, "api").is_empty(),
        "by now the old copy is dead on arrival"
    );
}

#[test]
fn every_instance_drops_an_entry_at_the_same_moment() {
    let mut a = registry("a");
    let mut b = registry("b");
    announce(&mut a, 1_000, "api", "x", Some(5_000)).expect("valid announce");
    // b hears of it 3 s later; the expiry is absolute, not counted from then.
    b.merge(&a.snapshot()).expect("valid snapshot");
    for r in [&mut a, &mut b] {
        assert_eq!(list(r, 5_999, "api")[0].expires_ms, 6_000);
        assert!(list(r, 6_000, "api").is_empty());
    }
}

#[test]
fn a_renewal_after_seeing_a_newer_write_wins_even_with_a_clock_behind() {
    let mut ahead = registry("a");
    let mut behind = registry("b");
    announce(&mut ahead, 10_000, "api", "x", Some(1_000)).expect("valid announce");
    behind.merge(&ahead.snapshot()).expect("valid snapshot");
    let renewed = announce(&mut behind, 5_000, "api", "x", Some(60_000)).expect("valid announce");
    assert_eq!(renewed.expires_ms, 65_000);
    ahead.merge(&behind.snapshot()).expect("valid snapshot");
    assert_eq!(list(&mut ahead, 20_000, "api")[0].expires_ms, 65_000);
    assert_eq!(ahead.snapshot(), behind.snapshot());
}

#[test]
fn a_withdraw_after_seeing_an_announce_wins_even_with_a_clock_behind() {
    let mut ahead = registry("a");
    let mut behind = registry("b");
    announce(&mut ahead, 10_000, "api", "x", None).expect("valid announce");
    behind.merge(&ahead.snapshot()).expect("valid snapshot");
    assert_eq!(withdraw(&mut behind, 5_000, "api", "x"), Ok(true));
    ahead.merge(&behind.snapshot()).expect("valid snapshot");
    assert!(list(&mut ahead, 10_000, "api").is_empty());
}

#[test]
fn snapshot_round_trips_into_an_equal_copy() {
    let mut a = registry("a");
    announce(&mut a, 1_000, "api", "x", None).expect("valid announce");
    announce(&mut a, 1_000, "web", "y", Some(10)).expect("valid announce");
    withdraw(&mut a, 1_001, "api", "x").expect("valid withdraw");
    let snap = a.snapshot();
    assert_eq!(snap[0], SNAPSHOT_VERSION);
    let mut b = registry("b");
    b.merge(&snap).expect("valid snapshot");
    assert_eq!(b.snapshot(), snap);
    assert_eq!(addresses(&mut b, 1_005, ""), ["web/y"]);
    assert!(
        b.clock.last() >= a.clock.last(),
        "merge observed every version"
    );
}

#[test]
fn merging_garbage_fails_and_changes_nothing() {
    let mut peer = registry("p");
    announce(&mut peer, 9_000_000, "api", "x", None).expect("valid announce");
    let good = peer.snapshot();

    let mut r = registry("a");
    announce(&mut r, 1_000, "api", "mine", None).expect("valid announce");
    let (before, clock) = (r.snapshot(), r.clock);
    let mut wrong_version = good.clone();
    wrong_version[0] = 2;
    let mut trailing = good.clone();
    trailing.push(0);
    let mut bad_utf8 = good.clone();
    bad_utf8[1 + 8 + 8] = 0xff;
    let mut cases = vec![Vec::new(), wrong_version, trailing, bad_utf8];
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
fn merge_skips_entries_no_client_could_have_announced() {
    let mut forged = LwwMap::new();
    let version = Version {
        hlc: 1 << 16,
        instance: "p".into(),
    };
    let lease = Lease {
        expires_ms: u64::MAX,
        replaced_expiry_ms: 0,
    };
    for key in [("", "x"), ("api", ""), ("api", "ok")] {
        forged.put(
            (key.0.to_string(), key.1.to_string()),
            version.clone(),
            lease,
        );
    }
    forged.put(("a".repeat(129), "x".into()), version.clone(), lease);
    let mut w = Writer::new();
    w.u8(SNAPSHOT_VERSION);
    forged.write_with(&mut w, |w, (app, address), l| {
        w.str(app)
            .str(address)
            .u64(l.expires_ms)
            .u64(l.replaced_expiry_ms);
    });
    let mut r = registry("a");
    r.merge(&w.finish()).expect("well-formed snapshot");
    assert_eq!(addresses(&mut r, 0, ""), ["api/ok"]);
}

#[test]
fn merge_takes_up_to_twice_max_entries_then_drops_new_ones() {
    let limits = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    let mut rs: Vec<Registry> = ["a", "b", "c"]
        .iter()
        .map(|id| Registry::new(id.to_string(), limits))
        .collect();
    for r in &mut rs {
        let app = r.instance.clone();
        for address in ["1", "2"] {
            announce(r, 1_000, &app, address, None).expect("room");
        }
    }
    let (b, c) = (rs[1].snapshot(), rs[2].snapshot());
    rs[0].merge(&b).expect("valid snapshot");
    assert_eq!(rs[0].entry_count(), 4);
    rs[0].merge(&c).expect("valid snapshot");
    assert_eq!(rs[0].entry_count(), 4, "bounded at twice maxEntries");
    assert!(addresses(&mut rs[0], 1_000, "c").is_empty());
}

#[test]
fn other_verbs_unknown_ops_and_bad_payloads_are_refused() {
    let mut r = registry("a");
    let acquire = Request::Acquire(vss_slot_sdk::Acquire {
        key: None,
        tokens: None,
    });
    match r.handle(&ctx(0), acquire) {
        Err(SlotError::Unsupported(m)) => assert!(m.contains("registry"), "{m}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    match call(&mut r, 0, "register", Vec::new()) {
        Err(SlotError::Unsupported(m)) => {
            assert!(
                m.contains("`register`") && m.contains("announce, withdraw, list"),
                "{m}"
            )
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    for op in [OP_ANNOUNCE, OP_WITHDRAW, OP_LIST] {
        let err = call(&mut r, 0, op, vec![9]).expect_err("garbage payload");
        assert!(invalid(err).contains(&format!("`{op}` payload")), "{op}");
    }
}
