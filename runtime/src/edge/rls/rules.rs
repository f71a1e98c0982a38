//! Which limiter slot answers a rate limit descriptor, and in which bucket.
//!
//! Matching follows envoyproxy/ratelimit, so a converted configuration
//! answers the same: the descriptor's entries are walked in order through a
//! tree of the domain's rules; at each level an entry whose key and value
//! both match wins over one that matches the key alone (a key-only rule
//! entry); the walk does not back up; a rule applies only when it ends at
//! the descriptor's last entry (same depth).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use vss_config::{Period, SlotKind, ValidConfig};

use crate::core::slot_table::MAX_KEY_BYTES;

/// What Envoy is told about a rule's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Tokens added (token bucket) or leaked (leaky bucket) per period.
    pub requests_per_unit: u32,
    pub period: Period,
}

/// A rule with everything needed to answer for it.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// Position in [`RuleIndex::rules`].
    pub id: usize,
    pub slot: u8,
    pub domain: String,
    pub name: String,
    pub shadow: bool,
    pub limit: Limit,
    /// Positions of the key-only entries, whose values pick the bucket.
    per_value: Vec<usize>,
}

impl Rule {
    /// The bucket of a matched descriptor: the rule plus the values of its
    /// key-only entries. Keys longer than a slot takes are replaced by a
    /// 128-bit hash of the same text, so long header values still get a
    /// bucket of their own.
    pub fn bucket_key(&self, values: &[&str]) -> String {
        let mut key = format!("{}/{}", self.domain, self.name);
        for &i in &self.per_value {
            key.push('\u{1f}');
            key.push_str(values.get(i).copied().unwrap_or_default());
        }
        if key.len() <= MAX_KEY_BYTES {
            return key;
        }
        let half = |salt: u8| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            salt.hash(&mut h);
            key.hash(&mut h);
            h.finish()
        };
        format!(
            "{}/{}#{:016x}{:016x}",
            self.domain,
            self.name,
            half(1),
            half(2)
        )
    }
}

#[derive(Debug, Default)]
struct Node {
    rule: Option<Arc<Rule>>,
    /// Entries with a value, by key, then value.
    exact: HashMap<String, HashMap<String, Node>>,
    /// Key-only entries, by key.
    any: HashMap<String, Node>,
}

/// Every rule of a configuration, by domain.
#[derive(Debug, Default)]
pub struct RuleIndex {
    domains: HashMap<String, Node>,
    rules: Vec<Arc<Rule>>,
}

impl RuleIndex {
    /// The rules of every limiter slot of `config`. The configuration was
    /// validated, so no two rules share a domain and descriptor.
    pub fn build(config: &ValidConfig) -> Self {
        let mut index = Self::default();
        for def in config.slots() {
            let limit = match &def.kind {
                SlotKind::TokenBucket(t) => Limit {
                    requests_per_unit: clamp(t.refresh_rate),
                    period: t.period,
                },
                SlotKind::LeakyBucket(l) => Limit {
                    requests_per_unit: clamp(l.refresh_rate),
                    period: l.period,
                },
                _ => continue,
            };
            for spec in &def.rls {
                let rule = Arc::new(Rule {
                    id: index.rules.len(),
                    slot: def.id.get(),
                    domain: spec.domain.clone(),
                    name: spec.name.clone(),
                    shadow: spec.shadow,
                    limit,
                    per_value: (spec.descriptor.iter().enumerate())
                        .filter(|(_, e)| e.value.is_none())
                        .map(|(i, _)| i)
                        .collect(),
                });
                let mut node = index.domains.entry(spec.domain.clone()).or_default();
                for entry in &spec.descriptor {
                    node = match &entry.value {
                        Some(v) => node
                            .exact
                            .entry(entry.key.clone())
                            .or_default()
                            .entry(v.clone()),
                        None => node.any.entry(entry.key.clone()),
                    }
                    .or_default();
                }
                node.rule = Some(rule.clone());
                index.rules.push(rule);
            }
        }
        index
    }

    /// Every rule, in configuration order.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    #[cfg(test)]
    pub fn has_domain(&self, domain: &str) -> bool {
        self.domains.contains_key(domain)
    }

    /// The rule for a descriptor of `domain`, given as (key, value) pairs.
    pub fn find(&self, domain: &str, entries: &[(&str, &str)]) -> Option<&Arc<Rule>> {
        let mut node = self.domains.get(domain)?;
        let mut found = None;
        for (i, &(key, value)) in entries.iter().enumerate() {
            let next = (node.exact.get(key))
                .and_then(|values| values.get(value))
                .or_else(|| node.any.get(key))?;
            if i + 1 == entries.len() {
                found = next.rule.as_ref();
            }
            node = next;
        }
        found
    }
}

