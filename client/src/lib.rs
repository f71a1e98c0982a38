//! `vss-client`: a typed async client for VSS.
//!
//! A [`Client`] is given every instance of a cluster. It watches the
//! routing table every instance publishes and sends each call to the
//! slot's owner first, then its standby, then the others: an instance that
//! is down or times out is skipped at once and the next one is tried, each
//! within the per-call timeout. Errors the server gives for the request
//! itself (bad slot, wrong type, ...) are returned as they are, since
//! another instance would give the same answer.
//!
//! A publish carries a message id chosen here, so a publish retried on
//! another instance is the same message: the owner carries it out once,
//! and subscribers see one delivery per id. A [`Subscription`] holds an
//! event stream on every instance (reopened when an instance comes back),
//! hands each message to the application once and acknowledges every copy
//! to the instance that sent it.

mod batch;
mod data;
mod dedupe;
#[cfg(feature = "clap")]
mod flags;
mod routing;
mod security;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;

use tonic::transport::Endpoint;
use vss_proto::v1::acquire_outcome::Outcome;
use vss_proto::v1::client_message::Kind;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{
    Ack, AcquireReply, AcquireRequest, CallRequest, ClientMessage, Hello, MembershipRequest,
    PublishRequest, StatusRequest,
};

pub use data::{
    AnnounceReply, CounterValue, GetReply, KeyValue, ListKeysReply, Service, ServiceChange,
    ServiceWatch, Tick, TickWatch, Version, WithdrawReply, WriteReply,
};
pub use tonic::Code;
pub use vss_proto::v1::service_change::Kind as ServiceChangeKind;
pub use vss_proto::v1::{PeerStatus, RoutingTable, SlotRoute, SlotStatus, StatusReply};

#[cfg(feature = "clap")]
pub use crate::flags::{SecurityArgs, SecurityArgsError};

use crate::batch::Batcher;
use crate::dedupe::Seen;
use crate::routing::Routing;
pub use crate::security::{Conn, Credentials, Security};

/// Longest a publish may wait for deliveries: the largest slot `timeout`
/// (`vss_config::MAX_SIGNAL_TIMEOUT`).
pub const MAX_PUBLISH_WAIT: Duration = Duration::from_secs(60);

/// Default time a single call may take on one instance.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Message ids a subscription remembers to drop repeats.
const DEDUPE_WINDOW: usize = 16_384;

/// Rounds over all instances before a call fails.
const PASSES: usize = 2;
/// Pause between two rounds.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Wait before reopening an event stream that broke.
const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(200);

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("no endpoints given")]
    NoEndpoints,
    #[error("invalid endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    /// The server refused the request; retrying elsewhere would not help.
    #[error("{message}")]
    Server {
        endpoint: String,
        code: Code,
        message: String,
    },
    /// The TLS or token settings cannot be used.
    #[error("{what}: {reason}")]
    InvalidSecurity { what: String, reason: String },
    /// No instance could be reached.
    #[error("no VSS instance reachable: {}", .0.join("; "))]
    Unreachable(Vec<String>),
}

impl ClientError {
    /// The gRPC code of a server refusal.
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// What an acquire got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Tokens granted; 0 when refused.
    pub granted: u32,
    /// Tokens left right after this call.
    pub remaining: u64,
    /// Milliseconds until the next refill, or until there is room.
    pub reset_ms: u64,
}

/// Options of an acquire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acquire {
    /// Per-caller bucket; None: the slot's single bucket.
    pub key: Option<String>,
    /// Tokens asked for; None: the slot's `tokensPerReq`.
    pub tokens: Option<u32>,
}

/// What a publish achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub message_id: u64,
    /// Deliveries acknowledged in time.
    pub delivered: u32,
    /// Deliveries that failed or timed out.
    pub failed: u32,
    /// Random slots: the client that took the message.
    pub taken_by: Option<String>,
}

/// One event received on a subscription. Acknowledge it with
/// [`Delivery::ack`]; until then the publisher counts it as pending, and
/// after the slot's timeout as failed.
#[derive(Debug)]
pub struct Delivery {
    pub slot: u32,
    pub message_id: u64,
    pub payload: Vec<u8>,
    /// Client id of the publisher ("" if anonymous).
    pub publisher: String,
    ack: mpsc::Sender<ClientMessage>,
}

