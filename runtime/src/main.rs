//! `vss-runtime`: one VSS instance.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use vss_runtime::telemetry::{self, LogFormat};
use vss_runtime::{Runtime, RuntimeOptions, WasmLimits};

#[derive(Debug, Parser)]
#[command(
    name = "vss-runtime",
    version,
    about = "Runs one VSS instance: 100 slots over gRPC"
)]
struct Args {
    /// Slot configuration file (YAML).
    #[arg(long, env = "VSS_CONFIG")]
    config: PathBuf,
    /// gRPC address for clients.
    #[arg(long, env = "VSS_LISTEN", default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, env = "VSS_HTTP_LISTEN", default_value = "127.0.0.1:7701")]
    http_listen: SocketAddr,
    /// This instance's id.
    #[arg(long, env = "VSS_ID", default_value = "vss-0")]
    id: String,
    /// Longest a single call into a slot module may run, in milliseconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    wasm_call_timeout_ms: u64,
    /// Most memory one slot instance may use, in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(2..=4096))]
    slot_memory_mib: u64,
    /// How long to wait for in-flight requests after SIGTERM, in seconds.
    #[arg(long, default_value_t = 10)]
    drain_seconds: u64,
    /// Log format.
    #[arg(long, env = "VSS_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(args.log_format);
    let config = vss_config::load_file(&args.config)?;
    let options = RuntimeOptions {
        instance_id: args.id,
        listen: args.listen,
        http_listen: Some(args.http_listen),
        wasm_limits: WasmLimits {
            call_deadline: Duration::from_millis(args.wasm_call_timeout_ms),
            memory_bytes: usize::try_from(args.slot_memory_mib << 20)
                .context("--slot-memory-mib")?,
            ..WasmLimits::default()
        },
    };
    let runtime = Runtime::bind(options, &config).await?;
    vss_runtime::signal::run_until_signal(runtime, Duration::from_secs(args.drain_seconds)).await
}
