//! The client gRPC API (`vss.v1.Vss`) on top of the slot table.

use std::sync::Arc;
use std::time::Instant;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status, Streaming};
use vss_proto::v1::acquire_outcome::Outcome;
use vss_proto::v1::vss_server::Vss;
use vss_proto::v1::{
    AcquireBatchReply, AcquireBatchRequest, AcquireFailure, AcquireOutcome, AcquireReply,
    AcquireRequest, AnnounceReply, AnnounceRequest, CallReply, CallRequest, ClientMessage,
    CounterChange, CounterValue, DeleteRequest, GetReply, GetRequest, KeyValue, ListKeysReply,
    ListKeysRequest, ListServicesReply, ListServicesRequest, MembershipReply, MembershipRequest,
    PeerStatus, PublishReply, PublishRequest, ReadCounterRequest, RoutingUpdate, ServiceChange,
    SetRequest, SlotStatus, StatusReply, StatusRequest, Tick, Version, WatchRoutingRequest,
    WatchTicksRequest, WithdrawReply, WithdrawRequest, WriteReply,
};
use vss_slot_counter::wire as counter;
use vss_slot_register::wire as register;

use crate::core::access::{Access, Permission};
use crate::core::cluster::{Cluster, Peer, Placement};

use crate::core::data::{self, DataSlots};
use crate::core::error::RequestError;
use crate::core::signals::Signals;
use crate::core::slot_table::SlotTable;
use crate::ops::metrics::{Metrics, Verb};

/// Marks a request forwarded by another instance (over the mesh port); it
/// is served where it lands, so a request crosses the mesh at most once.
pub const FORWARDED_HEADER: &str = "x-vss-forwarded-by";

/// Longest wait for the owner of a slot to answer a forwarded request
/// (publishes wait for their slot's timeout on top).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Most acquires one `AcquireBatch` may carry.
pub const MAX_BATCH_ACQUIRES: usize = 1000;

/// Serves client requests from this instance's slots.
#[derive(Debug, Clone)]
pub struct VssService {
    slots: Arc<SlotTable>,
    data: DataSlots,
    signals: Arc<Signals>,
    cluster: Arc<Cluster>,
    metrics: Metrics,
    /// Owns the per-stream tasks reading acknowledgements.
    streams: TaskTracker,
    /// Cancelled when the runtime stops: ends long-lived streams so the
    /// server can drain.
    stop: CancellationToken,
    /// Serving the mesh port, where peers forward requests: only there is
    /// [`FORWARDED_HEADER`] believed. On the client port a client could
    /// otherwise make any instance serve a slot it does not own, from a
    /// bucket of its own.
    from_peers: bool,
    /// Client tokens, on the client port when `--client-tokens` is set.
    access: Option<Arc<Access>>,
}

