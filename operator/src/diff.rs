//! Does an object on the server already hold what we want?
//!
//! The server adds defaults (a container's `terminationMessagePath`, a
//! Service's `clusterIP`) and status, so equality never holds. What we wrote
//! must be *contained* in what is there: every field we set has our value,
//! every list we set has our length. A field someone changed or a list item
//! someone added is drift, and the object is applied again.

use serde_json::Value;

/// True when every field set in `desired` has the same value in `actual`.
pub fn contains(actual: &Value, desired: &Value) -> bool {
    match (actual, desired) {
        (_, Value::Null) => true,
        (Value::Object(a), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| dv.is_null() || a.get(k).is_some_and(|av| contains(av, dv))),
        (Value::Array(a), Value::Array(d)) => {
            a.len() == d.len() && a.iter().zip(d).all(|(av, dv)| contains(av, dv))
        }
        (a, d) => a == d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_defaults_are_not_drift() {
        let desired = json!({"spec": {"replicas": 3, "ports": [{"port": 7700}]}});
        let actual = json!({"spec": {"replicas": 3, "ports": [{"port": 7700, "protocol": "TCP"}], "revisionHistoryLimit": 10}});
        assert!(contains(&actual, &desired));
    }

    #[test]
    fn a_changed_value_is_drift() {
        let desired = json!({"spec": {"replicas": 3}});
        assert!(!contains(&json!({"spec": {"replicas": 1}}), &desired));
        assert!(!contains(&json!({"spec": {}}), &desired));
    }

    #[test]
    fn an_added_list_item_is_drift() {
        let desired = json!({"args": ["a"]});
        assert!(!contains(&json!({"args": ["a", "b"]}), &desired));
    }
}
