//! Checked `rls` rules: which descriptors of Envoy's rate limit service a
//! limiter slot answers.

use std::collections::BTreeMap;

use crate::spec::{RlsRuleSpec, SlotSpec};
use crate::valid::{FieldError, SlotId};

/// Most rules one slot may carry.
pub const MAX_RLS_RULES: usize = 256;
/// Most entries in a rule's descriptor.
pub const MAX_RLS_ENTRIES: usize = 8;
/// Longest domain, in bytes.
pub const MAX_RLS_DOMAIN_BYTES: usize = 128;
/// Longest descriptor key or value in a rule, in bytes.
pub const MAX_RLS_ENTRY_BYTES: usize = 256;
/// Longest rule name, in bytes.
pub const MAX_RLS_NAME_BYTES: usize = 64;

/// One entry a descriptor must have at its position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RlsEntry {
    pub key: String,
    /// None: any value, which becomes part of the bucket key.
    pub value: Option<String>,
}

/// A checked rule of a limiter slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsRule {
    pub domain: String,
    pub descriptor: Vec<RlsEntry>,
    /// Unique within the domain.
    pub name: String,
    pub shadow: bool,
}

/// Checks a slot's rules. `limiter` says whether the slot's type takes
/// rules at all.
pub(crate) fn check_rules(
    spec: &SlotSpec,
    limiter: bool,
    errors: &mut Vec<FieldError>,
) -> Vec<RlsRule> {
    let mut fail = |field: String, reason: String| {
        errors.push(FieldError {
            slot: Some(spec.id),
            field,
            reason,
        })
    };
    if spec.rls.is_empty() {
        return Vec::new();
    }
    if !limiter {
        fail(
            "rls".into(),
            format!(
                "does not apply to type {} (only token-bucket and leaky-bucket answer Envoy's rate limit service)",
                spec.slot_type
            ),
        );
        return Vec::new();
    }
    if spec.rls.len() > MAX_RLS_RULES {
        fail(
            "rls".into(),
            format!("{} rules, at most {MAX_RLS_RULES} per slot", spec.rls.len()),
        );
        return Vec::new();
    }
    spec.rls
        .iter()
        .enumerate()
        .map(|(i, rule)| check_rule(spec.id, i, rule, &mut fail))
        .collect()
}

fn check_rule(
    slot: i64,
    i: usize,
    rule: &RlsRuleSpec,
    fail: &mut impl FnMut(String, String),
) -> RlsRule {
    let at = |field: &str| format!("rls[{i}].{field}");
    if let Some(why) = bad_text(&rule.domain, MAX_RLS_DOMAIN_BYTES) {
        fail(at("domain"), why);
    }
    if rule.descriptor.is_empty() {
        fail(at("descriptor"), "needs at least one entry".into());
    } else if rule.descriptor.len() > MAX_RLS_ENTRIES {
        fail(
            at("descriptor"),
            format!(
                "has {} entries, at most {MAX_RLS_ENTRIES} allowed",
                rule.descriptor.len()
            ),
        );
    }
    for (j, entry) in rule.descriptor.iter().enumerate() {
        if let Some(why) = bad_text(&entry.key, MAX_RLS_ENTRY_BYTES) {
            fail(at(&format!("descriptor[{j}].key")), why);
        }
        if let Some(why) = (entry.value.as_deref()).and_then(|v| bad_text(v, MAX_RLS_ENTRY_BYTES)) {
            fail(at(&format!("descriptor[{j}].value")), why);
        }
    }
    let name = match &rule.name {
        Some(name) => {
            if name.is_empty()
                || name.len() > MAX_RLS_NAME_BYTES
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
            {
                fail(
                    at("name"),
                    format!(
                        "must be 1 to {MAX_RLS_NAME_BYTES} letters, digits or `_.:-`, got `{name}`"
                    ),
                );
            }
            name.clone()
        }
        None => format!("slot{slot}-rule{i}"),
    };
    RlsRule {
        domain: rule.domain.clone(),
        descriptor: rule
            .descriptor
            .iter()
            .map(|e| RlsEntry {
                key: e.key.clone(),
                value: e.value.clone(),
            })
            .collect(),
        name,
        shadow: rule.shadow,
    }
}

/// Why a domain, key or value is refused, if it is.
fn bad_text(value: &str, max: usize) -> Option<String> {
    if value.is_empty() {
        Some("must not be empty".into())
    } else if value.len() > max {
        Some(format!(
            "is {} bytes long, at most {max} allowed",
            value.len()
        ))
    } else {
        None
    }
}

/// Refuses two rules for the same descriptor of a domain, and two rules of
/// a domain with one name: either would make the answer depend on which
/// slot is looked at first.
pub(crate) fn check_unique<'a>(
    rules: impl Iterator<Item = (SlotId, usize, &'a RlsRule)>,
    errors: &mut Vec<FieldError>,
) {
    let mut descriptors = BTreeMap::new();
    let mut names = BTreeMap::new();
    for (slot, i, rule) in rules {
        let place = (slot, i);
        if let Some((s, j)) = descriptors.insert((&rule.domain, &rule.descriptor), place) {
            errors.push(FieldError {
                slot: Some(i64::from(slot.get())),
                field: format!("rls[{i}].descriptor"),
                reason: format!(
                    "domain `{}` already has a rule for this descriptor (slot {s}, rls[{j}])",
                    rule.domain
                ),
            });
        }
        if let Some((s, j)) = names.insert((&rule.domain, &rule.name), place) {
            errors.push(FieldError {
                slot: Some(i64::from(slot.get())),
                field: format!("rls[{i}].name"),
                reason: format!(
                    "domain `{}` already has a rule named `{}` (slot {s}, rls[{j}])",
                    rule.domain, rule.name
                ),
            });
        }
    }
}
