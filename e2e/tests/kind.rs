//! The kind end-to-end scenarios, in order, against the cluster named by
//! `VSS_E2E_KUBECONFIG` (prepared by `e2e/run.sh`). Without it, prints a
//! SKIPPED banner and counts every scenario as skipped.
//!
//! Run: `VSS_E2E_KUBECONFIG=... cargo test -p vss-e2e --test kind [-- NAME]`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;
use vss_client::{Acquire, Client};
use vss_e2e::kubectl::{
    condition_status, int_at, lease_holder, name_of, pod_is_ready, restart_count, str_at,
};
use vss_e2e::runner::{self, Scenario, ScenarioFuture};
use vss_e2e::scenarios::{self, selector_of};
use vss_e2e::{E2eEnv, Kubectl, PortForward, wait};

/// The runtime's gRPC port (client API).
const GRPC_PORT: u16 = 7700;
/// Slots of examples/vsscluster-seed.yaml (the default cluster under test)
/// the scenarios use: a token bucket of 200 refilled by 100 per second, and
/// a multicast signal slot.
const LIMITER_SLOT: u32 = 0;
const MULTICAST_SLOT: u32 = 3;
/// Not in the example; the config-change scenario adds it.
const ADDED_SLOT: u32 = 42;
const POLL: Duration = Duration::from_secs(2);

/// Shared by the scenarios: where the cluster is and how to reach it.
struct Ctx {
    kubectl: Kubectl,
    operator: Kubectl,
    cluster: String,
}

impl Ctx {
    fn selector(&self) -> String {
        selector_of(&self.cluster)
    }

    fn lease_name(&self) -> String {
        format!("{}-leader", self.cluster)
    }

    async fn vsscluster(&self) -> Result<Value> {
        self.kubectl.get("vsscluster", &self.cluster).await
    }

    async fn pods(&self) -> Result<Vec<Value>> {
        self.kubectl.list("pods", Some(&self.selector())).await
    }

    /// One port-forward per pod, in pod-name order.
    async fn forward_all(&self) -> Result<Vec<PortForward>> {
        let mut names: Vec<String> = self
            .pods()
            .await?
            .iter()
            .map(|p| name_of(p).to_string())
            .collect();
        names.sort();
        ensure!(!names.is_empty(), "no pods match {}", self.selector());
        let mut forwards = Vec::with_capacity(names.len());
        for name in &names {
            forwards.push(PortForward::start(&self.kubectl, name, GRPC_PORT).await?);
        }
        Ok(forwards)
    }
}

fn client_of(forwards: &[PortForward]) -> Result<Client> {
    let endpoints: Vec<&str> = forwards.iter().map(|f| f.endpoint.as_str()).collect();
    Ok(Client::new(&endpoints)?)
}

/// Every VssCluster applied from examples/ (all of the namespace) gets all
/// its pods Running and Ready, and its status agrees (readyInstances,
/// Ready=True).
async fn pods_become_ready(ctx: &Ctx) -> Result<()> {
    let clusters = ctx.kubectl.list("vssclusters", None).await?;
    let names: Vec<String> = clusters.iter().map(|c| name_of(c).to_string()).collect();
    ensure!(
        names.contains(&ctx.cluster),
        "VssCluster {} not found in {} (found {names:?})",
        ctx.cluster,
        ctx.kubectl.namespace()
    );
    for name in &names {
        let what = format!("VssCluster {name} and its pods to be ready");
        wait::until(&what, Duration::from_secs(300), POLL, || {
            cluster_is_ready(ctx, name)
        })
        .await?;
        println!("  {name}: ready");
    }
    Ok(())
}

async fn cluster_is_ready(ctx: &Ctx, name: &str) -> Result<Option<()>> {
    let vc = ctx.kubectl.get("vsscluster", name).await?;
    let want = usize::try_from(int_at(&vc, "/spec/instances").unwrap_or(3))
        .context("spec.instances is negative")?;
    let pods = ctx.kubectl.list("pods", Some(&selector_of(name))).await?;
    let ready = pods.iter().filter(|p| pod_is_ready(p)).count();
    if ready != want || pods.len() != want {
        bail!("{ready} of {want} pods ready ({} exist)", pods.len());
    }
    let status_ready = int_at(&vc, "/status/readyInstances").unwrap_or(0);
    if usize::try_from(status_ready).ok() != Some(want) {
        bail!("status.readyInstances is {status_ready}, want {want}");
    }
    match condition_status(&vc, "Ready") {
        Some("True") => Ok(Some(())),
        other => bail!("condition Ready is {other:?}"),
    }
}

