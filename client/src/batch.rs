//! Coalescing of concurrent acquires into `AcquireBatch` calls.
//!
//! Each endpoint has a lane: a task that takes the acquires waiting for
//! that instance and sends them as one call. A lane keeps at most
//! [`BATCHES_IN_FLIGHT`] calls outstanding; acquires that arrive while
//! they are all out wait for the first to come back and leave together.
//! So a lone acquire leaves at once, and under load a batch grows to what
//! arrived during one round trip (at most [`MAX_BATCH`]): no timer, and no
//! acquire waits longer than one batch's round trip before it is sent.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tonic::Status;
use tonic::transport::Channel;
use vss_proto::v1::acquire_outcome::Outcome;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{AcquireBatchRequest, AcquireRequest};

/// Most acquires in one call (the server takes up to 1,000).
pub(crate) const MAX_BATCH: usize = 256;
/// Calls a lane keeps outstanding at once.
pub(crate) const BATCHES_IN_FLIGHT: usize = 2;
/// Acquires a lane holds waiting; past it, acquires go unbatched.
const LANE_DEPTH: usize = 4096;

type Answer = oneshot::Sender<Result<Outcome, Status>>;

struct Pending {
    req: AcquireRequest,
    answer: Answer,
}

/// The lanes of one client, shared by its clones; their tasks stop when
/// the last clone is dropped.
#[derive(Default)]
pub(crate) struct Batcher {
    lanes: OnceLock<Vec<mpsc::Sender<Pending>>>,
    tasks: Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("started", &self.lanes.get().is_some())
            .finish()
    }
}

impl Batcher {
    /// Sends `req` to the instance at `lane` with the acquires waiting
    /// there. None when it could not be queued (the lane is full): the
    /// caller sends it alone.
    pub(crate) async fn submit(
        &self,
        lane: usize,
        req: AcquireRequest,
        grpcs: impl FnOnce() -> Vec<VssClient<Channel>>,
        timeout: Duration,
    ) -> Option<Result<Outcome, Status>> {
        let lanes = self.lanes.get_or_init(|| {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            grpcs()
                .into_iter()
                .map(|grpc| {
                    let (tx, rx) = mpsc::channel(LANE_DEPTH);
                    tasks.spawn(run_lane(grpc, rx, timeout));
                    tx
                })
                .collect()
        });
        let (answer, reply) = oneshot::channel();
        lanes.get(lane)?.try_send(Pending { req, answer }).ok()?;
        reply.await.ok()
    }
}

async fn run_lane(grpc: VssClient<Channel>, mut rx: mpsc::Receiver<Pending>, timeout: Duration) {
    let permits = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let mut sending = JoinSet::new();
    while let Some(first) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        sending.spawn(send(grpc.clone(), batch, timeout, permit));
        while sending.try_join_next().is_some() {}
    }
}

async fn send(
    mut grpc: VssClient<Channel>,
    batch: Vec<Pending>,
    timeout: Duration,
    _permit: OwnedSemaphorePermit,
) {
    let (requests, answers): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|p| (p.req, p.answer)).unzip();
    let count = requests.len();
    let call = grpc.acquire_batch(AcquireBatchRequest { requests });
    let answered = tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(format!(
                "no answer within {timeout:?}"
            )))
        });
    match answered {
        Ok(reply) => {
            let mut outcomes = reply.into_inner().outcomes.into_iter();
            for answer in answers {
                let outcome = outcomes.next().and_then(|o| o.outcome).ok_or_else(|| {
                    Status::internal(format!("the instance answered fewer than {count} acquires"))
                });
                let _ = answer.send(outcome);
            }
        }
        Err(status) => {
            for answer in answers {
                let _ = answer.send(Err(status.clone()));
            }
        }
    }
}