fn clamp(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vss_config::SlotsConfig;

    fn index(yaml: &str) -> RuleIndex {
        let config = SlotsConfig::from_yaml(yaml)
            .expect("parses")
            .validate()
            .expect("valid");
        RuleIndex::build(&config)
    }

    const RULES: &str = "slots:
- id: 1
  type: token-bucket
  bucketSize: 10
  period: minute
  refreshRate: 5
  rls:
  - {domain: edge, name: per-ip, descriptor: [{key: remote_address}]}
  - {domain: edge, name: checkout, descriptor: [{key: path, value: /checkout}]}
  - {domain: edge, name: any-path, descriptor: [{key: path}]}
  - {domain: edge, name: user-on-path, descriptor: [{key: path, value: /api}, {key: user}]}
- id: 2
  type: leaky-bucket
  bucketSize: 3
  period: second
  rls:
  - {domain: other, name: per-ip, shadow: true, descriptor: [{key: remote_address}]}
";

    fn name(index: &RuleIndex, domain: &str, entries: &[(&str, &str)]) -> Option<String> {
        index.find(domain, entries).map(|r| r.name.clone())
    }

    #[test]
    fn a_specific_value_wins_over_a_key_only_entry() {
        let ix = index(RULES);
        assert_eq!(
            name(&ix, "edge", &[("path", "/checkout")]).as_deref(),
            Some("checkout")
        );
        assert_eq!(
            name(&ix, "edge", &[("path", "/other")]).as_deref(),
            Some("any-path")
        );
    }

    #[test]
    fn a_rule_applies_only_at_the_descriptors_own_depth() {
        let ix = index(RULES);
        assert_eq!(
            name(&ix, "edge", &[("path", "/api"), ("user", "ann")]).as_deref(),
            Some("user-on-path")
        );
        // One entry short: `/api` alone has no rule of its own, and the
        // walk does not fall back on the key-only `path` rule.
        assert_eq!(name(&ix, "edge", &[("path", "/api")]), None);
        // One entry too many.
        assert_eq!(
            name(&ix, "edge", &[("remote_address", "1.2.3.4"), ("x", "y")]),
            None
        );
    }

    #[test]
    fn unknown_domains_and_keys_match_nothing() {
        let ix = index(RULES);
        assert_eq!(name(&ix, "nope", &[("remote_address", "1.2.3.4")]), None);
        assert_eq!(name(&ix, "edge", &[("header", "x")]), None);
        assert!(ix.has_domain("other") && !ix.has_domain("nope"));
    }

    #[test]
    fn each_value_of_a_key_only_entry_gets_its_own_bucket() {
        let ix = index(RULES);
        let rule = ix
            .find("edge", &[("path", "/api"), ("user", "ann")])
            .expect("rule");
        let ann = rule.bucket_key(&["/api", "ann"]);
        let bob = rule.bucket_key(&["/api", "bob"]);
        assert_ne!(ann, bob);
        assert!(ann.starts_with("edge/user-on-path"), "{ann}");
        let per_ip = ix.find("other", &[("remote_address", "a")]).expect("rule");
        assert_eq!(per_ip.slot, 2);
        assert!(per_ip.shadow);
        assert_ne!(
            per_ip.bucket_key(&["a"]),
            ix.rules()[0].bucket_key(&["a"]),
            "domains differ"
        );
    }

    #[test]
    fn long_values_are_hashed_into_a_key_the_slot_takes() {
        let ix = index(RULES);
        let rule = ix.find("edge", &[("remote_address", "x")]).expect("rule");
        let long = "v".repeat(1000);
        let mut other = long.clone();
        other.push('w');
        let a = rule.bucket_key(&[&long]);
        assert!(a.len() <= MAX_KEY_BYTES, "{}", a.len());
        assert_eq!(a, rule.bucket_key(&[&long]), "stable");
        assert_ne!(a, rule.bucket_key(&[&other]));
    }

    #[test]
    fn the_limit_is_the_slots_rate_per_period() {
        let ix = index(RULES);
        let r = ix.find("edge", &[("remote_address", "x")]).expect("rule");
        assert_eq!(
            r.limit,
            Limit {
                requests_per_unit: 5,
                period: Period::Minute
            }
        );
    }
}
