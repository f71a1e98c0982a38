//! What the operator reports in `status`: pure functions from what it
//! observed to conditions, so each rule is tested without an API server.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{PodConfigStatus, VssClusterStatus};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// What one reconcile saw of the cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// `metadata.generation` of the VssCluster.
    pub generation: i64,
    pub desired_instances: i32,
    pub ready_instances: i32,
    /// The StatefulSet runs its latest template on every pod.
    pub rolled_out: bool,
    /// Per pod, the config generation it reported (None: did not answer).
    pub pods: Vec<PodConfigStatus>,
    /// Leader named by each pod that answered.
    pub leaders: Vec<String>,
    /// Pods that refused or failed a push or a status call.
    pub failures: Vec<String>,
}

impl Observed {
    /// Every desired pod runs the current config generation.
    pub fn config_current(&self) -> bool {
        self.pods.len() == usize::try_from(self.desired_instances).unwrap_or(0)
            && self
                .pods
                .iter()
                .all(|p| p.config_generation.is_some_and(|g| g >= self.generation))
    }

    /// The leader most pods agree on.
    pub fn leader(&self) -> Option<String> {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for l in self.leaders.iter().filter(|l| !l.is_empty()) {
            *votes.entry(l).or_default() += 1;
        }
        votes
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(l, _)| l.to_string())
    }
}

/// The status for a valid spec.
pub fn observed_status(
    previous: Option<&VssClusterStatus>,
    seen: &Observed,
    now: &Time,
) -> VssClusterStatus {
    let all_ready = seen.ready_instances >= seen.desired_instances;
    let current = seen.config_current();
    let (ready, ready_reason, ready_msg) = if all_ready && current && seen.rolled_out {
        (
            true,
            "AllInstancesReady",
            format!(
                "{} of {} instances ready",
                seen.ready_instances, seen.desired_instances
            ),
        )
    } else if !all_ready {
        (
            false,
            "InstancesNotReady",
            format!(
                "{} of {} instances ready",
                seen.ready_instances, seen.desired_instances
            ),
        )
    } else if !seen.rolled_out {
        (
            false,
            "RollingOut",
            "pods are being replaced one at a time".to_string(),
        )
    } else {
        (
            false,
            "ConfigPending",
            format!("not every pod runs config generation {}", seen.generation),
        )
    };
    let (progressing, prog_reason, prog_msg) = if !seen.rolled_out {
        (
            true,
            "RollingOut",
            "the StatefulSet is rolling out a new pod template".to_string(),
        )
    } else if !current {
        (
            true,
            "PushingConfig",
            format!("pushing config generation {} to the pods", seen.generation),
        )
    } else {
        (false, "Stable", "nothing to do".to_string())
    };
    let (degraded, deg_reason, deg_msg) = if !seen.failures.is_empty() {
        (true, "PodCallFailed", seen.failures.join("; "))
    } else {
        (false, "AsExpected", "no problem seen".to_string())
    };
    let prev = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    VssClusterStatus {
        observed_generation: Some(seen.generation),
        conditions: vec![
            condition(
                prev,
                READY,
                ready,
                ready_reason,
                ready_msg,
                seen.generation,
                now,
            ),
            condition(
                prev,
                PROGRESSING,
                progressing,
                prog_reason,
                prog_msg,
                seen.generation,
                now,
            ),
            condition(
                prev,
                DEGRADED,
                degraded,
                deg_reason,
                deg_msg,
                seen.generation,
                now,
            ),
        ],
        ready_instances: seen.ready_instances,
        leader: seen.leader(),
        pods: seen.pods.clone(),
        last_chaos_kill: previous.and_then(|s| s.last_chaos_kill.clone()),
    }
}

/// The status for a spec the operator refuses: the pods keep what they run,
/// so Ready and the per-pod data stay as they were.
pub fn invalid_status(
    previous: Option<&VssClusterStatus>,
    generation: i64,
    reason: &str,
    message: String,
    now: &Time,
) -> VssClusterStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let prev = status.conditions.clone();
    let ready = prev
        .iter()
        .find(|c| c.type_ == READY)
        .cloned()
        .unwrap_or_else(|| {
            condition(
                &prev,
                READY,
                false,
                reason,
                "the spec is invalid".into(),
                generation,
                now,
            )
        });
    status.observed_generation = Some(generation);
    status.conditions = vec![
        ready,
        condition(
            &prev,
            PROGRESSING,
            false,
            reason,
            "waiting for a valid spec".into(),
            generation,
            now,
        ),
        condition(&prev, DEGRADED, true, reason, message, generation, now),
    ];
    status
}

/// A condition that keeps its transition time while its status holds.
fn condition(
    previous: &[Condition],
    type_: &str,
    value: bool,
    reason: &str,
    message: String,
    generation: i64,
    now: &Time,
) -> Condition {
    let status = if value { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: Some(generation),
        last_transition_time: since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid"))
    }

    fn healthy() -> Observed {
        Observed {
            generation: 2,
            desired_instances: 2,
            ready_instances: 2,
            rolled_out: true,
            pods: vec![
                PodConfigStatus {
                    name: "a-0".into(),
                    config_generation: Some(2),
                },
                PodConfigStatus {
                    name: "a-1".into(),
                    config_generation: Some(2),
                },
            ],
            leaders: vec!["a-0".into(), "a-0".into()],
            failures: vec![],
        }
    }

    fn get<'a>(s: &'a VssClusterStatus, t: &str) -> &'a Condition {
        s.condition(t).expect("condition present")
    }

    #[test]
    fn ready_when_every_pod_runs_the_current_generation() {
        let s = observed_status(None, &healthy(), &at(1));
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(get(&s, PROGRESSING).status, "False");
        assert_eq!(get(&s, DEGRADED).status, "False");
        assert_eq!(s.leader.as_deref(), Some("a-0"));
        assert_eq!(s.observed_generation, Some(2));
    }

    #[test]
    fn a_stale_pod_means_progressing() {
        let mut seen = healthy();
        seen.pods[1].config_generation = Some(1);
        let s = observed_status(None, &seen, &at(1));
        assert_eq!(get(&s, READY).reason, "ConfigPending");
        assert_eq!(get(&s, PROGRESSING).reason, "PushingConfig");
    }

    #[test]
    fn failures_mean_degraded_with_the_pod_named() {
        let mut seen = healthy();
        seen.failures.push("a-1: connection refused".into());
        let s = observed_status(None, &seen, &at(1));
        assert_eq!(get(&s, DEGRADED).status, "True");
        assert!(get(&s, DEGRADED).message.contains("a-1"));
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let first = observed_status(None, &healthy(), &at(1));
        let same = observed_status(Some(&first), &healthy(), &at(50));
        assert_eq!(first, same);
        let mut seen = healthy();
        seen.ready_instances = 1;
        let flipped = observed_status(Some(&first), &seen, &at(99));
        assert_eq!(get(&flipped, READY).last_transition_time, at(99));
        assert_eq!(get(&flipped, DEGRADED).last_transition_time, at(1));
    }

    #[test]
    fn invalid_spec_keeps_ready_and_says_why() {
        let first = observed_status(None, &healthy(), &at(1));
        let s = invalid_status(
            Some(&first),
            3,
            "InvalidSpec",
            "slot 7: field `period`".into(),
            &at(5),
        );
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(get(&s, DEGRADED).status, "True");
        assert_eq!(get(&s, DEGRADED).reason, "InvalidSpec");
        assert!(get(&s, DEGRADED).message.contains("period"));
        assert_eq!(s.observed_generation, Some(3));
    }
}
