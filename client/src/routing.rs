//! What the client knows of the cluster's routing: the newest table any
//! instance sent, and which endpoint is which instance.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::Conn;
use tokio::task::JoinSet;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{RoutingTable, WatchRoutingRequest};
use vss_wire::partition::partition_of;

/// Wait before watching an instance again after its stream broke.
const REWATCH_AFTER: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
struct Known {
    table: Option<RoutingTable>,
    /// Instance id of each endpoint, by position, once it said.
    ids: Vec<Option<String>>,
}

/// The routing view shared by a client's clones; its watch tasks stop
/// when the last clone is dropped.
#[derive(Debug)]
pub(crate) struct Routing {
    known: Arc<RwLock<Known>>,
    watchers: std::sync::Mutex<Option<JoinSet<()>>>,
    /// Set once the watchers run, so every call after the first skips the lock.
    started: AtomicBool,
}

impl Routing {
    pub(crate) fn new(instances: usize) -> Self {
        Self {
            known: Arc::new(RwLock::new(Known {
                table: None,
                ids: vec![None; instances],
            })),
            watchers: std::sync::Mutex::new(None),
            started: AtomicBool::new(false),
        }
    }

    /// Starts watching every instance's routing, once, from inside the
    /// caller's runtime (outside one, it does nothing).
    pub(crate) fn start(&self, instances: impl FnOnce() -> Vec<VssClient<Conn>>) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if watchers.is_some() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let mut set = JoinSet::new();
        for (i, grpc) in instances().into_iter().enumerate() {
            set.spawn(watch(i, grpc, self.known.clone()));
        }
        *watchers = Some(set);
        self.started.store(true, Ordering::Release);
    }

    /// Endpoint positions to try for `slot`'s bucket `key` ("" for calls
    /// that name none): its owner, its standby, then every other instance
    /// in the order given.
    pub(crate) fn order(&self, route: Option<(u32, &str)>, count: usize) -> Vec<usize> {
        let known = self.known.read().unwrap_or_else(|p| p.into_inner());
        let mut order = Vec::with_capacity(count);
        let route = route.and_then(|(slot, key)| owner_of(known.table.as_ref()?, slot, key));
        if let Some((owner, standby)) = route {
            for id in [owner, standby] {
                if let Some(i) = known.ids.iter().position(|k| k.as_deref() == Some(id))
                    && !order.contains(&i)
                {
                    order.push(i);
                }
            }
        }
        let rest: Vec<usize> = (0..count).filter(|i| !order.contains(i)).collect();
        order.extend(rest);
        order
    }

    /// The endpoint position of the owner of `slot`'s bucket `key` when
    /// known, else the first.
    pub(crate) fn first(&self, slot: u32, key: &str) -> usize {
        let known = self.known.read().unwrap_or_else(|p| p.into_inner());
        known
            .table
            .as_ref()
            .and_then(|t| owner_of(t, slot, key))
            .and_then(|(owner, _)| known.ids.iter().position(|k| k.as_deref() == Some(owner)))
            .unwrap_or(0)
    }

    /// The newest table seen, if any.
    pub(crate) fn table(&self) -> Option<RoutingTable> {
        self.known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .table
            .clone()
    }
}

/// The owner and standby of `slot`'s bucket `key`: its partition's, when
/// the slot's keys are split (vss_wire::partition), else the slot's.
fn owner_of<'t>(table: &'t RoutingTable, slot: u32, key: &str) -> Option<(&'t str, &'t str)> {
    let route = table.routes.iter().find(|r| r.slot == slot)?;
    let count = u16::try_from(route.partitions.len()).unwrap_or(u16::MAX);
    match route.partitions.get(usize::from(partition_of(key, count))) {
        Some(p) => Some((&p.owner, &p.standby)),
        None => Some((&route.owner, &route.standby)),
    }
}

fn newer(offered: &RoutingTable, held: Option<&RoutingTable>) -> bool {
    held.is_none_or(|h| (offered.epoch, &offered.leader) > (h.epoch, &h.leader))
}

async fn watch(i: usize, mut grpc: VssClient<Conn>, known: Arc<RwLock<Known>>) {
    loop {
        if let Ok(response) = grpc.watch_routing(WatchRoutingRequest {}).await {
            let mut updates = response.into_inner();
            while let Ok(Some(update)) = updates.message().await {
                let mut k = known.write().unwrap_or_else(|p| p.into_inner());
                if let Some(slot) = k.ids.get_mut(i) {
                    *slot = Some(update.instance);
                }
                if let Some(table) = update.table
                    && newer(&table, k.table.as_ref())
                {
                    k.table = Some(table);
                }
            }
        }
        tokio::time::sleep(REWATCH_AFTER).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vss_proto::v1::SlotRoute;

    fn routing_with(ids: &[&str], owner: &str, standby: &str, epoch: u64) -> Routing {
        let r = Routing::new(ids.len());
        {
            let mut k = r.known.write().expect("lock");
            k.ids = ids.iter().map(|s| Some((*s).to_string())).collect();
            k.table = Some(RoutingTable {
                epoch,
                leader: "a".into(),
                fallback_leader: String::new(),
                members: Vec::new(),
                routes: vec![SlotRoute {
                    slot: 4,
                    owner: owner.into(),
                    standby: standby.into(),
                    partitions: Vec::new(),
                }],
            });
        }
        r
    }

    #[test]
    fn owner_then_standby_then_the_rest() {
        let r = routing_with(&["a", "b", "c"], "c", "b", 3);
        assert_eq!(r.order(Some((4, "")), 3), [2, 1, 0]);
        assert_eq!(r.first(4, ""), 2);
        assert_eq!(r.first(5, ""), 0);
        // A slot without a route, or no slot: the given order.
        assert_eq!(r.order(Some((5, "")), 3), [0, 1, 2]);
        assert_eq!(r.order(None, 3), [0, 1, 2]);
    }

    #[test]
    fn a_keyed_call_goes_to_its_partitions_owner() {
        let r = routing_with(&["a", "b", "c"], "c", "b", 3);
        {
            let mut k = r.known.write().expect("lock");
            let table = k.table.as_mut().expect("table");
            // Partition p is owned by "a" when p is even, "b" when odd.
            table.routes[0].partitions = (0..16)
                .map(|p| vss_proto::v1::PartitionRoute {
                    owner: if p % 2 == 0 { "a" } else { "b" }.into(),
                    standby: "c".into(),
                })
                .collect();
        }
        for key in ["alice", "bob", "carol", "dave"] {
            let p = partition_of(key, 16);
            let owner = usize::from(p % 2);
            assert_eq!(r.first(4, key), owner, "{key} is in partition {p}");
            assert_eq!(r.order(Some((4, key)), 3), [owner, 2, 1 - owner]);
        }
    }

    #[test]
    fn unknown_ids_fall_back_to_the_given_order() {
        let r = Routing::new(3);
        assert_eq!(r.order(Some((4, "")), 3), [0, 1, 2]);
        let r = routing_with(&["a", "b", "c"], "z", "", 1);
        assert_eq!(r.order(Some((4, "")), 3), [0, 1, 2]);
    }

    #[test]
    fn only_newer_tables_replace_the_held_one() {
        let r = routing_with(&["a", "b", "c"], "c", "b", 3);
        let held = r.table().expect("table");
        let mut older = held.clone();
        older.epoch = 2;
        assert!(!newer(&older, Some(&held)));
        let mut tie = held.clone();
        tie.leader = "b".into();
        assert!(
            newer(&tie, Some(&held)),
            "ties go to the higher leader id, as on the servers"
        );
        assert!(newer(&held, None));
    }
}