/// The operator holds its own Lease; the runtime pods elect a leader
/// through `<cluster>-leader`, and the VssCluster status and every pod's
/// routing table name the same holder.
async fn leader_is_elected_through_the_lease(ctx: &Ctx) -> Result<()> {
    let op_lease = ctx.operator.get("lease", "vss-operator").await?;
    let op_holder =
        lease_holder(&op_lease).context("the operator Lease vss-operator has no holder")?;
    println!("  operator leader: {op_holder}");

    let pods: Vec<String> = ctx
        .pods()
        .await?
        .iter()
        .map(|p| name_of(p).to_string())
        .collect();
    let lease = ctx.lease_name();
    let holder = wait::until(
        "the runtime Lease to have a holder",
        Duration::from_secs(120),
        POLL,
        || async {
            let Some(l) = ctx.kubectl.get_opt("lease", &lease).await? else {
                bail!("Lease {lease} does not exist yet");
            };
            match lease_holder(&l) {
                Some(h) if pods.iter().any(|p| p == h) => Ok(Some(h.to_string())),
                Some(h) => bail!("Lease {lease} is held by {h}, not one of the pods {pods:?}"),
                None => bail!("Lease {lease} is vacant"),
            }
        },
    )
    .await?;
    println!("  runtime leader (Lease {lease}): {holder}");

    wait::until(
        "status.leader to name the Lease holder",
        Duration::from_secs(60),
        POLL,
        || async {
            let vc = ctx.vsscluster().await?;
            let leader = str_at(&vc, "/status/leader");
            if leader == holder {
                Ok(Some(()))
            } else {
                bail!("status.leader is {leader:?}, Lease holder is {holder}")
            }
        },
    )
    .await?;

    let forwards = ctx.forward_all().await?;
    wait::until(
        "every pod's routing table to name the leader",
        Duration::from_secs(60),
        POLL,
        || async {
            for f in &forwards {
                let status = scenarios::status_of(&f.endpoint)
                    .await
                    .with_context(|| format!("status of {}", f.pod))?;
                let leader = status.routing.as_ref().map_or("", |r| r.leader.as_str());
                if leader != holder {
                    bail!(
                        "{} routes with leader {leader:?}, Lease holder is {holder}",
                        f.pod
                    );
                }
            }
            Ok(Some(()))
        },
    )
    .await
}

/// A limiter answers, and a multicast message reaches a registered
/// subscriber, through port-forwards to every pod.
async fn acquire_and_publish_through_port_forward(ctx: &Ctx) -> Result<()> {
    let forwards = ctx.forward_all().await?;
    let client = client_of(&forwards)?;
    let grant = client.acquire(LIMITER_SLOT, Acquire::default()).await?;
    ensure!(
        grant.granted >= 1,
        "slot {LIMITER_SLOT} granted nothing: {grant:?}"
    );

    let listener_id = "e2e-listener";
    let listener = client_of(&forwards)?;
    let mut subscription = listener.subscribe(listener_id, &[]).await?;
    listener.register(MULTICAST_SLOT, listener_id).await?;
    // Event streams open asynchronously on each pod and membership spreads
    // from the slot's owner; give both a moment so the publish below has
    // someone to deliver to.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let message = format!("e2e-{}", std::process::id());
    let published = client
        .publish(MULTICAST_SLOT, message.as_bytes(), "e2e-publisher")
        .await?;
    ensure!(
        published.delivered >= 1,
        "multicast delivered to nobody: {published:?}"
    );

    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(delivery) = subscription.next().await {
            delivery.ack().await?;
            if delivery.payload == message.as_bytes() {
                return Ok(delivery.message_id);
            }
        }
        bail!("the event streams ended before the message arrived")
    })
    .await
    .context("the multicast message did not reach the subscriber in 10 s")??;
    ensure!(
        got == published.message_id,
        "received message id {got}, published {}",
        published.message_id
    );
    listener.deregister(MULTICAST_SLOT, listener_id).await?;
    subscription.close().await;
    Ok(())
}

/// Pod names mapped to (uid, restarts).
async fn pod_identities(ctx: &Ctx) -> Result<BTreeMap<String, (String, i64)>> {
    Ok(ctx
        .pods()
        .await?
        .iter()
        .map(|p| {
            (
                name_of(p).to_string(),
                (str_at(p, "/metadata/uid").to_string(), restart_count(p)),
            )
        })
        .collect())
}

/// Adding a slot to the VssCluster reaches every pod (config generation
/// rises, the slot answers) while no pod is replaced or restarted.
async fn config_change_is_pushed_without_restarts(ctx: &Ctx) -> Result<()> {
    let forwards = ctx.forward_all().await?;
    let pods: Vec<(String, String)> = forwards
        .iter()
        .map(|f| (f.pod.clone(), f.endpoint.clone()))
        .collect();
    scenarios::slot_change_is_pushed_without_restarts(
        &ctx.kubectl,
        &ctx.cluster,
        &pods,
        ADDED_SLOT,
        Duration::from_secs(120),
        || pod_identities(ctx),
    )
    .await
}

