//! An in-process cluster for tests: nodes wired through in-memory peer
//! links that can be cut, lose messages or delay them, on tokio's paused
//! clock. Everything above the [`PeerLink`] trait is the real code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vss_config::ValidConfig;
use vss_slot_host::{Acquired, HostLimits, SlotEngine};

use crate::core::calls::{
    AcquireCall, CustomCall, Delivery, MembershipCall, PublishCall, PublishOutcome,
};
use crate::core::cluster::link::{
    FetchedState, Forwarded, Heartbeat, HeartbeatReply, PeerError, PeerLink, Replicate,
};
use crate::core::cluster::{Cluster, Election, Members, MeshElection, RoutingTable};
use crate::core::error::RequestError;
use crate::core::executor::QueueLimits;
use crate::core::hub::{Hub, HubLimits};
use crate::core::node::{Node, Origin};
use crate::core::slot_table::{Compiled, SlotTable};
use crate::ops::metrics::Metrics;

/// What happens to messages on one directed link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fault {
    /// Delivered at once.
    #[default]
    None,
    /// The caller cannot connect: fails at once, as a refused connection.
    Cut,
    /// Lost: the caller hears nothing and runs into its deadline.
    Lost,
    /// Delivered after a while.
    Delay(Duration),
}

/// The nodes of one test and the links between them.
#[derive(Debug, Default)]
pub struct Net {
    nodes: Mutex<HashMap<String, Weak<Node>>>,
    /// (from, to, kind) → what happens to `from`'s calls of that kind
    /// (`heartbeat`, `replicate`, ..., `forward`) to `to`; kind "" for
    /// every call.
    faults: Mutex<HashMap<(String, String, &'static str), Fault>>,
    /// Calls made over each link, by kind, for tests that count them.
    calls: Mutex<HashMap<(String, String, &'static str), u64>>,
}

impl Net {
    fn node(&self, id: &str) -> Option<Arc<Node>> {
        self.nodes.lock().ok()?.get(id)?.upgrade()
    }

    /// What happens to every call `from` makes to `to`.
    pub fn set(&self, from: &str, to: &str, fault: Fault) {
        self.set_for(from, to, "", fault);
    }

    /// What happens to `from`'s calls of `kind` to `to`.
    pub fn set_for(&self, from: &str, to: &str, kind: &'static str, fault: Fault) {
        if let Ok(mut faults) = self.faults.lock() {
            faults.insert((from.to_string(), to.to_string(), kind), fault);
        }
    }

    fn fault(&self, from: &str, to: &str, kind: &'static str) -> Fault {
        let Ok(faults) = self.faults.lock() else {
            return Fault::None;
        };
        let of = |kind| {
            faults
                .get(&(from.to_string(), to.to_string(), kind))
                .copied()
        };
        match of(kind) {
            Some(fault) if fault != Fault::None => fault,
            _ => of("").unwrap_or_default(),
        }
    }

    /// Calls of `kind` made from `from` to `to` so far.
    pub fn calls(&self, from: &str, to: &str, kind: &'static str) -> u64 {
        self.calls
            .lock()
            .ok()
            .and_then(|c| c.get(&(from.to_string(), to.to_string(), kind)).copied())
            .unwrap_or(0)
    }
}

/// `from`'s link to `to`.
#[derive(Debug)]
struct FakeLink {
    from: String,
    to: String,
    net: Arc<Net>,
}

fn refused(e: RequestError) -> PeerError {
    PeerError::Refused {
        code: e.code(),
        message: e.to_string(),
    }
}

impl FakeLink {
    /// The peer's node, once the link's fault allows the call through.
    async fn reach(&self, kind: &'static str) -> Result<Arc<Node>, PeerError> {
        if let Ok(mut calls) = self.net.calls.lock() {
            *calls
                .entry((self.from.clone(), self.to.clone(), kind))
                .or_default() += 1;
        }
        match self.net.fault(&self.from, &self.to, kind) {
            Fault::None => {}
            Fault::Cut => {
                return Err(PeerError::Unreachable(format!(
                    "{} cannot connect to {}",
                    self.from, self.to
                )));
            }
            Fault::Lost => std::future::pending::<()>().await,
            Fault::Delay(d) => tokio::time::sleep(d).await,
        }
        self.net
            .node(&self.to)
            .ok_or_else(|| PeerError::Unreachable(format!("{} is down", self.to)))
    }

    fn origin(&self) -> Origin<'_> {
        Origin::Peer(&self.from)
    }
}

#[async_trait::async_trait]
impl PeerLink for FakeLink {
    async fn heartbeat(&self, beat: Heartbeat) -> Result<HeartbeatReply, PeerError> {
        self.reach("heartbeat")
            .await?
            .heartbeat(&beat)
            .map_err(refused)
    }

