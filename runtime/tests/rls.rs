//! Envoy's rate limit service (`envoy.service.ratelimit.v3`) on the client
//! port.
//!
//! The semantics are driven through `tests/rls/envoy_client.py`, a client
//! whose stubs the gRPC project generates from Envoy's protos (`xds-protos`),
//! not from the types the server uses. It needs a Python with `grpcio` and
//! `xds-protos`, named by `VSS_RLS_PYTHON` (`.ci/run` makes one); without
//! it those tests say so and do not run. The cluster test needs nothing
//! more than the workspace and always runs.

mod common;
mod process;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::TestServer;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::google::protobuf::UInt64Value;
use process::ProcessCluster;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const RULES: &str = "slots:
- id: 1
  type: token-bucket
  bucketSize: 3
  period: hour
  refreshRate: 3
  rls:
  - {domain: edge, name: per-ip, descriptor: [{key: remote_address}]}
  - {domain: edge, name: checkout, descriptor: [{key: path, value: /checkout}]}
  - {domain: edge, name: any-path, descriptor: [{key: path}]}
  - {domain: edge, name: user-on-api, descriptor: [{key: path, value: /api}, {key: user}]}
- id: 2
  type: token-bucket
  bucketSize: 2
  period: hour
  rls:
  - {domain: edge, name: shadowed, shadow: true, descriptor: [{key: tenant}]}
- id: 3
  type: leaky-bucket
  bucketSize: 2
  period: hour
  rls:
  - {domain: edge, name: leaky, descriptor: [{key: queue}]}
";

