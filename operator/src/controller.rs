//! Reconcile a `VssCluster`: apply the wanted objects, push the slot config
//! to running pods, report status.
//!
//! Each pass is idempotent. Owned objects are read first and written
//! (server-side apply) only when missing or drifted, so a pass over a
//! settled cluster only reads. Nothing lives outside ownerReferences, so
//! deletion is left to Kubernetes' garbage collector and there is no
//! finalizer.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Instrument, field, info, info_span, warn};

use crate::cert_manager::{self, Certificate};
use crate::chaos::{self, ChaosStep};
use crate::crd::{MeshTlsMode, PodConfigStatus, VssCluster, VssClusterStatus};
use crate::diff::contains;
use crate::mesh_certs::{self, Ca, CertError, Renewal};
use crate::metrics::Metrics;
use crate::push::{PodControl, PodTls, PushError};
use crate::resources;
use crate::slots;
use crate::status::{self, Observed};

/// Field manager of every write.
pub const MANAGER: &str = "vss-operator";
/// Field manager of the owner references the operator adds to the Secrets
/// cert-manager writes: its own, so applying them takes nothing of
/// cert-manager's.
const OWNER_MANAGER: &str = "vss-operator-owner";

/// Requeue while something is moving.
const BUSY_REQUEUE: Duration = Duration::from_secs(5);
/// Requeue of a settled cluster: refreshes leader and per-pod generations.
const IDLE_REQUEUE: Duration = Duration::from_secs(60);

/// What reconcile needs besides the object.
pub struct Context {
    pub client: Client,
    pub pods: Arc<dyn PodControl>,
    pub recorder: Recorder,
    pub runtime_image: String,
    pub metrics: Metrics,
    /// The operator's pods, admitted to the mesh port by each cluster's
    /// NetworkPolicy; None when unknown (outside a pod).
    pub operator_pods: Option<resources::OperatorPods>,
    /// Per cluster (`namespace/name`), the operator's client certificate
    /// of that cluster's CA. Kept in memory only: a restart issues new
    /// ones, which costs nothing.
    operator_certs: Mutex<HashMap<String, OperatorCert>>,
}

/// The operator's certificate for one cluster, ready to dial with.
struct OperatorCert {
    /// The CA it was issued by; another CA means a new certificate.
    ca_der: Vec<u8>,
    renew_at: SystemTime,
    config: Arc<rustls::ClientConfig>,
}

impl Context {
    pub fn new(
        client: Client,
        pods: Arc<dyn PodControl>,
        runtime_image: String,
        reporter_instance: Option<String>,
        metrics: Metrics,
        operator_pods: Option<resources::OperatorPods>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: reporter_instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            pods,
            runtime_image,
            metrics,
            operator_pods,
            operator_certs: Mutex::new(HashMap::new()),
        }
    }

    /// The client config for `cluster`'s pods from `ca`: the cached one
    /// while it is good, a new certificate otherwise. Returns it with the
    /// time it is due for renewal.
    fn operator_tls(
        &self,
        cluster: &str,
        ca: &Ca,
        now: SystemTime,
    ) -> Result<(Arc<rustls::ClientConfig>, SystemTime), Error> {
        // The lock is held for a certificate issuance at most (a
        // millisecond), never across an await.
        let mut certs = self
            .operator_certs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = certs.get(cluster)
            && c.ca_der == ca.cert_der()
            && now < c.renew_at
        {
            return Ok((c.config.clone(), c.renew_at));
        }
        let leaf = ca.issue_operator(now).map_err(|source| Error::Certs {
            cluster: cluster.to_string(),
            source,
        })?;
        let config = crate::push::client_config(
            leaf.cert_pem.as_bytes(),
            leaf.key_pem.as_bytes(),
            ca.cert_pem().as_bytes(),
        )
        .map_err(|source| Error::Tls {
            cluster: cluster.to_string(),
            source,
        })?;
        let renew_at =
            match mesh_certs::renewal_due(now - mesh_certs::BACKDATE, leaf.not_after, now) {
                mesh_certs::Verdict::Keep { renew_at } => renew_at,
                mesh_certs::Verdict::Renew(_) => now,
            };
        certs.insert(
            cluster.to_string(),
            OperatorCert {
                ca_der: ca.cert_der().to_vec(),
                renew_at,
                config: config.clone(),
            },
        );
        Ok((config, renew_at))
    }

    fn forget_operator_tls(&self, cluster: &str) {
        self.operator_certs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(cluster);
    }
}

