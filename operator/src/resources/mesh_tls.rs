//! The Secrets of a cluster's mesh TLS (`spec.meshTls.mode: Operator`):
//! its CA, and the pods' certificates that every pod mounts. What they
//! hold comes from [`crate::mesh_certs`].

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::{Names, owned_meta};
use crate::crd::VssCluster;

/// Where the pods mount `<cluster>-mesh-tls`: the whole Secret, so the
/// kubelet's updates reach the files and the runtime picks up renewed
/// certificates without a restart (a subPath mount would freeze them).
pub const MESH_TLS_DIR: &str = "/var/run/vss/mesh-tls";

fn secret(cluster: &VssCluster, name: &str, data: &BTreeMap<String, String>) -> Secret {
    Secret {
        metadata: owned_meta(cluster, name),
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// `<cluster>-mesh-ca`: `ca.crt` and `ca.key`. Only the operator reads it.
pub fn mesh_ca_secret(cluster: &VssCluster, data: &BTreeMap<String, String>) -> Secret {
    secret(cluster, &Names::of(cluster).mesh_ca, data)
}

/// `<cluster>-mesh-tls`: `<pod>.crt` and `<pod>.key` per pod, and `ca.crt`.
pub fn mesh_tls_secret(cluster: &VssCluster, data: &BTreeMap<String, String>) -> Secret {
    secret(cluster, &Names::of(cluster).mesh_tls, data)
}
