//! The client gRPC API (`vss.v1.Vss`) on top of the slot table.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};
use vss_proto::v1::vss_server::Vss;
use vss_proto::v1::{
    AcquireReply, AcquireRequest, CallReply, CallRequest, SlotStatus, StatusReply, StatusRequest,
};

use crate::metrics::{Metrics, VerbLabels};
use crate::slots::SlotTable;

/// Serves client requests from this instance's slots.
#[derive(Debug, Clone)]
pub struct VssService {
    slots: Arc<SlotTable>,
    metrics: Metrics,
    instance: String,
}

impl VssService {
    pub fn new(slots: Arc<SlotTable>, metrics: Metrics, instance: String) -> Self {
        Self {
            slots,
            metrics,
            instance,
        }
    }

    fn timed<T>(&self, verb: &'static str, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        self.metrics
            .request_seconds
            .get_or_create(&VerbLabels { verb })
            .observe(started.elapsed().as_secs_f64());
        out
    }
}

#[tonic::async_trait]
impl Vss for VssService {
    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "acquire"))]
    async fn acquire(
        &self,
        req: Request<AcquireRequest>,
    ) -> Result<Response<AcquireReply>, Status> {
        let r = req.into_inner();
        self.timed("acquire", || self.slots.acquire(r.slot, &r.key, r.tokens))
            .map(|a| {
                Response::new(AcquireReply {
                    granted: a.granted,
                    remaining: a.remaining,
                    reset_ms: a.reset_ms,
                })
            })
            .map_err(|e| {
                tracing::debug!(error = %e, "acquire refused");
                Status::from(e)
            })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(slot = req.get_ref().slot, verb = "call"))]
    async fn call(&self, req: Request<CallRequest>) -> Result<Response<CallReply>, Status> {
        let r = req.into_inner();
        self.timed("call", || self.slots.call(r.slot, &r.op, r.payload))
            .map(|payload| Response::new(CallReply { payload }))
            .map_err(|e| {
                tracing::debug!(error = %e, "call refused");
                Status::from(e)
            })
    }

    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let slots = self
            .slots
            .summaries()
            .into_iter()
            .map(|s| SlotStatus {
                id: u32::from(s.id),
                r#type: s.type_name,
                calls: s.calls,
                errors: s.errors,
                restarts: s.restarts,
            })
            .collect();
        Ok(Response::new(StatusReply {
            instance: self.instance.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            config_generation: 1,
            slots,
        }))
    }
}
