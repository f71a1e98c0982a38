//! Connected clients and their event streams.
//!
//! Every client holds one event stream per instance, identified by the
//! client id it chose. The hub delivers events into a bounded per-client
//! queue and matches acknowledgements to waiting deliveries. A slow or dead
//! client never holds anyone else up: a full queue or a missing ack fails
//! that delivery at once or at its deadline, and after a few failures in a
//! row the client is disconnected, so memory stays bounded.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::core::error::RequestError;
use crate::ops::metrics::Gauge;

/// Longest client id, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 128;

/// Default most clients per instance (`vss-runtime --max-clients`). Each
/// open event stream holds a TCP connection's file descriptor (unless
/// streams share a connection), so the process's open-file limit must be
/// above it for the cap, not the kernel, to be what refuses clients.
pub const DEFAULT_MAX_CLIENTS: usize = 50_000;

/// Bounds of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Most clients connected to one instance.
    pub max_clients: usize,
    /// Events queued per client before deliveries to it fail.
    pub queue: usize,
    /// Deliveries awaiting an ack per client.
    pub max_pending: usize,
    /// Failed deliveries in a row after which a client is disconnected.
    pub max_failures: u32,
}

impl Default for HubLimits {
    fn default() -> Self {
        Self {
            max_clients: DEFAULT_MAX_CLIENTS,
            queue: 256,
            max_pending: 1_024,
            max_failures: 3,
        }
    }
}

/// The event stream a client receives: encoded `Event`s.
pub type EventStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// An event encoded once, in the client API's `Event` message, and shared
/// by every stream it is delivered on: a broadcast to S clients is one
/// encoding, each stream only copying the bytes into its frame.
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    message_id: u64,
    bytes: Bytes,
}

impl EncodedEvent {
    pub fn new(slot: u32, message_id: u64, payload: Vec<u8>, publisher: &str) -> Self {
        use prost::Message as _;
        let event = vss_proto::v1::Event {
            slot,
            message_id,
            payload,
            publisher: publisher.to_string(),
        };
        Self {
            message_id,
            bytes: event.encode_to_vec().into(),
        }
    }

    pub fn message_id(&self) -> u64 {
        self.message_id
    }

    /// The encoded `Event`; cloning it shares the bytes.
    pub fn bytes(&self) -> Bytes {
        self.bytes.clone()
    }
}

/// The acknowledgements of one event delivered to many clients. An ack
/// marks its delivery, and only the last one wakes the publisher, rather
/// than each ack waking it through a channel of its own.
#[derive(Debug)]
struct Acks {
    acked: Box<[AtomicBool]>,
    /// Deliveries neither acknowledged nor given up.
    outstanding: AtomicUsize,
    all_in: Notify,
}

impl Acks {
    fn new(deliveries: usize) -> Self {
        Self {
            acked: (0..deliveries).map(|_| AtomicBool::new(false)).collect(),
            outstanding: AtomicUsize::new(deliveries),
            all_in: Notify::new(),
        }
    }

    fn ack(&self, delivery: usize) {
        if self
            .acked
            .get(delivery)
            .is_some_and(|a| !a.swap(true, Ordering::AcqRel))
        {
            self.resolved();
        }
    }

    /// One delivery fewer to wait for: acknowledged, or never sent.
    fn resolved(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_in.notify_one();
        }
    }

    fn is_acked(&self, delivery: usize) -> bool {
        self.acked
            .get(delivery)
            .is_some_and(|a| a.load(Ordering::Acquire))
    }
}

/// Where an ack from a client goes.
#[derive(Debug)]
struct Waiter {
    acks: Arc<Acks>,
    delivery: usize,
}

/// An event queued for clients, awaiting their acks.
#[derive(Debug)]
#[must_use = "deliveries are settled by waiting for them"]
pub struct Deliveries {
    hub: Arc<Hub>,
    message_id: u64,
    acks: Arc<Acks>,
    /// Each recipient, and its connection if the event was queued for it.
    to: Vec<(String, Option<Arc<Subscriber>>)>,
}

impl Deliveries {
    /// Waits for the acks until `deadline`, then settles every delivery:
    /// an ack clears the client's failures, a missing one counts a failure.
    /// Resolves to each recipient and whether it acknowledged in time.
    pub async fn wait(self, deadline: Instant) -> Vec<(String, bool)> {
        if self.acks.outstanding.load(Ordering::Acquire) > 0 {
            let _ = tokio::time::timeout_at(deadline, self.acks.all_in.notified()).await;
        }
        self.to
            .into_iter()
            .enumerate()
            .map(|(i, (client, conn))| {
                let acked = conn.is_some_and(|conn| {
                    let acked = self.acks.is_acked(i);
                    self.hub.settle(&conn, self.message_id, acked);
                    acked
                });
                (client, acked)
            })
            .collect()
    }
}

