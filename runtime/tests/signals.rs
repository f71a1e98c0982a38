//! Signal slots over real gRPC on loopback, with real client event streams.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestServer, http_get, server_error};
use tokio::task::JoinHandle;
use tonic::Code;
use vss_client::Client;

const SLOTS: &str = "slots:
- {id: 0, type: token-bucket, bucketSize: 10, period: second}
- {id: 10, type: broadcast, timeout: 300ms}
- {id: 11, type: multicast, timeout: 300ms, deregTries: 2}
- {id: 12, type: random, timeout: 600ms, deregTries: 5}
- {id: 13, type: multicast, timeout: 1s}
";

/// What a listener got: (slot, payload, publisher) per event.
type Received = Arc<Mutex<Vec<(u32, Vec<u8>, String)>>>;

/// A subscribed client that records what it receives and, if `acks`,
/// acknowledges it.
struct Listener {
    received: Received,
    task: JoinHandle<()>,
}

impl Listener {
    async fn start(client: &Client, id: &str, slots: &[u32], acks: bool) -> Listener {
        let mut sub = client.subscribe(id, slots).await.expect("subscribe");
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = sub.next().await {
                sink.lock().expect("lock").push((
                    event.slot,
                    event.payload.clone(),
                    event.publisher.clone(),
                ));
                if acks {
                    let _ = event.ack().await;
                }
            }
        });
        Listener { received, task }
    }

    fn count(&self) -> usize {
        self.received.lock().expect("lock").len()
    }

    /// True once the stream has ended (e.g. the server dropped it).
    fn ended(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server() -> (TestServer, Client) {
    let server = TestServer::start(SLOTS, Path::new("."))
        .await
        .expect("starts");
    let client = server.client();
    (server, client)
}

#[tokio::test]
async fn broadcast_reaches_every_other_client_and_not_the_sender() {
    let (server, client) = server().await;
    let a = Listener::start(&client, "a", &[], true).await;
    let b = Listener::start(&client, "b", &[], true).await;
    let c = Listener::start(&client, "c", &[10], true).await;
    let elsewhere = Listener::start(&client, "d", &[99], true).await;

    let published = client
        .publish(10, b"6f1c-uuid", "a")
        .await
        .expect("publish");
    assert_eq!((published.delivered, published.failed), (2, 0));
    assert_eq!(published.taken_by, None);
    assert_eq!(a.count(), 0, "the sender does not get its own message");
    assert_eq!(
        b.received.lock().expect("lock")[0],
        (10, b"6f1c-uuid".to_vec(), "a".to_string())
    );
    assert_eq!(c.count(), 1);
    assert_eq!(
        elsewhere.count(),
        0,
        "a client listening to other slots only"
    );

    let anonymous = client.publish(10, b"x", "").await.expect("publish");
    assert_eq!(
        anonymous.delivered, 3,
        "no publisher: everyone hearing slot 10"
    );

    let (_, metrics) = http_get(server.http, "/metrics").await;
    for needle in [
        r#"vss_deliveries_total{slot="10",outcome="delivered"} 5"#,
        "vss_connected_clients 4",
        r#"vss_slot_calls_total{slot="10",verb="publish"} 2"#,
    ] {
        assert!(metrics.contains(needle), "missing {needle} in:\n{metrics}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn multicast_reaches_registered_clients_only() {
    let (server, client) = server().await;
    let a = Listener::start(&client, "a", &[], true).await;
    let b = Listener::start(&client, "b", &[], true).await;
    let c = Listener::start(&client, "c", &[], true).await;
    let empty = client.publish(11, b"m0", "").await.expect("publish");
    assert_eq!((empty.delivered, empty.failed), (0, 0), "no members yet");

    client.register(11, "a").await.expect("register");
    client.register(11, "c").await.expect("register");
    let p = client.publish(11, b"m1", "").await.expect("publish");
    assert_eq!((p.delivered, p.failed), (2, 0));
    assert_eq!((a.count(), b.count(), c.count()), (1, 0, 1));

    client.deregister(11, "a").await.expect("deregister");
    let p = client.publish(11, b"m2", "").await.expect("publish");
    assert_eq!((p.delivered, p.failed), (1, 0));
    assert_eq!((a.count(), c.count()), (1, 2));
    server.shutdown().await;
}

#[tokio::test]
async fn random_delivers_each_message_to_exactly_one_member_and_spreads_them() {
    let (server, client) = server().await;
    let members = ["a", "b", "c"];
    let mut listeners = Vec::new();
    for m in members {
        listeners.push(Listener::start(&client, m, &[], true).await);
        client.register(12, m).await.expect("register");
    }
    let outsider = Listener::start(&client, "outsider", &[], true).await;

    const MESSAGES: usize = 300;
    let mut taken: HashMap<String, usize> = HashMap::new();
    for i in 0..MESSAGES {
        let p = client
            .publish(12, format!("job-{i}").as_bytes(), "")
            .await
            .expect("publish");
        assert_eq!((p.delivered, p.failed), (1, 0), "message {i}");
        *taken
            .entry(p.taken_by.expect("someone took it"))
            .or_default() += 1;
    }
    let received: usize = listeners.iter().map(Listener::count).sum();
    assert_eq!(received, MESSAGES, "exactly one delivery per message");
    assert_eq!(outsider.count(), 0);
    for (m, l) in members.iter().zip(&listeners) {
        assert_eq!(
            taken.get(*m).copied().unwrap_or(0),
            l.count(),
            "taken_by matches what {m} got"
        );
    }
    // Chi-square against a uniform spread; 13.82 is the 0.1% critical value
    // for 2 degrees of freedom, so a fair picker fails this 1 time in 1000.
    let expected = MESSAGES as f64 / members.len() as f64;
    let chi2: f64 = members
        .iter()
        .map(|m| {
            let o = taken.get(*m).copied().unwrap_or(0) as f64;
            (o - expected).powi(2) / expected
        })
        .sum();
    assert!(
        chi2 < 13.82,
        "deliveries are not spread evenly: {taken:?} (chi2 {chi2:.1})"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn random_moves_on_when_a_member_does_not_ack() {
    let (server, client) = server().await;
    let _silent = Listener::start(&client, "silent", &[], false).await;
    let worker = Listener::start(&client, "worker", &[], true).await;
    client.register(12, "silent").await.expect("register");
    client.register(12, "worker").await.expect("register");
    for i in 0..20 {
        let p = client.publish(12, b"job", "").await.expect("publish");
        assert_eq!(p.taken_by.as_deref(), Some("worker"), "message {i}: {p:?}");
        assert_eq!(p.delivered, 1);
    }
    assert_eq!(worker.count(), 20);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_acks_is_counted_failed_then_deregistered() {
    let (server, client) = server().await;
    let _silent = Listener::start(&client, "silent", &[], false).await;
    let good = Listener::start(&client, "good", &[], true).await;
    client.register(11, "silent").await.expect("register");
    client.register(11, "good").await.expect("register");

    let started = std::time::Instant::now();
    let first = client.publish(11, b"m1", "").await.expect("publish");
    assert_eq!((first.delivered, first.failed), (1, 1));
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "waited for the timeout"
    );
    let second = client.publish(11, b"m2", "").await.expect("publish");
    assert_eq!((second.delivered, second.failed), (1, 1));
    // deregTries: 2 — two failures in a row removed "silent".
    let third = client.publish(11, b"m3", "").await.expect("publish");
    assert_eq!((third.delivered, third.failed), (1, 0));
    assert_eq!(good.count(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stops_taking_events_is_disconnected() {
    let (server, client) = server().await;
    let silent = Listener::start(&client, "silent", &[], false).await;
    let good = Listener::start(&client, "good", &[], true).await;
    for _ in 0..3 {
        let p = client.publish(10, b"tick", "").await.expect("publish");
        assert_eq!((p.delivered, p.failed), (1, 1));
    }
    // Three failures in a row: the server closed the silent client's stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !silent.ended() {
        assert!(
            std::time::Instant::now() < deadline,
            "silent client still connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let p = client.publish(10, b"tick", "").await.expect("publish");
    assert_eq!(
        (p.delivered, p.failed),
        (1, 0),
        "only the good client is left"
    );
    assert_eq!(good.count(), 4);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_signal_requests_get_clear_errors() {
    let (server, client) = server().await;
    let (code, msg) = server_error(client.publish(10, &[b'x'; 37], "").await);
    assert_eq!(
        (code, msg.as_str()),
        (
            Code::InvalidArgument,
            "`message` is 37 bytes, at most 36 allowed"
        )
    );

    let (code, msg) = server_error(client.register(10, "a").await);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(
        msg.contains("register and deregister apply to multicast and random slots"),
        "{msg}"
    );

    let (code, msg) = server_error(client.publish(0, b"x", "").await);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(msg.starts_with("slot 0 is a token-bucket slot"), "{msg}");

    let (code, msg) = server_error(client.register(11, "").await);
    assert_eq!(
        (code, msg.as_str()),
        (
            Code::InvalidArgument,
            "`client_id` must be 1-128 bytes, got 0"
        )
    );

    let (code, msg) = server_error(client.subscribe("", &[]).await.map(|_| ()));
    assert_eq!(
        (code, msg.as_str()),
        (
            Code::InvalidArgument,
            "`client_id` must be 1-128 bytes, got 0"
        )
    );

    let (code, _) = server_error(client.publish(50, b"x", "").await);
    assert_eq!(code, Code::NotFound);
    server.shutdown().await;
}

#[tokio::test]
async fn deliveries_asked_for_by_tick_reach_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("ticker.wasm"),
        vss_builtin_slots::testing::MISBEHAVE,
    )
    .expect("write");
    let yaml = "slots:\n- id: 7\n  type: custom\n  custom: {module: ticker.wasm, config: {tickMessage: tick-tock}}\n";
    let server = TestServer::start(yaml, dir.path()).await.expect("starts");
    let client = server.client();
    let listener = Listener::start(&client, "l", &[], true).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while listener.count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no tick delivery within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (slot, payload, _) = listener.received.lock().expect("lock")[0].clone();
    assert_eq!((slot, payload.as_slice()), (7, b"tick-tock".as_slice()));
    server.shutdown().await;
}

#[tokio::test]
async fn a_publish_may_outlast_the_client_call_timeout_up_to_the_slot_timeout() {
    let (server, _) = server().await;
    // Calls time out after 200 ms; a publish must still wait for slot 13's 1 s.
    let client = Client::with_timeout(&[server.grpc.to_string()], Duration::from_millis(200))
        .expect("client");
    let _silent = Listener::start(&client, "silent", &[], false).await;
    client.register(13, "silent").await.expect("register");
    let started = std::time::Instant::now();
    let p = client
        .publish(13, b"m", "")
        .await
        .expect("publish waits for the slot timeout");
    assert_eq!((p.delivered, p.failed), (0, 1));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_repeated_message_id_is_carried_out_once() {
    let (server, client) = server().await;
    let b = Listener::start(&client, "b", &[10], true).await;
    let mut grpc = vss_proto::v1::vss_client::VssClient::connect(format!("http://{}", server.grpc))
        .await
        .expect("connect");
    let publish = vss_proto::v1::PublishRequest {
        slot: 10,
        message: b"once".to_vec(),
        client_id: String::new(),
        message_id: 0xfeed,
    };
    let first = grpc
        .publish(publish.clone())
        .await
        .expect("publish")
        .into_inner();
    let again = grpc
        .publish(publish.clone())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(
        first.message_id, 0xfeed,
        "the client's id is the message id"
    );
    assert_eq!(again, first, "a retry gets the first outcome");
    assert_eq!(b.count(), 1, "and is not delivered again");

    // Another id is another message.
    let other = grpc
        .publish(vss_proto::v1::PublishRequest {
            message_id: 0xbeef,
            ..publish
        })
        .await
        .expect("publish")
        .into_inner();
    assert_eq!((other.message_id, other.delivered), (0xbeef, 1));
    assert_eq!(b.count(), 2);
    server.shutdown().await;
}
