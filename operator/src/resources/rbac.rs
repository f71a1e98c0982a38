use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::{Names, owned_meta};
use crate::crd::VssCluster;

/// The pods' identity; its only permission is their leader Lease.
pub fn service_account(cluster: &VssCluster) -> ServiceAccount {
    let names = Names::of(cluster);
    ServiceAccount {
        metadata: owned_meta(cluster, &names.base),
        ..Default::default()
    }
}

/// Leases in the cluster's namespace: the runtime creates and renews
/// `<statefulset>-leader`. `create` cannot be limited to a resource name.
pub fn role(cluster: &VssCluster) -> Role {
    let names = Names::of(cluster);
    Role {
        metadata: owned_meta(cluster, &names.base),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["coordination.k8s.io".into()]),
            resources: Some(vec!["leases".into()]),
            verbs: ["get", "list", "watch", "create", "update", "patch"]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        }]),
    }
}

pub fn role_binding(cluster: &VssCluster) -> RoleBinding {
    let names = Names::of(cluster);
    let meta = owned_meta(cluster, &names.base);
    RoleBinding {
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: names.base.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: names.base.clone(),
            namespace: meta.namespace.clone(),
            ..Default::default()
        }]),
        metadata: meta,
    }
}
