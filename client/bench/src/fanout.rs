//! Signal-slot scenarios: `publish` (broadcast fan-out latency) and
//! `connections` (the server's memory per connected client).
//!
//! Both put the subscribers in other processes than the bench's publisher
//! and the server ([`crate::subscribers`]). A publish RPC returns when every
//! delivery is acknowledged or has failed, so its latency as the publisher
//! sees it is the time from publish to the last acknowledgement; every
//! answer is checked to have reached all subscribers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;
use vss_client::{Conn, SecurityArgs};
use vss_proto::v1::PublishRequest;
use vss_proto::v1::vss_client::VssClient;

use crate::stats::{ConnectionsSummary, FanoutSummary, Latencies, split, vm_rss_kib};
use crate::subscribers::{Processes, Share};

/// 36 bytes, the largest message a signal slot takes (a UUID in text).
pub const MESSAGE: &[u8; 36] = b"0f8fad5b-d9cb-469f-a165-70867728950e";

/// Time for the server to finish the work the last connections caused
/// before its memory is read.
const SETTLE: Duration = Duration::from_secs(1);

/// Where the subscribers go and how they connect.
#[derive(Debug, Clone)]
pub struct Layout {
    pub endpoint: String,
    pub slot: u32,
    pub subscribers: usize,
    pub processes: usize,
    /// HTTP/2 connections per process, when clients share them.
    pub connections: usize,
    pub own_connections: bool,
    /// The flags the subscriber processes connect with.
    pub security: SecurityArgs,
}

impl Layout {
    fn shares(&self) -> Vec<Share> {
        let loopback_v4 = self
            .endpoint
            .trim_start_matches("http://")
            .parse::<SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback() && a.is_ipv4());
        split(self.subscribers, self.processes)
            .into_iter()
            .enumerate()
            .map(|(k, clients)| Share {
                endpoint: self.endpoint.clone(),
                slot: self.slot,
                clients,
                connections: self.connections,
                own_connections: self.own_connections,
                source: (self.own_connections && loopback_v4).then(|| source_address(k)),
                id_prefix: format!("s{k}-"),
            })
            .collect()
    }
}

/// 127.0.0.2, .3, ...: each process's connections get their own source
/// address, so each has the whole ephemeral port range to the server's
/// one port.
fn source_address(process: usize) -> IpAddr {
    let host = u8::try_from(2 + process % 250).unwrap_or(2);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, host))
}

/// When to stop publishing.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Unmeasured for `warmup`, then measured for `measured`.
    Time {
        warmup: Duration,
        measured: Duration,
    },
    /// This many publishes, all measured.
    Count(u64),
}

/// Publishes one message at a time for the `publish` scenario.
pub async fn publish(
    layout: &Layout,
    publisher: Conn,
    until: Until,
) -> anyhow::Result<FanoutSummary> {
    let shares = layout.shares();
    let connections = shares.iter().map(Share::tcp_connections).sum();
    let processes = Processes::start(&shares, &layout.security).await?;
    let measured = measure(publisher, layout, until).await;
    processes.stop().await;
    let mut summary = measured?;
    summary.scenario = format!("publish slot {}", layout.slot);
    summary.processes = shares.iter().filter(|s| s.clients > 0).count();
    summary.connections = connections;
    Ok(summary)
}

