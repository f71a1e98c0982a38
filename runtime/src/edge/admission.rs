//! What a call must pass before it reaches its gRPC service: on the client
//! port, its connection's call budget ([`crate::edge::connections`]) and the
//! refused calls of fault injection; on the mesh port, the dropped and
//! delayed messages of fault injection ([`crate::ops::chaos`]).
//!
//! Each port's checks are an [`Admission`], a plain function of the request
//! that says whether the call goes on, waits first, or is answered with an
//! error at once; [`Admit`] is the one tower service that applies any of
//! them, so the service plumbing (readiness, the clone that serves a
//! delayed call) is written once.

use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tonic::Status;
use tonic::codegen::BoxFuture;
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;
use tower::{Layer, Service};

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::SERVICE_NAME as RLS_SERVICE;
use vss_proto::v1::vss_server::SERVICE_NAME as VSS_SERVICE;

use crate::edge::connections::{ClientConnection, ClientLimits};
use crate::edge::grpc_link::FORWARDED_HEADER;
use crate::ops::chaos::{ChaosOptions, MeshFault};
use crate::ops::metrics::ConnectionMetrics;

/// What becomes of a call.
#[derive(Debug)]
pub enum Verdict {
    /// Served now.
    Pass,
    /// Served after this long.
    Delay(Duration),
    /// Answered with this status; the service never sees it.
    Refuse(Status),
}

/// A port's checks on each call.
pub trait Admission: Clone + Send + 'static {
    fn admit<B>(&self, req: &Request<B>) -> Verdict;
}

/// Puts an [`Admission`] in front of every service of a port.
#[derive(Debug, Clone)]
pub struct AdmitLayer<A>(A);

impl<A> AdmitLayer<A> {
    pub fn new(admission: A) -> Self {
        Self(admission)
    }
}

impl<S, A: Clone> Layer<S> for AdmitLayer<A> {
    type Service = Admit<S, A>;

    fn layer(&self, inner: S) -> Admit<S, A> {
        Admit::new(inner, self.0.clone())
    }
}

/// A gRPC service behind an [`Admission`].
#[derive(Debug, Clone)]
pub struct Admit<S, A> {
    inner: S,
    admission: A,
}

impl<S, A> Admit<S, A> {
    pub fn new(inner: S, admission: A) -> Self {
        Self { inner, admission }
    }
}

impl<S: NamedService, A> NamedService for Admit<S, A> {
    const NAME: &'static str = S::NAME;
}

impl<S, A, B> Service<Request<B>> for Admit<S, A>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    A: Admission,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.admission.admit(&req) {
            Verdict::Pass => Box::pin(self.inner.call(req)),
            Verdict::Refuse(status) => Box::pin(async move { Ok(status.into_http()) }),
            Verdict::Delay(delay) => {
                // The clone serves this call; `self.inner` stays ready for
                // the next.
                let mut inner = self.inner.clone();
                std::mem::swap(&mut inner, &mut self.inner);
                Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    inner.call(req).await
                })
            }
        }
    }
}

/// The client port's checks: the connection's call budget, then fault
/// injection's refused calls.
#[derive(Debug, Clone)]
pub struct ClientPort {
    calls_per_second: u32,
    budget_refusals: Counter,
    chaos: ChaosOptions,
}

impl ClientPort {
    pub fn new(limits: ClientLimits, metrics: &ConnectionMetrics, chaos: ChaosOptions) -> Self {
        Self {
            calls_per_second: limits.calls_per_second,
            budget_refusals: metrics.calls_refused.clone(),
            chaos,
        }
    }
}

impl Admission for ClientPort {
    fn admit<B>(&self, req: &Request<B>) -> Verdict {
        let spent = req
            .extensions()
            .get::<ClientConnection>()
            .is_some_and(|c| !c.take_call());
        if spent {
            self.budget_refusals.inc();
            return Verdict::Refuse(Status::resource_exhausted(format!(
                "this connection started more than {} calls in the last second (--client-max-calls-per-second); slow down or spread the calls over connections",
                self.calls_per_second
            )));
        }
        match self.chaos.client_fault(req) {
            Some(status) => Verdict::Refuse(status),
            None => Verdict::Pass,
        }
    }
}

