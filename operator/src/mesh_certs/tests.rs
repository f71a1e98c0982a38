//! Issuance, read-back and the renewal decision, at chosen times.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn names(pod: &str) -> Vec<String> {
    pod_names(pod, "demo-peers", "testns")
}

fn pods(list: &[&str]) -> Vec<(String, Vec<String>)> {
    list.iter().map(|p| (p.to_string(), names(p))).collect()
}

fn bytes(data: &BTreeMap<String, String>) -> BTreeMap<String, Vec<u8>> {
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect()
}

fn der(pem: &str) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate")
}

/// webpki, as rustls in the runtime uses it, accepts `leaf` from `ca` for
/// `name` at `at`.
fn webpki_accepts(ca: &Ca, leaf: &str, name: &str, at: SystemTime) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(ca.cert_pem())).expect("root");
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier");
    let name = ServerName::try_from(name.to_string()).expect("name");
    let seconds = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch");
    verifier
        .verify_server_cert(
            &der(leaf),
            &[],
            &name,
            &[],
            UnixTime::since_unix_epoch(seconds),
        )
        .is_ok()
}

#[test]
fn pod_names_are_the_headless_service_forms_and_the_pod() {
    assert_eq!(
        names("demo-1"),
        [
            "demo-1.demo-peers.testns.svc",
            "demo-1.demo-peers.testns.svc.cluster.local",
            "demo-1"
        ]
    );
}

#[test]
fn a_pod_certificate_names_the_pod_and_is_trusted_for_its_life() {
    let ca = Ca::generate("demo", t0()).expect("CA");
    let leaf = ca
        .issue_pod("demo-1", &names("demo-1"), t0())
        .expect("leaf");
    assert_eq!(leaf.not_after, t0() + LEAF_LIFETIME);
    for name in names("demo-1") {
        assert!(webpki_accepts(&ca, &leaf.cert_pem, &name, t0()), "{name}");
    }
    assert!(!webpki_accepts(
        &ca,
        &leaf.cert_pem,
        "demo-2.demo-peers.testns.svc",
        t0()
    ));
    assert!(webpki_accepts(
        &ca,
        &leaf.cert_pem,
        "demo-1",
        t0() + 29 * DAY
    ));
    assert!(!webpki_accepts(
        &ca,
        &leaf.cert_pem,
        "demo-1",
        t0() + 31 * DAY
    ));
    // Backdated: a node whose clock is a minute behind accepts it.
    assert!(webpki_accepts(
        &ca,
        &leaf.cert_pem,
        "demo-1",
        t0() - Duration::from_secs(60)
    ));
}

#[test]
fn the_ca_reads_back_from_its_secret_and_keeps_signing() {
    let ca = Ca::generate("demo", t0()).expect("CA");
    let back = Ca::from_secret(&bytes(&ca.secret_data()), t0() + DAY).expect("reads back");
    assert_eq!(back.cert_pem(), ca.cert_pem());
    let leaf = back
        .issue_pod("demo-0", &names("demo-0"), t0())
        .expect("leaf");
    assert!(webpki_accepts(&ca, &leaf.cert_pem, "demo-0", t0()));
}

#[test]
fn a_garbage_ca_secret_is_refused_naming_the_key() {
    let ca = Ca::generate("demo", t0()).expect("CA");
    let mut data = bytes(&ca.secret_data());
    data.insert(CA_CERT_KEY.into(), b"hello".to_vec());
    let e = Ca::from_secret(&data, t0()).expect_err("garbage");
    assert!(e.to_string().starts_with("ca.crt:"), "{e}");

    let mut data = bytes(&ca.secret_data());
    let other = Ca::generate("other", t0()).expect("CA");
    data.insert(
        CA_KEY_KEY.into(),
        other.secret_data()[CA_KEY_KEY].as_bytes().to_vec(),
    );
    let e = Ca::from_secret(&data, t0()).expect_err("someone else's key");
    assert!(e.to_string().contains("ca.key"), "{e}");

    let mut data = bytes(&ca.secret_data());
    data.remove(CA_KEY_KEY);
    let e = Ca::from_secret(&data, t0()).expect_err("no key");
    assert_eq!(e.to_string(), "ca.key: missing");
}