    async fn install_routing(&self, table: Arc<RoutingTable>) -> Result<u64, PeerError> {
        self.reach("install_routing")
            .await?
            .install_routing((*table).clone())
            .map_err(|e| PeerError::Refused {
                code: crate::core::error::Code::FailedPrecondition,
                message: e.to_string(),
            })
    }

    async fn replicate(&self, states: Replicate) -> Result<(), PeerError> {
        self.reach("replicate")
            .await?
            .replicate(states)
            .await
            .map_err(refused)
    }

    async fn fetch_state(&self, from: &str) -> Result<FetchedState, PeerError> {
        self.reach("fetch_state")
            .await?
            .fetch_state(from)
            .await
            .map_err(refused)
    }

    async fn deliver(&self, delivery: Delivery) -> Result<Vec<(String, bool)>, PeerError> {
        Ok(self.reach("deliver").await?.deliver(delivery).await)
    }

    async fn forward_acquire(&self, call: AcquireCall, _timeout: Duration) -> Forwarded<Acquired> {
        let node = self.reach("forward").await?;
        node.acquire(self.origin(), call).await.map_err(refused)
    }

    async fn forward_acquires(
        &self,
        calls: Vec<AcquireCall>,
        _timeout: Duration,
    ) -> Forwarded<Vec<Result<Acquired, RequestError>>> {
        let node = self.reach("forward").await?;
        Ok(node.acquire_batch(self.origin(), calls, |_| Ok(())).await)
    }

    async fn forward_call(&self, call: CustomCall, _timeout: Duration) -> Forwarded<Vec<u8>> {
        let node = self.reach("forward").await?;
        node.call(self.origin(), call).await.map_err(refused)
    }

    async fn forward_publish(
        &self,
        call: PublishCall,
        _timeout: Duration,
    ) -> Forwarded<PublishOutcome> {
        let node = self.reach("forward").await?;
        node.publish(self.origin(), call).await.map_err(refused)
    }

    async fn forward_membership(&self, call: MembershipCall, _timeout: Duration) -> Forwarded<()> {
        let node = self.reach("forward").await?;
        node.membership(self.origin(), call).await.map_err(refused)
    }
}

/// The engine and compiled built-ins every test node shares: each type is
/// compiled once per test process.
fn engine() -> &'static (SlotEngine, Arc<Compiled>) {
    static ENGINE: OnceLock<(SlotEngine, Arc<Compiled>)> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let engine = SlotEngine::new(HostLimits::default()).expect("the Wasm engine starts");
        (engine, Arc::default())
    })
}

/// One running node of a test cluster.
#[derive(Debug)]
pub struct TestNode {
    pub node: Arc<Node>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Several nodes in one process, joined by [`Net`]'s links.
#[derive(Debug)]
pub struct TestCluster {
    pub net: Arc<Net>,
    ids: Vec<String>,
    config: ValidConfig,
    nodes: HashMap<String, TestNode>,
}

/// The slots the tests use: a seed token bucket, a keyed one, one that
/// does not refill within a test, a broadcast, a multicast, a random slot
/// and a counter.
pub const CONFIG: &str = "slots:
- {id: 0, type: token-bucket, bucketSize: 200, period: second, refreshRate: 100}
- {id: 1, type: token-bucket, bucketSize: 10, period: second, refreshRate: 1, maxKeys: 100}
- {id: 2, type: token-bucket, bucketSize: 1000, period: hour, refreshRate: 1}
- {id: 10, type: broadcast, timeout: 1s}
- {id: 11, type: multicast, timeout: 1s, deregTries: 2}
- {id: 12, type: random, timeout: 900ms, deregTries: 3}
- {id: 20, type: counter}
";

impl TestCluster {
    /// Nodes `ids`, each serving [`CONFIG`], started together.
    pub fn start(ids: &[&str]) -> Self {
        Self::with_config(ids, CONFIG)
    }

