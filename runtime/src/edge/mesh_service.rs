//! The mesh API (`vss.v1.Mesh`) other instances call, and the control API
//! (`vss.v1.Control`) the operator calls.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Response, Status};
use vss_proto::v1::control_server::Control;
use vss_proto::v1::deliver_request::Recipients as WireRecipients;
use vss_proto::v1::mesh_server::Mesh;
use vss_proto::v1::{
    ApplyConfigReply, ApplyConfigRequest, DeliverReply, DeliverRequest, DeliveryOutcome,
    FetchStateReply, FetchStateRequest, HeartbeatReply, HeartbeatRequest, InstallRoutingReply,
    ReplicateReply, ReplicateRequest, RoutingTable as WireTable,
};

use crate::core::cluster::{Cluster, RoutingTable};
use crate::core::signals::{Signals, Targets};
use crate::core::slot_table::ReloadError;
use crate::edge::tls::x509;

/// Longest a peer may ask this instance to wait for acknowledgements.
const MAX_DELIVER_TIMEOUT: Duration = Duration::from_secs(61);

/// Serves the mesh API.
#[derive(Debug, Clone)]
pub struct MeshService {
    cluster: Arc<Cluster>,
    signals: Arc<Signals>,
}

impl MeshService {
    pub fn new(cluster: Arc<Cluster>, signals: Arc<Signals>) -> Self {
        Self { cluster, signals }
    }

    /// Refuses calls from instances outside the cluster, and with mTLS,
    /// calls whose certificate does not name the instance they claim to
    /// come from; logged, since it means a misconfigured or foreign caller.
    fn check_sender(&self, from: &str, certs: Option<&Certs>, what: &str) -> Result<(), Status> {
        if !self.cluster.is_member(from) || from == self.cluster.me() {
            self.refused(
                what,
                &format!("sender {from:?} is not a peer of this cluster"),
            );
            return Err(Status::permission_denied(format!(
                "{what}: {from:?} is not a peer of this cluster"
            )));
        }
        if let Some(names) = certs.and_then(|c| c.first()).map(x509::dns_names)
            && !names_instance(&names, from)
        {
            let why = format!(
                "the client certificate names {names:?}, not instance {from:?} (a DNS SAN `{from}` or `{from}.<domain>`)"
            );
            self.refused(what, &why);
            return Err(Status::permission_denied(format!("{what}: {why}")));
        }
        Ok(())
    }

    fn refused(&self, what: &str, why: &str) {
        self.cluster.metrics().cluster.refused_mesh_messages.inc();
        tracing::warn!(what, why, "refused a mesh message");
    }
}

type Certs = Vec<CertificateDer<'static>>;

/// The certificates the caller presented, on a TLS mesh port.
fn peer_certs<T>(req: &Request<T>) -> Option<Arc<Certs>> {
    req.extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
}

/// Whether a certificate's DNS names name instance `id`: as it is, or as
/// the first label of its pod's DNS name (`<id>.<headless>.<ns>.svc`).
fn names_instance(names: &[String], id: &str) -> bool {
    names
        .iter()
        .any(|n| n == id || n.strip_prefix(id).is_some_and(|rest| rest.starts_with('.')))
}

