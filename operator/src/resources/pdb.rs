use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Names, owned_meta, selector_labels};
use crate::crd::VssCluster;

/// Voluntary disruptions (node drains) take at most one pod at a time: the
/// cluster survives losing any single instance, not two.
pub fn pod_disruption_budget(cluster: &VssCluster) -> PodDisruptionBudget {
    let names = Names::of(cluster);
    PodDisruptionBudget {
        metadata: owned_meta(cluster, &names.base),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cluster)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
