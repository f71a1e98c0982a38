//! The register's bounds, read once from the slot config so the rest of
//! the crate never re-checks them.

use alloc::string::String;
use core::ops::RangeInclusive;
use vss_slot_sdk::Config;

/// Default and allowed range of `maxKeys`.
pub const DEFAULT_MAX_KEYS: u64 = 10_000;
pub const MAX_KEYS_RANGE: RangeInclusive<u64> = 1..=100_000;
/// Default and allowed range of `maxKeyBytes`.
pub const DEFAULT_MAX_KEY_BYTES: u64 = 256;
pub const MAX_KEY_BYTES_RANGE: RangeInclusive<u64> = 1..=1024;
/// Default and allowed range of `maxValueBytes`.
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 1024;
pub const MAX_VALUE_BYTES_RANGE: RangeInclusive<u64> = 1..=65_536;
/// Default and least `tombstoneTtlMs`: long enough for a delete to reach
/// every instance before its tombstone may be forgotten.
pub const DEFAULT_TOMBSTONE_TTL_MS: u64 = 60_000;
pub const MIN_TOMBSTONE_TTL_MS: u64 = 1_000;

/// Checked bounds of one register slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most keys, live or deleted, a local write may bring the map to.
    pub max_keys: usize,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// How long a deleted key is remembered, from the delete's version.
    pub tombstone_ttl_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_keys: DEFAULT_MAX_KEYS as usize,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES as usize,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES as usize,
            tombstone_ttl_ms: DEFAULT_TOMBSTONE_TTL_MS,
        }
    }
}

impl Limits {
    /// Reads `maxKeys`, `maxKeyBytes`, `maxValueBytes` and
    /// `tombstoneTtlMs`; an error names the field and the limit it broke.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        Ok(Self {
            max_keys: config.usize_in("maxKeys", DEFAULT_MAX_KEYS, MAX_KEYS_RANGE)?,
            max_key_bytes: config.usize_in(
                "maxKeyBytes",
                DEFAULT_MAX_KEY_BYTES,
                MAX_KEY_BYTES_RANGE,
            )?,
            max_value_bytes: config.usize_in(
                "maxValueBytes",
                DEFAULT_MAX_VALUE_BYTES,
                MAX_VALUE_BYTES_RANGE,
            )?,
            tombstone_ttl_ms: config.u64_at_least(
                "tombstoneTtlMs",
                MIN_TOMBSTONE_TTL_MS,
                Some(DEFAULT_TOMBSTONE_TTL_MS),
            )?,
        })
    }

    /// Most entries a merge may bring the map to: room for concurrent
    /// writes on different instances that together exceed `max_keys`, so
    /// replicas still converge, while memory stays bounded.
    pub fn merge_cap(&self) -> usize {
        self.max_keys.saturating_mul(2)
    }
}
