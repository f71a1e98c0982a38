//! The shell around [`decision`]: one owned task that reads and writes the
//! Lease, publishes the claim on a watch channel, and vacates the Lease when told to stop.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info, warn};

use crate::decision::{self, Decision};
use crate::{LeaseConfig, LeaseError};

/// After a 409 another writer got there first; re-read soon, but not in a hot loop if the
/// API keeps answering 409.
const CONFLICT_PAUSE: Duration = Duration::from_millis(100);

/// Campaigns for a Lease; see the [crate docs](crate) for the protocol.
#[derive(Debug)]
pub struct LeaseElection;

impl LeaseElection {
    /// Starts campaigning and returns at once with a handle whose
    /// [`is_leader`](LeaseHandle::is_leader) is `true` while this identity holds the Lease.
    ///
    /// Reads the Lease once before returning, so a missing RBAC rule or a wrong namespace
    /// fails here rather than leaving a pod that silently never leads. The campaign stops
    /// (and vacates the Lease) when `stop` is cancelled or the handle is shut down or dropped.
    pub async fn start(
        client: kube::Client,
        config: LeaseConfig,
        stop: CancellationToken,
    ) -> Result<LeaseHandle, LeaseError> {
        let seconds = config.validate()?;
        let api = Api::<Lease>::namespaced(client, &config.namespace);
        let first = api
            .get_opt(&config.name)
            .await
            .map_err(|source| api_error(&config, source))?;
        let (is_leader, receiver) = watch::channel(false);
        // A child token: shutting this election down must not cancel the caller's token.
        let stop = stop.child_token();
        let campaign = Campaign {
            api,
            seconds,
            config,
            is_leader,
            stop: stop.clone(),
            known: Known::Read(first),
            deadline: None,
        };
        Ok(LeaseHandle {
            is_leader: receiver,
            task: tokio::spawn(campaign.run()),
            _stop_on_drop: stop.drop_guard(),
        })
    }
}

/// The running campaign: its claim and its task.
#[derive(Debug)]
pub struct LeaseHandle {
    is_leader: watch::Receiver<bool>,
    task: JoinHandle<()>,
    // Dropping the handle stops the campaign too, so a forgotten handle cannot keep
    // renewing a Lease for a component that is gone.
    _stop_on_drop: DropGuard,
}

impl LeaseHandle {
    /// `true` while this identity holds the Lease. It turns `false` before the Lease is
    /// vacated on shutdown, and at the latest when the claim lapses by the local clock.
    pub fn is_leader(&self) -> watch::Receiver<bool> {
        self.is_leader.clone()
    }

    /// Stops campaigning, vacates the Lease if held, and waits for the task to finish.
    pub async fn shutdown(self) {
        let Self {
            task,
            _stop_on_drop: stop,
            ..
        } = self;
        drop(stop);
        if let Err(err) = task.await {
            warn!(error = %err, "lease election task failed");
        }
    }
}

/// Who holds the Lease now (`holderIdentity`), if anyone and not lapsed.
///
/// Compares `renewTime + leaseDurationSeconds` with the local clock, so it is only as
/// accurate as the clocks of the holder and this caller agree.
pub async fn current_holder(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<String>, LeaseError> {
    let api = Api::<Lease>::namespaced(client.clone(), namespace);
    let lease = api.get_opt(name).await.map_err(|source| LeaseError::Api {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source,
    })?;
    Ok(lease.as_ref().and_then(|lease| {
        decision::live_holder(lease, Timestamp::now()).map(|(holder, _)| holder.to_owned())
    }))
}

fn api_error(config: &LeaseConfig, source: kube::Error) -> LeaseError {
    LeaseError::Api {
        namespace: config.namespace.clone(),
        name: config.name.clone(),
        source,
    }
}

/// What the campaign knows about the Lease before its next round.
#[expect(
    clippy::large_enum_variant,
    reason = "one per campaign, never in a collection; boxing would only add an allocation per round"
)]
enum Known {
    /// Must be read from the API.
    Stale,
    /// Just read or written (`None`: it does not exist).
    Read(Option<Lease>),
}

struct Campaign {
    api: Api<Lease>,
    config: LeaseConfig,
    seconds: i32,
    is_leader: watch::Sender<bool>,
    stop: CancellationToken,
    known: Known,
    /// While we lead: when our claim lapses by the local clock, counted from just before
    /// the write that renewed it, so it never ends later than the Lease says.
    deadline: Option<Instant>,
}

/// Why an API call was abandoned.
enum Interrupted {
    /// The campaign is stopping.
    Stopped,
    /// Our claim lapsed while the call hung: leadership must end now, not whenever the
    /// client gives up on the request.
    Lapsed,
}

