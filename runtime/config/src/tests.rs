use super::*;

fn load(yaml: &str) -> Result<ValidConfig, ConfigError> {
    SlotsConfig::from_yaml(yaml)
        .expect("test YAML parses")
        .validate()
}

fn errors(yaml: &str) -> String {
    load(yaml).expect_err("config must be refused").to_string()
}

#[test]
fn accepts_the_seed_example_in_both_spellings() {
    let camel = load("slots:\n- {id: 0, type: token-bucket, bucketSize: 200, period: second, refreshRate: 100}\n")
        .expect("valid");
    let snake = load("slots:\n- {id: 0, type: token-bucket, bucket_size: 200, period: second, refresh_rate: 100}\n")
        .expect("valid");
    assert_eq!(camel, snake);
    let slot = camel
        .slot(SlotId::new(0).expect("0 is a slot id"))
        .expect("slot 0");
    assert_eq!(
        slot.kind,
        SlotKind::TokenBucket(TokenBucket {
            bucket_size: 200,
            period: Period::Second,
            refresh_rate: 100,
            tokens_per_req: 1,
            max_keys: DEFAULT_MAX_KEYS,
        })
    );
}

#[test]
fn flattens_config_for_the_module() {
    let cfg = load("slots:\n- {id: 1, type: leaky-bucket, bucketSize: 5, period: minute}\n")
        .expect("valid");
    let slot = cfg.slots().next().expect("one slot");
    assert_eq!(
        slot.kind.module_config(),
        vec![
            ("bucketSize".to_string(), "5".to_string()),
            ("period".to_string(), "minute".to_string()),
            ("refreshRate".to_string(), "1".to_string()),
            ("maxKeys".to_string(), "10000".to_string()),
        ]
    );
}

#[test]
fn missing_bucket_size_names_slot_and_field() {
    let e = errors("slots:\n- {id: 7, type: token-bucket, period: second}\n");
    assert!(e.contains("slot 7: field `bucketSize`: is required"), "{e}");
}

#[test]
fn zero_or_unknown_period_is_refused() {
    let e = errors("slots:\n- {id: 3, type: token-bucket, bucketSize: 1, period: 0}\n");
    assert!(
        e.contains("slot 3: field `period`: must be second, minute or hour, got `0`"),
        "{e}"
    );
    let e = errors("slots:\n- {id: 3, type: leaky-bucket, bucketSize: 1, period: fortnight}\n");
    assert!(e.contains("got `fortnight`"), "{e}");
}

#[test]
fn zero_counts_are_refused() {
    let e = errors(
        "slots:\n- {id: 2, type: token-bucket, bucketSize: 0, period: second, refreshRate: 0}\n",
    );
    assert!(
        e.contains("slot 2: field `bucketSize`: must be between 1 and"),
        "{e}"
    );
    assert!(
        e.contains("slot 2: field `refreshRate`: must be between 1 and"),
        "{e}"
    );
}

#[test]
fn counts_above_2_pow_53_are_refused() {
    let e = errors(&format!(
        "slots:\n- {{id: 2, type: leaky-bucket, bucketSize: {}, period: second}}\n",
        MAX_COUNT + 1
    ));
    assert!(
        e.contains("field `bucketSize`: must be between 1 and 9007199254740991"),
        "{e}"
    );
}

#[test]
fn unknown_type_is_refused() {
    let e = errors("slots:\n- {id: 4, type: token-buket}\n");
    assert!(
        e.contains("slot 4: field `type`: unknown slot type `token-buket`"),
        "{e}"
    );
}

#[test]
fn duplicate_ids_are_refused() {
    let e = errors(
        "slots:\n- {id: 5, type: token-bucket, bucketSize: 1, period: second}\n- {id: 5, type: leaky-bucket, bucketSize: 1, period: second}\n",
    );
    assert!(
        e.contains("slot 5: field `id`: is used by more than one slot"),
        "{e}"
    );
}

