//! The core's [`PeerLink`] over gRPC: `vss.v1.Mesh` for the cluster's own
//! messages, and `vss.v1.Vss` on the peer's mesh port for forwarded
//! requests, marked with [`FORWARDED_HEADER`] so the peer serves them
//! where they land.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};
use vss_proto::v1::acquire_outcome::Outcome;
use vss_proto::v1::mesh_client::MeshClient;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{AcquireBatchRequest, FetchStateRequest};
use vss_slot_host::Acquired;
use vss_wire::{AcquireLane, MeshConnector};

use crate::core::calls::{
    AcquireCall, CustomCall, Delivery, MembershipCall, PublishCall, PublishOutcome,
};
use crate::core::cluster::RoutingTable;
use crate::core::cluster::link::{
    FetchedState, Forwarded, Heartbeat, HeartbeatReply, PeerError, PeerLink, Replicate,
};
use crate::core::error::RequestError;
use crate::edge::convert::{self, TableWire as _};
use crate::edge::status::peer_error;

/// Marks a request forwarded by another instance (over the mesh port); it
/// is served where it lands, so a request crosses the mesh at most once.
pub const FORWARDED_HEADER: &str = "x-vss-forwarded-by";

/// Longest wait for a connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// One peer's channel, lazily connected, shared by the mesh loops, the
/// forwarding path and deliveries.
#[derive(Debug)]
pub struct GrpcLink {
    /// This instance's id, sent as the forwarding mark.
    me: String,
    channel: Channel,
    /// Acquires forwarded to this peer, coalesced into `AcquireBatch`
    /// calls; started on the first forward that has company.
    lane: OnceLock<AcquireLane>,
    /// Acquires being forwarded to this peer.
    forwarding: AtomicUsize,
}

/// Counts an acquire being forwarded until dropped.
struct Forwarding<'a>(&'a AtomicUsize);

impl Drop for Forwarding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl GrpcLink {
    /// A link from instance `me` to the peer at `addr` (`host:port`),
    /// dialed over mTLS with `tls` if given.
    pub fn dial(
        me: &str,
        addr: &str,
        tls: Option<MeshConnector>,
    ) -> Result<Arc<Self>, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10));
        let channel = match tls {
            Some(tls) => endpoint.connect_with_connector_lazy(tls),
            None => endpoint.connect_lazy(),
        };
        Ok(Arc::new(Self {
            me: me.to_string(),
            channel,
            lane: OnceLock::new(),
            forwarding: AtomicUsize::new(0),
        }))
    }

    fn mesh(&self) -> MeshClient<Channel> {
        MeshClient::new(self.channel.clone())
    }

    fn vss(&self) -> VssClient<Channel> {
        VssClient::new(self.channel.clone())
    }

    fn mark(&self, metadata: &mut MetadataMap) {
        if let Ok(me) = MetadataValue::try_from(self.me.as_str()) {
            metadata.insert(FORWARDED_HEADER, me);
        }
    }

    /// `message` as a forwarded request, due within `timeout`.
    fn forwarded<T>(&self, message: T, timeout: Duration) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(timeout);
        self.mark(request.metadata_mut());
        request
    }

    /// Counts one more acquire forwarded to this peer, with how many were
    /// already on their way: a lone one goes alone, the others share the
    /// lane.
    fn count_forward(&self) -> (usize, Forwarding<'_>) {
        let others = self.forwarding.fetch_add(1, Ordering::Relaxed);
        (others, Forwarding(&self.forwarding))
    }

    fn lane(&self, timeout: Duration) -> &AcquireLane {
        self.lane.get_or_init(|| {
            let mut metadata = MetadataMap::new();
            self.mark(&mut metadata);
            AcquireLane::start(self.vss(), timeout, metadata)
        })
    }
}