/// Why a reconcile failed; the controller retries after a pause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("VssCluster has no namespace")]
    MissingNamespace,
    #[error("{action} {object}: {source}")]
    Kube {
        action: &'static str,
        object: String,
        source: kube::Error,
    },
    #[error("cannot serialize {object}: {source}")]
    Serialize {
        object: String,
        source: serde_json::Error,
    },
    #[error("mesh certificates of {cluster}: {source}")]
    Certs { cluster: String, source: CertError },
    #[error("mesh TLS client config of {cluster}: {source}")]
    Tls { cluster: String, source: PushError },
    #[error("mesh certificates of {cluster} from cert-manager are not all usable yet: {pending}")]
    CertificatesPending { cluster: String, pending: String },
}

fn kube_err(action: &'static str, object: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let object = object.into();
    move |source| Error::Kube {
        action,
        object,
        source,
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    watch_namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ns = watch_namespace.as_deref();
    let wc = watcher::Config::default().labels("app.kubernetes.io/managed-by=vss-operator");
    Controller::new(
        scoped::<VssCluster>(&client, ns),
        watcher::Config::default(),
    )
    .owns(scoped::<StatefulSet>(&client, ns), wc.clone())
    .owns(scoped::<ConfigMap>(&client, ns), wc.clone())
    .owns(scoped::<Service>(&client, ns), wc.clone())
    .owns(scoped::<PodDisruptionBudget>(&client, ns), wc.clone())
    .owns(scoped::<NetworkPolicy>(&client, ns), wc.clone())
    .owns(scoped::<ServiceAccount>(&client, ns), wc.clone())
    .owns(scoped::<Role>(&client, ns), wc.clone())
    .owns(scoped::<RoleBinding>(&client, ns), wc.clone())
    .owns(scoped::<Secret>(&client, ns), wc)
    // The Secrets cert-manager writes for a CertManager-mode cluster carry
    // its name in a label (the Certificates' secretTemplate), so a renewal
    // is gathered at once. Certificates are not watched: cert-manager may
    // not be installed, and a watch on a missing kind only logs errors.
    .watches(
        scoped::<Secret>(&client, ns),
        watcher::Config::default().labels(cert_manager::CLUSTER_LABEL),
        |secret| {
            let cluster = secret.labels().get(cert_manager::CLUSTER_LABEL)?;
            let ns = secret.namespace()?;
            Some(ObjectRef::<VssCluster>::new(cluster).within(&ns))
        },
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|res| async move {
        match res {
            Ok(_) => {}
            // A Secret event of a cluster deleted since (its Secrets are
            // garbage-collected after it): nothing to reconcile.
            Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                tracing::debug!(object = %obj, "event for a VssCluster that is gone");
            }
            Err(e) => warn!(error = %e, "reconcile failed"),
        }
    })
    .await;
}

/// An Api over one namespace, or all of them.
fn scoped<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn error_policy(cluster: Arc<VssCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(cluster = %cluster.name_any(), %error, "reconcile error, retrying");
    ctx.metrics.reconciled("error");
    Action::requeue(Duration::from_secs(15))
}

/// One pass over one cluster.
pub async fn reconcile(cluster: Arc<VssCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!(
        "reconcile",
        cluster = %cluster.name_any(),
        namespace = field::Empty,
        generation = cluster.metadata.generation.unwrap_or(0)
    );
    async move {
        let ns = cluster.namespace().ok_or(Error::MissingNamespace)?;
        tracing::Span::current().record("namespace", ns.as_str());
        let action = reconcile_in(&cluster, &ctx, &ns).await?;
        Ok(action)
    }
    .instrument(span)
    .await
}

