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

    /// The manifests of `testdata/<dir>`, with their text.
    fn testdata(dir: &str) -> Vec<(std::path::PathBuf, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("readable");
                (p, text)
            })
            .collect();
        files.sort();
        files
    }

    /// The text of each `# <key>: ` header line.
    fn header<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
        let prefix = format!("# {key}: ");
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::trim)
            .collect()
    }

    /// Each file in testdata/invalid is rejected with every message its
    /// `# operator:` lines name (.ci/check-operator runs the same files
    /// through the binary and through the CRD's schema; the real-API-server
    /// suite through the API server, with its `# server:` lines). A file
    /// written for one bound (`# bound: <field> <min|max|enum>`) names that
    /// field in each expected message.
    #[test]
    fn every_invalid_example_is_rejected_for_its_reason() {
        let files = testdata("invalid");
        for (path, text) in &files {
            let expected = header(text, "operator");
            assert!(
                !expected.is_empty(),
                "{}: no `# operator:` line",
                path.display()
            );
            // What kubectl prints, checked against a real API server by
            // the e2e suite; every file must say it.
            let server = header(text, "server");
            assert!(
                !server.is_empty(),
                "{}: no `# server:` line",
                path.display()
            );
            let problems = validate_manifests(text)
                .err()
                .unwrap_or_else(|| panic!("{} was accepted", path.display()))
                .join("\n");
            for want in &expected {
                assert!(problems.contains(want), "{}: {problems}", path.display());
            }
            for bound in header(text, "bound") {
                let field = bound_field(bound);
                for said in expected.iter().chain(&server) {
                    assert!(
                        said.contains(field),
                        "{}: `{said}` does not name {field}",
                        path.display()
                    );
                }
            }
        }
        assert!(files.len() >= 70, "only {} invalid examples", files.len());
    }

    /// Each file in testdata/valid, written at one or more bounds, passes
    /// every check, each of its documents.
    #[test]
    fn every_manifest_at_a_bound_is_accepted() {
        let files = testdata("valid");
        for (path, text) in &files {
            let documents = text.matches("\nkind: VssCluster\n").count();
            assert_eq!(
                validate_manifests(text).map_err(|p| p.join("\n")),
                Ok(documents),
                "{}",
                path.display()
            );
            assert!(
                !header(text, "bound").is_empty(),
                "{}: no `# bound:` line",
                path.display()
            );
        }
        assert!(files.len() >= 20, "only {} valid examples", files.len());
    }

    /// `spec.slots[].rls[].domain max` names `domain`.
    fn bound_field(bound: &str) -> &str {
        let path = bound.split_whitespace().next().unwrap_or(bound);
        path.rsplit('.')
            .next()
            .unwrap_or(path)
            .trim_end_matches("[]")
    }

    /// Every bound the CRD states on `spec.instances` and `spec.slots`
    /// (what the operator and the runtime check too) has a manifest at it
    /// in testdata/valid and one just past it in testdata/invalid: a new
    /// bound without both fails here.
    #[test]
    fn every_bound_of_the_crd_has_a_manifest_at_it_and_one_past_it() {
        let crd = serde_json::to_value(crate::crd::definition()).expect("serializes");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let mut bounds = std::collections::BTreeSet::new();
        // The CEL rule on the whole object.
        bounds.insert("metadata.name max".to_string());
        for field in ["instances", "slots"] {
            collect_bounds(
                &spec["properties"][field],
                &format!("spec.{field}"),
                &mut bounds,
            );
        }
        // The walk must reach the bounds written as CEL rules and the ones
        // deep in `rls`, or the comparison below proves little.
        for bound in [
            "spec.instances max",
            "spec.slots[].timeout min",
            "spec.slots[].defaultTtl max",
            "spec.slots[].rls[].domain max",
            "spec.slots[].rls[].descriptor[].value max",
        ] {
            assert!(bounds.contains(bound), "{bound} not found in {bounds:?}");
        }
        for (dir, kind) in [("valid", "at"), ("invalid", "past")] {
            let tagged: std::collections::BTreeSet<String> = testdata(dir)
                .iter()
                .flat_map(|(_, text)| header(text, "bound"))
                .map(str::to_string)
                .collect();
            let missing: Vec<_> = bounds.difference(&tagged).collect();
            assert!(
                missing.is_empty(),
                "no manifest {kind} these bounds in testdata/{dir}: {missing:?}"
            );
            let unknown: Vec<_> = tagged.difference(&bounds).collect();
            assert!(
                unknown.is_empty(),
                "testdata/{dir} names bounds the CRD does not have: {unknown:?}"
            );
        }
    }

    /// `<path> min|max|enum` for each bound of `schema` and below it.
    /// Values of maps (`additionalProperties`: a custom slot's config) are
    /// left out; `config-map-value.yaml` covers them.
    fn collect_bounds(schema: &Value, path: &str, out: &mut std::collections::BTreeSet<String>) {
        let has = |key: &str| schema.get(key).is_some();
        if has("enum") {
            // An enum bounds a length too; its values say it all.
            out.insert(format!("{path} enum"));
        } else {
            for (keys, kind) in [
                (["minimum", "minLength", "minItems"], "min"),
                (["maximum", "maxLength", "maxItems"], "max"),
            ] {
                if keys.iter().any(|k| has(k)) {
                    out.insert(format!("{path} {kind}"));
                }
            }
        }
        for rule in schema["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["rule"].as_str())
        {
            if rule.contains("duration(self) >=") {
                out.insert(format!("{path} min"));
            }
            if rule.contains("duration(self) <=") || rule.contains("bytes(self).size() <=") {
                out.insert(format!("{path} max"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                collect_bounds(property, &format!("{path}.{name}"), out);
            }
        }
        if schema.get("items").is_some() {
            collect_bounds(&schema["items"], &format!("{path}[]"), out);
        }
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
