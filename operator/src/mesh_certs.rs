//! The certificates of a cluster's mesh port: one CA per cluster, one
//! certificate per pod, and the operator's own client certificate, as
//! plain functions of what the Secrets hold and the time.
//!
//! The CA is made once and lives [`CA_LIFETIME`]; it is never rotated by
//! the operator (see docs/security.md for doing it by hand), only replaced
//! when its Secret no longer holds a usable CA. Pod certificates live
//! [`LEAF_LIFETIME`] and are issued again when less than a third of their
//! life is left, when their names change, when they were not signed by the
//! CA in force, or when what the Secret holds does not parse: anything
//! read back is checked, never trusted, so a Secret edited by hand costs a
//! re-issue, not a crash. The runtime re-reads the mounted files by
//! itself, so renewal needs no restart.
//!
//! Keys are ECDSA P-256 (rcgen's default); certificates are backdated by
//! [`BACKDATE`] so a node whose clock is a little behind the operator's
//! accepts them at once.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// Secret keys of the CA (`<cluster>-mesh-ca`) and the CA's copy beside the
/// pod certificates (`<cluster>-mesh-tls`).
pub const CA_CERT_KEY: &str = "ca.crt";
/// Secret key of the CA's private key (`<cluster>-mesh-ca` only).
pub const CA_KEY_KEY: &str = "ca.key";
/// How long a cluster's CA is valid: ten years.
pub const CA_LIFETIME: Duration = Duration::from_secs(3650 * 86_400);
/// How long a pod's (and the operator's) certificate is valid: 30 days.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
/// How far back a certificate's notBefore is set.
pub const BACKDATE: Duration = Duration::from_secs(300);

/// The Secret key of a pod's certificate.
pub fn cert_key(pod: &str) -> String {
    format!("{pod}.crt")
}

/// The Secret key of a pod's private key.
pub fn key_key(pod: &str) -> String {
    format!("{pod}.key")
}

/// Why certificates cannot be read or made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// What a Secret holds under `key` is not usable.
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    /// rcgen refused to make a certificate (a name it cannot encode).
    #[error("cannot issue {what}: {source}")]
    Issue { what: String, source: rcgen::Error },
}

fn invalid(key: &str, reason: impl std::fmt::Display) -> CertError {
    CertError::Invalid {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// A cluster's CA: what signs its pods' and the operator's certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
    key_pem: String,
}

impl std::fmt::Debug for Ca {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A certificate and its key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// When it expires.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

fn unix(seconds: i64) -> SystemTime {
    match u64::try_from(seconds) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// The one certificate of a PEM text, parsed.
fn parse_cert<'a>(
    key: &str,
    pem: &'a x509_parser::pem::Pem,
) -> Result<X509Certificate<'a>, CertError> {
    pem.parse_x509()
        .map_err(|e| invalid(key, format!("not an X.509 certificate: {e}")))
}

fn read_pem(key: &str, text: &[u8]) -> Result<x509_parser::pem::Pem, CertError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(text)
        .map_err(|e| invalid(key, format!("no PEM certificate: {e}")))?;
    Ok(pem)
}

fn read_key(key: &str, text: &[u8]) -> Result<KeyPair, CertError> {
    let text = std::str::from_utf8(text).map_err(|_| invalid(key, "not UTF-8 text"))?;
    KeyPair::from_pem(text).map_err(|e| invalid(key, format!("no usable private key: {e}")))
}

/// The certificate of `pem`, refused unless `key_text` is its key.
fn parse_pair<'a>(
    cert_key: &str,
    pem: &'a x509_parser::pem::Pem,
    key_key: &str,
    key_text: &[u8],
) -> Result<X509Certificate<'a>, CertError> {
    let cert = parse_cert(cert_key, pem)?;
    let key = read_key(key_key, key_text)?;
    if !key_matches(&cert, &key) {
        return Err(invalid(key_key, format!("is not the key of {cert_key}")));
    }
    Ok(cert)
}

