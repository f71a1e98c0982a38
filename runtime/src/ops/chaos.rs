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
//! The faults of calls are drawn here and applied by each port's admission
//! check at the edge.

use std::time::Duration;

/// Exit code of a chaos restart (EX_TEMPFAIL).
pub const RESTART_EXIT_CODE: i32 = 75;

/// A fault injected into a mesh message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshFault {
    Drop,
    Delay(Duration),
}

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

    /// Whether this client call is refused: a draw against
    /// `refuse_calls`.
    pub fn draws_refusal(&self) -> bool {
        self.refuse_calls > 0.0 && fastrand::f64() < self.refuse_calls
    }

    /// What becomes of an incoming mesh message: dropped for `mesh_drop`
    /// of them, delayed for `mesh_delay_fraction` of the others.
    pub fn draws_mesh_fault(&self) -> Option<MeshFault> {
        if self.mesh_drop > 0.0 && fastrand::f64() < self.mesh_drop {
            return Some(MeshFault::Drop);
        }
        if self.mesh_delay_fraction > 0.0 && fastrand::f64() < self.mesh_delay_fraction {
            return Some(MeshFault::Delay(self.mesh_delay));
        }
        None
    }

    /// When the next self-restart is due: uniformly between half and one
    /// and a half times the mean.
    pub fn next_restart(&self) -> Option<Duration> {
        self.restart_every
            .map(|mean| mean.mul_f64(0.5 + fastrand::f64()))
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