#[test]
fn a_leaf_is_not_taken_for_a_ca() {
    let ca = Ca::generate("demo", t0()).expect("CA");
    let leaf = ca
        .issue_pod("demo-0", &names("demo-0"), t0())
        .expect("leaf");
    let data = BTreeMap::from([
        (CA_CERT_KEY.to_string(), leaf.cert_pem.into_bytes()),
        (CA_KEY_KEY.to_string(), leaf.key_pem.into_bytes()),
    ]);
    let e = Ca::from_secret(&data, t0()).expect_err("a leaf");
    assert!(e.to_string().contains("not a CA"), "{e}");
}

#[test]
fn renewal_is_due_when_a_third_of_the_life_is_left() {
    let from = t0();
    let until = t0() + 30 * DAY;
    assert_eq!(
        renewal_due(from, until, t0() + 19 * DAY),
        Verdict::Keep {
            renew_at: t0() + 20 * DAY
        }
    );
    assert_eq!(
        renewal_due(from, until, t0() + 20 * DAY),
        Verdict::Renew(Renewal::Expiring)
    );
    assert_eq!(
        renewal_due(from, until, t0() + 40 * DAY),
        Verdict::Renew(Renewal::Expiring)
    );
    assert_eq!(
        renewal_due(from, until, t0() - DAY),
        Verdict::Renew(Renewal::Expiring),
        "not valid yet"
    );
}

#[test]
fn a_new_cluster_gets_a_certificate_per_pod_and_the_ca() {
    let ca = Ca::generate("demo", t0()).expect("CA");
    let certs =
        pod_certs(&ca, &BTreeMap::new(), &pods(&["demo-0", "demo-1"]), t0()).expect("certs");
    let keys: Vec<&str> = certs.data.keys().map(String::as_str).collect();
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
    assert_eq!(certs.data["ca.crt"], ca.cert_pem());
    assert_eq!(
        certs.issued,
        [
            ("demo-0".to_string(), Renewal::Missing),
            ("demo-1".to_string(), Renewal::Missing)
        ]
    );
    // Renewed at two thirds of the life counted from the backdated start.
    let life = LEAF_LIFETIME + BACKDATE;
    assert_eq!(certs.next_renewal, Some(t0() + LEAF_LIFETIME - life / 3));
}

#[test]
fn good_certificates_are_kept_as_they_are() {
    let ca = Ca::generate("demo", t0()).expect("CA");
    let set = pods(&["demo-0", "demo-1"]);
    let first = pod_certs(&ca, &BTreeMap::new(), &set, t0()).expect("certs");
    let again = pod_certs(&ca, &bytes(&first.data), &set, t0() + DAY).expect("certs");
    assert!(again.issued.is_empty(), "{:?}", again.issued);
    assert_eq!(again.data, first.data);
}

#[test]
fn certificates_are_renewed_before_expiry() {
    let ca = Ca::generate("demo", t0()).expect("CA");
    let set = pods(&["demo-0"]);
    let first = pod_certs(&ca, &BTreeMap::new(), &set, t0()).expect("certs");
    let later = t0() + 21 * DAY;
    let renewed = pod_certs(&ca, &bytes(&first.data), &set, later).expect("certs");
    assert_eq!(renewed.issued, [("demo-0".to_string(), Renewal::Expiring)]);
    assert_ne!(renewed.data["demo-0.crt"], first.data["demo-0.crt"]);
    assert!(webpki_accepts(
        &ca,
        &renewed.data["demo-0.crt"],
        "demo-0",
        later + 25 * DAY
    ));
}

