//! Offline checks of VssCluster manifests (`vss-operator validate`), in the
//! order the API server runs them on `kubectl apply`: apiVersion and kind,
//! the CRD's structural schema with strict field validation
//! ([`crate::structural`]), the CEL rules; then the runtime's own slot
//! validation, which the operator applies before anything reaches a pod.

use kube::Resource;
use serde::Deserialize;
use serde_json::Value;

use crate::crd::VssCluster;

/// Fields of `metadata` a manifest may set (ObjectMeta's, less the ones
/// the server owns); strict field validation refuses any other.
const METADATA_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Checks every YAML document of `text`; returns the number of clusters
/// checked or every problem found, each naming the document and field.
pub fn validate_manifests(text: &str) -> Result<usize, Vec<String>> {
    let crd = serde_json::to_value(crate::crd::definition()).expect("the CRD serializes");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut problems = Vec::new();
    let mut count = 0;
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let mut value = match Value::deserialize(doc) {
            Ok(Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("document {i}: not YAML: {e}"));
                continue;
            }
        };
        count += 1;
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        let found = check_document(schema, &mut value);
        let schema_ok = found.is_empty();
        problems.extend(found.into_iter().map(|p| format!("VssCluster {name}: {p}")));
        let cluster: VssCluster = match serde_json::from_value(value) {
            Ok(c) => c,
            // After a schema problem this says the same thing less well.
            Err(_) if !schema_ok => continue,
            Err(e) => {
                problems.push(format!("VssCluster {name}: {e}"));
                continue;
            }
        };
        if let Err(errors) = kube::core::cel::validate_cel(&cluster) {
            // Each reads `<field path>: <rule message>`, as kubectl shows it.
            problems.extend(errors.iter().map(|e| format!("VssCluster {name}: {e}")));
        }
        if let Err(e) = crate::slots::render(&cluster.spec) {
            problems.push(format!("VssCluster {name}: {e}"));
        }
    }
    if problems.is_empty() {
        Ok(count)
    } else {
        Err(problems)
    }
}

