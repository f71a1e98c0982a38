//! Who is in the cluster: parsed from `--peers` or derived from the
//! StatefulSet in Kubernetes.

use std::collections::BTreeMap;

/// Longest instance id, in bytes.
pub const MAX_ID_BYTES: usize = 63;
/// Most instances in one cluster.
pub const MAX_INSTANCES: usize = 32;

/// Every instance of the cluster (this one included), id → gRPC address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    me: String,
    all: BTreeMap<String, String>,
    /// In a StatefulSet, the headless Service and namespace that name each
    /// pod: a peer's mesh certificate is checked for that name even when
    /// `--peers` gives another address.
    pod_dns: Option<(String, String)>,
}

/// Why the cluster membership is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MembersError {
    #[error("--peers: entry {0:?} is not ID=HOST:PORT")]
    Malformed(String),
    #[error(
        "--peers: instance id {0:?} must be 1-{MAX_ID_BYTES} bytes of letters, digits, '-', '_' or '.'"
    )]
    BadId(String),
    #[error("--peers: instance {0:?} is listed twice")]
    Duplicate(String),
    #[error("--peers: at most {MAX_INSTANCES} instances, got {0}")]
    TooMany(usize),
    #[error("this instance's id {me:?} is not in --peers ({listed}); pass --id with one of them")]
    NotListed { me: String, listed: String },
    #[error("{var} is not set; in-cluster mode takes the identity from the pod (downward API)")]
    MissingEnv { var: &'static str },
    #[error("pod name {0:?} does not end in -<ordinal>, so it is not a StatefulSet pod")]
    NotAStatefulSetPod(String),
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Members {
    /// A cluster of one.
    pub fn alone(me: &str) -> Result<Self, MembersError> {
        if !valid_id(me) {
            return Err(MembersError::BadId(me.to_string()));
        }
        Ok(Self {
            me: me.to_string(),
            all: BTreeMap::from([(me.to_string(), String::new())]),
            pod_dns: None,
        })
    }

    /// Parses `ID=HOST:PORT,...` (every instance, this one included).
    pub fn parse(me: &str, peers: &str) -> Result<Self, MembersError> {
        let mut all = BTreeMap::new();
        for entry in peers.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, addr) = entry
                .split_once('=')
                .filter(|(_, addr)| {
                    addr.rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                })
                .ok_or_else(|| MembersError::Malformed(entry.to_string()))?;
            if !valid_id(id) {
                return Err(MembersError::BadId(id.to_string()));
            }
            if all.insert(id.to_string(), addr.to_string()).is_some() {
                return Err(MembersError::Duplicate(id.to_string()));
            }
        }
        Self::from_map(me, all)
    }

    /// In Kubernetes: this pod is `<sts>-<ordinal>` and its peers are the
    /// StatefulSet's other pods, addressed through the headless Service.
    pub fn stateful_set(
        pod_name: &str,
        namespace: &str,
        service: &str,
        replicas: usize,
        port: u16,
    ) -> Result<Self, MembersError> {
        let (set, _ordinal) = pod_name
            .rsplit_once('-')
            .filter(|(set, ord)| !set.is_empty() && ord.parse::<usize>().is_ok())
            .ok_or_else(|| MembersError::NotAStatefulSetPod(pod_name.to_string()))?;
        let all = (0..replicas)
            .map(|i| {
                let id = format!("{set}-{i}");
                let addr = format!("{id}.{service}.{namespace}.svc:{port}");
                (id, addr)
            })
            .collect();
        Ok(Self::from_map(pod_name, all)?.with_pod_dns(service, namespace))
    }

    /// Peers are pods of a StatefulSet behind `service` in `namespace`:
    /// their mesh certificates name `<id>.<service>.<namespace>.svc`,
    /// whatever address they are dialed at.
    pub fn with_pod_dns(self, service: &str, namespace: &str) -> Self {
        Self {
            pod_dns: Some((service.to_string(), namespace.to_string())),
            ..self
        }
    }

    /// The name peer `id`'s mesh certificate must carry when it is not the
    /// host dialed; None checks the host dialed.
    pub fn tls_name(&self, id: &str) -> Option<String> {
        let (service, namespace) = self.pod_dns.as_ref()?;
        Some(format!("{id}.{service}.{namespace}.svc"))
    }

    fn from_map(me: &str, all: BTreeMap<String, String>) -> Result<Self, MembersError> {
        if all.len() > MAX_INSTANCES {
            return Err(MembersError::TooMany(all.len()));
        }
        if !all.contains_key(me) {
            let listed = all.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(MembersError::NotListed {
                me: me.to_string(),
                listed,
            });
        }
        Ok(Self {
            me: me.to_string(),
            all,
            pod_dns: None,
        })
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// The other instances: id → address.
    pub fn peers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.all
            .iter()
            .filter(|(id, _)| **id != self.me)
            .map(|(id, addr)| (id.as_str(), addr.as_str()))
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.all.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peers_and_finds_me() {
        let m = Members::parse("b", "a=127.0.0.1:7700, b=127.0.0.1:7710,c=localhost:7720")
            .expect("valid list");
        assert_eq!(m.me(), "b");
        let peers: Vec<_> = m.peers().collect();
        assert_eq!(peers, [("a", "127.0.0.1:7700"), ("c", "localhost:7720")]);
        assert_eq!(m.tls_name("a"), None, "the host dialed is checked");
        let pods = m.with_pod_dns("vss-mesh", "prod");
        assert_eq!(pods.tls_name("a").as_deref(), Some("a.vss-mesh.prod.svc"));
    }

    #[test]
    fn refuses_bad_peer_lists() {
        assert_eq!(
            Members::parse("x", "a=127.0.0.1:1,b=127.0.0.1:2"),
            Err(MembersError::NotListed {
                me: "x".into(),
                listed: "a, b".into()
            })
        );
        assert!(matches!(
            Members::parse("a", "a=127.0.0.1"),
            Err(MembersError::Malformed(_))
        ));
        assert!(matches!(
            Members::parse("a", "a=127.0.0.1:1,a=127.0.0.1:2"),
            Err(MembersError::Duplicate(_))
        ));
        assert!(matches!(
            Members::parse("a b", "a b=127.0.0.1:1"),
            Err(MembersError::BadId(_))
        ));
    }

    #[test]
    fn stateful_set_peers_use_the_headless_service() {
        let m =
            Members::stateful_set("vss-1", "prod", "vss-mesh", 3, 7700).expect("pod of the set");
        let peers: Vec<_> = m.peers().collect();
        assert_eq!(
            peers,
            [
                ("vss-0", "vss-0.vss-mesh.prod.svc:7700"),
                ("vss-2", "vss-2.vss-mesh.prod.svc:7700")
            ]
        );
        assert_eq!(
            m.tls_name("vss-0").as_deref(),
            Some("vss-0.vss-mesh.prod.svc")
        );
        assert!(matches!(
            Members::stateful_set("vss", "prod", "svc", 3, 7700),
            Err(MembersError::NotAStatefulSetPod(_))
        ));
        assert!(matches!(
            Members::stateful_set("vss-5", "prod", "svc", 3, 7700),
            Err(MembersError::NotListed { .. })
        ));
    }
}
