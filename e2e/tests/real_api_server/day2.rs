//! Day-2 operations under live traffic: a rolling upgrade, slot edits and
//! evictions, each while `vss-client` workers acquire from a partitioned
//! token bucket and increment a counter through every pod.
//!
//! Every scenario asserts that no call failed and checks the state
//! exactly: the bucket's period is an hour and its refill one token an
//! hour, so what is left of each key's bucket at the end of a scenario is
//! what it held at the start minus every token granted meanwhile, and the
//! counter's total is what it was plus the increments answered.

use std::collections::BTreeMap;
use std::sync::Mutex as StdMutex;

use tokio::task::JoinHandle;

use super::*;

/// The partitioned limiter: 16 partitions (`maxKeys: 100`), a bucket per
/// key of [`BUCKET`] tokens, one token an hour.
const LIMITER: u32 = 60;
const BUCKET: u64 = 1_000_000;
/// The counter every increment goes to.
const COUNTER: u32 = 61;
/// A counter that becomes a token bucket in the slot-edit scenario.
const RETYPED: u32 = 62;
/// The keys the workers acquire from, spread over the limiter's partitions.
const KEYS: [&str; 6] = ["", "alpha", "bravo", "charlie", "delta", "echo"];
const ACQUIRERS: usize = 4;
const INCREMENTERS: usize = 2;
/// Instances of the VssCluster in these scenarios.
const PODS: u32 = 3;

/// Everything granted and counted since the day-2 slots were made.
struct Ledger {
    granted: [u64; KEYS.len()],
    increments: u64,
}

static LEDGER: StdMutex<Ledger> = StdMutex::new(Ledger {
    granted: [0; KEYS.len()],
    increments: 0,
});

fn ledger() -> std::sync::MutexGuard<'static, Ledger> {
    LEDGER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn key_of(k: usize) -> Option<String> {
    Some(KEYS[k].to_string()).filter(|k| !k.is_empty())
}

/// One token of the limiter's bucket for `KEYS[k]`.
async fn take_one(client: &Client, k: usize) -> Result<vss_client::Grant, vss_client::ClientError> {
    let opts = Acquire {
        key: key_of(k),
        tokens: None,
    };
    client.acquire(LIMITER, opts).await
}

/// What the workers did.
#[derive(Debug, Default)]
struct Tally {
    calls: u64,
    failed: Vec<String>,
    granted: [u64; KEYS.len()],
    increments: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.calls += other.calls;
        self.failed.extend(other.failed);
        for (a, b) in self.granted.iter_mut().zip(other.granted) {
            *a += b;
        }
        self.increments += other.increments;
    }
}

/// Workers calling until stopped.
struct Traffic {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<Tally>>,
    started: Instant,
}

/// The client port of every pod.
async fn endpoints(s: &Suite) -> Result<Vec<String>> {
    let pods = s.pods.lock().await;
    (0..PODS)
        .map(|i| {
            Ok(format!(
                "{}:{}",
                pods.ip_of(&format!("{CLUSTER}-{i}"))?,
                vss_e2e::local_pods::GRPC_PORT
            ))
        })
        .collect()
}

async fn client(s: &Suite) -> Result<Client> {
    Ok(Client::with_timeout(
        &endpoints(s).await?,
        Duration::from_secs(2),
    )?)
}