#[tonic::async_trait]
impl Mesh for MeshService {
    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let certs = peer_certs(&req);
        let r = req.into_inner();
        self.check_sender(&r.from, certs.as_deref(), "heartbeat")?;
        let table = self.cluster.table();
        Ok(Response::new(HeartbeatReply {
            from: self.cluster.me().to_string(),
            epoch: table.as_ref().map_or(0, |t| t.epoch),
            leader: table.map(|t| t.leader.clone()).unwrap_or_default(),
            config_generation: self.cluster.slots().generation(),
            hears: self
                .cluster
                .healthy_peers()
                .iter()
                .map(|p| p.id().to_string())
                .collect(),
        }))
    }

    async fn install_routing(
        &self,
        req: Request<WireTable>,
    ) -> Result<Response<InstallRoutingReply>, Status> {
        let certs = peer_certs(&req);
        let wire = req.into_inner();
        // Only the leader sends tables: with mTLS, its certificate must
        // name the leader the table names.
        if let Some(names) = certs
            .as_deref()
            .and_then(|c| c.first())
            .map(x509::dns_names)
            && !names_instance(&names, &wire.leader)
        {
            let why = format!(
                "the client certificate names {names:?}, not the table's leader {:?}",
                wire.leader
            );
            self.refused("routing table", &why);
            return Err(Status::permission_denied(format!("routing table: {why}")));
        }
        let checked = RoutingTable::from_proto(wire, &known(&self.cluster));
        let outcome = checked.and_then(|table| self.cluster.install(table));
        match outcome {
            Ok(_) => Ok(Response::new(InstallRoutingReply {
                epoch: self.cluster.epoch(),
            })),
            Err(e) => {
                self.refused("routing table", &e.to_string());
                Err(Status::failed_precondition(e.to_string()))
            }
        }
    }

    async fn replicate(
        &self,
        req: Request<ReplicateRequest>,
    ) -> Result<Response<ReplicateReply>, Status> {
        let certs = peer_certs(&req);
        let r = req.into_inner();
        self.check_sender(&r.from, certs.as_deref(), "replicate")?;
        let table = self.cluster.table();
        let mut refused = Vec::new();
        for state in r.slots {
            if self.cluster.slots().is_everywhere(state.slot) {
                // Kept on every instance: any member's state is merged.
                let slot = u8::try_from(state.slot).unwrap_or(u8::MAX);
                if let Err(e) = self
                    .cluster
                    .take_everywhere(&r.from, slot, state.state)
                    .await
                {
                    refused.push(format!("slot {slot}: {e}"));
                }
                continue;
            }
            let owner = u8::try_from(state.slot).ok().and_then(|s| {
                table
                    .as_ref()?
                    .route(s)
                    .map(|route| (s, route.owner.clone()))
            });
            match owner {
                Some((slot, owner)) if owner == r.from => {
                    if let Err(e) = self.cluster.slots().merge(slot, state.state).await {
                        refused.push(format!("slot {slot}: {e}"));
                    }
                }
                Some((slot, owner)) => refused.push(format!(
                    "slot {slot}: owned by {owner:?} in epoch {}, not by the sender",
                    table.as_ref().map_or(0, |t| t.epoch)
                )),
                None => refused.push(format!("slot {}: not routed here", state.slot)),
            }
        }
        if refused.is_empty() {
            return Ok(Response::new(ReplicateReply {}));
        }
        let why = refused.join("; ");
        self.refused("replicate", &why);
        Err(Status::failed_precondition(why))
    }

    async fn fetch_state(
        &self,
        req: Request<FetchStateRequest>,
    ) -> Result<Response<FetchStateReply>, Status> {
        let certs = peer_certs(&req);
        let r = req.into_inner();
        self.check_sender(&r.from, certs.as_deref(), "state fetch")?;
        let (slots, synced) = self.cluster.everywhere_states().await;
        Ok(Response::new(FetchStateReply { slots, synced }))
    }

    async fn deliver(
        &self,
        req: Request<DeliverRequest>,
    ) -> Result<Response<DeliverReply>, Status> {
        let r = req.into_inner();
        let targets = match r.recipients {
            Some(WireRecipients::AllExcept(list)) => Targets::AllExcept(list.ids),
            Some(WireRecipients::Clients(list)) => Targets::Clients(list.ids),
            None => {
                self.refused("deliver", "no recipients");
                return Err(Status::invalid_argument("deliver: recipients is required"));
            }
        };
        let timeout = Duration::from_millis(u64::from(r.timeout_ms)).min(MAX_DELIVER_TIMEOUT);
        let outcomes = self
            .signals
            .deliver_here(
                r.slot,
                r.message_id,
                r.payload,
                &r.publisher,
                &targets,
                tokio::time::Instant::now() + timeout,
            )
            .await;
        Ok(Response::new(DeliverReply {
            outcomes: outcomes
                .into_iter()
                .map(|(client, delivered)| DeliveryOutcome { client, delivered })
                .collect(),
        }))
    }
}

fn known(cluster: &Cluster) -> std::collections::HashSet<String> {
    let mut ids: std::collections::HashSet<String> = cluster.peers().keys().cloned().collect();
    ids.insert(cluster.me().to_string());
    ids
}

/// Serves the control API.
#[derive(Debug, Clone)]
pub struct ControlService {
    cluster: Arc<Cluster>,
    module_root: std::path::PathBuf,
}

impl ControlService {
    pub fn new(cluster: Arc<Cluster>, module_root: std::path::PathBuf) -> Self {
        Self {
            cluster,
            module_root,
        }
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
        let slots = self.cluster.slots().clone();
        let generation = r.generation;
        let outcome = tokio::task::spawn_blocking(move || slots.reload(&config, generation))
            .await
            .map_err(|e| Status::internal(format!("reload task failed: {e}")))?;
        match outcome {
            Ok(_) => Ok(Response::new(ApplyConfigReply {
                generation: self.cluster.slots().generation(),
            })),
            Err(e @ (ReloadError::Stale { .. } | ReloadError::Conflict { .. })) => {
                Err(Status::failed_precondition(e.to_string()))
            }
            Err(e @ ReloadError::Load(_)) => Err(Status::invalid_argument(e.to_string())),
        }
    }
}

/// Wraps the mesh server to log and count calls that never reach a
/// handler: bytes that do not decode, methods that do not exist. Handlers
/// log their own refusals with the reason.
#[derive(Debug, Clone)]
pub struct Audited<S> {
    inner: S,
    metrics: crate::ops::metrics::Metrics,
}

impl<S> Audited<S> {
    pub fn new(inner: S, metrics: crate::ops::metrics::Metrics) -> Self {
        Self { inner, metrics }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Audited<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for Audited<S>
where
    S: tonic::codegen::Service<
            tonic::codegen::http::Request<B>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
        >,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let metrics = self.metrics.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let response = answer.await?;
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map(tonic::Code::from);
            if let Some(code @ (tonic::Code::Internal | tonic::Code::Unimplemented)) = code {
                metrics.cluster.refused_mesh_messages.inc();
                let why = response
                    .headers()
                    .get("grpc-message")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                tracing::warn!(what = %path, ?code, why = %why, "refused a mesh message");
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_names_an_instance_by_its_id_or_its_pod_dns_name() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(names_instance(&names(&["vss-1"]), "vss-1"));
        assert!(names_instance(
            &names(&["vss-1.vss-headless.prod.svc"]),
            "vss-1"
        ));
        assert!(!names_instance(&names(&["vss-10"]), "vss-1"));
        assert!(!names_instance(&names(&["vss-1x.svc"]), "vss-1"));
        assert!(!names_instance(&[], "vss-1"));
    }
}