impl VssService {
    pub fn new(
        slots: Arc<SlotTable>,
        signals: Arc<Signals>,
        cluster: Arc<Cluster>,
        metrics: Metrics,
        streams: TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        Self {
            data: DataSlots::new(slots.clone(), cluster.clone()),
            slots,
            signals,
            cluster,
            metrics,
            streams,
            stop,
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

    /// Whether a peer forwarded `req`: it is then served here.
    fn forwarded<T>(&self, req: &Request<T>) -> bool {
        self.from_peers && req.metadata().contains_key(FORWARDED_HEADER)
    }

    /// Refuses `req` unless its token may do `permission` on `slot`.
    fn allow<T>(&self, req: &Request<T>, permission: Permission, slot: u32) -> Result<(), Status> {
        match &self.access {
            Some(access) => access.check(req, permission, slot).map(drop),
            None => Ok(()),
        }
    }

    fn observe(&self, verb: Verb, started: Instant) {
        self.metrics
            .observe_request(verb, started.elapsed().as_secs_f64());
    }

    async fn timed<T>(&self, verb: Verb, f: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = f.await;
        self.observe(verb, started);
        out
    }

    /// Register (`join`) or deregister, at the slot's owner.
    async fn membership(
        &self,
        req: Request<MembershipRequest>,
        join: bool,
    ) -> Result<Response<MembershipReply>, Status> {
        let slot = req.get_ref().slot;
        let forwarded = self
            .at_owner(&req, slot, FORWARD_TIMEOUT, |peer, r| async move {
                if join {
                    peer.vss().register(r).await
                } else {
                    peer.vss().deregister(r).await
                }
            })
            .await;
        if let Some(answer) = forwarded {
            return answer;
        }
        let r = req.into_inner();
        if join {
            self.timed(Verb::Register, self.signals.register(r.slot, &r.client_id))
                .await?;
        } else {
            self.timed(
                Verb::Deregister,
                self.signals.deregister(r.slot, &r.client_id),
            )
            .await?;
        }
        Ok(Response::new(MembershipReply {}))
    }

    /// Serves the request at the slot's owner when that is another
    /// instance: tries the owner, then its standby, and answers None when
    /// this instance should serve it (it is next in line, or nobody else
    /// could be reached). Requests already forwarded once are served where
    /// they land, so a request crosses the mesh at most once.
    async fn at_owner<T, R, F, Fut>(
        &self,
        req: &Request<T>,
        slot: u32,
        timeout: Duration,
        call: F,
    ) -> Option<Result<Response<R>, Status>>
    where
        T: Clone,
        F: Fn(Arc<Peer>, Request<T>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        if self.forwarded(req) {
            return None;
        }
        let Some(line) = self.cluster.placement(slot) else {
            return Some(Err(Status::unavailable(
                "this instance is joining the cluster and has no routing table yet; try another instance",
            )));
        };
        for target in line {
            let Placement::Remote(peer) = target else {
                return None;
            };
            let mut request = Request::new(req.get_ref().clone());
            request.set_timeout(timeout);
            if let Ok(me) = MetadataValue::try_from(self.cluster.me()) {
                request.metadata_mut().insert(FORWARDED_HEADER, me);
            }
            self.cluster.record_forward(peer.id());
            match call(peer.clone(), request).await {
                Err(status) if is_unreachable(&status) => {
                    tracing::warn!(peer = peer.id(), slot, error = %status.message(), "slot owner unreachable; trying the next in line");
                }
                answer => return Some(answer),
            }
        }
        None
    }
}

impl VssService {
    /// One acquire at another instance: alone when it is the only one on
    /// its way there, else in the next `AcquireBatch` to that peer, so
    /// under load a forward costs a share of one mesh call.
    async fn forward_acquire(
        &self,
        peer: Arc<Peer>,
        req: Request<AcquireRequest>,
    ) -> Result<Response<AcquireReply>, Status> {
        let (others, _forwarding) = peer.forwarding();
        if others > 0 {
            let lane = peer.acquire_lane(self.cluster.me(), FORWARD_TIMEOUT);
            match lane.acquire(req.get_ref().clone()).await {
                Some(Ok(Outcome::Reply(reply))) => return Ok(Response::new(reply)),
                Some(Ok(Outcome::Failure(f))) => {
                    return Err(Status::new(Code::from(f.code), f.message));
                }
                Some(Err(status)) => return Err(status),
                None => {}
            }
        }
        peer.vss().acquire(req).await
    }

    /// One slot's share of an `AcquireBatch`, at the slot's owner: forwarded
    /// as one batch when that is another instance, as `at_owner` does for
    /// a single acquire.
    async fn acquire_group(
        &self,
        slot: u32,
        items: Vec<AcquireRequest>,
        forwarded: bool,
    ) -> Vec<AcquireOutcome> {
        if !forwarded {
            let Some(line) = self.cluster.placement(slot) else {
                let joining = Status::unavailable(
                    "this instance is joining the cluster and has no routing table yet; try another instance",
                );
                return items.iter().map(|_| failure(&joining)).collect();
            };
            for target in line {
                let Placement::Remote(peer) = target else {
                    break;
                };
                let mut request = Request::new(AcquireBatchRequest {
                    requests: items.clone(),
                });
                request.set_timeout(FORWARD_TIMEOUT);
                if let Ok(me) = MetadataValue::try_from(self.cluster.me()) {
                    request.metadata_mut().insert(FORWARDED_HEADER, me);
                }
                self.cluster.record_forward(peer.id());
                match peer.vss().acquire_batch(request).await {
                    Ok(reply) if reply.get_ref().outcomes.len() == items.len() => {
                        return reply.into_inner().outcomes;
                    }
                    Ok(reply) => {
                        let wrong = Status::internal(format!(
                            "instance {} answered {} of {} acquires",
                            peer.id(),
                            reply.get_ref().outcomes.len(),
                            items.len()
                        ));
                        return items.iter().map(|_| failure(&wrong)).collect();
                    }
                    Err(status) if is_unreachable(&status) => {
                        tracing::warn!(peer = peer.id(), slot, error = %status.message(), "slot owner unreachable; trying the next in line");
                    }
                    Err(status) => return items.iter().map(|_| failure(&status)).collect(),
                }
            }
        }
        let items: Vec<(String, Option<u32>)> =
            items.into_iter().map(|r| (r.key, r.tokens)).collect();
        self.slots
            .acquire_many(slot, &items)
            .await
            .into_iter()
            .map(|answer| match answer {
                Ok(a) => AcquireOutcome {
                    outcome: Some(Outcome::Reply(AcquireReply {
                        granted: a.granted,
                        remaining: a.remaining,
                        reset_ms: a.reset_ms,
                    })),
                },
                Err(e) => failure(&Status::from(e)),
            })
            .collect()
    }
}

fn failure(status: &Status) -> AcquireOutcome {
    AcquireOutcome {
        outcome: Some(Outcome::Failure(AcquireFailure {
            code: status.code() as i32,
            message: status.message().to_string(),
        })),
    }
}

type Stream<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

fn stream_of<T: Send + 'static>(rx: tokio::sync::mpsc::Receiver<T>) -> Stream<T> {
    use tokio_stream::StreamExt;
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok))
}

