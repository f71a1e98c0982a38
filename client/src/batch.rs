//! Coalescing of concurrent acquires into `AcquireBatch` calls: one
//! [`AcquireLane`] per endpoint (see `vss_wire::lane` for how a lane
//! batches).

use std::sync::OnceLock;
use std::time::Duration;

use tonic::Status;
use tonic::metadata::MetadataMap;
use vss_proto::v1::AcquireRequest;
use vss_proto::v1::acquire_outcome::Outcome;
use vss_proto::v1::vss_client::VssClient;
use vss_wire::AcquireLane;

use crate::Conn;

/// The lanes of one client, one per endpoint, shared by its clones.
#[derive(Default)]
pub(crate) struct Batcher {
    lanes: OnceLock<Vec<AcquireLane>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("lanes", &self.lanes.get())
            .finish()
    }
}

impl Batcher {
    /// Sends `req` on the lane to endpoint `lane` (see
    /// [`AcquireLane::acquire`]); the lanes start on first use.
    pub(crate) async fn submit(
        &self,
        lane: usize,
        req: AcquireRequest,
        grpcs: impl FnOnce() -> Vec<VssClient<Conn>>,
        timeout: Duration,
    ) -> Option<Result<Outcome, Status>> {
        let lanes = self.lanes.get_or_init(|| {
            grpcs()
                .into_iter()
                .map(|grpc| AcquireLane::start(grpc, timeout, MetadataMap::new()))
                .collect()
        });
        lanes.get(lane)?.acquire(req).await
    }
}
