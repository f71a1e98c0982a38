use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::*;
use crate::fixtures::{NS, cluster};
use crate::mesh_certs::Ca;

fn issuer() -> IssuerRef {
    IssuerRef {
        name: "mesh-ca".into(),
        kind: None,
        group: None,
    }
}

fn pods() -> Vec<(String, Vec<String>)> {
    ["demo-0", "demo-1"]
        .iter()
        .map(|p| (p.to_string(), mesh_certs::pod_names(p, "demo-peers", NS)))
        .collect()
}

/// A Secret as cert-manager's CA issuer writes it.
fn issued_by(ca: &Ca, who: &str, names: &[String], now: SystemTime) -> BTreeMap<String, Vec<u8>> {
    let leaf = ca.issue_pod(who, names, now).expect("issue");
    BTreeMap::from([
        (TLS_CERT_KEY.to_string(), leaf.cert_pem.into_bytes()),
        (TLS_KEY_KEY.to_string(), leaf.key_pem.into_bytes()),
        (CA_CERT_KEY.to_string(), ca.cert_pem().as_bytes().to_vec()),
    ])
}

fn all_issued(ca: &Ca, now: SystemTime) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    let mut issued: BTreeMap<_, _> = pods()
        .iter()
        .map(|(pod, names)| (pod_certificate_name(pod), issued_by(ca, pod, names, now)))
        .collect();
    issued.insert(
        "demo-mesh-operator".into(),
        issued_by(ca, OPERATOR_NAME, &[OPERATOR_NAME.to_string()], now),
    );
    issued
}

fn as_bytes(data: &BTreeMap<String, String>) -> BTreeMap<String, Vec<u8>> {
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect()
}

#[test]
fn a_certificate_per_pod_and_one_for_the_operator_owned_and_labelled() {
    let mut c = cluster();
    c.spec.instances = 2;
    let certs = certificates(&c, &issuer(), NS);
    let names: Vec<String> = certs.iter().map(|c| c.name_any()).collect();
    assert_eq!(names, ["demo-0-mesh", "demo-1-mesh", "demo-mesh-operator"]);
    let pod = &certs[1];
    assert_eq!(pod.spec.secret_name, "demo-1-mesh");
    assert_eq!(
        pod.spec.dns_names,
        mesh_certs::pod_names("demo-1", "demo-peers", NS)
    );
    assert!(pod.spec.usages.contains(&"server auth".to_string()));
    assert_eq!(pod.spec.issuer_ref.kind.as_deref(), Some("Issuer"));
    assert_eq!(
        pod.spec.issuer_ref.group.as_deref(),
        Some("cert-manager.io")
    );
    assert_eq!(
        pod.labels().get(CLUSTER_LABEL).map(String::as_str),
        Some("demo")
    );
    let template = pod.spec.secret_template.as_ref().expect("secretTemplate");
    assert_eq!(
        template.labels.get(CLUSTER_LABEL).map(String::as_str),
        Some("demo")
    );
    assert_eq!(pod.owner_references().len(), 1, "owned by the VssCluster");
    let operator = &certs[2];
    assert_eq!(operator.spec.dns_names, [OPERATOR_NAME]);
    assert!(!operator.spec.usages.contains(&"server auth".to_string()));
    let json = serde_json::to_value(operator).expect("json");
    assert_eq!(json["apiVersion"], "cert-manager.io/v1");
    assert_eq!(json["spec"]["privateKey"]["rotationPolicy"], "Always");
}

#[test]
fn every_issued_pair_is_gathered_with_the_ca() {
    let now = SystemTime::now();
    let ca = Ca::generate("demo", now).expect("ca");
    let got = gather(
        &pods(),
        "demo-mesh-operator",
        &all_issued(&ca, now),
        &BTreeMap::new(),
        now,
    );
    assert!(got.pending.is_empty(), "{:?}", got.pending);
    let keys: Vec<&str> = got.data.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "ca.crt",
            "demo-0.crt",
            "demo-0.key",
            "demo-1.crt",
            "demo-1.key"
        ]
    );
    assert_eq!(got.data["ca.crt"], ca.cert_pem());
    let op = got.operator.expect("operator pair");
    assert_eq!(op.ca_pem, ca.cert_pem());
    assert!(
        got.next_expiry
            .is_some_and(|t| t > now + Duration::from_secs(86_400))
    );
}