#[test]
fn ids_outside_0_to_99_are_refused() {
    let e = errors(
        "slots:\n- {id: 100, type: token-bucket, bucketSize: 1, period: second}\n- {id: -1, type: token-bucket, bucketSize: 1, period: second}\n",
    );
    assert!(
        e.contains("slot 100: field `id`: must be between 0 and 99"),
        "{e}"
    );
    assert!(e.contains("slot -1: field `id`"), "{e}");
}

#[test]
fn more_than_100_slots_are_refused() {
    let mut yaml = String::from("slots:\n");
    for i in 0..101 {
        yaml.push_str(&format!(
            "- {{id: {}, type: token-bucket, bucketSize: 1, period: second}}\n",
            i % 100
        ));
    }
    let e = errors(&yaml);
    assert!(
        e.contains("field `slots`: 101 slots configured, at most 100 allowed"),
        "{e}"
    );
}

#[test]
fn fields_of_another_type_are_refused() {
    let e = errors(
        "slots:\n- {id: 6, type: leaky-bucket, bucketSize: 1, period: second, tokensPerReq: 3}\n",
    );
    assert!(
        e.contains("slot 6: field `tokensPerReq`: does not apply to type leaky-bucket"),
        "{e}"
    );
}

#[test]
fn unknown_fields_are_refused_by_the_parser() {
    let e = SlotsConfig::from_yaml(
        "slots:\n- {id: 0, type: token-bucket, bucketsize: 1, period: second}\n",
    )
    .expect_err("typo must not be ignored")
    .to_string();
    assert!(e.contains("unknown field `bucketsize`"), "{e}");
}

#[test]
fn custom_slots_need_a_module_and_take_scalar_config() {
    let e = errors("slots:\n- {id: 9, type: custom}\n");
    assert!(
        e.contains("slot 9: field `custom`: is required for type custom"),
        "{e}"
    );
    let cfg = SlotsConfig::from_yaml(
        "slots:\n- id: 9\n  type: custom\n  custom:\n    module: mods/fw.wasm\n    config: {limit: 10, window: second, strict: true}\n",
    )
    .expect("parses")
    .validate_with_base(Path::new("/etc/vss"))
    .expect("valid");
    let SlotKind::Custom(c) = &cfg.slots().next().expect("one slot").kind else {
        panic!("custom slot expected");
    };
    assert_eq!(c.module, Path::new("/etc/vss/mods/fw.wasm"));
    assert_eq!(c.config.get("limit").map(String::as_str), Some("10"));
    assert_eq!(c.config.get("strict").map(String::as_str), Some("true"));
}

#[test]
fn reports_every_problem_at_once() {
    let e = errors("slots:\n- {id: 1, type: token-bucket}\n- {id: 2, type: nope}\n");
    assert!(e.contains("slot 1: field `bucketSize`"), "{e}");
    assert!(e.contains("slot 1: field `period`"), "{e}");
    assert!(e.contains("slot 2: field `type`"), "{e}");
}

#[test]
fn unreadable_file_names_its_path() {
    let e = load_file(Path::new("/nonexistent/vss.yaml"))
        .expect_err("no such file")
        .to_string();
    assert!(e.contains("/nonexistent/vss.yaml"), "{e}");
}

#[test]
fn signal_slots_take_timeout_and_dereg_tries() {
    let cfg = load(
        "slots:\n- {id: 10, type: broadcast, timeout: 250ms}\n- {id: 11, type: multicast, timeout: 2s, deregTries: 5}\n- {id: 12, type: random, dereg_tries: 2}\n",
    )
    .expect("valid");
    let kinds: Vec<_> = cfg.slots().map(|s| s.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            SlotKind::Broadcast(Signal {
                timeout: std::time::Duration::from_millis(250),
                dereg_tries: 3
            }),
            SlotKind::Multicast(Signal {
                timeout: std::time::Duration::from_secs(2),
                dereg_tries: 5
            }),
            SlotKind::Random(Signal {
                timeout: DEFAULT_SIGNAL_TIMEOUT,
                dereg_tries: 2
            }),
        ]
    );
}

