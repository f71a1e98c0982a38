//! Calls of the data slot types: counter, register, registry and tick.
//!
//! Counter, register and registry slots live on every instance, so any
//! instance answers; a call goes to the first instance that does, with
//! the same failover as the limiters. An increment carries a request id
//! chosen here and kept across retries, so a retry on another instance is
//! counted once. Watches (registry changes, ticks) hold a stream on every
//! instance and hand each change to the application once.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Conn;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use vss_proto::v1::service_change::Kind;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{
    AnnounceRequest, CounterChange, DeleteRequest, GetRequest, ListKeysRequest,
    ListServicesRequest, ReadCounterRequest, SetRequest, WatchTicksRequest, WithdrawRequest,
};

pub use vss_proto::v1::{
    AnnounceReply, CounterValue, GetReply, KeyValue, ListKeysReply, Service, ServiceChange, Tick,
    Version, WithdrawReply, WriteReply,
};

use crate::{
    Client, ClientError, Instance, RESUBSCRIBE_AFTER, first_openings, is_instance_failure,
};

/// Changes buffered between the streams and the application.
const WATCH_BUFFER: usize = 1_024;

impl Client {
    /// Adds `amount` (at least 1) to a counter slot.
    pub async fn increment(&self, slot: u32, amount: u64) -> Result<CounterValue, ClientError> {
        self.change(slot, amount, true).await
    }

    /// Subtracts `amount` (at least 1) from a counter slot; refused on a
    /// grow-only counter.
    pub async fn decrement(&self, slot: u32, amount: u64) -> Result<CounterValue, ClientError> {
        self.change(slot, amount, false).await
    }

    async fn change(&self, slot: u32, amount: u64, up: bool) -> Result<CounterValue, ClientError> {
        let req = CounterChange {
            slot,
            amount: Some(amount),
            // Never 0, which means "no deduplication".
            request_id: fastrand::u64(1..),
        };
        self.first_answer(None, req, |mut c, req| async move {
            if up {
                c.increment(req).await
            } else {
                c.decrement(req).await
            }
        })
        .await
    }

    /// A counter slot's value as the first instance to answer holds it.
    pub async fn read_counter(&self, slot: u32) -> Result<CounterValue, ClientError> {
        let req = ReadCounterRequest { slot };
        self.first_answer(
            None,
            req,
            |mut c, req| async move { c.read_counter(req).await },
        )
        .await
    }

    /// Writes `key` in a register slot; the reply's version lets a later
    /// [`Client::get_at_least`] read this write from any instance.
    pub async fn set(&self, slot: u32, key: &str, value: &[u8]) -> Result<WriteReply, ClientError> {
        let req = SetRequest {
            slot,
            key: key.to_string(),
            value: value.to_vec(),
        };
        self.first_answer(None, req, |mut c, req| async move { c.set(req).await })
            .await
    }

    /// Deletes `key` from a register slot.
    pub async fn delete(&self, slot: u32, key: &str) -> Result<WriteReply, ClientError> {
        let req = DeleteRequest {
            slot,
            key: key.to_string(),
        };
        self.first_answer(None, req, |mut c, req| async move { c.delete(req).await })
            .await
    }

    /// Reads `key` from a register slot.
    pub async fn get(&self, slot: u32, key: &str) -> Result<GetReply, ClientError> {
        self.get_request(slot, key, None).await
    }

    /// Reads `key` from an instance that has seen at least `version` of it
    /// (the reply of an earlier write): read-your-writes from any instance.
    pub async fn get_at_least(
        &self,
        slot: u32,
        key: &str,
        version: Version,
    ) -> Result<GetReply, ClientError> {
        self.get_request(slot, key, Some(version)).await
    }

    async fn get_request(
        &self,
        slot: u32,
        key: &str,
        at_least: Option<Version>,
    ) -> Result<GetReply, ClientError> {
        let req = GetRequest {
            slot,
            key: key.to_string(),
            at_least,
        };
        self.first_answer(None, req, |mut c, req| async move { c.get(req).await })
            .await
    }