impl Delivery {
    /// Confirms the delivery to the instance that sent it.
    pub async fn ack(&self) -> Result<(), ClientError> {
        let msg = ClientMessage {
            kind: Some(Kind::Ack(Ack {
                message_id: self.message_id,
            })),
        };
        self.ack
            .send(msg)
            .await
            .map_err(|_| ClientError::Unreachable(vec!["event stream closed".into()]))
    }
}

/// This client's event streams, merged. Dropping it cuts them at once;
/// [`Subscription::close`] ends them cleanly, after the acknowledgements
/// already given have reached the instances.
#[derive(Debug)]
pub struct Subscription {
    events: mpsc::Receiver<Delivery>,
    streams: JoinSet<()>,
    closing: watch::Sender<bool>,
    seen: Seen,
}

/// Longest [`Subscription::close`] waits for the instances to see the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

impl Subscription {
    /// The next message; None once every stream has ended. A message that
    /// already came through another instance is acknowledged to the
    /// instance that sent it again and not handed out twice.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            let delivery = self.events.recv().await?;
            if self.seen.first(delivery.slot, delivery.message_id) {
                return Some(delivery);
            }
            let _ = delivery.ack().await;
        }
    }

    /// Ends every stream cleanly: pending acknowledgements are sent, then
    /// each instance closes its side. Undelivered events are dropped
    /// unacknowledged.
    pub async fn close(mut self) {
        let _ = self.closing.send(true);
        self.events.close();
        while self.events.try_recv().is_ok() {}
        let streams = &mut self.streams;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while streams.join_next().await.is_some() {}
        })
        .await;
    }
}

