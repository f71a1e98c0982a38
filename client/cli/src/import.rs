//! `vss import-ratelimit`: envoyproxy/ratelimit configuration files into
//! VSS slots answering the same descriptors.
//!
//! Every descriptor with a `rate_limit` becomes an `rls` rule. Rules with
//! the same limit (unit and requests per unit) share one token-bucket slot,
//! each rule keeping buckets of its own, so a large config fits in the 100
//! slots. A fixed window of N requests per unit becomes a bucket of N that
//! refills by N every unit: the same count per window, with windows that
//! start at a bucket's first use instead of at clock boundaries. What has
//! no VSS equivalent is reported, descriptor by descriptor, and left out.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;
use vss_config::{MAX_RLS_RULES, MAX_SLOTS, RlsEntrySpec, RlsRuleSpec, SlotSpec, SlotsConfig};

/// One envoyproxy/ratelimit config file (one domain).
#[derive(Debug, Deserialize)]
struct File {
    domain: String,
    #[serde(default)]
    descriptors: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    rate_limit: Option<RateLimit>,
    #[serde(default)]
    descriptors: Vec<Descriptor>,
    #[serde(default)]
    shadow_mode: bool,
    /// Everything this importer does not convert, reported by name.
    #[serde(flatten)]
    other: BTreeMap<String, serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
struct RateLimit {
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    requests_per_unit: Option<u64>,
    #[serde(default)]
    unlimited: bool,
    #[serde(default)]
    name: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_norway::Value>,
}

/// What an import produced.
#[derive(Debug, Default)]
pub struct Imported {
    pub config: SlotsConfig,
    /// One line per descriptor or field left out, naming it and why.
    pub skipped: Vec<String>,
}

/// A limit shared by the rules of one slot.
type Limit = (String, u64);

/// Converts `files` into slots numbered from `first_slot`.
pub fn import(files: &[impl AsRef<Path>], first_slot: u32) -> anyhow::Result<Imported> {
    let mut rules: BTreeMap<Limit, Vec<RlsRuleSpec>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for path in files {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: File = serde_norway::from_str(&text)
            .with_context(|| format!("{}: not an envoyproxy/ratelimit config", path.display()))?;
        let mut at = Vec::new();
        for d in &file.descriptors {
            walk(&file.domain, d, &mut at, &mut rules, &mut skipped);
        }
    }
    let mut slots = Vec::new();
    let mut id = i64::from(first_slot);
    for ((unit, per_unit), group) in rules {
        for chunk in group.chunks(MAX_RLS_RULES) {
            if id >= MAX_SLOTS as i64 {
                anyhow::bail!(
                    "the rules need more slots than ids {first_slot}..99 hold; start lower with --first-slot"
                );
            }
            slots.push(SlotSpec {
                id,
                slot_type: "token-bucket".into(),
                bucket_size: Some(per_unit),
                period: Some(unit.clone()),
                refresh_rate: Some(per_unit),
                rls: chunk.to_vec(),
                ..SlotSpec::default()
            });
            id += 1;
        }
    }
    let config = SlotsConfig { slots };
    config
        .validate()
        .context("the converted configuration is not valid")?;
    Ok(Imported { config, skipped })
}

fn walk(
    domain: &str,
    d: &Descriptor,
    at: &mut Vec<RlsEntrySpec>,
    rules: &mut BTreeMap<Limit, Vec<RlsRuleSpec>>,
    skipped: &mut Vec<String>,
) {
    at.push(RlsEntrySpec {
        key: d.key.clone(),
        value: d.value.clone().filter(|v| !v.is_empty()),
    });
    let place = || {
        let path: Vec<String> = at
            .iter()
            .map(|e| match &e.value {
                Some(v) => format!("{}={v}", e.key),
                None => e.key.clone(),
            })
            .collect();
        format!("{domain}: {}", path.join(" > "))
    };
    for field in d.other.keys() {
        skipped.push(format!("{}: `{field}` is not converted (ignored)", place()));
    }
    if let Some(limit) = &d.rate_limit {
        match rule_of(domain, d, at, limit) {
            Ok((key, rule)) => rules.entry(key).or_default().push(rule),
            Err(why) => skipped.push(format!("{}: {why}; left out", place())),
        }
        for field in limit.other.keys() {
            skipped.push(format!(
                "{}: `rate_limit.{field}` is not converted (ignored)",
                place()
            ));
        }
    }
    for child in &d.descriptors {
        walk(domain, child, at, rules, skipped);
    }
    at.pop();
}

fn rule_of(
    domain: &str,
    d: &Descriptor,
    at: &[RlsEntrySpec],
    limit: &RateLimit,
) -> Result<(Limit, RlsRuleSpec), String> {
    if limit.unlimited {
        return Err(
            "`unlimited: true` has no VSS equivalent (a more general rule would apply instead)"
                .into(),
        );
    }
    if d.value.as_deref().is_some_and(|v| v.ends_with('*')) {
        return Err("wildcard values (`*`) are not supported".into());
    }
    let unit = limit
        .unit
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !matches!(unit.as_str(), "second" | "minute" | "hour") {
        return Err(format!(
            "unit `{unit}` has no VSS period (second, minute and hour do)"
        ));
    }
    let per_unit = match limit.requests_per_unit {
        Some(n) if n > 0 => n,
        _ => return Err("`requests_per_unit` must be at least 1".into()),
    };
    Ok((
        (unit, per_unit),
        RlsRuleSpec {
            domain: domain.to_string(),
            descriptor: at.to_vec(),
            name: limit.name.clone(),
            shadow: d.shadow_mode,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> Imported {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).expect("write");
        import(&[path], 10).expect("imports")
    }

    const EXAMPLE: &str = "
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: path
    value: /checkout
    shadow_mode: true
    rate_limit: {unit: second, requests_per_unit: 10, name: checkout}
    descriptors:
      - key: user
        rate_limit: {unit: minute, requests_per_unit: 100}
  - key: path
    value: /free
    rate_limit: {unlimited: true}
  - key: tenant
    rate_limit: {unit: day, requests_per_unit: 5}
    detailed_metric: true
";

    #[test]
    fn rules_with_one_limit_share_a_slot() {
        let imported = run(EXAMPLE);
        let slots = &imported.config.slots;
        assert_eq!(slots.len(), 2, "{slots:#?}");
        let per_second = slots
            .iter()
            .find(|s| s.period.as_deref() == Some("second"))
            .expect("a per-second slot");
        assert_eq!(per_second.bucket_size, Some(10));
        assert_eq!(per_second.refresh_rate, Some(10));
        assert_eq!(per_second.rls.len(), 2);
        let checkout = &per_second.rls[1];
        assert_eq!(checkout.name.as_deref(), Some("checkout"));
        assert!(checkout.shadow);
        assert_eq!(
            checkout.descriptor,
            vec![RlsEntrySpec {
                key: "path".into(),
                value: Some("/checkout".into())
            }]
        );
        let nested = slots
            .iter()
            .find(|s| s.period.as_deref() == Some("minute"))
            .expect("a per-minute slot");
        assert_eq!(nested.rls[0].descriptor.len(), 2, "the nested descriptor");
        assert_eq!(nested.rls[0].descriptor[1].value, None);
        assert!(slots.iter().all(|s| (10..12).contains(&s.id)));
    }

    #[test]
    fn what_cannot_be_converted_is_named() {
        let skipped = run(EXAMPLE).skipped.join("\n");
        for want in [
            "edge: path=/free: `unlimited: true` has no VSS equivalent",
            "edge: tenant: unit `day` has no VSS period",
            "edge: tenant: `detailed_metric` is not converted",
        ] {
            assert!(skipped.contains(want), "missing {want:?} in\n{skipped}");
        }
    }

    #[test]
    fn too_many_limits_for_the_slots_left_is_an_error() {
        let mut yaml = String::from("domain: d\ndescriptors:\n");
        for n in 1..=5 {
            yaml.push_str(&format!(
                "  - {{key: k{n}, rate_limit: {{unit: second, requests_per_unit: {n}}}}}\n"
            ));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).expect("write");
        let e = import(&[&path], 97).expect_err("5 limits, 3 slots");
        assert!(e.to_string().contains("--first-slot"), "{e}");
    }
}
