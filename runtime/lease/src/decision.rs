//! The election's pure core: read a Lease as of `now`, decide what to do, and build the
//! object to write. No I/O and no clock, so every case is a plain unit test.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// What one round of the campaign should do with the Lease it just read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision<'a> {
    /// There is no Lease object yet: create one naming us.
    Create,
    /// The Lease is free, lapsed, or already ours: write our claim over its
    /// `resourceVersion`, so a concurrent writer makes exactly one of us fail with 409.
    Claim(&'a Lease),
    /// Someone else holds a live claim until `until` (by its `renewTime`).
    Wait { holder: String, until: Timestamp },
}

pub(crate) fn decide<'a>(lease: Option<&'a Lease>, identity: &str, now: Timestamp) -> Decision<'a> {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    match live_holder(lease, now) {
        Some((holder, until)) if holder != identity => Decision::Wait {
            holder: holder.to_owned(),
            until,
        },
        _ => Decision::Claim(lease),
    }
}

/// The holder and the end of its claim, if the Lease names a holder whose claim has not
/// lapsed at `now`. A claim without `renewTime` or with a non-positive duration has lapsed:
/// nothing in it says how long it lasts, and waiting forever would stall the election.
pub(crate) fn live_holder(lease: &Lease, now: Timestamp) -> Option<(&str, Timestamp)> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref()?.0;
    let seconds = spec.lease_duration_seconds.filter(|s| *s > 0)?;
    // Past the end of time the claim is as good as endless; saturating keeps it held.
    let until = renewed
        .checked_add(SignedDuration::from_secs(i64::from(seconds)))
        .unwrap_or(Timestamp::MAX);
    (now < until).then_some((holder, until))
}

/// The holder named by the Lease, live or not.
pub(crate) fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
}

/// A new Lease object held by `identity`.
pub(crate) fn created(name: &str, identity: &str, now: Timestamp, seconds: i32) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(seconds),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

/// `lease` claimed (or renewed) by `identity`. Keeps `metadata.resourceVersion` so the
/// replace is conditional. A change of holder sets `acquireTime` and counts a transition,
/// as client-go does; a renewal only moves `renewTime`.
pub(crate) fn claimed(lease: &Lease, identity: &str, now: Timestamp, seconds: i32) -> Lease {
    let mut lease = lease.clone();
    let previous = holder(&lease).map(str::to_owned);
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if previous.as_deref() != Some(identity) {
        spec.holder_identity = Some(identity.to_owned());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(seconds);
    lease
}

/// `lease` with no holder, so the next candidate can claim it at once instead of waiting
/// for the claim to lapse. Keeps the transition count and `resourceVersion`.
pub(crate) fn vacated(lease: &Lease) -> Lease {
    let mut lease = lease.clone();
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
    }
    lease
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("test timestamps are in range")
    }

    fn held(holder: &str, renewed: i64, seconds: i32, transitions: i32) -> Lease {
        let mut lease = created("vss-leader", holder, at(renewed), seconds);
        lease.metadata.resource_version = Some("7".into());
        if let Some(spec) = lease.spec.as_mut() {
            spec.lease_transitions = Some(transitions);
        }
        lease
    }

    #[test]
    fn creates_when_there_is_no_lease() {
        assert_eq!(decide(None, "vss-0", at(NOW)), Decision::Create);
    }

    #[test]
    fn waits_for_a_live_claim_of_another_pod() {
        let lease = held("vss-1", NOW - 1, 5, 0);
        assert_eq!(
            decide(Some(&lease), "vss-0", at(NOW)),
            Decision::Wait {
                holder: "vss-1".into(),
                until: at(NOW + 4)
            }
        );
    }

    #[test]
    fn claims_a_lapsed_claim_of_another_pod() {
        let lease = held("vss-1", NOW - 5, 5, 0);
        assert_eq!(
            decide(Some(&lease), "vss-0", at(NOW)),
            Decision::Claim(&lease)
        );
    }

    #[test]
    fn renews_its_own_live_claim() {
        let lease = held("vss-0", NOW - 1, 5, 0);
        assert_eq!(
            decide(Some(&lease), "vss-0", at(NOW)),
            Decision::Claim(&lease)
        );
    }

    #[test]
    fn claims_a_lease_without_holder_or_timing() {
        let mut lease = held("vss-1", NOW, 5, 0);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some("vss-1".into()),
            ..LeaseSpec::default()
        });
        assert_eq!(
            decide(Some(&lease), "vss-0", at(NOW)),
            Decision::Claim(&lease)
        );
        let free = vacated(&held("vss-1", NOW, 5, 0));
        assert_eq!(
            decide(Some(&free), "vss-0", at(NOW)),
            Decision::Claim(&free)
        );
        lease.spec = None;
        assert_eq!(
            decide(Some(&lease), "vss-0", at(NOW)),
            Decision::Claim(&lease)
        );
    }

    #[test]
    fn a_takeover_counts_a_transition_and_keeps_the_resource_version() {
        let lease = claimed(&held("vss-1", NOW - 9, 5, 3), "vss-0", at(NOW), 2);
        let spec = lease.spec.as_ref().expect("claimed sets a spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("vss-0"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(NOW))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(NOW))));
        assert_eq!(spec.lease_duration_seconds, Some(2));
        assert_eq!(lease.metadata.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn a_renewal_moves_only_renew_time() {
        let before = held("vss-0", NOW - 3, 5, 2);
        let after = claimed(&before, "vss-0", at(NOW), 5);
        let (b, a) = (before.spec.expect("set"), after.spec.expect("set"));
        assert_eq!(a.renew_time, Some(MicroTime(at(NOW))));
        assert_eq!(a.acquire_time, b.acquire_time);
        assert_eq!(a.lease_transitions, Some(2));
    }

    #[test]
    fn a_vacated_lease_has_no_live_holder() {
        let lease = vacated(&held("vss-0", NOW, 5, 2));
        assert_eq!(live_holder(&lease, at(NOW)), None);
        assert_eq!(lease.spec.and_then(|s| s.lease_transitions), Some(2));
    }
}
