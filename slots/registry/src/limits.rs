//! The registry's bounds, read once from the slot config so the rest of
//! the crate never re-checks them.

use alloc::format;
use alloc::string::String;
use core::ops::RangeInclusive;
use vss_slot_sdk::Config;

/// Default and allowed range of `maxEntries`.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;
pub const MAX_ENTRIES_RANGE: RangeInclusive<u64> = 1..=100_000;
/// Default `defaultTtlMs`: a few missed heartbeats at the usual 10 s.
pub const DEFAULT_TTL_MS: u64 = 30_000;
/// Default `maxTtlMs`.
pub const DEFAULT_MAX_TTL_MS: u64 = 3_600_000;
/// Longest `app`, in bytes.
pub const MAX_APP_BYTES: usize = 128;
/// Longest `address`, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 256;

/// Checked bounds of one registry slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries, live or dead, a local announce may bring the map to.
    pub max_entries: usize,
    /// The TTL of an announce that names none.
    pub default_ttl_ms: u64,
    /// The longest TTL an announce may ask for.
    pub max_ttl_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES as usize,
            default_ttl_ms: DEFAULT_TTL_MS,
            max_ttl_ms: DEFAULT_MAX_TTL_MS,
        }
    }
}

impl Limits {
    /// Reads `maxEntries`, `defaultTtlMs` and `maxTtlMs`; an error names
    /// the field and the limit it broke.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let max_entries = config.usize_in("maxEntries", DEFAULT_MAX_ENTRIES, MAX_ENTRIES_RANGE)?;
        let default_ttl_ms = config.u64_at_least("defaultTtlMs", 1, Some(DEFAULT_TTL_MS))?;
        let max_ttl_ms = config.u64_or("maxTtlMs", DEFAULT_MAX_TTL_MS)?;
        if max_ttl_ms < default_ttl_ms {
            return Err(format!(
                "field `maxTtlMs` must be at least defaultTtlMs ({default_ttl_ms}), got {max_ttl_ms}"
            ));
        }
        Ok(Self {
            max_entries,
            default_ttl_ms,
            max_ttl_ms,
        })
    }

    /// Most entries a merge may bring the map to: room for concurrent
    /// announces on different instances that together exceed
    /// `max_entries`, so replicas still converge, while memory stays
    /// bounded.
    pub fn merge_cap(&self) -> usize {
        self.max_entries.saturating_mul(2)
    }
}
