//! The cluster: the mesh of instances, the election, routing, forwarding
//! targets and state replication.
//!
//! [`state::Cluster`] is what this instance knows of the cluster. Around
//! it run, each until shutdown ([`run`]):
//! - a heartbeat per peer every 200 ms ([`heartbeat`]), which measures the
//!   round trip and learns the peer's routing epoch; a peer silent for
//!   800 ms is down;
//! - a decision round every 100 ms ([`decisions`]): the leader publishes a
//!   new routing table when the healthy set or the slots changed, and
//!   every instance pushes its table to peers that hold an older one;
//! - replication every 100 ms ([`replication`]): each owner pushes a
//!   changed slot's snapshot to its standby, so a failover loses at most
//!   the updates of the last interval plus one round trip; and the
//!   anti-entropy of the slots kept on every instance ([`everywhere`]);
//! - after a start, the sync of those slots from the peers.
//!
//! Every call to a peer goes through [`link::PeerLink`], so all of this
//! runs the same over gRPC and over the in-process links of the tests.

pub mod decisions;
pub mod election;
pub mod everywhere;
pub mod heartbeat;
pub mod link;
pub mod members;
pub mod peer;
pub mod replication;
pub mod routing;
pub mod state;

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use election::{Election, MeshElection, WatchElection};
pub use everywhere::Everywhere;
pub use link::{PeerError, PeerLink};
pub use members::{Members, MembersError};
pub use peer::Peer;
pub use replication::Replication;
pub use routing::{RoutingError, RoutingTable};
pub use state::{Cluster, ClusterError, Placement};

/// Runs the cluster's loops until `stop` is cancelled.
pub async fn run(
    cluster: Arc<Cluster>,
    election: Box<dyn Election>,
    everywhere: Arc<Everywhere>,
    replication: Arc<Replication>,
    stop: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    for peer in cluster.peers().values() {
        tasks.spawn(heartbeat::run(cluster.clone(), peer.clone(), stop.clone()));
    }
    tasks.spawn(decisions::run(cluster.clone(), election, stop.clone()));
    tasks.spawn(replication.run(cluster.clone(), everywhere.clone(), stop.clone()));
    tasks.spawn(everywhere.run_sync(stop));
    while tasks.join_next().await.is_some() {}
}
