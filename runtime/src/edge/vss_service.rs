//! The client API (`vss.v1.Vss`): checks the caller's token, converts, and
//! calls the [`Node`]. Served on the client port, and on the mesh port for
//! requests peers forward ([`VssService::for_peers`]).

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};
use vss_proto::v1::vss_server::Vss;
use vss_proto::v1::{
    AcquireBatchReply, AcquireBatchRequest, AcquireReply, AcquireRequest, AnnounceReply,
    AnnounceRequest, CallReply, CallRequest, ClientMessage, CounterChange, CounterValue,
    DeleteRequest, GetReply, GetRequest, ListKeysReply, ListKeysRequest, ListServicesReply,
    ListServicesRequest, MembershipReply, MembershipRequest, PublishReply, PublishRequest,
    ReadCounterRequest, RoutingUpdate, ServiceChange, SetRequest, StatusReply, StatusRequest, Tick,
    WatchRoutingRequest, WatchTicksRequest, WithdrawReply, WithdrawRequest, WriteReply,
};

use crate::core::access::{Access, Permission};
use crate::core::error::RequestError;
use crate::core::node::{Node, Origin};
use crate::edge::auth;
use crate::edge::convert::{self, TableWire as _};
use crate::edge::grpc_link::FORWARDED_HEADER;

/// Most acquires one `AcquireBatch` may carry.
pub const MAX_BATCH_ACQUIRES: usize = 1000;

/// Serves client requests through this instance's node.
#[derive(Debug, Clone)]
pub struct VssService {
    node: Arc<Node>,
    /// Serving the mesh port, where peers forward requests: only there is
    /// [`FORWARDED_HEADER`] believed. On the client port a client could
    /// otherwise make any instance serve a slot it does not own, from a
    /// bucket of its own.
    from_peers: bool,
    /// Client tokens, on the client port when `--client-tokens` is set.
    access: Option<Arc<Access>>,
}

impl VssService {
    pub fn new(node: Arc<Node>) -> Self {
        Self {
            node,
            from_peers: false,
            access: None,
        }
    }

    /// The same service asking every call for a token of `access`.
    pub fn with_access(&self, access: Option<Arc<Access>>) -> Self {
        Self {
            access,
            ..self.clone()
        }
    }

    /// The same service for the mesh port, where forwarded requests arrive.
    pub fn for_peers(&self) -> Self {
        // Peers are authenticated by the mesh's mTLS; tokens are the
        // client port's.
        Self {
            from_peers: true,
            access: None,
            ..self.clone()
        }
    }

    /// Where `req` came from: a peer that forwarded it (then it is served
    /// here), or a client.
    fn origin<'r, T>(&self, req: &'r Request<T>) -> Origin<'r> {
        match req.metadata().get(FORWARDED_HEADER) {
            Some(by) if self.from_peers => Origin::Peer(by.to_str().unwrap_or("a peer")),
            _ => Origin::Client,
        }
    }

    /// Refuses `req` unless its token may do `permission` on `slot`.
    fn allow<T>(&self, req: &Request<T>, permission: Permission, slot: u32) -> Result<(), Status> {
        match &self.access {
            Some(access) => auth::check(access, req, permission, slot).map(drop),
            None => Ok(()),
        }
    }

    /// Register (`join`) or deregister, at the slot's owner.
    async fn membership(
        &self,
        req: Request<MembershipRequest>,
        join: bool,
    ) -> Result<Response<MembershipReply>, Status> {
        self.allow(&req, Permission::Subscribe, req.get_ref().slot)?;
        let origin = self.origin(&req);
        let call = convert::membership_call(req.get_ref().clone(), join);
        self.node.membership(origin, call).await?;
        Ok(Response::new(MembershipReply {}))
    }
}

type Stream<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// A stream of `rx`'s items, converted by `convert`.
fn stream_of<D: Send + 'static, T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<D>,
    convert: fn(D) -> T,
) -> Stream<T> {
    use tokio_stream::StreamExt;
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx).map(move |d| Ok(convert(d))))
}

fn refused(e: RequestError) -> Status {
    tracing::debug!(error = %e, "request refused");
    Status::from(e)
}

