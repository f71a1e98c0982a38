//! `vss`: the command line for VSS.
//!
//! Talks to a cluster through `vss-client` (acquire, call, status) or runs a
//! local runtime in the foreground (`vss dev`). This file only parses,
//! calls and prints; `-o json` prints one JSON object per result.

mod dev;
mod import;
mod output;
mod scaffold;
mod top;

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use output::Format;
use vss_client::{Acquire, Client};

#[derive(Debug, Parser)]
#[command(
    name = "vss",
    version,
    about = "Rate limits and signals from a VSS cluster",
    after_help = "Example: vss -e 127.0.0.1:7700,127.0.0.1:7710,127.0.0.1:7720 acquire 0"
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
    #[command(flatten)]
    security: vss_client::SecurityArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text", global = true)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Take tokens from a limiter slot.
    #[command(after_help = "Examples: vss acquire 0
          vss acquire 1 --key alice --tokens 3
          vss -o json acquire 0 --repeat 250")]
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
    #[command(after_help = "Example: vss call 40 hit user-7")]
    Call {
        slot: u32,
        /// Operation name.
        op: String,
        /// Payload, sent as UTF-8 bytes.
        payload: Option<String>,
    },
    /// Show what each instance runs: leader, routing epoch, each slot's
    /// owner and standby, peers and their round-trip times.
    #[command(after_help = "Example: vss -e 127.0.0.1:7700,127.0.0.1:7710,127.0.0.1:7720 status")]
    Status,
    /// Publish a message (at most 36 bytes) on a signal slot.
    /// A live view of the cluster: instances, leader and epoch, each slot's
    /// owner, calls, errors and deliveries per second, peers' round trips.
    /// Full screen on a terminal (q quits), plain text otherwise.
    #[command(after_help = "Examples: vss top
          vss top -n 3 --interval 2s > top.log")]
    Top {
        /// Time between refreshes, e.g. 500ms, 2s.
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: std::time::Duration,
        /// Stop after this many refreshes.
        #[arg(long, short = 'n')]
        count: Option<u64>,
    },
    #[command(after_help = "Example: vss publish 10 hello")]
    Publish {
        slot: u32,
        message: String,
        /// Publisher's client id (a broadcast skips it).
        #[arg(long, default_value = "")]
        client_id: String,
    },
    /// Print events as they arrive (one line each) and acknowledge them.
    #[command(after_help = "Example: vss subscribe --slot 10 -n 5")]
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
    #[command(after_help = "Example: vss register 11 --client-id worker-1")]
    Register {
        slot: u32,
        #[arg(long)]
        client_id: String,
    },
    /// Leave a multicast or random slot.
    #[command(after_help = "Example: vss deregister 11 --client-id worker-1")]
    Deregister {
        slot: u32,
        #[arg(long)]
        client_id: String,
    },
    /// Join a multicast or random slot and print (and acknowledge) its deliveries.
    #[command(after_help = "Example: vss listen --register 11 --client-id worker-1")]
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
    /// Add to a counter slot.
    #[command(after_help = "Example: vss increment 20 5")]
    Increment {
        slot: u32,
        /// How much to add.
        #[arg(default_value_t = 1)]
        amount: u64,
    },
    /// Subtract from a counter slot (refused when it is grow-only).
    #[command(after_help = "Example: vss decrement 20")]
    Decrement {
        slot: u32,
        /// How much to subtract.
        #[arg(default_value_t = 1)]
        amount: u64,
    },
    /// Read a counter slot.
    #[command(after_help = "Example: vss read 20")]
    Read { slot: u32 },
    /// Write a key of a register slot.
    #[command(after_help = "Example: vss set 21 feature/checkout on")]
    Set {
        slot: u32,
        key: String,
        /// Sent as UTF-8 bytes.
        value: String,
    },
    /// Read a key of a register slot.
    #[command(after_help = "Example: vss get 21 feature/checkout")]
    Get { slot: u32, key: String },
    /// Delete a key of a register slot.
    #[command(after_help = "Example: vss delete 21 feature/checkout")]
    Delete { slot: u32, key: String },
    /// List a register slot's keys (by prefix) or a registry slot's
    /// entries (by app).
    #[command(after_help = "Examples: vss list 21 feature/
          vss list 22 checkout")]
    List {
        slot: u32,
        /// Register: key prefix. Registry: app name. Default: everything.
        filter: Option<String>,
    },
    /// Announce an address of an app in a registry slot; with --heartbeat,
    /// keep renewing it until interrupted.
    #[command(after_help = "Example: vss announce 22 checkout 10.0.0.7:8080 --ttl 10s --heartbeat")]
    Announce {
        slot: u32,
        app: String,
        address: String,
        /// Lifetime unless renewed, e.g. 500ms, 10s, 5m (default: the
        /// slot's defaultTtl).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<std::time::Duration>,
        /// Renew at a third of the TTL until Ctrl-C, then withdraw.
        #[arg(long)]
        heartbeat: bool,
    },
    /// Remove an address of an app from a registry slot.
    #[command(after_help = "Example: vss withdraw 22 checkout 10.0.0.7:8080")]
    Withdraw {
        slot: u32,
        app: String,
        address: String,
    },
    /// Print a registry slot's entries, then every change (added, renewed,
    /// expired).
    #[command(after_help = "Example: vss watch 22 checkout")]
    Watch {
        slot: u32,
        /// Only this app.
        app: Option<String>,
        /// Stop after this many changes.
        #[arg(long, short = 'n')]
        count: Option<u64>,
    },
    /// Print the ticks of a tick slot, from every instance, each number once.
    #[command(after_help = "Example: vss ticks 23 -n 10")]
    Ticks {
        slot: u32,
        /// Stop after this many ticks.
        #[arg(long, short = 'n')]
        count: Option<u64>,
    },
    /// Convert envoyproxy/ratelimit config files into VSS slots with `rls`
    /// rules (printed as YAML); what cannot be converted is listed on stderr.
    #[command(
        name = "import-ratelimit",
        after_help = "Example: vss import-ratelimit config/edge.yaml --first-slot 40 >> slots.yaml"
    )]
    ImportRatelimit {
        /// envoyproxy/ratelimit config files (one domain each).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// Id of the first slot to create; the rest follow.
        #[arg(long, default_value_t = 0)]
        first_slot: u32,
    },
    /// Run a local VSS cluster in the foreground: separate processes on
    /// loopback ports. An instance that dies is restarted on the same id
    /// and ports; Ctrl-C stops them all.
    #[command(after_help = "Examples: vss dev
          vss dev --instances 5 --config examples/slots.yaml
          vss dev --chaos")]
    Dev(dev::DevArgs),
    /// Custom slot types: start one with `vss slot new NAME`.
    #[command(subcommand, after_help = "Example: vss slot new hit-counter")]
    Slot(SlotCommand),
    /// One instance of a `vss dev` cluster (started by `vss dev`).
    #[command(hide = true)]
    Instance(dev::InstanceArgs),
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    match vss_config::parse_duration(text) {
        Some(d) if d >= std::time::Duration::from_millis(100) => Ok(d),
        _ => Err(format!(
            "`{text}`: expected a whole number and ms, s or m, at least 100ms (e.g. 1s)"
        )),
    }
}