async fn reconcile_in(cluster: &VssCluster, ctx: &Context, ns: &str) -> Result<Action, Error> {
    if cluster.metadata.deletion_timestamp.is_some() {
        // The garbage collector deletes the owned objects; applying them
        // now would only race it.
        ctx.forget_operator_tls(&format!("{ns}/{}", cluster.name_any()));
        return Ok(Action::await_change());
    }
    let generation = cluster.metadata.generation.unwrap_or(0);
    let now = Time(Timestamp::now());
    let slots_yaml = match slots::render(&cluster.spec) {
        Ok(yaml) => yaml,
        Err(e) => {
            warn!(error = %e, "invalid spec");
            let status = status::invalid_status(
                cluster.status.as_ref(),
                generation,
                "InvalidSpec",
                e.to_string(),
                &now,
            );
            if update_status(cluster, ctx, ns, status).await? {
                event(
                    ctx,
                    cluster,
                    EventType::Warning,
                    "InvalidSpec",
                    "Validate",
                    e.to_string(),
                )
                .await;
            }
            ctx.metrics.reconciled("invalid");
            return Ok(Action::await_change());
        }
    };

    let client = &ctx.client;
    let mut changed = Vec::new();
    apply(
        client,
        ns,
        &resources::service_account(cluster),
        &mut changed,
    )
    .await?;
    apply(client, ns, &resources::role(cluster), &mut changed).await?;
    apply(client, ns, &resources::role_binding(cluster), &mut changed).await?;
    // Only the Lease's metadata is ours: its spec is absent from what we
    // apply, so the pods' renewals are never seen as drift nor overwritten.
    apply(client, ns, &resources::leader_lease(cluster), &mut changed).await?;
    let config_map = resources::config_map(cluster, &slots_yaml);
    let object = format!("ConfigMap/{}", config_map.name_any());
    let current = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(&config_map.name_any())
        .await
        .map_err(kube_err("get", &object))?;
    let fresh = current
        .as_ref()
        .and_then(|c| c.data.as_ref()?.get(resources::CONFIG_KEY))
        .map(|before| slots::started_fresh(before, &slots_yaml))
        .unwrap_or_default();
    apply_over(client, ns, &config_map, current, false, &mut changed).await?;
    // Said before the pods get the change: they act on it at once.
    for (slot, why) in fresh {
        warn!(slot, why, "slot starts fresh");
        event(
            ctx,
            cluster,
            EventType::Warning,
            "SlotStartsFresh",
            "PushConfig",
            format!("slot {slot} starts fresh on every instance: {why}"),
        )
        .await;
    }
    apply(
        client,
        ns,
        &resources::headless_service(cluster),
        &mut changed,
    )
    .await?;
    apply(
        client,
        ns,
        &resources::client_service(cluster),
        &mut changed,
    )
    .await?;
    // Before the StatefulSet: a pod must find its certificate in the
    // Secret when it starts, scaled up included.
    let issuer = cluster
        .spec
        .mesh_tls
        .as_ref()
        .and_then(|m| m.issuer_ref.as_ref());
    let mesh_tls = match (cluster.spec.mesh_tls_mode(), issuer) {
        (MeshTlsMode::Operator, _) => {
            Some(mesh_certificates(cluster, ctx, ns, &mut changed).await?)
        }
        (MeshTlsMode::CertManager, Some(issuer)) => {
            ctx.forget_operator_tls(&format!("{ns}/{}", cluster.name_any()));
            Some(cert_manager_certificates(cluster, issuer, ctx, ns, &mut changed).await?)
        }
        // The schema refuses it; an object stored before the rule would
        // otherwise get pods that wait for pairs no one issues.
        (MeshTlsMode::CertManager, None) => {
            return Err(Error::CertificatesPending {
                cluster: format!("{ns}/{}", cluster.name_any()),
                pending: "spec.meshTls.issuerRef is required with mode CertManager".into(),
            });
        }
        (MeshTlsMode::Disabled, _) => {
            ctx.forget_operator_tls(&format!("{ns}/{}", cluster.name_any()));
            None
        }
    };
    let sts = apply(
        client,
        ns,
        &resources::stateful_set(cluster, &ctx.runtime_image),
        &mut changed,
    )
    .await?;
    apply(
        client,
        ns,
        &resources::pod_disruption_budget(cluster),
        &mut changed,
    )
    .await?;
    apply(
        client,
        ns,
        &resources::network_policy(cluster, ctx.operator_pods.as_ref()),
        &mut changed,
    )
    .await?;
    if !changed.is_empty() {
        info!(objects = ?changed, "applied");
        event(
            ctx,
            cluster,
            EventType::Normal,
            "Applied",
            "Apply",
            format!("created or repaired {}", changed.join(", ")),
        )
        .await;
    }

    let mut seen = push_config(cluster, ctx, ns, &slots_yaml, mesh_tls.as_ref()).await?;
    seen.desired_instances = cluster.spec.instances;
    let sts_status = sts.status.unwrap_or_default();
    seen.ready_instances = sts_status.ready_replicas.unwrap_or(0);
    seen.rolled_out = sts_status.observed_generation >= sts.metadata.generation
        && sts_status.updated_replicas.unwrap_or(0) >= cluster.spec.instances
        && sts_status.current_revision == sts_status.update_revision;
    let mut new_status = status::observed_status(cluster.status.as_ref(), &seen, &now);

    let all_ready = new_status
        .condition(status::READY)
        .is_some_and(|c| c.status == "True");
    let chaos_step = chaos::next_step(
        cluster.spec.chaos.as_ref(),
        new_status.last_chaos_kill.as_deref(),
        all_ready,
        now.0,
    );
    if chaos_step == ChaosStep::KillNow
        && let Some(victim) = kill_random_pod(cluster, ctx, ns, &seen.pods).await?
    {
        new_status.last_chaos_kill = Some(now.0.to_string());
        event(
            ctx,
            cluster,
            EventType::Normal,
            "ChaosPodKill",
            "Chaos",
            format!("deleted pod {victim}"),
        )
        .await;
    }
    update_status(cluster, ctx, ns, new_status).await?;
    ctx.metrics.reconciled("ok");

    let settled = all_ready && seen.failures.is_empty();
    let requeue = until_renewal(
        if settled { IDLE_REQUEUE } else { BUSY_REQUEUE },
        mesh_tls.as_ref().map(|t| t.next_renewal),
        SystemTime::now(),
    );
    Ok(Action::requeue(match chaos_step {
        ChaosStep::Wait(d) => d.min(requeue),
        _ => requeue,
    }))
}

