//! What guards the client port: tokens, TLS and the per-connection
//! limits, against a runtime serving on loopback and `vss-client` as users
//! call it.

mod common;
mod pki;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestServer, http_get};
use pki::{Ca, write_atomic};
use tonic::Code;
use vss_client::{Acquire, Client, ClientError, Security};
use vss_runtime::ClientLimits;
use vss_runtime::ClientTlsFiles;

const SLOTS: &str = "slots:
- {id: 0, type: token-bucket, bucketSize: 1000, period: second, refreshRate: 1000,
   rls: [{domain: edge, name: per-user, descriptor: [{key: user}]}]}
- {id: 1, type: token-bucket, bucketSize: 1000, period: second, refreshRate: 1000,
   rls: [{domain: edge, name: per-path, descriptor: [{key: path}]}]}
- {id: 10, type: broadcast, timeout: 1s}
";

const CHECKOUT: &str = "checkout-token-0123456789";
const NOTIFIER: &str = "notifier-token-0123456789";
const OPS: &str = "ops-token-0123456789abcdef";

fn tokens(with_checkout: bool) -> String {
    let checkout = format!(
        "  - name: checkout\n    token: {CHECKOUT}\n    permissions: [acquire]\n    slots: [0]\n"
    );
    format!(
        "tokens:\n{}  - name: notifier\n    token: {NOTIFIER}\n    permissions: [publish, subscribe]\n    slots: [10]\n    clients: [listener*]\n  - name: ops\n    token: {OPS}\n    permissions: [admin]\n",
        if with_checkout { checkout.as_str() } else { "" }
    )
}

async fn with_tokens(dir: &Path) -> TestServer {
    let file = dir.join("tokens.yaml");
    write_atomic(&file, &tokens(true));
    TestServer::start_with(SLOTS, dir, |o| o.client_tokens = Some(file))
        .await
        .expect("server starts")
}

fn client(server: &TestServer, security: Security) -> Client {
    Client::with_security(
        &[server.grpc.to_string()],
        Duration::from_secs(2),
        &security,
    )
    .expect("client")
}

fn with_token(server: &TestServer, token: &str) -> Client {
    client(
        server,
        Security {
            token: Some(token.to_string()),
            ..Security::default()
        },
    )
}

