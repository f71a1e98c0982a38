//! Only one operator replica reconciles at a time: the holder of the
//! `vss-operator` Lease. The others wait and take over when it lapses.

use std::pin::Pin;
use std::task::{Context, Poll};

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The Lease the operator's replicas compete for.
pub const LEASE_NAME: &str = "vss-operator";
/// Seconds a leader holds the Lease without renewing it.
const LEASE_SECONDS: u64 = 15;

/// A running election: `is_leader` follows the Lease; dropping it and
/// awaiting `task` releases the Lease so a standby takes over at once.
pub struct Election {
    pub is_leader: watch::Receiver<bool>,
    pub task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

pub async fn start(
    client: Client,
    namespace: &str,
    identity: &str,
) -> Result<Election, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(5)
        .build()
        .await?;
    let (is_leader, task) = manager.watch().await;
    Ok(Election { is_leader, task })
}

/// Resolves when leadership is lost or the process is told to stop; handed
/// to the work so it can stop cleanly (`Controller::graceful_shutdown_on`
/// wants a `Send + Sync` future, hence the box).
pub struct Stop(Pin<Box<dyn Future<Output = ()> + Send + Sync>>);

impl Future for Stop {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

/// Runs `work` each time this replica becomes leader, stopping it when
/// leadership is lost, until `shutdown` is cancelled or the election ends.
pub async fn while_leading<F, Fut>(
    mut is_leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
    mut work: F,
) where
    F: FnMut(Stop) -> Fut,
    Fut: Future<Output = ()>,
{
    while !shutdown.is_cancelled() {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = is_leader.wait_for(|l| *l) => {
                if changed.is_err() {
                    warn!("leader election stopped");
                    break;
                }
            }
        }
        info!("leading: starting the controller");
        let mut lost = is_leader.clone();
        let token = shutdown.clone();
        let stop = Stop(Box::pin(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = lost.wait_for(|l| !*l) => warn!("lost leadership"),
            }
        }));
        work(stop).await;
        info!("controller stopped");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn works_only_while_leading_and_stops_on_shutdown() {
        let (tx, rx) = watch::channel(false);
        let shutdown = CancellationToken::new();
        let started = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicUsize::new(0));
        let (s, t) = (started.clone(), stopped.clone());
        let task = tokio::spawn(while_leading(rx, shutdown.clone(), move |stop| {
            let (s, t) = (s.clone(), t.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                stop.await;
                t.fetch_add(1, Ordering::SeqCst);
            }
        }));
        let count = |c: &Arc<AtomicUsize>| c.load(Ordering::SeqCst);

        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(count(&started), 0, "a standby does no work");
        tx.send(true).expect("send");
        eventually("start", || count(&started) == 1).await;
        tx.send(false).expect("send");
        eventually("stop on lost leadership", || count(&stopped) == 1).await;
        tx.send(true).expect("send");
        eventually("restart", || count(&started) == 2).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("returns on shutdown")
            .expect("no panic");
        assert_eq!(count(&stopped), 2);
    }
}