#[test]
fn bad_signal_fields_are_refused() {
    let e = errors(
        "slots:\n- {id: 10, type: broadcast, timeout: soon}\n- {id: 11, type: multicast, timeout: 0s}\n- {id: 12, type: broadcast, deregTries: 2}\n- {id: 13, type: random, bucketSize: 3}\n- {id: 14, type: token-bucket, bucketSize: 1, period: second, timeout: 1s}\n",
    );
    assert!(
        e.contains("slot 10: field `timeout`: must be a duration like `500ms` or `2s`, got `soon`"),
        "{e}"
    );
    assert!(
        e.contains("slot 11: field `timeout`: must be more than 0 and at most 60s"),
        "{e}"
    );
    assert!(
        e.contains("slot 12: field `deregTries`: does not apply to type broadcast"),
        "{e}"
    );
    assert!(
        e.contains("slot 13: field `bucketSize`: does not apply to type random"),
        "{e}"
    );
    assert!(
        e.contains("slot 14: field `timeout`: does not apply to type token-bucket"),
        "{e}"
    );
}

#[test]
fn durations_parse_with_units() {
    assert_eq!(
        parse_duration("250ms"),
        Some(std::time::Duration::from_millis(250))
    );
    assert_eq!(
        parse_duration("2s"),
        Some(std::time::Duration::from_secs(2))
    );
    assert_eq!(
        parse_duration("1m"),
        Some(std::time::Duration::from_secs(60))
    );
    assert_eq!(
        parse_duration("2h"),
        Some(std::time::Duration::from_secs(7_200))
    );
    assert_eq!(parse_duration("2d"), None);
    assert_eq!(parse_duration("ms"), None);
}

#[test]
fn accepts_the_sibling_types_with_defaults() {
    let cfg = load(
        "slots:\n- {id: 20, type: counter}\n- {id: 21, type: register}\n- {id: 22, type: registry}\n- {id: 23, type: tick, interval: 100ms}\n",
    )
    .expect("valid");
    let kinds: Vec<_> = cfg.slots().map(|s| s.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            SlotKind::Counter(Counter { grow_only: false }),
            SlotKind::Register(Register {
                max_keys: DEFAULT_MAX_KEYS,
                max_key_bytes: DEFAULT_MAX_KEY_BYTES,
                max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
                tombstone_ttl: DEFAULT_TOMBSTONE_TTL,
            }),
            SlotKind::Registry(Registry {
                max_entries: DEFAULT_MAX_KEYS,
                default_ttl: DEFAULT_REGISTRY_TTL,
                max_ttl: DEFAULT_MAX_TTL,
            }),
            SlotKind::Tick(Tick {
                interval: std::time::Duration::from_millis(100),
            }),
        ]
    );
    assert!(kinds[..3].iter().all(SlotKind::everywhere));
    assert!(kinds.iter().all(SlotKind::served_locally));
    assert_eq!(
        kinds[1].module_config(),
        vec![
            ("maxKeys".to_string(), "10000".to_string()),
            ("maxKeyBytes".to_string(), "256".to_string()),
            ("maxValueBytes".to_string(), "1024".to_string()),
            ("tombstoneTtlMs".to_string(), "60000".to_string()),
        ]
    );
}

