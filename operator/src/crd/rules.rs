//! CEL rules for the runtime's bounds that a schema keyword cannot state:
//! durations written as text (`500ms`, `24h`), and lengths the runtime
//! counts in bytes where `maxLength` counts characters.
//!
//! Each bound is the one `vss-config` checks, from its constants where it
//! has one, so `kubectl apply` refuses what the operator would refuse
//! (`operator/testdata/invalid` and `valid` hold a manifest at and past
//! every bound; the real-API-server suite runs them through the API server
//! and `vss-operator validate` alike).

use std::time::Duration;

use kube::core::{Message, Reason, Rule};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Value, json};
use vss_config::{
    DEFAULT_MAX_TTL, MAX_RLS_DOMAIN_BYTES, MAX_RLS_ENTRIES, MAX_RLS_ENTRY_BYTES, MAX_RLS_RULES,
    RlsRuleSpec,
};

/// The durations the API server's CEL `duration()` (Go's
/// `time.ParseDuration`) reads without overflowing its int64 nanoseconds:
/// up to 9 digits of `ms` or `s`, 8 of `m`, 6 of `h`, after any leading
/// zeros. The fields' `pattern` admits longer numbers, all far past every
/// bound; a rule checks this first, so such a value is refused with the
/// rule's message instead of an evaluation error (CEL's `&&` stops at the
/// first `false`).
pub(crate) const PARSABLE_DURATION: &str = "^0*([0-9]{1,9}(ms|s)|[0-9]{1,8}m|[0-9]{1,6}h)$";

/// `self`, a duration field, lies within `min..=max`.
pub(crate) fn duration_within(field: &str, min: Duration, max: Duration) -> Rule {
    let (min, max) = (show(min), show(max));
    Rule::new(format!(
        "self.matches('{PARSABLE_DURATION}') && duration(self) >= duration('{min}') && duration(self) <= duration('{max}')"
    ))
    .message(Message::Message(format!(
        "{field} must be between {min} and {max}"
    )))
    .reason(Reason::FieldValueInvalid)
}

/// A registry slot's `defaultTtl` is at most its `maxTtl`, or the runtime's
/// default `maxTtl` when that is not set. A value that is no duration is
/// left to the fields' own rules.
pub(crate) fn default_ttl_within_max_ttl() -> Rule {
    let default_max = show(DEFAULT_MAX_TTL);
    Rule::new(format!(
        "!has(self.defaultTtl) || !self.defaultTtl.matches('{PARSABLE_DURATION}') \
         || (has(self.maxTtl) && !self.maxTtl.matches('{PARSABLE_DURATION}')) \
         || duration(self.defaultTtl) <= duration(has(self.maxTtl) ? self.maxTtl : '{default_max}')"
    ))
    .message(Message::Message(format!(
        "defaultTtl must be at most maxTtl ({default_max} when maxTtl is not set)"
    )))
    .field_path(".defaultTtl")
    .reason(Reason::FieldValueInvalid)
}

/// `self`, a string, is at most `max` bytes of UTF-8: what the runtime
/// counts, where the schema's `maxLength` counts characters.
fn at_most_bytes(field: &str, max: usize) -> Rule {
    Rule::new(format!("bytes(self).size() <= {max}"))
        .message(Message::Message(format!(
            "{field} must be at most {max} bytes (UTF-8)"
        )))
        .reason(Reason::FieldValueInvalid)
}

/// The byte bound of each descriptor entry's `key` and `value`, as one
/// rule per entry index and field on the `descriptor` list.
///
/// The API server prices a rule at its worst case times how often it can
/// run: `bytes(self)` on a 256-character string (up to 1024 bytes), once
/// per entry of every rule of every slot (100 × 256 × 8), is twice the
/// budget of one rule, and the CRD would be refused. A rule on the list
/// that looks at one index runs once per `rls` rule, within budget, and
/// its message names the entry.
fn descriptor_entry_rules() -> Vec<Rule> {
    let max = MAX_RLS_ENTRY_BYTES;
    (0..MAX_RLS_ENTRIES)
        .flat_map(|i| {
            [
                (
                    "key",
                    format!("self.size() <= {i} || bytes(self[{i}].key).size() <= {max}"),
                ),
                (
                    "value",
                    format!(
                        "self.size() <= {i} || !has(self[{i}].value) || bytes(self[{i}].value).size() <= {max}"
                    ),
                ),
            ]
            .map(|(field, rule)| {
                Rule::new(rule)
                    .message(Message::Message(format!(
                        "descriptor[{i}].{field} must be at most {max} bytes (UTF-8)"
                    )))
                    .reason(Reason::FieldValueInvalid)
            })
        })
        .collect()
}

