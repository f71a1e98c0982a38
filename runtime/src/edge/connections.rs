//! Limits per client connection, so one client cannot starve the others:
//! how many connections the client port holds at once, and how many calls
//! a second each may start. (Calls in flight per connection are HTTP/2's
//! stream limit, [`crate::RuntimeOptions::client_max_streams`]; message
//! sizes are tonic's 4 MiB decoding limit.)
//!
//! [`ConnectionGate::limit`] wraps the client port's accepted connections:
//! one past the limit is closed at once (the client sees a reset and tries
//! another instance), the others carry a [`ClientConnection`] that tonic
//! hands to every request of that connection: the client port's
//! [`crate::edge::admission::ClientPort`] takes one call from its budget or
//! answers `RESOURCE_EXHAUSTED`, and [`crate::core::access`] keeps the
//! connection's last resolved token there.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::stream::{Stream, StreamExt as _};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;

use crate::core::access::GrantCache;
use crate::ops::metrics::ConnectionMetrics;

/// Default of [`ClientLimits::max_connections`]: the default client cap.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;
/// Default of [`ClientLimits::calls_per_second`]: far above one client's
/// needs (vss-client batches its acquires), low enough that one
/// connection cannot take a whole instance.
pub const DEFAULT_CALLS_PER_SECOND: u32 = 50_000;

#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// Most connections the client port holds at once.
    pub max_connections: usize,
    /// Most calls one connection may start per second (a burst of as many
    /// is allowed).
    pub calls_per_second: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            calls_per_second: DEFAULT_CALLS_PER_SECOND,
        }
    }
}

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// A connection's calls budget: a token bucket holding `rate` calls,
/// refilled continuously at `rate` a second.
///
/// Kept as the time the bucket's schedule is next free (the "theoretical
/// arrival time" of GCRA) rather than as a count of tokens and a refill
/// time: one integer, so concurrent calls of a connection update it with
/// a compare-and-swap instead of a lock. A call moves that time one
/// interval on; it is allowed while the time stays within a second
/// (`rate` intervals) of now, which is a full bucket's worth.
#[derive(Debug)]
struct Budget {
    opened: Instant,
    /// Nanoseconds of refill per call; 0: a rate of 0, no call allowed.
    interval: u64,
    /// How far ahead of now the schedule may run: `rate` intervals.
    window: u64,
    /// Nanoseconds since `opened` from which the bucket is full again.
    full_at: AtomicU64,
}

impl Budget {
    fn new(rate: u32) -> Self {
        // At most 1e9 a second: a rate above one call a nanosecond is
        // refilled at that.
        let interval = NANOS_PER_SECOND
            .checked_div(u64::from(rate))
            .map_or(0, |i| i.max(1));
        Self {
            opened: Instant::now(),
            interval,
            window: interval * u64::from(rate),
            full_at: AtomicU64::new(0),
        }
    }

    fn take(&self) -> bool {
        let now = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.take_at(now)
    }

    /// Takes a call at `now` nanoseconds after the connection opened.
    fn take_at(&self, now: u64) -> bool {
        if self.interval == 0 {
            return false;
        }
        let mut full_at = self.full_at.load(Ordering::Relaxed);
        loop {
            let next = full_at.max(now).saturating_add(self.interval);
            if next > now.saturating_add(self.window) {
                return false;
            }
            match self.full_at.compare_exchange_weak(
                full_at,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => full_at = current,
            }
        }
    }
}

/// What tonic hands each request of a client connection.
#[derive(Debug, Clone)]
pub struct ClientConnection(Arc<Connection>);

#[derive(Debug)]
struct Connection {
    budget: Budget,
    grants: GrantCache,
}

impl ClientConnection {
    pub(crate) fn new(calls_per_second: u32) -> Self {
        Self(Arc::new(Connection {
            budget: Budget::new(calls_per_second),
            grants: GrantCache::default(),
        }))
    }

    /// Takes one call from the connection's budget; false: it is spent.
    pub(crate) fn take_call(&self) -> bool {
        self.0.budget.take()
    }

    /// The grant the connection's token last resolved to.
    pub(crate) fn grants(&self) -> &GrantCache {
        &self.0.grants
    }
}

/// Counts the client port's connections against its limit.
#[derive(Debug, Clone)]
pub struct ConnectionGate {
    permits: Arc<Semaphore>,
    limits: ClientLimits,
    metrics: ConnectionMetrics,
}

impl ConnectionGate {
    pub fn new(limits: ClientLimits, metrics: ConnectionMetrics) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            metrics,
        }
    }

    /// The connections of `incoming`, each holding its place until it
    /// closes; one past the limit is dropped (closed) at once.
    pub fn limit<S, IO>(
        self,
        incoming: S,
    ) -> impl Stream<Item = Result<Limited<IO>, io::Error>> + Send + 'static
    where
        S: Stream<Item = Result<IO, io::Error>> + Send + 'static,
        IO: Send + 'static,
    {
        incoming.filter_map(move |accepted| {
            let gate = self.clone();
            async move {
                let io = match accepted {
                    Ok(io) => io,
                    Err(e) => return Some(Err(e)),
                };
                let Ok(permit) = gate.permits.clone().try_acquire_owned() else {
                    gate.metrics.refused.inc();
                    tracing::debug!(
                        max = gate.limits.max_connections,
                        "client port holds its most connections (--client-max-connections); closed a new one"
                    );
                    return None;
                };
                gate.metrics.open.inc();
                Some(Ok(Limited {
                    io,
                    connection: ClientConnection::new(gate.limits.calls_per_second),
                    open: gate.metrics.open.clone(),
                    _permit: permit,
                }))
            }
        })
    }
}

/// A client connection holding its place under the limit.
#[derive(Debug)]
pub struct Limited<IO> {
    io: IO,
    connection: ClientConnection,
    open: Gauge,
    _permit: OwnedSemaphorePermit,
}

impl<IO> Drop for Limited<IO> {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl<IO: Connected> Connected for Limited<IO> {
    type ConnectInfo = ClientConnection;

    fn connect_info(&self) -> ClientConnection {
        self.connection.clone()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Limited<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Limited<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_budget_allows_its_rate_as_a_burst_then_refuses() {
        let budget = Budget::new(5);
        let taken = (0..10).filter(|_| budget.take_at(0)).count();
        assert_eq!(taken, 5);
    }

    #[test]
    fn a_budget_refills_continuously_up_to_its_rate() {
        let budget = Budget::new(5);
        assert_eq!((0..5).filter(|_| budget.take_at(0)).count(), 5);
        // One call's worth every 200 ms.
        assert!(!budget.take_at(199 * MS));
        assert!(budget.take_at(200 * MS));
        assert!(!budget.take_at(200 * MS));
        // Idle for long: full again, and no fuller.
        assert_eq!((0..10).filter(|_| budget.take_at(60_000 * MS)).count(), 5);
    }

    #[test]
    fn a_budget_of_zero_refuses_everything() {
        assert!(!Budget::new(0).take_at(0));
    }

    #[test]
    fn concurrent_calls_share_one_budget_exactly() {
        let budget = Budget::new(10_000);
        let taken: usize = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..5_000).filter(|_| budget.take_at(0)).count()))
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("no panic"))
                .sum()
        });
        assert_eq!(taken, 10_000);
    }
}
