//! Waiting for the signals that ask a process to stop.

/// Completes on SIGINT (Ctrl-C) or SIGTERM (Kubernetes, `kill`).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Serves `runtime` until SIGINT/SIGTERM; then runs `on_signal` (e.g.
/// vacating a Lease, so another instance leads at once), and gives the
/// runtime its hand-over time and `drain` to stop.
pub async fn run_until_signal(
    runtime: crate::server::Runtime,
    drain: std::time::Duration,
    on_signal: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let stopping = runtime.handover_timeout() + drain;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut serving = tokio::spawn(runtime.serve(async {
        let _ = stop_rx.await;
    }));
    tokio::select! {
        () = shutdown_signal() => {}
        finished = &mut serving => return Ok(finished??),
    }
    tracing::info!("shutdown requested");
    on_signal.await;
    let _ = stop_tx.send(());
    match tokio::time::timeout(stopping, &mut serving).await {
        Ok(finished) => Ok(finished??),
        Err(_) => {
            tracing::warn!(
                seconds = drain.as_secs(),
                "drain timed out; stopping anyway"
            );
            serving.abort();
            Ok(())
        }
    }
}