/// The mesh port's checks: fault injection's dropped and delayed messages.
#[derive(Debug, Clone, Copy)]
pub struct MeshPort(pub ChaosOptions);

impl Admission for MeshPort {
    fn admit<B>(&self, req: &Request<B>) -> Verdict {
        self.0.mesh_fault(req)
    }
}

/// The faults chaos injects into calls, as verdicts on gRPC requests.
pub trait ChaosFaults {
    fn client_fault<B>(&self, req: &Request<B>) -> Option<Status>;
    fn mesh_fault<B>(&self, req: &Request<B>) -> Verdict;
}

impl ChaosFaults for ChaosOptions {
    /// A refusal for `refuse_calls` of the client calls that may be
    /// refused: those of the `vss.v1.Vss` and RLS services, but neither
    /// forwarded calls (they come from a peer: refusing one is not a
    /// refused client call) nor the long-lived streams.
    fn client_fault<B>(&self, req: &Request<B>) -> Option<Status> {
        let path = req.uri().path();
        let service = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .map(|(service, _)| service);
        let refusable = matches!(service, Some(VSS_SERVICE | RLS_SERVICE))
            && !req.headers().contains_key(FORWARDED_HEADER)
            && !path.ends_with("/Events")
            && !path.ends_with("/WatchRouting");
        (refusable && self.draws_refusal()).then(|| dropped(req))
    }

    /// A drop for `mesh_drop` of the incoming mesh messages, a delay for
    /// `mesh_delay_fraction` of the others.
    fn mesh_fault<B>(&self, req: &Request<B>) -> Verdict {
        match self.draws_mesh_fault() {
            Some(MeshFault::Drop) => Verdict::Refuse(dropped(req)),
            Some(MeshFault::Delay(delay)) => Verdict::Delay(delay),
            None => Verdict::Pass,
        }
    }
}

/// `UNAVAILABLE`, as a lost message would end.
fn dropped<B>(req: &Request<B>) -> Status {
    let what = req.uri().path();
    tracing::debug!(%what, "chaos: dropped");
    Status::unavailable(format!("chaos: {what} dropped"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(path: &str) -> Request<()> {
        Request::builder()
            .uri(path)
            .body(())
            .expect("a valid request")
    }

    #[test]
    fn refused_calls_are_client_calls_of_the_vss_and_rls_services_only() {
        let chaos = ChaosOptions {
            refuse_calls: 1.0,
            ..ChaosOptions::default()
        };
        for refused in [
            "/vss.v1.Vss/Acquire",
            "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
        ] {
            let status = chaos.client_fault(&call(refused)).expect("refused");
            assert_eq!(status.code(), tonic::Code::Unavailable);
        }
        for spared in [
            "/vss.v1.Vss/Events",
            "/vss.v1.Vss/WatchRouting",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(chaos.client_fault(&call(spared)).is_none(), "{spared}");
        }
        let mut forwarded = call("/vss.v1.Vss/Acquire");
        forwarded
            .headers_mut()
            .insert(FORWARDED_HEADER, "vss-1".parse().expect("ascii"));
        assert!(chaos.client_fault(&forwarded).is_none());
        assert!(
            ChaosOptions::default()
                .client_fault(&call("/vss.v1.Vss/Acquire"))
                .is_none()
        );
    }

    #[test]
    fn mesh_messages_are_dropped_or_delayed() {
        let drop_all = ChaosOptions {
            mesh_drop: 1.0,
            ..ChaosOptions::default()
        };
        let msg = call("/vss.v1.Mesh/Heartbeat");
        assert!(matches!(drop_all.mesh_fault(&msg), Verdict::Refuse(_)));
        let delay_all = ChaosOptions {
            mesh_delay_fraction: 1.0,
            mesh_delay: Duration::from_millis(20),
            ..ChaosOptions::default()
        };
        assert!(matches!(
            delay_all.mesh_fault(&msg),
            Verdict::Delay(d) if d == Duration::from_millis(20)
        ));
        assert!(matches!(
            ChaosOptions::default().mesh_fault(&msg),
            Verdict::Pass
        ));
    }
}
