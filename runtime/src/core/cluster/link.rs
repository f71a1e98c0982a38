//! The one way the core talks to another instance: [`PeerLink`].
//!
//! Everything the cluster sends a peer goes through this trait, in domain
//! types: heartbeats, routing tables, replicated state, deliveries and
//! forwarded requests. The edge implements it over gRPC; tests implement
//! it in-process, with links that can be cut, drop or delay messages, so
//! election, failover and replication are tested without sockets.

use std::sync::Arc;
use std::time::Duration;

use vss_slot_host::Acquired;

use super::routing::RoutingTable;
use crate::core::calls::{
    AcquireCall, CustomCall, Delivery, MembershipCall, PublishCall, PublishOutcome,
};
use crate::core::error::{Code, RequestError};

/// Longest wait for a mesh call other than heartbeats.
pub const MESH_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// A heartbeat: who sends it and the routing epoch it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub from: String,
    pub epoch: u64,
}

/// A peer's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatReply {
    pub from: String,
    /// Routing epoch the peer holds (0: none yet).
    pub epoch: u64,
    /// The leader its table names ("" without a table).
    pub leader: String,
    pub config_generation: u64,
    /// The peers it hears from.
    pub hears: Vec<String>,
    /// The slots and partitions whose state it holds as their standby,
    /// from the owner its table names.
    pub held: Vec<(u8, u16)>,
    /// It is stopping, and hands what it owns over.
    pub leaving: bool,
}

/// One slot's state (one partition's, for a split slot), as its module's
/// `snapshot` gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    pub slot: u32,
    pub partition: u16,
    pub state: Vec<u8>,
}

/// Slot states pushed to a peer: an owner's to its standby, or the slots
/// kept on every instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicate {
    pub from: String,
    pub epoch: u64,
    pub slots: Vec<SlotState>,
}

/// A peer's state of the slots kept on every instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchedState {
    pub slots: Vec<SlotState>,
    /// Whether the peer had itself taken its peers' state (its copy can be
    /// trusted to hold every acknowledged write).
    pub synced: bool,
}

/// Why a call to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The peer could not be reached or did not answer in time: try the
    /// next instance in line.
    #[error("{0}")]
    Unreachable(String),
    /// The peer answered with an error of its own: another instance would
    /// answer the same, so it goes back to the caller as it is.
    #[error("{message}")]
    Refused { code: Code, message: String },
}

impl PeerError {
    /// The peer's refusal as a request error (an unreachable peer is
    /// `Unavailable`).
    pub fn into_request_error(self) -> RequestError {
        match self {
            PeerError::Unreachable(message) => RequestError::Remote {
                code: Code::Unavailable,
                message,
            },
            PeerError::Refused { code, message } => RequestError::Remote { code, message },
        }
    }
}

/// A forwarded request's outcome: the peer answered (with a grant or a
/// refusal of the request), or it could not be reached.
pub type Forwarded<T> = Result<T, PeerError>;

/// Talking to one other instance. Implementations bound nothing: the
/// caller puts a deadline on every call.
#[async_trait::async_trait]
pub trait PeerLink: Send + Sync + std::fmt::Debug {
    async fn heartbeat(&self, beat: Heartbeat) -> Result<HeartbeatReply, PeerError>;

    /// Offers the peer a routing table; answers the epoch it holds after.
    async fn install_routing(&self, table: Arc<RoutingTable>) -> Result<u64, PeerError>;

    async fn replicate(&self, states: Replicate) -> Result<(), PeerError>;

    /// The peer's state of the slots kept on every instance.
    async fn fetch_state(&self, from: &str) -> Result<FetchedState, PeerError>;

    /// Delivers a message to the peer's connected clients; answers each
    /// recipient there and whether it acknowledged in time.
    async fn deliver(&self, delivery: Delivery) -> Result<Vec<(String, bool)>, PeerError>;

    /// An acquire served at the peer, where it lands. `timeout` is the
    /// request's deadline, also given to the peer.
    async fn forward_acquire(&self, call: AcquireCall, timeout: Duration) -> Forwarded<Acquired>;

    /// One slot's acquires of a batch, served at the peer: one answer per
    /// call, in order.
    async fn forward_acquires(
        &self,
        calls: Vec<AcquireCall>,
        timeout: Duration,
    ) -> Forwarded<Vec<Result<Acquired, RequestError>>>;

    async fn forward_call(&self, call: CustomCall, timeout: Duration) -> Forwarded<Vec<u8>>;

    async fn forward_publish(
        &self,
        call: PublishCall,
        timeout: Duration,
    ) -> Forwarded<PublishOutcome>;

    async fn forward_membership(&self, call: MembershipCall, timeout: Duration) -> Forwarded<()>;
}