    pub fn with_config(ids: &[&str], yaml: &str) -> Self {
        let config = vss_config::SlotsConfig::from_yaml(yaml)
            .expect("test config parses")
            .validate()
            .expect("test config is valid");
        let mut cluster = Self {
            net: Arc::default(),
            ids: ids.iter().map(|s| s.to_string()).collect(),
            config,
            nodes: HashMap::new(),
        };
        for id in ids {
            cluster.up(id);
        }
        cluster
    }

    /// Starts node `id` (again, after [`TestCluster::kill`]), empty.
    pub fn up(&mut self, id: &str) {
        let peers: Vec<String> = self.ids.iter().map(|p| format!("{p}={p}:7702")).collect();
        let members = Members::parse(id, &peers.join(",")).expect("test members parse");
        let metrics = Metrics::new();
        let (engine, compiled) = engine();
        let slots = SlotTable::load_sharing(
            engine,
            compiled.clone(),
            &self.config,
            QueueLimits::default(),
            metrics.clone(),
            id,
        )
        .expect("test slots load");
        let slots = Arc::new(slots);
        let net = self.net.clone();
        let me = id.to_string();
        let cluster = Cluster::new(members, slots.clone(), metrics.clone(), |peer, _addr| {
            let link: Arc<dyn PeerLink> = Arc::new(FakeLink {
                from: me.clone(),
                to: peer.to_string(),
                net: net.clone(),
            });
            Ok(link)
        })
        .expect("test cluster");
        let stop = CancellationToken::new();
        let hub = Arc::new(Hub::new(
            HubLimits::default(),
            stop.child_token(),
            metrics.connected_clients.clone(),
        ));
        let node = Arc::new(Node::new(
            slots,
            Arc::new(cluster),
            hub,
            metrics,
            stop.clone(),
        ));
        if let Ok(mut nodes) = self.net.nodes.lock() {
            nodes.insert(id.to_string(), Arc::downgrade(&node));
        }
        let election: Box<dyn Election> = Box::new(MeshElection::default());
        let task = tokio::spawn(node.clone().run(election, stop.clone()));
        self.nodes
            .insert(id.to_string(), TestNode { node, stop, task });
    }

    /// Stops node `id` at once, as a SIGKILL would: its state is gone and
    /// its peers' calls to it fail.
    pub async fn kill(&mut self, id: &str) {
        if let Some(n) = self.nodes.remove(id) {
            n.stop.cancel();
            n.task.abort();
            let _ = n.task.await;
        }
    }

    pub fn node(&self, id: &str) -> &Arc<Node> {
        &self.nodes.get(id).expect("a running test node").node
    }

    /// Cuts `a`'s and `b`'s links both ways.
    pub fn partition(&self, a: &str, b: &str) {
        self.net.set(a, b, Fault::Cut);
        self.net.set(b, a, Fault::Cut);
    }

    /// Restores `a`'s and `b`'s links both ways.
    pub fn heal(&self, a: &str, b: &str) {
        self.net.set(a, b, Fault::None);
        self.net.set(b, a, Fault::None);
    }

    /// Cuts every link of `id`, both ways.
    pub fn isolate(&self, id: &str) {
        for other in self.ids.iter().filter(|o| *o != id) {
            self.partition(id, other);
        }
    }

    /// The table nodes `on` all hold once it names exactly `on` as its
    /// members; waits (in virtual time) up to 10 s.
    pub async fn settled(&self, on: &[&str]) -> Option<Arc<RoutingTable>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let tables: Vec<_> = on
                .iter()
                .map(|id| self.node(id).cluster().table())
                .collect();
            if let Some(Some(first)) = tables.first()
                && first
                    .members
                    .iter()
                    .map(String::as_str)
                    .eq(on.iter().copied())
                && tables.iter().all(|t| t.as_deref() == Some(first.as_ref()))
            {
                return Some(first.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to `within` for `check` to hold.
    pub async fn until(&self, within: Duration, check: impl Fn(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !check(self) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Stops every node.
    pub async fn stop(mut self) {
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        for id in ids {
            self.kill(&id).await;
        }
    }
}

/// An acquire of `tokens` from `slot`'s bucket `key`.
pub fn acquire(slot: u32, key: &str, tokens: Option<u32>) -> AcquireCall {
    AcquireCall {
        slot,
        key: key.to_string(),
        tokens,
    }
}
