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
    /// The file is not a slot configuration. The first problem is the
    /// parser's, with its line; the others come from reading each slot
    /// entry on its own, so one malformed slot does not hide the rest.
    #[error("config file {}: {}", path.display(), list_problems(.problems))]
    Parse {
        path: PathBuf,
        problems: Vec<String>,
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

fn list_problems(problems: &[String]) -> String {
    match problems {
        [one] => one.clone(),
        many => format!(
            "{} problems:\n{}",
            many.len(),
            many.iter()
                .map(|p| format!("  - {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
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
        problems: parse_problems(&text, &error, base),
    })?;
    raw.validate_with_base(base).map_err(|e| match e {
        ConfigError::Invalid(errors) => ConfigError::InvalidFile {
            path: path.to_path_buf(),
            errors,
        },
        other => other,
    })
}

/// Every problem of a file the parser refused: its error first, then those
/// of the other slot entries, each read on its own, then what validation
/// finds in the entries that could be read.
fn parse_problems(text: &str, first: &serde_norway::Error, base: &Path) -> Vec<String> {
    let mut problems = vec![first.to_string()];
    // A YAML syntax error, or no `slots` list: the parser's error is all
    // there is to say.
    let Ok(doc) = serde_norway::from_str::<serde_norway::Value>(text) else {
        return problems;
    };
    let Some(entries) = doc.get("slots").and_then(serde_norway::Value::as_sequence) else {
        return problems;
    };
    let mut readable = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match <SlotSpec as serde::Deserialize>::deserialize(entry.clone()) {
            Ok(spec) => readable.push(spec),
            Err(e) => {
                let problem = format!("slots[{i}]: {e}");
                // The parser's own error has the same text and a line.
                if !problems[0].starts_with(&problem) {
                    problems.push(problem);
                }
            }
        }
    }
    if let Err(e) = (SlotsConfig { slots: readable }).validate_with_base(base) {
        problems.extend(e.problems().iter().map(ToString::to_string));
    }
    problems
}

#[cfg(test)]
mod tests;
