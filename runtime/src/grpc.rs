//! The client gRPC API (`vss.v1.Vss`) on top of the slot table.

use std::sync::Arc;
use std::time::Instant;

use std::time::Duration;

use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};
use vss_proto::v1::client_message::Kind;
use vss_proto::v1::vss_server::Vss;
use vss_proto::v1::{
    AcquireReply, AcquireRequest, CallReply, CallRequest, ClientMessage, MembershipReply,
    MembershipRequest, PublishReply, PublishRequest, SlotStatus, StatusReply, StatusRequest,
};

use crate::error::RequestError;
use crate::hub::EventStream;
use crate::metrics::{Metrics, Verb};
use crate::signals::Signals;
use crate::slots::SlotTable;

/// How long a new event stream may take to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves client requests from this instance's slots.
#[derive(Debug, Clone)]
pub struct VssService {
    slots: Arc<SlotTable>,
    signals: Arc<Signals>,
    metrics: Metrics,
    instance: String,
    /// Owns the per-stream tasks reading acknowledgements.
    streams: TaskTracker,
}

impl VssService {
    pub fn new(
        slots: Arc<SlotTable>,
        signals: Arc<Signals>,
        metrics: Metrics,
        instance: String,
        streams: TaskTracker,
    ) -> Self {
        Self {
            slots,
            signals,
            metrics,
            instance,
            streams,
        }
    }

    fn observe(&self, verb: Verb, started: Instant) {
        self.metrics
            .observe_request(verb, started.elapsed().as_secs_f64());
    }

    fn timed<T>(&self, verb: Verb, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        self.observe(verb, started);
        out
    }
}

#[tonic::async_trait]
impl Vss for VssService {
    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "acquire"))]
    async fn acquire(
        &self,
        req: Request<AcquireRequest>,
    ) -> Result<Response<AcquireReply>, Status> {
        let r = req.into_inner();
        self.timed(Verb::Acquire, || {
            self.slots.acquire(r.slot, &r.key, r.tokens)
        })
        .map(|a| {
            Response::new(AcquireReply {
                granted: a.granted,
                remaining: a.remaining,
                reset_ms: a.reset_ms,
            })
        })
        .map_err(|e| {
            tracing::debug!(error = %e, "acquire refused");
            Status::from(e)
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "call"))]
    async fn call(&self, req: Request<CallRequest>) -> Result<Response<CallReply>, Status> {
        let r = req.into_inner();
        self.timed(Verb::Call, || self.slots.call(r.slot, &r.op, r.payload))
            .map(|payload| Response::new(CallReply { payload }))
            .map_err(|e| {
                tracing::debug!(error = %e, "call refused");
                Status::from(e)
            })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "publish"))]
    async fn publish(
        &self,
        req: Request<PublishRequest>,
    ) -> Result<Response<PublishReply>, Status> {
        let started = Instant::now();
        let r = req.into_inner();
        let outcome = self.signals.publish(r.slot, r.message, &r.client_id).await;
        self.observe(Verb::Publish, started);
        let o = outcome.map_err(Status::from)?;
        Ok(Response::new(PublishReply {
            message_id: o.message_id,
            delivered: o.delivered,
            failed: o.failed,
            taken_by: o.taken_by.unwrap_or_default(),
        }))
    }

    async fn register(
        &self,
        req: Request<MembershipRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let r = req.into_inner();
        self.timed(Verb::Register, || {
            self.signals.register(r.slot, &r.client_id)
        })?;
        Ok(Response::new(MembershipReply {}))
    }

    async fn deregister(
        &self,
        req: Request<MembershipRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let r = req.into_inner();
        self.timed(Verb::Deregister, || {
            self.signals.deregister(r.slot, &r.client_id)
        })?;
        Ok(Response::new(MembershipReply {}))
    }

    type EventsStream = EventStream;

    async fn events(
        &self,
        req: Request<Streaming<ClientMessage>>,
    ) -> Result<Response<EventStream>, Status> {
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded("no Hello within 10 s of opening the event stream")
            })??;
        let Some(ClientMessage {
            kind: Some(Kind::Hello(hello)),
        }) = first
        else {
            return Err(RequestError::NoHello.into());
        };
        let hub = self.signals.hub().clone();
        let (conn, stream) = hub.connect(hello.client_id, hello.slots)?;
        tracing::debug!(client = %conn.client_id(), "event stream opened");
        self.streams.spawn(async move {
            loop {
                tokio::select! {
                    () = conn.closed().cancelled() => break,
                    msg = inbound.message() => match msg {
                        Ok(Some(ClientMessage { kind: Some(Kind::Ack(ack)) })) => hub.ack(&conn, ack.message_id),
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    },
                }
            }
            hub.disconnect(&conn);
            tracing::debug!(client = %conn.client_id(), "event stream closed");
        });
        Ok(Response::new(stream))
    }

    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let slots = self
            .slots
            .summaries()
            .into_iter()
            .map(|s| SlotStatus {
                id: u32::from(s.id),
                r#type: s.type_name,
                calls: s.calls,
                errors: s.errors,
                restarts: s.restarts,
            })
            .collect();
        Ok(Response::new(StatusReply {
            instance: self.instance.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            config_generation: 1,
            slots,
            routing: None,
            peers: Vec::new(),
        }))
    }
}
