//! A runnable example of the Rust client against a local cluster
//! (`vss dev`, examples/slots.yaml): it takes tokens from a limiter slot,
//! shows a request error, publishes a broadcast to a subscriber of its
//! own, and counts on a counter slot.
//!
//! ```sh
//! cargo run -p vss-client --example acquire -- 127.0.0.1:7700,127.0.0.1:7710,127.0.0.1:7720
//! ```

use std::time::Duration;

use vss_client::{Acquire, Client, ClientError};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7700,127.0.0.1:7710,127.0.0.1:7720".into());
    let endpoints: Vec<&str> = endpoints.split(',').collect();
    let client = Client::new(&endpoints)?;

    // Slot 0 of examples/slots.yaml: a bucket of 200, 100 per second.
    let grant = client.acquire(0, Acquire::default()).await?;
    println!(
        "acquire slot 0: granted {} (remaining {}, reset in {} ms)",
        grant.granted, grant.remaining, grant.reset_ms
    );
    // Slot 1: a bucket per key; ask for 3 tokens.
    let asked = Acquire {
        key: Some("alice".into()),
        tokens: Some(3),
    };
    let grant = client.acquire(1, asked).await?;
    println!("acquire slot 1, key alice: granted {}", grant.granted);

    // A request error names the slot and the limit, and is not retried on
    // another instance.
    match client.acquire(42, Acquire::default()).await {
        Err(ClientError::Server { code, message, .. }) => {
            println!("acquire slot 42: {code:?}: {message}");
        }
        other => println!("acquire slot 42: {other:?}"),
    }

    // Slot 10 is a broadcast slot: subscribe, publish, receive once. The
    // subscriber acknowledges in a task of its own, while the publish
    // waits: a publish returns once every delivery is acknowledged (or the
    // slot's timeout passed).
    let mut events = client.subscribe("example-subscriber", &[10]).await?;
    tokio::time::sleep(Duration::from_millis(200)).await; // let every instance see the stream
    let listener = tokio::spawn(async move {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
        let payload = match event {
            Ok(Some(event)) => {
                let _ = event.ack().await;
                Some(event.payload)
            }
            _ => None,
        };
        events.close().await; // sends the acks given, then closes every stream
        payload
    });
    let published = client
        .publish(10, b"hello from Rust", "example-publisher")
        .await?;
    if let Some(payload) = listener.await? {
        println!(
            "received {:?} on slot 10",
            String::from_utf8_lossy(&payload)
        );
    }
    println!(
        "published: delivered {}, failed {}",
        published.delivered, published.failed
    );

    // Slot 20 is a counter, kept on every instance.
    let value = client.increment(20, 1).await?;
    println!("counter slot 20: {}", value.value);
    Ok(())
}
