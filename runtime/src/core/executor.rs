//! The slot executor: Wasm calls leave the async reactor.
//!
//! Every slot's instance lives on a worker thread of its own, fed by a
//! bounded queue. The reactor only enqueues and awaits the answer, so a slot
//! whose calls run to their deadline holds up its own queue and nothing
//! else: not the other slots, not the mesh heartbeats, not the probes.
//!
//! A thread per slot rather than a shared pool: a pool sized from the
//! cores (one worker on a 2-core machine) lets one slow slot take every
//! worker, which is the stall this module exists to remove. A slot thread
//! is parked while its queue is empty, and there are at most 100.
//!
//! Requests that queue up while a call runs go into the module together as
//! one `handle-batch` call, in arrival order: under load that is the fast
//! path, one crossing into Wasm for many requests. Ticks, snapshots and
//! merges go through the same queue, so they are ordered with the calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use vss_slot_host::{CallError, Context, Reply, Request, SlotInstance};

use crate::ops::metrics::SlotMetrics;

/// Bounds of every slot's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Requests a slot holds waiting; one more is refused at once.
    pub depth: usize,
    /// Most requests handed to the module in one `handle-batch` call. The
    /// batch shares one call deadline, so this also bounds how many
    /// requests one slow call can fail.
    pub max_batch: usize,
    /// Longest a request may wait in the queue; past it, it is answered
    /// without running.
    pub max_wait: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            depth: 1024,
            max_batch: 64,
            max_wait: Duration::from_secs(1),
        }
    }
}

/// Why a job did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error(
        "queue is full ({depth} requests waiting); retry later or spread the load over more slots"
    )]
    Full { depth: usize },
    #[error("request waited {} ms in the queue, past its {} ms limit, and was not run", .waited.as_millis(), .limit.as_millis())]
    Expired { waited: Duration, limit: Duration },
    #[error("slot was stopped (replaced by a new configuration) before the request ran")]
    Stopped,
    #[error(transparent)]
    Call(#[from] CallError),
}

type Work = Box<dyn FnOnce(&mut SlotInstance, Context) + Send>;

enum Job {
    /// A request the module may see together with others.
    Handle {
        req: Request,
        queued: Instant,
        answer: oneshot::Sender<Result<Reply, QueueError>>,
    },
    /// Requests that arrived together (one `AcquireBatch`): answered
    /// together, so the whole batch costs one hop to the slot's thread.
    Batch {
        reqs: Vec<Request>,
        queued: Instant,
        answer: oneshot::Sender<Vec<Result<Reply, QueueError>>>,
    },
    /// Anything else (tick, snapshot, merge, delivery reports): runs alone.
    Run { work: Work, queued: Instant },
}

/// Where the next worker's version starts.
static VERSION_BASE: AtomicU64 = AtomicU64::new(0);

/// One slot's queue and the thread that owns its instance. Dropping it
/// closes the queue; the thread finishes what is queued and ends.
pub struct SlotWorker {
    queue: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    limits: QueueLimits,
    metrics: SlotMetrics,
    /// Bumped by every call into the instance; replication pushes a slot
    /// when its version moved.
    version: Arc<AtomicU64>,
}

impl std::fmt::Debug for SlotWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotWorker")
            .field("limits", &self.limits)
            .field("version", &self.version())
            .finish()
    }
}