fn counter_value(v: counter::Value, replicas: u32) -> CounterValue {
    CounterValue {
        value: v.value,
        increments: v.increments,
        decrements: v.decrements,
        applied: v.applied,
        replicas,
    }
}

fn version(v: &register::Version) -> Version {
    Version {
        hlc: v.hlc,
        instance: v.instance.clone(),
    }
}

fn written(w: &register::Written, replicas: u32) -> WriteReply {
    WriteReply {
        version: Some(version(&w.version)),
        existed: w.existed,
        replicas,
    }
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
        let started = Instant::now();
        let slot = req.get_ref().slot;
        let forwarded = self
            .at_owner(&req, slot, FORWARD_TIMEOUT, |peer, r| {
                self.forward_acquire(peer, r)
            })
            .await;
        if let Some(answer) = forwarded {
            self.observe(Verb::Acquire, started);
            return answer;
        }
        let r = req.into_inner();
        self.timed(Verb::Acquire, self.slots.acquire(r.slot, &r.key, r.tokens))
            .await
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

    #[tracing::instrument(level = "debug", skip_all, fields(acquires = req.get_ref().requests.len(), verb = "acquire-batch"))]
    async fn acquire_batch(
        &self,
        req: Request<AcquireBatchRequest>,
    ) -> Result<Response<AcquireBatchReply>, Status> {
        let started = Instant::now();
        let count = req.get_ref().requests.len();
        if count > MAX_BATCH_ACQUIRES {
            return Err(Status::invalid_argument(format!(
                "`requests` holds {count} acquires, at most {MAX_BATCH_ACQUIRES} allowed"
            )));
        }
        let forwarded = self.forwarded(&req);
        // A batch mixes the acquires of a client's callers: a slot its
        // token may not acquire on fails those acquires, not the batch.
        let grant = match &self.access {
            Some(access) => Some((access, access.authenticate(&req, Permission::Acquire)?)),
            None => None,
        };
        // Each slot's acquires keep their order; slots are served at once.
        let mut groups: std::collections::BTreeMap<u32, (Vec<usize>, Vec<AcquireRequest>)> =
            Default::default();
        for (i, r) in req.into_inner().requests.into_iter().enumerate() {
            let group = groups.entry(r.slot).or_default();
            group.0.push(i);
            group.1.push(r);
        }
        let answered =
            futures_util::future::join_all(groups.into_iter().map(|(slot, (at, items))| {
                let denied = grant.as_ref().and_then(|(access, grant)| {
                    access.allow(grant, Permission::Acquire, slot).err()
                });
                async move {
                    match denied {
                        Some(status) => (at, items.iter().map(|_| failure(&status)).collect()),
                        None => (at, self.acquire_group(slot, items, forwarded).await),
                    }
                }
            }))
            .await;
        let mut outcomes = vec![AcquireOutcome::default(); count];
        for (at, group) in answered {
            for (i, outcome) in at.into_iter().zip(group) {
                outcomes[i] = outcome;
            }
        }
        self.metrics
            .observe_acquire_batch(started.elapsed().as_secs_f64());
        Ok(Response::new(AcquireBatchReply { outcomes }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "call"))]
    async fn call(&self, req: Request<CallRequest>) -> Result<Response<CallReply>, Status> {
        self.allow(&req, Permission::Acquire, req.get_ref().slot)?;
        let started = Instant::now();
        let slot = req.get_ref().slot;
        let forwarded = self
            .at_owner(&req, slot, FORWARD_TIMEOUT, |peer, r| async move {
                peer.vss().call(r).await
            })
            .await;
        if let Some(answer) = forwarded {
            self.observe(Verb::Call, started);
            return answer;
        }
        let r = req.into_inner();
        self.timed(Verb::Call, self.data.call(r.slot, &r.op, r.payload))
            .await
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
        self.allow(&req, Permission::Publish, req.get_ref().slot)?;
        let started = Instant::now();
        let slot = req.get_ref().slot;
        // A publish waits for its deliveries: up to the slot's timeout.
        let wait = self
            .slots
            .signal(slot)
            .map(|(_, s)| s.config.timeout)
            .unwrap_or_default()
            + FORWARD_TIMEOUT;
        let forwarded = self
            .at_owner(&req, slot, wait, |peer, r| async move {
                peer.vss().publish(r).await
            })
            .await;
        if let Some(answer) = forwarded {
            self.observe(Verb::Publish, started);
            return answer;
        }
        let r = req.into_inner();
        let outcome = self
            .signals
            .publish(r.slot, r.message, &r.client_id, r.message_id)
            .await;
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
        self.allow(&req, Permission::Subscribe, req.get_ref().slot)?;
        self.membership(req, true).await
    }

    async fn deregister(
        &self,
        req: Request<MembershipRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.allow(&req, Permission::Subscribe, req.get_ref().slot)?;
        self.membership(req, false).await
    }

    type EventsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<vss_proto::v1::Event, Status>> + Send>,
    >;

    /// Event streams are served by [`crate::edge::events::WithEvents`] on the
    /// client port, so that an event is encoded once for all its streams;
    /// this is reached only on the mesh port, where clients have no stream.
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
            .timed(
                Verb::Increment,
                self.data.change(r.slot, true, r.amount, r.request_id),
            )
            .await
            .map_err(refused)?;
        Ok(Response::new(counter_value(v, n)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "decrement"))]
    async fn decrement(
        &self,
        req: Request<CounterChange>,
    ) -> Result<Response<CounterValue>, Status> {
        self.allow(&req, Permission::Acquire, req.get_ref().slot)?;
        let r = req.into_inner();
        let (v, n) = self
            .timed(
                Verb::Decrement,
                self.data.change(r.slot, false, r.amount, r.request_id),
            )
            .await
            .map_err(refused)?;
        Ok(Response::new(counter_value(v, n)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "read_counter"))]
    async fn read_counter(
        &self,
        req: Request<ReadCounterRequest>,
    ) -> Result<Response<CounterValue>, Status> {
        self.allow(&req, Permission::Subscribe, req.get_ref().slot)?;
        let slot = req.get_ref().slot;
        let v = self
            .timed(Verb::ReadCounter, self.data.read_counter(slot))
            .await
            .map_err(refused)?;
        Ok(Response::new(counter_value(v, 0)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "set"))]
    async fn set(&self, req: Request<SetRequest>) -> Result<Response<WriteReply>, Status> {
        self.allow(&req, Permission::Publish, req.get_ref().slot)?;
        let r = req.into_inner();
        let (w, n) = self
            .timed(Verb::Set, self.data.set(r.slot, r.key, r.value))
            .await
            .map_err(refused)?;
        Ok(Response::new(written(&w, n)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "delete"))]
    async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<WriteReply>, Status> {
        self.allow(&req, Permission::Publish, req.get_ref().slot)?;
        let r = req.into_inner();
        let (w, n) = self
            .timed(Verb::Delete, self.data.delete(r.slot, r.key))
            .await
            .map_err(refused)?;
        Ok(Response::new(written(&w, n)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "get"))]
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetReply>, Status> {
        self.allow(&req, Permission::Subscribe, req.get_ref().slot)?;
        let r = req.into_inner();
        let at_least = r.at_least.map(|v| register::Version {
            hlc: v.hlc,
            instance: v.instance,
        });
        let found = self
            .timed(Verb::Get, self.data.get(r.slot, r.key, at_least))
            .await
            .map_err(refused)?;
        Ok(Response::new(match found {
            register::Found::Live(e) => GetReply {
                found: true,
                value: e.value,
                version: Some(version(&e.version)),
                deleted: false,
            },
            register::Found::Deleted(v) => GetReply {
                found: false,
                value: Vec::new(),
                version: Some(version(&v)),
                deleted: true,
            },
            register::Found::Absent => GetReply::default(),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "list_keys"))]
    async fn list_keys(
        &self,
        req: Request<ListKeysRequest>,
    ) -> Result<Response<ListKeysReply>, Status> {
        self.allow(&req, Permission::Subscribe, req.get_ref().slot)?;
        let r = req.into_inner();
        let listed = self
            .timed(
                Verb::ListKeys,
                self.data.list_keys(r.slot, r.prefix, r.limit),
            )
            .await
            .map_err(refused)?;
        Ok(Response::new(ListKeysReply {
            entries: listed
                .entries
                .into_iter()
                .map(|e| KeyValue {
                    version: Some(version(&e.version)),
                    key: e.key,
                    value: e.value,
                })
                .collect(),
            truncated: listed.truncated,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "announce"))]
    async fn announce(
        &self,
        req: Request<AnnounceRequest>,
    ) -> Result<Response<AnnounceReply>, Status> {
        self.allow(&req, Permission::Publish, req.get_ref().slot)?;
        let r = req.into_inner();
        let (a, n) = self
            .timed(
                Verb::Announce,
                self.data.announce(r.slot, r.app, r.address, r.ttl_ms),
            )
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
            .timed(Verb::Withdraw, self.data.withdraw(r.slot, r.app, r.address))
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
            .timed(
                Verb::ListServices,
                self.data.services(r.slot, r.app, Verb::ListServices),
            )
            .await
            .map_err(refused)?;
        Ok(Response::new(ListServicesReply {
            services: services.iter().map(data::service).collect(),
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
            .data
            .watch_services(r.slot, r.app, &self.streams, self.stop.clone())
            .await
            .map_err(refused)?;
        Ok(Response::new(stream_of(rx)))
    }

    type WatchTicksStream = Stream<Tick>;

    async fn watch_ticks(
        &self,
        req: Request<WatchTicksRequest>,
    ) -> Result<Response<Self::WatchTicksStream>, Status> {
        self.allow(&req, Permission::Subscribe, req.get_ref().slot)?;
        let slot = req.get_ref().slot;
        let rx = self
            .data
            .watch_ticks(slot, &self.streams, self.stop.clone())
            .await
            .map_err(refused)?;
        Ok(Response::new(stream_of(rx)))
    }

    type WatchRoutingStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<RoutingUpdate, Status>> + Send>>;

    async fn watch_routing(
        &self,
        req: Request<WatchRoutingRequest>,
    ) -> Result<Response<Self::WatchRoutingStream>, Status> {
        // Any caller with a valid token: clients route by the table.
        if let Some(access) = &self.access {
            access.authenticate(&req, Permission::Subscribe)?;
        }
        let mut tables = self.cluster.watch_routing();
        let instance = self.cluster.me().to_string();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let stop = self.stop.clone();
        // Ends when the client goes away or the runtime stops.
        self.streams.spawn(async move {
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
            let grant = access.authenticate(&req, Permission::Admin)?;
            access.allow_any(&grant, Permission::Admin)?;
        }
        let slots = self
            .slots
            .summaries()
            .into_iter()
            .map(|s| {
                let (delivered, failed_deliveries) = self.metrics.deliveries_of(u32::from(s.id));
                SlotStatus {
                    id: u32::from(s.id),
                    r#type: s.type_name,
                    calls: s.calls,
                    errors: s.errors,
                    restarts: s.restarts,
                    delivered,
                    failed_deliveries,
                }
            })
            .collect();
        let peers = self
            .cluster
            .peers()
            .values()
            .map(|p| {
                let h = p.health();
                PeerStatus {
                    id: p.id().to_string(),
                    address: p.addr().to_string(),
                    healthy: p.healthy(),
                    rtt_us: h
                        .rtt
                        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                    epoch: h.epoch,
                    config_generation: h.config_generation,
                }
            })
            .collect();
        Ok(Response::new(StatusReply {
            instance: self.cluster.me().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            config_generation: self.slots.generation(),
            slots,
            routing: self.cluster.table().map(|t| t.to_proto()),
            peers,
        }))
    }
}

/// The peer could not be reached or did not answer in time (as opposed to
/// answering with an error of its own, which goes back to the client).
fn is_unreachable(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
}
