//! What the client knows of the cluster's routing: the newest table any
//! instance sent, and which endpoint is which instance.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::Conn;
use tokio::task::JoinSet;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{RoutingTable, WatchRoutingRequest};

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

    /// Endpoint positions to try for `slot`: its owner, its standby, then
    /// every other instance in the order given.
    pub(crate) fn order(&self, slot: Option<u32>, count: usize) -> Vec<usize> {
        let known = self.known.read().unwrap_or_else(|p| p.into_inner());
        let mut order = Vec::with_capacity(count);
        let route = slot.and_then(|s| known.table.as_ref()?.routes.iter().find(|r| r.slot == s));
        if let Some(route) = route {
            for id in [&route.owner, &route.standby] {
                if let Some(i) = known.ids.iter().position(|k| k.as_ref() == Some(id))
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

    /// The endpoint position of `slot`'s owner when known, else the first.
    pub(crate) fn first(&self, slot: u32) -> usize {
        let known = self.known.read().unwrap_or_else(|p| p.into_inner());
        known
            .table
            .as_ref()
            .and_then(|t| t.routes.iter().find(|r| r.slot == slot))
            .and_then(|route| {
                known
                    .ids
                    .iter()
                    .position(|k| k.as_deref() == Some(route.owner.as_str()))
            })
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
                }],
            });
        }
        r
    }

    #[test]
    fn owner_then_standby_then_the_rest() {
        let r = routing_with(&["a", "b", "c"], "c", "b", 3);
        assert_eq!(r.order(Some(4), 3), [2, 1, 0]);
        assert_eq!(r.first(4), 2);
        assert_eq!(r.first(5), 0);
        // A slot without a route, or no slot: the given order.
        assert_eq!(r.order(Some(5), 3), [0, 1, 2]);
        assert_eq!(r.order(None, 3), [0, 1, 2]);
    }

    #[test]
    fn unknown_ids_fall_back_to_the_given_order() {
        let r = Routing::new(3);
        assert_eq!(r.order(Some(4), 3), [0, 1, 2]);
        let r = routing_with(&["a", "b", "c"], "z", "", 1);
        assert_eq!(r.order(Some(4), 3), [0, 1, 2]);
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