/// `requeue`, or sooner when a mesh certificate is due for renewal before
/// it; never sooner than a second (a certificate due now was just issued
/// again).
fn until_renewal(requeue: Duration, renew_at: Option<SystemTime>, now: SystemTime) -> Duration {
    match renew_at {
        Some(at) => {
            let until = at.duration_since(now).unwrap_or(Duration::ZERO);
            requeue.min(until.max(Duration::from_secs(1)))
        }
        None => requeue,
    }
}

/// Reads `desired` from the server and writes it (server-side apply) only
/// when missing or drifted. Returns what the server holds after.
async fn apply<K>(
    client: &Client,
    ns: &str,
    desired: &K,
    changed: &mut Vec<String>,
) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
    <K as Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = desired.name_any();
    let object = format!("{}/{name}", K::kind(&Default::default()));
    let current = api.get_opt(&name).await.map_err(kube_err("get", &object))?;
    apply_over(client, ns, desired, current, false, changed).await
}

/// Writes `desired` (server-side apply) unless `current`, what the server
/// holds, already contains it and `rewrite` is false. Returns what the
/// server holds after.
async fn apply_over<K>(
    client: &Client,
    ns: &str,
    desired: &K,
    current: Option<K>,
    rewrite: bool,
    changed: &mut Vec<String>,
) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
    <K as Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = desired.name_any();
    let kind = K::kind(&Default::default()).to_string();
    let object = format!("{kind}/{name}");
    let want = serde_json::to_value(desired).map_err(|source| Error::Serialize {
        object: object.clone(),
        source,
    })?;
    if let Some(current) = current.filter(|_| !rewrite) {
        let have = serde_json::to_value(&current).map_err(|source| Error::Serialize {
            object: object.clone(),
            source,
        })?;
        if contains(&have, &want) {
            return Ok(current);
        }
    }
    let mut body = want;
    if let Some(map) = body.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            K::api_version(&Default::default()).into(),
        );
        map.insert("kind".into(), kind.clone().into());
    }
    let applied = api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(kube_err("apply", &object))?;
    changed.push(object);
    Ok(applied)
}

