//! Talking to the runtime pods: read their status, push slot config.
//!
//! Behind [`PodControl`] so reconcile tests replace the network with a
//! recording fake.

use std::time::Duration;

use futures_util::future::BoxFuture;
use tonic::transport::Endpoint;
use vss_proto::v1::control_client::ControlClient;
use vss_proto::v1::vss_client::VssClient;
use vss_proto::v1::{ApplyConfigRequest, StatusRequest};

/// What a pod reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodReport {
    /// Generation of the slot config in force.
    pub config_generation: u64,
    /// Leader named by the pod's routing table; empty before it has one.
    pub leader: String,
}

/// Why a pod call failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("{address} refused the call: {status}")]
    Refused {
        address: String,
        status: tonic::Status,
    },
    #[error("{address}: invalid address: {reason}")]
    Address { address: String, reason: String },
}

/// The calls the operator makes to a runtime pod.
pub trait PodControl: Send + Sync {
    /// `vss.v1.Vss/Status` on `address` (`host:port`).
    fn status(&self, address: String) -> BoxFuture<'static, Result<PodReport, PushError>>;
    /// `vss.v1.Control/ApplyConfig`; returns the generation in force after.
    fn apply_config(
        &self,
        address: String,
        config_yaml: String,
        generation: u64,
    ) -> BoxFuture<'static, Result<u64, PushError>>;
}

/// [`PodControl`] over gRPC, one short-lived connection per call: pushes
/// happen on spec changes and status reads every few seconds per cluster,
/// so pooling would buy little and hold sockets to pods that may be gone.
#[derive(Debug, Clone)]
pub struct GrpcPodControl {
    timeout: Duration,
}

impl GrpcPodControl {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    async fn connect(
        address: &str,
        timeout: Duration,
    ) -> Result<tonic::transport::Channel, PushError> {
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| PushError::Address {
                address: address.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(timeout)
            .timeout(timeout);
        endpoint
            .connect()
            .await
            .map_err(|source| PushError::Connect {
                address: address.to_string(),
                source,
            })
    }
}

impl PodControl for GrpcPodControl {
    fn status(&self, address: String) -> BoxFuture<'static, Result<PodReport, PushError>> {
        let timeout = self.timeout;
        Box::pin(async move {
            let channel = Self::connect(&address, timeout).await?;
            let reply = VssClient::new(channel)
                .status(StatusRequest {})
                .await
                .map_err(|status| PushError::Refused {
                    address: address.clone(),
                    status,
                })?
                .into_inner();
            Ok(PodReport {
                config_generation: reply.config_generation,
                leader: reply.routing.map(|r| r.leader).unwrap_or_default(),
            })
        })
    }

