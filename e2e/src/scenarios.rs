//! Scenario steps shared by the kind suite (`tests/kind.rs`) and the
//! real-API-server suite (`tests/real_api_server.rs`): the same assertions
//! on either kind of cluster. Each takes the cluster as a [`Kubectl`] in its
//! namespace, and the pods as gRPC endpoints however the suite reaches them
//! (port-forwards or loopback addresses).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;
use vss_client::{Acquire, Client};

use crate::kubectl::{is_owned_by, name_of, str_at};
use crate::{Kubectl, wait};

/// Kinds the operator creates for a cluster (their ownerReferences point
/// at the VssCluster).
pub const OWNED_KINDS: &[&str] = &[
    "statefulsets.apps",
    "services",
    "configmaps",
    "serviceaccounts",
    "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
    "poddisruptionbudgets.policy",
    "networkpolicies.networking.k8s.io",
    "leases.coordination.k8s.io",
    "secrets",
];

/// The labels selecting a cluster's pods (the operator's
/// `resources::selector_labels`).
pub fn selector_of(cluster: &str) -> String {
    format!("app.kubernetes.io/name=vss,app.kubernetes.io/instance={cluster}")
}

/// `kind/name` of every object of [`OWNED_KINDS`] owned by `uid`.
pub async fn owned_by(kubectl: &Kubectl, uid: &str) -> Result<Vec<String>> {
    let mut owned = Vec::new();
    for kind in OWNED_KINDS {
        for obj in kubectl.list(kind, None).await? {
            if is_owned_by(&obj, uid) {
                owned.push(format!("{kind}/{}", name_of(&obj)));
            }
        }
    }
    Ok(owned)
}

/// Deletes the VssCluster and waits until nothing it owned, none of its
/// pods and not its Lease is left.
pub async fn deletion_leaves_nothing_behind(
    kubectl: &Kubectl,
    cluster: &str,
    limit: Duration,
    poll: Duration,
) -> Result<()> {
    let vc = kubectl.get("vsscluster", cluster).await?;
    let uid = str_at(&vc, "/metadata/uid").to_string();
    ensure!(!uid.is_empty(), "the VssCluster has no uid");
    let owned = owned_by(kubectl, &uid).await?;
    ensure!(
        owned.iter().any(|o| o.starts_with("statefulsets.apps/")),
        "before deletion, no StatefulSet is owned by the VssCluster (owned: {owned:?})"
    );
    println!("  owned before deletion: {}", owned.join(", "));
    kubectl
        .run(&["delete", "vsscluster", cluster, "--wait=false"])
        .await?;
    let lease = format!("{cluster}-leader");
    let selector = selector_of(cluster);
    wait::until(
        "everything the VssCluster owned to be gone",
        limit,
        poll,
        || async {
            let mut left = owned_by(kubectl, &uid).await?;
            for pod in kubectl.list("pods", Some(&selector)).await? {
                left.push(format!("pod/{}", name_of(&pod)));
            }
            if kubectl.get_opt("lease", &lease).await?.is_some() {
                left.push(format!("lease/{lease}"));
            }
            if kubectl.get_opt("vsscluster", cluster).await?.is_some() {
                left.push(format!("vsscluster/{cluster}"));
            }
            if left.is_empty() {
                Ok(Some(()))
            } else {
                bail!("still present: {}", left.join(", "))
            }
        },
    )
    .await
}

/// `vss.v1.Vss/Status` of one instance.
pub async fn status_of(endpoint: &str) -> Result<vss_client::StatusReply> {
    let single = Client::new(&[endpoint])?;
    let (_, status) = single
        .status()
        .await
        .into_iter()
        .next()
        .context("no status")?;
    Ok(status?)
}

/// Adds token-bucket slot `slot` to the VssCluster: every pod (name and
/// gRPC endpoint) must run a newer config generation that has the slot, and
/// the slot must answer, while `restarts` (a reading of each pod's process
/// or container identity, taken before and after) does not change.
pub async fn slot_change_is_pushed_without_restarts<R, F, Fut>(
    kubectl: &Kubectl,
    cluster: &str,
    pods: &[(String, String)],
    slot: u32,
    limit: Duration,
    restarts: F,
) -> Result<()>
where
    R: PartialEq + std::fmt::Debug,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<R>>,
{
    ensure!(!pods.is_empty(), "no pods to check");
    let endpoints: Vec<&str> = pods.iter().map(|(_, e)| e.as_str()).collect();
    let client = Client::new(&endpoints)?;
    match client.acquire(slot, Acquire::default()).await {
        Err(e) if e.code() == Some(tonic::Code::NotFound) => {}
        other => bail!(
            "slot {slot} must be unconfigured before the change (re-apply the cluster); got {other:?}"
        ),
    }
    let mut before = BTreeMap::new();
    for (pod, endpoint) in pods {
        before.insert(pod.clone(), status_of(endpoint).await?.config_generation);
    }
    let identities = restarts().await?;
    let patch = format!(
        r#"[{{"op":"add","path":"/spec/slots/-","value":{{"id":{slot},"type":"token-bucket","bucketSize":5,"period":"second"}}}}]"#
    );
    kubectl
        .run(&["patch", "vsscluster", cluster, "--type=json", "-p", &patch])
        .await?;
    wait::until(
        "every pod to run the new config",
        limit,
        Duration::from_millis(500),
        || async {
            for (pod, endpoint) in pods {
                let status = status_of(endpoint)
                    .await
                    .with_context(|| format!("status of {pod}"))?;
                let old = before.get(pod).copied().unwrap_or(0);
                if status.config_generation <= old {
                    bail!(
                        "{pod} still runs config generation {}",
                        status.config_generation
                    );
                }
                if !status.slots.iter().any(|s| s.id == slot) {
                    bail!(
                        "{pod} runs generation {} without slot {slot}",
                        status.config_generation
                    );
                }
            }
            Ok(Some(()))
        },
    )
    .await?;
    let grant = client.acquire(slot, Acquire::default()).await?;
    ensure!(grant.granted == 1, "the new slot granted {grant:?}");
    let after = restarts().await?;
    ensure!(
        after == identities,
        "pods were replaced or restarted: {identities:?} -> {after:?}"
    );
    Ok(())
}

/// `status.pods[].configGeneration` equals the VssCluster's generation for
/// every one of `expected` pods.
pub fn status_has_generation(cluster: &Value, expected: usize) -> Option<i64> {
    let generation = cluster.pointer("/metadata/generation")?.as_i64()?;
    let pods = cluster.pointer("/status/pods")?.as_array()?;
    (pods.len() == expected
        && pods
            .iter()
            .all(|p| p.get("configGeneration").and_then(Value::as_i64) == Some(generation)))
    .then_some(generation)
}
