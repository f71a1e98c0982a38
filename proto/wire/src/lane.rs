//! Coalescing of concurrent acquires into `AcquireBatch` calls.
//!
//! Each endpoint has a lane: a task that takes the acquires waiting for
//! that instance and sends them as one call. A lane keeps at most
//! [`BATCHES_IN_FLIGHT`] calls outstanding; acquires that arrive while
//! they are all out wait for the first to come back and leave together.
//! So a lone acquire leaves at once, and under load a batch grows to what
//! arrived during one round trip (at most [`MAX_BATCH`]): no timer, and no
//! acquire waits longer than one batch's round trip before it is sent.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tonic::metadata::MetadataMap;
use tonic::{Extensions, Status};
use vss_proto::v1::acquire_outcome::Outcome;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{AcquireBatchRequest, AcquireRequest};

/// Most acquires in one call (the server takes up to 1,000).
pub const MAX_BATCH: usize = 256;
/// Calls a lane keeps outstanding at once.
pub const BATCHES_IN_FLIGHT: usize = 2;
/// Acquires a lane holds waiting; past it, acquires go unbatched.
const LANE_DEPTH: usize = 4096;

type Answer = oneshot::Sender<Result<Outcome, Status>>;

/// What a lane sends its batches over: any channel a generated `VssClient`
/// can call through (a plain channel, or one with an interceptor).
pub trait Grpc:
    tonic::client::GrpcService<
        tonic::body::Body,
        Error: Into<tonic::codegen::StdError>,
        ResponseBody: http_body::Body<
            Data = Bytes,
            Error: Into<tonic::codegen::StdError> + Send,
        > + Send
                          + 'static,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
}

impl<T> Grpc for T where
    T: tonic::client::GrpcService<
            tonic::body::Body,
            Error: Into<tonic::codegen::StdError>,
            ResponseBody: http_body::Body<
                Data = Bytes,
                Error: Into<tonic::codegen::StdError> + Send,
            > + Send
                              + 'static,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

struct Pending {
    req: AcquireRequest,
    answer: Answer,
}

/// Acquires bound for one instance, coalesced into `AcquireBatch` calls
/// by a task that stops when the lane is dropped.
pub struct AcquireLane {
    tx: mpsc::Sender<Pending>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for AcquireLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquireLane")
            .field("waiting", &(LANE_DEPTH - self.tx.capacity()))
            .finish()
    }
}

impl Drop for AcquireLane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AcquireLane {
    /// A lane to the instance behind `grpc`, each call limited to
    /// `timeout` and carrying `metadata`. Must be called inside a Tokio
    /// runtime.
    pub fn start<T: Grpc>(grpc: VssClient<T>, timeout: Duration, metadata: MetadataMap) -> Self {
        let (tx, rx) = mpsc::channel(LANE_DEPTH);
        let task = tokio::spawn(run_lane(grpc, rx, timeout, metadata));
        Self { tx, task }
    }

    /// Sends `req` with the acquires waiting on this lane. None when it
    /// was not sent (the lane is full, or stopped): send it alone. Call
    /// failures (the instance down, the timeout) come back as the status
    /// of every acquire of the batch.
    pub async fn acquire(&self, req: AcquireRequest) -> Option<Result<Outcome, Status>> {
        let (answer, reply) = oneshot::channel();
        self.tx.try_send(Pending { req, answer }).ok()?;
        reply.await.ok()
    }
}

async fn run_lane<T: Grpc>(
    grpc: VssClient<T>,
    mut rx: mpsc::Receiver<Pending>,
    timeout: Duration,
    metadata: MetadataMap,
) {
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
        let request = tonic::Request::from_parts(
            metadata.clone(),
            Extensions::default(),
            AcquireBatchRequest::default(),
        );
        sending.spawn(send(grpc.clone(), request, batch, timeout, permit));
        while sending.try_join_next().is_some() {}
    }
    while sending.join_next().await.is_some() {}
}

async fn send<T: Grpc>(
    mut grpc: VssClient<T>,
    mut request: tonic::Request<AcquireBatchRequest>,
    batch: Vec<Pending>,
    timeout: Duration,
    _permit: OwnedSemaphorePermit,
) {
    let (requests, answers): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|p| (p.req, p.answer)).unzip();
    let count = requests.len();
    request.get_mut().requests = requests;
    request.set_timeout(timeout);
    let call = grpc.acquire_batch(request);
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
