//! The event stream endpoint, `vss.v1.Vss/Events`, served beside the
//! generated `Vss` service rather than through it.
//!
//! The generated service encodes every event of every stream with prost,
//! each from its own copy, and gives each stream tonic's default 8 KiB
//! encode and decode buffers up front. A broadcast to S clients is one
//! event: it is encoded once ([`EncodedEvent`]) and each stream only
//! copies the bytes into its frame, and a stream's buffers start small,
//! since events and acks are a few dozen bytes and an idle client should
//! cost little.
//!
//! [`EncodedEvent`]: crate::core::hub::EncodedEvent

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut as _, Bytes};
use tokio_util::task::TaskTracker;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{Body, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Status, Streaming};
use tonic_prost::ProstDecoder;
use vss_proto::v1::ClientMessage;
use vss_proto::v1::client_message::Kind;

use crate::core::access::{Access, Permission};
use crate::core::error::RequestError;
use crate::core::hub::Hub;
use crate::edge::auth;

/// The method's path, as the generated service would route it.
const EVENTS_PATH: &str = "/vss.v1.Vss/Events";

/// How long a new event stream may take to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// A stream's first encode and decode buffers, in bytes; they grow by this
/// much when a larger message needs it.
const STREAM_BUFFER_BYTES: usize = 256;

fn stream_buffers() -> BufferSettings {
    // A stream yields what it has encoded once it holds this much.
    BufferSettings::new(STREAM_BUFFER_BYTES, 32 * 1024)
}

/// Serves `vss.v1.Vss/Events` from the hub and every other method of the
/// `vss.v1.Vss` service `inner`.
#[derive(Debug, Clone)]
pub struct WithEvents<S> {
    inner: S,
    events: Events,
}

impl<S> WithEvents<S> {
    /// `streams` owns each stream's task reading acknowledgements; with
    /// `access`, a stream needs a token that may subscribe, and takes the
    /// broadcasts of the slots it may subscribe to.
    pub fn new(inner: S, hub: Arc<Hub>, streams: TaskTracker, access: Option<Arc<Access>>) -> Self {
        Self {
            inner,
            events: Events {
                hub,
                streams,
                access,
            },
        }
    }
}

impl<S: NamedService> NamedService for WithEvents<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<Request<B>> for WithEvents<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.uri().path() == EVENTS_PATH {
            let events = self.events.clone();
            return Box::pin(
                async move { Ok(Grpc::new(EventsCodec).streaming(events, req).await) },
            );
        }
        // The clone serves this call; `self.inner` stays ready for the next.
        let mut inner = self.inner.clone();
        std::mem::swap(&mut inner, &mut self.inner);
        Box::pin(inner.call(req))
    }
}

/// Opens a client's event stream on the hub and reads its acks.
#[derive(Debug, Clone)]
struct Events {
    hub: Arc<Hub>,
    streams: TaskTracker,
    access: Option<Arc<Access>>,
}

/// A client's encoded events, as the gRPC stream sends them.
type WireEvents = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Bytes, Status>> + Send>>;

impl StreamingService<ClientMessage> for Events {
    type Response = Bytes;
    type ResponseStream = WireEvents;
    type Future = BoxFuture<tonic::Response<WireEvents>, Status>;

    fn call(&mut self, req: tonic::Request<Streaming<ClientMessage>>) -> Self::Future {
        let Events {
            hub,
            streams,
            access,
        } = self.clone();
        Box::pin(async move {
            let grant = match &access {
                Some(access) => Some(auth::authenticate(access, &req, Permission::Subscribe)?),
                None => None,
            };
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
            let slots = match (&access, &grant) {
                (Some(access), Some(grant)) => grant
                    .stream_client(&hello.client_id)
                    .and_then(|()| grant.stream_slots(hello.slots))
                    .inspect_err(|_| access.refused(Permission::Subscribe))?,
                _ => hello.slots,
            };
            let (conn, stream) = hub.connect(hello.client_id, slots)?;
            tracing::debug!(client = %conn.client_id(), "event stream opened");
            streams.spawn(async move {
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
            let stream: WireEvents = Box::pin(tokio_stream::StreamExt::map(stream, Ok));
            Ok(tonic::Response::new(stream))
        })
    }
}

/// Events go out already encoded; client messages are decoded by prost.
#[derive(Debug, Clone, Copy)]
struct EventsCodec;

impl Codec for EventsCodec {
    type Encode = Bytes;
    type Decode = ClientMessage;
    type Encoder = Encoded;
    type Decoder = ProstDecoder<ClientMessage>;

    fn encoder(&mut self) -> Encoded {
        Encoded
    }

    fn decoder(&mut self) -> ProstDecoder<ClientMessage> {
        ProstDecoder::new(stream_buffers())
    }
}

#[derive(Debug, Clone, Copy)]
struct Encoded;

impl Encoder for Encoded {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        stream_buffers()
    }
}