/// Whether `cert` carries the public half of `key`.
fn key_matches(cert: &X509Certificate<'_>, key: &KeyPair) -> bool {
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

impl Ca {
    /// A new CA for `cluster` (its name, for people reading certificates).
    pub fn generate(cluster: &str, now: SystemTime) -> Result<Self, CertError> {
        let issue = |source| CertError::Issue {
            what: format!("the mesh CA of {cluster}"),
            source,
        };
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("vss mesh CA of {cluster}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = offset(now - BACKDATE);
        params.not_after = offset(now + CA_LIFETIME);
        let key = KeyPair::generate().map_err(issue)?;
        let cert = params.self_signed(&key).map_err(issue)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA kept in a Secret's `ca.crt` and `ca.key`. Refuses anything
    /// that is not a CA certificate valid `now` with its own key.
    pub fn from_secret(
        data: &BTreeMap<String, Vec<u8>>,
        now: SystemTime,
    ) -> Result<Self, CertError> {
        let cert_text = data
            .get(CA_CERT_KEY)
            .ok_or_else(|| invalid(CA_CERT_KEY, "missing"))?;
        let key_text = data
            .get(CA_KEY_KEY)
            .ok_or_else(|| invalid(CA_KEY_KEY, "missing"))?;
        let pem = read_pem(CA_CERT_KEY, cert_text)?;
        let cert = parse_cert(CA_CERT_KEY, &pem)?;
        if !cert.is_ca() {
            return Err(invalid(CA_CERT_KEY, "not a CA certificate"));
        }
        let validity = cert.validity();
        let now_s = offset(now).unix_timestamp();
        if now_s < validity.not_before.timestamp() || now_s > validity.not_after.timestamp() {
            return Err(invalid(CA_CERT_KEY, "expired or not yet valid"));
        }
        let key = read_key(CA_KEY_KEY, key_text)?;
        if !key_matches(&cert, &key) {
            return Err(invalid(CA_KEY_KEY, "is not the key of ca.crt"));
        }
        // Kept as written, so reading it back is no change to the Secret.
        let key_pem = String::from_utf8(key_text.clone())
            .map_err(|_| invalid(CA_KEY_KEY, "not UTF-8 text"))?;
        let cert_der = pem.contents.clone();
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key)
            .map_err(|e| invalid(CA_CERT_KEY, format!("unusable as an issuer: {e}")))?;
        let cert_pem = String::from_utf8(cert_text.clone())
            .map_err(|_| invalid(CA_CERT_KEY, "not UTF-8 text"))?;
        Ok(Self {
            issuer,
            cert_pem,
            cert_der,
            key_pem,
        })
    }

    /// What the CA Secret holds.
    pub fn secret_data(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (CA_CERT_KEY.to_string(), self.cert_pem.clone()),
            (CA_KEY_KEY.to_string(), self.key_pem.clone()),
        ])
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// A pod's certificate: server and client auth (a pod is both to its
    /// peers), for `names` (DNS SANs).
    pub fn issue_pod(
        &self,
        pod: &str,
        names: &[String],
        now: SystemTime,
    ) -> Result<Leaf, CertError> {
        self.issue(
            pod,
            names,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            now,
        )
    }

    /// The operator's client certificate for this cluster's pods.
    pub fn issue_operator(&self, now: SystemTime) -> Result<Leaf, CertError> {
        self.issue(
            "vss-operator",
            &["vss-operator".to_string()],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            now,
        )
    }

    fn issue(
        &self,
        who: &str,
        names: &[String],
        usages: Vec<ExtendedKeyUsagePurpose>,
        now: SystemTime,
    ) -> Result<Leaf, CertError> {
        let issue = |source| CertError::Issue {
            what: format!("a certificate for {who}"),
            source,
        };
        let mut params = CertificateParams::new(names.to_vec()).map_err(issue)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, who);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.use_authority_key_identifier_extension = true;
        params.not_before = offset(now - BACKDATE);
        let not_after = now + LEAF_LIFETIME;
        params.not_after = offset(not_after);
        let key = KeyPair::generate().map_err(issue)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(issue)?;
        // The encoded time has whole seconds; report what the certificate
        // says.
        let not_after = unix(offset(not_after).unix_timestamp());
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after,
        })
    }

    /// Whether the certificate and key under `pod`'s keys in `data` can
    /// stay: signed by this CA, its key, every one of `names`, and more
    /// than a third of its life left at `now`.
    pub fn check_pod(
        &self,
        data: &BTreeMap<String, Vec<u8>>,
        pod: &str,
        names: &[String],
        now: SystemTime,
    ) -> Verdict {
        let (cert_key, key_key) = (cert_key(pod), key_key(pod));
        let (Some(cert_text), Some(key_text)) = (data.get(&cert_key), data.get(&key_key)) else {
            return Verdict::Renew(Renewal::Missing);
        };
        match self.check_leaf(&cert_key, cert_text, &key_key, key_text, names, now) {
            Ok(verdict) => verdict,
            Err(e) => Verdict::Renew(Renewal::Unusable(e.to_string())),
        }
    }

    fn check_leaf(
        &self,
        cert_key: &str,
        cert_text: &[u8],
        key_key: &str,
        key_text: &[u8],
        names: &[String],
        now: SystemTime,
    ) -> Result<Verdict, CertError> {
        let pem = read_pem(cert_key, cert_text)?;
        let cert = parse_pair(cert_key, &pem, key_key, key_text)?;
        let ca_pem = read_pem(CA_CERT_KEY, self.cert_pem.as_bytes())?;
        let ca = parse_cert(CA_CERT_KEY, &ca_pem)?;
        if cert.verify_signature(Some(ca.public_key())).is_err() {
            return Ok(Verdict::Renew(Renewal::OtherCa));
        }
        let held = dns_names(cert_key, &cert)?;
        if let Some(missing) = names.iter().find(|n| !held.contains(&n.as_str())) {
            return Ok(Verdict::Renew(Renewal::Names(missing.clone())));
        }
        let validity = cert.validity();
        let (from, until) = (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        );
        Ok(renewal_due(unix(from), unix(until), now))
    }
}

