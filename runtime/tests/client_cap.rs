//! The per-instance client cap (`RuntimeOptions::hub_limits.max_clients`,
//! `vss-runtime --max-clients`) over real event streams: the clients within
//! the cap are served, one more is refused with an error naming the limit.

use std::path::Path;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use vss_config::SlotsConfig;
use vss_proto::v1::client_message::Kind;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{ClientMessage, Hello};
use vss_runtime::HubLimits;
use vss_runtime::{Runtime, RuntimeOptions};

const CONFIG: &str = "slots:\n- {id: 10, type: broadcast, timeout: 1s}\n";

/// Opens an event stream for `id`; the server answers once the Hello is
/// taken (or refused). Returns the sender that keeps the stream open.
async fn open_stream(
    client: &mut VssClient<tonic::transport::Channel>,
    id: &str,
) -> Result<
    (
        mpsc::Sender<ClientMessage>,
        tonic::Streaming<vss_proto::v1::Event>,
    ),
    tonic::Status,
> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(ClientMessage {
        kind: Some(Kind::Hello(Hello {
            client_id: id.into(),
            slots: vec![10],
        })),
    })
    .await
    .expect("the receiver is alive");
    let events = client.events(ReceiverStream::new(rx)).await?.into_inner();
    Ok((tx, events))
}

#[tokio::test]
async fn one_client_over_the_cap_is_refused_naming_the_limit() -> anyhow::Result<()> {
    let config = SlotsConfig::from_yaml(CONFIG)?.validate_with_base(Path::new("."))?;
    let options = RuntimeOptions {
        instance_id: "cap-0".into(),
        listen: "127.0.0.1:0".parse()?,
        http_listen: None,
        hub_limits: HubLimits {
            max_clients: 2,
            ..HubLimits::default()
        },
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::bind(options, &config).await?;
    let addr = runtime.grpc_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(runtime.serve(async {
        let _ = stopped.await;
    }));

    let mut client = VssClient::connect(format!("http://{addr}")).await?;
    let first = open_stream(&mut client, "a").await?;
    let second = open_stream(&mut client, "b").await?;
    let Err(refused) = open_stream(&mut client, "c").await else {
        panic!("a third client is over the cap of 2, yet it was served");
    };
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains('2') && refused.message().contains("--max-clients"),
        "the error names the limit: {}",
        refused.message()
    );
    // A client within the cap reconnecting replaces its own stream: still
    // served.
    let again = open_stream(&mut client, "a").await?;

    drop((first, second, again));
    let _ = stop.send(());
    server.await??;
    Ok(())
}
