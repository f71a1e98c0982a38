//! `vss dev`: a local VSS instance in the foreground, with the example
//! slot configuration unless told otherwise.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use vss_config::SlotsConfig;
use vss_runtime::telemetry::{self, LogFormat};
use vss_runtime::{Runtime, RuntimeOptions, WasmLimits};

/// `examples/slots.yaml`, built in so `vss dev` works from anywhere.
const EXAMPLE_CONFIG: &str = include_str!("../../../examples/slots.yaml");

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Slot configuration file; default: the built-in copy of examples/slots.yaml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// gRPC address.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:7701")]
    http_listen: SocketAddr,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Text);
    let (config, source) = match &args.config {
        Some(path) => (vss_config::load_file(path)?, path.display().to_string()),
        None => (
            SlotsConfig::from_yaml(EXAMPLE_CONFIG)?.validate()?,
            "built-in examples/slots.yaml".to_string(),
        ),
    };
    let options = RuntimeOptions {
        instance_id: "vss-0".into(),
        listen: args.listen,
        http_listen: Some(args.http_listen),
        wasm_limits: WasmLimits::default(),
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::bind(options, &config).await?;
    println!(
        "VSS dev instance vss-0 running {} slots from {source}",
        config.len()
    );
    println!("  gRPC     {}", runtime.grpc_addr());
    if let Some(http) = runtime.http_addr() {
        println!("  metrics  http://{http}/metrics");
    }
    println!("Try: vss acquire 0    (Ctrl-C stops)");
    vss_runtime::signal::run_until_signal(runtime, Duration::from_secs(5)).await
}
