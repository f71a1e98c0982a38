//! The election against an in-memory Kubernetes API (see `fake_api`), with 3 s claims
//! renewed 1 s after each write: short tests, and 2 s of slack so a loaded CI machine does
//! not make a leader miss its renewal. Every wait is bounded, so a broken election fails a
//! test instead of hanging it.

mod fake_api;

use std::time::Duration;

use fake_api::{FakeLeaseApi, NAME, NAMESPACE, seconds_ago};
use http::{Method, StatusCode};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use vss_lease::{LeaseConfig, LeaseElection, LeaseError, LeaseHandle, current_holder};

/// Far longer than any step takes, short enough that a failure shows up quickly.
const PATIENCE: Duration = Duration::from_secs(10);

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        duration: Duration::from_secs(3),
        grace: Duration::from_secs(2),
        ..LeaseConfig::new(NAMESPACE, NAME, identity)
    }
}

async fn start(api: &FakeLeaseApi, identity: &str) -> LeaseHandle {
    LeaseElection::start(api.client(), config(identity), CancellationToken::new())
        .await
        .expect("the election starts")
}

async fn leader_becomes(is_leader: &mut watch::Receiver<bool>, want: bool) {
    timeout(PATIENCE, is_leader.wait_for(|leader| *leader == want))
        .await
        .unwrap_or_else(|_| panic!("is_leader did not become {want}"))
        .map(|_| ())
        .expect("the election task is alive");
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let poll = async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(PATIENCE, poll)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn spec(lease: Option<Lease>) -> LeaseSpec {
    lease.and_then(|l| l.spec).expect("the Lease has a spec")
}

fn holder(api: &FakeLeaseApi) -> Option<String> {
    api.lease()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn acquires_a_missing_lease_by_creating_it() {
    let api = FakeLeaseApi::new();
    let handle = start(&api, "vss-0").await;
    leader_becomes(&mut handle.is_leader(), true).await;

    let served = api.served();
    assert_eq!(served[0].method, Method::GET);
    assert_eq!(served[0].status, StatusCode::NOT_FOUND);
    assert_eq!(served[1].method, Method::POST);
    assert_eq!(
        served[1].path,
        "/apis/coordination.k8s.io/v1/namespaces/vss/leases"
    );
    assert_eq!(served[1].status, StatusCode::CREATED);
    let sent = spec(served[1].body.clone());
    assert_eq!(sent.holder_identity.as_deref(), Some("vss-0"));
    assert_eq!(sent.lease_duration_seconds, Some(3));
    assert_eq!(sent.lease_transitions, Some(0));
    assert!(sent.renew_time.is_some() && sent.acquire_time.is_some());
    handle.shutdown().await;
}

#[tokio::test]
async fn renews_its_claim_over_the_resource_version_it_wrote() {
    let api = FakeLeaseApi::new();
    let handle = start(&api, "vss-0").await;
    let mut is_leader = handle.is_leader();
    leader_becomes(&mut is_leader, true).await;
    is_leader.borrow_and_update();
    let first = api.lease().expect("the Lease was created");
    let first_version = first.metadata.resource_version.clone();

    eventually("a renewal", || {
        api.lease().map(|l| l.metadata.resource_version) != Some(first_version.clone())
    })
    .await;

    let renewal = api
        .served()
        .into_iter()
        .find(|s| s.method == Method::PUT)
        .expect("the renewal is a replace");
    assert_eq!(renewal.status, StatusCode::OK);
    let sent = renewal.body.expect("the replace carries the Lease");
    assert_eq!(sent.metadata.resource_version, first_version);
    let (before, after) = (spec(Some(first)), spec(api.lease()));
    assert_eq!(after.holder_identity.as_deref(), Some("vss-0"));
    assert!(
        after.renew_time > before.renew_time,
        "renewTime moved forward"
    );
    assert_eq!(after.acquire_time, before.acquire_time);
    assert_eq!(after.lease_transitions, before.lease_transitions);
    assert!(*is_leader.borrow());
    assert!(
        !is_leader.has_changed().expect("alive"),
        "leadership never flapped"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn steps_down_when_its_renewal_conflicts_with_a_new_holder() {
    let api = FakeLeaseApi::new();
    let handle = start(&api, "vss-0").await;
    let mut is_leader = handle.is_leader();
    leader_becomes(&mut is_leader, true).await;

    api.write_as_other_pod("vss-1", Timestamp::now(), 2, 1);
    leader_becomes(&mut is_leader, false).await;

    let served = api.served();
    let conflict = served
        .iter()
        .position(|s| s.method == Method::PUT && s.status == StatusCode::CONFLICT)
        .expect("the renewal hit a 409");
    let ours = spec(served[conflict].body.clone());
    assert_eq!(ours.holder_identity.as_deref(), Some("vss-0"));
    assert!(
        served[conflict + 1..]
            .iter()
            .any(|s| s.method == Method::GET),
        "re-read the Lease after the conflict"
    );
    assert_eq!(
        holder(&api).as_deref(),
        Some("vss-1"),
        "did not overwrite the new holder"
    );
    handle.shutdown().await;
    assert_eq!(
        holder(&api).as_deref(),
        Some("vss-1"),
        "did not vacate a Lease it does not hold"
    );
}

#[tokio::test]
async fn takes_over_a_lapsed_claim_and_counts_the_transition() {
    let api = FakeLeaseApi::new();
    api.write_as_other_pod("vss-1", seconds_ago(10), 2, 3);
    let seeded_version = api.lease().and_then(|l| l.metadata.resource_version);

    let handle = start(&api, "vss-0").await;
    leader_becomes(&mut handle.is_leader(), true).await;

    let takeover = api
        .served()
        .into_iter()
        .find(|s| s.method == Method::PUT && s.status == StatusCode::OK)
        .expect("the takeover is a replace");
    let sent = takeover.body.expect("the replace carries the Lease");
    assert_eq!(sent.metadata.resource_version, seeded_version);
    let now = spec(api.lease());
    assert_eq!(now.holder_identity.as_deref(), Some("vss-0"));
    assert_eq!(now.lease_transitions, Some(4));
    assert!(now.acquire_time.is_some_and(|t| t.0 > seconds_ago(5)));
    handle.shutdown().await;
}

#[tokio::test]
async fn waits_while_another_pod_holds_a_live_claim() {
    let api = FakeLeaseApi::new();
    api.write_as_other_pod("vss-1", Timestamp::now(), 30, 0);

    let handle = start(&api, "vss-0").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert!(!*handle.is_leader().borrow());
    assert!(
        api.served().iter().all(|s| s.method == Method::GET),
        "wrote nothing over a live claim"
    );
    handle.shutdown().await;
    assert_eq!(holder(&api).as_deref(), Some("vss-1"));
}

#[tokio::test]
async fn shutdown_steps_down_and_vacates_the_lease() {
    let api = FakeLeaseApi::new();
    let handle = start(&api, "vss-0").await;
    let mut is_leader = handle.is_leader();
    leader_becomes(&mut is_leader, true).await;

    timeout(PATIENCE, handle.shutdown())
        .await
        .expect("shutdown finishes");

    assert!(!*is_leader.borrow());
    let left = spec(api.lease());
    assert_eq!(left.holder_identity, None);
    assert_eq!(
        left.lease_transitions,
        Some(0),
        "the transition count survives"
    );
}

#[tokio::test]
async fn cancelling_stop_ends_the_campaign_and_vacates_the_lease() {
    let api = FakeLeaseApi::new();
    let stop = CancellationToken::new();
    let handle = LeaseElection::start(api.client(), config("vss-0"), stop.clone())
        .await
        .expect("the election starts");
    let mut is_leader = handle.is_leader();
    leader_becomes(&mut is_leader, true).await;

    stop.cancel();
    leader_becomes(&mut is_leader, false).await;
    eventually("the Lease to be vacated", || holder(&api).is_none()).await;
    timeout(PATIENCE, handle.shutdown())
        .await
        .expect("the task already ended");
}

#[tokio::test]
async fn steps_down_when_the_api_is_unreachable_and_returns_once_it_is_back() {
    let api = FakeLeaseApi::new();
    let handle = start(&api, "vss-0").await;
    let mut is_leader = handle.is_leader();
    leader_becomes(&mut is_leader, true).await;

    api.set_unavailable(true);
    leader_becomes(&mut is_leader, false).await;

    api.set_unavailable(false);
    leader_becomes(&mut is_leader, true).await;
    assert_eq!(holder(&api).as_deref(), Some("vss-0"));
    handle.shutdown().await;
}

#[tokio::test]
async fn steps_down_when_a_renewal_hangs_past_the_claim() {
    let api = FakeLeaseApi::new();
    let handle = start(&api, "vss-0").await;
    let mut is_leader = handle.is_leader();
    leader_becomes(&mut is_leader, true).await;

    api.set_hanging(true);
    leader_becomes(&mut is_leader, false).await;

    api.set_hanging(false);
    leader_becomes(&mut is_leader, true).await;
    handle.shutdown().await;
}

#[tokio::test]
async fn a_second_candidate_takes_over_when_the_leader_shuts_down() {
    let api = FakeLeaseApi::new();
    let first = start(&api, "vss-0").await;
    leader_becomes(&mut first.is_leader(), true).await;
    let second = start(&api, "vss-1").await;
    let mut second_leads = second.is_leader();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !*second_leads.borrow(),
        "only one leader while the first renews"
    );

    first.shutdown().await;
    leader_becomes(&mut second_leads, true).await;
    assert_eq!(holder(&api).as_deref(), Some("vss-1"));
    assert_eq!(spec(api.lease()).lease_transitions, Some(1));
    second.shutdown().await;
}

#[tokio::test]
async fn current_holder_names_live_holders_only() {
    let api = FakeLeaseApi::new();
    let client = api.client();
    let ask = || current_holder(&client, NAMESPACE, NAME);

    assert_eq!(ask().await.expect("readable"), None, "no Lease");
    api.write_as_other_pod("vss-1", Timestamp::now(), 5, 0);
    assert_eq!(ask().await.expect("readable").as_deref(), Some("vss-1"));
    api.write_as_other_pod("vss-1", seconds_ago(10), 5, 0);
    assert_eq!(ask().await.expect("readable"), None, "lapsed claim");

    api.set_unavailable(true);
    assert!(matches!(ask().await, Err(LeaseError::Api { .. })));
}

#[tokio::test]
async fn start_rejects_an_invalid_config_without_calling_the_api() {
    let api = FakeLeaseApi::new();
    let config = LeaseConfig {
        grace: Duration::from_secs(3),
        ..config("vss-0")
    };
    let started = LeaseElection::start(api.client(), config, CancellationToken::new()).await;
    assert!(matches!(
        started,
        Err(LeaseError::InvalidConfig { field: "grace", .. })
    ));
    assert!(api.served().is_empty());
}