#[derive(Debug, Subcommand)]
enum SlotCommand {
    /// Create the crate NAME/ for a new slot type: a working example (a
    /// counter per key, with tests), the SDK and its WIT, and a config that
    /// loads it. It builds and tests as it is, with no VSS checkout.
    #[command(after_help = "Example: vss slot new hit-counter && cd hit-counter && cargo test")]
    New {
        /// Crate name: letters, digits, `-` and `_`, starting with a letter.
        name: String,
        /// Folder to create it in.
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot start the async runtime: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`vss status | head -1`): it has what it
        // wanted, as when it reads to the end.
        Err(e) if stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: {}",
                vss_runtime::report::message(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

/// Whether `error` is a write to a stdout nobody reads any more.
fn stdout_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = cli.output;
    let security = cli.security.load()?;
    let command = match cli.command {
        Command::Dev(args) => return dev::run(args).await,
        Command::Instance(args) => return dev::instance(args).await,
        Command::Slot(SlotCommand::New { name, dir }) => {
            let made = scaffold::new_slot(&name, &dir)?;
            println!(
                "created {} (slot type {})\nnext: cd {} && cargo test && rustup target add wasm32-wasip2 && cargo build --release --target wasm32-wasip2 && vss dev --config slots.yaml",
                made.dir.display(),
                made.type_name,
                made.dir.display()
            );
            return Ok(());
        }
        Command::ImportRatelimit { files, first_slot } => {
            let imported = import::import(&files, first_slot)?;
            for line in &imported.skipped {
                eprintln!("not converted: {line}");
            }
            print!("{}", serde_norway::to_string(&imported.config)?);
            return Ok(());
        }
        other => other,
    };
    let client =
        Client::with_security(&cli.endpoints, vss_client::DEFAULT_CALL_TIMEOUT, &security)?;
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
                output::grant(out, slot, &grant)?;
            }
        }
        Command::Call { slot, op, payload } => {
            let reply = client
                .call(slot, &op, payload.unwrap_or_default().into_bytes())
                .await?;
            output::call(out, slot, &op, &reply)?;
        }
        Command::Top { interval, count } => top::run(&client, interval, count).await?,
        Command::Status => {
            let answers: Vec<_> = client
                .status()
                .await
                .into_iter()
                .map(|(endpoint, result)| (endpoint, result.map_err(|e| e.to_string())))
                .collect();
            output::cluster_status(out, &answers)?;
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
            output::published(out, slot, &published)?;
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
            output::membership(out, "registered", slot, &client_id)?;
        }
        Command::Deregister { slot, client_id } => {
            client.deregister(slot, &client_id).await?;
            output::membership(out, "deregistered", slot, &client_id)?;
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
            output::membership(out, "registered", register, &id)?;
            print_events(out, events, count).await?;
        }
        Command::Increment { slot, amount } => {
            output::counter(out, slot, &client.increment(slot, amount).await?)?;
        }
        Command::Decrement { slot, amount } => {
            output::counter(out, slot, &client.decrement(slot, amount).await?)?;
        }
        Command::Read { slot } => output::counter(out, slot, &client.read_counter(slot).await?)?,
        Command::Set { slot, key, value } => {
            let w = client.set(slot, &key, value.as_bytes()).await?;
            output::written(out, slot, &key, "set", &w)?;
        }
        Command::Delete { slot, key } => {
            let w = client.delete(slot, &key).await?;
            output::written(out, slot, &key, "deleted", &w)?;
        }
        Command::Get { slot, key } => output::got(out, slot, &key, &client.get(slot, &key).await?)?,
        Command::List { slot, filter } => {
            let filter = filter.unwrap_or_default();
            match client.list_keys(slot, &filter, 0).await {
                Ok(listed) => output::keys(out, slot, &listed)?,
                // The CLI does not know the slot's type; the server's
                // answer does.
                Err(e)
                    if e.code() == Some(tonic_code::FailedPrecondition)
                        && e.to_string().contains("is a registry slot") =>
                {
                    output::services(out, slot, &client.services(slot, &filter).await?)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Announce {
            slot,
            app,
            address,
            ttl,
            heartbeat,
        } => announce(out, &client, slot, &app, &address, ttl, heartbeat).await?,
        Command::Withdraw { slot, app, address } => {
            let w = client.withdraw(slot, &app, &address).await?;
            output::withdrawn(out, slot, &app, &address, &w)?;
        }
        Command::Watch { slot, app, count } => {
            let mut watch = client
                .watch_services(slot, app.as_deref().unwrap_or(""))
                .await?;
            let mut seen = 0u64;
            while count.is_none_or(|n| seen < n) {
                let Some(change) = watch.next().await else {
                    anyhow::bail!("every instance ended the watch");
                };
                output::service_change(out, slot, &change)?;
                seen += 1;
            }
        }
        Command::Ticks { slot, count } => {
            let mut ticks = client.watch_ticks(slot).await?;
            let mut seen = 0u64;
            while count.is_none_or(|n| seen < n) {
                let Some(tick) = ticks.next().await else {
                    anyhow::bail!("every instance ended the tick stream");
                };
                output::tick(out, &tick)?;
                seen += 1;
            }
        }
        Command::Dev(_)
        | Command::Instance(_)
        | Command::ImportRatelimit { .. }
        | Command::Slot(_) => {
            unreachable!("handled above")
        }
    }
    Ok(())
}

use vss_client::Code as tonic_code;

fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    match vss_config::parse_duration(text) {
        Some(d) if !d.is_zero() => Ok(d),
        Some(_) => Err("the TTL must be more than 0".into()),
        None => Err(format!(
            "`{text}` is not a duration like 500ms, 10s, 5m or 1h"
        )),
    }
}

