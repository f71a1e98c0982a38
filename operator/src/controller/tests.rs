//! Reconcile against a mocked API server and fake pods.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::*;
use crate::crd::PodConfigStatus;
use crate::fixtures::{
    ApiServerVerifier, FakePods, IMAGE, NS, PodCall, address, cluster, owned_paths, pod,
    secure_cluster,
};
use crate::status::{DEGRADED, PROGRESSING, READY};

const PODS: [&str; 3] = ["demo-0", "demo-1", "demo-2"];

/// Runs one reconcile while `scenario` plays the API server, then checks
/// the operator made no request beyond it.
async fn run<F, Fut>(c: VssCluster, pods: Arc<FakePods>, scenario: F) -> Action
where
    F: FnOnce(ApiServerVerifier) -> Fut,
    Fut: Future<Output = ApiServerVerifier> + Send + 'static,
{
    let (ctx, verifier) = Context::test(pods);
    let task = tokio::spawn(scenario(verifier));
    let result =
        tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(c), ctx.clone())).await;
    drop(ctx);
    // A failed assertion in the scenario explains more than the error it
    // causes in reconcile, so surface it first.
    let verifier = match task.await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let action = result
        .expect("reconcile hung waiting for a response the scenario never sent")
        .expect("reconcile succeeded");
    verifier.done().await;
    action
}

/// The objects as the API server holds them for a settled cluster `c`.
fn existing(c: &VssCluster) -> Vec<Value> {
    let yaml = crate::slots::render(&c.spec).expect("valid spec");
    let mut sts = serde_json::to_value(resources::stateful_set(c, IMAGE)).expect("json");
    sts["metadata"]["generation"] = json!(1);
    sts["status"] = ready_sts_status();
    // As the pods keep it: holder and renewals are theirs, not drift.
    let mut lease = serde_json::to_value(resources::leader_lease(c)).expect("json");
    lease["spec"] = json!({"holderIdentity": "demo-0", "leaseDurationSeconds": 10,
                           "renewTime": "2026-01-01T00:00:00.000000Z"});
    vec![
        serde_json::to_value(resources::service_account(c)).expect("json"),
        serde_json::to_value(resources::role(c)).expect("json"),
        serde_json::to_value(resources::role_binding(c)).expect("json"),
        lease,
        serde_json::to_value(resources::config_map(c, &yaml)).expect("json"),
        serde_json::to_value(resources::headless_service(c)).expect("json"),
        serde_json::to_value(resources::client_service(c)).expect("json"),
        sts,
        serde_json::to_value(resources::pod_disruption_budget(c)).expect("json"),
        serde_json::to_value(resources::network_policy(
            c,
            Some(&crate::fixtures::operator_pods()),
        ))
        .expect("json"),
    ]
}

fn ready_sts_status() -> Value {
    json!({"replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "observedGeneration": 1,
           "currentRevision": "demo-1", "updateRevision": "demo-1"})
}

/// The status a settled cluster at `generation` already carries.
fn settled_status(generation: i64) -> crate::crd::VssClusterStatus {
    let seen = Observed {
        generation,
        desired_instances: 3,
        ready_instances: 3,
        rolled_out: true,
        pods: PODS
            .iter()
            .map(|p| PodConfigStatus {
                name: p.to_string(),
                config_generation: Some(generation),
            })
            .collect(),
        leaders: vec!["demo-0".into(); 3],
        failures: vec![],
    };
    let epoch = Time(Timestamp::from_second(1_700_000_000).expect("valid"));
    status::observed_status(None, &seen, &epoch)
}

fn condition<'a>(
    s: &'a crate::crd::VssClusterStatus,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.condition(t)
        .unwrap_or_else(|| panic!("condition {t} missing"))
}

