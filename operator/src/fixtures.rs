//! Test objects, a fake of the runtime pods, and a mocked API server that
//! plays a scenario: each expected request in order, asserting its method,
//! path and body, answering as the API server would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::client::Body;
use kube::{Client, Resource};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

use crate::controller::Context;
use crate::crd::{
    ConfigMapKey, CustomModule, MeshTls, MeshTlsMode, VssCluster, VssClusterSpec, VssClusterStatus,
    VssSlot,
};
use crate::metrics::Metrics;
use crate::push::{PodControl, PodReport, PodTls, PushError};

pub const NS: &str = "testns";
pub const IMAGE: &str = "ghcr.io/vss-dev/vss-runtime:test";

/// A 3-instance cluster `demo` in `testns`, generation 1: a token bucket on
/// slot 0 and a multicast slot 3, mesh TLS disabled: the scenarios about
/// objects, pushes and status are the same either way, and those about the
/// mesh certificates start from [`secure_cluster`].
pub fn cluster() -> VssCluster {
    let mut c = secure_cluster();
    c.spec.mesh_tls = Some(MeshTls {
        mode: MeshTlsMode::Disabled,
        issuer_ref: None,
    });
    c
}

/// [`cluster`] with mesh TLS left at its default: the operator's
/// certificates.
pub fn secure_cluster() -> VssCluster {
    let mut c = VssCluster::new(
        "demo",
        VssClusterSpec {
            instances: 3,
            slots: vec![
                VssSlot {
                    id: 0,
                    slot_type: "token-bucket".into(),
                    bucket_size: Some(200),
                    period: Some("second".into()),
                    refresh_rate: Some(100),
                    ..Default::default()
                },
                VssSlot {
                    id: 3,
                    slot_type: "multicast".into(),
                    timeout: Some("500ms".into()),
                    dereg_tries: Some(3),
                    ..Default::default()
                },
            ],
            image: None,
            image_pull_policy: None,
            image_pull_secrets: vec![],
            resources: None,
            scheduling: None,
            chaos: None,
            mesh_tls: None,
            client_auth: None,
        },
    );
    let meta = c.meta_mut();
    meta.namespace = Some(NS.into());
    meta.uid = Some("uid-demo".into());
    meta.generation = Some(1);
    c
}

pub fn custom_slot(id: i64, config_map: &str, key: &str) -> VssSlot {
    VssSlot {
        id,
        slot_type: "custom".into(),
        custom: Some(CustomModule {
            config_map_key_ref: ConfigMapKey {
                name: config_map.into(),
                key: key.into(),
            },
            config: BTreeMap::new(),
        }),
        ..Default::default()
    }
}

/// A running pod of `demo`, ready or not.
pub fn pod(name: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(pod_ip(name)),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A call a [`FakePods`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodCall {
    Status(String),
    /// A status read over mTLS: the address and the name checked.
    SecureStatus(String, String),
    Apply {
        address: String,
        generation: u64,
        config_yaml: String,
    },
}

/// Runtime pods held in memory: each has a config generation and names a
/// leader; pushes raise the generation (or fail when told to).
#[derive(Default)]
pub struct FakePods {
    pub generations: Mutex<BTreeMap<String, u64>>,
    pub leader: String,
    pub refuse_push: bool,
    pub calls: Mutex<Vec<PodCall>>,
}

impl FakePods {
    pub fn at_generation(pods: &[&str], generation: u64) -> Self {
        Self {
            generations: Mutex::new(pods.iter().map(|p| (address(p), generation)).collect()),
            leader: "demo-0".into(),
            ..Default::default()
        }
    }

    pub fn calls(&self) -> Vec<PodCall> {
        self.calls.lock().expect("lock").clone()
    }
}

/// `demo-N` runs at 10.244.0.(10+N).
pub fn pod_ip(pod: &str) -> String {
    let ordinal: u8 = pod
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .expect("pod names of fixtures end in an ordinal");
    format!("10.244.0.{}", 10 + ordinal)
}

/// Where the operator calls a fixture pod: its IP, the mesh port.
pub fn address(pod: &str) -> String {
    format!("{}:{}", pod_ip(pod), crate::resources::MESH_PORT)
}

impl PodControl for FakePods {
    fn status(
        &self,
        address: String,
        tls: Option<PodTls>,
    ) -> BoxFuture<'static, Result<PodReport, PushError>> {
        self.calls.lock().expect("lock").push(match tls {
            Some(tls) => PodCall::SecureStatus(address.clone(), tls.server_name),
            None => PodCall::Status(address.clone()),
        });
        let result = match self.generations.lock().expect("lock").get(&address) {
            Some(g) => Ok(PodReport {
                config_generation: *g,
                leader: self.leader.clone(),
            }),
            None => Err(PushError::Refused {
                address,
                status: tonic::Status::unavailable("no such pod"),
            }),
        };
        Box::pin(async move { result })
    }

    fn apply_config(
        &self,
        address: String,
        _tls: Option<PodTls>,
        config_yaml: String,
        generation: u64,
    ) -> BoxFuture<'static, Result<u64, PushError>> {
        self.calls.lock().expect("lock").push(PodCall::Apply {
            address: address.clone(),
            generation,
            config_yaml,
        });
        let result = if self.refuse_push {
            Err(PushError::Refused {
                address,
                status: tonic::Status::invalid_argument("slot 0: field `bucketSize`: bad"),
            })
        } else {
            self.generations
                .lock()
                .expect("lock")
                .insert(address, generation);
            Ok(generation)
        };
        Box::pin(async move { result })
    }
}