/// Forwards one instance's events until it ends the stream. When closing,
/// the task drops its sender of the request stream, so the stream ends
/// after the acks queued so far; the instance then closes its side.
/// Returns false if the stream broke (the instance went away) rather than
/// ended.
async fn read_events(
    mut inbound: tonic::Streaming<vss_proto::v1::Event>,
    out_tx: mpsc::Sender<ClientMessage>,
    events: mpsc::Sender<Delivery>,
    mut closing: watch::Receiver<bool>,
) -> bool {
    let mut out_tx = Some(out_tx);
    loop {
        tokio::select! {
            msg = inbound.message() => {
                let e = match msg {
                    Ok(Some(e)) => e,
                    Ok(None) => return true,
                    Err(_) => return false,
                };
                let Some(ack) = &out_tx else { continue };
                let delivery = Delivery {
                    slot: e.slot,
                    message_id: e.message_id,
                    payload: e.payload,
                    publisher: e.publisher,
                    ack: ack.clone(),
                };
                let _ = events.send(delivery).await;
            }
            _ = closing.changed(), if out_tx.is_some() => {
                out_tx = None;
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Instance {
    endpoint: String,
    grpc: VssClient<Conn>,
}

/// A client of one VSS cluster.
#[derive(Debug, Clone)]
pub struct Client {
    instances: Vec<Instance>,
    /// Per-call limit on one instance (publish adds the slot's own timeout).
    timeout: Duration,
    routing: Arc<Routing>,
    /// Acquires sent and not yet answered, across clones.
    acquiring: Arc<AtomicUsize>,
    /// None: every acquire is sent on its own.
    batcher: Option<Arc<Batcher>>,
}

/// Counts an acquire in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn grant(reply: AcquireReply) -> Grant {
    Grant {
        granted: reply.granted,
        remaining: reply.remaining,
        reset_ms: reply.reset_ms,
    }
}

/// Accepts `host:port` or a full `http://host:port` URI.
fn uri_of(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

impl Client {
    /// A client of the instances at `endpoints`. Connections are made on
    /// first use, so this succeeds even if some instances are down.
    pub fn new<S: AsRef<str>>(endpoints: &[S]) -> Result<Self, ClientError> {
        Self::with_timeout(endpoints, DEFAULT_CALL_TIMEOUT)
    }

    /// Like [`Client::new`] with a per-call timeout.
    pub fn with_timeout<S: AsRef<str>>(
        endpoints: &[S],
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        Self::with_security(endpoints, timeout, &Security::default())
    }

    /// Like [`Client::with_timeout`], over TLS and with a token as
    /// `security` says.
    pub fn with_security<S: AsRef<str>>(
        endpoints: &[S],
        timeout: Duration,
        security: &Security,
    ) -> Result<Self, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let credentials = security.credentials()?;
        let tls = security.tls()?;
        let instances = endpoints
            .iter()
            .map(|e| {
                let endpoint = e.as_ref().trim().to_string();
                let at = Endpoint::from_shared(uri_of(&endpoint))
                    .map_err(|err| ClientError::InvalidEndpoint {
                        endpoint: endpoint.clone(),
                        reason: err.to_string(),
                    })?
                    .connect_timeout(timeout)
                    .tcp_nodelay(true);
                let channel = match &tls {
                    Some(config) => at.connect_with_connector_lazy(vss_wire::MeshConnector::fixed(
                        config.clone(),
                    )),
                    None => at.connect_lazy(),
                };
                Ok(Instance {
                    endpoint,
                    grpc: VssClient::with_interceptor(channel, credentials.clone()),
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        let routing = Arc::new(Routing::new(instances.len()));
        Ok(Self {
            instances,
            timeout,
            routing,
            acquiring: Arc::default(),
            batcher: Some(Arc::default()),
        })
    }

    /// Whether concurrent acquires share `AcquireBatch` calls (the
    /// default): an acquire made while another of this client is in flight
    /// joins the next batch to the slot's owner, so under load many
    /// acquires cost one round trip. A lone acquire is sent at once.
    pub fn coalescing(mut self, on: bool) -> Self {
        self.batcher = on.then(Arc::default);
        self
    }

    /// The newest routing table any instance sent, once one arrived. The
    /// first call (from inside a Tokio runtime) starts watching.
    pub fn routing(&self) -> Option<RoutingTable> {
        self.start_routing();
        self.routing.table()
    }

    fn start_routing(&self) {
        self.routing
            .start(|| self.instances.iter().map(|i| i.grpc.clone()).collect());
    }

    /// Runs `call` on each instance in turn until one answers: the
    /// slot's owner first, when known.
    async fn first_answer<R, T, F, Fut>(
        &self,
        slot: Option<u32>,
        req: R,
        call: F,
    ) -> Result<T, ClientError>
    where
        R: Clone,
        F: Fn(VssClient<Conn>, R) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.first_answer_within(self.timeout, slot.map(|s| (s, "")), None, req, call)
            .await
    }

    /// Calls the instances in turn, the owner of `route` (a slot and a
    /// bucket key, "" for none) first, until one answers within `limit`.
    async fn first_answer_within<R, T, F, Fut>(
        &self,
        limit: Duration,
        route: Option<(u32, &str)>,
        skip: Option<usize>,
        req: R,
        call: F,
    ) -> Result<T, ClientError>
    where
        R: Clone,
        F: Fn(VssClient<Conn>, R) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.start_routing();
        let mut failures = Vec::new();
        for pass in 0..PASSES {
            if pass > 0 {
                // Every instance failed once: give a restarting instance or
                // a new routing table a moment before the last pass.
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            for i in self.routing.order(route, self.instances.len()) {
                if pass == 0 && skip == Some(i) {
                    continue;
                }
                let instance = &self.instances[i];
                let answer = tokio::time::timeout(limit, call(instance.grpc.clone(), req.clone()))
                    .await
                    .unwrap_or_else(|_| {
                        Err(tonic::Status::deadline_exceeded(format!(
                            "no answer within {limit:?}"
                        )))
                    });
                match answer {
                    Ok(reply) => return Ok(reply.into_inner()),
                    Err(status) if is_instance_failure(status.code()) => {
                        tracing::debug!(endpoint = %instance.endpoint, error = %status.message(), "instance failed; trying the next");
                        // The second pass often fails the same way: say it once.
                        let failure = format!("{}: {}", instance.endpoint, status.message());
                        if !failures.contains(&failure) {
                            failures.push(failure);
                        }
                    }
                    Err(status) => {
                        return Err(ClientError::Server {
                            endpoint: instance.endpoint.clone(),
                            code: status.code(),
                            message: status.message().to_string(),
                        });
                    }
                }
            }
        }
        Err(ClientError::Unreachable(failures))
    }

    /// Takes tokens from a limiter slot.
    pub async fn acquire(&self, slot: u32, opts: Acquire) -> Result<Grant, ClientError> {
        let key = opts.key.unwrap_or_default();
        let req = AcquireRequest {
            slot,
            key: key.clone(),
            tokens: opts.tokens,
        };
        let others = self.acquiring.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(&self.acquiring);
        let mut failed_at = None;
        if let Some(batcher) = self.batcher.as_ref().filter(|_| others > 0) {
            self.start_routing();
            let owner = self.routing.first(slot, &key);
            let grpcs = || self.instances.iter().map(|i| i.grpc.clone()).collect();
            match batcher
                .submit(owner, req.clone(), grpcs, self.timeout)
                .await
            {
                Some(Ok(Outcome::Reply(reply))) => return Ok(grant(reply)),
                Some(Ok(Outcome::Failure(f))) if !is_instance_failure(Code::from(f.code)) => {
                    return Err(ClientError::Server {
                        endpoint: self.instances[owner].endpoint.clone(),
                        code: Code::from(f.code),
                        message: f.message,
                    });
                }
                Some(Err(status)) if !is_instance_failure(status.code()) => {
                    return Err(ClientError::Server {
                        endpoint: self.instances[owner].endpoint.clone(),
                        code: status.code(),
                        message: status.message().to_string(),
                    });
                }
                // The instance could not answer: the others are tried one
                // by one, as for an acquire sent alone.
                Some(_) => failed_at = Some(owner),
                None => {}
            }
        }
        let reply = self
            .first_answer_within(
                self.timeout,
                Some((slot, &key)),
                failed_at,
                req,
                |mut c, req| async move { c.acquire(req).await },
            )
            .await?;
        Ok(grant(reply))
    }

    /// Calls an operation of a custom slot type.
    pub async fn call(
        &self,
        slot: u32,
        op: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, ClientError> {
        let req = CallRequest {
            slot,
            op: op.to_string(),
            payload,
        };
        let reply = self
            .first_answer(
                Some(slot),
                req,
                |mut c, req| async move { c.call(req).await },
            )
            .await?;
        Ok(reply.payload)
    }

    /// Publishes `message` (at most 36 bytes) on a signal slot and waits for
    /// the deliveries. `client_id` identifies the publisher (a broadcast
    /// skips it); pass "" to stay anonymous.
    pub async fn publish(
        &self,
        slot: u32,
        message: &[u8],
        client_id: &str,
    ) -> Result<Published, ClientError> {
        let req = PublishRequest {
            slot,
            message: message.to_vec(),
            client_id: client_id.to_string(),
            // The same id on every attempt: a retry is not a second message.
            message_id: fastrand::u64(1..),
        };
        // A publish lasts up to the slot's timeout (at most 60 s) by design.
        let reply = self
            .first_answer_within(
                MAX_PUBLISH_WAIT + self.timeout,
                Some((slot, "")),
                None,
                req,
                |mut c, req| async move { c.publish(req).await },
            )
            .await?;
        Ok(Published {
            message_id: reply.message_id,
            delivered: reply.delivered,
            failed: reply.failed,
            taken_by: (!reply.taken_by.is_empty()).then_some(reply.taken_by),
        })
    }

    /// Joins a multicast or random slot.
    pub async fn register(&self, slot: u32, client_id: &str) -> Result<(), ClientError> {
        self.membership(slot, client_id, true).await
    }

    /// Leaves a multicast or random slot.
    pub async fn deregister(&self, slot: u32, client_id: &str) -> Result<(), ClientError> {
        self.membership(slot, client_id, false).await
    }

    async fn membership(&self, slot: u32, client_id: &str, join: bool) -> Result<(), ClientError> {
        let req = MembershipRequest {
            slot,
            client_id: client_id.to_string(),
        };
        self.first_answer(Some(slot), req, |mut c, req| async move {
            if join {
                c.register(req).await
            } else {
                c.deregister(req).await
            }
        })
        .await
        .map(drop)
    }

    /// Opens this client's event stream on every instance. `slots` limits
    /// which broadcast slots it hears (empty: all). Returns once every
    /// instance has answered, if at least one accepted the stream; streams
    /// to instances that are down, or that go down later, are reopened when
    /// they come back.
    pub async fn subscribe(
        &self,
        client_id: &str,
        slots: &[u32],
    ) -> Result<Subscription, ClientError> {
        let (events_tx, events_rx) = mpsc::channel(1_024);
        let (closing, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut opened = Vec::new();
        let hello = Hello {
            client_id: client_id.to_string(),
            slots: slots.to_vec(),
        };
        for instance in &self.instances {
            let (first_tx, first_rx) = tokio::sync::oneshot::channel();
            tasks.spawn(follow(
                instance.clone(),
                hello.clone(),
                events_tx.clone(),
                closing.subscribe(),
                first_tx,
            ));
            opened.push((instance.endpoint.clone(), first_rx));
        }
        first_openings(opened).await?;
        Ok(Subscription {
            events: events_rx,
            streams: tasks,
            closing,
            seen: Seen::new(DEDUPE_WINDOW),
        })
    }

    /// The status of every instance, in the order given, asked of all at
    /// once: an instance that does not answer costs one timeout, not one
    /// per instance behind it.
    pub async fn status(&self) -> Vec<(String, Result<StatusReply, ClientError>)> {
        let asks = self.instances.iter().map(|instance| async move {
            let mut grpc = instance.grpc.clone();
            let result = tokio::time::timeout(self.timeout, grpc.status(StatusRequest {}))
                .await
                .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer in time")))
                .map(tonic::Response::into_inner)
                .map_err(|s| ClientError::Server {
                    endpoint: instance.endpoint.clone(),
                    code: s.code(),
                    message: s.message().to_string(),
                });
            (instance.endpoint.clone(), result)
        });
        futures_util::future::join_all(asks).await
    }
}

/// How a stream's first opening went, per endpoint.
type Openings = Vec<(
    String,
    tokio::sync::oneshot::Receiver<Result<(), tonic::Status>>,
)>;

/// Waits for the first opening of a stream on every instance: fine if one
/// accepted; a request error (the same on every instance) is returned as
/// it is; otherwise every instance was unreachable.
async fn first_openings(opened: Openings) -> Result<(), ClientError> {
    let mut failures = Vec::new();
    let mut accepted = false;
    for (endpoint, first) in opened {
        match first.await {
            Ok(Ok(())) => accepted = true,
            Ok(Err(status)) if is_instance_failure(status.code()) => {
                failures.push(format!("{endpoint}: {}", status.message()));
            }
            Ok(Err(status)) => {
                return Err(ClientError::Server {
                    endpoint,
                    code: status.code(),
                    message: status.message().to_string(),
                });
            }
            Err(_) => failures.push(format!("{endpoint}: stream task ended")),
        }
    }
    if accepted {
        Ok(())
    } else {
        Err(ClientError::Unreachable(failures))
    }
}

/// Keeps this client's event stream open on one instance: opens it, reads
/// it, and reopens it after it broke, until the subscription closes or the
/// instance ends the stream itself (it dropped this client). The outcome
/// of the first opening goes to `first`.
async fn follow(
    instance: Instance,
    hello: Hello,
    events: mpsc::Sender<Delivery>,
    mut closing: watch::Receiver<bool>,
    first: tokio::sync::oneshot::Sender<Result<(), tonic::Status>>,
) {
    let mut first = Some(first);
    loop {
        let (out_tx, out_rx) = mpsc::channel(1_024);
        let msg = ClientMessage {
            kind: Some(Kind::Hello(hello.clone())),
        };
        // The channel is empty and has room: this cannot fail.
        let _ = out_tx.try_send(msg);
        let mut grpc = instance.grpc.clone();
        match grpc.events(ReceiverStream::new(out_rx)).await {
            Ok(response) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Ok(()));
                }
                let ended = read_events(
                    response.into_inner(),
                    out_tx,
                    events.clone(),
                    closing.clone(),
                )
                .await;
                if ended || *closing.borrow() {
                    return;
                }
                tracing::debug!(endpoint = %instance.endpoint, "event stream broke; reopening");
            }
            Err(status) => {
                let retry = is_instance_failure(status.code());
                if let Some(first) = first.take() {
                    let _ = first.send(Err(status));
                }
                if !retry {
                    return;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RESUBSCRIBE_AFTER) => {}
            _ = closing.changed() => return,
        }
    }
}

/// Codes that say "this instance cannot answer now", not "this request is wrong".
fn is_instance_failure(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_without_scheme_get_http() {
        assert_eq!(uri_of("127.0.0.1:7700"), "http://127.0.0.1:7700");
        assert_eq!(uri_of("http://a:1"), "http://a:1");
    }

    #[test]
    fn an_empty_endpoint_list_is_refused() {
        let none: [&str; 0] = [];
        assert!(matches!(Client::new(&none), Err(ClientError::NoEndpoints)));
    }

    #[test]
    fn request_errors_are_not_retried_elsewhere() {
        assert!(is_instance_failure(Code::Unavailable));
        assert!(!is_instance_failure(Code::InvalidArgument));
        assert!(!is_instance_failure(Code::NotFound));
        assert!(!is_instance_failure(Code::FailedPrecondition));
    }
}
