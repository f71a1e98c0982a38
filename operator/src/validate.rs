//! Offline checks of VssCluster manifests (`vss-operator validate`): the
//! CRD's CEL rules, evaluated as the API server would, then the runtime's
//! own slot validation, which the operator applies before anything reaches
//! a pod.

use serde::Deserialize;

use crate::crd::VssCluster;

/// Checks every YAML document of `text`; returns the number of clusters
/// checked or every problem found, each naming the document and field.
pub fn validate_manifests(text: &str) -> Result<usize, Vec<String>> {
    let mut problems = Vec::new();
    let mut count = 0;
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = match serde_json::Value::deserialize(doc) {
            Ok(serde_json::Value::Null) => continue,
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
        let cluster: VssCluster = match serde_json::from_value(value) {
            Ok(c) => c,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(slots: &str) -> Result<usize, String> {
        let text = format!(
            "apiVersion: vss.dev/v1alpha1\nkind: VssCluster\nmetadata: {{name: t}}\nspec:\n  slots:\n{slots}"
        );
        validate_manifests(&text).map_err(|p| p.join("\n"))
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
        assert!(checked >= 4, "only {checked} invalid examples");
    }

    #[test]
    fn an_unknown_field_is_named() {
        let err = check("    - {id: 1, type: broadcast, timeot: 1s}\n").expect_err("invalid");
        assert!(err.contains("timeot"), "{err}");
    }
}
