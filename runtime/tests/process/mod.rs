//! A cluster of `vss-runtime` processes on loopback, for tests. Every
//! process is started here and killed here, by its own handle (PID); all
//! of them are killed when the cluster is dropped.
#![allow(dead_code)]

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use vss_client::Client;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{RoutingTable, StatusReply, StatusRequest};

/// The slot configuration every test cluster starts with.
pub const SLOTS_YAML: &str = "slots:
  - id: 0
    type: token-bucket
    bucketSize: 200
    period: second
    refreshRate: 100
  - id: 2
    type: token-bucket
    bucketSize: 1000
    period: minute
    refreshRate: 1000
    tokensPerReq: 20
  - id: 3
    type: leaky-bucket
    bucketSize: 5
    period: second
  - id: 10
    type: broadcast
    timeout: 2s
  - id: 11
    type: multicast
    timeout: 2s
  - id: 12
    type: random
    timeout: 2s
";

const BIN: &str = env!("CARGO_BIN_EXE_vss-runtime");

struct Node {
    id: String,
    grpc: u16,
    mesh: u16,
    http: u16,
    child: Option<Child>,
    /// Arguments for this instance only, after the shared ones.
    own: Vec<String>,
    /// Replaces the shared `--peers` for this instance (e.g. through a
    /// [`Proxy`]).
    peers: Option<String>,
}

pub struct ProcessCluster {
    dir: tempfile::TempDir,
    config: PathBuf,
    peers: String,
    nodes: Vec<Node>,
    /// Passed to every instance, e.g. chaos flags.
    extra: Vec<String>,
}

/// A port for one listener of an instance. `bind(0)` and release is not
/// enough here: the tests of a binary start clusters side by side, and the
/// kernel may hand the same released port to two of them, or to an outgoing
/// connection, before the instance binds it. So each test binary walks its
/// own stretch (by PID) of the ports below Linux's ephemeral range (32768
/// up), never giving a port out twice, and skips ports something else holds.
fn free_port() -> std::io::Result<u16> {
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() % 20) * 1_000;
    for _ in 0..SPAN {
        let port = FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let port = u16::try_from(port).expect("below 30000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free loopback port in {FIRST}..{}", FIRST + SPAN),
    ))
}

impl ProcessCluster {
    /// Starts one process per id.
    pub fn start(ids: &[&str]) -> std::io::Result<Self> {
        let all: Vec<usize> = (0..ids.len()).collect();
        Self::start_some(ids, &all)
    }

    /// A cluster of `ids` of which only `running` are started.
    pub fn start_some(ids: &[&str], running: &[usize]) -> std::io::Result<Self> {
        Self::start_with(ids, running, &[])
    }

    /// Like [`ProcessCluster::start_some`], with `extra` arguments for every
    /// instance.
    pub fn start_with(ids: &[&str], running: &[usize], extra: &[&str]) -> std::io::Result<Self> {
        Self::start_config(ids, running, extra, SLOTS_YAML, &[])
    }

