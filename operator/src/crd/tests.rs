use serde_json::{Value, json};

use super::*;
use kube::CustomResourceExt;

fn crd_json() -> Value {
    serde_json::to_value(VssCluster::crd()).expect("CRD serializes")
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