impl SlotWorker {
    /// Moves `instance` onto a new thread named after the slot.
    pub fn start(
        slot: u8,
        instance: SlotInstance,
        limits: QueueLimits,
        metrics: SlotMetrics,
    ) -> std::io::Result<Self> {
        let (queue, jobs) = std::sync::mpsc::sync_channel(limits.depth);
        // Versions of a slot restarted by a reload continue above those of
        // the worker it replaces, so "pushed up to version v" stays true.
        let base = VERSION_BASE.fetch_add(1 << 32, Ordering::Relaxed);
        let version = Arc::new(AtomicU64::new(base));
        let thread = {
            let (metrics, version) = (metrics.clone(), version.clone());
            std::thread::Builder::new()
                .name(format!("vss-slot-{slot}"))
                .spawn(move || {
                    Worker {
                        instance,
                        jobs,
                        limits,
                        metrics,
                        version,
                        held: None,
                    }
                    .run();
                })?
        };
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
            limits,
            metrics,
            version,
        })
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// Runs `req` in its turn, possibly batched with its neighbours.
    pub async fn handle(&self, req: Request) -> Result<Reply, QueueError> {
        let (answer, reply) = oneshot::channel();
        self.enqueue(Job::Handle {
            req,
            queued: Instant::now(),
            answer,
        })?;
        answered(reply).await.unwrap_or(Err(QueueError::Stopped))
    }

    /// Runs `reqs` in their turn, in order, handed to the module
    /// `max_batch` at a time; one answer per request.
    pub async fn handle_all(
        &self,
        reqs: Vec<Request>,
    ) -> Result<Vec<Result<Reply, QueueError>>, QueueError> {
        let (answer, replies) = oneshot::channel();
        self.enqueue(Job::Batch {
            reqs,
            queued: Instant::now(),
            answer,
        })?;
        answered(replies).await.ok_or(QueueError::Stopped)
    }

    /// Runs `f` on the instance in its turn, alone, and answers with the
    /// version the instance had for it: every later call's is higher.
    pub async fn run_versioned<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SlotInstance, Context) -> Result<T, CallError> + Send + 'static,
    ) -> Result<(u64, T), QueueError> {
        let version = self.version.clone();
        // Read on the slot's thread, inside the job: no other call runs
        // between the version's bump for this job and the read.
        self.run(move |instance, ctx| {
            let at = version.load(Ordering::Relaxed);
            f(instance, ctx).map(|t| (at, t))
        })
        .await
    }

    /// Runs `f` on the instance in its turn, alone.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SlotInstance, Context) -> Result<T, CallError> + Send + 'static,
    ) -> Result<T, QueueError> {
        self.queue_run(f)?.await
    }

    /// Queues `f` now, before anything queued after this returns; the
    /// future answers once it ran.
    pub fn queue_run<T, F>(
        &self,
        f: F,
    ) -> Result<impl Future<Output = Result<T, QueueError>> + use<T, F>, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SlotInstance, Context) -> Result<T, CallError> + Send + 'static,
    {
        let (answer, reply) = oneshot::channel();
        let work: Work = Box::new(move |instance, ctx| {
            let _ = answer.send(f(instance, ctx).map_err(QueueError::from));
        });
        self.enqueue(Job::Run {
            work,
            queued: Instant::now(),
        })?;
        Ok(async move { answered(reply).await.unwrap_or(Err(QueueError::Stopped)) })
    }

    fn enqueue(&self, job: Job) -> Result<(), QueueError> {
        let queue = self.queue.as_ref().ok_or(QueueError::Stopped)?;
        // Counted before the send so the worker's decrement never runs first.
        self.metrics.queue_depth.inc();
        match queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.metrics.queue_depth.dec();
                Err(match e {
                    TrySendError::Full(_) => QueueError::Full {
                        depth: self.limits.depth,
                    },
                    TrySendError::Disconnected(_) => QueueError::Stopped,
                })
            }
        }
    }
}

impl Drop for SlotWorker {
    fn drop(&mut self) {
        self.queue = None;
        // The thread ends once it has answered what was queued, within a
        // call deadline or so; joining here would block whoever dropped
        // the last reference (possibly the reactor), so only a finished
        // thread is joined.
        if let Some(thread) = self.thread.take_if(|t| t.is_finished()) {
            let _ = thread.join();
        }
    }
}

/// The slot thread's answer; None if it dropped the job unanswered.
///
/// Under `cfg(test)` a task of tokio's blocking pool waits as long as the
/// caller does: a paused test clock does not advance while a blocking task
/// runs, so a Wasm call takes no virtual time in the in-process cluster
/// tests (otherwise the clock would jump to the next timer while the slot
/// thread works, and fire deadlines that real time never reached). A
/// caller that leaves still closes its receiver, as in production.
async fn answered<T>(reply: oneshot::Receiver<T>) -> Option<T> {
    #[cfg(test)]
    let (_waiting, still) = std::sync::mpsc::channel::<()>();
    #[cfg(test)]
    drop(tokio::task::spawn_blocking(move || {
        let _ = still.recv();
    }));
    reply.await.ok()
}