impl Traffic {
    async fn start(s: &Suite) -> Result<Self> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for worker in 0..ACQUIRERS + INCREMENTERS {
            let client = client(s).await?;
            let stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut n = worker;
                while !*stopped.borrow() {
                    n += 1;
                    tally.calls += 1;
                    if worker < ACQUIRERS {
                        let k = n % KEYS.len();
                        match take_one(&client, k).await {
                            Ok(g) => tally.granted[k] += u64::from(g.granted),
                            Err(e) => tally.failed.push(format!("acquire: {e}")),
                        }
                    } else {
                        match client.increment(COUNTER, 1).await {
                            Ok(_) => tally.increments += 1,
                            Err(e) => tally.failed.push(format!("increment: {e}")),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                tally
            }));
        }
        Ok(Self {
            stop,
            tasks,
            started: Instant::now(),
        })
    }

    /// Stops the workers, books what they did in the ledger and fails if
    /// any call failed.
    async fn finish(self, what: &str) -> Result<Tally> {
        let _ = self.stop.send(true);
        let mut tally = Tally::default();
        for task in self.tasks {
            tally.add(task.await.context("a traffic worker panicked")?);
        }
        {
            let mut l = ledger();
            for (a, b) in l.granted.iter_mut().zip(tally.granted) {
                *a += b;
            }
            l.increments += tally.increments;
        }
        println!(
            "  {what}: {} calls in {:.1?} ({} tokens granted, {} increments), {} failed",
            tally.calls,
            self.started.elapsed(),
            tally.granted.iter().sum::<u64>(),
            tally.increments,
            tally.failed.len()
        );
        ensure!(
            tally.failed.is_empty(),
            "{what}: {} of {} calls failed, first: {}",
            tally.failed.len(),
            tally.calls,
            tally.failed[0]
        );
        ensure!(
            tally.granted.iter().all(|g| *g > 0) && tally.increments > 0,
            "{what}: the traffic did not reach every key and the counter: {tally:?}"
        );
        Ok(tally)
    }
}

/// Each key's bucket holds exactly its size minus every token granted from
/// it, and the counter's total is every increment answered.
///
/// Tokens an instance leased from a bucket's owner and did not use go back
/// to the bucket within a lease's life, so the check acquires (and books)
/// one token per key until the rest is exact, for at most 20 s: a lost
/// decision would leave the rest above the exact figure for good.
async fn state_is_exact(s: &Suite, what: &str) -> Result<()> {
    let client = client(s).await?.coalescing(false);
    for (k, key) in KEYS.iter().enumerate() {
        let last = wait::until(
            &format!("{what}: key {key:?} of slot {LIMITER} to hold exactly its size minus every grant"),
            Duration::from_secs(20),
            POLL,
            || async {
                let g = take_one(&client, k).await?;
                let granted = {
                    let mut l = ledger();
                    l.granted[k] += u64::from(g.granted);
                    l.granted[k]
                };
                let exact = BUCKET - granted;
                ensure!(
                    g.remaining <= exact,
                    "key {key:?}: {} left, but {granted} of {BUCKET} were granted: decisions were lost",
                    g.remaining
                );
                Ok((g.remaining == exact).then_some((granted, g.remaining)))
            },
        )
        .await?;
        println!("  {what}: key {key:?}: {} granted, {} left", last.0, last.1);
    }
    let total = client.read_counter(COUNTER).await?;
    let increments = ledger().increments;
    println!(
        "  {what}: counter {COUNTER} at {} after {increments} increments",
        total.value
    );
    ensure!(
        u64::try_from(total.value).ok() == Some(increments),
        "{what}: counter {COUNTER} is at {}, {increments} increments were answered",
        total.value
    );
    Ok(())
}

/// The day-2 slots as the VssCluster spec holds them.
fn day2_slots(refresh_rate: u32, grow_only: bool, retyped: bool) -> Vec<Value> {
    let retyped = if retyped {
        serde_json::json!({"id": RETYPED, "type": "token-bucket", "bucketSize": 100,
            "period": "hour", "refreshRate": 1})
    } else {
        serde_json::json!({"id": RETYPED, "type": "counter"})
    };
    vec![
        serde_json::json!({"id": LIMITER, "type": "token-bucket", "bucketSize": BUCKET,
            "period": "hour", "refreshRate": refresh_rate, "maxKeys": 100}),
        serde_json::json!({"id": COUNTER, "type": "counter", "growOnly": grow_only}),
        retyped,
    ]
}

