//! Limits per client connection, so one client cannot starve the others:
//! how many connections the client port holds at once, and how many calls
//! a second each may start. (Calls in flight per connection are HTTP/2's
//! stream limit, [`crate::RuntimeOptions::client_max_streams`]; message
//! sizes are tonic's 4 MiB decoding limit.)
//!
//! [`ConnectionGate::limit`] wraps the client port's accepted connections:
//! one past the limit is closed at once (the client sees a reset and tries
//! another instance), the others carry a [`ClientConnection`] that tonic
//! hands to every request of that connection, where [`CallBudgetLayer`]
//! takes one call from its budget or answers `RESOURCE_EXHAUSTED`.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::stream::{Stream, StreamExt as _};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::codegen::BoxFuture;
use tonic::codegen::http::{Request, Response};
use tonic::transport::server::Connected;
use tower::{Layer, Service};

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

/// Series of the client port's connection limits.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    /// Client connections open now.
    pub open: Gauge,
    /// Connections closed at once because the port held its maximum.
    pub refused: Counter,
    /// Calls refused because their connection spent its budget.
    pub calls_refused: Counter,
}

/// A connection's calls budget: a token bucket refilled continuously.
#[derive(Debug)]
struct Budget {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Budget {
    fn take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, at) = *state;
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * self.rate).min(self.rate);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            true
        } else {
            *state = (tokens, now);
            false
        }
    }
}

/// What tonic hands each request of a client connection.
#[derive(Debug, Clone)]
pub struct ClientConnection {
    budget: Arc<Budget>,
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
                let rate = f64::from(gate.limits.calls_per_second);
                Some(Ok(Limited {
                    io,
                    connection: ClientConnection {
                        budget: Arc::new(Budget {
                            rate,
                            state: Mutex::new((rate, Instant::now())),
                        }),
                    },
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

/// Takes each call from its connection's budget.
#[derive(Debug, Clone)]
pub struct CallBudgetLayer {
    calls_per_second: u32,
    refused: Counter,
}

impl CallBudgetLayer {
    pub fn new(limits: ClientLimits, metrics: &ConnectionMetrics) -> Self {
        Self {
            calls_per_second: limits.calls_per_second,
            refused: metrics.calls_refused.clone(),
        }
    }
}

impl<S> Layer<S> for CallBudgetLayer {
    type Service = CallBudget<S>;

    fn layer(&self, inner: S) -> CallBudget<S> {
        CallBudget {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CallBudget<S> {
    inner: S,
    layer: CallBudgetLayer,
}

impl<S, B> Service<Request<B>> for CallBudget<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let spent = req
            .extensions()
            .get::<ClientConnection>()
            .is_some_and(|c| !c.budget.take());
        if spent {
            self.layer.refused.inc();
            let status = Status::resource_exhausted(format!(
                "this connection started more than {} calls in the last second (--client-max-calls-per-second); slow down or spread the calls over connections",
                self.layer.calls_per_second
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_allows_its_rate_as_a_burst_then_refuses() {
        let budget = Budget {
            rate: 5.0,
            state: Mutex::new((5.0, Instant::now())),
        };
        let taken = (0..10).filter(|_| budget.take()).count();
        assert_eq!(taken, 5);
    }
}