#[test]
fn sibling_type_errors_name_the_field_and_the_limit() {
    let e = errors(
        "slots:\n- {id: 1, type: tick}\n- {id: 2, type: tick, interval: 5ms}\n- {id: 3, type: register, maxValueBytes: 100000}\n- {id: 4, type: registry, defaultTtl: 2h, maxTtl: 1h}\n- {id: 5, type: counter, growOnly: true, interval: 1s}\n- {id: 6, type: token-bucket, bucketSize: 1, period: second, growOnly: true}\n- {id: 7, type: register, tombstoneTtl: soon}\n",
    );
    for expected in [
        "slot 1: field `interval`: is required for type tick",
        "slot 2: field `interval`: must be between 10ms and 1h, got `5ms`",
        "slot 3: field `maxValueBytes`: must be between 1 and 65536, got 100000",
        "slot 4: field `defaultTtl`: must be at most maxTtl (1h), got 2h",
        "slot 5: field `interval`: does not apply to type counter",
        "slot 6: field `growOnly`: does not apply to type token-bucket",
        "slot 7: field `tombstoneTtl`: must be a duration",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
}

const RLS_SLOTS: &str = "slots:
- id: 30
  type: token-bucket
  bucketSize: 10
  period: second
  rls:
  - domain: edge
    descriptor: [{key: remote_address}]
  - domain: edge
    name: checkout
    shadow: true
    descriptor: [{key: path, value: /checkout}, {key: remote_address}]
";

#[test]
fn rls_rules_are_checked_into_the_slot_def() {
    let cfg = load(RLS_SLOTS).expect("valid");
    let slot = cfg.slots().next().expect("one slot");
    assert_eq!(slot.rls.len(), 2);
    assert_eq!(slot.rls[0].name, "slot30-rule0", "default name");
    assert_eq!(
        slot.rls[1].descriptor[0],
        RlsEntry {
            key: "path".into(),
            value: Some("/checkout".into())
        }
    );
    assert!(slot.rls[1].shadow);
}

#[test]
fn rls_on_a_non_limiter_is_refused() {
    let e =
        errors("slots:\n- {id: 4, type: counter, rls: [{domain: d, descriptor: [{key: k}]}]}\n");
    assert!(
        e.contains("slot 4: field `rls`: does not apply to type counter"),
        "{e}"
    );
}

#[test]
fn rls_bad_fields_are_named() {
    let e = errors(
        "slots:\n- {id: 5, type: leaky-bucket, bucketSize: 1, period: second, rls: [{domain: '', descriptor: []}, {domain: d, name: 'a b', descriptor: [{key: k, value: ''}]}]}\n",
    );
    for want in [
        "slot 5: field `rls[0].domain`: must not be empty",
        "slot 5: field `rls[0].descriptor`: needs at least one entry",
        "slot 5: field `rls[1].descriptor[0].value`: must not be empty",
        "slot 5: field `rls[1].name`: must be 1 to 64 letters",
    ] {
        assert!(e.contains(want), "missing {want:?} in {e}");
    }
}

#[test]
fn the_same_rls_descriptor_twice_in_a_domain_is_refused() {
    let e = errors(
        "slots:
- {id: 1, type: token-bucket, bucketSize: 1, period: second, rls: [{domain: d, descriptor: [{key: ip}]}]}
- {id: 2, type: leaky-bucket, bucketSize: 1, period: second, rls: [{domain: d, name: slot1-rule0, descriptor: [{key: ip}]}]}
",
    );
    assert!(
        e.contains("slot 2: field `rls[0].descriptor`: domain `d` already has a rule for this descriptor (slot 1, rls[0])"),
        "{e}"
    );
    assert!(e.contains("already has a rule named `slot1-rule0`"), "{e}");
    // Another domain may reuse both.
    load(
        "slots:
- {id: 1, type: token-bucket, bucketSize: 1, period: second, rls: [{domain: d, descriptor: [{key: ip}]}]}
- {id: 2, type: token-bucket, bucketSize: 1, period: second, rls: [{domain: e, descriptor: [{key: ip}]}]}
",
    )
    .expect("domains are separate");
}

#[test]
fn a_pushed_config_may_name_modules_inside_the_module_folder_only() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join("mods")).expect("mkdir");
    std::fs::write(root.path().join("mods/ok.wasm"), b"\0asm").expect("write");
    let config = |module: &str| {
        SlotsConfig::from_yaml(&format!(
            "slots:\n- {{id: 4, type: custom, custom: {{module: '{module}'}}}}\n"
        ))
        .expect("parses")
    };
    config("mods/ok.wasm")
        .validate_confined(root.path())
        .expect("inside the folder");
    for outside in ["/etc/passwd", "../secret.wasm", "mods/../../x.wasm"] {
        let e = config(outside)
            .validate_confined(root.path())
            .expect_err(outside)
            .to_string();
        assert!(
            e.contains("slot 4: field `custom.module`: must be a path inside the module folder"),
            "{e}"
        );
        assert!(e.contains(outside), "{e}");
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("mods/link.wasm"))
            .expect("symlink");
        let e = config("mods/link.wasm")
            .validate_confined(root.path())
            .expect_err("a link out of the folder")
            .to_string();
        assert!(e.contains("must be a path inside the module folder"), "{e}");
    }
}

