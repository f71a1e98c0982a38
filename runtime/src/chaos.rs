//! Fault injection: the runtime makes its own failures, so that failure is
//! routine. Everything here is off unless configured.
//!
//! - mesh faults: a fraction of incoming mesh messages (heartbeats, routing
//!   pushes, replication, peer deliveries) is dropped (answered
//!   `UNAVAILABLE`, as a lost message would end) or delayed;
//! - refused calls: a fraction of client calls is answered `UNAVAILABLE`
//!   (requests forwarded by a peer are not: the fault is the client's);
//! - restarts: the process exits with code 75 at random intervals around a
//!   mean, for a supervisor (`vss dev`, Kubernetes) to start it again.

use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::http::{Request, Response};
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;

/// Exit code of a chaos restart (EX_TEMPFAIL).
pub const RESTART_EXIT_CODE: i32 = 75;

/// What faults to inject.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChaosOptions {
    /// Fraction (0-1) of incoming mesh messages dropped.
    pub mesh_drop: f64,
    /// Fraction (0-1) of incoming mesh messages delayed by `mesh_delay`.
    pub mesh_delay_fraction: f64,
    pub mesh_delay: Duration,
    /// Fraction (0-1) of client calls refused.
    pub refuse_calls: f64,
    /// Mean time between self-restarts; None: never.
    pub restart_every: Option<Duration>,
}

/// A chaos setting out of range.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {value} is not a fraction between 0 and 1")]
pub struct ChaosError {
    pub field: &'static str,
    pub value: f64,
}

impl ChaosOptions {
    pub fn validate(&self) -> Result<(), ChaosError> {
        for (field, value) in [
            ("--chaos-mesh-drop", self.mesh_drop),
            ("--chaos-mesh-delay-fraction", self.mesh_delay_fraction),
            ("--chaos-refuse-calls", self.refuse_calls),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ChaosError { field, value });
            }
        }
        Ok(())
    }

    pub fn is_off(&self) -> bool {
        self.mesh_drop == 0.0
            && self.mesh_delay_fraction == 0.0
            && self.refuse_calls == 0.0
            && self.restart_every.is_none()
    }

    /// When the next self-restart is due: uniformly between half and one
    /// and a half times the mean.
    pub fn next_restart(&self) -> Option<Duration> {
        self.restart_every
            .map(|mean| mean.mul_f64(0.5 + fastrand::f64()))
    }
}

/// Which calls a [`Faulty`] service may fail.
#[derive(Debug, Clone, Copy)]
enum Target {
    Mesh,
    Clients,
}

/// Wraps a gRPC service to fail or delay a fraction of its calls.
#[derive(Debug, Clone)]
pub struct Faulty<S> {
    inner: S,
    drop: f64,
    delay_fraction: f64,
    delay: Duration,
    target: Target,
}

impl<S> Faulty<S> {
    /// Mesh messages: dropped or delayed.
    pub fn mesh(inner: S, chaos: &ChaosOptions) -> Self {
        Self {
            inner,
            drop: chaos.mesh_drop,
            delay_fraction: chaos.mesh_delay_fraction,
            delay: chaos.mesh_delay,
            target: Target::Mesh,
        }
    }

    /// Client calls: refused.
    pub fn clients(inner: S, chaos: &ChaosOptions) -> Self {
        Self {
            inner,
            drop: chaos.refuse_calls,
            delay_fraction: 0.0,
            delay: Duration::ZERO,
            target: Target::Clients,
        }
    }
}

impl<S: NamedService> NamedService for Faulty<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<Request<B>> for Faulty<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let exempt = match self.target {
            Target::Mesh => false,
            // Forwarded calls come from a peer, and streams are long-lived:
            // refusing those is not a refused client call.
            Target::Clients => {
                req.headers().contains_key(crate::grpc::FORWARDED_HEADER)
                    || req.uri().path().ends_with("/Events")
                    || req.uri().path().ends_with("/WatchRouting")
            }
        };
        if !exempt && self.drop > 0.0 && fastrand::f64() < self.drop {
            let what = req.uri().path().to_string();
            tracing::debug!(%what, "chaos: dropped");
            let status = tonic::Status::unavailable(format!("chaos: {what} dropped"));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let delay = (!exempt && self.delay_fraction > 0.0 && fastrand::f64() < self.delay_fraction)
            .then_some(self.delay);
        // The clone serves this call; `self.inner` stays ready for the next.
        let mut inner = self.inner.clone();
        std::mem::swap(&mut inner, &mut self.inner);
        Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            inner.call(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_outside_zero_one_are_refused_by_name() {
        let bad = ChaosOptions {
            refuse_calls: 1.5,
            ..ChaosOptions::default()
        };
        assert_eq!(
            bad.validate(),
            Err(ChaosError {
                field: "--chaos-refuse-calls",
                value: 1.5
            })
        );
        assert!(ChaosOptions::default().validate().is_ok());
        assert!(ChaosOptions::default().is_off());
    }

    #[test]
    fn restarts_fall_between_half_and_one_and_a_half_means() {
        let chaos = ChaosOptions {
            restart_every: Some(Duration::from_secs(10)),
            ..ChaosOptions::default()
        };
        for _ in 0..1_000 {
            let next = chaos.next_restart().expect("restart due");
            assert!(next >= Duration::from_secs(5) && next <= Duration::from_secs(15));
        }
    }
}