impl Campaign {
    async fn run(mut self) {
        loop {
            let wake = match self.round().await {
                Ok(wake) => wake,
                Err(Interrupted::Stopped) => break,
                // The check below steps down.
                Err(Interrupted::Lapsed) => Instant::now(),
            };
            // Leadership ends at the deadline even if the renewal is still failing.
            let wake = self.deadline.map_or(wake, |deadline| wake.min(deadline));
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                () = tokio::time::sleep_until(wake) => {}
            }
            if self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                self.lose("claim lapsed before it could be renewed");
            }
        }
        self.vacate().await;
    }

    /// Reads the Lease if needed, acts on it, and says when to run the next round.
    async fn round(&mut self) -> Result<Instant, Interrupted> {
        let lease = match std::mem::replace(&mut self.known, Known::Stale) {
            Known::Read(lease) => lease,
            Known::Stale => match self.call(self.api.get_opt(&self.config.name)).await? {
                Ok(lease) => lease,
                Err(err) => return Ok(self.failed("read", &err)),
            },
        };
        // Taken before the write so the deadline errs early, never late.
        let started = Instant::now();
        let now = Timestamp::now();
        let identity = self.config.identity.as_str();
        let post = PostParams::default();
        let written = match decision::decide(lease.as_ref(), identity, now) {
            Decision::Wait { holder, until } => {
                if self.deadline.is_some() {
                    self.lose(&format!("Lease is held by {holder}"));
                }
                let left = until
                    .duration_since(now)
                    .try_into()
                    .unwrap_or(Duration::ZERO);
                // Re-read at least once per duration: the holder may vacate early.
                return Ok(started + left.min(self.config.duration));
            }
            Decision::Create => {
                let lease = decision::created(&self.config.name, identity, now, self.seconds);
                let create = self.api.create(&post, &lease);
                self.call(create).await?
            }
            Decision::Claim(current) => {
                let lease = decision::claimed(current, identity, now, self.seconds);
                let replace = self.api.replace(&self.config.name, &post, &lease);
                self.call(replace).await?
            }
        };
        match written {
            Ok(lease) => {
                self.win(&lease, started);
                self.known = Known::Read(Some(lease));
                Ok(started + (self.config.duration - self.config.grace))
            }
            // 409 on create (AlreadyExists) or replace (stale resourceVersion): another
            // writer won this race. 404 on replace: the Lease was deleted. Either way, what
            // we know is out of date; the next round reads it and decides afresh.
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_not_found() => {
                debug!(lease = %self.config.name, reason = %status.reason, "lost a write race");
                Ok(Instant::now() + CONFLICT_PAUSE)
            }
            Err(err) => Ok(self.failed("write", &err)),
        }
    }

    /// Runs an API call unless the campaign is told to stop or our claim lapses first. A
    /// call that takes longer than `duration` fails like any API error: the client's own
    /// read timeout is minutes long, and a hung request must not stall the campaign.
    async fn call<T>(
        &self,
        call: impl Future<Output = kube::Result<T>>,
    ) -> Result<kube::Result<T>, Interrupted> {
        let bounded = async {
            tokio::time::timeout(self.config.duration, call)
                .await
                .unwrap_or_else(|elapsed| Err(kube::Error::Service(Box::new(elapsed))))
        };
        let lapsed = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = self.stop.cancelled() => Err(Interrupted::Stopped),
            () = lapsed => Err(Interrupted::Lapsed),
            out = bounded => Ok(out),
        }
    }

    /// Logs an API failure and says when to retry: soon enough that a leader gets several
    /// tries within its grace period.
    fn failed(&self, what: &str, err: &kube::Error) -> Instant {
        warn!(lease = %self.config.name, error = %err, "lease {what} failed; retrying");
        Instant::now() + self.config.grace / 4
    }

    fn win(&mut self, lease: &Lease, started: Instant) {
        self.deadline = Some(started + self.config.duration);
        let newly = self
            .is_leader
            .send_if_modified(|leader| !std::mem::replace(leader, true));
        if newly {
            let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions);
            info!(
                lease = %self.config.name,
                identity = %self.config.identity,
                transitions,
                "acquired the Lease: now leader"
            );
        } else {
            debug!(lease = %self.config.name, "renewed the Lease");
        }
    }

    fn lose(&mut self, why: &str) {
        self.deadline = None;
        self.known = Known::Stale;
        if self
            .is_leader
            .send_if_modified(|leader| std::mem::replace(leader, false))
        {
            warn!(lease = %self.config.name, identity = %self.config.identity, "lost the Lease: {why}");
        }
    }

    /// Steps down, then clears the holder so a successor need not wait for the claim to
    /// lapse. Reads first: a claim written by a call abandoned on stop may have landed.
    /// Bounded by `grace`, because shutdown must not hang on an unreachable API; the claim
    /// then simply lapses.
    async fn vacate(&mut self) {
        self.lose("shutting down");
        let vacate = async {
            let lease = self.api.get_opt(&self.config.name).await?;
            let Some(lease) = lease else { return Ok(false) };
            if decision::holder(&lease) != Some(self.config.identity.as_str()) {
                return Ok(false);
            }
            let vacated = decision::vacated(&lease);
            self.api
                .replace(&self.config.name, &PostParams::default(), &vacated)
                .await
                .map(|_| true)
        };
        match tokio::time::timeout(self.config.grace, vacate).await {
            Ok(Ok(true)) => info!(lease = %self.config.name, "vacated the Lease"),
            Ok(Ok(false)) => {}
            Ok(Err(err)) => {
                warn!(lease = %self.config.name, error = %err, "could not vacate the Lease; it will lapse")
            }
            Err(_) => {
                warn!(lease = %self.config.name, "vacating the Lease timed out; it will lapse")
            }
        }
    }
}