struct Waiting {
    req: Request,
    answer: oneshot::Sender<Result<Reply, QueueError>>,
}

/// The thread side of a [`SlotWorker`].
struct Worker {
    instance: SlotInstance,
    jobs: Receiver<Job>,
    limits: QueueLimits,
    metrics: SlotMetrics,
    version: Arc<AtomicU64>,
    /// A job taken while filling a batch that could not join it.
    held: Option<Job>,
}

impl Worker {
    fn run(mut self) {
        while let Some(job) = self.next() {
            match job {
                Job::Run { work, .. } => self.call(|instance, ctx| work(instance, ctx)),
                Job::Batch {
                    reqs,
                    queued,
                    answer,
                } => self.handle_all(reqs, queued, answer),
                Job::Handle {
                    req,
                    queued,
                    answer,
                } => {
                    let mut batch = Vec::new();
                    self.admit(&mut batch, req, queued, answer);
                    while batch.len() < self.limits.max_batch {
                        match self.jobs.try_recv() {
                            Ok(Job::Handle {
                                req,
                                queued,
                                answer,
                            }) => {
                                self.took(queued);
                                self.admit(&mut batch, req, queued, answer);
                            }
                            Ok(other) => {
                                self.held = Some(other);
                                break;
                            }
                            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                        }
                    }
                    self.handle(batch);
                }
            }
        }
    }

    /// The next job, blocking while the queue is empty; None once the
    /// queue is closed and drained.
    fn next(&mut self) -> Option<Job> {
        if let Some(job) = self.held.take() {
            return Some(job);
        }
        let job = self.jobs.recv().ok()?;
        self.took(match &job {
            Job::Handle { queued, .. } | Job::Batch { queued, .. } | Job::Run { queued, .. } => {
                *queued
            }
        });
        Some(job)
    }

    fn took(&self, queued: Instant) {
        self.metrics.queue_depth.dec();
        self.metrics
            .queue_wait_seconds
            .observe(queued.elapsed().as_secs_f64());
    }

    /// Adds a request to the batch unless its caller is gone (the client's
    /// deadline passed and the server dropped the call) or it waited too
    /// long, in which case it is answered without running.
    fn admit(
        &self,
        batch: &mut Vec<Waiting>,
        req: Request,
        queued: Instant,
        answer: oneshot::Sender<Result<Reply, QueueError>>,
    ) {
        if answer.is_closed() {
            return;
        }
        match self.expired(queued) {
            Some(expired) => {
                let _ = answer.send(Err(expired));
            }
            None => batch.push(Waiting { req, answer }),
        }
    }

    /// Why a job queued at `queued` must not run, if it waited too long.
    fn expired(&self, queued: Instant) -> Option<QueueError> {
        let waited = queued.elapsed();
        (waited > self.limits.max_wait).then_some(QueueError::Expired {
            waited,
            limit: self.limits.max_wait,
        })
    }

    /// Hands `reqs` to the module as one `handle-batch` call; one answer
    /// per request, in order.
    fn handle_batch(&mut self, reqs: &[Request]) -> Vec<Result<Reply, QueueError>> {
        self.metrics.batch_size.observe(reqs.len() as f64);
        let mut replies = Vec::with_capacity(reqs.len());
        self.call(|instance, ctx| match instance.handle_batch(ctx, reqs) {
            Ok(answered) => {
                let mut answered = answered.into_iter();
                replies.extend(reqs.iter().map(|_| {
                    answered
                        .next()
                        .unwrap_or_else(|| Err(short_batch()))
                        .map_err(|e| CallError::Slot(e).into())
                }));
            }
            Err(e) => replies.extend(reqs.iter().map(|_| Err(e.clone().into()))),
        });
        replies
    }