/// What the API server refuses before any CEL rule runs; prunes `value`'s
/// nulls as the server does, so later checks see what it would store.
fn check_document(schema: &Value, value: &mut Value) -> Vec<String> {
    let want_api = VssCluster::api_version(&());
    let want_kind = VssCluster::kind(&());
    let api = value["apiVersion"].as_str().unwrap_or_default();
    let kind = value["kind"].as_str().unwrap_or_default();
    if api != want_api || kind != want_kind {
        // The API server has no schema for another kind and stops here.
        return vec![format!(
            "apiVersion/kind: is {api:?}/{kind:?}, must be {want_api:?}/{want_kind:?} (the API server answers: no matches for kind {kind:?} in version {api:?})"
        )];
    }
    let mut problems = Vec::new();
    match value.get("metadata").and_then(Value::as_object) {
        None => problems.push("metadata: Required value".to_string()),
        Some(meta) => {
            if !meta.contains_key("name") && !meta.contains_key("generateName") {
                problems
                    .push("metadata.name: Required value: name or generateName is required".into());
            }
            problems.extend(
                meta.keys()
                    .filter(|k| !METADATA_FIELDS.contains(&k.as_str()))
                    .map(|k| format!("unknown field \"metadata.{k}\"")),
            );
        }
    }
    // The schema does not declare apiVersion, kind and metadata: the API
    // server checks them itself (above).
    let mut body = value.clone();
    if let Some(map) = body.as_object_mut() {
        for key in ["apiVersion", "kind", "metadata"] {
            map.remove(key);
        }
    }
    crate::structural::prune_nulls(schema, &mut body);
    crate::structural::check(schema, &body, "", &mut problems);
    if let (Some(pruned), Some(map)) = (body.as_object(), value.as_object_mut()) {
        map.retain(|k, _| ["apiVersion", "kind", "metadata"].contains(&k.as_str()));
        map.extend(pruned.clone());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(slots: &str) -> Result<usize, String> {
        check_spec(&format!("  slots:\n{slots}"))
    }

    #[test]
    fn accepts_a_valid_cluster() {
        assert_eq!(check("    - {id: 1, type: broadcast}\n"), Ok(1));
    }

    #[test]
    fn duplicate_ids_name_the_rule_and_the_slot() {
        let err = check("    - {id: 1, type: broadcast}\n    - {id: 1, type: broadcast}\n")
            .expect_err("invalid");
        assert!(err.contains("spec.slots: slot ids must be unique"), "{err}");
        assert!(
            err.contains("slot 1: field `id`: is used by more than one slot"),
            "{err}"
        );
    }

    /// Each file in testdata/invalid is rejected with the message its
    /// `# operator:` line names (.ci/check-operator runs the same files
    /// through the binary and through the CRD's schema).
    #[test]
    fn every_invalid_example_is_rejected_for_its_reason() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/invalid");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).expect("testdata/invalid") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            let expected = text
                .lines()
                .find_map(|l| l.strip_prefix("# operator: "))
                .unwrap_or_else(|| panic!("{}: no `# operator:` line", path.display()));
            // What kubectl prints, checked against a real API server by
            // the e2e suite; every file must say it.
            assert!(
                text.lines().any(|l| l.starts_with("# server: ")),
                "{}: no `# server:` line",
                path.display()
            );
            let problems = validate_manifests(&text)
                .err()
                .unwrap_or_else(|| panic!("{} was accepted", path.display()))
                .join("\n");
            assert!(
                problems.contains(expected),
                "{}: {problems}",
                path.display()
            );
            checked += 1;
        }
        assert!(checked >= 18, "only {checked} invalid examples");
    }

    fn check_spec(spec: &str) -> Result<usize, String> {
        let text = format!(
            "apiVersion: vss.dev/v1alpha1\nkind: VssCluster\nmetadata: {{name: t}}\nspec:\n{spec}"
        );
        validate_manifests(&text).map_err(|p| p.join("\n"))
    }

    #[test]
    fn an_unknown_spec_field_is_named_by_path() {
        let err = check_spec("  instance: 5\n").expect_err("invalid");
        assert!(err.contains("unknown field \"spec.instance\""), "{err}");
    }

    #[test]
    fn a_wrong_kind_or_api_version_is_refused() {
        for (api, kind) in [("vss.dev/v1", "VssCluster"), ("vss.dev/v1alpha1", "Vss")] {
            let text =
                format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: t}}\nspec: {{}}\n");
            let err = validate_manifests(&text).expect_err("invalid").join("\n");
            assert!(err.contains("apiVersion/kind"), "{err}");
        }
    }

    #[test]
    fn custom_config_takes_booleans_and_numbers_but_not_maps() {
        let slot = "  slots:\n    - id: 0\n      type: custom\n      custom:\n        configMapKeyRef: {name: m, key: q.wasm}\n        config:\n";
        assert_eq!(
            check_spec(&format!(
                "{slot}          enabled: true\n          ratio: 0.5\n          n: 3\n          s: x\n"
            )),
            Ok(1)
        );
        let err = check_spec(&format!("{slot}          l: [1]\n")).expect_err("a list");
        assert!(
            err.contains("spec.slots[0].custom.config.l: Too many"),
            "{err}"
        );
    }

    #[test]
    fn a_zero_kill_interval_is_refused() {
        let err =
            check_spec("  chaos: {enabled: true, podKillInterval: 0s}\n").expect_err("invalid");
        assert!(
            err.contains("spec.chaos.podKillInterval: Invalid value: \"0s\""),
            "{err}"
        );
    }

    #[test]
    fn a_null_optional_field_means_not_set() {
        assert_eq!(
            check_spec("  imagePullPolicy: null\n  image: null\n"),
            Ok(1)
        );
    }

    #[test]
    fn an_unknown_field_is_named() {
        let err = check("    - {id: 1, type: broadcast, timeot: 1s}\n").expect_err("invalid");
        assert!(err.contains("timeot"), "{err}");
    }
}