fn refusal<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (Code, String) {
    match result {
        Err(ClientError::Server { code, message, .. }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_token_may_do_what_it_grants_on_its_slots_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = with_tokens(dir.path()).await;

    let (code, message) = refusal(server.client().acquire(0, Acquire::default()).await);
    assert_eq!(code, Code::Unauthenticated, "{message}");
    assert!(message.starts_with("no token"), "{message}");
    let (code, _) = refusal(
        with_token(&server, "not-a-token-anyone-has")
            .acquire(0, Acquire::default())
            .await,
    );
    assert_eq!(code, Code::Unauthenticated);

    let checkout = with_token(&server, CHECKOUT);
    assert!(
        checkout
            .acquire(0, Acquire::default())
            .await
            .expect("granted")
            .granted
            > 0
    );
    let (code, message) = refusal(checkout.acquire(1, Acquire::default()).await);
    assert_eq!(code, Code::PermissionDenied);
    assert_eq!(
        message,
        "token \"checkout\" may not acquire on slot 1: it grants acquire on slots 0"
    );
    // The case: a token without `publish` cannot publish.
    let (code, message) = refusal(checkout.publish(10, b"hi", "checkout-1").await);
    assert_eq!(code, Code::PermissionDenied);
    assert!(message.contains("may not publish on slot 10"), "{message}");
    let (code, _) = refusal(checkout.subscribe("checkout-1", &[]).await);
    assert_eq!(code, Code::PermissionDenied);
    let statuses = checkout.status().await;
    assert!(
        matches!(&statuses[0].1, Err(e) if e.code() == Some(Code::PermissionDenied)),
        "{statuses:?}"
    );

    let notifier = with_token(&server, NOTIFIER);
    let mut subscription = notifier
        .subscribe("listener", &[])
        .await
        .expect("may subscribe");
    let reader = tokio::spawn(async move {
        let delivery = tokio::time::timeout(Duration::from_secs(5), subscription.next())
            .await
            .expect("a delivery within 5 s")
            .expect("subscription open");
        delivery.ack().await.expect("ack");
        delivery.payload
    });
    let published = notifier
        .publish(10, b"hi", "notifier-1")
        .await
        .expect("may publish");
    assert_eq!(published.delivered, 1, "{published:?}");
    assert_eq!(reader.await.expect("reader"), b"hi");
    let (code, _) = refusal(notifier.subscribe("listener-2", &[11]).await);
    assert_eq!(code, Code::PermissionDenied);
    // A token limited to its own client ids cannot take over another
    // client's stream by naming it.
    let (code, message) = refusal(notifier.subscribe("checkout-1", &[]).await);
    assert_eq!(code, Code::PermissionDenied);
    assert_eq!(
        message,
        "token \"notifier\" may not subscribe as client \"checkout-1\": it allows clients listener*"
    );

    let ops = with_token(&server, OPS);
    assert!(ops.status().await[0].1.is_ok());

    let (_, metrics) = http_get(server.http, "/metrics").await;
    for series in [
        "vss_access_refused_total{reason=\"unauthenticated\",permission=\"acquire\"} 2",
        "vss_access_refused_total{reason=\"permission_denied\",permission=\"publish\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    server.shutdown().await;
}

// vss-client coalesces concurrent acquires into one AcquireBatch: a slot
// the token may not acquire on fails its own acquires only.
#[tokio::test]
async fn a_batch_refuses_only_the_acquires_on_slots_the_token_lacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = with_tokens(dir.path()).await;
    let checkout = with_token(&server, CHECKOUT);
    let calls = (0..200u32).map(|i| {
        let c = checkout.clone();
        async move { (i % 2, c.acquire(i % 2, Acquire::default()).await) }
    });
    let results = futures_util::future::join_all(calls).await;
    for (slot, result) in results {
        match slot {
            0 => assert!(result.expect("slot 0 granted").granted > 0),
            _ => assert_eq!(refusal(result).0, Code::PermissionDenied),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_removed_token_stops_working_while_the_others_keep_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = with_tokens(dir.path()).await;
    let checkout = with_token(&server, CHECKOUT);
    let notifier = with_token(&server, NOTIFIER);
    checkout
        .acquire(0, Acquire::default())
        .await
        .expect("granted before");

    write_atomic(&dir.path().join("tokens.yaml"), &tokens(false));
    let started = Instant::now();
    loop {
        match checkout.acquire(0, Acquire::default()).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(Code::Unauthenticated) => break,
            Err(e) => panic!("{e}"),
        }
        notifier
            .publish(10, b"still", "notifier-1")
            .await
            .expect("the other tokens keep working");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the removed token still works after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("token refused {:?} after its removal", started.elapsed());

    // A file that does not parse leaves the tokens in force.
    write_atomic(&dir.path().join("tokens.yaml"), "tokens: [oops");
    tokio::time::sleep(Duration::from_secs(3)).await;
    notifier
        .publish(10, b"still", "notifier-1")
        .await
        .expect("tokens in force stay");
    let (_, metrics) = http_get(server.http, "/metrics").await;
    assert!(
        metrics.contains("vss_access_reload_failures_total 1"),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_token_file_stops_the_start_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tokens.yaml");
    write_atomic(
        &file,
        "tokens:\n  - {name: a, token: short, permissions: [acquire]}\n",
    );
    let e = TestServer::start_with(SLOTS, dir.path(), |o| o.client_tokens = Some(file.clone()))
        .await
        .err()
        .expect("refused");
    assert_eq!(
        e.to_string(),
        format!(
            "--client-tokens {}: tokens[0].token: 5 bytes, at least 16 needed",
            file.display()
        )
    );
}

#[tokio::test]
async fn client_tls_with_client_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("clients");
    let server_leaf = ca.leaf("vss");
    let path = |f: &str| dir.path().join(f);
    write_atomic(&path("cert.pem"), &server_leaf.cert);
    write_atomic(&path("key.pem"), &server_leaf.key);
    write_atomic(&path("ca.pem"), &ca.pem());
    let server = TestServer::start_with(SLOTS, dir.path(), |o| {
        o.client_tls = Some(ClientTlsFiles {
            cert: path("cert.pem"),
            key: path("key.pem"),
            ca: Some(path("ca.pem")),
        });
    })
    .await
    .expect("server starts");

    let app = ca.leaf("app");
    let trusted = client(
        &server,
        Security {
            ca_pem: Some(ca.pem().into_bytes()),
            identity_pem: Some((app.cert.into_bytes(), app.key.into_bytes())),
            token: None,
        },
    );
    assert!(
        trusted
            .acquire(0, Acquire::default())
            .await
            .expect("TLS with a client certificate")
            .granted
            > 0
    );

    let no_certificate = client(
        &server,
        Security {
            ca_pem: Some(ca.pem().into_bytes()),
            ..Security::default()
        },
    );
    let e = no_certificate
        .acquire(0, Acquire::default())
        .await
        .expect_err("refused without a client certificate");
    assert!(matches!(e, ClientError::Unreachable(_)), "{e}");
    // The server answers a plaintext client's preface with a TLS alert,
    // which the client reads as a broken HTTP/2 connection.
    server
        .client()
        .acquire(0, Acquire::default())
        .await
        .expect_err("plaintext refused");

    let other = Ca::new("another");
    let e = client(
        &server,
        Security {
            ca_pem: Some(other.pem().into_bytes()),
            ..Security::default()
        },
    )
    .acquire(0, Acquire::default())
    .await
    .expect_err("the server's certificate is not signed by this CA");
    assert!(matches!(e, ClientError::Unreachable(_)), "{e}");

    let (_, metrics) = http_get(server.http, "/metrics").await;
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("vss_client_tls_handshake_failures_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(failures.is_some_and(|n| n >= 2), "{metrics}");
    server.shutdown().await;
}

#[tokio::test]
async fn one_connection_cannot_start_more_than_its_calls_per_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(SLOTS, dir.path(), |o| {
        o.client_limits = ClientLimits {
            calls_per_second: 20,
            ..ClientLimits::default()
        };
    })
    .await
    .expect("server starts");
    let greedy = server.client();
    let mut refused = None;
    for _ in 0..100 {
        if let Err(e) = greedy.acquire(0, Acquire::default()).await {
            refused = Some(e);
            break;
        }
    }
    let (code, message) = refusal(Err::<(), _>(refused.expect("refused within 100 calls")));
    assert_eq!(code, Code::ResourceExhausted);
    assert!(
        message.contains("more than 20 calls in the last second (--client-max-calls-per-second)"),
        "{message}"
    );
    // Another connection has its own budget.
    server
        .client()
        .acquire(0, Acquire::default())
        .await
        .expect("another connection is served");
    let (_, metrics) = http_get(server.http, "/metrics").await;
    assert!(
        !metrics.contains("vss_client_calls_refused_total 0\n"),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_client_port_holds_at_most_its_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(SLOTS, dir.path(), |o| {
        o.client_limits = ClientLimits {
            max_connections: 2,
            ..ClientLimits::default()
        };
    })
    .await
    .expect("server starts");
    let first = server.client();
    let second = server.client();
    for c in [&first, &second] {
        c.acquire(0, Acquire::default())
            .await
            .expect("within the limit");
    }
    let e = server
        .client()
        .acquire(0, Acquire::default())
        .await
        .expect_err("a third connection is closed");
    assert!(matches!(e, ClientError::Unreachable(_)), "{e}");
    let (_, metrics) = http_get(server.http, "/metrics").await;
    assert!(metrics.contains("vss_client_connections 2\n"), "{metrics}");
    assert!(
        !metrics.contains("vss_client_connections_refused_total 0\n"),
        "{metrics}"
    );
    // A closed connection gives its place back.
    drop(second);
    let started = Instant::now();
    loop {
        match server.client().acquire(0, Acquire::default()).await {
            Ok(_) => break,
            Err(e) if started.elapsed() > Duration::from_secs(10) => {
                panic!("no place freed within 10 s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    server.shutdown().await;
}

// Envoy's rate limit service is on the client port and takes its tokens.
#[tokio::test]
async fn the_rate_limit_service_takes_the_client_tokens() {
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;

    let dir = tempfile::tempdir().expect("tempdir");
    let server = with_tokens(dir.path()).await;
    let mut envoy = RateLimitServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .expect("connect");
    let call = |key: &str, token: Option<&str>| {
        let mut req = tonic::Request::new(RateLimitRequest {
            domain: "edge".into(),
            descriptors: vec![RateLimitDescriptor {
                entries: vec![Entry {
                    key: key.into(),
                    value: "v".into(),
                }],
                ..Default::default()
            }],
            hits_addend: 1,
        });
        if let Some(token) = token {
            let value = format!("Bearer {token}").parse().expect("ascii");
            req.metadata_mut().insert("authorization", value);
        }
        req
    };
    let e = envoy
        .should_rate_limit(call("user", None))
        .await
        .expect_err("no token");
    assert_eq!(e.code(), Code::Unauthenticated);
    envoy
        .should_rate_limit(call("user", Some(CHECKOUT)))
        .await
        .expect("checkout may acquire on slot 0, the per-user rule's");
    let e = envoy
        .should_rate_limit(call("path", Some(CHECKOUT)))
        .await
        .expect_err("the per-path rule is slot 1's");
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().contains("may not acquire on slot 1"),
        "{}",
        e.message()
    );
    server.shutdown().await;
}
