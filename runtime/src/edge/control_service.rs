//! The control API (`vss.v1.Control`) the operator calls: a new slot
//! configuration, checked and handed to the [`Node`].

use std::path::PathBuf;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use vss_proto::v1::control_server::Control;
use vss_proto::v1::{ApplyConfigReply, ApplyConfigRequest};

use crate::core::node::Node;
use crate::core::slot_table::ReloadError;

/// Serves the control API.
#[derive(Debug, Clone)]
pub struct ControlService {
    node: Arc<Node>,
    /// Folder that relative custom module paths are resolved against, and
    /// that they may not leave.
    module_root: PathBuf,
}

impl ControlService {
    pub fn new(node: Arc<Node>, module_root: PathBuf) -> Self {
        Self { node, module_root }
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    #[tracing::instrument(skip_all, fields(generation = req.get_ref().generation))]
    async fn apply_config(
        &self,
        req: Request<ApplyConfigRequest>,
    ) -> Result<Response<ApplyConfigReply>, Status> {
        let r = req.into_inner();
        if r.generation == 0 {
            return Err(Status::invalid_argument("generation: must be at least 1"));
        }
        let config = vss_config::SlotsConfig::from_yaml(&r.config_yaml)
            .map_err(|e| Status::invalid_argument(format!("config_yaml: {e}")))?
            .validate_confined(&self.module_root)
            .map_err(|e| Status::invalid_argument(format!("config_yaml: {e}")))?;
        match self.node.apply_config(config, r.generation).await {
            Ok(generation) => Ok(Response::new(ApplyConfigReply { generation })),
            Err(e @ (ReloadError::Stale { .. } | ReloadError::Conflict { .. })) => {
                Err(Status::failed_precondition(e.to_string()))
            }
            Err(e @ ReloadError::Load(_)) => Err(Status::invalid_argument(e.to_string())),
            Err(e @ ReloadError::Interrupted(_)) => Err(Status::internal(e.to_string())),
        }
    }
}
