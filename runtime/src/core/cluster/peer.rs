//! One connection to another instance, and what its heartbeats tell.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use vss_proto::v1::mesh_client::MeshClient;
use vss_proto::v1::vss_client::VssClient;
use vss_wire::AcquireLane;

use crate::edge::tls::MeshConnector;

/// Time between heartbeats to one peer.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(200);
/// A peer that has not answered a heartbeat for this long is down.
pub const HEALTH_WINDOW: Duration = Duration::from_millis(800);
/// Longest wait for a heartbeat answer.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(500);

/// What this instance knows of a peer.
#[derive(Debug, Clone, Default)]
pub struct PeerHealth {
    pub last_ok: Option<Instant>,
    pub rtt: Option<Duration>,
    /// Routing epoch the peer holds, as of its last answer.
    pub epoch: u64,
    pub leader: String,
    pub config_generation: u64,
    /// Whether the peer's last answer listed this instance among those it
    /// hears from.
    pub hears_me: bool,
    /// When this instance last pushed its routing table to the peer.
    pub last_push: Option<Instant>,
}

/// A peer instance: a lazily connected channel shared by the mesh, the
/// forwarding path and deliveries.
#[derive(Debug)]
pub struct Peer {
    id: String,
    addr: String,
    channel: Channel,
    health: Mutex<PeerHealth>,
    /// Acquires forwarded to this peer, coalesced into `AcquireBatch`
    /// calls; started on the first forward that has company.
    lane: OnceLock<AcquireLane>,
    /// Acquires being forwarded to this peer.
    forwarding: AtomicUsize,
}

/// Counts an acquire being forwarded until dropped.
pub struct Forwarding<'a>(&'a AtomicUsize);

impl Drop for Forwarding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Peer {
    /// A peer at `addr` (`host:port`), dialed over mTLS with `tls` if given.
    pub fn new(
        id: &str,
        addr: &str,
        tls: Option<&MeshConnector>,
    ) -> Result<Self, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(HEARTBEAT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10));
        let channel = match tls {
            Some(tls) => endpoint.connect_with_connector_lazy(tls.clone()),
            None => endpoint.connect_lazy(),
        };
        Ok(Self {
            id: id.to_string(),
            addr: addr.to_string(),
            channel,
            health: Mutex::new(PeerHealth::default()),
            lane: OnceLock::new(),
            forwarding: AtomicUsize::new(0),
        })
    }

    /// Counts one more acquire forwarded to this peer, with how many were
    /// already on their way: a lone one goes alone, the others share
    /// [`Peer::acquire_lane`].
    pub fn forwarding(&self) -> (usize, Forwarding<'_>) {
        let others = self.forwarding.fetch_add(1, Ordering::Relaxed);
        (others, Forwarding(&self.forwarding))
    }

    /// Batches of acquires forwarded to this peer, marked as forwarded by
    /// `me` so the peer serves them where they land.
    pub fn acquire_lane(&self, me: &str, timeout: Duration) -> &AcquireLane {
        self.lane.get_or_init(|| {
            let mut metadata = MetadataMap::new();
            if let Ok(me) = MetadataValue::try_from(me) {
                metadata.insert(crate::edge::vss_service::FORWARDED_HEADER, me);
            }
            AcquireLane::start(self.vss(), timeout, metadata)
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn mesh(&self) -> MeshClient<Channel> {
        MeshClient::new(self.channel.clone())
    }

    pub fn vss(&self) -> VssClient<Channel> {
        VssClient::new(self.channel.clone())
    }

    pub fn health(&self) -> PeerHealth {
        self.lock().clone()
    }

    /// Answered a heartbeat within [`HEALTH_WINDOW`].
    pub fn healthy(&self) -> bool {
        self.lock()
            .last_ok
            .is_some_and(|t| t.elapsed() < HEALTH_WINDOW)
    }

    /// Healthy, and hears this instance too: the link works both ways.
    pub fn in_contact(&self) -> bool {
        let h = self.lock();
        h.hears_me && h.last_ok.is_some_and(|t| t.elapsed() < HEALTH_WINDOW)
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut PeerHealth)) {
        f(&mut self.lock());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PeerHealth> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }
}
