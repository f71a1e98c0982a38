use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{GRPC_PORT, HTTP_PORT, MESH_PORT, Names, owned_meta, selector_labels};
use crate::crd::VssCluster;

fn grpc_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        app_protocol: Some("kubernetes.io/h2c".into()),
        ..Default::default()
    }
}

/// The client Service's ports; the mesh port is on the headless one only.
fn ports() -> Vec<ServicePort> {
    vec![
        grpc_port("grpc", GRPC_PORT),
        ServicePort {
            name: Some("http".into()),
            port: HTTP_PORT,
            target_port: Some(IntOrString::String("http".into())),
            protocol: Some("TCP".into()),
            ..Default::default()
        },
    ]
}

/// Gives every pod a DNS name (`<pod>.<headless>.<ns>.svc`) for the mesh and
/// the operator's config push. Not-ready pods are published too: peers must
/// reach each other before they can become ready.
pub fn headless_service(cluster: &VssCluster) -> Service {
    let names = Names::of(cluster);
    Service {
        metadata: owned_meta(cluster, &names.headless),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(cluster)),
            ports: Some(
                ports()
                    .into_iter()
                    .chain([grpc_port("mesh", MESH_PORT)])
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One stable address for clients that do not connect to every pod.
pub fn client_service(cluster: &VssCluster) -> Service {
    let names = Names::of(cluster);
    Service {
        metadata: owned_meta(cluster, &names.base),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(cluster)),
            ports: Some(ports()),
            ..Default::default()
        }),
        ..Default::default()
    }
}