impl Context {
    /// A context on a mocked API server and the given fake pods.
    pub fn test(pods: Arc<FakePods>) -> (Arc<Self>, ApiServerVerifier) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let ctx = Context::new(
            client,
            pods,
            IMAGE.into(),
            Some("test".into()),
            Metrics::default(),
            Some(crate::resources::OperatorPods {
                namespace: "vss-system".into(),
                labels: [(
                    "app.kubernetes.io/name".to_string(),
                    "vss-operator".to_string(),
                )]
                .into(),
            }),
        );
        (Arc::new(ctx), ApiServerVerifier { handle })
    }
}

/// Plays the API server side of a scenario.
pub struct ApiServerVerifier {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// One request as the verifier sees it.
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
    send: SendResponse<Response<Body>>,
}

impl Seen {
    fn reply(self, status: StatusCode, body: &Value) {
        let bytes = serde_json::to_vec(body).expect("json");
        self.send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(bytes))
                .expect("response"),
        );
    }
}

impl ApiServerVerifier {
    pub async fn next(&mut self) -> Seen {
        let (request, send) = self
            .handle
            .next_request()
            .await
            .expect("the operator made no further request");
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let bytes = request.into_body().collect_bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json body")
        };
        Seen {
            method,
            path,
            query,
            body,
            send,
        }
    }

    async fn expect(&mut self, method: Method, path: &str) -> Seen {
        let seen = self.next().await;
        assert_eq!(
            (&seen.method, seen.path.as_str()),
            (&method, path),
            "unexpected request (query {})",
            seen.query
        );
        seen
    }

    /// GET of an owned object; answers with `current` or 404.
    pub async fn get(&mut self, path: &str, current: Option<Value>) {
        let seen = self.expect(Method::GET, path).await;
        match current {
            Some(obj) => seen.reply(StatusCode::OK, &obj),
            None => seen.reply(
                StatusCode::NOT_FOUND,
                &json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "reason": "NotFound", "code": 404,
                    "message": format!("{path} not found"),
                }),
            ),
        }
    }

    /// A server-side apply; answers with the applied object (plus `status`
    /// when given) and returns what was applied.
    pub async fn apply(&mut self, path: &str, status: Option<Value>) -> Value {
        let seen = self.expect(Method::PATCH, path).await;
        assert!(
            seen.query.contains("fieldManager=vss-operator") && seen.query.contains("force=true"),
            "server-side apply expected, query {}",
            seen.query
        );
        let applied = seen.body.clone();
        let mut reply = applied.clone();
        if let (Some(status), Some(map)) = (status, reply.as_object_mut()) {
            map.insert("status".into(), status);
        }
        seen.reply(StatusCode::OK, &reply);
        applied
    }

    /// An event about the cluster; returns it.
    pub async fn event(&mut self, reason: &str) -> Value {
        let seen = self
            .expect(
                Method::POST,
                &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"),
            )
            .await;
        assert_eq!(seen.body["reason"], reason, "event {}", seen.body);
        assert_eq!(seen.body["regarding"]["name"], "demo");
        let body = seen.body.clone();
        seen.reply(StatusCode::OK, &body);
        body
    }

    /// Deletion of one of the cluster's pods; returns its name.
    pub async fn delete_pod(&mut self) -> String {
        let seen = self.next().await;
        assert_eq!(seen.method, Method::DELETE, "{}", seen.path);
        let prefix = format!("/api/v1/namespaces/{NS}/pods/");
        let name = seen
            .path
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("not a pod: {}", seen.path))
            .to_string();
        let reply = serde_json::to_value(pod(&name, true)).expect("json");
        seen.reply(StatusCode::OK, &reply);
        name
    }

    /// A list at `path`; returns the query (for its label selector).
    pub async fn list(&mut self, path: &str, items: Vec<Value>) -> String {
        let seen = self.expect(Method::GET, path).await;
        let query = seen.query.clone();
        let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items});
        seen.reply(StatusCode::OK, &list);
        query
    }

    /// The list of the cluster's pods.
    pub async fn list_pods(&mut self, pods: Vec<Pod>) {
        let seen = self
            .expect(Method::GET, &format!("/api/v1/namespaces/{NS}/pods"))
            .await;
        assert!(
            seen.query
                .contains("labelSelector=app.kubernetes.io%2Finstance%3Ddemo"),
            "pods selected by label, query {}",
            seen.query
        );
        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods});
        seen.reply(StatusCode::OK, &list);
    }

    /// The status patch; returns the status written.
    pub async fn patch_status(&mut self, cluster: &VssCluster) -> VssClusterStatus {
        let (status, _) = self.patch_status_raw(cluster).await;
        status
    }

    /// The status patch; returns the status written and the patch itself.
    pub async fn patch_status_raw(&mut self, cluster: &VssCluster) -> (VssClusterStatus, Value) {
        let seen = self
            .expect(
                Method::PATCH,
                &format!("/apis/vss.dev/v1alpha1/namespaces/{NS}/vssclusters/demo/status"),
            )
            .await;
        let status: VssClusterStatus =
            serde_json::from_value(seen.body["status"].clone()).expect("a VssClusterStatus");
        let mut updated = cluster.clone();
        updated.status = Some(status.clone());
        let reply = serde_json::to_value(&updated).expect("json");
        let body = seen.body.clone();
        seen.reply(StatusCode::OK, &reply);
        (status, body)
    }

    /// Asserts the operator made no request beyond the scenario. Call after
    /// dropping every clone of the context's client.
    pub async fn done(mut self) {
        if let Some((request, _)) = self.handle.next_request().await {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

/// The operator's pods, as the test context knows them.
pub fn operator_pods() -> crate::resources::OperatorPods {
    crate::resources::OperatorPods {
        namespace: "vss-system".into(),
        labels: [(
            "app.kubernetes.io/name".to_string(),
            "vss-operator".to_string(),
        )]
        .into(),
    }
}

/// API paths of the owned objects, in the order reconcile applies them.
pub fn owned_paths() -> Vec<(&'static str, String)> {
    vec![
        (
            "ServiceAccount",
            format!("/api/v1/namespaces/{NS}/serviceaccounts/demo"),
        ),
        (
            "Role",
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/demo"),
        ),
        (
            "RoleBinding",
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings/demo"),
        ),
        (
            "Lease",
            format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/demo-leader"),
        ),
        (
            "ConfigMap",
            format!("/api/v1/namespaces/{NS}/configmaps/demo-config"),
        ),
        (
            "Service",
            format!("/api/v1/namespaces/{NS}/services/demo-peers"),
        ),
        ("Service", format!("/api/v1/namespaces/{NS}/services/demo")),
        (
            "StatefulSet",
            format!("/apis/apps/v1/namespaces/{NS}/statefulsets/demo"),
        ),
        (
            "PodDisruptionBudget",
            format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/demo"),
        ),
        (
            "NetworkPolicy",
            format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/demo"),
        ),
    ]
}