#[test]
fn duplicate_id_is_reported_even_when_its_first_occurrence_is_invalid() {
    let e = errors(
        "slots:\n- {id: 5, type: token-bucket, period: second}\n- {id: 5, type: leaky-bucket, bucketSize: 1, period: second}\n",
    );
    assert!(e.contains("slot 5: field `bucketSize`: is required"), "{e}");
    assert!(
        e.contains("slot 5: field `id`: is used by more than one slot"),
        "{e}"
    );
}

#[test]
fn duplicate_of_an_out_of_range_id_is_reported() {
    let e = errors(
        "slots:\n- {id: 100, type: counter}\n- {id: 100, type: counter}\n- {id: 100, type: counter}\n",
    );
    assert!(
        e.contains("slot 100: field `id`: must be between 0 and 99"),
        "{e}"
    );
    assert!(
        e.contains("slot 100: field `id`: is used by more than one slot"),
        "{e}"
    );
}

#[test]
fn each_problem_reads_once() {
    // Three uses of one id, each missing the same field: one line each.
    let e = load(
        "slots:\n- {id: 4, type: token-bucket, period: second}\n- {id: 4, type: token-bucket, period: second}\n- {id: 4, type: token-bucket, period: second}\n",
    )
    .expect_err("refused");
    let lines: Vec<String> = e.problems().iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "slot 4: field `bucketSize`: is required for type token-bucket",
            "slot 4: field `id`: is used by more than one slot (ids must be unique)",
        ],
        "{e}"
    );
}

/// What anyhow prints with `{:#}` (and, line by line, under `Caused by:`):
/// the error and each of its sources.
fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        out.push(cause.to_string());
        next = cause.source();
    }
    out
}

#[test]
fn file_errors_say_their_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("slots.yaml");

    let missing = load_file(&dir.path().join("absent.yaml")).expect_err("no such file");
    let text = chain(&missing).join(": ");
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
    assert!(text.contains("absent.yaml"), "{text}");

    std::fs::write(
        &file,
        "slots:\n- {id: 0, type: token-bucket, bucketsize: 1}\n",
    )
    .expect("write");
    let bad_yaml = load_file(&file).expect_err("unknown field");
    let text = chain(&bad_yaml).join(": ");
    assert_eq!(
        text.matches("unknown field `bucketsize`").count(),
        1,
        "{text}"
    );
    assert!(text.contains("slots.yaml"), "{text}");

    std::fs::write(
        &file,
        "slots:\n- {id: 0, type: token-bucket, period: second}\n",
    )
    .expect("write");
    let invalid = load_file(&file).expect_err("missing bucketSize");
    let text = chain(&invalid).join(": ");
    assert_eq!(text.matches("field `bucketSize`").count(), 1, "{text}");
    assert!(
        text.starts_with(&format!("config file {} is invalid:\n", file.display())),
        "{text}"
    );
}

