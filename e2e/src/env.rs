//! Which cluster the scenarios run against, from environment variables.

use std::path::PathBuf;

/// Kubeconfig of the cluster under test. Unset: nothing runs.
pub const KUBECONFIG_VAR: &str = "VSS_E2E_KUBECONFIG";
/// Namespace of the VssCluster under test (default `vss-e2e`).
pub const NAMESPACE_VAR: &str = "VSS_E2E_NAMESPACE";
/// Name of the VssCluster under test (default `vss-seed`, from
/// `examples/vsscluster-seed.yaml`).
pub const CLUSTER_VAR: &str = "VSS_E2E_CLUSTER";

/// Namespace of the operator's release and its Lease (default `vss-system`).
pub const OPERATOR_NAMESPACE_VAR: &str = "VSS_E2E_OPERATOR_NAMESPACE";

/// Where the scenarios run.
#[derive(Debug, Clone)]
pub struct E2eEnv {
    pub kubeconfig: PathBuf,
    pub namespace: String,
    pub cluster: String,
    pub operator_namespace: String,
}

impl E2eEnv {
    /// None when `VSS_E2E_KUBECONFIG` is unset or empty: the caller must
    /// then report the scenarios as skipped, not passed.
    pub fn from_env() -> Option<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let non_empty = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let kubeconfig = PathBuf::from(non_empty(KUBECONFIG_VAR)?);
        Some(Self {
            kubeconfig,
            namespace: non_empty(NAMESPACE_VAR).unwrap_or_else(|| "vss-e2e".into()),
            cluster: non_empty(CLUSTER_VAR).unwrap_or_else(|| "vss-seed".into()),
            operator_namespace: non_empty(OPERATOR_NAMESPACE_VAR)
                .unwrap_or_else(|| "vss-system".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_runs_without_a_kubeconfig() {
        assert!(E2eEnv::from_lookup(|_| None).is_none());
        assert!(E2eEnv::from_lookup(|_| Some("  ".into())).is_none());
    }

    #[test]
    fn namespace_and_cluster_have_defaults() {
        let env = E2eEnv::from_lookup(|name| (name == KUBECONFIG_VAR).then(|| "/k".into()))
            .expect("kubeconfig is set");
        assert_eq!(env.kubeconfig, PathBuf::from("/k"));
        assert_eq!(env.namespace, "vss-e2e");
        assert_eq!(env.cluster, "vss-seed");
        assert_eq!(env.operator_namespace, "vss-system");
    }
}