/// The independent client, one process per test, stopped on drop.
struct EnvoyClient {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl EnvoyClient {
    /// None (after saying so) when `VSS_RLS_PYTHON` is not set.
    async fn start(server: &str) -> Option<Self> {
        let Ok(python) = std::env::var("VSS_RLS_PYTHON") else {
            eprintln!(
                "NOT RUN: set VSS_RLS_PYTHON to a Python with grpcio and xds-protos (.ci/run makes one) to drive the rate limit service with a client generated from Envoy's protos"
            );
            return None;
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rls/envoy_client.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(server)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("VSS_RLS_PYTHON={python} does not start: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        Some(Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// Sends one request (Envoy's JSON form); the reply's `ok` or `error`.
    async fn call(&mut self, request: Value) -> Result<Value, Value> {
        let mut line = request.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.expect("write");
        let reply = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .expect("the client answers within 10 s")
            .expect("read")
            .unwrap_or_else(|| panic!("the client exited: {:?}", self.child.try_wait()));
        let mut reply: Value = serde_json::from_str(&reply).expect("JSON line");
        match reply.get_mut("ok") {
            Some(ok) => Ok(ok.take()),
            None => Err(reply["error"].take()),
        }
    }

    /// Like `call`, for a request that must be answered.
    async fn ask(&mut self, request: Value) -> Value {
        self.call(request.clone())
            .await
            .unwrap_or_else(|e| panic!("{request} refused: {e}"))
    }
}

fn descriptor(entries: &[(&str, &str)]) -> Value {
    json!({"entries": entries.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>()})
}

fn one(entries: &[(&str, &str)]) -> Value {
    json!({"domain": "edge", "descriptors": [descriptor(entries)]})
}

fn code(reply: &Value) -> &str {
    reply["overall_code"].as_str().unwrap_or_default()
}

fn remaining(status: &Value) -> u64 {
    status["limit_remaining"].as_u64().unwrap_or_default()
}

async fn setup() -> Option<(TestServer, EnvoyClient)> {
    let server = TestServer::start(RULES, Path::new("."))
        .await
        .expect("starts");
    let client = EnvoyClient::start(&server.grpc.to_string()).await?;
    Some((server, client))
}

#[tokio::test]
async fn per_value_buckets_with_every_status_field_filled() {
    let Some((server, mut envoy)) = setup().await else {
        return;
    };
    for left in [2, 1, 0] {
        let reply = envoy.ask(one(&[("remote_address", "10.0.0.1")])).await;
        assert_eq!(code(&reply), "OK", "{reply}");
        let status = &reply["statuses"][0];
        assert_eq!(status["code"], "OK");
        assert_eq!(remaining(status), left, "{status}");
        assert_eq!(
            status["current_limit"],
            json!({"name": "per-ip", "requests_per_unit": 3, "unit": "HOUR"}),
            "{status}"
        );
        let reset = status["duration_until_reset"].as_str().unwrap_or_default();
        assert!(reset.ends_with('s') && reset != "0s", "{status}");
    }
    let refused = envoy.ask(one(&[("remote_address", "10.0.0.1")])).await;
    assert_eq!(code(&refused), "OVER_LIMIT", "{refused}");
    assert_eq!(refused["statuses"][0]["code"], "OVER_LIMIT");
    let other_ip = envoy.ask(one(&[("remote_address", "10.0.0.2")])).await;
    assert_eq!(
        code(&other_ip),
        "OK",
        "another value, another bucket: {other_ip}"
    );
    assert_eq!(remaining(&other_ip["statuses"][0]), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn specific_values_win_and_rules_apply_at_their_own_depth() {
    let Some((server, mut envoy)) = setup().await else {
        return;
    };
    let name = |reply: &Value| reply["statuses"][0]["current_limit"]["name"].clone();
    let checkout = envoy.ask(one(&[("path", "/checkout")])).await;
    assert_eq!(name(&checkout), "checkout", "{checkout}");
    let other = envoy.ask(one(&[("path", "/other")])).await;
    assert_eq!(name(&other), "any-path", "{other}");
    let nested = envoy.ask(one(&[("path", "/api"), ("user", "ann")])).await;
    assert_eq!(name(&nested), "user-on-api", "{nested}");
    // `/api` alone has no rule of its own: no limit, and the key-only
    // `path` rule is not used instead.
    let shallow = envoy.ask(one(&[("path", "/api")])).await;
    assert_eq!(code(&shallow), "OK");
    assert_eq!(
        shallow["statuses"][0]["current_limit"],
        Value::Null,
        "{shallow}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn hits_addend_takes_that_many_tokens_or_none() {
    let Some((server, mut envoy)) = setup().await else {
        return;
    };
    let mut request = one(&[("remote_address", "10.0.0.3")]);
    request["hits_addend"] = json!(2);
    let two = envoy.ask(request).await;
    assert_eq!(remaining(&two["statuses"][0]), 1, "{two}");
    // A descriptor's own hits_addend overrides the request's.
    let mut request = one(&[("remote_address", "10.0.0.3")]);
    request["hits_addend"] = json!(1);
    request["descriptors"][0]["hits_addend"] = json!(2);
    let refused = envoy.ask(request).await;
    assert_eq!(code(&refused), "OVER_LIMIT", "{refused}");
    assert_eq!(remaining(&refused["statuses"][0]), 1, "nothing was taken");
    let last = envoy.ask(one(&[("remote_address", "10.0.0.3")])).await;
    assert_eq!(code(&last), "OK", "{last}");
    assert_eq!(remaining(&last["statuses"][0]), 0);
    server.shutdown().await;
}

/// `is_negative_hits` is newer than the Envoy API in `xds-protos`, so this
/// one goes through `envoy-types`' client and needs no Python.
#[tokio::test]
async fn negative_hits_give_tokens_back() {
    let server = TestServer::start(RULES, Path::new("."))
        .await
        .expect("starts");
    let mut envoy = RateLimitServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .expect("connect");
    let mut take = request("10.0.0.6");
    take.hits_addend = 3;
    let empty = envoy
        .should_rate_limit(take)
        .await
        .expect("answers")
        .into_inner();
    assert_eq!(empty.statuses[0].limit_remaining, 0, "{empty:?}");
    let mut give = request("10.0.0.6");
    give.descriptors[0].hits_addend = Some(UInt64Value { value: 2 });
    give.descriptors[0].is_negative_hits = true;
    let back = envoy
        .should_rate_limit(give)
        .await
        .expect("answers")
        .into_inner();
    assert_eq!(back.overall_code, i32::from(Code::Ok));
    assert_eq!(back.statuses[0].limit_remaining, 2, "{back:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_descriptor_takes_nothing_from_the_others() {
    let Some((server, mut envoy)) = setup().await else {
        return;
    };
    for _ in 0..2 {
        let fill = envoy.ask(one(&[("queue", "q")])).await;
        assert_eq!(code(&fill), "OK", "{fill}");
    }
    let both = json!({"domain": "edge", "descriptors": [
        descriptor(&[("remote_address", "10.0.0.4")]),
        descriptor(&[("queue", "q")]),
    ]});
    for _ in 0..3 {
        let refused = envoy.ask(both.clone()).await;
        assert_eq!(code(&refused), "OVER_LIMIT", "{refused}");
        assert_eq!(refused["statuses"][0]["code"], "OK", "{refused}");
        assert_eq!(refused["statuses"][1]["code"], "OVER_LIMIT", "{refused}");
    }
    // Three refused requests later the per-IP bucket is still full.
    let mut request = one(&[("remote_address", "10.0.0.4")]);
    request["hits_addend"] = json!(3);
    let all = envoy.ask(request).await;
    assert_eq!(
        code(&all),
        "OK",
        "the refused requests took no tokens: {all}"
    );
    assert_eq!(remaining(&all["statuses"][0]), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn shadow_rules_count_but_never_refuse() {
    let Some((server, mut envoy)) = setup().await else {
        return;
    };
    for _ in 0..3 {
        let reply = envoy.ask(one(&[("tenant", "t")])).await;
        assert_eq!(code(&reply), "OK", "{reply}");
        assert_eq!(reply["statuses"][0]["code"], "OK", "{reply}");
    }
    let metrics = process::http_get(&server.http.to_string(), "/metrics")
        .await
        .expect("metrics");
    for (decision, n) in [("allowed", 2), ("shadowed", 1), ("over_limit", 0)] {
        let line = format!(
            r#"vss_rls_decisions_total{{domain="edge",rule="shadowed",decision="{decision}"}} {n}"#
        );
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_domains_and_descriptors_are_not_limited() {
    let Some((server, mut envoy)) = setup().await else {
        return;
    };
    let mut request = one(&[("remote_address", "10.0.0.5")]);
    request["domain"] = json!("nobody-configured-this");
    for _ in 0..5 {
        let reply = envoy.ask(request.clone()).await;
        assert_eq!(code(&reply), "OK", "{reply}");
        assert_eq!(reply["statuses"][0]["current_limit"], Value::Null);
    }
    let unknown_key = envoy.ask(one(&[("header", "x")])).await;
    assert_eq!(code(&unknown_key), "OK", "{unknown_key}");
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let Some((server, mut envoy)) = setup().await else {
        return;
    };
    let mut empty_key = one(&[("", "x")]);
    let mut empty_domain = one(&[("remote_address", "x")]);
    empty_domain["domain"] = json!("");
    let hundred =
        json!({"domain": "edge", "descriptors": vec![descriptor(&[("remote_address", "x")]); 100]});
    let no_descriptors = json!({"domain": "edge"});
    empty_key["hits_addend"] = json!(1);
    for (request, field, limit) in [
        (
            empty_key,
            "`descriptors[0].entries[0].key`",
            "must not be empty",
        ),
        (empty_domain, "`domain`", "must not be empty"),
        (
            hundred,
            "`descriptors`",
            "holds 100 descriptors, at most 32 allowed",
        ),
        (no_descriptors, "`descriptors`", "at least one"),
    ] {
        let e = envoy.call(request).await.expect_err("refused");
        assert_eq!(e["code"], "INVALID_ARGUMENT", "{e}");
        let message = e["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field) && message.contains(limit),
            "{message}"
        );
    }
    // Nothing was disturbed: the per-IP bucket is untouched.
    let reply = envoy.ask(one(&[("remote_address", "x")])).await;
    assert_eq!(remaining(&reply["statuses"][0]), 2, "{reply}");
    server.shutdown().await;
}

/// The cluster config: one per-IP rule on slot 0, so every call goes to
/// slot 0's owner.
const CLUSTER_RULES: &str = "slots:
- id: 0
  type: token-bucket
  bucketSize: 100000
  period: hour
  refreshRate: 100000
  rls:
  - {domain: edge, name: per-ip, descriptor: [{key: remote_address}]}
";

fn request(ip: &str) -> RateLimitRequest {
    RateLimitRequest {
        domain: "edge".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "remote_address".into(),
                value: ip.into(),
            }],
            ..Default::default()
        }],
        hits_addend: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_a_non_owner_survive_the_owner_being_killed() {
    let mut cluster =
        ProcessCluster::start_config(&["a", "b", "c"], &[0, 1, 2], &[], CLUSTER_RULES, &[])
            .expect("start cluster");
    let table = cluster
        .settled(&[0, 1, 2], Duration::from_secs(20))
        .await
        .expect("the instances agree on a routing table");
    let route = table
        .routes
        .iter()
        .find(|r| r.slot == 0)
        .expect("slot 0 is routed");
    let owner = cluster.index_of(&route.owner);
    let entry = cluster.index_of(&table.leader);
    assert_ne!(entry, owner, "the leader owns no slot");
    let mut envoy = RateLimitServiceClient::connect(cluster.url(entry))
        .await
        .expect("connect");

    let started = Instant::now();
    let mut killed_at = None;
    let (mut calls, mut slowest, mut slowest_after_kill) = (0u32, Duration::ZERO, Duration::ZERO);
    // limit_remaining of the last answer before the kill, and of the first after.
    let (mut first, mut before_kill, mut after_kill) = (None, None, None);
    while started.elapsed() < Duration::from_secs(4) {
        if killed_at.is_none() && started.elapsed() > Duration::from_secs(1) {
            // A second of calls first, so the standby holds the bucket.
            cluster.kill(owner);
            killed_at = Some(Instant::now());
        }
        let mut req = tonic::Request::new(request("10.1.1.1"));
        req.set_timeout(Duration::from_secs(2));
        let t = Instant::now();
        let reply = envoy
            .should_rate_limit(req)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "call {calls} failed (owner killed: {}): {e}",
                    killed_at.is_some()
                )
            })
            .into_inner();
        let took = t.elapsed();
        slowest = slowest.max(took);
        assert_eq!(reply.overall_code, i32::from(Code::Ok), "{reply:?}");
        let left = reply.statuses[0].limit_remaining;
        first.get_or_insert(left);
        if killed_at.is_some() {
            slowest_after_kill = slowest_after_kill.max(took);
            after_kill.get_or_insert(left);
        } else {
            before_kill = Some(left);
        }
        calls += 1;
    }
    let (first, before_kill, after_kill) = (
        first.expect("calls were made"),
        before_kill.expect("calls before the kill"),
        after_kill.expect("calls after the kill"),
    );
    println!(
        "{calls} ShouldRateLimit calls through {} (owner {} SIGKILLed after 1 s), none failed; slowest {slowest:?}, slowest after the kill {slowest_after_kill:?}; remaining {before_kill} before the kill, {after_kill} after ({} decisions lost to replication lag)",
        table.leader,
        route.owner,
        i64::from(after_kill) - i64::from(before_kill) + 1
    );
    assert!(
        after_kill < first,
        "the standby continued the bucket instead of starting it full: {first} at the start, {before_kill} before the kill, {after_kill} after"
    );
}
