//! `vss`: the command line for VSS.
//!
//! Talks to a cluster through `vss-client` (acquire, call, status) or runs a
//! local runtime in the foreground (`vss dev`). This file only parses,
//! calls and prints; `-o json` prints one JSON object per result.

mod dev;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use output::Format;
use vss_client::{Acquire, Client};

#[derive(Debug, Parser)]
#[command(
    name = "vss",
    version,
    about = "Rate limits and signals from a VSS cluster"
)]
struct Cli {
    /// Instances of the cluster, comma-separated host:port.
    #[arg(
        long,
        short = 'e',
        env = "VSS_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7700",
        global = true
    )]
    endpoints: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text", global = true)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Take tokens from a limiter slot.
    Acquire {
        /// Slot id (0-99).
        slot: u32,
        /// Tokens to ask for (default: the slot's tokensPerReq).
        #[arg(long, short = 't')]
        tokens: Option<u32>,
        /// Per-caller bucket key (a user id, an IP).
        #[arg(long, short = 'k')]
        key: Option<String>,
        /// Repeat the acquire this many times, printing each result.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
    },
    /// Call an operation of a custom slot type.
    Call {
        slot: u32,
        /// Operation name.
        op: String,
        /// Payload, sent as UTF-8 bytes.
        payload: Option<String>,
    },
    /// Show what each instance runs.
    Status,
    /// Run a local VSS instance in the foreground (Ctrl-C stops it).
    Dev(dev::DevArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = cli.output;
    if let Command::Dev(args) = cli.command {
        return dev::run(args).await;
    }
    let client = Client::new(&cli.endpoints)?;
    match cli.command {
        Command::Acquire {
            slot,
            tokens,
            key,
            repeat,
        } => {
            for _ in 0..repeat {
                let grant = client
                    .acquire(
                        slot,
                        Acquire {
                            key: key.clone(),
                            tokens,
                        },
                    )
                    .await?;
                output::grant(out, slot, &grant);
            }
        }
        Command::Call { slot, op, payload } => {
            let reply = client
                .call(slot, &op, payload.unwrap_or_default().into_bytes())
                .await?;
            output::call(out, slot, &op, &reply);
        }
        Command::Status => {
            let mut failed = 0;
            for (endpoint, result) in client.status().await {
                match result {
                    Ok(status) => output::status(out, &endpoint, &status),
                    Err(e) => {
                        failed += 1;
                        eprintln!("error: {endpoint}: {e}");
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!(
                    "{failed} of {} instances did not answer",
                    cli.endpoints.len()
                );
            }
        }
        Command::Dev(_) => unreachable!("handled above"),
    }
    Ok(())
}
