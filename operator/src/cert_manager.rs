//! `spec.meshTls.mode: CertManager`: the cert-manager `Certificate`s the
//! operator asks for (one per pod, one for itself), and how what
//! cert-manager issues is gathered into `<name>-mesh-tls`, the Secret the
//! pods mount in every mode.
//!
//! cert-manager writes each Certificate's pair to a Secret of its own. A
//! StatefulSet mounts the same volumes in every pod, and naming every
//! pod's Secret in the template would roll every pod on each scale, so the
//! operator copies each pod's pair under `<pod>.crt` / `<pod>.key` into one
//! Secret, as in `Operator` mode. What is read back is checked (it parses,
//! the key is the certificate's, it names the pod, it is valid now); a
//! pair that fails is left out and the one gathered before is kept while
//! it is still valid, so a Secret deleted by hand costs nothing while
//! cert-manager issues it again. `ca.crt` holds every distinct CA of the
//! pairs in use, so during a change of CA the pods trust both sides.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};

use crate::crd::{IssuerRef, VssCluster};
use crate::mesh_certs::{self, CA_CERT_KEY, CertError, cert_key, key_key};
use crate::resources;

/// Label on the Certificates of a cluster and, through their
/// `secretTemplate`, on the Secrets cert-manager writes: its value is the
/// VssCluster's name, so the operator can find and watch both.
pub const CLUSTER_LABEL: &str = "vss.dev/mesh-certificates-of";
/// Keys of a `kubernetes.io/tls` Secret as cert-manager writes it.
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
/// The name in the operator's certificate, as in `Operator` mode.
pub const OPERATOR_NAME: &str = "vss-operator";
/// Lifetime and renewal asked of cert-manager: as in `Operator` mode,
/// 30 days, renewed with a third left.
const DURATION: &str = "720h";
const RENEW_BEFORE: &str = "240h";

/// The fields of cert-manager's `Certificate` (cert-manager.io/v1) the
/// operator sets and reads; the server keeps the others as they are.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "Certificate",
    namespaced,
    status = "CertificateStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    pub secret_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    #[serde(default)]
    pub dns_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKey>,
    #[serde(default)]
    pub usages: Vec<String>,
    pub issuer_ref: CertificateIssuerRef,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretTemplate {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_policy: Option<String>,
}

/// `spec.issuerRef` as cert-manager reads it (kind and group defaulted by
/// the operator, so what it writes is what it compares).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct CertificateIssuerRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    #[serde(default)]
    pub conditions: Vec<CertificateCondition>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct CertificateCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

impl Certificate {
    /// Why cert-manager has not issued it yet, from its `Ready` condition.
    pub fn not_ready_because(&self) -> Option<String> {
        let ready = self
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.status != "True").then(|| {
            format!(
                "{}: {}",
                ready.reason.as_deref().unwrap_or("NotReady"),
                ready.message.as_deref().unwrap_or("no message")
            )
        })
    }
}

/// The Certificate (and its Secret) of a pod.
pub fn pod_certificate_name(pod: &str) -> String {
    format!("{pod}-mesh")
}

/// The Certificate (and its Secret) of the operator's client certificate
/// for `cluster`.
pub fn operator_certificate_name(cluster: &VssCluster) -> String {
    format!("{}-mesh-operator", cluster.name_any())
}

/// The Certificates a cluster wants: one per pod (server and client auth:
/// a pod is both to its peers) and the operator's (client auth).
pub fn certificates(cluster: &VssCluster, issuer: &IssuerRef, ns: &str) -> Vec<Certificate> {
    let mut out: Vec<Certificate> = mesh_certs::cluster_pod_names(cluster, ns)
        .into_iter()
        .map(|(pod, names)| {
            certificate(
                cluster,
                &pod_certificate_name(&pod),
                &pod,
                names,
                &["digital signature", "server auth", "client auth"],
                issuer,
            )
        })
        .collect();
    out.push(certificate(
        cluster,
        &operator_certificate_name(cluster),
        OPERATOR_NAME,
        vec![OPERATOR_NAME.to_string()],
        &["digital signature", "client auth"],
        issuer,
    ));
    out
}