#[tokio::test]
async fn a_new_cluster_gets_every_object_owned_and_labelled() {
    let c = cluster();
    let pods = Arc::new(FakePods::default());
    let expected = c.clone();
    let action = run(c, pods.clone(), |mut api| async move {
        let mut applied = Vec::new();
        for (kind, path) in owned_paths() {
            api.get(&path, None).await;
            let status = (kind == "StatefulSet").then(|| json!({"replicas": 0}));
            let body = api.apply(&path, status).await;
            assert_eq!(body["kind"], kind, "{path}");
            applied.push(body);
        }
        let names: Vec<&str> = applied
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "demo",
                "demo",
                "demo",
                "demo-leader",
                "demo-config",
                "demo-peers",
                "demo",
                "demo",
                "demo",
                "demo"
            ]
        );
        for obj in &applied {
            let owner = &obj["metadata"]["ownerReferences"][0];
            assert_eq!(owner["kind"], "VssCluster", "{obj}");
            assert_eq!(owner["apiVersion"], "vss.dev/v1alpha1");
            assert_eq!(owner["uid"], "uid-demo");
            assert_eq!(owner["controller"], true);
            assert_eq!(
                obj["metadata"]["labels"]["app.kubernetes.io/instance"],
                "demo"
            );
            assert_eq!(obj["metadata"]["namespace"], "testns");
        }
        let config = applied[4]["data"]["slots.yaml"]
            .as_str()
            .expect("slots.yaml");
        assert!(
            config.contains("bucketSize: 200") && config.contains("type: multicast"),
            "{config}"
        );
        let pod_spec = &applied[7]["spec"]["template"]["spec"];
        assert_eq!(pod_spec["serviceAccountName"], "demo");
        assert_eq!(pod_spec["containers"][0]["image"], IMAGE);
        assert_eq!(pod_spec["volumes"][0]["configMap"]["name"], "demo-config");
        assert_eq!(applied[7]["spec"]["replicas"], 3);
        assert!(
            applied[3].get("spec").is_none(),
            "the Lease spec is the pods'"
        );
        let event = api.event("Applied").await;
        assert!(
            event["note"]
                .as_str()
                .unwrap_or_default()
                .contains("StatefulSet/demo")
        );
        api.list_pods(vec![]).await;
        let status = api.patch_status(&expected).await;
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(condition(&status, READY).status, "False");
        assert_eq!(condition(&status, READY).reason, "InstancesNotReady");
        assert_eq!(condition(&status, PROGRESSING).status, "True");
        assert_eq!(condition(&status, DEGRADED).status, "False");
        api
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    assert!(
        pods.calls().is_empty(),
        "no pod runs yet, so nothing is pushed"
    );
}

