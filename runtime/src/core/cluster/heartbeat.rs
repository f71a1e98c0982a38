//! Heartbeats to one peer: every [`HEARTBEAT_EVERY`], measuring the round
//! trip and learning the peer's epoch, leader, configuration generation
//! and whether it hears this instance. A peer silent for
//! [`super::peer::HEALTH_WINDOW`] is down.

use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::link::Heartbeat;
use super::peer::{HEARTBEAT_EVERY, HEARTBEAT_TIMEOUT, Peer};
use super::state::Cluster;
use crate::ops::metrics::PeerLabels;

/// Beats `peer` until `stop`.
pub async fn run(cluster: Arc<Cluster>, peer: Arc<Peer>, stop: CancellationToken) {
    let labels = PeerLabels {
        peer: peer.id().to_string(),
    };
    let metrics = &cluster.metrics().cluster;
    let up = metrics.peer_up.get_or_create(&labels).clone();
    let rtt_gauge = metrics.peer_rtt_seconds.get_or_create(&labels).clone();
    let mut every = tokio::time::interval(HEARTBEAT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_healthy = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let beat = Heartbeat {
            from: cluster.me().to_string(),
            epoch: cluster.epoch(),
        };
        let sent = Instant::now();
        let answer = tokio::time::timeout(HEARTBEAT_TIMEOUT, peer.link().heartbeat(beat)).await;
        match answer {
            Ok(Ok(reply)) if reply.from == peer.id() => {
                let rtt = sent.elapsed();
                rtt_gauge.set(rtt.as_secs_f64());
                peer.update(|h| {
                    h.last_ok = Some(Instant::now());
                    h.rtt = Some(rtt);
                    h.epoch = reply.epoch;
                    h.leader = reply.leader;
                    h.config_generation = reply.config_generation;
                    h.hears_me = reply.hears.iter().any(|id| id == cluster.me());
                    h.held = reply.held.into_iter().collect();
                    h.leaving = reply.leaving;
                });
            }
            Ok(Ok(reply)) => {
                tracing::warn!(
                    peer = peer.id(),
                    addr = peer.addr(),
                    answered_as = %reply.from,
                    "peer address answers with another instance id; check --peers"
                );
            }
            Ok(Err(e)) => tracing::debug!(peer = peer.id(), error = %e, "heartbeat failed"),
            Err(_) => tracing::debug!(peer = peer.id(), "heartbeat timed out"),
        }
        let healthy = peer.healthy();
        if healthy != was_healthy {
            if healthy {
                tracing::info!(peer = peer.id(), addr = peer.addr(), "peer up");
            } else {
                tracing::warn!(peer = peer.id(), addr = peer.addr(), "peer down");
            }
            up.set(i64::from(healthy));
            was_healthy = healthy;
        }
    }
}
