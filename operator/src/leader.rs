//! Only one operator replica reconciles at a time: the holder of the
//! `vss-operator` Lease. The others wait and take over when it lapses.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The Lease the operator's replicas compete for.
pub const LEASE_NAME: &str = "vss-operator";
/// Seconds a leader holds the Lease without renewing it.
const LEASE_SECONDS: u64 = 15;

/// A running election: `is_leader` follows the Lease; dropping it and
/// awaiting `task` releases the Lease so a standby takes over at once.
pub struct Election {
    pub is_leader: watch::Receiver<bool>,
    pub task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

pub async fn start(
    client: Client,
    namespace: &str,
    identity: &str,
) -> Result<Election, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(5)
        .build()
        .await?;
    let (is_leader, task) = manager.watch().await;
    Ok(Election { is_leader, task })
}
