//! A runtime on loopback for integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use vss_client::{Client, ClientError};
use vss_config::SlotsConfig;
use vss_runtime::{Runtime, RuntimeError, RuntimeOptions, WasmLimits};

/// A runtime on ephemeral loopback ports, stopped on drop.
pub struct TestServer {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), RuntimeError>>>,
}

impl TestServer {
    pub async fn start(yaml: &str, base: &Path) -> Result<Self, RuntimeError> {
        Self::start_with(yaml, base, |_| {}).await
    }

    /// Like [`TestServer::start`], with `set` changing the options first.
    pub async fn start_with(
        yaml: &str,
        base: &Path,
        set: impl FnOnce(&mut RuntimeOptions),
    ) -> Result<Self, RuntimeError> {
        let config = SlotsConfig::from_yaml(yaml)
            .expect("test YAML parses")
            .validate_with_base(base)
            .expect("test config is valid");
        let mut options = RuntimeOptions {
            instance_id: "test-0".into(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            http_listen: Some("127.0.0.1:0".parse().expect("addr")),
            wasm_limits: WasmLimits {
                call_deadline: Duration::from_millis(200),
                memory_bytes: 16 << 20,
                ..WasmLimits::default()
            },
            ..RuntimeOptions::default()
        };
        set(&mut options);
        let runtime = Runtime::bind(options, &config).await?;
        let grpc = runtime.grpc_addr();
        let http = runtime.http_addr().expect("http enabled");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(runtime.serve(async {
            let _ = stopped.await;
        }));
        Ok(Self {
            grpc,
            http,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn client(&self) -> Client {
        Client::new(&[self.grpc.to_string()]).expect("client")
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server drains within 10 s")
                .expect("server task")
                .expect("server stops cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub fn server_error(result: Result<impl std::fmt::Debug, ClientError>) -> (Code, String) {
    match result {
        Err(ClientError::Server { code, message, .. }) => (code, message),
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// A plain HTTP/1.1 GET; returns the status code and the whole response.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect http");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    (code, buf)
}