#[tokio::test]
async fn a_second_reconcile_changes_nothing() {
    let mut c = cluster();
    c.status = Some(settled_status(1));
    let objects = existing(&c);
    let pods = Arc::new(FakePods::at_generation(&PODS, 1));
    let action = run(c, pods.clone(), |mut api| async move {
        for ((_, path), obj) in owned_paths().into_iter().zip(objects) {
            api.get(&path, Some(obj)).await;
        }
        api.list_pods(PODS.iter().map(|p| pod(p, true)).collect())
            .await;
        // No apply, no event, no status patch: `done` fails on any of them.
        api
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let calls = pods.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(
        calls.iter().all(|c| matches!(c, PodCall::Status(_))),
        "{calls:?}"
    );
}

#[tokio::test]
async fn drift_is_repaired() {
    let mut c = cluster();
    c.status = Some(settled_status(1));
    let mut objects = existing(&c);
    objects[7]["spec"]["replicas"] = json!(1);
    objects[7]["spec"]["template"]["spec"]["containers"][0]["image"] = json!("someone/else:latest");
    let pods = Arc::new(FakePods::at_generation(&PODS, 1));
    run(c, pods, |mut api| async move {
        for ((kind, path), obj) in owned_paths().into_iter().zip(objects) {
            api.get(&path, Some(obj)).await;
            if kind == "StatefulSet" {
                let body = api.apply(&path, Some(ready_sts_status())).await;
                assert_eq!(body["spec"]["replicas"], 3);
                assert_eq!(
                    body["spec"]["template"]["spec"]["containers"][0]["image"],
                    IMAGE
                );
            }
        }
        let event = api.event("Applied").await;
        assert!(
            event["note"]
                .as_str()
                .unwrap_or_default()
                .contains("StatefulSet/demo"),
            "{event}"
        );
        api.list_pods(PODS.iter().map(|p| pod(p, true)).collect())
            .await;
        api
    })
    .await;
}

#[tokio::test]
async fn a_slot_change_is_pushed_to_running_pods_without_a_restart() {
    let old = {
        let mut c = cluster();
        c.status = Some(settled_status(1));
        c
    };
    let objects = existing(&old);
    let mut changed = old.clone();
    changed.metadata.generation = Some(2);
    changed.spec.slots[0].bucket_size = Some(300);
    let expected = changed.clone();
    let pods = Arc::new(FakePods::at_generation(&PODS, 1));
    let action = run(changed, pods.clone(), |mut api| async move {
        for ((kind, path), obj) in owned_paths().into_iter().zip(objects) {
            api.get(&path, Some(obj)).await;
            // Only the ConfigMap changes; the StatefulSet's pod template
            // does not hold the slot config, so no pod restarts.
            if kind == "ConfigMap" {
                let body = api.apply(&path, None).await;
                let yaml = body["data"]["slots.yaml"].as_str().unwrap_or_default();
                assert!(yaml.contains("bucketSize: 300"), "{yaml}");
            }
        }
        api.event("Applied").await;
        api.list_pods(PODS.iter().map(|p| pod(p, true)).collect())
            .await;
        let event = api.event("ConfigPushed").await;
        assert!(
            event["note"]
                .as_str()
                .unwrap_or_default()
                .contains("generation 2"),
            "{event}"
        );
        let status = api.patch_status(&expected).await;
        assert_eq!(status.observed_generation, Some(2));
        assert!(
            status.pods.iter().all(|p| p.config_generation == Some(2)),
            "{:?}",
            status.pods
        );
        assert_eq!(status.pods.len(), 3);
        assert_eq!(status.leader.as_deref(), Some("demo-0"));
        assert_eq!(condition(&status, READY).status, "True");
        api
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let pushes: Vec<(String, u64, String)> = pods
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            PodCall::Apply {
                address,
                generation,
                config_yaml,
            } => Some((address, generation, config_yaml)),
            _ => None,
        })
        .collect();
    assert_eq!(pushes.len(), 3);
    for ((addr, generation, yaml), p) in pushes.iter().zip(PODS) {
        assert_eq!(addr, &address(p));
        assert_eq!(*generation, 2);
        assert!(yaml.contains("bucketSize: 300"));
    }
}

#[tokio::test]
async fn a_change_that_starts_a_slot_fresh_is_a_warning_before_the_push() {
    let mut c = cluster();
    c.status = Some(settled_status(1));
    let objects = existing(&c);
    c.metadata.generation = Some(2);
    c.spec.slots[0].period = Some("minute".into());
    let expected = c.clone();
    let pods = Arc::new(FakePods::at_generation(&PODS, 1));
    run(c, pods.clone(), |mut api| async move {
        for ((kind, path), obj) in owned_paths().into_iter().zip(objects) {
            api.get(&path, Some(obj)).await;
            if kind == "ConfigMap" {
                api.apply(&path, None).await;
                let event = api.event("SlotStartsFresh").await;
                assert_eq!(event["type"], "Warning");
                let note = event["note"].as_str().unwrap_or_default();
                assert!(
                    note.contains("slot 0 starts fresh")
                        && note.contains("`period` changed from second to minute"),
                    "{note}"
                );
            }
        }
        api.event("Applied").await;
        api.list_pods(PODS.iter().map(|p| pod(p, true)).collect())
            .await;
        api.event("ConfigPushed").await;
        api.patch_status(&expected).await;
        api
    })
    .await;
    assert_eq!(
        pods.calls()
            .iter()
            .filter(|c| matches!(c, PodCall::Apply { .. }))
            .count(),
        3
    );
}

#[tokio::test]
async fn a_refused_push_is_degraded_with_the_pod_named() {
    let mut c = cluster();
    c.status = Some(settled_status(1));
    let objects = existing(&c);
    c.metadata.generation = Some(2);
    let expected = c.clone();
    let pods = Arc::new(FakePods {
        refuse_push: true,
        ..FakePods::at_generation(&PODS, 1)
    });
    run(c, pods, |mut api| async move {
        for ((_, path), obj) in owned_paths().into_iter().zip(objects) {
            api.get(&path, Some(obj)).await;
        }
        api.list_pods(PODS.iter().map(|p| pod(p, true)).collect())
            .await;
        let event = api.event("ConfigPushFailed").await;
        assert_eq!(event["type"], "Warning");
        let status = api.patch_status(&expected).await;
        let degraded = condition(&status, DEGRADED);
        assert_eq!(degraded.status, "True");
        assert_eq!(degraded.reason, "PodCallFailed");
        assert!(
            degraded.message.contains("demo-1") && degraded.message.contains("bucketSize"),
            "{}",
            degraded.message
        );
        assert_eq!(condition(&status, READY).status, "False");
        api
    })
    .await;
}

#[tokio::test]
async fn an_invalid_spec_is_degraded_with_the_reason_and_touches_nothing() {
    let mut c = cluster();
    c.status = Some(settled_status(1));
    c.metadata.generation = Some(2);
    c.spec.slots[0].bucket_size = None;
    c.spec.slots[1].id = 100;
    let expected = c.clone();
    let pods = Arc::new(FakePods::at_generation(&PODS, 1));
    let action = run(c, pods.clone(), |mut api| async move {
        let status = api.patch_status(&expected).await;
        let degraded = condition(&status, DEGRADED);
        assert_eq!(degraded.status, "True");
        assert_eq!(degraded.reason, "InvalidSpec");
        assert!(
            degraded
                .message
                .contains("slot 0: field `bucketSize`: is required"),
            "{}",
            degraded.message
        );
        assert!(
            degraded
                .message
                .contains("slot 100: field `id`: must be between 0 and 99"),
            "{}",
            degraded.message
        );
        // The pods keep running the last valid config.
        assert_eq!(condition(&status, READY).status, "True");
        assert_eq!(status.observed_generation, Some(2));
        let event = api.event("InvalidSpec").await;
        assert_eq!(event["type"], "Warning");
        api
    })
    .await;
    assert_eq!(action, Action::await_change());
    assert!(pods.calls().is_empty(), "an invalid config is never pushed");
}

#[tokio::test]
async fn deletion_is_left_to_the_garbage_collector() {
    let mut c = cluster();
    c.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    assert!(c.metadata.finalizers.is_none());
    let pods = Arc::new(FakePods::at_generation(&PODS, 1));
    // No request at all: no finalizer to remove, no object to delete (they
    // carry ownerReferences), nothing re-created while the GC works.
    let action = run(c, pods.clone(), |api| async move { api }).await;
    assert_eq!(action, Action::await_change());
    assert!(pods.calls().is_empty());
}

#[tokio::test]
async fn chaos_deletes_one_pod_of_a_ready_cluster_and_records_when() {
    let mut c = cluster();
    c.spec.chaos = Some(crate::crd::Chaos {
        enabled: true,
        pod_kill_interval: Some("10m".into()),
    });
    c.status = Some(settled_status(1));
    let objects = existing(&c);
    let expected = c.clone();
    let pods = Arc::new(FakePods::at_generation(&PODS, 1));
    let action = run(c, pods, |mut api| async move {
        for ((_, path), obj) in owned_paths().into_iter().zip(objects) {
            api.get(&path, Some(obj)).await;
        }
        api.list_pods(PODS.iter().map(|p| pod(p, true)).collect())
            .await;
        let victim = api.delete_pod().await;
        assert!(PODS.contains(&victim.as_str()), "{victim}");
        let event = api.event("ChaosPodKill").await;
        assert!(event["note"].as_str().unwrap_or_default().contains(&victim));
        let status = api.patch_status(&expected).await;
        let when = status.last_chaos_kill.expect("kill time recorded");
        assert!(when.parse::<Timestamp>().is_ok(), "{when}");
        api
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
}

#[tokio::test]
async fn chaos_waits_for_its_interval() {
    let mut c = cluster();
    c.spec.chaos = Some(crate::crd::Chaos {
        enabled: true,
        pod_kill_interval: Some("10m".into()),
    });
    let mut status = settled_status(1);
    status.last_chaos_kill = Some(Timestamp::now().to_string());
    c.status = Some(status);
    let objects = existing(&c);
    let pods = Arc::new(FakePods::at_generation(&PODS, 1));
    run(c, pods, |mut api| async move {
        for ((_, path), obj) in owned_paths().into_iter().zip(objects) {
            api.get(&path, Some(obj)).await;
        }
        api.list_pods(PODS.iter().map(|p| pod(p, true)).collect())
            .await;
        // No delete: the last kill was just now.
        api
    })
    .await;
}

#[tokio::test]
async fn a_leader_no_pod_names_any_more_is_cleared() {
    let mut c = cluster();
    c.status = Some(settled_status(1));
    let objects = existing(&c);
    let expected = c.clone();
    // The pods answer but none has a routing table yet.
    let pods = Arc::new(FakePods {
        leader: String::new(),
        ..FakePods::at_generation(&PODS, 1)
    });
    run(c, pods, |mut api| async move {
        for ((_, path), obj) in owned_paths().into_iter().zip(objects) {
            api.get(&path, Some(obj)).await;
        }
        api.list_pods(PODS.iter().map(|p| pod(p, true)).collect())
            .await;
        let (status, patch) = api.patch_status_raw(&expected).await;
        assert_eq!(status.leader, None);
        assert!(
            patch["status"]
                .as_object()
                .is_some_and(|s| s.get("leader") == Some(&Value::Null)),
            "a merge patch must say leader: null to clear it: {patch}"
        );
        api
    })
    .await;
}

// ------------------------------------------------------------ mesh TLS

fn ca_path() -> String {
    format!("/api/v1/namespaces/{NS}/secrets/demo-mesh-ca")
}

fn tls_path() -> String {
    format!("/api/v1/namespaces/{NS}/secrets/demo-mesh-tls")
}

/// A Secret's data (base64 on the wire) as text.
fn data_of(secret: &Value) -> std::collections::BTreeMap<String, String> {
    let parsed: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(secret.clone()).expect("a Secret");
    parsed
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).expect("PEM text")))
        .collect()
}

/// The Secrets of a settled secure cluster, made now.
fn existing_secrets(c: &VssCluster) -> (Value, Value) {
    let now = std::time::SystemTime::now();
    let ca = mesh_certs::Ca::generate("demo", now).expect("CA");
    let pods: Vec<(String, Vec<String>)> = PODS
        .iter()
        .map(|p| (p.to_string(), mesh_certs::pod_names(p, "demo-peers", NS)))
        .collect();
    let certs = mesh_certs::pod_certs(&ca, &Default::default(), &pods, now).expect("certs");
    (
        serde_json::to_value(resources::mesh_ca_secret(c, &ca.secret_data())).expect("json"),
        serde_json::to_value(resources::mesh_tls_secret(c, &certs.data)).expect("json"),
    )
}

#[tokio::test]
async fn a_new_secure_cluster_gets_its_ca_and_pod_certificates_before_its_pods() {
    let c = secure_cluster();
    let expected = c.clone();
    let pods = Arc::new(FakePods::default());
    run(c, pods, |mut api| async move {
        let mut sts = None;
        for (kind, path) in owned_paths() {
            if kind == "StatefulSet" {
                api.get(&ca_path(), None).await;
                let ca = api.apply(&ca_path(), None).await;
                assert_eq!(ca["kind"], "Secret");
                assert_eq!(ca["metadata"]["ownerReferences"][0]["uid"], "uid-demo");
                let ca_data = data_of(&ca);
                assert!(ca_data["ca.crt"].contains("BEGIN CERTIFICATE"));
                assert!(ca_data["ca.key"].contains("PRIVATE KEY"));
                api.get(&tls_path(), None).await;
                let tls = api.apply(&tls_path(), None).await;
                assert_eq!(tls["metadata"]["ownerReferences"][0]["kind"], "VssCluster");
                let tls_data = data_of(&tls);
                let keys: Vec<&str> = tls_data.keys().map(String::as_str).collect();
                assert_eq!(
                    keys,
                    [
                        "ca.crt",
                        "demo-0.crt",
                        "demo-0.key",
                        "demo-1.crt",
                        "demo-1.key",
                        "demo-2.crt",
                        "demo-2.key"
                    ]
                );
                assert_eq!(tls_data["ca.crt"], ca_data["ca.crt"]);
                assert!(
                    !tls_data.values().any(|v| v == &ca_data["ca.key"]),
                    "the CA's key stays in its own Secret"
                );
            }
            api.get(&path, None).await;
            let status = (kind == "StatefulSet").then(|| json!({"replicas": 0}));
            let body = api.apply(&path, status).await;
            if kind == "StatefulSet" {
                sts = Some(body);
            }
        }
        let sts = sts.expect("a StatefulSet");
        let pod_spec = &sts["spec"]["template"]["spec"];
        let volume = pod_spec["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == "mesh-tls"))
            .expect("a mesh-tls volume");
        assert_eq!(volume["secret"]["secretName"], "demo-mesh-tls");
        let container = &pod_spec["containers"][0];
        let mount = container["volumeMounts"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == "mesh-tls"))
            .expect("a mesh-tls mount");
        assert!(
            mount.get("subPath").is_none(),
            "a subPath would freeze the files"
        );
        let args: Vec<&str> = container["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let dir = resources::MESH_TLS_DIR;
        for (flag, value) in [
            ("--mesh-tls-cert", format!("{dir}/$(POD_NAME).crt")),
            ("--mesh-tls-key", format!("{dir}/$(POD_NAME).key")),
            ("--mesh-tls-ca", format!("{dir}/ca.crt")),
        ] {
            let at = args.iter().position(|a| *a == flag).expect(flag);
            assert_eq!(args.get(at + 1).copied(), Some(value.as_str()), "{flag}");
        }
        api.event("Applied").await;
        api.list_pods(vec![]).await;
        api.patch_status(&expected).await;
        api
    })
    .await;
}

#[tokio::test]
async fn a_settled_secure_cluster_keeps_its_certificates_and_is_called_over_mtls() {
    let mut c = secure_cluster();
    c.status = Some(settled_status(1));
    let objects = existing(&c);
    let (ca, tls) = existing_secrets(&c);
    let pods = Arc::new(FakePods::at_generation(&PODS, 1));
    let action = run(c, pods.clone(), |mut api| async move {
        for ((kind, path), obj) in owned_paths().into_iter().zip(objects) {
            if kind == "StatefulSet" {
                api.get(&ca_path(), Some(ca.clone())).await;
                api.get(&tls_path(), Some(tls.clone())).await;
            }
            api.get(&path, Some(obj)).await;
        }
        api.list_pods(PODS.iter().map(|p| pod(p, true)).collect())
            .await;
        api
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let calls = pods.calls();
    let expected: Vec<PodCall> = PODS
        .iter()
        .map(|p| PodCall::SecureStatus(address(p), format!("{p}.demo-peers.{NS}.svc")))
        .collect();
    assert_eq!(calls, expected);
}

#[tokio::test]
async fn a_garbage_certificate_is_issued_again_with_a_warning() {
    let mut c = secure_cluster();
    c.status = Some(settled_status(1));
    let objects = existing(&c);
    let (ca, mut tls) = existing_secrets(&c);
    let good = data_of(&tls);
    tls["data"]["demo-1.crt"] = json!("bm90IGEgY2VydGlmaWNhdGU="); // "not a certificate"
    let pods = Arc::new(FakePods::at_generation(&PODS, 1));
    run(c, pods, |mut api| async move {
        for ((kind, path), obj) in owned_paths().into_iter().zip(objects) {
            if kind == "StatefulSet" {
                api.get(&ca_path(), Some(ca.clone())).await;
                api.get(&tls_path(), Some(tls.clone())).await;
                let fixed = data_of(&api.apply(&tls_path(), None).await);
                assert!(fixed["demo-1.crt"].contains("BEGIN CERTIFICATE"));
                assert_ne!(fixed["demo-1.crt"], good["demo-1.crt"]);
                assert_eq!(
                    fixed["demo-0.crt"], good["demo-0.crt"],
                    "good ones are kept"
                );
                let warning = api.event("MeshCertificateInvalid").await;
                assert_eq!(warning["type"], "Warning");
                let note = warning["note"].as_str().unwrap_or_default();
                assert!(note.contains("demo-1: unusable (demo-1.crt:"), "{note}");
            }
            api.get(&path, Some(obj)).await;
        }
        let event = api.event("Applied").await;
        assert!(
            event["note"]
                .as_str()
                .unwrap_or_default()
                .contains("Secret/demo-mesh-tls"),
            "{event}"
        );
        api.list_pods(PODS.iter().map(|p| pod(p, true)).collect())
            .await;
        api
    })
    .await;
}

#[tokio::test]
async fn a_garbage_ca_is_replaced_and_every_pod_certificate_with_it() {
    let mut c = secure_cluster();
    c.status = Some(settled_status(1));
    let objects = existing(&c);
    let (mut ca, tls) = existing_secrets(&c);
    ca["data"]["ca.key"] = json!("Z2FyYmFnZQ=="); // "garbage"
    let pods = Arc::new(FakePods::at_generation(&PODS, 1));
    run(c, pods, |mut api| async move {
        for ((kind, path), obj) in owned_paths().into_iter().zip(objects) {
            if kind == "StatefulSet" {
                api.get(&ca_path(), Some(ca.clone())).await;
                let warning = api.event("MeshCaInvalid").await;
                let note = warning["note"].as_str().unwrap_or_default();
                assert!(note.contains("ca.key"), "{note}");
                let new_ca = data_of(&api.apply(&ca_path(), None).await);
                api.get(&tls_path(), Some(tls.clone())).await;
                let fixed = data_of(&api.apply(&tls_path(), None).await);
                assert_eq!(fixed["ca.crt"], new_ca["ca.crt"]);
                let renewed = api.event("MeshCertificateRenewed").await;
                let note = renewed["note"].as_str().unwrap_or_default();
                assert!(note.contains("not signed by the CA in force"), "{note}");
            }
            api.get(&path, Some(obj)).await;
        }
        api.event("Applied").await;
        api.list_pods(PODS.iter().map(|p| pod(p, true)).collect())
            .await;
        api
    })
    .await;
}

#[test]
fn the_requeue_comes_in_time_for_the_next_renewal() {
    let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let minute = Duration::from_secs(60);
    assert_eq!(until_renewal(minute, None, now), minute);
    assert_eq!(
        until_renewal(minute, Some(now + Duration::from_secs(30)), now),
        Duration::from_secs(30)
    );
    assert_eq!(until_renewal(minute, Some(now + 3 * minute), now), minute);
    assert_eq!(
        until_renewal(minute, Some(now - minute), now),
        Duration::from_secs(1)
    );
}

#[tokio::test]
async fn a_cert_manager_cluster_gets_its_certificates_and_no_pods_until_they_are_issued() {
    let mut c = cluster();
    c.spec.mesh_tls = Some(crate::crd::MeshTls {
        mode: crate::crd::MeshTlsMode::CertManager,
        issuer_ref: Some(crate::crd::IssuerRef {
            name: "mesh-ca".into(),
            kind: Some("ClusterIssuer".into()),
            group: None,
        }),
    });
    let (ctx, mut api) = Context::test(Arc::new(FakePods::default()));
    let reconciling = tokio::spawn(reconcile(Arc::new(c), ctx.clone()));
    for (kind, path) in owned_paths() {
        if kind == "StatefulSet" {
            break;
        }
        api.get(&path, None).await;
        api.apply(&path, None).await;
    }
    let certificates = format!("/apis/cert-manager.io/v1/namespaces/{NS}/certificates");
    let names = [
        "demo-0-mesh",
        "demo-1-mesh",
        "demo-2-mesh",
        "demo-mesh-operator",
    ];
    let not_ready = json!({"conditions": [{"type": "Ready", "status": "False",
        "reason": "DoesNotExist", "message": "Issuing certificate as Secret does not exist"}]});
    let mut applied = Vec::new();
    for name in names {
        let path = format!("{certificates}/{name}");
        api.get(&path, None).await;
        let certificate = api.apply(&path, Some(not_ready.clone())).await;
        assert_eq!(certificate["spec"]["secretName"], name);
        assert_eq!(certificate["spec"]["issuerRef"]["kind"], "ClusterIssuer");
        assert_eq!(
            certificate["metadata"]["ownerReferences"][0]["kind"],
            "VssCluster"
        );
        applied.push(certificate);
    }
    let pod = &applied[1]["spec"];
    assert_eq!(pod["dnsNames"][0], format!("demo-1.demo-peers.{NS}.svc"));
    assert_eq!(
        pod["secretTemplate"]["labels"]["vss.dev/mesh-certificates-of"],
        "demo"
    );
    assert_eq!(applied[3]["spec"]["dnsNames"], json!(["vss-operator"]));
    let query = api.list(&certificates, applied).await;
    assert!(
        query.contains("vss.dev%2Fmesh-certificates-of%3Ddemo"),
        "{query}"
    );
    for name in names {
        api.get(&format!("/api/v1/namespaces/{NS}/secrets/{name}"), None)
            .await;
    }
    api.get(
        &format!("/api/v1/namespaces/{NS}/secrets/demo-mesh-tls"),
        None,
    )
    .await;
    let event = api.event("MeshCertificatesPending").await;
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("demo-0: Secret demo-0-mesh not issued yet (Certificate: DoesNotExist"),
        "{note}"
    );
    let result = tokio::time::timeout(Duration::from_secs(10), reconciling)
        .await
        .expect("reconcile ended")
        .expect("reconcile did not panic");
    match result {
        Err(Error::CertificatesPending { pending, .. }) => {
            assert!(
                pending.contains("vss-operator: Secret demo-mesh-operator not issued yet"),
                "{pending}"
            )
        }
        other => panic!("expected CertificatesPending, got {other:?}"),
    }
    drop(ctx);
    // No StatefulSet, no status: the pods wait for their certificates.
    api.done().await;
}