/// The schema of a slot's `rls`: `vss-config`'s rule types (which know
/// nothing of Kubernetes), with the runtime's byte bounds on the domain
/// and on each descriptor entry's key and value added as CEL rules.
pub(crate) fn rls_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut rule = RlsRuleSpec::json_schema(generator);
    add_rules(
        &mut rule,
        "domain",
        [at_most_bytes("domain", MAX_RLS_DOMAIN_BYTES)],
    );
    add_rules(&mut rule, "descriptor", descriptor_entry_rules());
    schemars::json_schema!({
        "type": "array",
        "items": rule,
        "maxItems": MAX_RLS_RULES,
    })
}

fn property<'a>(
    schema: &'a mut Schema,
    name: &str,
) -> Option<&'a mut serde_json::Map<String, Value>> {
    schema
        .get_mut("properties")
        .and_then(|p| p.get_mut(name))
        .and_then(Value::as_object_mut)
}

/// Adds `rules` to property `name` of the object `schema`. A property
/// that is not there is a change to `vss-config`'s types that
/// `rls_rules_bound_bytes` (in the tests) catches.
fn add_rules(schema: &mut Schema, name: &str, rules: impl IntoIterator<Item = Rule>) {
    let Some(field) = property(schema, name) else {
        return;
    };
    let rules = rules
        .into_iter()
        .map(|rule| serde_json::to_value(rule).expect("a CEL rule serializes"));
    match field
        .entry("x-kubernetes-validations")
        .or_insert_with(|| json!([]))
    {
        Value::Array(existing) => existing.extend(rules),
        other => *other = Value::Array(rules.collect()),
    }
}

/// A duration as the fields and Go write it: `250ms`, `60s`, `5m`, `1h`
/// (seconds up to a minute, as the docs say the longest timeout).
pub(crate) fn show(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        _ if ms > 0 && ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms > 60_000 && ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms > 0 && ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(show(Duration::from_millis(10)), "10ms");
        assert_eq!(show(Duration::from_secs(60)), "60s");
        assert_eq!(show(Duration::from_secs(120)), "2m");
        assert_eq!(show(Duration::from_secs(86_400)), "24h");
        assert_eq!(show(Duration::from_secs(1)), "1s");
        assert_eq!(show(Duration::ZERO), "0ms");
    }

    /// The guard admits every value up to the largest bound (a day) in
    /// each unit, and no number of a unit that Go's parser would overflow
    /// on.
    #[test]
    fn the_parsable_guard_admits_every_bound_and_nothing_that_overflows() {
        let re = regex::Regex::new(PARSABLE_DURATION).expect("compiles");
        for ok in [
            "86400000ms",
            "86400s",
            "1440m",
            "24h",
            "0000000000001s",
            "0ms",
        ] {
            assert!(re.is_match(ok), "{ok}");
        }
        for (unit, nanos) in [
            ("ms", 1_000_000_u128),
            ("s", 1_000_000_000),
            ("m", 60_000_000_000),
            ("h", 3_600_000_000_000),
        ] {
            let longest = (1..=20)
                .map(|n| "9".repeat(n))
                .rfind(|digits| re.is_match(&format!("{digits}{unit}")))
                .expect("some admitted");
            let value: u128 = longest.parse().expect("digits");
            assert!(value * nanos <= i64::MAX as u128, "{longest}{unit}");
            assert!(!re.is_match(&format!("{longest}9{unit}")));
        }
    }
}