#[test]
fn a_file_reports_every_slot_it_cannot_read_and_what_the_others_get_wrong() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("slots.yaml");
    std::fs::write(
        &path,
        "slots:\n\
         - id: 1\n  type: token-bucket\n  bucketSize: 10\n  perod: second\n  refreshRate: 1\n\
         - id: 1\n  type: broadcast\n  bogus: 1\n\
         - id: 2\n  type: token-bucket\n  bucketSize: 0\n  period: second\n  refreshRate: 1\n\
         - id: 2\n  type: broadcast\n",
    )
    .expect("write");
    let e = crate::load_file(&path).expect_err("invalid").to_string();
    let lines: Vec<&str> = e.lines().collect();
    assert!(lines[0].ends_with("slots.yaml: 4 problems:"), "{e}");
    assert!(lines[1].contains("slots[0]: unknown field `perod`"), "{e}");
    assert!(
        lines[1].contains("line 5"),
        "the parser's error keeps its line: {e}"
    );
    assert!(lines[2].contains("slots[1]: unknown field `bogus`"), "{e}");
    assert!(lines[3].contains("slot 2: field `bucketSize`"), "{e}");
    assert!(
        lines[4].contains("slot 2: field `id`: is used by more than one slot"),
        "{e}"
    );
    assert_eq!(lines.len(), 5, "each problem once: {e}");
}

fn kind(yaml: &str) -> SlotKind {
    let config = SlotsConfig::from_yaml(&format!("slots:\n  - {{id: 1, {yaml}}}\n"))
        .expect("parses")
        .validate()
        .expect("valid");
    config.slots().next().expect("one slot").kind.clone()
}

#[test]
fn a_change_that_keeps_the_meaning_keeps_the_state() {
    let keeps = |from: &str, to: &str| kind(to).keeps_state_of(&kind(from));
    let tb = "type: token-bucket, period: second";
    assert_eq!(
        keeps(
            &format!("{tb}, bucketSize: 10"),
            &format!("{tb}, bucketSize: 50, refreshRate: 5")
        ),
        Ok(())
    );
    assert_eq!(
        keeps(
            &format!("{tb}, bucketSize: 10, maxKeys: 10"),
            &format!("{tb}, bucketSize: 10, maxKeys: 20")
        ),
        Ok(())
    );
    assert_eq!(
        keeps(
            "type: multicast, timeout: 1s",
            "type: multicast, timeout: 5s, deregTries: 9"
        ),
        Ok(())
    );
    // Grow-only refuses decrements from then on; the totals mean the same.
    assert_eq!(
        keeps("type: counter", "type: counter, growOnly: true"),
        Ok(())
    );
    assert_eq!(
        keeps(
            "type: registry, defaultTtl: 10s",
            "type: registry, defaultTtl: 30s"
        ),
        Ok(())
    );
}

#[test]
fn a_change_of_meaning_starts_fresh_and_says_why() {
    let why = |from: &str, to: &str| kind(to).keeps_state_of(&kind(from)).expect_err("fresh");
    assert_eq!(
        why(
            "type: token-bucket, bucketSize: 10, period: second",
            "type: token-bucket, bucketSize: 10, period: minute"
        ),
        "`period` changed from second to minute: tokens are counted per period"
    );
    assert_eq!(
        why(
            "type: token-bucket, bucketSize: 10, period: second, maxKeys: 20",
            "type: token-bucket, bucketSize: 10, period: second, maxKeys: 5"
        ),
        "`maxKeys` was lowered from 20 to 5: the state held may not fit"
    );
    assert_eq!(
        why(
            "type: counter",
            "type: token-bucket, bucketSize: 1, period: second"
        ),
        "its type changed from counter to token-bucket"
    );
    assert!(why("type: tick, interval: 1s", "type: tick, interval: 2s").contains("`interval`"));
}
