//! The objects a `VssCluster` wants, as pure functions of the resource.
//!
//! Nothing here talks to the API server: the controller applies what these
//! functions return, and tests call them directly. Every object carries the
//! cluster's labels and an owner reference to it (controller = true), so
//! Kubernetes' garbage collector deletes them with the cluster and the
//! controller is woken when someone edits them.

mod config_map;
mod lease;
mod mesh_tls;
mod network_policy;
mod pdb;
mod rbac;
mod services;
mod stateful_set;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

pub use config_map::{CONFIG_KEY, config_map};
pub use lease::leader_lease;
pub use mesh_tls::{MESH_TLS_DIR, mesh_ca_secret, mesh_tls_secret};
pub use network_policy::{OperatorPods, network_policy};
pub use pdb::pod_disruption_budget;
pub use rbac::{role, role_binding, service_account};
pub use services::{client_service, headless_service};
pub use stateful_set::{GRPC_PORT, HTTP_PORT, MESH_PORT, stateful_set};

use crate::crd::VssCluster;

/// Names of the objects made for one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// StatefulSet, client Service, PDB, ServiceAccount, Role, RoleBinding.
    pub base: String,
    /// Headless Service giving each pod a stable DNS name.
    pub headless: String,
    /// ConfigMap with `slots.yaml`.
    pub config: String,
    /// Lease the pods elect their leader with.
    pub lease: String,
    /// Secret with the cluster's mesh CA (certificate and key).
    pub mesh_ca: String,
    /// Secret with each pod's mesh certificate and key, and the CA's
    /// certificate; mounted by every pod.
    pub mesh_tls: String,
}

impl Names {
    pub fn of(cluster: &VssCluster) -> Self {
        let base = cluster.name_any();
        Self {
            headless: format!("{base}-peers"),
            config: format!("{base}-config"),
            lease: format!("{base}-leader"),
            mesh_ca: format!("{base}-mesh-ca"),
            mesh_tls: format!("{base}-mesh-tls"),
            base,
        }
    }
}

/// The pods' names, `<statefulset>-<ordinal>`, as the StatefulSet will
/// name them at `spec.instances`.
pub fn pod_names(cluster: &VssCluster) -> Vec<String> {
    let base = cluster.name_any();
    (0..cluster.spec.instances.max(0))
        .map(|i| format!("{base}-{i}"))
        .collect()
}

/// A pod's mesh address (where the operator pushes config and reads
/// status) from its `status.podIP` (IPv4 or IPv6).
pub fn pod_address(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]:{MESH_PORT}"),
        _ => format!("{ip}:{MESH_PORT}"),
    }
}

/// Labels selecting a cluster's pods; never change them (StatefulSet
/// selectors are immutable).
pub fn selector_labels(cluster: &VssCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "vss".to_string()),
        ("app.kubernetes.io/instance".to_string(), cluster.name_any()),
    ])
}

/// Labels on everything the operator creates.
pub fn labels(cluster: &VssCluster) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster);
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        "vss-operator".to_string(),
    );
    labels.insert(
        "app.kubernetes.io/component".to_string(),
        "runtime".to_string(),
    );
    labels
}

/// The label selector string for listing a cluster's pods.
pub fn selector(cluster: &VssCluster) -> String {
    selector_labels(cluster)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Metadata of an owned object: name, namespace, labels, owner reference.
pub(crate) fn owned_meta(cluster: &VssCluster, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: cluster.namespace(),
        labels: Some(labels(cluster)),
        owner_references: cluster.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