/// What the controller needs of a cluster's mesh TLS after
/// [`mesh_certificates`].
struct ClusterTls {
    /// The operator's client config for the cluster's pods.
    config: Arc<rustls::ClientConfig>,
    /// The earliest renewal due, of the pods' and the operator's
    /// certificates.
    next_renewal: SystemTime,
}

/// A Secret's data as bytes; an absent Secret holds nothing.
fn secret_data(secret: Option<&Secret>) -> BTreeMap<String, Vec<u8>> {
    secret
        .and_then(|s| s.data.as_ref())
        .map(|d| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default()
}

/// `<name>-mesh-tls` as the server holds it (absent: nothing) and its
/// data, with its name for messages.
async fn held_mesh_tls(
    secrets: &Api<Secret>,
    names: &resources::Names,
) -> Result<(String, Option<Secret>, BTreeMap<String, Vec<u8>>), Error> {
    let object = format!("Secret/{}", names.mesh_tls);
    let held = secrets
        .get_opt(&names.mesh_tls)
        .await
        .map_err(kube_err("get", &object))?;
    let current = secret_data(held.as_ref());
    Ok((object, held, current))
}

/// Makes sure the cluster's CA and its pods' certificates exist, are
/// usable and are not due for renewal (see [`crate::mesh_certs`]), and
/// returns the operator's client config for the cluster.
async fn mesh_certificates(
    cluster: &VssCluster,
    ctx: &Context,
    ns: &str,
    changed: &mut Vec<String>,
) -> Result<ClusterTls, Error> {
    let names = resources::Names::of(cluster);
    let key = format!("{ns}/{}", cluster.name_any());
    let certs_err = |source| Error::Certs {
        cluster: key.clone(),
        source,
    };
    let now = SystemTime::now();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let object = format!("Secret/{}", names.mesh_ca);
    let held = secrets
        .get_opt(&names.mesh_ca)
        .await
        .map_err(kube_err("get", &object))?;
    let (ca, rewrite) = match held
        .as_ref()
        .map(|s| Ca::from_secret(&secret_data(Some(s)), now))
    {
        Some(Ok(ca)) => (ca, false),
        None => (
            Ca::generate(&cluster.name_any(), now).map_err(certs_err)?,
            true,
        ),
        Some(Err(e)) => {
            let note = format!(
                "{object} holds no usable CA ({e}): a new CA is made and every pod certificate issued again"
            );
            warn!(secret = %names.mesh_ca, error = %e, "replacing the mesh CA");
            event(
                ctx,
                cluster,
                EventType::Warning,
                "MeshCaInvalid",
                "IssueCertificates",
                note,
            )
            .await;
            (
                Ca::generate(&cluster.name_any(), now).map_err(certs_err)?,
                true,
            )
        }
    };
    apply_over(
        &ctx.client,
        ns,
        &resources::mesh_ca_secret(cluster, &ca.secret_data()),
        held,
        rewrite,
        changed,
    )
    .await?;

    let (object, held, current) = held_mesh_tls(&secrets, &names).await?;
    let pods = mesh_certs::cluster_pod_names(cluster, ns);
    let certs = mesh_certs::pod_certs(&ca, &current, &pods, now).map_err(certs_err)?;
    // Keys of pods scaled away go too; `contains` alone would keep them.
    let stale = !current.keys().eq(certs.data.keys());
    apply_over(
        &ctx.client,
        ns,
        &resources::mesh_tls_secret(cluster, &certs.data),
        held,
        stale || !certs.issued.is_empty(),
        changed,
    )
    .await?;
    let (unusable, renewed): (Vec<_>, Vec<_>) = certs
        .issued
        .iter()
        .filter(|(_, why)| *why != Renewal::Missing)
        .partition(|(_, why)| matches!(why, Renewal::Unusable(_)));
    let describe = |list: &[&(String, Renewal)]| {
        list.iter()
            .map(|(pod, why)| format!("{pod}: {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if !unusable.is_empty() {
        let note = format!("{object}: issued again, {}", describe(&unusable));
        warn!(%note, "unusable mesh certificates replaced");
        event(
            ctx,
            cluster,
            EventType::Warning,
            "MeshCertificateInvalid",
            "IssueCertificates",
            note,
        )
        .await;
    }
    if !renewed.is_empty() {
        let note = format!("{object}: issued again, {}", describe(&renewed));
        info!(%note, "mesh certificates renewed");
        event(
            ctx,
            cluster,
            EventType::Normal,
            "MeshCertificateRenewed",
            "IssueCertificates",
            note,
        )
        .await;
    }

    let (config, operator_renewal) = ctx.operator_tls(&key, &ca, now)?;
    let next_renewal = certs
        .next_renewal
        .map_or(operator_renewal, |t| t.min(operator_renewal));
    Ok(ClusterTls {
        config,
        next_renewal,
    })
}

/// `meshTls.mode: CertManager`: applies the cluster's Certificates, drops
/// those of pods scaled away, gathers what cert-manager issued into
/// `<name>-mesh-tls` (see [`crate::cert_manager`]) and returns the
/// operator's client config. While a pair is not usable yet the reconcile
/// stops here, before the StatefulSet, with the Certificate's own reason:
/// a pod started without its pair could not serve the mesh.
async fn cert_manager_certificates(
    cluster: &VssCluster,
    issuer: &crate::crd::IssuerRef,
    ctx: &Context,
    ns: &str,
    changed: &mut Vec<String>,
) -> Result<ClusterTls, Error> {
    let names = resources::Names::of(cluster);
    let key = format!("{ns}/{}", cluster.name_any());
    let wanted = cert_manager::certificates(cluster, issuer, ns);
    let mut applied = Vec::with_capacity(wanted.len());
    for certificate in &wanted {
        applied.push(apply(&ctx.client, ns, certificate, changed).await?);
    }

    let certificates: Api<Certificate> = Api::namespaced(ctx.client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("{}={}", cert_manager::CLUSTER_LABEL, cluster.name_any());
    let listed = certificates
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_err(
            "list",
            format!("Certificates of {}", cluster.name_any()),
        ))?;
    for stale in listed
        .items
        .iter()
        .filter(|c| !wanted.iter().any(|w| w.name_any() == c.name_any()))
    {
        let name = stale.name_any();
        for (kind, result) in [
            (
                "Certificate",
                certificates
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map(|_| ()),
            ),
            (
                "Secret",
                secrets
                    .delete(&stale.spec.secret_name, &DeleteParams::default())
                    .await
                    .map(|_| ()),
            ),
        ] {
            match result {
                Ok(()) => changed.push(format!("{kind}/{name} (deleted)")),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(kube_err("delete", format!("{kind}/{name}"))(e)),
            }
        }
    }

    // cert-manager leaves its Secrets behind when a Certificate goes. An
    // owner reference to the Certificate (not a controller one:
    // cert-manager may hold that) lets the garbage collector take each
    // with its Certificate, so with the cluster too; the VssCluster as the
    // owner would race cert-manager, which issues a deleted Secret again
    // while its Certificate still exists.
    let mut issued = BTreeMap::new();
    for certificate in &applied {
        let name = &certificate.spec.secret_name;
        let Some(secret) = secrets
            .get_opt(name)
            .await
            .map_err(kube_err("get", format!("Secret/{name}")))?
        else {
            continue;
        };
        if let Some(owner) = certificate.owner_ref(&())
            && !secret.owner_references().iter().any(|o| o.uid == owner.uid)
        {
            let patch = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "ownerReferences": [owner]},
            });
            secrets
                .patch(
                    name,
                    &PatchParams::apply(OWNER_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
                .map_err(kube_err("patch", format!("Secret/{name}")))?;
        }
        issued.insert(name.clone(), secret_data(Some(&secret)));
    }

    let (object, held, current) = held_mesh_tls(&secrets, &names).await?;
    let pods = mesh_certs::cluster_pod_names(cluster, ns);
    let now = SystemTime::now();
    let gathered = cert_manager::gather(
        &pods,
        &cert_manager::operator_certificate_name(cluster),
        &issued,
        &current,
        now,
    );
    let differs = current
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .ne(gathered
            .data
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes())));
    if !gathered.data.is_empty() {
        apply_over(
            &ctx.client,
            ns,
            &resources::mesh_tls_secret(cluster, &gathered.data),
            held,
            differs,
            changed,
        )
        .await?;
    }
    if !gathered.kept.is_empty() {
        let note = format!(
            "kept the pairs gathered before in {object} while cert-manager's are unusable: {}",
            describe_pending(&gathered.kept, &applied)
        );
        warn!(%note, "mesh certificates kept");
        event(
            ctx,
            cluster,
            EventType::Warning,
            "MeshCertificateInvalid",
            "GatherCertificates",
            note,
        )
        .await;
    }
    let Some(operator) = gathered.operator.filter(|_| gathered.pending.is_empty()) else {
        let pending = describe_pending(&gathered.pending, &applied);
        event(
            ctx,
            cluster,
            EventType::Warning,
            "MeshCertificatesPending",
            "GatherCertificates",
            format!("waiting for cert-manager: {pending}"),
        )
        .await;
        return Err(Error::CertificatesPending {
            cluster: key,
            pending,
        });
    };
    let config = crate::push::client_config(
        operator.cert_pem.as_bytes(),
        operator.key_pem.as_bytes(),
        operator.ca_pem.as_bytes(),
    )
    .map_err(|source| Error::Tls {
        cluster: key.clone(),
        source,
    })?;
    Ok(ClusterTls {
        config,
        // cert-manager renews; the gathered Secret follows through the
        // watch on its Secrets. Looking again by the earliest expiry is
        // the fallback should a renewal be missed.
        next_renewal: gathered.next_expiry.unwrap_or(now + IDLE_REQUEUE),
    })
}