fn certificate(
    cluster: &VssCluster,
    name: &str,
    common_name: &str,
    dns_names: Vec<String>,
    usages: &[&str],
    issuer: &IssuerRef,
) -> Certificate {
    let owned = resources::owned_meta(cluster, name);
    let mut labels = owned.labels.clone().unwrap_or_default();
    labels.insert(CLUSTER_LABEL.to_string(), cluster.name_any());
    let metadata = ObjectMeta {
        labels: Some(labels),
        ..owned
    };
    Certificate {
        metadata,
        spec: CertificateSpec {
            secret_name: name.to_string(),
            secret_template: Some(SecretTemplate {
                labels: BTreeMap::from([(CLUSTER_LABEL.to_string(), cluster.name_any())]),
            }),
            common_name: Some(common_name.to_string()),
            dns_names,
            duration: Some(DURATION.into()),
            renew_before: Some(RENEW_BEFORE.into()),
            private_key: Some(PrivateKey {
                algorithm: Some("ECDSA".into()),
                size: Some(256),
                encoding: Some("PKCS8".into()),
                rotation_policy: Some("Always".into()),
            }),
            usages: usages.iter().map(|u| u.to_string()).collect(),
            issuer_ref: CertificateIssuerRef {
                name: issuer.name.clone(),
                kind: Some(issuer.kind.clone().unwrap_or_else(|| "Issuer".into())),
                group: Some(
                    issuer
                        .group
                        .clone()
                        .unwrap_or_else(|| "cert-manager.io".into()),
                ),
            },
        },
        status: None,
    }
}

/// What one pass made of the issued Secrets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Gathered {
    /// `<name>-mesh-tls`'s data: `<pod>.crt`, `<pod>.key` per pod whose
    /// pair is usable, and `ca.crt`, the CAs of the pairs in use.
    pub data: BTreeMap<String, String>,
    /// The operator's pair and the CA bundle, when its pair is usable.
    pub operator: Option<OperatorPair>,
    /// Who has no usable pair (a pod's name or [`OPERATOR_NAME`]) and why.
    pub pending: Vec<(String, String)>,
    /// Pods whose issued pair is unusable (or gone) and whose pair
    /// gathered before was kept, and why.
    pub kept: Vec<(String, String)>,
    /// The earliest expiry of a pair in use.
    pub next_expiry: Option<SystemTime>,
}

/// The operator's client certificate for a cluster's pods.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorPair {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for OperatorPair {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorPair").finish_non_exhaustive()
    }
}

/// A CA certificate: its DER (to tell CAs apart) and its PEM block.
type CaBlock = (Vec<u8>, String);

/// An issued pair that passed the checks.
struct Pair {
    cert_pem: String,
    key_pem: String,
    cas: Vec<CaBlock>,
    expires: SystemTime,
}

/// One issued pair, checked; `Err` says why it cannot be used.
fn usable(
    secret: &str,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    names: &[String],
    now: SystemTime,
) -> Result<Pair, String> {
    let data = data.ok_or_else(|| format!("Secret {secret} not issued yet"))?;
    let get = |key: &str| {
        data.get(key)
            .ok_or_else(|| format!("Secret {secret} has no {key}"))
    };
    let (cert, key) = (get(TLS_CERT_KEY)?, get(TLS_KEY_KEY)?);
    let ca = get(CA_CERT_KEY).map_err(|e| {
        format!("{e}: its issuer does not give its CA, which the pods must trust (use a CA or Vault issuer)")
    })?;
    let describe = |e: CertError| format!("Secret {secret}: {e}");
    let expires = mesh_certs::check_issued_pair(TLS_CERT_KEY, cert, TLS_KEY_KEY, key, names, now)
        .map_err(describe)?;
    let cas = mesh_certs::ca_blocks(CA_CERT_KEY, ca).map_err(describe)?;
    // check_issued_pair parsed both as UTF-8.
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(Pair {
        cert_pem: text(cert),
        key_pem: text(key),
        cas,
        expires,
    })
}