fn dns_names<'a>(key: &str, cert: &X509Certificate<'a>) -> Result<Vec<&'a str>, CertError> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => Ok(san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(*d),
                _ => None,
            })
            .collect()),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(invalid(key, format!("bad subjectAltName: {e}"))),
    }
}

/// Checks a pair someone else issued (cert-manager): the first certificate
/// of `cert_text` parses, `key_text` is its key, it names every one of
/// `names` and it is valid at `now`. Returns when it expires.
pub fn check_issued_pair(
    cert_key: &str,
    cert_text: &[u8],
    key_key: &str,
    key_text: &[u8],
    names: &[String],
    now: SystemTime,
) -> Result<SystemTime, CertError> {
    let pem = read_pem(cert_key, cert_text)?;
    let cert = parse_pair(cert_key, &pem, key_key, key_text)?;
    let held = dns_names(cert_key, &cert)?;
    if let Some(missing) = names.iter().find(|n| !held.contains(&n.as_str())) {
        return Err(invalid(cert_key, format!("does not name {missing}")));
    }
    let validity = cert.validity();
    let now_s = offset(now).unix_timestamp();
    if now_s < validity.not_before.timestamp() {
        return Err(invalid(cert_key, "not yet valid"));
    }
    if now_s >= validity.not_after.timestamp() {
        return Err(invalid(cert_key, "expired"));
    }
    Ok(unix(validity.not_after.timestamp()))
}

/// The CA certificates of a `ca.crt` (one or more PEM blocks), each as a
/// normalised PEM block; refuses text with none or one that does not parse.
pub fn ca_blocks(key: &str, text: &[u8]) -> Result<Vec<(Vec<u8>, String)>, CertError> {
    let text = std::str::from_utf8(text).map_err(|_| invalid(key, "not UTF-8 text"))?;
    let mut blocks = Vec::new();
    let mut rest = text;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start..];
        let end = after
            .find(END)
            .ok_or_else(|| invalid(key, "a certificate block has no END line"))?
            + END.len();
        let block = format!("{}\n", after[..end].trim());
        let pem = read_pem(key, block.as_bytes())?;
        let cert = parse_cert(key, &pem)?;
        if !cert.is_ca() {
            return Err(invalid(key, "holds a certificate that is not a CA"));
        }
        blocks.push((pem.contents, block));
        rest = &after[end..];
    }
    if blocks.is_empty() {
        return Err(invalid(key, "no PEM certificate"));
    }
    Ok(blocks)
}

