use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{GRPC_PORT, HTTP_PORT, MESH_PORT, Names, owned_meta, selector_labels};
use crate::crd::VssCluster;

/// The operator's own pods, which push config to the mesh port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorPods {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// Admits the mesh port (peers, the control API) only from the cluster's
/// own pods and, when known, the operator's; the client and HTTP ports
/// from anywhere. Policies add up, so a user widens this one with another,
/// never by editing it (the operator would repair the edit).
pub fn network_policy(cluster: &VssCluster, operator: Option<&OperatorPods>) -> NetworkPolicy {
    let names = Names::of(cluster);
    let port = |n: i32| NetworkPolicyPort {
        port: Some(IntOrString::Int(n)),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let pods_of = |labels: BTreeMap<String, String>| LabelSelector {
        match_labels: Some(labels),
        ..Default::default()
    };
    let mut mesh_peers = vec![NetworkPolicyPeer {
        pod_selector: Some(pods_of(selector_labels(cluster))),
        ..Default::default()
    }];
    if let Some(operator) = operator {
        mesh_peers.push(NetworkPolicyPeer {
            namespace_selector: Some(pods_of(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                operator.namespace.clone(),
            )]))),
            pod_selector: Some(pods_of(operator.labels.clone())),
            ..Default::default()
        });
    }
    NetworkPolicy {
        metadata: owned_meta(cluster, &names.base),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods_of(selector_labels(cluster))),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    ports: Some(vec![port(GRPC_PORT), port(HTTP_PORT)]),
                    from: None,
                },
                NetworkPolicyIngressRule {
                    ports: Some(vec![port(MESH_PORT)]),
                    from: Some(mesh_peers),
                },
            ]),
            ..Default::default()
        }),
    }
}
