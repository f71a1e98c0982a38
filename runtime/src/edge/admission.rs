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

use crate::edge::connections::{ClientConnection, ClientLimits, ConnectionMetrics};
use crate::ops::chaos::ChaosOptions;

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