    fn handle_all(
        &mut self,
        reqs: Vec<Request>,
        queued: Instant,
        answer: oneshot::Sender<Vec<Result<Reply, QueueError>>>,
    ) {
        if answer.is_closed() {
            return;
        }
        if let Some(expired) = self.expired(queued) {
            let _ = answer.send(vec![Err(expired); reqs.len()]);
            return;
        }
        let mut replies = Vec::with_capacity(reqs.len());
        for chunk in reqs.chunks(self.limits.max_batch.max(1)) {
            replies.extend(self.handle_batch(chunk));
        }
        let _ = answer.send(replies);
    }

    fn handle(&mut self, mut batch: Vec<Waiting>) {
        match batch.len() {
            0 => {}
            1 => {
                let Waiting { req, answer } = batch.remove(0);
                self.call(|instance, ctx| {
                    let _ = answer.send(instance.handle(ctx, &req).map_err(QueueError::from));
                });
            }
            _ => {
                let (reqs, answers): (Vec<_>, Vec<_>) =
                    batch.into_iter().map(|w| (w.req, w.answer)).unzip();
                for (answer, reply) in answers.into_iter().zip(self.handle_batch(&reqs)) {
                    let _ = answer.send(reply);
                }
            }
        }
    }

    /// Runs `f` with a fresh context, recording the time spent in Wasm
    /// and any instance rebuilds.
    fn call(&mut self, f: impl FnOnce(&mut SlotInstance, Context)) {
        let ctx = Context {
            now_ms: now_ms(),
            random: fastrand::u64(..),
        };
        self.version.fetch_add(1, Ordering::Relaxed);
        let restarts_before = self.instance.restarts();
        let started = Instant::now();
        f(&mut self.instance, ctx);
        self.metrics
            .wasm_seconds
            .observe(started.elapsed().as_secs_f64());
        let restarted = self.instance.restarts() - restarts_before;
        if restarted > 0 {
            self.metrics.restarts.inc_by(restarted);
        }
    }
}

