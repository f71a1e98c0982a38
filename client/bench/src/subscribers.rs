//! Subscribers in processes of their own.
//!
//! A fan-out measured with its subscribers in the publisher's process (as
//! `runtime/benches/fanout.rs` does) shares one Tokio runtime between the
//! two, and a subscriber in the server's process does not cross a socket.
//! Here the bench starts copies of itself (`vss-bench subscribers`, a
//! hidden subcommand); each opens its share of event streams, acknowledges
//! every event at once, says `ready N` on stdout and runs until its stdin
//! closes. The parent owns the children: it closes their stdin to stop
//! them, and kills (by their own handle) any that do not stop in time or
//! that it drops on an error.

use std::net::IpAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use vss_client::{Conn, Security, SecurityArgs};
use vss_proto::v1::client_message::Kind;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{Ack, ClientMessage, Hello};

/// Longest a child may take to open all its streams.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest a child may take to exit once told to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Acks a stream may have queued towards the server.
const ACK_QUEUE: usize = 64;

/// How one child process connects its subscribers.
#[derive(Debug, Clone)]
pub struct Share {
    pub endpoint: String,
    pub slot: u32,
    pub clients: usize,
    /// HTTP/2 connections the streams are spread over; ignored with
    /// `own_connections`.
    pub connections: usize,
    /// One TCP connection per client.
    pub own_connections: bool,
    /// Local address of the child's connections (a 127.0.0.x, so that many
    /// connections to one server port do not run out of source ports).
    pub source: Option<IpAddr>,
    /// Client ids are this prefix and a number.
    pub id_prefix: String,
}

impl Share {
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "-e".into(),
            self.endpoint.clone(),
            "-c".into(),
            self.connections.to_string(),
            "subscribers".into(),
            "--slot".into(),
            self.slot.to_string(),
            "--clients".into(),
            self.clients.to_string(),
            "--id-prefix".into(),
            self.id_prefix.clone(),
        ];
        if self.own_connections {
            args.push("--own-connections".into());
        }
        if let Some(source) = self.source {
            args.push("--source".into());
            args.push(source.to_string());
        }
        args
    }

    /// TCP connections this share opens.
    pub fn tcp_connections(&self) -> usize {
        if self.own_connections {
            self.clients
        } else {
            self.connections.clamp(1, self.clients.max(1))
        }
    }
}

/// The TLS flags of `security`, for a child process.
fn tls_args(security: &SecurityArgs) -> Vec<std::ffi::OsString> {
    [
        ("--tls-ca", &security.tls_ca),
        ("--tls-cert", &security.tls_cert),
        ("--tls-key", &security.tls_key),
    ]
    .into_iter()
    .filter_map(|(flag, path)| Some([flag.into(), path.as_ref()?.into()]))
    .flatten()
    .collect()
}

/// Running subscriber processes, all ready.
pub struct Processes {
    children: Vec<(Child, Option<ChildStdin>)>,
}

