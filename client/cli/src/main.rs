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
    /// Publish a message (at most 36 bytes) on a signal slot.
    Publish {
        slot: u32,
        message: String,
        /// Publisher's client id (a broadcast skips it).
        #[arg(long, default_value = "")]
        client_id: String,
    },
    /// Print events as they arrive (one line each) and acknowledge them.
    Subscribe {
        /// Broadcast slots to hear (repeatable); default: all.
        #[arg(long = "slot", short = 's')]
        slots: Vec<u32>,
        /// Stop after this many events.
        #[arg(long, short = 'n')]
        count: Option<u64>,
        /// This client's id; default: a random one.
        #[arg(long)]
        client_id: Option<String>,
    },
    /// Join a multicast or random slot.
    Register {
        slot: u32,
        #[arg(long)]
        client_id: String,
    },
    /// Leave a multicast or random slot.
    Deregister {
        slot: u32,
        #[arg(long)]
        client_id: String,
    },
    /// Join a multicast or random slot and print (and acknowledge) its deliveries.
    Listen {
        /// The slot to register on.
        #[arg(long)]
        register: u32,
        /// Stop after this many events.
        #[arg(long, short = 'n')]
        count: Option<u64>,
        /// This client's id; default: a random one.
        #[arg(long)]
        client_id: Option<String>,
    },
    /// Run a local VSS cluster in the foreground: separate processes on
    /// loopback ports (Ctrl-C stops them all).
    Dev(dev::DevArgs),
    /// One instance of a `vss dev` cluster (started by `vss dev`).
    #[command(hide = true)]
    Instance(dev::InstanceArgs),
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
    let command = match cli.command {
        Command::Dev(args) => return dev::run(args).await,
        Command::Instance(args) => return dev::instance(args).await,
        other => other,
    };
    let client = Client::new(&cli.endpoints)?;
    match command {
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
            let answers: Vec<_> = client
                .status()
                .await
                .into_iter()
                .map(|(endpoint, result)| (endpoint, result.map_err(|e| e.to_string())))
                .collect();
            output::cluster_status(out, &answers);
            let failed = answers.iter().filter(|(_, a)| a.is_err()).count();
            if failed > 0 {
                anyhow::bail!(
                    "{failed} of {} instances did not answer",
                    cli.endpoints.len()
                );
            }
        }
        Command::Publish {
            slot,
            message,
            client_id,
        } => {
            let published = client.publish(slot, message.as_bytes(), &client_id).await?;
            output::published(out, slot, &published);
        }
        Command::Subscribe {
            slots,
            count,
            client_id,
        } => {
            let id = client_id.unwrap_or_else(random_client_id);
            let events = client.subscribe(&id, &slots).await?;
            print_events(out, events, count).await?;
        }
        Command::Register { slot, client_id } => {
            client.register(slot, &client_id).await?;
            output::membership(out, "registered", slot, &client_id);
        }
        Command::Deregister { slot, client_id } => {
            client.deregister(slot, &client_id).await?;
            output::membership(out, "deregistered", slot, &client_id);
        }
        Command::Listen {
            register,
            count,
            client_id,
        } => {
            let id = client_id.unwrap_or_else(random_client_id);
            // Stream first, so no delivery goes to a client not yet listening.
            let events = client.subscribe(&id, &[]).await?;
            client.register(register, &id).await?;
            output::membership(out, "registered", register, &id);
            print_events(out, events, count).await?;
        }
        Command::Dev(_) | Command::Instance(_) => unreachable!("handled above"),
    }
    Ok(())
}

fn random_client_id() -> String {
    format!("cli-{:016x}", fastrand::u64(..))
}

/// Prints and acknowledges events until `count` or the streams end.
async fn print_events(
    out: Format,
    mut events: vss_client::Subscription,
    count: Option<u64>,
) -> anyhow::Result<()> {
    let mut seen = 0u64;
    while count.is_none_or(|n| seen < n) {
        let Some(event) = events.next().await else {
            anyhow::bail!("the event stream ended");
        };
        output::event(out, &event);
        event.ack().await?;
        seen += 1;
    }
    // Let the last acknowledgements reach the instances before exiting.
    events.close().await;
    Ok(())
}