/// Announces once, or with `heartbeat` until Ctrl-C renewing at a third of
/// the TTL (so two renewals may be lost before the entry expires), then
/// withdraws.
async fn announce(
    out: Format,
    client: &Client,
    slot: u32,
    app: &str,
    address: &str,
    ttl: Option<std::time::Duration>,
    heartbeat: bool,
) -> anyhow::Result<()> {
    let first = client.announce(slot, app, address, ttl).await?;
    output::announced(out, slot, app, address, &first)?;
    if !heartbeat {
        return Ok(());
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let lifetime = ttl.unwrap_or(std::time::Duration::from_millis(
        first.expires_ms.saturating_sub(now_ms).max(30),
    ));
    let mut every = tokio::time::interval((lifetime / 3).max(std::time::Duration::from_millis(10)));
    every.tick().await;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = every.tick() => {
                match client.announce(slot, app, address, ttl).await {
                    Ok(a) => output::announced(out, slot, app, address, &a)?,
                    Err(e) => {
                        let _ = writeln!(std::io::stderr(), "warning: renewal failed: {e}");
                    }
                }
            }
        }
    }
    let w = client.withdraw(slot, app, address).await?;
    output::withdrawn(out, slot, app, address, &w)?;
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
        output::event(out, &event)?;
        event.ack().await?;
        seen += 1;
    }
    // Let the last acknowledgements reach the instances before exiting.
    events.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    // The TLS flags are global: they must not take a verb's own names
    // (`acquire --key`).
    #[test]
    fn the_token_and_tls_flags_go_with_every_verb() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-0123456789\n").expect("write");
        let cli = Cli::try_parse_from([
            "vss".as_ref(),
            "--token-file".as_ref(),
            token.as_os_str(),
            "acquire".as_ref(),
            "1".as_ref(),
            "--key".as_ref(),
            "alice".as_ref(),
        ])
        .expect("parses");
        let settings = cli.security.load().expect("reads the token file");
        assert_eq!(settings.token.as_deref(), Some("s3cret-0123456789"));
        assert!(settings.ca_pem.is_none());
        let missing = Cli::try_parse_from(["vss", "--tls-ca", "/nonexistent/ca.pem", "status"])
            .expect("parses");
        let e = missing.security.load().expect_err("no such file");
        assert!(
            e.to_string().starts_with("--tls-ca /nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn every_verb_shows_an_example_in_its_help() {
        let cli = Cli::command();
        let mut missing = Vec::new();
        let mut verbs: Vec<_> = cli.get_subcommands().collect();
        while let Some(verb) = verbs.pop() {
            if verb.is_hide_set() {
                continue;
            }
            verbs.extend(verb.get_subcommands());
            let help = verb
                .get_after_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            let shows_example = help.starts_with("Example")
                && help.contains("vss ")
                && help.split_whitespace().any(|w| w == verb.get_name());
            if !shows_example {
                missing.push(verb.get_name().to_string());
            }
        }
        assert!(missing.is_empty(), "no example in the help of: {missing:?}");
    }
}
