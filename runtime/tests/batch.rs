//! `AcquireBatch` over real gRPC on loopback, and `vss-client` coalescing
//! concurrent acquires into it.

use std::path::Path;
use std::sync::Arc;

mod common;

use common::{TestServer, http_get};
use tonic::Code;
use vss_client::Acquire;
use vss_proto::v1::acquire_outcome::Outcome;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{AcquireBatchRequest, AcquireOutcome, AcquireRequest};

const CONFIG: &str = "slots:
- {id: 0, type: token-bucket, bucketSize: 5, period: hour}
- {id: 1, type: leaky-bucket, bucketSize: 2, period: hour}
- {id: 2, type: token-bucket, bucketSize: 1000, period: hour}
- {id: 10, type: broadcast}
";

fn acquire(slot: u32, key: &str) -> AcquireRequest {
    AcquireRequest {
        slot,
        key: key.into(),
        tokens: None,
    }
}

/// (granted, remaining) of a reply; panics on a failure.
fn granted(outcome: &AcquireOutcome) -> (u32, u64) {
    match &outcome.outcome {
        Some(Outcome::Reply(r)) => (r.granted, r.remaining),
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// (code, message) of a failure; panics on a reply.
fn failed(outcome: &AcquireOutcome) -> (Code, String) {
    match &outcome.outcome {
        Some(Outcome::Failure(f)) => (Code::from(f.code), f.message.clone()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

async fn raw(server: &TestServer) -> VssClient<tonic::transport::Channel> {
    VssClient::connect(format!("http://{}", server.grpc))
        .await
        .expect("connect")
}

#[tokio::test]
async fn each_acquire_of_a_batch_is_answered_in_order_and_fails_alone() {
    let server = TestServer::start(CONFIG, Path::new("."))
        .await
        .expect("starts");
    let mut grpc = raw(&server).await;
    let mut requests = Vec::new();
    // Slot 0's acquires interleaved with others: each slot keeps its order.
    for i in 0..7 {
        requests.push(acquire(0, ""));
        if i == 2 {
            requests.push(acquire(1, "alice"));
            requests.push(acquire(42, ""));
            requests.push(acquire(0, &"k".repeat(300)));
            requests.push(acquire(150, ""));
            requests.push(acquire(10, ""));
        }
    }
    let outcomes = grpc
        .acquire_batch(AcquireBatchRequest { requests })
        .await
        .expect("batch")
        .into_inner()
        .outcomes;
    assert_eq!(outcomes.len(), 12);
    let slot0: Vec<_> = [0, 1, 2, 8, 9, 10, 11]
        .iter()
        .map(|&i| granted(&outcomes[i]))
        .collect();
    assert_eq!(
        slot0,
        [(1, 4), (1, 3), (1, 2), (1, 1), (1, 0), (0, 0), (0, 0)],
        "slot 0's seven acquires ran in order on its bucket of 5"
    );
    assert_eq!(granted(&outcomes[3]), (1, 1), "slot 1, key alice");
    let (code, message) = failed(&outcomes[4]);
    assert_eq!(code, Code::NotFound, "{message}");
    assert!(message.contains("slot 42 is not configured"), "{message}");
    let (code, message) = failed(&outcomes[5]);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(
        message.contains("`key` is 300 bytes, at most 256"),
        "{message}"
    );
    let (code, message) = failed(&outcomes[6]);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("slot 150 is out of range"), "{message}");
    let (code, message) = failed(&outcomes[7]);
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_whole_and_an_empty_one_is_answered() {
    let server = TestServer::start(CONFIG, Path::new("."))
        .await
        .expect("starts");
    let mut grpc = raw(&server).await;
    let requests = vec![acquire(2, ""); 1001];
    let status = grpc
        .acquire_batch(AcquireBatchRequest { requests })
        .await
        .expect_err("1,001 acquires");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("`requests` holds 1001 acquires, at most 1000 allowed"),
        "{}",
        status.message()
    );
    let empty = grpc
        .acquire_batch(AcquireBatchRequest::default())
        .await
        .expect("an empty batch");
    assert!(empty.into_inner().outcomes.is_empty());
    // The refused batch took nothing.
    let outcomes = grpc
        .acquire_batch(AcquireBatchRequest {
            requests: vec![acquire(2, "")],
        })
        .await
        .expect("batch")
        .into_inner()
        .outcomes;
    assert_eq!(granted(&outcomes[0]), (1, 999));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_client_acquires_share_batches_and_grant_exactly_the_bucket() {
    let server = TestServer::start(CONFIG, Path::new("."))
        .await
        .expect("starts");
    let client = Arc::new(server.client());
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let client = client.clone();
        callers.spawn(async move {
            let mut granted = 0;
            for _ in 0..40 {
                granted += client
                    .acquire(2, Acquire::default())
                    .await
                    .expect("acquire")
                    .granted;
            }
            granted
        });
    }
    let mut total = 0;
    while let Some(granted) = callers.join_next().await {
        total += granted.expect("caller");
    }
    assert_eq!(total, 1000, "2,000 acquires on a bucket of 1,000");
    let (_, metrics) = http_get(server.http, "/metrics").await;
    let batches: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vss_request_duration_seconds_count{verb=\"acquire_batch\"} "))
        .and_then(|n| n.trim().parse().ok())
        .expect("acquire_batch series");
    let singles: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vss_request_duration_seconds_count{verb=\"acquire\"} "))
        .and_then(|n| n.trim().parse().ok())
        .expect("acquire series");
    println!("{batches} AcquireBatch calls and {singles} single acquires for 2,000 acquires");
    assert!(batches > 0, "50 concurrent callers never shared a batch");
    assert!(
        batches + singles < 2000,
        "coalescing saved no calls: {batches} batches, {singles} singles"
    );
    server.shutdown().await;
}
