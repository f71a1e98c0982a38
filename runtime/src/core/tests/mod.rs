//! In-process cluster tests: several nodes over [`super::harness`]'s
//! links, on tokio's paused clock. Election, routing, forwarding,
//! replication and signals are exercised here without a socket; the
//! process-level tests under `runtime/tests/` guard the same behaviour
//! over gRPC.

mod election;
mod everywhere;
mod forwarding;
mod handover;
mod partitions;
mod reload;
mod replication;
mod scale;
mod signals;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use prost::Message as _;
use tokio::task::JoinHandle;

use crate::core::node::Node;

/// Long enough, in virtual time, for any election or failover to settle.
const SETTLE: Duration = Duration::from_secs(10);

/// An event as a test client saw it: message id and payload.
type Seen = (u64, Vec<u8>);

/// A client connected to one node's hub.
struct Subscriber {
    /// Every event it received.
    got: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Subscriber {
    /// Connects `client` to `node` for the broadcasts of `slots` (every
    /// slot if empty); it acknowledges every event if `acks`.
    fn connect(node: &Node, client: &str, slots: Vec<u32>, acks: bool) -> Self {
        let hub = node.hub().clone();
        let (sub, mut events) = hub
            .connect(client.to_string(), slots)
            .expect("the hub takes the client");
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        let task = tokio::spawn(async move {
            while let Some(bytes) = events.next().await {
                let event = vss_proto::v1::Event::decode(bytes).expect("an encoded event");
                seen.lock()
                    .expect("lock")
                    .push((event.message_id, event.payload));
                if acks {
                    hub.ack(&sub, event.message_id);
                }
            }
        });
        Self { got, task }
    }

    fn received(&self) -> Vec<Seen> {
        self.got.lock().expect("lock").clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}