/// Deleting the leader pod while a client keeps calling: no call fails,
/// the StatefulSet brings the pod back, and it becomes ready again.
async fn pod_deletion_fails_no_client_calls(ctx: &Ctx) -> Result<()> {
    let forwards = ctx.forward_all().await?;
    let client = client_of(&forwards)?;
    let lease = ctx.kubectl.get("lease", &ctx.lease_name()).await?;
    let victim = lease_holder(&lease)
        .context("the runtime Lease has no holder")?
        .to_string();
    let old_uid = str_at(&ctx.kubectl.get("pod", &victim).await?, "/metadata/uid").to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let caller = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let (mut ok, mut failures) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                // 20 calls/s stay under slot 0's 100/s refill, so grants
                // stay positive; a refusal (granted 0) would still be an
                // answer, not a failure.
                match client.acquire(LIMITER_SLOT, Acquire::default()).await {
                    Ok(_) => ok += 1,
                    Err(e) => failures.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (ok, failures)
        }
    });

    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("  deleting pod {victim} (the leader)");
    let deleted = ctx
        .kubectl
        .run(&["delete", "pod", &victim, "--wait=false"])
        .await;
    let back = match deleted {
        Ok(_) => {
            wait::until(
                "the deleted pod to come back ready",
                Duration::from_secs(180),
                POLL,
                || async {
                    let Some(pod) = ctx.kubectl.get_opt("pod", &victim).await? else {
                        bail!("{victim} not recreated yet");
                    };
                    let uid = str_at(&pod, "/metadata/uid");
                    if uid != old_uid && pod_is_ready(&pod) {
                        Ok(Some(()))
                    } else {
                        bail!("{victim} not ready yet")
                    }
                },
            )
            .await
        }
        Err(e) => Err(e),
    };
    // Keep calling a little while after the pod is back: the routing table
    // changes again when it rejoins.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failures) = caller.await.context("the calling task panicked")?;
    back?;
    println!("  {ok} calls answered, {} failed", failures.len());
    ensure!(
        failures.is_empty(),
        "{} of {} client calls failed while {victim} was deleted; first: {:?}",
        failures.len(),
        ok + failures.len() as u64,
        failures.iter().take(3).collect::<Vec<_>>()
    );
    ensure!(ok > 0, "no call was made");
    drop(forwards);

    wait::until(
        "a leader to hold the Lease again",
        Duration::from_secs(60),
        POLL,
        || async {
            let lease = ctx.kubectl.get("lease", &ctx.lease_name()).await?;
            Ok(lease_holder(&lease).map(drop))
        },
    )
    .await
}

/// Deleting the VssCluster removes everything it owns, its pods and the
/// runtime Lease.
async fn vsscluster_deletion_cleans_up(ctx: &Ctx) -> Result<()> {
    scenarios::deletion_leaves_nothing_behind(
        &ctx.kubectl,
        &ctx.cluster,
        Duration::from_secs(180),
        POLL,
    )
    .await
}

/// Boxes an `async fn(&Ctx)` into a [`Scenario`].
macro_rules! scenario {
    ($f:ident) => {{
        fn boxed(ctx: &Ctx) -> ScenarioFuture<'_> {
            Box::pin($f(ctx))
        }
        Scenario {
            name: stringify!($f),
            run: boxed,
        }
    }};
}

fn scenarios() -> Vec<Scenario<Ctx>> {
    vec![
        scenario!(pods_become_ready),
        scenario!(leader_is_elected_through_the_lease),
        scenario!(acquire_and_publish_through_port_forward),
        scenario!(config_change_is_pushed_without_restarts),
        scenario!(pod_deletion_fails_no_client_calls),
        // Last: it deletes the cluster the others use.
        scenario!(vsscluster_deletion_cleans_up),
    ]
}

fn main() -> ExitCode {
    let scenarios = scenarios();
    let Some(env) = E2eEnv::from_env() else {
        let banner = runner::skip_banner(&scenarios, vss_e2e::env::KUBECONFIG_VAR);
        // Both streams: cargo shows stderr even when it hides test stdout.
        eprintln!("{banner}");
        println!("{banner}");
        let tally = runner::Tally {
            skipped: scenarios.len(),
            ..Default::default()
        };
        println!("{}", tally.line());
        return ExitCode::SUCCESS;
    };
    let filters = runner::filters(std::env::args());
    let ctx = Ctx {
        kubectl: Kubectl::new(&env.kubeconfig, &env.namespace),
        operator: Kubectl::new(&env.kubeconfig, &env.operator_namespace),
        cluster: env.cluster.clone(),
    };
    println!(
        "kind e2e: VssCluster {}/{} (kubeconfig {})",
        ctx.kubectl.namespace(),
        ctx.cluster,
        env.kubeconfig.display()
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tally = runtime.block_on(runner::run_all(&ctx, &scenarios, &filters));
    println!("{}", tally.line());
    if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
