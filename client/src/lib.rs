//! `vss-client`: a typed async client for VSS.
//!
//! A [`Client`] is given every instance of a cluster. Calls go to the first
//! instance that answers; an instance that is down or times out is skipped
//! at once and the next one is tried. Errors the server gives for the
//! request itself (bad slot, wrong type, ...) are returned as they are,
//! since another instance would give the same answer.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use vss_proto::v1::client_message::Kind;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{
    Ack, AcquireRequest, CallRequest, ClientMessage, Hello, MembershipRequest, PublishRequest,
    StatusRequest,
};

pub use vss_proto::v1::{SlotStatus, StatusReply};

/// Longest a publish may wait for deliveries: the largest slot `timeout`
/// (`vss_config::MAX_SIGNAL_TIMEOUT`).
pub const MAX_PUBLISH_WAIT: Duration = Duration::from_secs(60);

/// Default time a single call may take on one instance.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(2);

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
}

/// Longest [`Subscription::close`] waits for the instances to see the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

impl Subscription {
    /// The next event; None once every stream has ended.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.events.recv().await
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
async fn read_events(
    mut inbound: tonic::Streaming<vss_proto::v1::Event>,
    out_tx: mpsc::Sender<ClientMessage>,
    events: mpsc::Sender<Delivery>,
    mut closing: watch::Receiver<bool>,
) {
    let mut out_tx = Some(out_tx);
    loop {
        tokio::select! {
            msg = inbound.message() => {
                let Ok(Some(e)) = msg else { break };
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
    grpc: VssClient<Channel>,
}

/// A client of one VSS cluster.
#[derive(Debug, Clone)]
pub struct Client {
    instances: Vec<Instance>,
    /// Per-call limit on one instance (publish adds the slot's own timeout).
    timeout: Duration,
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
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let instances = endpoints
            .iter()
            .map(|e| {
                let endpoint = e.as_ref().trim().to_string();
                let channel = Endpoint::from_shared(uri_of(&endpoint))
                    .map_err(|err| ClientError::InvalidEndpoint {
                        endpoint: endpoint.clone(),
                        reason: err.to_string(),
                    })?
                    .connect_timeout(timeout)
                    .tcp_nodelay(true)
                    .connect_lazy();
                Ok(Instance {
                    endpoint,
                    grpc: VssClient::new(channel),
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Self { instances, timeout })
    }

    /// Runs `call` on each instance in turn until one answers.
    async fn first_answer<R, T, F, Fut>(&self, req: R, call: F) -> Result<T, ClientError>
    where
        R: Clone,
        F: Fn(VssClient<Channel>, R) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.first_answer_within(self.timeout, req, call).await
    }

    async fn first_answer_within<R, T, F, Fut>(
        &self,
        limit: Duration,
        req: R,
        call: F,
    ) -> Result<T, ClientError>
    where
        R: Clone,
        F: Fn(VssClient<Channel>, R) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut failures = Vec::new();
        for instance in &self.instances {
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
                    failures.push(format!("{}: {}", instance.endpoint, status.message()));
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
        Err(ClientError::Unreachable(failures))
    }

    /// Takes tokens from a limiter slot.
    pub async fn acquire(&self, slot: u32, opts: Acquire) -> Result<Grant, ClientError> {
        let req = AcquireRequest {
            slot,
            key: opts.key.unwrap_or_default(),
            tokens: opts.tokens,
        };
        let reply = self
            .first_answer(req, |mut c, req| async move { c.acquire(req).await })
            .await?;
        Ok(Grant {
            granted: reply.granted,
            remaining: reply.remaining,
            reset_ms: reply.reset_ms,
        })
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
            .first_answer(req, |mut c, req| async move { c.call(req).await })
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
        };
        // A publish lasts up to the slot's timeout (at most 60 s) by design.
        let reply = self
            .first_answer_within(
                MAX_PUBLISH_WAIT + self.timeout,
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
        self.first_answer(req, |mut c, req| async move {
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
    /// which broadcast slots it hears (empty: all). Returns once at least
    /// one instance has accepted the stream.
    pub async fn subscribe(
        &self,
        client_id: &str,
        slots: &[u32],
    ) -> Result<Subscription, ClientError> {
        let (events_tx, events_rx) = mpsc::channel(1_024);
        let (closing, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut failures = Vec::new();
        for instance in &self.instances {
            let (out_tx, out_rx) = mpsc::channel(1_024);
            let hello = ClientMessage {
                kind: Some(Kind::Hello(Hello {
                    client_id: client_id.to_string(),
                    slots: slots.to_vec(),
                })),
            };
            // The channel is empty and has room: this cannot fail.
            let _ = out_tx.try_send(hello);
            let mut grpc = instance.grpc.clone();
            match grpc.events(ReceiverStream::new(out_rx)).await {
                Ok(response) => {
                    let inbound = response.into_inner();
                    tasks.spawn(read_events(
                        inbound,
                        out_tx,
                        events_tx.clone(),
                        closing.subscribe(),
                    ));
                }
                Err(status) if is_instance_failure(status.code()) => {
                    failures.push(format!("{}: {}", instance.endpoint, status.message()));
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
        if tasks.is_empty() {
            return Err(ClientError::Unreachable(failures));
        }
        Ok(Subscription {
            events: events_rx,
            streams: tasks,
            closing,
        })
    }

    /// The status of every instance, in the order given.
    pub async fn status(&self) -> Vec<(String, Result<StatusReply, ClientError>)> {
        let mut out = Vec::with_capacity(self.instances.len());
        for instance in &self.instances {
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
            out.push((instance.endpoint.clone(), result));
        }
        out
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
