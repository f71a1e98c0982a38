//! The mesh API (`vss.v1.Mesh`) other instances call: checks that the
//! caller's certificate names the instance it claims to be, converts, and
//! calls the [`Node`].

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Response, Status};
use vss_proto::v1::mesh_server::Mesh;
use vss_proto::v1::{
    DeliverReply, DeliverRequest, FetchStateReply, FetchStateRequest, HeartbeatReply,
    HeartbeatRequest, InstallRoutingReply, ReplicateReply, ReplicateRequest,
    RoutingTable as WireTable,
};

use crate::core::cluster::RoutingTable;
use crate::core::node::Node;
use crate::edge::convert::{self, TableWire as _};
use crate::edge::tls::x509;

/// Serves the mesh API.
#[derive(Debug, Clone)]
pub struct MeshService {
    node: Arc<Node>,
}

impl MeshService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// Refuses calls from instances outside the cluster, and with mTLS,
    /// calls whose certificate does not name the instance they claim to
    /// come from; logged, since it means a misconfigured or foreign caller.
    fn check_sender(&self, from: &str, certs: Option<&Certs>, what: &str) -> Result<(), Status> {
        self.node.check_sender(from, what)?;
        if let Some(names) = certs.and_then(|c| c.first()).map(x509::dns_names)
            && !names_instance(&names, from)
        {
            let why = format!(
                "the client certificate names {names:?}, not instance {from:?} (a DNS SAN `{from}` or `{from}.<domain>`)"
            );
            self.node.refused(what, &why);
            return Err(Status::permission_denied(format!("{what}: {why}")));
        }
        Ok(())
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
        let beat = convert::heartbeat(req.into_inner());
        self.check_sender(&beat.from, certs.as_deref(), "heartbeat")?;
        let reply = self.node.heartbeat(&beat)?;
        Ok(Response::new(convert::heartbeat_reply(reply)))
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
            self.node.refused("routing table", &why);
            return Err(Status::permission_denied(format!("routing table: {why}")));
        }
        let table = match RoutingTable::from_proto(wire, self.node.cluster().known()) {
            Ok(table) => table,
            Err(e) => {
                self.node.refused("routing table", &e.to_string());
                return Err(Status::failed_precondition(e.to_string()));
            }
        };
        match self.node.install_routing(table) {
            Ok(epoch) => Ok(Response::new(InstallRoutingReply { epoch })),
            Err(e) => Err(Status::failed_precondition(e.to_string())),
        }
    }

    async fn replicate(
        &self,
        req: Request<ReplicateRequest>,
    ) -> Result<Response<ReplicateReply>, Status> {
        let certs = peer_certs(&req);
        let pushed = convert::replicate(req.into_inner());
        self.check_sender(&pushed.from, certs.as_deref(), "replicate")?;
        self.node.replicate(pushed).await?;
        Ok(Response::new(ReplicateReply {}))
    }

    async fn fetch_state(
        &self,
        req: Request<FetchStateRequest>,
    ) -> Result<Response<FetchStateReply>, Status> {
        let certs = peer_certs(&req);
        let r = req.into_inner();
        self.check_sender(&r.from, certs.as_deref(), "state fetch")?;
        let fetched = self.node.fetch_state(&r.from).await?;
        Ok(Response::new(convert::fetch_state_reply(fetched)))
    }

    async fn deliver(
        &self,
        req: Request<DeliverRequest>,
    ) -> Result<Response<DeliverReply>, Status> {
        let delivery = convert::delivery(req.into_inner()).inspect_err(|_| {
            self.node.refused("deliver", "no recipients");
        })?;
        let outcomes = self.node.deliver(delivery).await;
        Ok(Response::new(convert::delivery_outcomes(outcomes)))
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
