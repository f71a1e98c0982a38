//! The runtime over real gRPC on loopback, driven by `vss-client`.

use std::path::Path;
use std::time::Duration;

mod common;

use common::{TestServer, http_get, server_error};
use tonic::Code;
use vss_client::{Acquire, Client};

const SEED: &str = "slots:\n- {id: 0, type: token-bucket, bucketSize: 200, period: second, refreshRate: 100}\n- {id: 3, type: leaky-bucket, bucketSize: 2, period: minute}\n";

#[tokio::test]
async fn seed_example_grants_200_then_refills_100_per_second() {
    let server = TestServer::start(SEED, Path::new("."))
        .await
        .expect("starts");
    let client = server.client();
    let mut granted = 0;
    for _ in 0..200 {
        granted += client
            .acquire(0, Acquire::default())
            .await
            .expect("acquire")
            .granted;
    }
    assert_eq!(granted, 200);
    let empty = client
        .acquire(0, Acquire::default())
        .await
        .expect("acquire");
    // Unless the machine stalled past the first period boundary, the bucket is empty.
    if empty.granted == 0 {
        assert_eq!(empty.remaining, 0);
        assert!(empty.reset_ms <= 1_000, "{empty:?}");
        tokio::time::sleep(Duration::from_millis(empty.reset_ms + 20)).await;
        let refilled = client
            .acquire(
                0,
                Acquire {
                    key: None,
                    tokens: Some(1_000),
                },
            )
            .await
            .expect("acquire");
        assert!(
            refilled.granted == 100 || refilled.granted == 200,
            "one period adds 100 tokens (two if the test stalled): {refilled:?}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn keyed_acquires_get_separate_buckets() {
    let server = TestServer::start(
        "slots:\n- {id: 1, type: token-bucket, bucketSize: 2, period: hour}\n",
        Path::new("."),
    )
    .await
    .expect("starts");
    let client = server.client();
    let alice = Acquire {
        key: Some("alice".into()),
        tokens: Some(5),
    };
    assert_eq!(
        client
            .acquire(1, alice.clone())
            .await
            .expect("acquire")
            .granted,
        2
    );
    assert_eq!(client.acquire(1, alice).await.expect("acquire").granted, 0);
    let bob = Acquire {
        key: Some("bob".into()),
        tokens: None,
    };
    assert_eq!(client.acquire(1, bob).await.expect("acquire").granted, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let server = TestServer::start(SEED, Path::new("."))
        .await
        .expect("starts");
    let client = server.client();

    let (code, msg) = server_error(client.acquire(150, Acquire::default()).await);
    assert_eq!(
        (code, msg.as_str()),
        (
            Code::InvalidArgument,
            "slot 150 is out of range: slot ids are 0-99"
        )
    );

    let (code, msg) = server_error(client.acquire(50, Acquire::default()).await);
    assert_eq!(
        (code, msg.as_str()),
        (Code::NotFound, "slot 50 is not configured")
    );

    let long_key = Acquire {
        key: Some("k".repeat(300)),
        tokens: None,
    };
    let (code, msg) = server_error(client.acquire(0, long_key).await);
    assert_eq!(
        (code, msg.as_str()),
        (
            Code::InvalidArgument,
            "`key` is 300 bytes, at most 256 allowed"
        )
    );

    let (code, msg) = server_error(
        client
            .acquire(
                0,
                Acquire {
                    key: None,
                    tokens: Some(0),
                },
            )
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("`tokens` must be at least 1"), "{msg}");

    let (code, msg) = server_error(client.call(0, "reset", Vec::new()).await);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(
        msg.contains(
            "slot 0: slot type token-bucket has no operation `reset` (it has take-all and release)"
        ),
        "{msg}"
    );

    let (code, msg) = server_error(client.call(3, "x", vec![0; 70_000]).await);
    assert_eq!(
        (code, msg.as_str()),
        (
            Code::InvalidArgument,
            "`payload` is 70000 bytes, at most 65536 allowed"
        )
    );

    // Nothing above disturbed the slots.
    assert_eq!(
        client
            .acquire(0, Acquire::default())
            .await
            .expect("acquire")
            .granted,
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn custom_slot_module_loads_from_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("fixed_window.wasm"),
        vss_builtin_slots::testing::FIXED_WINDOW,
    )
    .expect("write");
    let yaml = "slots:\n- id: 9\n  type: custom\n  custom:\n    module: fixed_window.wasm\n    config: {limit: 2, window: minute}\n";
    let server = TestServer::start(yaml, dir.path()).await.expect("starts");
    let client = server.client();
    let first = client
        .call(9, "hit", b"user-1".to_vec())
        .await
        .expect("hit");
    assert!(String::from_utf8_lossy(&first).starts_with(r#"{"allowed":true,"remaining":1,"#));
    let grant = client
        .acquire(
            9,
            Acquire {
                key: Some("user-1".into()),
                tokens: None,
            },
        )
        .await
        .expect("typed acquire on a custom slot");
    assert_eq!((grant.granted, grant.remaining), (1, 0));
    let (code, msg) = server_error(client.call(9, "frobnicate", Vec::new()).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("unknown operation `frobnicate`"), "{msg}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_misbehaving_module_fails_its_call_and_every_other_slot_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.wasm"),
        vss_builtin_slots::testing::MISBEHAVE,
    )
    .expect("write");
    let yaml = format!("{SEED}- id: 7\n  type: custom\n  custom: {{module: bad.wasm}}\n");
    let server = TestServer::start(&yaml, dir.path()).await.expect("starts");
    let client = server.client();
    for (op, code, text) in [
        ("trap", Code::Internal, "slot 7: slot module trapped"),
        (
            "loop",
            Code::Internal,
            "slot 7: slot module ran longer than its 200ms call deadline",
        ),
        (
            "alloc",
            Code::ResourceExhausted,
            "slot 7: slot module exceeded its memory limit of 16777216 bytes",
        ),
    ] {
        let (got, msg) = server_error(client.call(7, op, Vec::new()).await);
        assert_eq!(got, code, "{op}: {msg}");
        assert!(msg.starts_with(text), "{op}: {msg}");
        assert_eq!(
            client
                .acquire(0, Acquire::default())
                .await
                .expect("slot 0 serves")
                .granted,
            1
        );
    }
    assert_eq!(
        client
            .call(7, "echo", b"still here".to_vec())
            .await
            .expect("rebuilt"),
        b"still here"
    );
    let status = client.status().await.remove(0).1.expect("status");
    let seven = status
        .slots
        .iter()
        .find(|s| s.id == 7)
        .expect("slot 7 listed");
    assert_eq!((seven.errors, seven.restarts), (3, 3));
    server.shutdown().await;
}

#[tokio::test]
async fn the_client_skips_an_instance_that_is_down() {
    let server = TestServer::start(SEED, Path::new("."))
        .await
        .expect("starts");
    // Nothing listens on a port we just released.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let client = Client::new(&[dead.to_string(), server.grpc.to_string()]).expect("client");
    assert_eq!(
        client
            .acquire(0, Acquire::default())
            .await
            .expect("served by the live one")
            .granted,
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn probes_and_metrics_are_served_over_http() {
    let server = TestServer::start(SEED, Path::new("."))
        .await
        .expect("starts");
    let client = server.client();
    client
        .acquire(0, Acquire::default())
        .await
        .expect("acquire");
    let _ = client.acquire(42, Acquire::default()).await;
    assert_eq!(http_get(server.http, "/healthz").await.0, 200);
    assert_eq!(http_get(server.http, "/readyz").await.0, 200);
    let (code, body) = http_get(server.http, "/metrics").await;
    assert_eq!(code, 200);
    for needle in [
        r#"vss_slot_calls_total{slot="0",verb="acquire"} 1"#,
        r#"vss_requests_rejected_total{verb="acquire",code="not_found"} 1"#,
        // Counted with the once-a-second tick calls, so no exact value.
        r#"vss_wasm_call_duration_seconds_count{slot_type="token-bucket"} "#,
        "vss_request_duration_seconds_bucket",
    ] {
        assert!(body.contains(needle), "missing {needle} in:\n{body}");
    }
    server.shutdown().await;
}

/// What the client port's reflection lists: exactly what that port serves.
const CLIENT_PORT_SERVICES: [&str; 4] = [
    "envoy.service.ratelimit.v3.RateLimitService",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "vss.v1.Vss",
];

#[tokio::test]
async fn grpc_reflection_lists_only_the_services_of_the_client_port() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start(SEED, Path::new("."))
        .await
        .expect("starts");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut client = ServerReflectionClient::new(channel);
    // Every listed service can be described, reflection's own too; and
    // the mesh port's services, whose file `vss.proto` imports, still are
    // when asked for by name (docs/operations.md says so).
    let described: Vec<&str> = CLIENT_PORT_SERVICES
        .iter()
        .copied()
        .chain(["vss.v1.Mesh", "vss.v1.Control"])
        .collect();
    let requests: Vec<ServerReflectionRequest> =
        std::iter::once(MessageRequest::ListServices(String::new()))
            .chain(
                described
                    .iter()
                    .map(|s| MessageRequest::FileContainingSymbol(s.to_string())),
            )
            .map(|request| ServerReflectionRequest {
                host: String::new(),
                message_request: Some(request),
            })
            .collect();
    let mut replies = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection")
        .into_inner();
    let reply = replies.message().await.expect("reply").expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply");
    };
    let mut names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    // The mesh and control APIs are served on the mesh port only.
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".Mesh") || n.ends_with(".Control")),
        "{names:?}"
    );
    assert_eq!(names, CLIENT_PORT_SERVICES);
    for symbol in described {
        let reply = replies
            .message()
            .await
            .expect("reply")
            .unwrap_or_else(|| panic!("no reply for {symbol}"));
        let Some(MessageResponse::FileDescriptorResponse(files)) = reply.message_response else {
            panic!("{symbol}: unexpected reflection reply: {reply:?}");
        };
        assert!(!files.file_descriptor_proto.is_empty(), "{symbol}");
    }
    drop(replies);
    server.shutdown().await;
}

/// grpcurl before 1.9, Postman and Evans speak only the v1alpha
/// reflection protocol.
#[tokio::test]
async fn grpc_reflection_v1alpha_lists_the_same_services_for_older_tools() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let server = TestServer::start(SEED, Path::new("."))
        .await
        .expect("starts");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut client = ServerReflectionClient::new(channel);
    let requests = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        // What `grpcurl describe` asks next: the file defining a service.
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "vss.v1.Vss".to_string(),
            )),
        },
    ];
    let mut replies = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("the v1alpha reflection service answers")
        .into_inner();
    let reply = replies.message().await.expect("reply").expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply: {reply:?}");
    };
    let mut names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, CLIENT_PORT_SERVICES);
    let reply = replies
        .message()
        .await
        .expect("reply")
        .expect("two replies");
    let Some(MessageResponse::FileDescriptorResponse(files)) = reply.message_response else {
        panic!("unexpected reflection reply: {reply:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    drop(replies);
    server.shutdown().await;
}

#[tokio::test]
async fn load_errors_name_the_slot_and_the_module_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm garbage").expect("write");
    let yaml = "slots:\n- id: 4\n  type: custom\n  custom: {module: broken.wasm}\n";
    let err = TestServer::start(yaml, dir.path())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.starts_with("slot 4: "), "{err}");
    assert!(
        err.contains(&format!(
            "{}: not a valid slot component",
            dir.path().join("broken.wasm").display()
        )),
        "{err}"
    );

    let yaml = "slots:\n- id: 5\n  type: custom\n  custom: {module: missing.wasm}\n";
    let err = TestServer::start(yaml, dir.path())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.starts_with("slot 5: cannot read custom module"),
        "{err}"
    );
    assert!(err.contains("missing.wasm"), "{err}");
}