#[test]
fn a_pair_not_issued_yet_is_pending_with_the_reason() {
    let now = SystemTime::now();
    let ca = Ca::generate("demo", now).expect("ca");
    let mut issued = all_issued(&ca, now);
    issued.remove("demo-1-mesh");
    let got = gather(
        &pods(),
        "demo-mesh-operator",
        &issued,
        &BTreeMap::new(),
        now,
    );
    assert_eq!(got.pending.len(), 1);
    assert_eq!(got.pending[0].0, "demo-1");
    assert!(
        got.pending[0].1.contains("not issued yet"),
        "{}",
        got.pending[0].1
    );
    assert!(!got.data.contains_key("demo-1.crt"));
}

#[test]
fn an_unusable_issued_pair_keeps_the_one_gathered_before() {
    let now = SystemTime::now();
    let ca = Ca::generate("demo", now).expect("ca");
    let before = gather(
        &pods(),
        "demo-mesh-operator",
        &all_issued(&ca, now),
        &BTreeMap::new(),
        now,
    );
    let mut issued = all_issued(&ca, now);
    issued
        .get_mut("demo-0-mesh")
        .expect("issued")
        .insert(TLS_CERT_KEY.into(), b"garbage".to_vec());
    let got = gather(
        &pods(),
        "demo-mesh-operator",
        &issued,
        &as_bytes(&before.data),
        now,
    );
    assert!(got.pending.is_empty(), "{:?}", got.pending);
    assert_eq!(got.kept.len(), 1);
    assert_eq!(got.kept[0].0, "demo-0");
    assert_eq!(got.data["demo-0.crt"], before.data["demo-0.crt"]);
    assert_ne!(
        got.data["demo-1.crt"], before.data["demo-1.crt"],
        "demo-1 takes the new pair"
    );
}

#[test]
fn an_issuer_without_ca_crt_is_named_as_the_reason() {
    let now = SystemTime::now();
    let ca = Ca::generate("demo", now).expect("ca");
    let mut issued = all_issued(&ca, now);
    for data in issued.values_mut() {
        data.remove(CA_CERT_KEY);
    }
    let got = gather(
        &pods(),
        "demo-mesh-operator",
        &issued,
        &BTreeMap::new(),
        now,
    );
    assert_eq!(got.pending.len(), 3);
    assert!(
        got.pending[0].1.contains("does not give its CA"),
        "{}",
        got.pending[0].1
    );
    assert!(got.operator.is_none());
}

#[test]
fn a_certificate_that_does_not_name_its_pod_is_refused() {
    let now = SystemTime::now();
    let ca = Ca::generate("demo", now).expect("ca");
    let mut issued = all_issued(&ca, now);
    // demo-0's Secret holds demo-1's certificate.
    let other = issued["demo-1-mesh"].clone();
    issued.insert("demo-0-mesh".into(), other);
    let got = gather(
        &pods(),
        "demo-mesh-operator",
        &issued,
        &BTreeMap::new(),
        now,
    );
    assert_eq!(got.pending.len(), 1);
    assert!(
        got.pending[0].1.contains("does not name demo-0"),
        "{}",
        got.pending[0].1
    );
}

#[test]
fn pairs_of_two_cas_put_both_in_the_bundle() {
    let now = SystemTime::now();
    let (old, new) = (
        Ca::generate("demo", now).expect("ca"),
        Ca::generate("demo", now).expect("ca"),
    );
    let mut issued = all_issued(&old, now);
    let (pod, names) = &pods()[1];
    issued.insert(pod_certificate_name(pod), issued_by(&new, pod, names, now));
    let got = gather(
        &pods(),
        "demo-mesh-operator",
        &issued,
        &BTreeMap::new(),
        now,
    );
    assert!(got.pending.is_empty(), "{:?}", got.pending);
    let bundle = &got.data["ca.crt"];
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "{bundle}");
    assert!(bundle.contains(old.cert_pem().trim()) && bundle.contains(new.cert_pem().trim()));
}
