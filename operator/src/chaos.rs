//! Scheduled pod deletion: when chaos is on, failure is routine.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::crd::Chaos;

/// Parses `30s`, `10m`, `1h`.
pub fn parse_interval(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// What chaos wants now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosStep {
    /// Chaos is off (or its interval invalid).
    Off,
    /// Kill a pod now.
    KillNow,
    /// Nothing yet; look again after this long.
    Wait(Duration),
}

/// Decides whether a pod dies now. A kill only happens while every
/// instance is ready, so chaos never stacks failures.
pub fn next_step(
    chaos: Option<&Chaos>,
    last_kill: Option<&str>,
    all_ready: bool,
    now: Timestamp,
) -> ChaosStep {
    let Some(chaos) = chaos.filter(|c| c.enabled) else {
        return ChaosStep::Off;
    };
    let Some(interval) = chaos.pod_kill_interval.as_deref().and_then(parse_interval) else {
        return ChaosStep::Off;
    };
    let last = last_kill.and_then(|t| t.parse::<Timestamp>().ok());
    let elapsed = last
        .map(|l| now.duration_since(l).unsigned_abs())
        .unwrap_or(interval);
    if elapsed < interval {
        ChaosStep::Wait(interval - elapsed)
    } else if all_ready {
        ChaosStep::KillNow
    } else {
        ChaosStep::Wait(Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(interval: &str) -> Chaos {
        Chaos {
            enabled: true,
            pod_kill_interval: Some(interval.into()),
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    #[test]
    fn parses_intervals() {
        assert_eq!(parse_interval("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_interval("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_interval("0m"), None);
        assert_eq!(parse_interval("5d"), None);
    }

    #[test]
    fn off_unless_enabled() {
        let mut c = on("1m");
        c.enabled = false;
        assert_eq!(next_step(Some(&c), None, true, t(0)), ChaosStep::Off);
        assert_eq!(next_step(None, None, true, t(0)), ChaosStep::Off);
    }

    #[test]
    fn kills_once_per_interval_and_only_when_all_ready() {
        let c = on("60s");
        assert_eq!(next_step(Some(&c), None, true, t(100)), ChaosStep::KillNow);
        let last = t(100).to_string();
        assert_eq!(
            next_step(Some(&c), Some(&last), true, t(130)),
            ChaosStep::Wait(Duration::from_secs(30))
        );
        assert_eq!(
            next_step(Some(&c), Some(&last), true, t(160)),
            ChaosStep::KillNow
        );
        assert!(matches!(
            next_step(Some(&c), Some(&last), false, t(160)),
            ChaosStep::Wait(_)
        ));
    }
}