/// The `connections` scenario: every client on its own connection with an
/// open event stream; the server's RSS before and after, then optionally
/// broadcasts to all of them.
pub async fn connections(
    layout: &Layout,
    server_pid: u32,
    publisher: Conn,
    broadcasts: u64,
) -> anyhow::Result<ConnectionsSummary> {
    let before = rss_kib(server_pid)?;
    let shares = layout.shares();
    let started = Instant::now();
    let processes = Processes::start(&shares, &layout.security).await?;
    let connect = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let after = rss_kib(server_pid);
    let broadcast = if broadcasts > 0 && after.is_ok() {
        Some(measure(publisher, layout, Until::Count(broadcasts)).await)
    } else {
        None
    };
    processes.stop().await;
    let broadcast = match broadcast {
        Some(b) => {
            let mut b = b?;
            b.scenario = format!("broadcast on slot {} to every client", layout.slot);
            b.processes = shares.len();
            b.connections = layout.subscribers;
            Some(b)
        }
        None => None,
    };
    Ok(ConnectionsSummary {
        clients: layout.subscribers,
        processes: shares.iter().filter(|s| s.clients > 0).count(),
        connect,
        rss_before_kib: before,
        rss_after_kib: after?,
        broadcast,
    })
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    vm_rss_kib(&status).with_context(|| format!("no VmRSS in {path}"))
}

/// Publishes one message at a time and times each until its answer.
async fn measure(publisher: Conn, layout: &Layout, until: Until) -> anyhow::Result<FanoutSummary> {
    let mut client = VssClient::new(publisher);
    let start = Instant::now();
    let (measure_from, end, most) = match until {
        Until::Time { warmup, measured } => (start + warmup, Some(start + warmup + measured), None),
        Until::Count(n) => (start, None, Some(n)),
    };
    let mut summary = FanoutSummary {
        scenario: String::new(),
        subscribers: layout.subscribers,
        processes: 0,
        connections: 0,
        measured: Duration::ZERO,
        complete: 0,
        incomplete: 0,
        errors: 0,
        latencies: Latencies::new(),
    };
    let mut published = 0u64;
    loop {
        let sent = Instant::now();
        if end.is_some_and(|end| sent >= end) || most.is_some_and(|n| published >= n) {
            break;
        }
        let request = PublishRequest {
            slot: layout.slot,
            message: MESSAGE.to_vec(),
            client_id: String::new(),
            message_id: 0,
        };
        let answer = client.publish(request).await;
        let latency = sent.elapsed();
        published += 1;
        if sent < measure_from {
            continue;
        }
        match answer {
            Ok(reply) => {
                let reply = reply.into_inner();
                if reply.delivered as usize == layout.subscribers && reply.failed == 0 {
                    summary.complete += 1;
                } else {
                    summary.incomplete += 1;
                }
                summary.latencies.record(latency);
            }
            // A failed RPC is counted, not timed, as in the other scenarios.
            Err(_) => summary.errors += 1,
        }
    }
    summary.measured = match until {
        Until::Time { measured, .. } => measured,
        Until::Count(_) => start.elapsed(),
    };
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(endpoint: &str, own: bool) -> Layout {
        Layout {
            endpoint: endpoint.into(),
            slot: 10,
            subscribers: 10,
            processes: 3,
            connections: 4,
            own_connections: own,
            security: SecurityArgs::default(),
        }
    }

    #[test]
    fn the_message_is_the_largest_a_signal_slot_takes() {
        assert_eq!(MESSAGE.len(), 36);
    }

    #[test]
    fn own_connections_to_loopback_get_a_source_address_per_process() {
        let shares = layout("127.0.0.1:7700", true).shares();
        let clients: Vec<_> = shares.iter().map(|s| s.clients).collect();
        assert_eq!(clients, [4, 3, 3]);
        let sources: Vec<_> = shares.iter().map(|s| s.source).collect();
        assert_eq!(
            sources,
            ["127.0.0.2", "127.0.0.3", "127.0.0.4"].map(|a| a.parse().ok())
        );
        let prefixes: Vec<_> = shares.iter().map(|s| s.id_prefix.as_str()).collect();
        assert_eq!(prefixes, ["s0-", "s1-", "s2-"], "client ids never collide");
        assert!(
            layout("10.0.0.7:7700", true)
                .shares()
                .iter()
                .all(|s| s.source.is_none()),
            "a remote server is reached from the default address"
        );
        assert!(
            layout("127.0.0.1:7700", false)
                .shares()
                .iter()
                .all(|s| s.source.is_none())
        );
    }
}
