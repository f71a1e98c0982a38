use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    KeyToPath, ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SecretVolumeSource, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CONFIG_KEY, MESH_TLS_DIR, Names, labels, owned_meta, selector_labels};
use crate::crd::VssCluster;
use crate::mesh_certs::CA_CERT_KEY;
use crate::slots::MODULES_DIR;

/// How long a pod may take, on SIGTERM, to hand its slots over to their
/// standbys with their final state (`vss-runtime --handover-seconds`).
pub const HANDOVER_SECONDS: i64 = 10;
/// How long it then gives in-flight requests (`--drain-seconds`).
pub const DRAIN_SECONDS: i64 = 10;

/// gRPC for clients: `vss.v1.Vss`, Envoy's rate limit service.
pub const GRPC_PORT: i32 = 7700;
/// gRPC for peers and the operator: mesh, control API, forwarded calls.
pub const MESH_PORT: i32 = 7702;
/// HTTP: `/healthz`, `/readyz`, `/metrics`.
pub const HTTP_PORT: i32 = 7701;

const CONFIG_DIR: &str = "/etc/vss";

/// The runtime pods.
///
/// Pods start in parallel (they need each other for the mesh) and a
/// template change rolls one pod at a time (RollingUpdate, the default
/// maxUnavailable of 1). The slot config is not part of the template, so a
/// slot change restarts nothing: it is pushed through the control API.
pub fn stateful_set(cluster: &VssCluster, default_image: &str) -> StatefulSet {
    let names = Names::of(cluster);
    let spec = &cluster.spec;
    let scheduling = spec.scheduling.clone().unwrap_or_default();
    StatefulSet {
        metadata: owned_meta(cluster, &names.base),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.instances),
            service_name: Some(names.headless.clone()),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(0),
                    ..Default::default()
                }),
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cluster)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(cluster)),
                    annotations: Some(BTreeMap::from([(
                        "kubectl.kubernetes.io/default-container".to_string(),
                        "vss".to_string(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names.base.clone()),
                    // On SIGTERM a pod hands its slots over, then drains;
                    // the rest is margin for the process to exit.
                    termination_grace_period_seconds: Some(HANDOVER_SECONDS + DRAIN_SECONDS + 10),
                    containers: vec![container(cluster, &names, default_image)],
                    volumes: Some(volumes(cluster, &names)),
                    affinity: Some(
                        scheduling
                            .affinity
                            .unwrap_or_else(|| default_affinity(cluster)),
                    ),
                    node_selector: (!scheduling.node_selector.is_empty())
                        .then_some(scheduling.node_selector),
                    tolerations: (!scheduling.tolerations.is_empty())
                        .then_some(scheduling.tolerations),
                    topology_spread_constraints: (!scheduling
                        .topology_spread_constraints
                        .is_empty())
                    .then_some(scheduling.topology_spread_constraints),
                    priority_class_name: scheduling.priority_class_name,
                    image_pull_secrets: (!spec.image_pull_secrets.is_empty())
                        .then(|| spec.image_pull_secrets.clone()),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container(cluster: &VssCluster, names: &Names, default_image: &str) -> Container {
    let spec = &cluster.spec;
    let field_env = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let http_probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    };
    let mut mounts = vec![VolumeMount {
        name: "config".into(),
        mount_path: CONFIG_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    }];
    for (i, cm) in crate::slots::module_config_maps(spec)
        .into_iter()
        .enumerate()
    {
        mounts.push(VolumeMount {
            name: module_volume_name(i),
            mount_path: format!("{MODULES_DIR}/{cm}"),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let mesh_tls = spec.mesh_tls_enabled();
    if mesh_tls {
        mounts.push(VolumeMount {
            name: MESH_TLS_VOLUME.into(),
            mount_path: MESH_TLS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let client_auth = spec.client_auth.clone().unwrap_or_default();
    if client_auth.tokens_secret.is_some() {
        mounts.push(VolumeMount {
            name: CLIENT_TOKENS_VOLUME.into(),
            mount_path: CLIENT_TOKENS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if client_auth.tls_secret.is_some() {
        mounts.push(VolumeMount {
            name: CLIENT_TLS_VOLUME.into(),
            mount_path: CLIENT_TLS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let mut args: Vec<String> = vec![
        "--config".into(),
        format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        "--listen".into(),
        format!("0.0.0.0:{GRPC_PORT}"),
        "--mesh-listen".into(),
        format!("0.0.0.0:{MESH_PORT}"),
        "--http-listen".into(),
        format!("0.0.0.0:{}", super::HTTP_PORT),
        "--module-root".into(),
        MODULES_DIR.into(),
        "--in-cluster".into(),
        "--replicas".into(),
        spec.instances.to_string(),
        "--headless-service".into(),
        names.headless.clone(),
        "--handover-seconds".into(),
        HANDOVER_SECONDS.to_string(),
        "--drain-seconds".into(),
        DRAIN_SECONDS.to_string(),
    ];
    if mesh_tls {
        // One Secret holds every pod's pair; the kubelet expands
        // $(POD_NAME) (defined in env below) so each pod picks its own.
        args.extend([
            "--mesh-tls-cert".into(),
            format!("{MESH_TLS_DIR}/$(POD_NAME).crt"),
            "--mesh-tls-key".into(),
            format!("{MESH_TLS_DIR}/$(POD_NAME).key"),
            "--mesh-tls-ca".into(),
            format!("{MESH_TLS_DIR}/{CA_CERT_KEY}"),
        ]);
    }
    if client_auth.tokens_secret.is_some() {
        args.extend([
            "--client-tokens".into(),
            format!("{CLIENT_TOKENS_DIR}/{TOKENS_KEY}"),
        ]);
    }
    if client_auth.tls_secret.is_some() {
        args.extend([
            "--client-tls-cert".into(),
            format!("{CLIENT_TLS_DIR}/tls.crt"),
            "--client-tls-key".into(),
            format!("{CLIENT_TLS_DIR}/tls.key"),
        ]);
        if client_auth.require_client_certificates {
            args.extend(["--client-tls-ca".into(), format!("{CLIENT_TLS_DIR}/ca.crt")]);
        }
    }
    Container {
        name: "vss".into(),
        image: Some(spec.image.clone().unwrap_or_else(|| default_image.into())),
        image_pull_policy: spec.image_pull_policy.clone(),
        command: Some(vec!["/vss-runtime".into()]),
        args: Some(args),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            EnvVar {
                name: "VSS_LOG_FORMAT".into(),
                value: Some("json".into()),
                ..Default::default()
            },
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("grpc".into()),
                container_port: GRPC_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("mesh".into()),
                container_port: MESH_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("http".into()),
                container_port: super::HTTP_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        readiness_probe: Some(http_probe("/readyz", 2, 2)),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

/// Volume name of the `i`th module ConfigMap (in name order). Numbered
/// rather than derived from the ConfigMap's name, which may be longer than a
/// volume name may be and contain dots, which a volume name may not.
fn module_volume_name(i: usize) -> String {
    format!("module-{i}")
}

/// Volume of the `<cluster>-mesh-tls` Secret.
const MESH_TLS_VOLUME: &str = "mesh-tls";
/// Volume of `clientAuth.tokensSecret`, and where it is mounted.
const CLIENT_TOKENS_VOLUME: &str = "client-tokens";
const CLIENT_TOKENS_DIR: &str = "/var/run/vss/client-tokens";
/// The key of `clientAuth.tokensSecret` that holds the token file.
pub const TOKENS_KEY: &str = "tokens.yaml";
/// Volume of `clientAuth.tlsSecret`, and where it is mounted.
const CLIENT_TLS_VOLUME: &str = "client-tls";
const CLIENT_TLS_DIR: &str = "/var/run/vss/client-tls";

fn volumes(cluster: &VssCluster, names: &Names) -> Vec<Volume> {
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names.config.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if cluster.spec.mesh_tls_enabled() {
        volumes.push(Volume {
            name: MESH_TLS_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names.mesh_tls.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    // Whole-Secret mounts (no subPath), so the kubelet's updates of a
    // rotated certificate or an edited token file reach the pods.
    let client_auth = cluster.spec.client_auth.clone().unwrap_or_default();
    for (name, secret) in [
        (CLIENT_TOKENS_VOLUME, client_auth.tokens_secret),
        (CLIENT_TLS_VOLUME, client_auth.tls_secret),
    ] {
        if let Some(secret) = secret {
            volumes.push(Volume {
                name: name.into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    let mut keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for custom in cluster.spec.slots.iter().filter_map(|s| s.custom.as_ref()) {
        let r = &custom.config_map_key_ref;
        let entry = keys.entry(r.name.as_str()).or_default();
        if !entry.contains(&r.key.as_str()) {
            entry.push(r.key.as_str());
        }
    }
    // BTreeMap order is the name order module_config_maps uses for mounts.
    for (i, (cm, keys)) in keys.into_iter().enumerate() {
        volumes.push(Volume {
            name: module_volume_name(i),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.to_string(),
                items: Some(
                    keys.into_iter()
                        .map(|k| KeyToPath {
                            key: k.to_string(),
                            path: k.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    volumes
}

/// Prefer spreading the pods over nodes: losing one node then costs one
/// instance. Preferred, not required, so a small test cluster still runs.
fn default_affinity(cluster: &VssCluster) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(cluster)),
                            ..Default::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("100m".into())),
            ("memory".to_string(), Quantity("128Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("512Mi".into()),
        )])),
        ..Default::default()
    }
}
