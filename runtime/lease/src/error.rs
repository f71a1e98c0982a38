//! The one error type callers see.

/// Why an election could not start or a Lease could not be read.
///
/// Once started, the election never fails: API errors are logged and retried, and
/// leadership is given up when the claim cannot be renewed in time.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// A [`LeaseConfig`](crate::LeaseConfig) field is unusable.
    #[error("invalid lease config: {field} {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it, including the value.
        reason: String,
    },
    /// The Kubernetes API refused or failed the request (RBAC, unreachable, ...).
    #[error("kubernetes API error on Lease {namespace}/{name}: {source}")]
    Api {
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}
