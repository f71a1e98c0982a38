//! Another instance: its link, and what its heartbeats tell.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::link::PeerLink;

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
    /// The slots and partitions whose state the peer holds as standby.
    pub held: std::collections::HashSet<(u8, u16)>,
    /// The peer is stopping.
    pub leaving: bool,
}

/// A peer instance: the link shared by the mesh loops, the forwarding path
/// and deliveries, and its health.
#[derive(Debug)]
pub struct Peer {
    id: String,
    addr: String,
    link: Arc<dyn PeerLink>,
    health: Mutex<PeerHealth>,
}

impl Peer {
    pub fn new(id: &str, addr: &str, link: Arc<dyn PeerLink>) -> Self {
        Self {
            id: id.to_string(),
            addr: addr.to_string(),
            link,
            health: Mutex::new(PeerHealth::default()),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn link(&self) -> &dyn PeerLink {
        self.link.as_ref()
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