    /// Like [`ProcessCluster::start_with`], with `yaml` as the slot config
    /// and `files` (name, bytes) written beside it, e.g. custom modules.
    pub fn start_config(
        ids: &[&str],
        running: &[usize],
        extra: &[&str],
        yaml: &str,
        files: &[(&str, &[u8])],
    ) -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("slots.yaml");
        std::fs::write(&config, yaml)?;
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes)?;
        }
        let mut nodes = Vec::new();
        for id in ids {
            nodes.push(Node {
                id: (*id).to_string(),
                grpc: free_port()?,
                mesh: free_port()?,
                http: free_port()?,
                child: None,
                own: Vec::new(),
                peers: None,
            });
        }
        let peers = nodes
            .iter()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.mesh))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            dir,
            config,
            peers,
            nodes,
            extra: extra.iter().map(|s| (*s).to_string()).collect(),
        };
        for i in running {
            cluster.spawn(*i)?;
        }
        Ok(cluster)
    }

    /// Runs `vss-runtime` with `args` (plus a config) to completion.
    pub fn run_once(args: &[&str]) -> std::io::Result<Output> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("slots.yaml");
        std::fs::write(&config, SLOTS_YAML)?;
        Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// (Re)starts instance `i` on its ports.
    pub fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        let node = &self.nodes[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", node.id)))?;
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(["--id", &node.id])
            .args(["--listen", &format!("127.0.0.1:{}", node.grpc)])
            .args(["--mesh-listen", &format!("127.0.0.1:{}", node.mesh)])
            .args(["--http-listen", &format!("127.0.0.1:{}", node.http)])
            .args(["--peers", node.peers.as_deref().unwrap_or(&self.peers)])
            .args(&self.extra)
            .args(&node.own)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// Arguments instance `i` gets from its next start on, e.g. chaos flags
    /// for it alone.
    pub fn set_own_args(&mut self, i: usize, args: &[&str]) {
        self.nodes[i].own = args.iter().map(|s| (*s).to_string()).collect();
    }

    /// Instance `i` reaches peer `peer`'s mesh port at `addr` from its next
    /// start on.
    pub fn route_peer_via(&mut self, i: usize, peer: usize, addr: &str) {
        let peers = self
            .nodes
            .iter()
            .enumerate()
            .map(|(j, n)| {
                let own = self.nodes[i].peers.as_deref().and_then(|p| {
                    p.split(',')
                        .find(|e| e.starts_with(&format!("{}=", n.id)))
                        .map(str::to_string)
                });
                match (j == peer, own) {
                    (true, _) => format!("{}={addr}", n.id),
                    (false, Some(e)) => e,
                    (false, None) => format!("{}=127.0.0.1:{}", n.id, n.mesh),
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        self.nodes[i].peers = Some(peers);
    }

    /// Instance `i`'s gRPC address.
    pub fn grpc_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].grpc)
    }

    /// Instance `i`'s mesh address (peers and the control API).
    pub fn mesh_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].mesh)
    }

    pub fn mesh_url(&self, i: usize) -> String {
        format!("http://{}", self.mesh_addr(i))
    }

    pub fn http_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].http)
    }

    /// SIGKILLs instance `i` (the process this cluster started).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops instance `i` as Kubernetes does (SIGTERM), waits up to
    /// `within` for it to exit and returns its exit code; SIGKILLs it if it
    /// is still running then.
    pub async fn terminate(&mut self, i: usize, within: Duration) -> Option<i32> {
        let mut child = self.nodes[i].child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// The PID of instance `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    pub fn id(&self, i: usize) -> &str {
        &self.nodes[i].id
    }

    pub fn index_of(&self, id: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("{id:?} is one of this cluster's ids"))
    }

    /// Every instance's gRPC address, for a client of the whole cluster.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.grpc))
            .collect()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].grpc)
    }

    /// A client of instance `i` only.
    pub fn client(&self, i: usize) -> Client {
        Client::with_timeout(
            &[format!("127.0.0.1:{}", self.nodes[i].grpc)],
            Duration::from_secs(5),
        )
        .expect("client")
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.nodes[i].id)))
            .unwrap_or_default()
    }

    pub fn write_config(&self, yaml: &str) {
        std::fs::write(&self.config, yaml).expect("write config");
    }

    pub async fn status(&self, i: usize) -> Option<StatusReply> {
        let call = async {
            let mut c = VssClient::connect(self.url(i)).await.ok()?;
            c.status(StatusRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        };
        tokio::time::timeout(Duration::from_secs(2), call)
            .await
            .ok()
            .flatten()
    }

    pub async fn table(&self, i: usize) -> Option<RoutingTable> {
        self.status(i).await?.routing
    }

    pub async fn slot_calls(&self, i: usize, slot: u32) -> u64 {
        self.status(i)
            .await
            .and_then(|s| s.slots.into_iter().find(|x| x.id == slot))
            .map_or(0, |s| s.calls)
    }

    pub async fn metrics(&self, i: usize) -> String {
        let url = format!("127.0.0.1:{}", self.nodes[i].http);
        http_get(&url, "/metrics").await.unwrap_or_default()
    }

    /// Waits until every instance in `which` holds the same table and it
    /// satisfies `ok`; returns it.
    pub async fn wait_for_table(
        &self,
        which: &[usize],
        within: Duration,
        ok: impl Fn(&RoutingTable) -> bool,
    ) -> Result<RoutingTable, String> {
        let deadline = Instant::now() + within;
        let mut last = Vec::new();
        loop {
            last.clear();
            for i in which {
                last.push(self.table(*i).await);
            }
            if let Some(Some(first)) = last.first()
                && last.iter().all(|t| t.as_ref() == Some(first))
                && ok(first)
            {
                return Ok(first.clone());
            }
            if Instant::now() > deadline {
                let mut report = format!("tables after {within:?}: {last:#?}");
                for i in which {
                    let log = self.log(*i);
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    report.push_str(&format!(
                        "\n--- {} (last {} lines of its log, newest last):\n",
                        self.nodes[*i].id,
                        tail.len()
                    ));
                    for line in tail.iter().rev() {
                        report.push_str(line);
                        report.push('\n');
                    }
                }
                return Err(report);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `which` agree on a table that routes every slot.
    pub async fn settled(&self, which: &[usize], within: Duration) -> Result<RoutingTable, String> {
        let members = which.len();
        let slots = std::fs::read_to_string(&self.config)
            .map(|yaml| yaml.matches("- id:").count())
            .unwrap_or(6);
        self.wait_for_table(which, within, |t| {
            t.epoch >= 1 && t.members.len() == members && t.routes.len() == slots
        })
        .await
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// A minimal HTTP/1.1 GET on loopback.
pub async fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body)
}

/// The value of a metric line that starts with `name` (first match).
pub fn metric_value(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Sends `bytes` as the message of a unary gRPC call to `path`, without
/// any protobuf encoding: what a confused or hostile peer would send.
pub async fn send_raw(url: &str, path: &'static str, bytes: Vec<u8>) -> Result<Vec<u8>, Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| Status::unavailable(e.to_string()))?
        .connect()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(bytes), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// A TCP forwarder on loopback that the test can cut and heal: a real
/// network partition between two instances, one direction each.
pub struct Proxy {
    addr: String,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards connections to `target` until dropped.
    pub async fn start(target: String) -> std::io::Result<Self> {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cuts, _) = tokio::sync::watch::channel(0u64);
        let (flag, cut_rx) = (open.clone(), cuts.subscribe());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    continue;
                }
                let (target, mut cut) = (target.clone(), cut_rx.clone());
                cut.mark_unchanged();
                conns.spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Self {
            addr,
            open,
            cuts,
            task,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    pub fn heal(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