impl Processes {
    /// Starts one child per share (those with clients), connecting as
    /// `security` says, and waits until every one has opened all its
    /// streams.
    pub async fn start(shares: &[Share], security: &SecurityArgs) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find vss-bench's own executable")?;
        let mut children = Vec::new();
        for share in shares.iter().filter(|s| s.clients > 0) {
            let mut command = Command::new(&exe);
            command.args(share.args()).args(tls_args(security));
            // The token goes in the environment: arguments show in `ps`.
            // The parent read the token file, if any.
            command.env_remove("VSS_TOKEN_FILE");
            if let Some(token) = &security.token {
                command.env("VSS_TOKEN", token);
            }
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                // An early return on an error drops the child: it must not
                // outlive the bench.
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a subscriber process")?;
            let stdin = child.stdin.take();
            children.push((child, stdin, share.clients));
        }
        let mut ready = Vec::new();
        for (mut child, stdin, clients) in children {
            let stdout = child
                .stdout
                .take()
                .context("subscriber process without stdout")?;
            let mut lines = BufReader::new(stdout).lines();
            let line = tokio::time::timeout(READY_TIMEOUT, lines.next_line())
                .await
                .context("a subscriber process did not get ready in time")??;
            let want = format!("ready {clients}");
            anyhow::ensure!(
                line.as_deref() == Some(want.as_str()),
                "a subscriber process said {line:?} instead of `{want}` (see its error above)"
            );
            ready.push((child, stdin));
        }
        Ok(Self { children: ready })
    }

    /// Tells every child to stop (closes its stdin) and waits; kills those
    /// that do not exit in time.
    pub async fn stop(mut self) {
        for (_, stdin) in &mut self.children {
            drop(stdin.take());
        }
        for (child, _) in &mut self.children {
            if tokio::time::timeout(STOP_TIMEOUT, child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// The child's side: opens the share's streams, acknowledges every event,
/// says `ready N` and runs until stdin closes.
pub async fn serve(share: Share, security: &Security) -> anyhow::Result<()> {
    crate::raise_open_files_limit();
    let channels = connect(&share, security).await?;
    let acked = Arc::new(AtomicU64::new(0));
    let mut streams = JoinSet::new();
    for i in 0..share.clients {
        let mut client = VssClient::new(channels[i % channels.len()].clone());
        let (tx, rx) = mpsc::channel(ACK_QUEUE);
        let hello = ClientMessage {
            kind: Some(Kind::Hello(Hello {
                client_id: format!("{}{i}", share.id_prefix),
                slots: vec![share.slot],
            })),
        };
        tx.send(hello)
            .await
            .context("the request stream closed before its Hello")?;
        // The server answers once it has taken the Hello, so the client is
        // registered when this returns.
        let mut events = client
            .events(ReceiverStream::new(rx))
            .await
            .with_context(|| format!("event stream of subscriber {i}"))?
            .into_inner();
        let acked = acked.clone();
        streams.spawn(async move {
            while let Ok(Some(event)) = events.message().await {
                let ack = ClientMessage {
                    kind: Some(Kind::Ack(Ack {
                        message_id: event.message_id,
                    })),
                };
                if tx.send(ack).await.is_err() {
                    break;
                }
                acked.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    println!("ready {}", share.clients);
    let (closed_tx, closed) = tokio::sync::oneshot::channel::<()>();
    // Blocking read on a plain thread: it ends when the parent closes our
    // stdin or goes away.
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = closed_tx.send(());
    });
    let _ = closed.await;
    streams.abort_all();
    while streams.join_next().await.is_some() {}
    eprintln!(
        "subscribers {}*: {} events acknowledged",
        share.id_prefix,
        acked.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn connect(share: &Share, security: &Security) -> anyhow::Result<Vec<Conn>> {
    // Over TLS the connector dials itself, from any source address.
    let endpoint = crate::endpoint(&share.endpoint)?.local_address(share.source);
    let mut channels = Vec::with_capacity(share.tcp_connections());
    for _ in 0..share.tcp_connections() {
        let channel = security
            .connect(endpoint.clone())
            .await
            .with_context(|| format!("cannot connect to {}", share.endpoint))?;
        channels.push(channel);
    }
    Ok(channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(clients: usize, connections: usize, own: bool) -> Share {
        Share {
            endpoint: "127.0.0.1:7700".into(),
            slot: 10,
            clients,
            connections,
            own_connections: own,
            source: None,
            id_prefix: "p0-".into(),
        }
    }

    #[test]
    fn children_get_the_tls_files_as_flags_and_never_the_token() {
        let security = SecurityArgs {
            tls_ca: Some("/pki/ca.pem".into()),
            token: Some("s3cret-0123456789".into()),
            ..SecurityArgs::default()
        };
        let args = tls_args(&security);
        assert_eq!(args, ["--tls-ca", "/pki/ca.pem"]);
    }

    #[test]
    fn connections_are_shared_unless_each_client_has_its_own() {
        assert_eq!(share(1_000, 16, false).tcp_connections(), 16);
        assert_eq!(share(3, 16, false).tcp_connections(), 3);
        assert_eq!(share(1_000, 16, true).tcp_connections(), 1_000);
    }
}
