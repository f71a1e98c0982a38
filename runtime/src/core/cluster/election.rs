//! Who leads: one trait, two ways to decide.
//!
//! The cluster asks its [`Election`] every decision round whether this
//! instance leads. The leader is the only one that computes routing tables;
//! everyone learns who leads from the table it installs.

use std::time::Duration;

use tokio::sync::watch;

use super::Cluster;

/// Decides whether this instance is the leader right now.
pub trait Election: Send + Sync + std::fmt::Debug + 'static {
    fn is_leader(&self, cluster: &Cluster) -> bool;
    /// Shown in status and logs.
    fn kind(&self) -> &'static str;
}

/// Election over the mesh among statically configured peers, for running
/// without Kubernetes.
///
/// Only an instance in contact with a majority of the cluster (itself
/// included, links counted only when they work both ways) may lead: a
/// cut-off instance never makes itself leader of a minority and never
/// publishes a table.
///
/// A healthy leader stays leader, so a restarted instance does not take the
/// role back. When the leader is lost, the table's fallback leader takes
/// over if it is healthy, otherwise the lowest healthy id. Every instance
/// applies the same rule to what its heartbeats show; if two views differ
/// for a moment, both may publish (under different epochs, see
/// [`Cluster::next_epoch`]), and [`RoutingTable::is_newer_than`] makes
/// every instance settle on the same table, after which the other one sees
/// a healthy leader that is not itself and steps down.
///
/// [`RoutingTable::is_newer_than`]: super::RoutingTable::is_newer_than
#[derive(Debug, Clone)]
pub struct MeshElection {
    /// How long a starting instance listens before it may claim the role,
    /// so it learns an existing leader from its peers first.
    pub grace: Duration,
}

impl Default for MeshElection {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(1),
        }
    }
}

impl Election for MeshElection {
    fn is_leader(&self, cluster: &Cluster) -> bool {
        let me = cluster.me();
        if cluster.peers().is_empty() {
            return true;
        }
        if cluster.uptime() < self.grace || !cluster.sees_majority() {
            return false;
        }
        let healthy = |id: &str| id == me || cluster.peer(id).is_some_and(|p| p.in_contact());
        let table = cluster.table();
        if let Some(t) = &table
            && healthy(&t.leader)
        {
            return t.leader == me;
        }
        let fallback = table
            .as_ref()
            .and_then(|t| t.fallback_leader.clone())
            .filter(|f| healthy(f));
        let candidate = fallback.unwrap_or_else(|| {
            cluster
                .healthy_ids()
                .into_iter()
                .next()
                .unwrap_or_else(|| me.to_string())
        });
        candidate == me
    }

    fn kind(&self) -> &'static str {
        "mesh"
    }
}

/// Election through a Kubernetes Lease: leads while the Lease campaign
/// (run elsewhere, see `vss-lease`) says this pod holds it.
#[derive(Debug)]
pub struct WatchElection {
    holds: watch::Receiver<bool>,
}

impl WatchElection {
    pub fn new(holds: watch::Receiver<bool>) -> Self {
        Self { holds }
    }
}

impl Election for WatchElection {
    fn is_leader(&self, _cluster: &Cluster) -> bool {
        *self.holds.borrow()
    }

    fn kind(&self) -> &'static str {
        "lease"
    }
}
