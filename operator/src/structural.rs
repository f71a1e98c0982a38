//! The part of the API server's check of a custom resource that the CEL
//! rules do not cover: its structural openAPIV3Schema (types, enums,
//! bounds, patterns, required fields) and strict field validation, which
//! `kubectl apply` asks for by default and which refuses unknown fields.
//!
//! Kept apart from [`crate::validate`] because it knows nothing about
//! VssClusters: it walks any CRD schema, as a JSON value, the way
//! apiextensions-apiserver does, and words its findings as the API server
//! does (`<path>: Invalid value: ...`, `unknown field "<path>"`), so a user
//! of `vss-operator validate` reads the same thing `kubectl` would print.

use serde_json::{Map, Value};

/// Drops the map entries whose value is `null` where the schema does not
/// say `nullable: true`, as the API server does before it validates and
/// defaults (so `image: null` means "not set", and a default applies).
pub fn prune_nulls(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, v| !v.is_null() || field_schema(schema, k).is_some_and(is_nullable));
            for (k, v) in map.iter_mut() {
                if let Some(s) = field_schema(schema, k) {
                    prune_nulls(s, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for v in items {
                    prune_nulls(s, v);
                }
            }
        }
        _ => {}
    }
}

/// Every way `value` breaks `schema`; `path` names `value` (empty at the
/// root), as in `spec.slots[0].id`.
pub fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if value.is_null() {
        if !is_nullable(schema) {
            out.push(format!(
                "{}: Invalid value: null: must not be null",
                shown(path)
            ));
        }
        return;
    }
    let int_or_string = flag(schema, "x-kubernetes-int-or-string");
    let ty = schema.get("type").and_then(Value::as_str);
    let expected: Vec<&str> = match (int_or_string, ty) {
        (true, _) => vec!["integer", "string"],
        (false, Some(t)) => vec![t],
        (false, None) => Vec::new(),
    };
    if !expected.is_empty() && !expected.iter().any(|t| has_type(value, t)) {
        out.push(format!(
            "{}: Invalid value: \"{}\": {} in body must be of type {}",
            shown(path),
            type_of(value),
            shown(path),
            expected.join(",")
        ));
        return;
    }
    check_values(schema, value, path, out);
    match value {
        Value::Object(map) => check_object(schema, map, path, out),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Enum, bounds, lengths, pattern, item and property counts.
fn check_values(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let p = shown(path);
    // `<path>: <what>`, in the API server's words.
    let mut say = |what: String| out.push(format!("{p}: {what}"));
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        say(format!(
            "Unsupported value: {value}: supported values: {}",
            list.join(", ")
        ));
    }
    if let Some(n) = value.as_f64() {
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            say(format!(
                "Invalid value: {value}: {p} in body should be less than or equal to {max}"
            ));
        }
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            say(format!(
                "Invalid value: {value}: {p} in body should be greater than or equal to {min}"
            ));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            // The API server's words, though it counts characters too.
            say(format!("Too long: may not be more than {max} bytes"));
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            say(format!(
                "Invalid value: {value}: {p} in body should be at least {min} chars long"
            ));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(pattern) {
                Ok(re) if re.is_match(s) => {}
                Ok(_) => say(format!(
                    "Invalid value: {value}: {p} in body should match '{pattern}'"
                )),
                // The pattern comes from the CRD, not the manifest; say so
                // rather than blame the value.
                Err(e) => say(format!(
                    "Invalid value: {value}: the CRD's pattern `{pattern}` does not compile: {e}"
                )),
            }
        }
    }
    let counted = match value {
        Value::Array(items) => Some(("items", "Items", items.len())),
        Value::Object(map) => Some(("properties", "Properties", map.len())),
        _ => None,
    };
    if let Some((noun, key, n)) = counted {
        let n = n as u64;
        if let Some(max) = schema.get(format!("max{key}")).and_then(Value::as_u64)
            && n > max
        {
            out.push(format!(
                "{p}: Too many: {n}: must have at most {max} {noun}"
            ));
        }
        if let Some(min) = schema.get(format!("min{key}")).and_then(Value::as_u64)
            && n < min
        {
            out.push(format!(
                "{p}: Invalid value: {n}: {p} in body should have at least {min} {noun}"
            ));
        }
    }
}

/// Required fields, declared fields, map values and unknown fields.
fn check_object(schema: &Value, map: &Map<String, Value>, path: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    for key in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(key) {
            out.push(format!("{}: Required value", join(key)));
        }
    }
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    for (k, v) in map {
        match field_schema(schema, k) {
            Some(s) => check(s, v, &join(k), out),
            None if preserve => {}
            None => out.push(format!("unknown field \"{}\"", join(k))),
        }
    }
}

/// The schema of field `key` of an object: a declared property, else the
/// schema every value of a map shares.
fn field_schema<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

fn is_nullable(schema: &Value) -> bool {
    flag(schema, "nullable")
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn has_type(value: &Value, ty: &str) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        // Kubernetes integers are int64: a bigger one is no integer to it.
        "integer" => value.is_i64(),
        "number" => value.is_number(),
        _ => true,
    }
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(path: &str) -> &str {
    if path.is_empty() { "<root>" } else { path }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problems(schema: Value, value: Value) -> Vec<String> {
        let mut out = Vec::new();
        check(&schema, &value, "spec", &mut out);
        out
    }

    #[test]
    fn unknown_fields_are_named_by_path() {
        let schema =
            json!({"type": "object", "properties": {"a": {"type": "object", "properties": {}}}});
        assert_eq!(
            problems(schema, json!({"a": {"b": 1}, "c": 2})),
            ["unknown field \"spec.a.b\"", "unknown field \"spec.c\""]
        );
    }

    #[test]
    fn preserve_unknown_fields_keeps_anything() {
        let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        assert!(problems(schema, json!({"z": [1]})).is_empty());
    }

    #[test]
    fn int_or_string_refuses_a_boolean() {
        let schema = json!({"x-kubernetes-int-or-string": true});
        let p = problems(schema, json!(true));
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("must be of type integer,string"), "{p:?}");
    }

    #[test]
    fn bounds_patterns_and_enums() {
        let schema = json!({"type": "integer", "maximum": 99.0});
        assert!(problems(schema, json!(100))[0].contains("less than or equal to 99"));
        let schema = json!({"type": "string", "pattern": "^[1-9]$"});
        assert!(problems(schema, json!("0"))[0].contains("should match '^[1-9]$'"));
        let schema = json!({"type": "string", "enum": ["a"]});
        assert!(problems(schema, json!("b"))[0].contains("supported values: \"a\""));
    }

    #[test]
    fn nulls_of_non_nullable_fields_are_pruned() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "string"}, "b": {"type": "string", "nullable": true}}});
        let mut value = json!({"a": null, "b": null});
        prune_nulls(&schema, &mut value);
        assert_eq!(value, json!({"b": null}));
    }
}
