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
