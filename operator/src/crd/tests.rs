use serde_json::{Value, json};

use super::*;

fn crd_json() -> Value {
    serde_json::to_value(definition()).expect("CRD serializes")
}

fn schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn cluster(slots: Value) -> VssCluster {
    serde_json::from_value(json!({
        "apiVersion": "vss.dev/v1alpha1",
        "kind": "VssCluster",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {"slots": slots}
    }))
    .expect("a VssCluster")
}

/// The CEL rules as the API server would run them on create.
fn cel_errors(slots: Value) -> String {
    match kube::core::cel::validate_cel(&cluster(slots)) {
        Ok(()) => String::new(),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn names_group_version_kind_and_columns() {
    let crd = crd_json();
    assert_eq!(crd["metadata"]["name"], "vssclusters.vss.dev");
    let v = &crd["spec"]["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(crd["spec"]["names"]["kind"], "VssCluster");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["vss"]));
    assert!(
        v["subresources"]["status"].is_object(),
        "status subresource"
    );
    let columns: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Instances", "Ready", "Leader", "Age"]);
}

#[test]
fn committed_crd_matches_the_generated_one() {
    let committed = include_str!("../../../crds/vsscluster.yaml");
    let generated = crate::crd_yaml().expect("renders");
    assert!(
        committed == generated,
        "crds/vsscluster.yaml is stale: run `cargo run -p vss-operator -- crd > crds/vsscluster.yaml`"
    );
}

#[test]
fn schema_bounds_slot_count_and_ids() {
    let spec = &schema()["properties"]["spec"]["properties"];
    assert_eq!(spec["slots"]["maxItems"], 100);
    let id = &spec["slots"]["items"]["properties"]["id"];
    assert_eq!(id["minimum"].as_f64(), Some(0.0));
    assert_eq!(id["maximum"].as_f64(), Some(99.0));
    assert_eq!(spec["instances"]["default"], 3);
    let required = spec["slots"]["items"]["required"]
        .as_array()
        .expect("required");
    assert!(required.contains(&json!("id")) && required.contains(&json!("type")));
}

#[test]
fn cel_accepts_the_seed_example() {
    let errors = cel_errors(json!([
        {"id": 0, "type": "token-bucket", "bucketSize": 200, "period": "second", "refreshRate": 100},
        {"id": 1, "type": "leaky-bucket", "bucketSize": 5, "period": "second"},
        {"id": 3, "type": "multicast", "timeout": "500ms", "deregTries": 3},
        {"id": 9, "type": "custom", "custom": {"configMapKeyRef": {"name": "m", "key": "w.wasm"}}}
    ]));
    assert_eq!(errors, "");
}

#[test]
fn cel_rejects_duplicate_ids() {
    let errors = cel_errors(json!([
        {"id": 4, "type": "broadcast"},
        {"id": 4, "type": "multicast"}
    ]));
    assert!(errors.contains("slot ids must be unique"), "{errors}");
}

#[test]
fn cel_rejects_a_limiter_without_bucket_size_or_period() {
    let errors = cel_errors(json!([{"id": 1, "type": "token-bucket", "period": "second"}]));
    assert!(errors.contains("bucketSize is required"), "{errors}");
    let errors = cel_errors(json!([{"id": 1, "type": "leaky-bucket", "bucketSize": 3}]));
    assert!(errors.contains("period is required"), "{errors}");
}

#[test]
fn cel_rejects_a_custom_slot_without_module() {
    let errors = cel_errors(json!([{"id": 2, "type": "custom"}]));
    assert!(
        errors.contains("custom (configMapKeyRef and config) is required"),
        "{errors}"
    );
}

#[test]
fn cel_rejects_fields_of_another_type() {
    let errors = cel_errors(json!([{"id": 2, "type": "broadcast", "bucketSize": 3}]));
    assert!(
        errors.contains("apply only to token-bucket and leaky-bucket"),
        "{errors}"
    );
    let errors = cel_errors(json!([{"id": 2, "type": "broadcast", "deregTries": 3}]));
    assert!(
        errors.contains("deregTries applies only to multicast and random"),
        "{errors}"
    );
    let errors = cel_errors(
        json!([{"id": 2, "type": "leaky-bucket", "bucketSize": 1, "period": "hour", "tokensPerReq": 3}]),
    );
    assert!(
        errors.contains("tokensPerReq applies only to token-bucket"),
        "{errors}"
    );
}

/// The examples parse as VssClusters, pass the CEL rules and the
/// runtime's own validation.
#[test]
fn examples_are_valid() {
    for (name, text) in [
        (
            "vsscluster-minimal.yaml",
            include_str!("../../../examples/vsscluster-minimal.yaml"),
        ),
        (
            "vsscluster-seed.yaml",
            include_str!("../../../examples/vsscluster-seed.yaml"),
        ),
        (
            "vsscluster-data.yaml",
            include_str!("../../../examples/vsscluster-data.yaml"),
        ),
    ] {
        let cluster: VssCluster =
            serde_norway::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Err(e) = kube::core::cel::validate_cel(&cluster) {
            panic!("{name}: {e:?}");
        }
        if let Err(e) = crate::slots::render(&cluster.spec) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn seed_example_has_three_limiters_and_two_multicast_slots() {
    let cluster: VssCluster =
        serde_norway::from_str(include_str!("../../../examples/vsscluster-seed.yaml"))
            .expect("parses");
    let types: Vec<&str> = cluster
        .spec
        .slots
        .iter()
        .map(|s| s.slot_type.as_str())
        .collect();
    assert_eq!(types.iter().filter(|t| t.ends_with("-bucket")).count(), 3);
    assert_eq!(types.iter().filter(|t| **t == "multicast").count(), 2);
    assert_eq!(cluster.spec.instances, 3);
}

fn named(name: &str) -> VssCluster {
    serde_json::from_value(json!({
        "apiVersion": "vss.dev/v1alpha1",
        "kind": "VssCluster",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"slots": []}
    }))
    .expect("a VssCluster")
}

#[test]
fn names_that_derived_service_and_pod_names_cannot_take_are_refused() {
    let longest = format!("a{}", "b".repeat(MAX_NAME_LEN - 1));
    for ok in ["demo", "a", "rate-limits-2", longest.as_str()] {
        assert!(
            kube::core::cel::validate_cel(&named(ok)).is_ok(),
            "{ok} refused"
        );
    }
    let too_long = format!("{longest}c");
    for bad in ["rate.limits", "1limits", "limits-", too_long.as_str()] {
        let err = format!("{:?}", kube::core::cel::validate_cel(&named(bad)));
        assert!(
            err.contains("metadata.name must be at most 52"),
            "{bad}: {err}"
        );
    }
}

/// The rule's literal 52 is MAX_NAME_LEN; the headless Service name
/// `<name>-peers` is a DNS-1035 label (at most 63) with room to spare.
#[test]
fn the_name_rule_states_max_name_len() {
    let rules = &schema()["x-kubernetes-validations"];
    let rule = rules[0]["rule"].as_str().expect("a root rule");
    assert!(
        rule.contains(&format!("size() <= {MAX_NAME_LEN}")),
        "{rule}"
    );
    assert!(MAX_NAME_LEN + "-peers".len() <= 63);
}

#[test]
fn the_schema_has_no_nullable_fields_and_only_kubernetes_formats() {
    let text = serde_json::to_string(&schema()).expect("serializes");
    assert!(
        !text.contains("\"nullable\""),
        "nullable left in the schema"
    );
    assert!(!text.contains("uint"), "a uint format left in the schema");
    let slot = &schema()["properties"]["spec"]["properties"]["slots"]["items"]["properties"];
    for field in ["bucketSize", "refreshRate"] {
        assert_eq!(slot[field]["format"], "int64");
        assert_eq!(
            slot[field]["maximum"].as_f64(),
            Some(vss_config::MAX_COUNT as f64)
        );
    }
    assert_eq!(
        slot["maxKeys"]["maximum"].as_f64(),
        Some(vss_config::MAX_MAX_KEYS as f64)
    );
}

#[test]
fn conditions_are_a_map_keyed_by_type() {
    let conditions = &schema()["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
}

#[test]
fn chaos_on_needs_an_interval() {
    let mut c = named("demo");
    c.spec.chaos = Some(Chaos {
        enabled: true,
        pod_kill_interval: None,
    });
    let err = format!("{:?}", kube::core::cel::validate_cel(&c));
    assert!(err.contains("chaos.podKillInterval is required"), "{err}");
    c.spec.chaos = Some(Chaos {
        enabled: false,
        pod_kill_interval: None,
    });
    assert!(kube::core::cel::validate_cel(&c).is_ok());
    let pattern = &schema()["properties"]["spec"]["properties"]["chaos"]["properties"]["podKillInterval"]
        ["pattern"];
    let re = regex::Regex::new(pattern.as_str().expect("a pattern")).expect("compiles");
    assert!(re.is_match("10m") && re.is_match("90s"));
    assert!(!re.is_match("0s") && !re.is_match("05m"));
}

/// The runtime counts `rls` domains, keys and values in bytes; the schema's
/// `maxLength` counts characters, so CEL rules say the rest: on the domain
/// itself, and for keys and values one rule per entry index on the
/// descriptor list (a rule on each key would pass the API server's cost
/// budget).
#[test]
fn rls_rules_bound_bytes() {
    let slot = &schema()["properties"]["spec"]["properties"]["slots"]["items"];
    let rls = &slot["properties"]["rls"];
    assert_eq!(rls["maxItems"], 256);
    let rule = &rls["items"]["properties"];
    let descriptor = &rule["descriptor"];
    let entry = &descriptor["items"]["properties"];
    for (field, max) in [
        (&rule["domain"], 128),
        (&entry["key"], 256),
        (&entry["value"], 256),
    ] {
        assert_eq!(field["maxLength"], max, "{field}");
    }
    assert!(
        rule["domain"]["x-kubernetes-validations"]
            .to_string()
            .contains("bytes(self).size() <= 128")
    );
    assert_eq!(descriptor["maxItems"], 8);
    let messages: Vec<&str> = descriptor["x-kubernetes-validations"]
        .as_array()
        .expect("descriptor rules")
        .iter()
        .filter_map(|r| r["message"].as_str())
        .collect();
    for i in 0..8 {
        for field in ["key", "value"] {
            let want = format!("descriptor[{i}].{field} must be at most 256 bytes (UTF-8)");
            assert!(messages.contains(&want.as_str()), "{messages:?}");
        }
    }

    let limiter = |domain: &str, descriptor: Value| {
        cel_errors(
            json!([{"id": 0, "type": "token-bucket", "bucketSize": 1, "period": "second",
            "rls": [{"domain": domain, "descriptor": descriptor}]}]),
        )
    };
    let errors = limiter(&format!("{}é", "d".repeat(127)), json!([{"key": "k"}]));
    assert!(
        errors.contains("domain must be at most 128 bytes"),
        "{errors}"
    );
    assert_eq!(limiter(&"é".repeat(64), json!([{"key": "k"}])), "");
    // 257 bytes in the last entry's key, then in the first entry's value.
    let over = format!("{}é", "x".repeat(255));
    let mut entries: Vec<Value> = (0..7).map(|i| json!({"key": format!("k{i}")})).collect();
    entries.push(json!({"key": over}));
    let errors = limiter("d", Value::Array(entries));
    assert!(
        errors.contains("descriptor[7].key must be at most 256 bytes"),
        "{errors}"
    );
    let errors = limiter("d", json!([{"key": "k", "value": over}]));
    assert!(
        errors.contains("descriptor[0].value must be at most 256 bytes"),
        "{errors}"
    );
    // 256 bytes, in ASCII or in two-byte characters, and no value at all.
    let at = json!([{"key": "x".repeat(256), "value": "é".repeat(128)}, {"key": "k"}]);
    assert_eq!(limiter("d", at), "");
}

/// A duration Go's parser cannot hold (the API server's `duration()`) is
/// refused with the rule's message, not an evaluation error.
#[test]
fn an_overlong_duration_is_refused_by_the_rule() {
    let errors = cel_errors(json!([{"id": 0, "type": "broadcast", "timeout": "9999999999999ms"}]));
    assert!(
        errors.contains("timeout must be between 1ms and 60s"),
        "{errors}"
    );
    assert_eq!(
        cel_errors(json!([{"id": 0, "type": "broadcast", "timeout": "0000000060000ms"}])),
        ""
    );
}

/// Without `maxTtl`, `defaultTtl` is bounded by the runtime's default
/// `maxTtl`, 1h.
#[test]
fn default_ttl_is_at_most_max_ttl_or_its_default() {
    let registry = |fields: Value| {
        let mut slot = json!({"id": 0, "type": "registry"});
        slot.as_object_mut()
            .expect("object")
            .extend(fields.as_object().expect("object").clone());
        cel_errors(json!([slot]))
    };
    assert_eq!(registry(json!({"defaultTtl": "1h"})), "");
    let errors = registry(json!({"defaultTtl": "3600001ms"}));
    assert!(
        errors.contains("defaultTtl must be at most maxTtl (1h when maxTtl is not set)"),
        "{errors}"
    );
    assert_eq!(registry(json!({"defaultTtl": "2h", "maxTtl": "2h"})), "");
    let errors = registry(json!({"defaultTtl": "2h", "maxTtl": "90m"}));
    assert!(
        errors.contains("defaultTtl must be at most maxTtl"),
        "{errors}"
    );
}
