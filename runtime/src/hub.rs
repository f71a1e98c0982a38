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
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures_util::StreamExt as _;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use vss_proto::v1::Event;

use crate::error::RequestError;

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

/// A delivery queued for a client, awaiting its ack.
#[derive(Debug)]
pub struct Sent {
    conn: Arc<Connection>,
    message_id: u64,
}

/// Completes when the client acknowledges a [`Sent`] delivery.
pub type Acked = oneshot::Receiver<()>;

/// The event stream a client receives.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

/// One open event stream.
#[derive(Debug)]
pub struct Connection {
    id: String,
    seq: u64,
    slots: Option<HashSet<u32>>,
    tx: mpsc::Sender<Result<Event, Status>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    failures: AtomicU32,
    closed: CancellationToken,
}

impl Connection {
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
    clients: RwLock<HashMap<String, Arc<Connection>>>,
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Connection>>> {
        self.clients.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Connection>>> {
        self.clients.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a client's stream; an older stream of the same client id on
    /// this instance is closed.
    pub fn connect(
        &self,
        client_id: String,
        slots: Vec<u32>,
    ) -> Result<(Arc<Connection>, EventStream), RequestError> {
        check_client_id(&client_id)?;
        let (tx, rx) = mpsc::channel(self.limits.queue.max(1));
        let conn = Arc::new(Connection {
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
    pub fn disconnect(&self, conn: &Connection) {
        let mut clients = self.write();
        if clients.get(&conn.id).is_some_and(|c| c.seq == conn.seq) {
            clients.remove(&conn.id);
            self.connected.set(clients.len() as i64);
        }
        drop(clients);
        conn.closed.cancel();
    }

    /// An acknowledgement from `conn`.
    pub fn ack(&self, conn: &Connection, message_id: u64) {
        let waiter = conn
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&message_id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(());
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
    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `event` for `client` and waits for its ack until `deadline`.
    /// Resolves to whether the delivery was acknowledged in time. A fan-out
    /// uses [`Hub::send`] and [`Hub::settle`] instead, under one deadline
    /// for all its deliveries.
    pub fn deliver(
        self: &Arc<Self>,
        client: &str,
        event: Event,
        deadline: Instant,
    ) -> impl Future<Output = bool> + Send + use<> {
        let sent = self.send(client, event);
        let hub = self.clone();
        async move {
            let Some((sent, ack)) = sent else {
                return false;
            };
            let acked = matches!(tokio::time::timeout_at(deadline, ack).await, Ok(Ok(())));
            hub.settle(&sent, acked);
            acked
        }
    }

    /// Queues `event` for `client`; None (a failed delivery, already
    /// counted) if the client is not connected here or cannot take it now.
    /// The caller waits on the [`Acked`] for as long as it likes, then
    /// calls [`Hub::settle`].
    pub fn send(&self, client: &str, event: Event) -> Option<(Sent, Acked)> {
        let message_id = event.message_id;
        let conn = self.read().get(client).cloned()?;
        let ack = self.enqueue(&conn, event)?;
        Some((Sent { conn, message_id }, ack))
    }

    /// Records how a sent delivery ended: an ack clears the client's
    /// failures; no ack (deadline passed) drops its waiter and counts a
    /// failure.
    pub fn settle(&self, sent: &Sent, acked: bool) {
        if acked {
            sent.conn.failures.store(0, Ordering::Relaxed);
            return;
        }
        sent.conn
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&sent.message_id);
        self.failed(&sent.conn);
    }

    /// Puts the event in the client's queue; None (and a failure on the
    /// client's record) if its queue or its pending acks are full.
    fn enqueue(&self, conn: &Connection, event: Event) -> Option<Acked> {
        let message_id = event.message_id;
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = conn.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.len() >= self.limits.max_pending {
                drop(pending);
                self.failed(conn);
                return None;
            }
            pending.insert(message_id, tx);
        }
        if conn.tx.try_send(Ok(event)).is_err() {
            conn.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&message_id);
            self.failed(conn);
            return None;
        }
        Some(rx)
    }

    /// Counts a failed delivery; too many in a row disconnects the client.
    fn failed(&self, conn: &Connection) {
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

    use super::*;

    fn hub(limits: HubLimits) -> Arc<Hub> {
        Arc::new(Hub::new(limits, CancellationToken::new(), Gauge::default()))
    }

    fn event(message_id: u64) -> Event {
        Event {
            slot: 10,
            message_id,
            payload: b"m".to_vec(),
            publisher: String::new(),
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(200)
    }

    #[tokio::test]
    async fn an_ack_completes_the_delivery() {
        let hub = hub(HubLimits::default());
        let (conn, mut stream) = hub.connect("a".into(), vec![]).expect("connect");
        let delivery = hub.deliver("a", event(1), soon());
        let got = stream.next().await.expect("event").expect("ok");
        assert_eq!(got.message_id, 1);
        hub.ack(&conn, 1);
        assert!(delivery.await);
    }

    #[tokio::test]
    async fn a_full_queue_fails_at_once_and_repeated_failures_disconnect() {
        let hub = hub(HubLimits {
            queue: 2,
            max_failures: 2,
            ..HubLimits::default()
        });
        let (conn, _stream_never_read) = hub.connect("slow".into(), vec![]).expect("connect");
        let _first = hub.deliver("slow", event(1), soon());
        let _second = hub.deliver("slow", event(2), soon());
        let started = Instant::now();
        assert!(!hub.deliver("slow", event(3), soon()).await, "queue full");
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "failed without waiting"
        );
        assert!(!conn.closed().is_cancelled());
        assert!(!hub.deliver("slow", event(4), soon()).await);
        assert!(
            conn.closed().is_cancelled(),
            "two failures in a row disconnect"
        );
        assert!(hub.is_empty());
        assert!(
            !hub.deliver("slow", event(5), soon()).await,
            "no longer connected"
        );
    }

    #[tokio::test]
    async fn an_unacknowledged_delivery_fails_at_its_deadline_and_frees_its_slot() {
        let hub = hub(HubLimits::default());
        let (conn, _stream) = hub.connect("mute".into(), vec![]).expect("connect");
        assert!(
            !hub.deliver("mute", event(1), Instant::now() + Duration::from_millis(20))
                .await
        );
        assert!(
            conn.pending.lock().expect("lock").is_empty(),
            "no waiter left behind"
        );
    }

    #[tokio::test]
    async fn a_sent_delivery_settles_once_its_waiter_decides() {
        let hub = hub(HubLimits {
            max_failures: 2,
            ..HubLimits::default()
        });
        let (conn, mut stream) = hub.connect("a".into(), vec![]).expect("connect");
        let (acked, ack) = hub.send("a", event(1)).expect("queued");
        assert_eq!(
            stream.next().await.expect("event").expect("ok").message_id,
            1
        );
        hub.ack(&conn, 1);
        assert!(ack.await.is_ok());
        hub.settle(&acked, true);
        let (missed, _ack) = hub.send("a", event(2)).expect("queued");
        hub.settle(&missed, false);
        assert!(
            conn.pending.lock().expect("lock").is_empty(),
            "no waiter left behind"
        );
        assert!(!conn.closed().is_cancelled(), "one failure in a row");
        assert!(hub.send("nobody", event(3)).is_none());
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