#[tonic::async_trait]
impl Vss for VssService {
    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "acquire"))]
    async fn acquire(
        &self,
        req: Request<AcquireRequest>,
    ) -> Result<Response<AcquireReply>, Status> {
        self.allow(&req, Permission::Acquire, req.get_ref().slot)?;
        let origin = self.origin(&req);
        let call = convert::acquire_call(req.get_ref().clone());
        let acquired = self.node.acquire(origin, call).await?;
        Ok(Response::new(convert::acquire_reply(acquired)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(acquires = req.get_ref().requests.len(), verb = "acquire-batch"))]
    async fn acquire_batch(
        &self,
        req: Request<AcquireBatchRequest>,
    ) -> Result<Response<AcquireBatchReply>, Status> {
        let count = req.get_ref().requests.len();
        if count > MAX_BATCH_ACQUIRES {
            return Err(Status::invalid_argument(format!(
                "`requests` holds {count} acquires, at most {MAX_BATCH_ACQUIRES} allowed"
            )));
        }
        // A batch mixes the acquires of a client's callers: a slot its
        // token may not acquire on fails those acquires, not the batch.
        let grant = match &self.access {
            Some(access) => Some((
                access,
                auth::authenticate(access, &req, Permission::Acquire)?,
            )),
            None => None,
        };
        let allow = |slot| match &grant {
            Some((access, grant)) => access.allow(grant, Permission::Acquire, slot),
            None => Ok(()),
        };
        let origin = self.origin(&req);
        let calls = req
            .get_ref()
            .requests
            .iter()
            .cloned()
            .map(convert::acquire_call)
            .collect();
        let outcomes = self.node.acquire_batch(origin, calls, allow).await;
        Ok(Response::new(AcquireBatchReply {
            outcomes: outcomes.into_iter().map(convert::acquire_outcome).collect(),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "call"))]
    async fn call(&self, req: Request<CallRequest>) -> Result<Response<CallReply>, Status> {
        self.allow(&req, Permission::Acquire, req.get_ref().slot)?;
        let origin = self.origin(&req);
        let call = convert::custom_call(req.get_ref().clone());
        let payload = self.node.call(origin, call).await?;
        Ok(Response::new(CallReply { payload }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "publish"))]
    async fn publish(
        &self,
        req: Request<PublishRequest>,
    ) -> Result<Response<PublishReply>, Status> {
        self.allow(&req, Permission::Publish, req.get_ref().slot)?;
        let origin = self.origin(&req);
        let call = convert::publish_call(req.get_ref().clone());
        let outcome = self.node.publish(origin, call).await?;
        Ok(Response::new(convert::publish_reply(outcome)))
    }

    async fn register(
        &self,
        req: Request<MembershipRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.membership(req, true).await
    }

    async fn deregister(
        &self,
        req: Request<MembershipRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.membership(req, false).await
    }

    type EventsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<vss_proto::v1::Event, Status>> + Send>,
    >;

    /// Event streams are served by [`crate::edge::events::WithEvents`] on
    /// the client port, so that an event is encoded once for all its
    /// streams; this is reached only on the mesh port, where clients have
    /// no stream.
    async fn events(
        &self,
        _req: Request<Streaming<ClientMessage>>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        Err(Status::unimplemented(
            "event streams are served on the client port",
        ))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "increment"))]
    async fn increment(
        &self,
        req: Request<CounterChange>,
    ) -> Result<Response<CounterValue>, Status> {
        self.allow(&req, Permission::Acquire, req.get_ref().slot)?;
        let r = req.into_inner();
        let (v, n) = self
            .node
            .change_counter(r.slot, true, r.amount, r.request_id)
            .await
            .map_err(refused)?;
        Ok(Response::new(convert::counter_value(v, n)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "decrement"))]
    async fn decrement(
        &self,
        req: Request<CounterChange>,
    ) -> Result<Response<CounterValue>, Status> {
        self.allow(&req, Permission::Acquire, req.get_ref().slot)?;
        let r = req.into_inner();
        let (v, n) = self
            .node
            .change_counter(r.slot, false, r.amount, r.request_id)
            .await
            .map_err(refused)?;
        Ok(Response::new(convert::counter_value(v, n)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "read_counter"))]
    async fn read_counter(
        &self,
        req: Request<ReadCounterRequest>,
    ) -> Result<Response<CounterValue>, Status> {
        self.allow(&req, Permission::Subscribe, req.get_ref().slot)?;
        let v = self
            .node
            .read_counter(req.get_ref().slot)
            .await
            .map_err(refused)?;
        Ok(Response::new(convert::counter_value(v, 0)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "set"))]
    async fn set(&self, req: Request<SetRequest>) -> Result<Response<WriteReply>, Status> {
        self.allow(&req, Permission::Publish, req.get_ref().slot)?;
        let r = req.into_inner();
        let (w, n) = self
            .node
            .set(r.slot, r.key, r.value)
            .await
            .map_err(refused)?;
        Ok(Response::new(convert::written(&w, n)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "delete"))]
    async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<WriteReply>, Status> {
        self.allow(&req, Permission::Publish, req.get_ref().slot)?;
        let r = req.into_inner();
        let (w, n) = self.node.delete(r.slot, r.key).await.map_err(refused)?;
        Ok(Response::new(convert::written(&w, n)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "get"))]
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetReply>, Status> {
        self.allow(&req, Permission::Subscribe, req.get_ref().slot)?;
        let r = req.into_inner();
        let at_least = r.at_least.map(convert::register_version);
        let found = self
            .node
            .get(r.slot, r.key, at_least)
            .await
            .map_err(refused)?;
        Ok(Response::new(convert::get_reply(found)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "list_keys"))]
    async fn list_keys(
        &self,
        req: Request<ListKeysRequest>,
    ) -> Result<Response<ListKeysReply>, Status> {
        self.allow(&req, Permission::Subscribe, req.get_ref().slot)?;
        let r = req.into_inner();
        let listed = self
            .node
            .list_keys(r.slot, r.prefix, r.limit)
            .await
            .map_err(refused)?;
        Ok(Response::new(convert::list_keys_reply(listed)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "announce"))]
    async fn announce(
        &self,
        req: Request<AnnounceRequest>,
    ) -> Result<Response<AnnounceReply>, Status> {
        self.allow(&req, Permission::Publish, req.get_ref().slot)?;
        let r = req.into_inner();
        let (a, n) = self
            .node
            .announce(r.slot, r.app, r.address, r.ttl_ms)
            .await
            .map_err(refused)?;
        Ok(Response::new(AnnounceReply {
            expires_ms: a.expires_ms,
            added: a.added,
            replicas: n,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "withdraw"))]
    async fn withdraw(
        &self,
        req: Request<WithdrawRequest>,
    ) -> Result<Response<WithdrawReply>, Status> {
        self.allow(&req, Permission::Publish, req.get_ref().slot)?;
        let r = req.into_inner();
        let (w, n) = self
            .node
            .withdraw(r.slot, r.app, r.address)
            .await
            .map_err(refused)?;
        Ok(Response::new(WithdrawReply {
            removed: w.removed,
            replicas: n,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "list_services"))]
    async fn list_services(
        &self,
        req: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesReply>, Status> {
        self.allow(&req, Permission::Subscribe, req.get_ref().slot)?;
        let r = req.into_inner();
        let services = self
            .node
            .list_services(r.slot, r.app)
            .await
            .map_err(refused)?;
        Ok(Response::new(ListServicesReply {
            services: services.iter().map(convert::service).collect(),
        }))
    }

    type WatchServicesStream = Stream<ServiceChange>;

    async fn watch_services(
        &self,
        req: Request<ListServicesRequest>,
    ) -> Result<Response<Self::WatchServicesStream>, Status> {
        self.allow(&req, Permission::Subscribe, req.get_ref().slot)?;
        let r = req.into_inner();
        let rx = self
            .node
            .watch_services(r.slot, r.app)
            .await
            .map_err(refused)?;
        Ok(Response::new(stream_of(rx, convert::service_change)))
    }

    type WatchTicksStream = Stream<Tick>;

    async fn watch_ticks(
        &self,
        req: Request<WatchTicksRequest>,
    ) -> Result<Response<Self::WatchTicksStream>, Status> {
        self.allow(&req, Permission::Subscribe, req.get_ref().slot)?;
        let rx = self
            .node
            .watch_ticks(req.get_ref().slot)
            .await
            .map_err(refused)?;
        Ok(Response::new(stream_of(rx, convert::tick)))
    }

    type WatchRoutingStream = Stream<RoutingUpdate>;

    async fn watch_routing(
        &self,
        req: Request<WatchRoutingRequest>,
    ) -> Result<Response<Self::WatchRoutingStream>, Status> {
        // Any caller with a valid token: clients route by the table.
        if let Some(access) = &self.access {
            auth::authenticate(access, &req, Permission::Subscribe)?;
        }
        let mut tables = self.node.watch_routing();
        let instance = self.node.me().to_string();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let stop = self.node.stopping().clone();
        // Ends when the client goes away or the runtime stops.
        self.node.streams().spawn(async move {
            loop {
                let table = tables.borrow_and_update().as_deref().map(|t| t.to_proto());
                let update = RoutingUpdate {
                    instance: instance.clone(),
                    table,
                };
                // A reader 4 tables behind is dropped, as every stream's
                // slow reader is, rather than holding this task.
                if tx.try_send(Ok(update)).is_err() {
                    return;
                }
                tokio::select! {
                    changed = tables.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                    () = stop.cancelled() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        if let Some(access) = &self.access {
            let grant = auth::authenticate(access, &req, Permission::Admin)?;
            access.allow_any(&grant, Permission::Admin)?;
        }
        Ok(Response::new(convert::status_reply(self.node.status())))
    }
}