/// `who: why` for each, with the Certificate's `Ready` reason when it
/// gives one.
fn describe_pending(list: &[(String, String)], certificates: &[Certificate]) -> String {
    list.iter()
        .map(|(who, why)| {
            let reason = certificates
                .iter()
                .find(|c| c.spec.common_name.as_deref() == Some(who.as_str()))
                .and_then(Certificate::not_ready_because);
            match reason {
                Some(reason) => format!("{who}: {why} (Certificate: {reason})"),
                None => format!("{who}: {why}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads each running pod's config generation and pushes the config to
/// those behind. Pods that are not running get it from the ConfigMap when
/// they start.
async fn push_config(
    cluster: &VssCluster,
    ctx: &Context,
    ns: &str,
    slots_yaml: &str,
    tls: Option<&ClusterTls>,
) -> Result<Observed, Error> {
    let headless = resources::Names::of(cluster).headless;
    let generation = cluster.metadata.generation.unwrap_or(0);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let mut list = pods
        .list(&ListParams::default().labels(&resources::selector(cluster)))
        .await
        .map_err(kube_err("list", format!("pods of {}", cluster.name_any())))?
        .items;
    list.sort_by_key(|p| p.name_any());
    // Pods are called at their IP: a pod's DNS name on the headless
    // Service appears only once it is ready, and a starting pod must get
    // the config it is behind on too.
    let running: Vec<(String, String, bool)> = list
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.as_deref()?;
            Some((p.name_any(), resources::pod_address(ip), pod_ready(p)))
        })
        .collect();

    let target = u64::try_from(generation).unwrap_or(0);
    let calls = running.iter().map(|(pod, address, ready)| {
        let address = address.clone();
        let control = ctx.pods.clone();
        let yaml = slots_yaml.to_string();
        let pod = pod.clone();
        let ready = *ready;
        // Checked for the name the pod's certificate carries: the operator
        // dials its IP.
        let pod_tls = tls.map(|t| PodTls {
            config: t.config.clone(),
            server_name: format!("{pod}.{headless}.{ns}.svc"),
        });
        async move {
            let report = match control.status(address.clone(), pod_tls.clone()).await {
                Ok(r) => r,
                // A starting pod may not serve yet; only a ready one that
                // does not answer is a problem.
                Err(e) => return (pod, None, None, ready.then(|| e.to_string()), false),
            };
            if report.config_generation >= target {
                return (
                    pod,
                    Some(report.config_generation),
                    Some(report.leader),
                    None,
                    false,
                );
            }
            match control.apply_config(address, pod_tls, yaml, target).await {
                Ok(g) => (pod, Some(g), Some(report.leader), None, true),
                Err(e) => (
                    pod,
                    Some(report.config_generation),
                    Some(report.leader),
                    Some(e.to_string()),
                    false,
                ),
            }
        }
    });
    let mut seen = Observed {
        generation,
        ..Default::default()
    };
    let mut pushed = Vec::new();
    for (pod, gen_, leader, failure, did_push) in join_all(calls).await {
        seen.pods.push(PodConfigStatus {
            name: pod.clone(),
            config_generation: gen_.and_then(|g| i64::try_from(g).ok()),
        });
        seen.leaders.extend(leader);
        if let Some(f) = failure {
            ctx.metrics.pushed("error");
            seen.failures.push(format!("{pod}: {f}"));
        }
        if did_push {
            ctx.metrics.pushed("ok");
            pushed.push(pod);
        }
    }
    if !pushed.is_empty() {
        info!(pods = ?pushed, generation, "config pushed");
        event(
            ctx,
            cluster,
            EventType::Normal,
            "ConfigPushed",
            "PushConfig",
            format!(
                "config generation {generation} applied on {}",
                pushed.join(", ")
            ),
        )
        .await;
    }
    if !seen.failures.is_empty() {
        event(
            ctx,
            cluster,
            EventType::Warning,
            "ConfigPushFailed",
            "PushConfig",
            seen.failures.join("; "),
        )
        .await;
    }
    Ok(seen)
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn kill_random_pod(
    cluster: &VssCluster,
    ctx: &Context,
    ns: &str,
    pods: &[PodConfigStatus],
) -> Result<Option<String>, Error> {
    if pods.is_empty() {
        return Ok(None);
    }
    let victim = &pods[fastrand::usize(..pods.len())].name;
    warn!(pod = %victim, cluster = %cluster.name_any(), "chaos: deleting pod");
    Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .delete(victim, &DeleteParams::default())
        .await
        .map_err(kube_err("delete", format!("Pod/{victim}")))?;
    ctx.metrics.chaos_kills.inc();
    Ok(Some(victim.clone()))
}

/// Writes the status when it differs from the one held. Returns whether it
/// was written.
async fn update_status(
    cluster: &VssCluster,
    ctx: &Context,
    ns: &str,
    status: VssClusterStatus,
) -> Result<bool, Error> {
    if cluster.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let api: Api<VssCluster> = Api::namespaced(ctx.client.clone(), ns);
    let mut body = serde_json::to_value(&status).map_err(|source| Error::Serialize {
        object: format!("status of VssCluster/{}", cluster.name_any()),
        source,
    })?;
    // A merge patch keeps fields it does not mention: name the optional
    // ones explicitly so a leader that is gone is cleared, not kept.
    if let Some(map) = body.as_object_mut() {
        for key in ["leader", "lastChaosKill", "observedGeneration"] {
            map.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    let patch = serde_json::json!({ "status": body });
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(kube_err(
        "patch status of",
        format!("VssCluster/{}", cluster.name_any()),
    ))?;
    Ok(true)
}

/// Events explain what the operator did; a failure to publish one is
/// logged, never fatal.
async fn event(
    ctx: &Context,
    cluster: &VssCluster,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let mut note = note;
    // The API refuses notes over 1 kB.
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &cluster.object_ref(&())).await {
        warn!(error = %e, reason, "cannot publish event");
    }
}

#[cfg(test)]
mod tests;
