use k8s_openapi::api::coordination::v1::Lease;

use super::{Names, owned_meta};
use crate::crd::VssCluster;

/// The pods' leader Lease, created empty so it carries an owner reference
/// and is garbage-collected with the cluster; the pods fill in and renew
/// its spec. Without it the Lease the pods create would outlive the cluster,
/// and only a finalizer could remove it.
pub fn leader_lease(cluster: &VssCluster) -> Lease {
    let names = Names::of(cluster);
    Lease {
        metadata: owned_meta(cluster, &names.lease),
        spec: None,
    }
}
