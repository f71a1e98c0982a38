//! Raw configuration as users write it (YAML file, CRD spec).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// The whole slot configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlotsConfig {
    /// At most 100 slots, ids 0-99, each id at most once.
    #[serde(default)]
    pub slots: Vec<SlotSpec>,
}

impl SlotsConfig {
    pub fn from_yaml(text: &str) -> Result<Self, serde_norway::Error> {
        serde_norway::from_str(text)
    }
}

/// One slot: an id, a type and that type's fields.
///
/// Fields are flat (not nested per type) so the file stays short and the CRD
/// schema stays structural; [`SlotsConfig::validate`] checks that each type
/// gets exactly the fields it needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlotSpec {
    /// Slot id, 0-99.
    pub id: i64,
    /// Slot type: `token-bucket`, `leaky-bucket`, `broadcast`, `multicast`,
    /// `random`, `counter`, `register`, `registry`, `tick` or `custom`.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["token-bucket", "leaky-bucket", "broadcast", "multicast", "random", "counter", "register", "registry", "tick", "custom"]))]
    pub slot_type: String,
    /// Limiters: the most tokens the bucket holds.
    #[serde(alias = "bucket_size", skip_serializing_if = "Option::is_none")]
    pub bucket_size: Option<u64>,
    /// Limiters: refill (token bucket) or leak (leaky bucket) period.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["second", "minute", "hour"]))]
    pub period: Option<String>,
    /// Limiters: tokens added (token bucket) or leaked (leaky bucket) per period. Default 1.
    #[serde(alias = "refresh_rate", skip_serializing_if = "Option::is_none")]
    pub refresh_rate: Option<u64>,
    /// Token bucket: tokens asked for when a request does not say. Default 1.
    #[serde(alias = "tokens_per_req", skip_serializing_if = "Option::is_none")]
    pub tokens_per_req: Option<u64>,
    /// Limiters: most distinct keys (per-caller buckets) kept. Register:
    /// most keys held, deleted ones included. Default 10000.
    #[serde(alias = "max_keys", skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u64>,
    /// Signals: how long a publish waits for deliveries to be acknowledged,
    /// e.g. `500ms`, `2s`. Default `1s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Multicast / random: consecutive failed deliveries after which a
    /// client is deregistered. Default 3.
    #[serde(alias = "dereg_tries", skip_serializing_if = "Option::is_none")]
    pub dereg_tries: Option<u64>,
    /// Counter: refuse `decrement`. Default false.
    #[serde(alias = "grow_only", skip_serializing_if = "Option::is_none")]
    pub grow_only: Option<bool>,
    /// Register: longest key, in bytes. Default 256, at most 1024.
    #[serde(alias = "max_key_bytes", skip_serializing_if = "Option::is_none")]
    pub max_key_bytes: Option<u64>,
    /// Register: largest value, in bytes. Default 1024, at most 65536.
    #[serde(alias = "max_value_bytes", skip_serializing_if = "Option::is_none")]
    pub max_value_bytes: Option<u64>,
    /// Register: how long a deleted key is remembered, so that an older
    /// write arriving late cannot bring it back, e.g. `60s`. Default `60s`.
    #[serde(alias = "tombstone_ttl", skip_serializing_if = "Option::is_none")]
    pub tombstone_ttl: Option<String>,
    /// Registry: most entries (app, address) held. Default 10000.
    #[serde(alias = "max_entries", skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<u64>,
    /// Registry: lifetime of an announcement that names none, e.g. `30s`.
    /// Default `30s`.
    #[serde(alias = "default_ttl", skip_serializing_if = "Option::is_none")]
    pub default_ttl: Option<String>,
    /// Registry: longest lifetime an announcement may ask for. Default `1h`.
    #[serde(alias = "max_ttl", skip_serializing_if = "Option::is_none")]
    pub max_ttl: Option<String>,
    /// Tick: time between two ticks, e.g. `100ms`, `1s` (10ms to 1h).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Custom slot type: the module and its configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomSpec>,
    /// Limiters: the descriptors of Envoy's rate limit service
    /// (`envoy.service.ratelimit.v3`) this slot answers, see `docs/envoy.md`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub rls: Vec<RlsRuleSpec>,
}

/// One descriptor of Envoy's rate limit service that a limiter slot answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RlsRuleSpec {
    /// The `domain` of the rate limit requests this rule answers.
    #[schemars(length(min = 1, max = 128))]
    pub domain: String,
    /// The descriptor's entries in order. An entry with a `value` matches
    /// only that value; an entry with only a `key` matches any value, and
    /// each distinct value gets its own bucket (per IP, per user).
    #[schemars(length(min = 1, max = 8))]
    pub descriptor: Vec<RlsEntrySpec>,
    /// The rule's name in metrics and in the limit Envoy reports. Default
    /// `slot<id>-rule<index>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_.:-]+$"))]
    pub name: Option<String>,
    /// Count but never refuse: an over-limit answer becomes OK and is
    /// counted as shadowed. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

/// One entry of a rate limit descriptor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RlsEntrySpec {
    #[schemars(length(min = 1, max = 256))]
    pub key: String,
    /// Absent: any value, one bucket per value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub value: Option<String>,
}

/// A user-compiled slot type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomSpec {
    /// Path of the `.wasm` component; relative paths are resolved against the
    /// config file's folder.
    pub module: String,
    /// Passed to the module's `init` as name/value pairs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, ConfigValue>,
}

/// A scalar config value (string, number or boolean), kept as text: modules
/// parse their own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct ConfigValue(pub String);

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl serde::de::Visitor<'_> for Scalar {
            type Value = ConfigValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ConfigValue, E> {
                Ok(ConfigValue(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ConfigValue, E> {
                Ok(ConfigValue(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ConfigValue, E> {
                Ok(ConfigValue(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ConfigValue, E> {
                Ok(ConfigValue(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ConfigValue, E> {
                Ok(ConfigValue(v.to_string()))
            }
        }
        d.deserialize_any(Scalar)
    }
}