fn short_batch() -> vss_slot_host::SlotError {
    vss_slot_host::SlotError::Internal(
        "slot module answered a batch with fewer replies than requests".into(),
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use vss_slot_host::{Custom, HostLimits, Response, SlotEngine};

    use super::*;
    use crate::ops::metrics::Metrics;

    fn worker(limits: QueueLimits) -> (Arc<SlotWorker>, SlotMetrics) {
        let engine = SlotEngine::new(HostLimits::default()).expect("engine");
        let module = engine
            .compile("misbehave", vss_builtin_slots::testing::MISBEHAVE)
            .expect("compile");
        let instance = SlotInstance::start(&module, Vec::new()).expect("start");
        let metrics = Metrics::new().for_slot(1, "misbehave");
        let worker = SlotWorker::start(1, instance, limits, metrics.clone()).expect("thread");
        (Arc::new(worker), metrics)
    }

    fn op(name: &str) -> Request {
        Request::Custom(Custom {
            op: name.into(),
            payload: Vec::new(),
        })
    }

    fn count(reply: Result<Reply, QueueError>) -> u64 {
        match reply.expect("count answered").response {
            Response::Custom(bytes) => {
                u64::from_le_bytes(bytes.try_into().expect("8 bytes from `count`"))
            }
            other => panic!("unexpected response {other:?}"),
        }
    }

    /// Occupies the worker until the returned sender is dropped.
    async fn hold(worker: &Arc<SlotWorker>) -> mpsc::Sender<()> {
        let (release, gate) = mpsc::channel::<()>();
        let (started, running) = oneshot::channel();
        let worker = worker.clone();
        tokio::spawn(async move {
            let held = worker.run(move |_, _| {
                let _ = started.send(());
                let _ = gate.recv();
                Ok(())
            });
            let _ = held.await;
        });
        running.await.expect("the worker runs the holding job");
        release
    }

    /// What each of the queued `count` requests answered.
    async fn counts(queued: tokio::task::JoinHandle<Vec<Result<Reply, QueueError>>>) -> Vec<u64> {
        queued.await.expect("join").into_iter().map(count).collect()
    }

    /// Sends `n` `count` requests from a task; returns once all are queued.
    async fn queue_counts(
        worker: &Arc<SlotWorker>,
        metrics: &SlotMetrics,
        n: usize,
    ) -> tokio::task::JoinHandle<Vec<Result<Reply, QueueError>>> {
        let before = metrics.queue_depth.get();
        let w = worker.clone();
        let task = tokio::spawn(async move {
            futures_util::future::join_all((0..n).map(|_| w.handle(op("count")))).await
        });
        let n = i64::try_from(n).expect("small");
        while metrics.queue_depth.get() != before + n {
            tokio::task::yield_now().await;
        }
        task
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_names_its_depth() {
        let limits = QueueLimits {
            depth: 2,
            ..QueueLimits::default()
        };
        let (worker, metrics) = worker(limits);
        let release = hold(&worker).await;
        let waiting = queue_counts(&worker, &metrics, 2).await;
        let refused = worker.handle(op("count")).await;
        assert_eq!(
            refused.expect_err("a full queue"),
            QueueError::Full { depth: 2 }
        );
        drop(release);
        assert_eq!(
            counts(waiting).await,
            [1, 2],
            "the queued pair ran, in order"
        );
    }

    #[tokio::test]
    async fn requests_that_queue_up_run_as_one_batch_in_arrival_order() {
        let (worker, metrics) = worker(QueueLimits::default());
        let release = hold(&worker).await;
        let waiting = queue_counts(&worker, &metrics, 10).await;
        drop(release);
        assert_eq!(counts(waiting).await, (1..=10).collect::<Vec<_>>());
        let batches = (metrics.batch_size.sum(), metrics.batch_size.count());
        assert_eq!(batches, (10.0, 1), "one handle-batch call of 10");
    }

    #[tokio::test]
    async fn a_batch_is_capped_and_the_rest_follows_in_order() {
        let limits = QueueLimits {
            max_batch: 4,
            ..QueueLimits::default()
        };
        let (worker, metrics) = worker(limits);
        let release = hold(&worker).await;
        let waiting = queue_counts(&worker, &metrics, 10).await;
        drop(release);
        assert_eq!(counts(waiting).await, (1..=10).collect::<Vec<_>>());
        // 4 + 4 as batches, then 2 more (as a batch of 2).
        assert_eq!(metrics.batch_size.count(), 3);
    }

    #[tokio::test]
    async fn a_request_past_its_wait_is_answered_without_running() {
        let limits = QueueLimits {
            max_wait: Duration::from_millis(10),
            ..QueueLimits::default()
        };
        let (worker, metrics) = worker(limits);
        let release = hold(&worker).await;
        let late = queue_counts(&worker, &metrics, 1).await;
        std::thread::sleep(Duration::from_millis(20));
        drop(release);
        match late.await.expect("join").remove(0) {
            Err(QueueError::Expired { limit, .. }) => assert_eq!(limit, limits.max_wait),
            other => panic!("expected Expired, got {other:?}"),
        }
        assert_eq!(count(worker.handle(op("count")).await), 1, "it never ran");
    }

    #[tokio::test]
    async fn a_request_whose_caller_left_is_not_run() {
        let (worker, _) = worker(QueueLimits::default());
        let release = hold(&worker).await;
        let gone = tokio::time::timeout(Duration::from_millis(10), worker.handle(op("count")));
        assert!(gone.await.is_err(), "a held worker cannot answer");
        drop(release);
        assert_eq!(count(worker.handle(op("count")).await), 1);
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_fails_alone_and_the_slot_serves_on() {
        let (worker, _) = worker(QueueLimits::default());
        let looped = worker.handle(op("loop")).await;
        assert!(
            matches!(looped, Err(QueueError::Call(CallError::Timeout(_)))),
            "{looped:?}"
        );
        // A rebuilt instance: its count starts again.
        assert_eq!(count(worker.handle(op("count")).await), 1);
    }
}
