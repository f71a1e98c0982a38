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
//!
//! The faults of calls are applied by each port's
//! [`crate::edge::admission::Admission`].

use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::SERVICE_NAME as RLS_SERVICE;
use tonic::Status;
use tonic::codegen::http::Request;
use vss_proto::v1::vss_server::SERVICE_NAME as VSS_SERVICE;

use crate::edge::admission::Verdict;

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

impl ChaosOptions {
    /// A refusal for `refuse_calls` of the client calls that may be
    /// refused: those of the `vss.v1.Vss` and RLS services, but neither
    /// forwarded calls (they come from a peer: refusing one is not a
    /// refused client call) nor the long-lived streams.
    pub fn client_fault<B>(&self, req: &Request<B>) -> Option<Status> {
        if self.refuse_calls == 0.0 {
            return None;
        }
        let path = req.uri().path();
        let service = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .map(|(service, _)| service);
        let refusable = matches!(service, Some(VSS_SERVICE | RLS_SERVICE))
            && !req
                .headers()
                .contains_key(crate::edge::vss_service::FORWARDED_HEADER)
            && !path.ends_with("/Events")
            && !path.ends_with("/WatchRouting");
        (refusable && fastrand::f64() < self.refuse_calls).then(|| dropped(req))
    }

    /// A drop for `mesh_drop` of the incoming mesh messages, a delay for
    /// `mesh_delay_fraction` of the others.
    pub fn mesh_fault<B>(&self, req: &Request<B>) -> Verdict {
        if self.mesh_drop > 0.0 && fastrand::f64() < self.mesh_drop {
            return Verdict::Refuse(dropped(req));
        }
        if self.mesh_delay_fraction > 0.0 && fastrand::f64() < self.mesh_delay_fraction {
            return Verdict::Delay(self.mesh_delay);
        }
        Verdict::Pass
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
        forwarded.headers_mut().insert(
            crate::edge::vss_service::FORWARDED_HEADER,
            "vss-1".parse().expect("ascii"),
        );
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