/// Sets the day-2 slots in the VssCluster's spec (the others stay) and
/// waits until every pod runs the new generation.
async fn set_slots(s: &Suite, slots: Vec<Value>, pods: usize) -> Result<i64> {
    let c = s.cluster().await?;
    let ids: Vec<i64> = slots.iter().filter_map(|v| v["id"].as_i64()).collect();
    let mut all: Vec<Value> = c
        .pointer("/spec/slots")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| !v["id"].as_i64().is_some_and(|id| ids.contains(&id)))
        .collect();
    all.extend(slots);
    patch_cluster(s, &serde_json::json!({"spec": {"slots": all}})).await?;
    wait::until(
        "every pod at the new generation",
        Duration::from_secs(60),
        POLL,
        || async { Ok(scenarios::status_has_generation(&s.cluster().await?, pods)) },
    )
    .await
}

async fn patch_cluster(s: &Suite, patch: &Value) -> Result<()> {
    s.kubectl(NS)
        .run(&[
            "patch",
            "vsscluster",
            CLUSTER,
            "--type=merge",
            "-p",
            &patch.to_string(),
        ])
        .await?;
    Ok(())
}

/// The day-2 slots exist and the ledger starts from their fresh buckets.
async fn ensure_day2_slots(s: &Suite) -> Result<()> {
    let c = s.cluster().await?;
    let has = c
        .pointer("/spec/slots")
        .and_then(Value::as_array)
        .is_some_and(|slots| {
            slots
                .iter()
                .any(|v| v["id"].as_i64() == Some(LIMITER.into()))
        });
    if !has {
        set_slots(s, day2_slots(1, false, false), 3).await?;
    }
    // Each scenario starts its ledger from what the buckets and the counter
    // hold now, so that one scenario's loss is not counted in the next.
    let client = client(s).await?.coalescing(false);
    for (k, _) in KEYS.iter().enumerate() {
        let g = take_one(&client, k).await?;
        ledger().granted[k] = BUCKET - g.remaining;
    }
    let total = client.read_counter(COUNTER).await?.value;
    ledger().increments = u64::try_from(total).context("a negative counter")?;
    Ok(())
}

/// The pods of the cluster, by name: uid and Ready.
async fn pods_now(s: &Suite) -> Result<BTreeMap<String, (String, bool)>> {
    Ok(s.kubectl(NS)
        .list("pods", Some(&scenarios::selector_of(CLUSTER)))
        .await?
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .map(|p| {
            (
                name_of(p).to_string(),
                (
                    str_at(p, "/metadata/uid").to_string(),
                    vss_e2e::kubectl::pod_is_ready(p),
                ),
            )
        })
        .collect())
}

/// The StatefulSet runs `replicas` pods of its newest revision, all Ready,
/// and the VssCluster says so.
async fn rolled_out(s: &Suite, replicas: i64) -> Result<Option<()>> {
    let sts = s.kubectl(NS).get("statefulset", CLUSTER).await?;
    let done = int_at(&sts, "/status/observedGeneration") == int_at(&sts, "/metadata/generation")
        && str_at(&sts, "/status/currentRevision") == str_at(&sts, "/status/updateRevision")
        && int_at(&sts, "/status/replicas") == Some(replicas)
        && int_at(&sts, "/status/updatedReplicas") == Some(replicas)
        && int_at(&sts, "/status/readyReplicas") == Some(replicas);
    if !done {
        return Ok(None);
    }
    let c = s.cluster().await?;
    Ok((condition_status(&c, "Ready") == Some("True")
        && int_at(&c, "/status/readyInstances") == Some(replicas))
    .then_some(()))
}

// ---------------------------------------------------------------- scenarios

