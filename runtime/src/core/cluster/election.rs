//! Who leads: one trait, two ways to decide.
//!
//! The decision loop asks its [`Election`] every round whether this
//! instance leads, showing it what this instance sees ([`ElectionView`]).
//! The leader is the only one that computes routing tables; everyone
//! learns who leads from the table it installs.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::watch;

use super::routing::RoutingTable;

/// What this instance sees of the cluster, as an election reads it.
#[derive(Debug, Clone, Copy)]
pub struct ElectionView<'a> {
    pub me: &'a str,
    /// Instances in the cluster, this one included.
    pub size: usize,
    /// This instance and every peer it is in contact with both ways.
    pub in_contact: &'a BTreeSet<String>,
    /// Time since this instance started.
    pub uptime: Duration,
    /// The routing table in force, if any.
    pub table: Option<&'a RoutingTable>,
}

impl ElectionView<'_> {
    /// Whether this instance is in contact with more than half of the
    /// cluster, itself included.
    pub fn sees_majority(&self) -> bool {
        self.in_contact.len() * 2 > self.size
    }
}

/// Decides whether this instance is the leader right now.
pub trait Election: Send + Sync + std::fmt::Debug + 'static {
    fn is_leader(&self, view: &ElectionView<'_>) -> bool;
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
/// [`super::routing::next_epoch`]), and [`RoutingTable::is_newer_than`]
/// makes every instance settle on the same table, after which the other
/// one sees a healthy leader that is not itself and steps down.
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
    fn is_leader(&self, view: &ElectionView<'_>) -> bool {
        let me = view.me;
        if view.size <= 1 {
            return true;
        }
        if view.uptime < self.grace || !view.sees_majority() {
            return false;
        }
        let healthy = |id: &str| view.in_contact.contains(id);
        if let Some(t) = view.table
            && healthy(&t.leader)
        {
            return t.leader == me;
        }
        let fallback = view
            .table
            .and_then(|t| t.fallback_leader.as_deref())
            .filter(|f| healthy(f));
        let candidate =
            fallback.unwrap_or_else(|| view.in_contact.iter().next().map_or(me, String::as_str));
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
    fn is_leader(&self, _view: &ElectionView<'_>) -> bool {
        *self.holds.borrow()
    }

    fn kind(&self) -> &'static str {
        "lease"
    }
}
