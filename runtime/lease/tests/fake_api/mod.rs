//! An in-memory Kubernetes API that serves one Lease, behind a real `kube::Client`.
//!
//! It keeps the server's rules that the election depends on: every write bumps
//! `resourceVersion`, a replace with a stale `resourceVersion` gets 409 Conflict, a create
//! of an existing Lease gets 409 AlreadyExists, a read of a missing one gets 404. Tests play
//! "another pod" by writing through [`FakeLeaseApi::write_as_other_pod`], and assert on
//! the recorded requests. Timing-dependent scenarios are more robust against this than
//! against a scripted sequence of exact requests.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::client::Body;

pub const NAMESPACE: &str = "vss";
pub const NAME: &str = "vss-leader";
const ITEM_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/vss/leases/vss-leader";
const COLLECTION_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/vss/leases";

/// One request the fake served, with the Lease it carried and the status it got.
#[derive(Debug, Clone)]
pub struct Served {
    pub method: Method,
    pub path: String,
    pub body: Option<Lease>,
    pub status: StatusCode,
}

#[derive(Default)]
struct State {
    lease: Option<Lease>,
    resource_version: u64,
    unavailable: bool,
    hanging: bool,
    served: Vec<Served>,
}

#[derive(Clone, Default)]
pub struct FakeLeaseApi {
    state: Arc<Mutex<State>>,
}

impl FakeLeaseApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// A client whose every request is answered by this fake.
    pub fn client(&self) -> kube::Client {
        let state = Arc::clone(&self.state);
        let service = tower::service_fn(move |request: Request<Body>| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(serve(&state, request).await) }
        });
        kube::Client::new(service, NAMESPACE)
    }

    /// Writes the Lease as another pod would, bumping `resourceVersion`.
    pub fn write_as_other_pod(
        &self,
        holder: &str,
        renewed: Timestamp,
        seconds: i32,
        transitions: i32,
    ) {
        let mut state = lock(&self.state);
        state.resource_version += 1;
        state.lease = Some(Lease {
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                namespace: Some(NAMESPACE.into()),
                resource_version: Some(state.resource_version.to_string()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                acquire_time: Some(MicroTime(renewed)),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(seconds),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        });
    }

    /// Makes every request fail with 503, as an unreachable API server would.
    pub fn set_unavailable(&self, unavailable: bool) {
        lock(&self.state).unavailable = unavailable;
    }

    /// Makes every request hang until the client gives up on it.
    pub fn set_hanging(&self, hanging: bool) {
        lock(&self.state).hanging = hanging;
    }

    pub fn lease(&self) -> Option<Lease> {
        lock(&self.state).lease.clone()
    }

    pub fn served(&self) -> Vec<Served> {
        lock(&self.state).served.clone()
    }
}

/// `now - seconds`, for Leases renewed in the past.
pub fn seconds_ago(seconds: i64) -> Timestamp {
    Timestamp::now()
        .checked_sub(SignedDuration::from_secs(seconds))
        .expect("test timestamps are in range")
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock has failed already; keep serving.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(state: &Mutex<State>, request: Request<Body>) -> Response<Body> {
    if lock(state).hanging {
        return std::future::pending().await;
    }
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.unwrap_or_default();
    let sent: Option<Lease> = serde_json::from_slice(&bytes).ok();
    let path = parts.uri.path().to_owned();

    let mut state = lock(state);
    let (status, reply) = if state.unavailable {
        failure(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
    } else {
        match (&parts.method, path.as_str()) {
            (&Method::GET, ITEM_PATH) => match &state.lease {
                Some(lease) => ok(StatusCode::OK, lease),
                None => failure(StatusCode::NOT_FOUND, "NotFound"),
            },
            (&Method::POST, COLLECTION_PATH) => match (&state.lease, &sent) {
                (Some(_), _) => failure(StatusCode::CONFLICT, "AlreadyExists"),
                (None, None) => failure(StatusCode::BAD_REQUEST, "BadRequest"),
                (None, Some(lease)) => {
                    let stored = store(&mut state, lease.clone());
                    ok(StatusCode::CREATED, &stored)
                }
            },
            (&Method::PUT, ITEM_PATH) => match (&state.lease, &sent) {
                (None, _) => failure(StatusCode::NOT_FOUND, "NotFound"),
                (Some(_), None) => failure(StatusCode::BAD_REQUEST, "BadRequest"),
                (Some(current), Some(lease))
                    if lease.metadata.resource_version != current.metadata.resource_version =>
                {
                    failure(StatusCode::CONFLICT, "Conflict")
                }
                (Some(_), Some(lease)) => {
                    let stored = store(&mut state, lease.clone());
                    ok(StatusCode::OK, &stored)
                }
            },
            _ => failure(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    };
    state.served.push(Served {
        method: parts.method,
        path,
        body: sent,
        status,
    });
    let mut response = Response::new(Body::from(reply));
    *response.status_mut() = status;
    response
}

fn store(state: &mut State, mut lease: Lease) -> Lease {
    state.resource_version += 1;
    lease.metadata.namespace = Some(NAMESPACE.into());
    lease.metadata.resource_version = Some(state.resource_version.to_string());
    state.lease = Some(lease.clone());
    lease
}

fn ok(status: StatusCode, lease: &Lease) -> (StatusCode, Vec<u8>) {
    let body = serde_json::to_vec(lease).expect("a Lease serializes");
    (status, body)
}

fn failure(status: StatusCode, reason: &str) -> (StatusCode, Vec<u8>) {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("fake API: {reason}"),
        "reason": reason,
        "code": status.as_u16(),
    });
    (status, body.to_string().into_bytes())
}