/// Gathers the pairs of `pods` (name and the DNS names its certificate
/// must carry) and the operator's from `issued` (Secret name → data, only
/// the Secrets that exist), keeping from `current` (`<name>-mesh-tls` as
/// it is) a pod's earlier pair while its issued one is not usable.
pub fn gather(
    pods: &[(String, Vec<String>)],
    operator_secret: &str,
    issued: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    current: &BTreeMap<String, Vec<u8>>,
    now: SystemTime,
) -> Gathered {
    let mut out = Gathered::default();
    let mut cas: Vec<CaBlock> = Vec::new();
    let add_cas = |found: Vec<CaBlock>, cas: &mut Vec<CaBlock>| {
        for (der, pem) in found {
            if !cas.iter().any(|(d, _)| *d == der) {
                cas.push((der, pem));
            }
        }
    };
    let expiry = |t: SystemTime, out: &mut Gathered| {
        out.next_expiry = Some(out.next_expiry.map_or(t, |e| e.min(t)));
    };
    let earlier_cas = current
        .get(CA_CERT_KEY)
        .and_then(|t| mesh_certs::ca_blocks(CA_CERT_KEY, t).ok())
        .unwrap_or_default();
    for (pod, names) in pods {
        let secret = pod_certificate_name(pod);
        match usable(&secret, issued.get(&secret), names, now) {
            Ok(pair) => {
                add_cas(pair.cas, &mut cas);
                expiry(pair.expires, &mut out);
                out.data.insert(cert_key(pod), pair.cert_pem);
                out.data.insert(key_key(pod), pair.key_pem);
            }
            Err(why) => {
                let (ck, kk) = (cert_key(pod), key_key(pod));
                let earlier = match (current.get(&ck), current.get(&kk)) {
                    (Some(c), Some(k)) => {
                        mesh_certs::check_issued_pair(&ck, c, &kk, k, names, now).ok()
                    }
                    _ => None,
                };
                match earlier {
                    // Its CA is among the earlier bundle's; keep them all
                    // rather than work out which.
                    Some(expires) if !earlier_cas.is_empty() => {
                        add_cas(earlier_cas.clone(), &mut cas);
                        expiry(expires, &mut out);
                        let text = |k: &str| {
                            current
                                .get(k)
                                .map(|b| String::from_utf8_lossy(b).into_owned())
                                .unwrap_or_default()
                        };
                        out.data.insert(ck.clone(), text(&ck));
                        out.data.insert(kk.clone(), text(&kk));
                        out.kept.push((pod.clone(), why));
                    }
                    _ => out.pending.push((pod.clone(), why)),
                }
            }
        }
    }
    match usable(
        operator_secret,
        issued.get(operator_secret),
        &[OPERATOR_NAME.to_string()],
        now,
    ) {
        Ok(pair) => {
            add_cas(pair.cas, &mut cas);
            expiry(pair.expires, &mut out);
            out.operator = Some(OperatorPair {
                cert_pem: pair.cert_pem,
                key_pem: pair.key_pem,
                ca_pem: String::new(),
            });
        }
        Err(why) => out.pending.push((OPERATOR_NAME.to_string(), why)),
    }
    let bundle: String = cas.into_iter().map(|(_, pem)| pem).collect();
    if let Some(op) = out.operator.as_mut() {
        op.ca_pem = bundle.clone();
    }
    if !bundle.is_empty() {
        out.data.insert(CA_CERT_KEY.to_string(), bundle);
    }
    out
}

#[cfg(test)]
mod tests;
