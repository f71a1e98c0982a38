//! What to campaign for and how fast, checked once before anything talks to the API.

use std::time::Duration;

use crate::LeaseError;

/// The Lease to campaign for, who we are, and its timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Namespace of the Lease object.
    pub namespace: String,
    /// Name of the Lease object; every pod of one cluster uses the same name.
    pub name: String,
    /// This pod's `holderIdentity`, unique among the candidates (the pod name).
    pub identity: String,
    /// How long a claim stays valid after its last renewal. Written to the Lease as
    /// `leaseDurationSeconds`, so it must be a whole number of seconds.
    pub duration: Duration,
    /// How long before the claim lapses the holder renews it: the slack left for a slow or
    /// failed renewal to be retried before leadership is given up.
    pub grace: Duration,
}

impl LeaseConfig {
    /// Default [`duration`](Self::duration): short, so a dead leader is replaced within seconds.
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(5);
    /// Default [`grace`](Self::grace).
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

    /// A config with the default timings.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration: Self::DEFAULT_DURATION,
            grace: Self::DEFAULT_GRACE,
        }
    }

    /// The `leaseDurationSeconds` to write; fails unless the config is usable as a whole.
    pub(crate) fn validate(&self) -> Result<i32, LeaseError> {
        for (field, value) in [
            ("namespace", &self.namespace),
            ("name", &self.name),
            ("identity", &self.identity),
        ] {
            if value.is_empty() {
                return Err(LeaseError::InvalidConfig {
                    field,
                    reason: "must not be empty".into(),
                });
            }
        }
        let seconds = i32::try_from(self.duration.as_secs())
            .ok()
            .filter(|s| *s >= 1 && self.duration.subsec_nanos() == 0)
            .ok_or_else(|| LeaseError::InvalidConfig {
                field: "duration",
                reason: format!(
                    "must be a whole number of seconds between 1 and {}, got {:?}",
                    i32::MAX,
                    self.duration
                ),
            })?;
        if self.grace.is_zero() || self.grace >= self.duration {
            return Err(LeaseError::InvalidConfig {
                field: "grace",
                reason: format!(
                    "must be above zero and below duration ({:?}), got {:?}",
                    self.duration, self.grace
                ),
            });
        }
        Ok(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(duration: Duration, grace: Duration) -> LeaseConfig {
        LeaseConfig {
            duration,
            grace,
            ..LeaseConfig::new("vss", "vss-leader", "vss-0")
        }
    }

    #[test]
    fn defaults_are_valid_and_write_five_seconds() {
        assert_eq!(
            LeaseConfig::new("vss", "vss-leader", "vss-0")
                .validate()
                .ok(),
            Some(5)
        );
    }

    #[test]
    fn rejects_a_fractional_duration() {
        let err = config(Duration::from_millis(1500), Duration::from_millis(500)).validate();
        assert!(matches!(
            err,
            Err(LeaseError::InvalidConfig {
                field: "duration",
                ..
            })
        ));
    }

    #[test]
    fn rejects_a_grace_not_below_duration() {
        let err = config(Duration::from_secs(2), Duration::from_secs(2)).validate();
        assert!(matches!(
            err,
            Err(LeaseError::InvalidConfig { field: "grace", .. })
        ));
        let err = config(Duration::from_secs(2), Duration::ZERO).validate();
        assert!(matches!(
            err,
            Err(LeaseError::InvalidConfig { field: "grace", .. })
        ));
    }

    #[test]
    fn rejects_an_empty_identity() {
        let err = LeaseConfig::new("vss", "vss-leader", "").validate();
        assert!(matches!(
            err,
            Err(LeaseError::InvalidConfig {
                field: "identity",
                ..
            })
        ));
    }
}