/// `spec.image` of the 3-instance cluster changes while the workers call:
/// the real StatefulSet controller replaces one pod at a time, highest
/// ordinal first, each once the one before is Ready, and the stand-in stops
/// each as the kubelet would (SIGTERM, its grace, then SIGKILL). No call
/// fails; the buckets go on from what they held and the counter is exact.
pub(super) async fn day2_rolling_upgrade_loses_nothing(s: &Suite) -> Result<()> {
    ensure_day2_slots(s).await?;
    let before = pods_now(s).await?;
    ensure!(before.len() == 3, "pods before the upgrade: {before:?}");
    let traffic = Traffic::start(s).await?;
    // Part of each bucket is drained before the rollout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    patch_cluster(
        s,
        &serde_json::json!({"spec": {"image": "vss-runtime:day2"}}),
    )
    .await?;
    // The order in which pods were replaced (a new uid seen), and how many
    // were missing or not Ready at once, at most, at each look.
    let seen: StdMutex<(Vec<String>, usize)> = StdMutex::new((Vec::new(), 0));
    let rolled = wait::until(
        "the rolling upgrade to finish",
        Duration::from_secs(420),
        POLL,
        || async {
            let now = pods_now(s).await?;
            let replaced = {
                let mut seen = seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let down = (0..3)
                    .filter(|i| {
                        !now.get(&format!("{CLUSTER}-{i}"))
                            .is_some_and(|(_, ready)| *ready)
                    })
                    .count();
                seen.1 = seen.1.max(down);
                for (name, (uid, _)) in &now {
                    if before.get(name).is_some_and(|(old, _)| old != uid) && !seen.0.contains(name)
                    {
                        println!("  {name} replaced");
                        seen.0.push(name.clone());
                    }
                }
                seen.0.len()
            };
            if replaced < 3 {
                return Ok(None);
            }
            rolled_out(s, 3).await
        },
    )
    .await;
    // The traffic stops either way; a failed rollout is reported first.
    let tally = traffic.finish("rolling upgrade").await;
    rolled?;
    tally?;
    let (order, most_down) = seen
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    println!("  replaced in order {order:?}; at most {most_down} pod(s) down at a look");
    ensure!(
        order == ["demo-2", "demo-1", "demo-0"].map(String::from),
        "pods replaced in order {order:?}, not highest ordinal first"
    );
    ensure!(most_down <= 1, "{most_down} pods were down at once");
    let sts = s.kubectl(NS).get("statefulset", CLUSTER).await?;
    ensure!(
        str_at(&sts, "/spec/template/spec/containers/0/image") == "vss-runtime:day2",
        "the StatefulSet's image is {}",
        str_at(&sts, "/spec/template/spec/containers/0/image")
    );
    state_is_exact(s, "after the rolling upgrade").await
}

/// While the workers call, the limiter's rate and the counter's option
/// change in the VssCluster spec (both keep their state) and a counter
/// becomes a token bucket (it starts fresh, and the operator says so with
/// a `SlotStartsFresh` Warning event naming it).
pub(super) async fn day2_slot_edit_keeps_state_where_it_can(s: &Suite) -> Result<()> {
    ensure_day2_slots(s).await?;
    let k = s.kubectl(NS);
    let setup = client(s).await?;
    let before = setup.read_counter(RETYPED).await?.value;
    for _ in 0..7 {
        setup.increment(RETYPED, 1).await?;
    }
    ensure!(
        setup.read_counter(RETYPED).await?.value == before + 7,
        "counter {RETYPED} did not count"
    );
    let events_before = fresh_events(&k).await?;
    let traffic = Traffic::start(s).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcome = async {
        let generation = set_slots(s, day2_slots(2, true, true), 3).await?;
        println!("  every pod runs generation {generation}");
        let events = wait::until(
            &format!("a SlotStartsFresh event naming slot {RETYPED}"),
            Duration::from_secs(30),
            POLL,
            || async {
                let now = fresh_events(&k).await?;
                let new: Vec<String> = now
                    .into_iter()
                    .filter(|e| !events_before.contains(e))
                    .collect();
                Ok(new
                    .iter()
                    .any(|m| m.contains(&format!("slot {RETYPED} ")))
                    .then_some(new))
            },
        )
        .await?;
        println!("  events: {events:?}");
        for slot in [LIMITER, COUNTER] {
            ensure!(
                !events.iter().any(|m| m.contains(&format!("slot {slot} "))),
                "slot {slot} was said to start fresh: {events:?}"
            );
        }
        anyhow::Ok(())
    }
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tally = traffic.finish("slot edit").await;
    outcome?;
    tally?;
    // The retyped slot is a fresh token bucket of 100.
    let g = setup.acquire(RETYPED, Acquire::default()).await?;
    println!(
        "  slot {RETYPED} as a token bucket: granted {}, {} left",
        g.granted, g.remaining
    );
    ensure!(
        g.granted == 1 && g.remaining == 99,
        "slot {RETYPED} did not start fresh: {g:?}"
    );
    // The counter is grow-only now.
    let refused = setup.decrement(COUNTER, 1).await;
    ensure!(
        refused.is_err(),
        "counter {COUNTER} took a decrement after growOnly was set: {refused:?}"
    );
    state_is_exact(s, "after the slot edit").await
}

