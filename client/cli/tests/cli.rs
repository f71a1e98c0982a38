//! The `vss` binary end to end: `vss dev` in the background, the other
//! commands against it over loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const VSS: &str = env!("CARGO_BIN_EXE_vss");

/// A `vss dev` process, killed (by PID, SIGKILL) if the test ends early.
struct Dev {
    child: Child,
    grpc: String,
    /// Instance id and PID, as the banner printed them.
    pids: Vec<(String, u32)>,
    /// The banner, up to the endpoints line.
    banner: Vec<String>,
    /// What `vss dev` prints after its banner, line by line. A thread reads
    /// its stdout to the end, so the pipe stays open while it runs.
    events: Receiver<String>,
}

/// First of 30 ports for one `vss dev` of this test process (3 per
/// instance, 10 apart). Below Linux's ephemeral range (32768 up), so no
/// port picked by `bind(0)` elsewhere can take them between `vss dev`
/// choosing them and its instances binding them, as happened with port 0:
/// `vss dev` picks a free port and releases it for the child to bind,
/// and the dev tests run side by side, 9 ports each.
fn dev_ports() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(
        n < 10,
        "more vss dev clusters than this test file has ports for"
    );
    let slot = u16::try_from(std::process::id() % 40).expect("below 40");
    20_000 + slot * 300 + n * 30
}

impl Dev {
    /// `vss dev` with the built-in example config.
    fn start() -> Dev {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Dev {
        let base = dev_ports();
        let mut child = Command::new(VSS)
            .arg("dev")
            .args(["--listen", &format!("127.0.0.1:{base}")])
            .args(["--http-listen", &format!("127.0.0.1:{}", base + 1)])
            .args(["--mesh-listen", &format!("127.0.0.1:{}", base + 2)])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("vss dev starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut grpc = None;
        let mut pids = Vec::new();
        let mut banner = Vec::new();
        let mut line = String::new();
        while stdout.read_line(&mut line).expect("read stdout") > 0 {
            banner.push(line.trim_end().to_string());
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [id, "pid", pid, "gRPC", ..] = words.as_slice() {
                pids.push((id.to_string(), pid.parse().expect("a PID")));
            }
            if let Some(endpoints) = line.trim().strip_prefix("endpoints") {
                grpc = Some(endpoints.trim().to_string());
                break;
            }
            line.clear();
        }
        let grpc = grpc.expect("vss dev printed its endpoints");
        let (lines, events) = std::sync::mpsc::sync_channel(1024);
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { return };
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        Dev {
            child,
            grpc,
            pids,
            banner,
            events,
        }
    }

    /// The next line `vss dev` prints that starts with `prefix`, within
    /// `limit`.
    fn wait_for_line(&self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!("no line `{prefix}...` within {limit:?} ({e}); printed: {seen:?}"),
            }
        }
    }

