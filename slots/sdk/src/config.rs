//! Typed access to the flat `name = value` configuration a slot receives.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// The configuration fields the host passed to `init`, with parsers that
/// produce errors naming the field, so a bad config is easy to find.
#[derive(Debug, Clone, Default)]
pub struct Config {
    fields: Vec<(String, String)>,
}

impl From<Vec<(String, String)>> for Config {
    fn from(fields: Vec<(String, String)>) -> Self {
        Self { fields }
    }
}

impl Config {
    /// The raw text of a field, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A required unsigned integer.
    pub fn u64(&self, name: &str) -> Result<u64, String> {
        let raw = self
            .get(name)
            .ok_or_else(|| format!("field `{name}` is required"))?;
        raw.trim()
            .parse()
            .map_err(|_| format!("field `{name}`: expected an unsigned integer, got `{raw}`"))
    }

    /// An optional unsigned integer with a default.
    pub fn u64_or(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(_) => self.u64(name),
        }
    }

    /// A required unsigned integer that must be at least `min`.
    pub fn u64_at_least(&self, name: &str, min: u64, default: Option<u64>) -> Result<u64, String> {
        let v = match default {
            Some(d) => self.u64_or(name, d)?,
            None => self.u64(name)?,
        };
        if v < min {
            return Err(format!("field `{name}` must be at least {min}, got {v}"));
        }
        Ok(v)
    }

    /// A required text field that must not be empty.
    pub fn non_empty(&self, name: &str) -> Result<String, String> {
        let v = self.string(name)?;
        if v.is_empty() {
            return Err(format!("field `{name}` must not be empty"));
        }
        Ok(v)
    }

    /// An optional unsigned integer within `range`, as a `usize` (counts
    /// and sizes of things held in memory).
    pub fn usize_in(
        &self,
        name: &str,
        default: u64,
        range: core::ops::RangeInclusive<u64>,
    ) -> Result<usize, String> {
        let v = self.u64_or(name, default)?;
        if v < *range.start() {
            return Err(format!(
                "field `{name}` must be at least {}, got {v}",
                range.start()
            ));
        }
        if v > *range.end() {
            return Err(format!(
                "field `{name}` must be at most {}, got {v}",
                range.end()
            ));
        }
        usize::try_from(v)
            .map_err(|_| format!("field `{name}` does not fit this platform, got {v}"))
    }

    /// An optional `true` / `false`.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.get(name).map(str::trim) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(format!(
                "field `{name}`: expected true or false, got `{other}`"
            )),
        }
    }

    /// A period name (`second`, `minute`, `hour`) in milliseconds.
    pub fn period_ms(&self, name: &str) -> Result<u64, String> {
        let raw = self
            .get(name)
            .ok_or_else(|| format!("field `{name}` is required"))?;
        period_ms(raw).ok_or_else(|| {
            format!("field `{name}`: expected one of second, minute, hour, got `{raw}`")
        })
    }

    /// A required text field.
    pub fn string(&self, name: &str) -> Result<String, String> {
        self.get(name)
            .map(ToString::to_string)
            .ok_or_else(|| format!("field `{name}` is required"))
    }
}

/// Milliseconds in a named period.
pub fn period_ms(name: &str) -> Option<u64> {
    match name.trim() {
        "second" => Some(1_000),
        "minute" => Some(60_000),
        "hour" => Some(3_600_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        Config::from(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn parses_integers_and_defaults() {
        let c = cfg(&[("bucketSize", "200")]);
        assert_eq!(c.u64("bucketSize"), Ok(200));
        assert_eq!(c.u64_or("refreshRate", 1), Ok(1));
    }

    #[test]
    fn errors_name_the_field() {
        let c = cfg(&[
            ("bucketSize", "lots"),
            ("period", "fortnight"),
            ("refreshRate", "0"),
        ]);
        assert!(c.u64("bucketSize").unwrap_err().contains("`bucketSize`"));
        assert!(
            c.u64("missing")
                .unwrap_err()
                .contains("`missing` is required")
        );
        assert!(
            c.period_ms("period")
                .unwrap_err()
                .contains("second, minute, hour")
        );
        assert!(
            c.u64_at_least("refreshRate", 1, Some(1))
                .unwrap_err()
                .contains("at least 1")
        );
    }

    #[test]
    fn ranges_and_booleans_name_the_field_and_the_limit() {
        let c = cfg(&[
            ("maxKeys", "0"),
            ("big", "9"),
            ("on", "yes"),
            ("off", "false"),
        ]);
        assert!(
            c.usize_in("maxKeys", 10, 1..=5)
                .unwrap_err()
                .contains("`maxKeys` must be at least 1, got 0")
        );
        assert!(
            c.usize_in("big", 1, 1..=5)
                .unwrap_err()
                .contains("at most 5")
        );
        assert_eq!(c.usize_in("absent", 3, 1..=5), Ok(3));
        assert!(c.bool_or("on", false).unwrap_err().contains("`on`"));
        assert_eq!(c.bool_or("off", true), Ok(false));
        assert_eq!(c.bool_or("absent", true), Ok(true));
    }

    #[test]
    fn knows_the_three_periods() {
        assert_eq!(period_ms("second"), Some(1_000));
        assert_eq!(period_ms("minute"), Some(60_000));
        assert_eq!(period_ms("hour"), Some(3_600_000));
        assert_eq!(period_ms("day"), None);
    }
}