/// Messages of the cluster's `SlotStartsFresh` Warning events.
async fn fresh_events(k: &Kubectl) -> Result<Vec<String>> {
    let out = k
        .run(&[
            "get",
            "events",
            "--field-selector",
            &format!("reason=SlotStartsFresh,type=Warning,involvedObject.name={CLUSTER}"),
            "-o",
            "json",
        ])
        .await?;
    let list: Value = serde_json::from_str(&out).context("events as JSON")?;
    Ok(vss_e2e::kubectl::items(&list)
        .iter()
        .map(|e| str_at(e, "/message").to_string())
        .collect())
}

/// Asks the Eviction API to evict `pod`: Ok(true) if it was evicted,
/// Ok(false) if the API server refused it with 429 (a disruption budget),
/// an error otherwise.
async fn evict(k: &Kubectl, pod: &str) -> Result<bool> {
    let body = serde_json::json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": NS},
    });
    let path = format!("/api/v1/namespaces/{NS}/pods/{pod}/eviction");
    let out = k
        .output(
            &["create", "--raw", &path, "-f", "-"],
            Some(&body.to_string()),
        )
        .await?;
    if out.status.success() {
        return Ok(true);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains("TooManyRequests") || err.contains("429"),
        "evicting {pod}: {}",
        err.trim()
    );
    println!("  evicting {pod} refused: {}", err.trim());
    Ok(false)
}

/// Two pods evicted at once through the Eviction API, as a node drain does,
/// while the workers call: the PodDisruptionBudget lets the first go and
/// refuses the second (429) until the first is back and Ready; then the
/// second goes. No call fails and the state is exact.
pub(super) async fn day2_eviction_of_two_pods_waits_for_the_pdb(s: &Suite) -> Result<()> {
    ensure_day2_slots(s).await?;
    let k = s.kubectl(NS);
    wait::until(
        "the PodDisruptionBudget to allow one disruption",
        Duration::from_secs(60),
        POLL,
        || async {
            let pdb = k.get("poddisruptionbudget", CLUSTER).await?;
            Ok((int_at(&pdb, "/status/disruptionsAllowed") == Some(1)).then_some(()))
        },
    )
    .await?;
    let before = pods_now(s).await?;
    let traffic = Traffic::start(s).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcome = async {
        ensure!(evict(&k, "demo-1").await?, "the first eviction was refused");
        ensure!(
            !evict(&k, "demo-2").await?,
            "the second eviction was let through while demo-1 is not back"
        );
        wait::until(
            "demo-1 back and Ready",
            Duration::from_secs(180),
            POLL,
            || async {
                let now = pods_now(s).await?;
                Ok(now
                    .get("demo-1")
                    .filter(|(uid, ready)| {
                        *ready && before.get("demo-1").is_some_and(|(o, _)| o != uid)
                    })
                    .map(|_| ()))
            },
        )
        .await?;
        wait::until(
            "the PodDisruptionBudget to let demo-2 be evicted",
            Duration::from_secs(120),
            Duration::from_secs(1),
            || async {
                let evicted = evict(&k, "demo-2").await?;
                Ok(evicted.then_some(()))
            },
        )
        .await?;
        wait::until(
            "3 Ready pods again",
            Duration::from_secs(180),
            POLL,
            || async {
                let now = pods_now(s).await?;
                let replaced = now
                    .get("demo-2")
                    .is_some_and(|(uid, _)| before.get("demo-2").is_some_and(|(o, _)| o != uid));
                if !replaced {
                    return Ok(None);
                }
                rolled_out(s, 3).await
            },
        )
        .await?;
        anyhow::Ok(())
    }
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tally = traffic.finish("eviction of two pods").await;
    outcome?;
    tally?;
    state_is_exact(s, "after the evictions").await
}