/// Whether a certificate valid from `not_before` to `not_after` is kept at
/// `now`: renewed once less than a third of its life is left.
pub fn renewal_due(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> Verdict {
    let life = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let renew_at = not_after - life / 3;
    if now < not_before || now >= renew_at {
        Verdict::Renew(Renewal::Expiring)
    } else {
        Verdict::Keep { renew_at }
    }
}

/// What to do with a certificate held in a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Good until `renew_at`.
    Keep { renew_at: SystemTime },
    /// Issue a new one.
    Renew(Renewal),
}

/// Why a certificate is issued again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// None is held yet (a new cluster, or a pod added by scaling up).
    Missing,
    /// What is held does not parse or its key does not match.
    Unusable(String),
    /// Signed by another CA (the CA was replaced).
    OtherCa,
    /// It lacks this name (the headless Service or namespace changed).
    Names(String),
    /// Less than a third of its life is left (or it is not yet valid).
    Expiring,
}

impl std::fmt::Display for Renewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Renewal::Missing => write!(f, "none yet"),
            Renewal::Unusable(why) => write!(f, "unusable ({why})"),
            Renewal::OtherCa => write!(f, "not signed by the CA in force"),
            Renewal::Names(name) => write!(f, "does not name {name}"),
            Renewal::Expiring => write!(f, "less than a third of its life left"),
        }
    }
}

/// The names a pod's certificate carries: what its peers dial
/// (`<pod>.<headless>.<namespace>.svc`, see the runtime's
/// `Members::stateful_set`), its fully qualified form, and the bare pod
/// name (the name the operator checks when it dials the pod's IP).
pub fn pod_names(pod: &str, headless: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{pod}.{headless}.{namespace}.svc"),
        format!("{pod}.{headless}.{namespace}.svc.cluster.local"),
        pod.to_string(),
    ]
}

/// Each pod of `cluster` (in namespace `ns`) with the names its
/// certificate carries.
pub fn cluster_pod_names(cluster: &crate::crd::VssCluster, ns: &str) -> Vec<(String, Vec<String>)> {
    let headless = crate::resources::Names::of(cluster).headless;
    crate::resources::pod_names(cluster)
        .into_iter()
        .map(|pod| {
            let names = pod_names(&pod, &headless, ns);
            (pod, names)
        })
        .collect()
}

/// The pod Secret's contents after one pass: each pod's certificate kept
/// or issued anew, and the CA's certificate beside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCerts {
    /// Secret data: `<pod>.crt`, `<pod>.key` per pod, `ca.crt`.
    pub data: BTreeMap<String, String>,
    /// Pods whose certificate was issued now, and why.
    pub issued: Vec<(String, Renewal)>,
    /// The earliest time a certificate kept or issued is due for renewal.
    pub next_renewal: Option<SystemTime>,
}

/// Keeps what is still good in `current` (the pod Secret's data) and
/// issues the rest, for `pods` (name and SANs). Certificates of pods no
/// longer in the set are dropped.
pub fn pod_certs(
    ca: &Ca,
    current: &BTreeMap<String, Vec<u8>>,
    pods: &[(String, Vec<String>)],
    now: SystemTime,
) -> Result<PodCerts, CertError> {
    let mut out = PodCerts {
        data: BTreeMap::from([(CA_CERT_KEY.to_string(), ca.cert_pem().to_string())]),
        issued: Vec::new(),
        next_renewal: None,
    };
    for (pod, names) in pods {
        let (cert_pem, key_pem, renew_at) = match ca.check_pod(current, pod, names, now) {
            Verdict::Keep { renew_at } => {
                // check_pod parsed both as UTF-8 PEM, so these hold.
                let text = |k: &str| {
                    current
                        .get(k)
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default()
                };
                (text(&cert_key(pod)), text(&key_key(pod)), renew_at)
            }
            Verdict::Renew(why) => {
                let leaf = ca.issue_pod(pod, names, now)?;
                out.issued.push((pod.clone(), why));
                let renew_at = match renewal_due(now - BACKDATE, leaf.not_after, now) {
                    Verdict::Keep { renew_at } => renew_at,
                    Verdict::Renew(_) => now,
                };
                (leaf.cert_pem, leaf.key_pem, renew_at)
            }
        };
        out.data.insert(cert_key(pod), cert_pem);
        out.data.insert(key_key(pod), key_pem);
        out.next_renewal = Some(out.next_renewal.map_or(renew_at, |t| t.min(renew_at)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