/// A client's open event stream.
#[derive(Debug)]
pub struct Subscriber {
    id: String,
    seq: u64,
    slots: Option<HashSet<u32>>,
    tx: mpsc::Sender<Bytes>,
    pending: Mutex<HashMap<u64, Waiter>>,
    failures: AtomicU32,
    closed: CancellationToken,
}

impl Subscriber {
    pub fn client_id(&self) -> &str {
        &self.id
    }

    /// Completes when the hub has dropped this connection.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }
}

/// Checks a client id from the wire.
pub fn check_client_id(id: &str) -> Result<(), RequestError> {
    if id.is_empty() || id.len() > MAX_CLIENT_ID_BYTES {
        return Err(RequestError::BadClientId {
            len: id.len(),
            max: MAX_CLIENT_ID_BYTES,
        });
    }
    Ok(())
}

/// Every client connected to this instance.
#[derive(Debug)]
pub struct Hub {
    clients: RwLock<HashMap<String, Arc<Subscriber>>>,
    next_seq: AtomicU64,
    limits: HubLimits,
    stop: CancellationToken,
    connected: Gauge,
}

impl Hub {
    /// A hub whose streams all end when `stop` is cancelled; `connected`
    /// follows the number of connected clients.
    pub fn new(limits: HubLimits, stop: CancellationToken, connected: Gauge) -> Self {
        Self {
            clients: RwLock::new(HashMap::new()),
            next_seq: AtomicU64::new(1),
            limits,
            stop,
            connected,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Subscriber>>> {
        self.clients.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Subscriber>>> {
        self.clients.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a client's stream; an older stream of the same client id on
    /// this instance is closed.
    pub fn connect(
        &self,
        client_id: String,
        slots: Vec<u32>,
    ) -> Result<(Arc<Subscriber>, EventStream), RequestError> {
        check_client_id(&client_id)?;
        let (tx, rx) = mpsc::channel(self.limits.queue.max(1));
        let conn = Arc::new(Subscriber {
            id: client_id.clone(),
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            slots: (!slots.is_empty()).then(|| slots.into_iter().collect()),
            tx,
            pending: Mutex::new(HashMap::new()),
            failures: AtomicU32::new(0),
            closed: self.stop.child_token(),
        });
        let replaced = {
            let mut clients = self.write();
            if !clients.contains_key(&client_id) && clients.len() >= self.limits.max_clients {
                return Err(RequestError::TooManyClients(self.limits.max_clients));
            }
            let replaced = clients.insert(client_id, conn.clone());
            self.connected.set(clients.len() as i64);
            replaced
        };
        if let Some(old) = replaced {
            old.closed.cancel();
        }
        let stream = ReceiverStream::new(rx).take_until(conn.closed.clone().cancelled_owned());
        Ok((conn, Box::pin(stream)))
    }

    /// Drops a connection (if it is still the client's current one).
    pub fn disconnect(&self, conn: &Subscriber) {
        let mut clients = self.write();
        if clients.get(&conn.id).is_some_and(|c| c.seq == conn.seq) {
            clients.remove(&conn.id);
            self.connected.set(clients.len() as i64);
        }
        drop(clients);
        conn.closed.cancel();
    }

    /// An acknowledgement from `conn`.
    pub fn ack(&self, conn: &Subscriber, message_id: u64) {
        let waiter = conn
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&message_id);
        if let Some(w) = waiter {
            w.acks.ack(w.delivery);
        }
    }

    /// Connected clients that take broadcasts of `slot`, but `except`.
    pub fn broadcast_recipients(&self, slot: u32, except: &[String]) -> Vec<String> {
        self.read()
            .values()
            .filter(|c| c.slots.as_ref().is_none_or(|s| s.contains(&slot)))
            .filter(|c| !except.contains(&c.id))
            .map(|c| c.id.clone())
            .collect()
    }

    /// Whether `client` has an open stream on this instance.
    pub fn is_connected(&self, client: &str) -> bool {
        self.read().contains_key(client)
    }

    /// Number of connected clients.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.read().len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `event` for each of `clients` at once; a client not
    /// connected here or that cannot take it now is a failed delivery.
    /// Wait on the result for the acks.
    pub fn send(self: &Arc<Self>, clients: Vec<String>, event: &EncodedEvent) -> Deliveries {
        let acks = Arc::new(Acks::new(clients.len()));
        let to: Vec<_> = {
            let connected = self.read();
            clients
                .into_iter()
                .map(|client| {
                    let conn = connected.get(&client).cloned();
                    (client, conn)
                })
                .collect()
        };
        let to = to
            .into_iter()
            .enumerate()
            .map(|(delivery, (client, conn))| {
                let queued = conn.filter(|conn| self.enqueue(conn, event, &acks, delivery));
                if queued.is_none() {
                    acks.resolved();
                }
                (client, queued)
            })
            .collect();
        Deliveries {
            hub: self.clone(),
            message_id: event.message_id(),
            acks,
            to,
        }
    }

    /// Records how a delivery ended: an ack clears the client's failures;
    /// none (deadline passed) drops its waiter and counts a failure.
    fn settle(&self, conn: &Subscriber, message_id: u64, acked: bool) {
        if acked {
            conn.failures.store(0, Ordering::Relaxed);
            return;
        }
        conn.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&message_id);
        self.failed(conn);
    }

    /// Puts the event in the client's queue; false (and a failure on the
    /// client's record) if its queue or its pending acks are full.
    fn enqueue(
        &self,
        conn: &Subscriber,
        event: &EncodedEvent,
        acks: &Arc<Acks>,
        delivery: usize,
    ) -> bool {
        let message_id = event.message_id();
        {
            let mut pending = conn.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.len() >= self.limits.max_pending {
                drop(pending);
                self.failed(conn);
                return false;
            }
            pending.insert(
                message_id,
                Waiter {
                    acks: acks.clone(),
                    delivery,
                },
            );
        }
        if conn.tx.try_send(event.bytes()).is_err() {
            conn.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&message_id);
            self.failed(conn);
            return false;
        }
        true
    }

    /// Counts a failed delivery; too many in a row disconnects the client.
    fn failed(&self, conn: &Subscriber) {
        let in_a_row = conn.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if in_a_row >= self.limits.max_failures {
            tracing::info!(client = %conn.id, failures = in_a_row, "disconnecting a client that does not take its events");
            self.disconnect(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prost::Message as _;
    use vss_proto::v1::Event;

    use super::*;

    fn hub(limits: HubLimits) -> Arc<Hub> {
        Arc::new(Hub::new(limits, CancellationToken::new(), Gauge::default()))
    }

    fn event(message_id: u64) -> EncodedEvent {
        EncodedEvent::new(10, message_id, b"m".to_vec(), "")
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(200)
    }

    /// Queues `message_id` for `client` now; resolves to whether it was
    /// acknowledged by `deadline`.
    fn deliver(
        hub: &Arc<Hub>,
        client: &str,
        message_id: u64,
        deadline: Instant,
    ) -> impl Future<Output = bool> + use<> {
        let client = client.to_string();
        let sent = hub.send(vec![client.clone()], &event(message_id));
        async move { sent.wait(deadline).await == [(client, true)] }
    }

    async fn next_id(stream: &mut EventStream) -> u64 {
        let bytes = stream.next().await.expect("event");
        Event::decode(bytes).expect("an encoded event").message_id
    }

    #[test]
    fn an_encoded_event_is_the_event_on_the_wire() {
        let event = Event {
            slot: 10,
            message_id: 7,
            payload: vec![0, 159, 146, 150],
            publisher: "p".into(),
        };
        let encoded = EncodedEvent::new(10, 7, vec![0, 159, 146, 150], "p");
        assert_eq!(encoded.message_id(), 7);
        assert_eq!(Event::decode(encoded.bytes()).expect("decodes"), event);
    }

    #[tokio::test]
    async fn an_ack_completes_the_delivery() {
        let hub = hub(HubLimits::default());
        let (conn, mut stream) = hub.connect("a".into(), vec![]).expect("connect");
        let delivery = deliver(&hub, "a", 1, soon());
        assert_eq!(next_id(&mut stream).await, 1);
        hub.ack(&conn, 1);
        assert!(delivery.await);
    }

    #[tokio::test]
    async fn a_fan_out_waits_for_every_ack_and_reports_each_client() {
        let hub = hub(HubLimits::default());
        let (a, mut a_stream) = hub.connect("a".into(), vec![]).expect("connect");
        let (_b, mut b_stream) = hub.connect("b".into(), vec![]).expect("connect");
        let (c, mut c_stream) = hub.connect("c".into(), vec![]).expect("connect");
        let clients = ["a", "b", "c", "gone"].map(String::from).to_vec();
        let sent = hub.send(clients, &event(9));
        for stream in [&mut a_stream, &mut b_stream, &mut c_stream] {
            assert_eq!(next_id(stream).await, 9);
        }
        hub.ack(&a, 9);
        hub.ack(&a, 9);
        hub.ack(&c, 9);
        let started = Instant::now();
        let outcomes = sent.wait(Instant::now() + Duration::from_millis(100)).await;
        assert!(
            started.elapsed() >= Duration::from_millis(90),
            "b never acks"
        );
        assert_eq!(
            outcomes,
            [("a", true), ("b", false), ("c", true), ("gone", false)]
                .map(|(c, acked)| (c.to_string(), acked))
        );

        let sent = hub.send(vec!["a".into(), "c".into()], &event(10));
        hub.ack(&a, 10);
        hub.ack(&c, 10);
        let started = Instant::now();
        let outcomes = sent.wait(Instant::now() + Duration::from_secs(30)).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the last ack ends the wait"
        );
        assert!(outcomes.iter().all(|(_, acked)| *acked));
    }

    #[tokio::test]
    async fn a_full_queue_fails_at_once_and_repeated_failures_disconnect() {
        let hub = hub(HubLimits {
            queue: 2,
            max_failures: 2,
            ..HubLimits::default()
        });
        let (conn, _stream_never_read) = hub.connect("slow".into(), vec![]).expect("connect");
        let _first = deliver(&hub, "slow", 1, soon());
        let _second = deliver(&hub, "slow", 2, soon());
        let started = Instant::now();
        assert!(!deliver(&hub, "slow", 3, soon()).await, "queue full");
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "failed without waiting"
        );
        assert!(!conn.closed().is_cancelled());
        assert!(!deliver(&hub, "slow", 4, soon()).await);
        assert!(
            conn.closed().is_cancelled(),
            "two failures in a row disconnect"
        );
        assert!(hub.is_empty());
        assert!(
            !deliver(&hub, "slow", 5, soon()).await,
            "no longer connected"
        );
    }

    #[tokio::test]
    async fn an_unacknowledged_delivery_fails_at_its_deadline_and_frees_its_slot() {
        let hub = hub(HubLimits {
            max_failures: 2,
            ..HubLimits::default()
        });
        let (conn, _stream) = hub.connect("mute".into(), vec![]).expect("connect");
        assert!(!deliver(&hub, "mute", 1, Instant::now() + Duration::from_millis(20)).await);
        assert!(
            conn.pending.lock().expect("lock").is_empty(),
            "no waiter left behind"
        );
        assert!(!conn.closed().is_cancelled(), "one failure in a row");
        assert_eq!(conn.failures.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn an_ack_clears_the_failures_in_a_row() {
        let hub = hub(HubLimits {
            max_failures: 2,
            ..HubLimits::default()
        });
        let (conn, mut stream) = hub.connect("a".into(), vec![]).expect("connect");
        assert!(!deliver(&hub, "a", 1, Instant::now()).await);
        assert_eq!(next_id(&mut stream).await, 1);
        let acked = deliver(&hub, "a", 2, soon());
        assert_eq!(next_id(&mut stream).await, 2);
        hub.ack(&conn, 2);
        assert!(acked.await);
        assert_eq!(conn.failures.load(Ordering::Relaxed), 0);
        assert!(!deliver(&hub, "a", 3, Instant::now()).await);
        assert!(!conn.closed().is_cancelled(), "one failure in a row");
    }

    #[tokio::test]
    async fn a_new_stream_replaces_the_old_one_of_the_same_client() {
        let hub = hub(HubLimits::default());
        let (old, mut old_stream) = hub.connect("a".into(), vec![]).expect("connect");
        let (new, _new_stream) = hub.connect("a".into(), vec![]).expect("connect");
        assert!(old_stream.next().await.is_none(), "old stream ended");
        hub.disconnect(&old);
        assert_eq!(hub.len(), 1, "closing the old one leaves the new one");
        assert!(!new.closed().is_cancelled());
    }

    #[tokio::test]
    async fn clients_are_bounded_and_ids_checked() {
        let hub = hub(HubLimits {
            max_clients: 1,
            ..HubLimits::default()
        });
        let _a = hub.connect("a".into(), vec![]).expect("connect");
        assert!(matches!(
            hub.connect("b".into(), vec![]),
            Err(RequestError::TooManyClients(1))
        ));
        assert!(matches!(
            hub.connect(String::new(), vec![]),
            Err(RequestError::BadClientId { .. })
        ));
        assert!(matches!(
            hub.connect("x".repeat(129), vec![]),
            Err(RequestError::BadClientId { len: 129, .. })
        ));
    }

    #[tokio::test]
    async fn broadcast_recipients_follow_the_slot_filter() {
        let hub = hub(HubLimits::default());
        let _a = hub.connect("all".into(), vec![]).expect("connect");
        let _b = hub.connect("only-10".into(), vec![10]).expect("connect");
        let _c = hub.connect("only-11".into(), vec![11]).expect("connect");
        let mut got = hub.broadcast_recipients(10, &["all".to_string()]);
        got.sort();
        assert_eq!(got, ["only-10"]);
    }
}