#[async_trait::async_trait]
impl PeerLink for GrpcLink {
    async fn heartbeat(&self, beat: Heartbeat) -> Result<HeartbeatReply, PeerError> {
        let reply = self
            .mesh()
            .heartbeat(convert::heartbeat_request(beat))
            .await
            .map_err(peer_error)?;
        Ok(convert::heartbeat_answer(reply.into_inner()))
    }

    async fn install_routing(&self, table: Arc<RoutingTable>) -> Result<u64, PeerError> {
        let reply = self
            .mesh()
            .install_routing(table.to_proto())
            .await
            .map_err(peer_error)?;
        Ok(reply.into_inner().epoch)
    }

    async fn replicate(&self, states: Replicate) -> Result<(), PeerError> {
        self.mesh()
            .replicate(convert::replicate_request(states))
            .await
            .map_err(peer_error)?;
        Ok(())
    }

    async fn fetch_state(&self, from: &str) -> Result<FetchedState, PeerError> {
        let request = FetchStateRequest {
            from: from.to_string(),
        };
        let reply = self.mesh().fetch_state(request).await.map_err(peer_error)?;
        Ok(convert::fetched_state(reply.into_inner()))
    }

    async fn deliver(&self, delivery: Delivery) -> Result<Vec<(String, bool)>, PeerError> {
        let reply = self
            .mesh()
            .deliver(convert::deliver_request(delivery))
            .await
            .map_err(peer_error)?;
        Ok(convert::delivered(reply.into_inner()))
    }

    /// Alone when it is the only acquire on its way to this peer, else in
    /// the next `AcquireBatch` to it, so under load a forward costs a share
    /// of one mesh call.
    async fn forward_acquire(&self, call: AcquireCall, timeout: Duration) -> Forwarded<Acquired> {
        let request = convert::acquire_request(call);
        let (others, _forwarding) = self.count_forward();
        if others > 0 {
            match self.lane(timeout).acquire(request.clone()).await {
                Some(Ok(Outcome::Reply(reply))) => return Ok(convert::acquired(reply)),
                Some(Ok(Outcome::Failure(f))) => {
                    return Err(peer_error(Status::new(
                        tonic::Code::from(f.code),
                        f.message,
                    )));
                }
                Some(Err(status)) => return Err(peer_error(status)),
                None => {}
            }
        }
        let reply = self
            .vss()
            .acquire(self.forwarded(request, timeout))
            .await
            .map_err(peer_error)?;
        Ok(convert::acquired(reply.into_inner()))
    }

    async fn forward_acquires(
        &self,
        calls: Vec<AcquireCall>,
        timeout: Duration,
    ) -> Forwarded<Vec<Result<Acquired, RequestError>>> {
        let request = AcquireBatchRequest {
            requests: calls.into_iter().map(convert::acquire_request).collect(),
        };
        let reply = self
            .vss()
            .acquire_batch(self.forwarded(request, timeout))
            .await
            .map_err(peer_error)?;
        Ok(reply
            .into_inner()
            .outcomes
            .into_iter()
            .map(|o| convert::outcome_of(o.outcome))
            .collect())
    }

    async fn forward_call(&self, call: CustomCall, timeout: Duration) -> Forwarded<Vec<u8>> {
        let reply = self
            .vss()
            .call(self.forwarded(convert::call_request(call), timeout))
            .await
            .map_err(peer_error)?;
        Ok(reply.into_inner().payload)
    }

    async fn forward_publish(
        &self,
        call: PublishCall,
        timeout: Duration,
    ) -> Forwarded<PublishOutcome> {
        let reply = self
            .vss()
            .publish(self.forwarded(convert::publish_request(call), timeout))
            .await
            .map_err(peer_error)?;
        Ok(convert::publish_outcome(reply.into_inner()))
    }

    async fn forward_membership(&self, call: MembershipCall, timeout: Duration) -> Forwarded<()> {
        let join = call.join;
        let request = self.forwarded(convert::membership_request(call), timeout);
        let answer = if join {
            self.vss().register(request).await
        } else {
            self.vss().deregister(request).await
        };
        answer.map(drop).map_err(peer_error)
    }
}
