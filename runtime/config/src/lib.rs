//! The slot configuration of a VSS cluster.
//!
//! One set of serde + schemars types serves every entry point: the runtime's
//! YAML file and (later) the `VssCluster` CRD's `spec.slots`. Raw input
//! ([`SlotsConfig`], [`SlotSpec`]) is checked once by [`SlotsConfig::validate`]
//! into a [`ValidConfig`], so the rest of the code never re-checks. Every
//! error names the slot id and the field.
//!
//! Field names are camelCase (`bucketSize`); the seed's snake_case spellings
//! (`bucket_size`) are accepted too.

mod rls;
mod spec;
mod valid;

pub use rls::{
    MAX_RLS_DOMAIN_BYTES, MAX_RLS_ENTRIES, MAX_RLS_ENTRY_BYTES, MAX_RLS_NAME_BYTES, MAX_RLS_RULES,
    RlsEntry, RlsRule,
};
pub use spec::{ConfigValue, CustomSpec, RlsEntrySpec, RlsRuleSpec, SlotSpec, SlotsConfig};
pub use valid::{
    Counter, CustomSlot, DEFAULT_DEREG_TRIES, DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_KEYS,
    DEFAULT_MAX_TTL, DEFAULT_MAX_VALUE_BYTES, DEFAULT_REGISTRY_TTL, DEFAULT_SIGNAL_TIMEOUT,
    DEFAULT_TOMBSTONE_TTL, FieldError, LeakyBucket, MAX_COUNT, MAX_MAX_KEY_BYTES, MAX_MAX_KEYS,
    MAX_MAX_TTL, MAX_MAX_VALUE_BYTES, MAX_SIGNAL_TIMEOUT, MAX_SLOTS, MAX_TICK_INTERVAL,
    MIN_TICK_INTERVAL, MIN_TOMBSTONE_TTL, Period, Register, Registry, Signal, SlotDef, SlotId,
    SlotKind, Tick, TokenBucket, ValidConfig, parse_duration,
};

use std::path::{Path, PathBuf};

/// Why a configuration was refused.
///
/// Each message is complete on its own and the I/O or YAML error inside is
/// not also offered as [`std::error::Error::source`]: printers that walk
/// the chain (anyhow's `{:#}` and `Caused by:`) would say it twice.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {}: {error}", path.display())]
    Parse {
        path: PathBuf,
        error: serde_norway::Error,
    },
    /// Every problem found, one per line.
    #[error("invalid slot configuration:\n{}", list(.0))]
    Invalid(Vec<FieldError>),
    /// Like `Invalid`, for a file, which the first line names.
    #[error("config file {} is invalid:\n{}", path.display(), list(errors))]
    InvalidFile {
        path: PathBuf,
        errors: Vec<FieldError>,
    },
}

impl ConfigError {
    /// The problems found by validation (empty when the file could not be
    /// read or parsed).
    pub fn problems(&self) -> &[FieldError] {
        match self {
            Self::Invalid(errors) | Self::InvalidFile { errors, .. } => errors,
            Self::Read { .. } | Self::Parse { .. } => &[],
        }
    }
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and validates a YAML config file. Relative custom module paths are
/// resolved against the file's folder.
pub fn load_file(path: &Path) -> Result<ValidConfig, ConfigError> {
    load_file_with_base(path, path.parent().unwrap_or(Path::new(".")))
}

/// Like [`load_file`], resolving relative custom module paths against `base`.
pub fn load_file_with_base(path: &Path, base: &Path) -> Result<ValidConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let raw = SlotsConfig::from_yaml(&text).map_err(|error| ConfigError::Parse {
        path: path.to_path_buf(),
        error,
    })?;
    raw.validate_with_base(base).map_err(|e| match e {
        ConfigError::Invalid(errors) => ConfigError::InvalidFile {
            path: path.to_path_buf(),
            errors,
        },
        other => other,
    })
}

#[cfg(test)]
mod tests;