    /// Live keys of a register slot starting with `prefix`, in key order;
    /// `limit` 0 means the server's bound (1000).
    pub async fn list_keys(
        &self,
        slot: u32,
        prefix: &str,
        limit: u32,
    ) -> Result<ListKeysReply, ClientError> {
        let req = ListKeysRequest {
            slot,
            prefix: prefix.to_string(),
            limit,
        };
        self.first_answer(
            None,
            req,
            |mut c, req| async move { c.list_keys(req).await },
        )
        .await
    }

    /// Announces (or renews) `address` for `app` in a registry slot; it
    /// expires after `ttl` (None: the slot's defaultTtl) unless announced
    /// again.
    pub async fn announce(
        &self,
        slot: u32,
        app: &str,
        address: &str,
        ttl: Option<Duration>,
    ) -> Result<AnnounceReply, ClientError> {
        let req = AnnounceRequest {
            slot,
            app: app.to_string(),
            address: address.to_string(),
            ttl_ms: ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        };
        self.first_answer(None, req, |mut c, req| async move { c.announce(req).await })
            .await
    }

    /// Removes `address` of `app` from a registry slot at once.
    pub async fn withdraw(
        &self,
        slot: u32,
        app: &str,
        address: &str,
    ) -> Result<WithdrawReply, ClientError> {
        let req = WithdrawRequest {
            slot,
            app: app.to_string(),
            address: address.to_string(),
        };
        self.first_answer(None, req, |mut c, req| async move { c.withdraw(req).await })
            .await
    }

    /// Live entries of a registry slot (`app` empty: every app).
    pub async fn services(&self, slot: u32, app: &str) -> Result<Vec<Service>, ClientError> {
        let req = ListServicesRequest {
            slot,
            app: app.to_string(),
        };
        let reply = self
            .first_answer(
                None,
                req,
                |mut c, req| async move { c.list_services(req).await },
            )
            .await?;
        Ok(reply.services)
    }

    /// Changes of a registry slot's entries: first every live entry as
    /// ADDED, then each addition, renewal and expiry once, whichever
    /// instance reports it first.
    pub async fn watch_services(&self, slot: u32, app: &str) -> Result<ServiceWatch, ClientError> {
        let req = ListServicesRequest {
            slot,
            app: app.to_string(),
        };
        let streams = self
            .follow_all(req, |mut c, req| async move {
                c.watch_services(req).await.map(|r| r.into_inner())
            })
            .await?;
        Ok(ServiceWatch {
            streams,
            known: BTreeMap::new(),
        })
    }

    /// The ticks of a tick slot from every instance, each number once and
    /// in increasing order: a tick is delivered by whichever instance sends
    /// it first, so an instance going down skips nothing.
    pub async fn watch_ticks(&self, slot: u32) -> Result<TickWatch, ClientError> {
        let streams = self
            .follow_all(WatchTicksRequest { slot }, |mut c, req| async move {
                c.watch_ticks(req).await.map(|r| r.into_inner())
            })
            .await?;
        Ok(TickWatch {
            streams,
            last: None,
        })
    }