    fn apply_config(
        &self,
        address: String,
        config_yaml: String,
        generation: u64,
    ) -> BoxFuture<'static, Result<u64, PushError>> {
        let timeout = self.timeout;
        Box::pin(async move {
            let channel = Self::connect(&address, timeout).await?;
            let reply = ControlClient::new(channel)
                .apply_config(ApplyConfigRequest {
                    config_yaml,
                    generation,
                })
                .await
                .map_err(|status| PushError::Refused {
                    address: address.clone(),
                    status,
                })?
                .into_inner();
            Ok(reply.generation)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio_stream::wrappers::TcpListenerStream;
    use tokio_util::sync::CancellationToken;
    use tonic::{Request, Response, Status};
    use vss_proto::v1::control_server::{Control, ControlServer};
    use vss_proto::v1::vss_server::{Vss, VssServer};
    use vss_proto::v1::*;

    use super::*;

    /// A runtime pod as far as the operator sees it: a config generation
    /// that never goes back, and a routing table naming a leader.
    #[derive(Default)]
    struct FakeRuntime {
        generation: Mutex<u64>,
        config: Mutex<String>,
    }

    /// Shared handle: the test reads what the server received.
    #[derive(Clone, Default)]
    struct Fake(Arc<FakeRuntime>);

    #[tonic::async_trait]
    impl Control for Fake {
        async fn apply_config(
            &self,
            request: Request<ApplyConfigRequest>,
        ) -> Result<Response<ApplyConfigReply>, Status> {
            let req = request.into_inner();
            let mut generation = self.0.generation.lock().expect("lock");
            if req.generation < *generation {
                return Err(Status::failed_precondition(format!(
                    "generation {} is older than {}",
                    req.generation, *generation
                )));
            }
            *generation = req.generation;
            *self.0.config.lock().expect("lock") = req.config_yaml;
            Ok(Response::new(ApplyConfigReply {
                generation: *generation,
            }))
        }
    }

    fn unimplemented<T>() -> Result<Response<T>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    #[tonic::async_trait]
    impl Vss for Fake {
        async fn acquire(
            &self,
            _: Request<AcquireRequest>,
        ) -> Result<Response<AcquireReply>, Status> {
            unimplemented()
        }
        async fn acquire_batch(
            &self,
            _: Request<AcquireBatchRequest>,
        ) -> Result<Response<AcquireBatchReply>, Status> {
            unimplemented()
        }
        async fn call(&self, _: Request<CallRequest>) -> Result<Response<CallReply>, Status> {
            unimplemented()
        }
        async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
            Ok(Response::new(StatusReply {
                instance: "vss-2".into(),
                config_generation: *self.0.generation.lock().expect("lock"),
                routing: Some(RoutingTable {
                    epoch: 4,
                    leader: "vss-1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }))
        }
        async fn publish(
            &self,
            _: Request<PublishRequest>,
        ) -> Result<Response<PublishReply>, Status> {
            unimplemented()
        }
        async fn register(
            &self,
            _: Request<MembershipRequest>,
        ) -> Result<Response<MembershipReply>, Status> {
            unimplemented()
        }
        async fn deregister(
            &self,
            _: Request<MembershipRequest>,
        ) -> Result<Response<MembershipReply>, Status> {
            unimplemented()
        }
        type EventsStream = tokio_stream::Empty<Result<Event, Status>>;
        async fn events(
            &self,
            _: Request<tonic::Streaming<ClientMessage>>,
        ) -> Result<Response<Self::EventsStream>, Status> {
            unimplemented()
        }
        type WatchRoutingStream = tokio_stream::Empty<Result<vss_proto::v1::RoutingUpdate, Status>>;
        async fn watch_routing(
            &self,
            _: Request<vss_proto::v1::WatchRoutingRequest>,
        ) -> Result<Response<Self::WatchRoutingStream>, Status> {
            unimplemented()
        }
        async fn increment(
            &self,
            _: Request<vss_proto::v1::CounterChange>,
        ) -> Result<Response<vss_proto::v1::CounterValue>, Status> {
            unimplemented()
        }
        async fn decrement(
            &self,
            _: Request<vss_proto::v1::CounterChange>,
        ) -> Result<Response<vss_proto::v1::CounterValue>, Status> {
            unimplemented()
        }
        async fn read_counter(
            &self,
            _: Request<vss_proto::v1::ReadCounterRequest>,
        ) -> Result<Response<vss_proto::v1::CounterValue>, Status> {
            unimplemented()
        }
        async fn set(
            &self,
            _: Request<vss_proto::v1::SetRequest>,
        ) -> Result<Response<vss_proto::v1::WriteReply>, Status> {
            unimplemented()
        }
        async fn get(
            &self,
            _: Request<vss_proto::v1::GetRequest>,
        ) -> Result<Response<vss_proto::v1::GetReply>, Status> {
            unimplemented()
        }
        async fn delete(
            &self,
            _: Request<vss_proto::v1::DeleteRequest>,
        ) -> Result<Response<vss_proto::v1::WriteReply>, Status> {
            unimplemented()
        }
        async fn list_keys(
            &self,
            _: Request<vss_proto::v1::ListKeysRequest>,
        ) -> Result<Response<vss_proto::v1::ListKeysReply>, Status> {
            unimplemented()
        }
        async fn announce(
            &self,
            _: Request<vss_proto::v1::AnnounceRequest>,
        ) -> Result<Response<vss_proto::v1::AnnounceReply>, Status> {
            unimplemented()
        }
        async fn withdraw(
            &self,
            _: Request<vss_proto::v1::WithdrawRequest>,
        ) -> Result<Response<vss_proto::v1::WithdrawReply>, Status> {
            unimplemented()
        }
        async fn list_services(
            &self,
            _: Request<vss_proto::v1::ListServicesRequest>,
        ) -> Result<Response<vss_proto::v1::ListServicesReply>, Status> {
            unimplemented()
        }
        type WatchServicesStream =
            tokio_stream::Empty<Result<vss_proto::v1::ServiceChange, Status>>;
        async fn watch_services(
            &self,
            _: Request<vss_proto::v1::ListServicesRequest>,
        ) -> Result<Response<Self::WatchServicesStream>, Status> {
            unimplemented()
        }
        type WatchTicksStream = tokio_stream::Empty<Result<vss_proto::v1::Tick, Status>>;
        async fn watch_ticks(
            &self,
            _: Request<vss_proto::v1::WatchTicksRequest>,
        ) -> Result<Response<Self::WatchTicksStream>, Status> {
            unimplemented()
        }
    }

    #[tokio::test]
    async fn reads_status_and_pushes_config_over_grpc() {
        let fake = Fake::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let stop = CancellationToken::new();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ControlServer::new(fake.clone()))
                .add_service(VssServer::new(fake.clone()))
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    stop.clone().cancelled_owned(),
                ),
        );
        let pods = GrpcPodControl::new(Duration::from_secs(5));

        let report = pods.status(address.clone()).await.expect("status");
        assert_eq!(
            report,
            PodReport {
                config_generation: 0,
                leader: "vss-1".into()
            }
        );
        let applied = pods
            .apply_config(address.clone(), "slots: []\n".into(), 7)
            .await
            .expect("applied");
        assert_eq!(applied, 7);
        assert_eq!(*fake.0.config.lock().expect("lock"), "slots: []\n");
        assert_eq!(
            pods.status(address.clone())
                .await
                .expect("status")
                .config_generation,
            7
        );

        // A pod never goes back to an older generation.
        match pods
            .apply_config(address.clone(), "slots: []\n".into(), 6)
            .await
        {
            Err(PushError::Refused { status, .. }) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }

        stop.cancel();
        server.await.expect("joined").expect("server ran");
    }

    #[tokio::test]
    async fn an_unreachable_pod_is_a_connect_error() {
        // Bind then drop: the port is free and nothing listens on it.
        let address = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").to_string()
        };
        let pods = GrpcPodControl::new(Duration::from_secs(2));
        match pods.status(address.clone()).await {
            Err(PushError::Connect { address: a, .. }) => assert_eq!(a, address),
            other => panic!("expected a connect error, got {other:?}"),
        }
    }
}
