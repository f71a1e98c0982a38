//! Files re-read while the instance runs (certificates, client tokens, the
//! slot configuration): polled for changes, and swapped in only when they
//! load.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often watched files are checked for changes. Kubernetes updates a
/// mounted Secret within about a minute, and cert-manager renews well
/// before expiry, so seconds are plenty.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

/// Calls `reload` every `period` until `stop`. `reload` answers Ok(true)
/// when it swapped in a changed set (then `reloaded` runs), Ok(false) when
/// nothing changed, and an error when the changed set does not load:
/// `failed` runs once per run of failures, since a half-written set fails
/// the same way on every poll until it is complete.
pub async fn watch<F, Fut, E>(
    period: Duration,
    stop: CancellationToken,
    mut reload: F,
    reloaded: impl Fn(),
    failed: impl Fn(&E),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, E>>,
{
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate and the files were just read.
    every.tick().await;
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        match reload().await {
            Ok(false) => failing = false,
            Ok(true) => {
                failing = false;
                reloaded();
            }
            Err(e) => {
                if !failing {
                    failed(&e);
                }
                failing = true;
            }
        }
    }
}