#[test]
fn scaling_issues_for_new_pods_and_drops_gone_ones() {
    let ca = Ca::generate("demo", t0()).expect("CA");
    let first =
        pod_certs(&ca, &BTreeMap::new(), &pods(&["demo-0", "demo-1"]), t0()).expect("certs");
    let up = pod_certs(
        &ca,
        &bytes(&first.data),
        &pods(&["demo-0", "demo-1", "demo-2"]),
        t0(),
    )
    .expect("certs");
    assert_eq!(up.issued, [("demo-2".to_string(), Renewal::Missing)]);
    let down = pod_certs(&ca, &bytes(&up.data), &pods(&["demo-0"]), t0()).expect("certs");
    assert!(down.issued.is_empty());
    assert!(!down.data.contains_key("demo-1.crt") && !down.data.contains_key("demo-2.key"));
}

#[test]
fn a_changed_name_or_another_ca_reissues() {
    let ca = Ca::generate("demo", t0()).expect("CA");
    let first = pod_certs(&ca, &BTreeMap::new(), &pods(&["demo-0"]), t0()).expect("certs");
    let moved = vec![(
        "demo-0".to_string(),
        pod_names("demo-0", "demo-peers", "elsewhere"),
    )];
    let renamed = pod_certs(&ca, &bytes(&first.data), &moved, t0()).expect("certs");
    assert_eq!(
        renamed.issued,
        [(
            "demo-0".to_string(),
            Renewal::Names("demo-0.demo-peers.elsewhere.svc".into())
        )]
    );
    let new_ca = Ca::generate("demo", t0()).expect("CA");
    let rekeyed = pod_certs(&new_ca, &bytes(&first.data), &pods(&["demo-0"]), t0()).expect("certs");
    assert_eq!(rekeyed.issued, [("demo-0".to_string(), Renewal::OtherCa)]);
    assert_eq!(rekeyed.data["ca.crt"], new_ca.cert_pem());
}

#[test]
fn a_garbage_secret_is_replaced_not_trusted() {
    let ca = Ca::generate("demo", t0()).expect("CA");
    let first =
        pod_certs(&ca, &BTreeMap::new(), &pods(&["demo-0", "demo-1"]), t0()).expect("certs");
    let mut data = bytes(&first.data);
    data.insert(
        "demo-0.crt".into(),
        b"-----BEGIN CERTIFICATE-----\nnope\n".to_vec(),
    );
    data.insert("demo-1.key".into(), vec![0xff, 0xfe, 0x00]);
    let fixed = pod_certs(&ca, &data, &pods(&["demo-0", "demo-1"]), t0()).expect("certs");
    assert_eq!(fixed.issued.len(), 2, "{:?}", fixed.issued);
    for (pod, why) in &fixed.issued {
        assert!(matches!(why, Renewal::Unusable(_)), "{pod}: {why}");
    }
    let Renewal::Unusable(why) = &fixed.issued[0].1 else {
        unreachable!()
    };
    assert!(why.starts_with("demo-0.crt:"), "{why}");
    let Renewal::Unusable(why) = &fixed.issued[1].1 else {
        unreachable!()
    };
    assert!(why.starts_with("demo-1.key:"), "{why}");
    // A certificate with another pod's key.
    let mut data = bytes(&fixed.data);
    data.insert("demo-0.key".into(), data["demo-1.key"].clone());
    let fixed = pod_certs(&ca, &data, &pods(&["demo-0", "demo-1"]), t0()).expect("certs");
    assert_eq!(fixed.issued.len(), 1);
    assert!(
        fixed.issued[0]
            .1
            .to_string()
            .contains("is not the key of demo-0.crt")
    );
}

#[test]
fn the_operator_certificate_is_a_client_certificate_of_the_ca() {
    let ca = Ca::generate("demo", t0()).expect("CA");
    let leaf = ca.issue_operator(t0()).expect("leaf");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(ca.cert_pem())).expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier");
    let seconds = t0()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch");
    verifier
        .verify_client_cert(
            &der(&leaf.cert_pem),
            &[],
            UnixTime::since_unix_epoch(seconds),
        )
        .expect("a client certificate of the cluster's CA");
}