    /// Opens a server stream on every instance and keeps it open (reopened
    /// after a break) until the returned [`Streams`] is dropped. Succeeds
    /// once one instance accepted; a request error (wrong slot type) is
    /// returned as it is.
    async fn follow_all<R, T, F, Fut>(&self, req: R, open: F) -> Result<Streams<T>, ClientError>
    where
        R: Clone + Send + 'static,
        T: Send + 'static,
        F: Fn(VssClient<Conn>, R) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<tonic::Streaming<T>, tonic::Status>> + Send + 'static,
    {
        let (items_tx, items) = mpsc::channel(WATCH_BUFFER);
        let (closing, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut opened = Vec::new();
        for instance in &self.instances {
            let (first_tx, first_rx) = tokio::sync::oneshot::channel();
            tasks.spawn(keep_open(
                instance.clone(),
                req.clone(),
                open.clone(),
                items_tx.clone(),
                closing.subscribe(),
                first_tx,
            ));
            opened.push((instance.endpoint.clone(), first_rx));
        }
        first_openings(opened).await?;
        Ok(Streams {
            items,
            _tasks: tasks,
            _closing: closing,
        })
    }
}

/// Server streams on every instance, merged; dropping it closes them.
#[derive(Debug)]
struct Streams<T> {
    items: mpsc::Receiver<T>,
    _tasks: JoinSet<()>,
    // Dropped with the streams: every task sees the sender gone and stops.
    _closing: watch::Sender<bool>,
}

/// Registry changes; see [`Client::watch_services`].
#[derive(Debug)]
pub struct ServiceWatch {
    streams: Streams<ServiceChange>,
    /// (app, address) → the newest entry handed out.
    known: BTreeMap<(String, String), Service>,
}

impl ServiceWatch {
    /// The next change; None when every stream has ended for good.
    pub async fn next(&mut self) -> Option<ServiceChange> {
        loop {
            let change = self.streams.items.recv().await?;
            let Some(s) = change.service.clone() else {
                continue;
            };
            let key = (s.app.clone(), s.address.clone());
            let held = self.known.get(&key);
            let fresh = match change.kind() {
                Kind::Added | Kind::Renewed => {
                    held.is_none_or(|h| (s.updated_ms, s.expires_ms) > (h.updated_ms, h.expires_ms))
                }
                // An instance that has not heard of a renewal yet must not
                // take away an entry another instance renewed.
                Kind::Expired => held.is_some_and(|h| h.updated_ms <= s.updated_ms),
                Kind::Unspecified => false,
            };
            if !fresh {
                continue;
            }
            let kind = match (change.kind(), held.is_some()) {
                (Kind::Expired, _) => {
                    self.known.remove(&key);
                    Kind::Expired
                }
                (_, true) => {
                    self.known.insert(key, s);
                    Kind::Renewed
                }
                (_, false) => {
                    self.known.insert(key, s);
                    Kind::Added
                }
            };
            return Some(ServiceChange {
                kind: kind as i32,
                ..change
            });
        }
    }
}

/// Ticks; see [`Client::watch_ticks`].
#[derive(Debug)]
pub struct TickWatch {
    streams: Streams<Tick>,
    last: Option<u64>,
}

impl TickWatch {
    /// The next tick number above every one returned before.
    pub async fn next(&mut self) -> Option<Tick> {
        loop {
            let tick = self.streams.items.recv().await?;
            if self.last.is_none_or(|l| tick.number > l) {
                self.last = Some(tick.number);
                return Some(tick);
            }
        }
    }
}

/// Keeps one server stream open on one instance, forwarding its items,
/// until the watch is dropped or the instance refuses the request itself.
async fn keep_open<R, T, F, Fut>(
    instance: Instance,
    req: R,
    open: F,
    items: mpsc::Sender<T>,
    mut closing: watch::Receiver<bool>,
    first: tokio::sync::oneshot::Sender<Result<(), tonic::Status>>,
) where
    R: Clone,
    F: Fn(VssClient<Conn>, R) -> Fut,
    Fut: Future<Output = Result<tonic::Streaming<T>, tonic::Status>>,
{
    let mut first = Some(first);
    loop {
        match open(instance.grpc.clone(), req.clone()).await {
            Ok(mut stream) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Ok(()));
                }
                loop {
                    tokio::select! {
                        msg = stream.message() => match msg {
                            Ok(Some(item)) => {
                                if items.send(item).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) | Err(_) => break,
                        },
                        _ = closing.changed() => return,
                    }
                }
                tracing::debug!(endpoint = %instance.endpoint, "stream broke; reopening");
            }
            Err(status) => {
                let retry = is_instance_failure(status.code());
                if let Some(first) = first.take() {
                    let _ = first.send(Err(status));
                }
                if !retry {
                    return;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RESUBSCRIBE_AFTER) => {}
            _ = closing.changed() => return,
        }
    }
}