    /// `vss -o json status` once every instance is up and agrees on the
    /// leader and epoch, and the routing table has every slot of the
    /// example config.
    fn settled(&self, instances: usize, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let out = self.vss(&["-o", "json", "status"]);
            let doc = json_lines(&out).into_iter().next();
            let settled = doc.as_ref().is_some_and(|d| {
                let all = d["instances"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                all.len() == instances
                    && all.iter().all(|i| {
                        i["up"] == true && i["epoch"] == d["epoch"] && i["leader"] == d["leader"]
                    })
                    && d["epoch"].as_u64().unwrap_or(0) >= 1
                    && d["routing"].as_array().is_some_and(|r| r.len() == 11)
            });
            if settled {
                return doc.expect("checked above");
            }
            assert!(Instant::now() < deadline, "cluster did not settle: {doc:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn vss(&self, args: &[&str]) -> Output {
        Command::new(VSS)
            .args(["--endpoints", &self.grpc])
            .args(args)
            .output()
            .expect("vss runs")
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "vss dev exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vss dev did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect()
}

#[test]
fn dev_serves_the_example_config_to_the_cli() {
    let dev = Dev::start();

    let started = Instant::now();
    let out = dev.vss(&["-o", "json", "acquire", "0", "--repeat", "201"]);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grants = json_lines(&out);
    assert_eq!(grants.len(), 201);
    let first_200: u64 = grants[..200]
        .iter()
        .map(|g| g["granted"].as_u64().expect("granted"))
        .sum();
    assert_eq!(
        first_200, 200,
        "the seed's bucket starts full with 200 tokens"
    );
    for key in ["granted", "remaining", "resetMs"] {
        assert!(grants[200].get(key).is_some(), "missing {key}");
    }
    if took < Duration::from_millis(900) {
        assert_eq!(
            grants[200]["granted"], 0,
            "201st acquire within the first second"
        );
    }

    let out = dev.vss(&["acquire", "1", "--key", "alice", "--tokens", "3"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1),
        Some("3")
    );

    let out = dev.vss(&["-o", "json", "status"]);
    assert!(out.status.success());
    let cluster = &json_lines(&out)[0];
    let status = &cluster["instances"][0];
    assert_eq!(status["instance"], "vss-0");
    let types: Vec<_> = status["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|s| s["type"].as_str().expect("type").to_string())
        .collect();
    assert_eq!(
        types,
        [
            "token-bucket",
            "token-bucket",
            "token-bucket",
            "leaky-bucket",
            "broadcast",
            "multicast",
            "random",
            "counter",
            "register",
            "registry",
            "tick"
        ]
    );

    // The data slots of the example config, through their CLI verbs.
    let json = |args: &[&str]| {
        let out = dev.vss(&[&["-o", "json"], args].concat());
        assert!(
            out.status.success(),
            "vss {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&out)
    };
    assert_eq!(json(&["increment", "20", "5"])[0]["value"], 5);
    assert_eq!(json(&["decrement", "20"])[0]["value"], 4);
    assert_eq!(json(&["read", "20"])[0]["value"], 4);
    let set = &json(&["set", "21", "feature/checkout", "on"])[0];
    assert!(set["replicas"].as_u64().is_some_and(|n| n >= 1), "{set}");
    assert_eq!(json(&["get", "21", "feature/checkout"])[0]["value"], "on");
    let keys = &json(&["list", "21", "feature/"])[0];
    assert_eq!(keys["entries"][0]["key"], "feature/checkout", "{keys}");
    let announced = &json(&["announce", "22", "checkout", "10.0.0.7:8080", "--ttl", "1m"])[0];
    assert_eq!(announced["added"], true, "{announced}");
    let listed = &json(&["list", "22"])[0];
    assert_eq!(
        listed["services"][0]["address"], "10.0.0.7:8080",
        "{listed}"
    );
    let ticks = json(&["ticks", "23", "-n", "2"]);
    assert_eq!(
        ticks[1]["number"].as_u64(),
        ticks[0]["number"].as_u64().map(|n| n + 1),
        "{ticks:?}"
    );
    let out = dev.vss(&["announce", "22", "checkout", "x", "--ttl", "0s"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("more than 0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    dev.stop();
}

#[test]
fn errors_exit_non_zero_with_the_server_message() {
    let dev = Dev::start();
    let out = dev.vss(&["acquire", "150"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("slot 150 is out of range: slot ids are 0-99"),
        "{stderr}"
    );

    let out = dev.vss(&["-o", "json", "call", "0", "reset"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has no operation `reset`"), "{stderr}");
    assert!(out.stdout.is_empty());
    dev.stop();
}

#[test]
fn unreachable_cluster_is_an_error() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let out = Command::new(VSS)
        .args(["--endpoints", &dead.to_string(), "acquire", "0"])
        .output()
        .expect("vss runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no VSS instance reachable"), "{stderr}");
    // One line, each failure once (the client tries every instance twice).
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches(&dead.to_string()).count(), 1, "{stderr}");
}

/// Starts `vss <args>` in the background and waits for its first stdout line.
fn spawn_until_first_line(
    dev: &Dev,
    args: &[&str],
) -> (Child, BufReader<std::process::ChildStdout>, String) {
    let mut child = Command::new(VSS)
        .args(["--endpoints", &dev.grpc])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("vss runs");
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut first = String::new();
    out.read_line(&mut first).expect("first line");
    (child, out, first)
}

#[test]
fn listen_and_publish_through_the_cli() {
    // A generous timeout: tests run in parallel on a busy machine, and this
    // one checks the counts, not the speed.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("slots.yaml");
    std::fs::write(
        &config,
        "slots:\n- {id: 11, type: multicast, timeout: 20s}\n",
    )
    .expect("write");
    let dev = Dev::start_with(&["--config", config.to_str().expect("utf-8 path")]);
    let (mut listener, mut out, first) = spawn_until_first_line(
        &dev,
        &[
            "-o",
            "json",
            "listen",
            "--register",
            "11",
            "--count",
            "1",
            "--client-id",
            "worker-1",
        ],
    );
    let registered: serde_json::Value = serde_json::from_str(&first).expect("json");
    assert_eq!(registered["status"], "registered");

    let published = dev.vss(&[
        "-o",
        "json",
        "publish",
        "11",
        "job-42",
        "--client-id",
        "boss",
    ]);
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let p = &json_lines(&published)[0];
    assert_eq!(
        (p["delivered"].as_u64(), p["failed"].as_u64()),
        (Some(1), Some(0))
    );

    let mut line = String::new();
    out.read_line(&mut line).expect("event line");
    let event: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(event["payload"], "job-42");
    assert_eq!(event["publisher"], "boss");
    assert_eq!(event["slot"], 11);
    assert!(
        listener.wait().expect("listener exits").success(),
        "--count 1 ends it"
    );
    dev.stop();
}

#[test]
fn subscribe_prints_broadcasts() {
    let dev = Dev::start();
    let sub = Command::new(VSS)
        .args([
            "--endpoints",
            &dev.grpc,
            "-o",
            "json",
            "subscribe",
            "--slot",
            "10",
            "--count",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("vss subscribe runs");
    // The subscriber is connected once a broadcast reaches one client.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = dev.vss(&["-o", "json", "publish", "10", "hello"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if json_lines(&out)[0]["delivered"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "subscriber never connected");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = sub
        .wait_with_output()
        .expect("subscriber exits after one event");
    assert!(out.status.success());
    assert_eq!(json_lines(&out)[0]["payload"], "hello");

    let too_long = dev.vss(&["publish", "10", "0123456789012345678901234567890123456789"]);
    assert!(!too_long.status.success());
    let stderr = String::from_utf8_lossy(&too_long.stderr);
    assert!(
        stderr.contains("`message` is 40 bytes, at most 36 allowed"),
        "{stderr}"
    );
    dev.stop();
}

#[test]
fn dev_runs_a_cluster_of_processes_and_stops_them_all() {
    let dev = Dev::start();
    let endpoints: Vec<String> = dev.grpc.split(',').map(str::to_string).collect();
    assert_eq!(
        endpoints.len(),
        3,
        "three instances by default: {endpoints:?}"
    );

    // A leader that served data while it saw fewer than 3 instances (the
    // first table may be made before the third answers) hands each slot on
    // once its standby holds the state: wait for that, within a bound.
    let deadline = Instant::now() + Duration::from_secs(30);
    let cluster = loop {
        let cluster = dev.settled(3, Duration::from_secs(20));
        let leader = cluster["leader"].as_str().expect("a leader").to_string();
        let leader_owns = cluster["routing"]
            .as_array()
            .expect("routing")
            .iter()
            .any(|r| r["owner"] == leader.as_str());
        if !leader_owns {
            break cluster;
        }
        assert!(
            Instant::now() < deadline,
            "the leader still owns slots with 3 instances: {cluster}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let leader = cluster["leader"].as_str().expect("a leader");
    assert!(["vss-0", "vss-1", "vss-2"].contains(&leader));
    for instance in cluster["instances"].as_array().expect("instances") {
        let peers = instance["peers"].as_array().expect("peers");
        assert_eq!(peers.len(), 2, "{instance}");
        assert!(peers.iter().all(|p| p["healthy"] == true), "{instance}");
    }

    dev.stop();
    for endpoint in &endpoints {
        assert!(
            std::net::TcpStream::connect(endpoint).is_err(),
            "{endpoint} still accepts connections after vss dev stopped"
        );
    }
}

/// The parent of process `pid`, from /proc.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (name) state ppid ...`; the name may hold spaces and parentheses.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Acquires from slot 0 through `vss-client` every few milliseconds on its
/// own thread, counting calls and failures, until stopped.
struct AcquireLoop {
    calls: Arc<AtomicU64>,
    /// The longest call, in microseconds.
    slowest_us: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl AcquireLoop {
    fn start(endpoints: &str) -> AcquireLoop {
        let endpoints: Vec<String> = endpoints.split(',').map(str::to_string).collect();
        let calls = Arc::new(AtomicU64::new(0));
        let slowest_us = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (calls, slowest_us, failures, stop) = (
                calls.clone(),
                slowest_us.clone(),
                failures.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let client = vss_client::Client::new(&endpoints).expect("client");
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let result = client.acquire(0, vss_client::Acquire::default()).await;
                        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        slowest_us.fetch_max(took, Ordering::Relaxed);
                        calls.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = result {
                            failures.lock().expect("lock").push(e.to_string());
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                });
            })
        };
        AcquireLoop {
            calls,
            slowest_us,
            failures,
            stop,
            thread,
        }
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Stops the loop; returns the calls made, the failures seen and the
    /// longest call.
    fn finish(self) -> (u64, Vec<String>, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the acquire loop does not panic");
        let failures = self.failures.lock().expect("lock").clone();
        let slowest = Duration::from_micros(self.slowest_us.load(Ordering::Relaxed));
        (self.calls.load(Ordering::Relaxed), failures, slowest)
    }
}

#[test]
fn dev_restarts_a_killed_instance_while_clients_see_no_failed_call() {
    let mut dev = Dev::start();
    let cluster = dev.settled(3, Duration::from_secs(30));
    let route0 = cluster["routing"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["slot"] == 0))
        .expect("slot 0 is routed");
    let owner = route0["owner"].as_str().expect("an owner").to_string();
    let (_, pid) = dev
        .pids
        .iter()
        .find(|(id, _)| *id == owner)
        .unwrap_or_else(|| panic!("no PID printed for {owner}: {:?}", dev.pids));
    let dev_pid = dev.child.id();
    assert_eq!(
        parent_of(*pid),
        Some(dev_pid),
        "{owner} (pid {pid}) is a child of our vss dev"
    );

    let load = AcquireLoop::start(&dev.grpc);
    let deadline = Instant::now() + Duration::from_secs(20);
    while load.calls() < 50 {
        assert!(Instant::now() < deadline, "the acquire loop did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let killed = Instant::now();
    let sent = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let died = dev.wait_for_line(&format!("{owner} died"), Duration::from_secs(10));
    assert_eq!(died, format!("{owner} died (SIGKILL); restarting in 0.5 s"));
    let rejoined = dev.wait_for_line(&format!("{owner} rejoined"), Duration::from_secs(90));
    let took = killed.elapsed();
    // `vss-2 rejoined, epoch 7 (pid 1234)`
    let words: Vec<&str> = rejoined
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .collect();
    let [_, "rejoined", "epoch", epoch, "pid", new_pid] = words.as_slice() else {
        panic!("unexpected line: {rejoined}");
    };
    let epoch: u64 = epoch.parse().expect("an epoch");
    let new_pid: u32 = new_pid.parse().expect("a PID");
    assert_ne!(new_pid, *pid, "a new process");
    assert_eq!(
        parent_of(new_pid),
        Some(dev_pid),
        "restarted by our vss dev"
    );

    // Back in the routing table: every instance up, and the restarted one
    // owns or stands by for a slot again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let routed = loop {
        let cluster = dev.settled(3, Duration::from_secs(30));
        let routes = cluster["routing"].as_array().cloned().unwrap_or_default();
        let back = cluster["epoch"].as_u64().unwrap_or(0) >= epoch
            && routes
                .iter()
                .any(|r| r["owner"] == owner.as_str() || r["standby"] == owner.as_str());
        if back {
            break cluster;
        }
        assert!(
            Instant::now() < deadline,
            "{owner} is not back in the routing table: {cluster}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Some more calls against the healed cluster.
    let before = load.calls();
    let deadline = Instant::now() + Duration::from_secs(20);
    while load.calls() < before + 50 {
        assert!(Instant::now() < deadline, "the acquire loop stalled");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (calls, failures, slowest) = load.finish();
    eprintln!(
        "killed {owner} (pid {pid}); rejoined after {took:?} at epoch {epoch} as pid {new_pid}; {calls} acquires, {} failed, slowest {slowest:?}; routing epoch now {}",
        failures.len(),
        routed["epoch"]
    );
    assert!(failures.is_empty(), "failed calls: {failures:?}");
    assert!(
        dev.child.try_wait().expect("wait").is_none(),
        "vss dev still runs after losing an instance"
    );
    dev.stop();
}

#[test]
fn status_into_a_closed_pipe_ends_quietly() {
    let dev = Dev::start_with(&["--instances", "1"]);
    // The read end closes before `vss status` writes a byte, so every run
    // meets the broken pipe.
    let mut status = Command::new(VSS)
        .args(["--endpoints", &dev.grpc, "status"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vss runs");
    drop(status.stdout.take());
    let out = status.wait_with_output().expect("vss status ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "nothing to say about it: {stderr}");
    assert!(out.status.success(), "{:?}", out.status);

    // As a shell runs it; pipefail makes the status vss's own.
    let out = Command::new("bash")
        .args([
            "-c",
            r#"set -o pipefail; "$0" --endpoints "$1" status | head -1"#,
            VSS,
            &dev.grpc,
        ])
        .output()
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    dev.stop();
}

#[test]
fn dev_chaos_turns_on_fault_injection_in_every_instance() {
    let dev = Dev::start_with(&["--chaos", "--instances", "2"]);
    assert!(
        dev.banner.iter().any(|l| l.starts_with("chaos: ")),
        "{:?}",
        dev.banner
    );
    let logs: Vec<&str> = dev
        .banner
        .iter()
        .filter_map(|l| l.rsplit_once(" log ").map(|(_, path)| path))
        .collect();
    assert_eq!(logs.len(), 2, "{:?}", dev.banner);
    for log in logs {
        let text = std::fs::read_to_string(log).expect("the instance's log");
        assert!(text.contains("fault injection is on"), "{log}: {text}");
        assert!(text.contains("refuse_calls: 0.02"), "{log}: {text}");
        assert!(text.contains("restart_every: Some(30s)"), "{log}: {text}");
    }
    // Refused calls (2%) are retried elsewhere: the CLI sees none.
    let out = dev.vss(&["-o", "json", "acquire", "0", "--repeat", "100"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_lines(&out).len(), 100);
    dev.stop();
}

/// Runs cargo in the crate `vss slot new` made, as its user would, with a
/// target folder kept between runs (the SDK's dependencies build once)
/// and none of the outer build's settings.
fn cargo_in(dir: &std::path::Path, target: &std::path::Path, args: &[&str]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", target);
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} in the new slot crate failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_new_slot_crate_tests_builds_and_loads_as_it_is() {
    let parent = tempfile::tempdir().expect("temp dir");
    let made = Command::new(VSS)
        .args(["slot", "new", "hit-counter", "--dir"])
        .arg(parent.path())
        .output()
        .expect("vss runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let dir = parent.path().join("hit-counter");

    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/slot-new");
    let tested = cargo_in(&dir, &target, &["test"]);
    let report = String::from_utf8_lossy(&tested.stdout);
    assert!(report.contains("test result: ok. 4 passed"), "{report}");
    cargo_in(
        &dir,
        &target,
        &["build", "--release", "--target", "wasm32-wasip2"],
    );
    // Where slots.yaml expects it, as with the crate's own target folder.
    let module = "wasm32-wasip2/release/hit_counter.wasm";
    let expected = dir.join("target").join(module);
    std::fs::create_dir_all(expected.parent().expect("a folder")).expect("mkdir");
    std::fs::copy(target.join(module), &expected).expect("copy the component");

    let config = dir.join("slots.yaml");
    let dev = Dev::start_with(&[
        "--config",
        config.to_str().expect("UTF-8 path"),
        "--instances",
        "1",
    ]);
    for expected in ["1", "2"] {
        let out = dev.vss(&["call", "9", "hit", "alice"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
    }
    let refused = dev.vss(&["call", "9", "nope", "alice"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unknown op `nope`"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    dev.stop();
}

#[test]
fn top_prints_the_cluster_and_its_rates_as_text_when_not_on_a_terminal() {
    let dev = Dev::start();
    dev.settled(3, Duration::from_secs(30));
    let top = Command::new(VSS)
        .args([
            "--endpoints",
            &dev.grpc,
            "top",
            "-n",
            "2",
            "--interval",
            "1500ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vss top starts");
    // Calls all the while, so the second view has some per second.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, grpc) = (stop.clone(), dev.grpc.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = Command::new(VSS)
                    .args(["--endpoints", &grpc, "acquire", "0", "--repeat", "20"])
                    .output();
            }
        })
    };
    let out = top.wait_with_output().expect("vss top ends");
    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let views: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(views.len(), 2, "two refreshes: {text}");
    for view in &views {
        assert!(
            view.starts_with("3 of 3 instances up   leader vss-"),
            "{view}"
        );
        assert!(view.contains("INSTANCE") && view.contains("SLOT"), "{view}");
    }
    let slot0 = |view: &str| -> Vec<String> {
        view.lines()
            .find(|l| l.starts_with("0 "))
            .unwrap_or_else(|| panic!("no row for slot 0: {view}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(slot0(views[0])[4], "-", "no rate before a second sample");
    let second = slot0(views[1]);
    assert_eq!(second[1], "token-bucket");
    assert!(second[2].starts_with("vss-"), "an owner: {second:?}");
    let calls: f64 = second[4].parse().expect("calls per second");
    assert!(
        calls > 0.0,
        "acquires were made between the samples: {second:?}"
    );
    dev.stop();
}
