//! The `VssCluster` custom resource: spec, status and the schema rules that
//! let `kubectl apply` refuse a bad spec before the operator sees it.
//!
//! A slot here has the same flat fields as the runtime's
//! [`vss_config::SlotSpec`], except `custom`: in a cluster the module comes
//! from a ConfigMap key instead of a file path. [`crate::slots`] turns the
//! CRD slots into a [`vss_config::SlotsConfig`] and validates it with the
//! runtime's own checks, so the operator and the runtime agree on what is
//! valid; the CEL rules below catch the common mistakes earlier, at apply
//! time.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use vss_config::ConfigValue;

mod rules;

/// API group of the VSS resources.
pub const GROUP: &str = "vss.dev";
/// Default number of runtime pods.
pub const DEFAULT_INSTANCES: i32 = 3;
/// Longest `metadata.name` a VssCluster may have. The StatefulSet is named
/// after the cluster, and the StatefulSet controller labels every pod with
/// `controller-revision-hash: <name>-<hash>` (a hash of up to 10
/// characters); label values stop at 63 characters, so 63 - 1 - 10 = 52.
/// The other derived names (`<name>-peers` Service, `<name>-<ordinal>`
/// pods, `<name>-config`, `<name>-leader`) fit within that.
pub const MAX_NAME_LEN: usize = 52;

/// A VSS cluster: N runtime pods sharing one slot configuration.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "vss.dev",
    version = "v1alpha1",
    kind = "VssCluster",
    plural = "vssclusters",
    shortname = "vss",
    namespaced,
    status = "VssClusterStatus",
    printcolumn = r#"{"name":"Instances","type":"integer","jsonPath":".spec.instances"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyInstances"}"#,
    printcolumn = r#"{"name":"Leader","type":"string","jsonPath":".status.leader"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    // Services named after the cluster must be DNS-1035 labels (a letter
    // first, no dots), stricter than the DNS-1123 subdomain the API server
    // checks names of custom resources against; see MAX_NAME_LEN for the
    // length. Refused here, a bad name fails at apply time instead of at
    // the first reconcile.
    validation = Rule::new("self.metadata.name.size() <= 52 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be at most 52 characters of lowercase letters, digits and '-', start with a letter and end with a letter or digit (Service and StatefulSet names are derived from it)")
        .reason(Reason::FieldValueInvalid)
)]
#[serde(rename_all = "camelCase")]
pub struct VssClusterSpec {
    /// Number of runtime pods. Default 3.
    #[serde(default = "default_instances")]
    #[schemars(range(min = 1, max = 15))]
    pub instances: i32,

    /// The slot configuration: at most 100 slots, ids 0-99, each id once.
    #[serde(default)]
    #[schemars(length(max = 100))]
    // No `FieldValueDuplicate` reason: the API server words that reason as
    // `Duplicate value: "array"` and drops the message.
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t.id == s.id))")
        .message("slot ids must be unique: an id appears in more than one slot"))]
    pub slots: Vec<VssSlot>,

    /// Runtime image; defaults to the operator's `--runtime-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Pull policy of the runtime image (`Always`, `IfNotPresent`, `Never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Always", "IfNotPresent", "Never"]))]
    pub image_pull_policy: Option<String>,

    /// Secrets for pulling the runtime image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// CPU and memory of the runtime container; defaults to requests of
    /// 100m CPU and 128Mi memory and a 512Mi memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Where the pods run. Without `affinity`, pods of one cluster prefer
    /// different nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<Scheduling>,

    /// Failure injection: the operator deletes a random ready pod on a
    /// schedule, so losing an instance is routine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<Chaos>,

    /// Mutual TLS on the mesh port, where peers and the operator call the
    /// pods. Absent means `mode: Operator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_tls: Option<MeshTls>,

    /// What clients must present on the client port: TLS and tokens, from
    /// Secrets of the cluster's namespace (docs/security.md). Absent: the
    /// client port is plaintext and asks for no token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

fn default_instances() -> i32 {
    DEFAULT_INSTANCES
}

/// One slot, with the same fields as the runtime's config file except
/// `custom`, whose module comes from a ConfigMap.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("!(self.type in ['token-bucket', 'leaky-bucket']) || has(self.bucketSize)")
        .message("bucketSize is required for token-bucket and leaky-bucket slots")
        .field_path(".bucketSize")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!(self.type in ['token-bucket', 'leaky-bucket']) || has(self.period)")
        .message("period is required for token-bucket and leaky-bucket slots (second, minute or hour)")
        .field_path(".period")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.type != 'custom' || has(self.custom)")
        .message("custom (configMapKeyRef and config) is required for custom slots")
        .field_path(".custom")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.type in ['token-bucket', 'leaky-bucket'] || !(has(self.bucketSize) || has(self.period) || has(self.refreshRate))")
        .message("bucketSize, period and refreshRate apply only to token-bucket and leaky-bucket slots"),
    validation = Rule::new("self.type in ['token-bucket', 'leaky-bucket', 'register'] || !has(self.maxKeys)")
        .message("maxKeys applies only to token-bucket, leaky-bucket and register slots")
        .field_path(".maxKeys"),
    validation = Rule::new("self.type == 'counter' || !has(self.growOnly)")
        .message("growOnly applies only to counter slots")
        .field_path(".growOnly"),
    validation = Rule::new("self.type == 'register' || !(has(self.maxKeyBytes) || has(self.maxValueBytes) || has(self.tombstoneTtl))")
        .message("maxKeyBytes, maxValueBytes and tombstoneTtl apply only to register slots"),
    validation = Rule::new("self.type == 'registry' || !(has(self.maxEntries) || has(self.defaultTtl) || has(self.maxTtl))")
        .message("maxEntries, defaultTtl and maxTtl apply only to registry slots"),
    validation = Rule::new("self.type != 'tick' || has(self.interval)")
        .message("interval is required for tick slots (e.g. 100ms, 1s)")
        .field_path(".interval")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.type == 'tick' || !has(self.interval)")
        .message("interval applies only to tick slots")
        .field_path(".interval"),
    validation = Rule::new("self.type == 'token-bucket' || !has(self.tokensPerReq)")
        .message("tokensPerReq applies only to token-bucket slots")
        .field_path(".tokensPerReq"),
    validation = Rule::new("self.type in ['broadcast', 'multicast', 'random'] || !has(self.timeout)")
        .message("timeout applies only to broadcast, multicast and random slots")
        .field_path(".timeout"),
    validation = Rule::new("self.type in ['multicast', 'random'] || !has(self.deregTries)")
        .message("deregTries applies only to multicast and random slots")
        .field_path(".deregTries"),
    validation = Rule::new("self.type == 'custom' || !has(self.custom)")
        .message("custom applies only to custom slots")
        .field_path(".custom"),
    validation = Rule::new("self.type in ['token-bucket', 'leaky-bucket'] || !has(self.rls)")
        .message("rls applies only to token-bucket and leaky-bucket slots")
        .field_path(".rls"),
    validation = rules::default_ttl_within_max_ttl(),
)]
pub struct VssSlot {
    /// Slot id, 0-99.
    #[schemars(range(min = 0, max = 99))]
    pub id: i64,
    /// Slot type: `token-bucket`, `leaky-bucket`, `broadcast`, `multicast`,
    /// `random`, `counter`, `register`, `registry`, `tick` or `custom`.
    // The length bounds here and below keep the CEL rules' estimated cost,
    // which the API server computes from the longest possible string, well
    // under its budget.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["token-bucket", "leaky-bucket", "broadcast", "multicast", "random", "counter", "register", "registry", "tick", "custom"]), length(max = 16))]
    pub slot_type: String,
    /// Limiters: the most tokens the bucket holds.
    // `format: uint64` (what schemars says for u64) is no Kubernetes
    // format; int64 is, and the bound is the runtime's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = vss_config::MAX_COUNT), extend("format" = "int64"))]
    pub bucket_size: Option<u64>,
    /// Limiters: refill (token bucket) or leak (leaky bucket) period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["second", "minute", "hour"]), length(max = 8))]
    pub period: Option<String>,
    /// Limiters: tokens added (token bucket) or leaked (leaky bucket) per period. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = vss_config::MAX_COUNT), extend("format" = "int64"))]
    pub refresh_rate: Option<u64>,
    /// Token bucket: tokens asked for when a request does not say. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = u32::MAX), extend("format" = "int64"))]
    pub tokens_per_req: Option<u64>,
    /// Limiters: most distinct keys (per-caller buckets) kept. Register:
    /// most keys held, deleted ones included. Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = vss_config::MAX_MAX_KEYS), extend("format" = "int64"))]
    pub max_keys: Option<u64>,
    /// Counter: refuse `decrement`. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grow_only: Option<bool>,
    /// Register: longest key in bytes. Default 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = vss_config::MAX_MAX_KEY_BYTES), extend("format" = "int64"))]
    pub max_key_bytes: Option<u64>,
    /// Register: largest value in bytes. Default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = vss_config::MAX_MAX_VALUE_BYTES), extend("format" = "int64"))]
    pub max_value_bytes: Option<u64>,
    /// Register: how long a deleted key is remembered, e.g. `60s` (1s to 24h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"), length(max = 16))]
    #[x_kube(validation = rules::duration_within("tombstoneTtl", vss_config::MIN_TOMBSTONE_TTL, vss_config::MAX_MAX_TTL))]
    pub tombstone_ttl: Option<String>,
    /// Registry: most entries held. Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = vss_config::MAX_MAX_KEYS), extend("format" = "int64"))]
    pub max_entries: Option<u64>,
    /// Registry: lifetime of an announcement that names none (1ms to 24h,
    /// at most `maxTtl`). Default `30s`, or `maxTtl` if that is shorter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"), length(max = 16))]
    #[x_kube(validation = rules::duration_within("defaultTtl", Duration::from_millis(1), vss_config::MAX_MAX_TTL))]
    pub default_ttl: Option<String>,
    /// Registry: longest lifetime an announcement may ask for (1ms to 24h).
    /// Default `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"), length(max = 16))]
    #[x_kube(validation = rules::duration_within("maxTtl", Duration::from_millis(1), vss_config::MAX_MAX_TTL))]
    pub max_ttl: Option<String>,
    /// Tick: time between ticks, e.g. `100ms`, `1s` (10ms to 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"), length(max = 16))]
    #[x_kube(validation = rules::duration_within("interval", vss_config::MIN_TICK_INTERVAL, vss_config::MAX_TICK_INTERVAL))]
    pub interval: Option<String>,
    /// Signals: how long a publish waits for acknowledgements, e.g. `500ms`,
    /// `2s`, `1m` (1ms to 60s). Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m)$"), length(max = 16))]
    // The runtime says "more than 0"; in whole milliseconds that is 1ms.
    #[x_kube(validation = rules::duration_within("timeout", Duration::from_millis(1), vss_config::MAX_SIGNAL_TIMEOUT))]
    pub timeout: Option<String>,
    /// Multicast / random: consecutive failed deliveries after which a
    /// client is deregistered. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000), extend("format" = "int64"))]
    pub dereg_tries: Option<u64>,
    /// Custom slot type: the module (a `.wasm` component in a ConfigMap key)
    /// and its configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomModule>,
    /// Limiters: the descriptors of Envoy's rate limit service this slot
    /// answers (domain, entries, optional name and shadow mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "rules::rls_schema")]
    pub rls: Vec<vss_config::RlsRuleSpec>,
}

/// A custom slot type's module and config.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomModule {
    /// The ConfigMap (same namespace) and key holding the `.wasm` component,
    /// usually in `binaryData`.
    pub config_map_key_ref: ConfigMapKey,
    /// Passed to the module's `init` as name/value pairs. Values are
    /// strings, numbers or booleans; the module receives them as text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "config_values_schema")]
    pub config: BTreeMap<String, ConfigValue>,
}

/// Any scalar, as [`ConfigValue`] takes: users write `enabled: true`.
///
/// A structural schema has no "string, number or boolean" type, and
/// int-or-string refuses booleans. So a value has no type (it keeps what it
/// is) and two contradictory bound pairs instead: no object has at least 1
/// and at most 0 properties, no list at least 1 and at most 0 items, while
/// JSON Schema skips property and item bounds for scalars. Maps and lists,
/// which a module's `init` cannot take, are so refused at apply time. A CEL
/// rule cannot do it: the API server hides values without a type from CEL.
fn config_values_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {
            "x-kubernetes-preserve-unknown-fields": true,
            "minProperties": 1,
            "maxProperties": 0,
            "minItems": 1,
            "maxItems": 0
        }
    })
}

/// A key of a ConfigMap in the VssCluster's namespace.
#[derive(
    JsonSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapKey {
    /// ConfigMap name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key of the module inside the ConfigMap.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Pod placement overrides.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Scheduling {
    /// Replaces the default (preferred anti-affinity between the pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// Failure injection settings.
// Chaos that is on without a usable interval would silently do nothing
// (`chaos::next_step` turns it off), so it is refused.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!self.enabled || has(self.podKillInterval)")
        .message("chaos.podKillInterval is required while chaos.enabled is true (e.g. 10m)")
        .field_path(".podKillInterval")
        .reason(Reason::FieldValueRequired),
)]
pub struct Chaos {
    /// Master switch; nothing is injected while false.
    #[serde(default)]
    pub enabled: bool,
    /// Delete one random pod this often (e.g. `10m`, `1h`), only while every
    /// instance is ready, so chaos never takes more than one pod at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // No leading zero, so `0s` (which would disable chaos) does not match.
    #[schemars(regex(pattern = r"^[1-9][0-9]*(s|m|h)$"), length(max = 16))]
    pub pod_kill_interval: Option<String>,
}

/// How the mesh port is secured.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("self.mode == 'CertManager' ? has(self.issuerRef) : !has(self.issuerRef)")
        .message("meshTls.issuerRef is required with mode CertManager and allowed with no other mode")
        .field_path(".issuerRef")
        .reason(Reason::FieldValueInvalid),
)]
pub struct MeshTls {
    /// `Operator` (default): the operator keeps a CA for the cluster in the
    /// Secret `<name>-mesh-ca` and each pod's certificate in
    /// `<name>-mesh-tls`, renews them before they expire, and the pods
    /// require a certificate of that CA from every caller of the mesh
    /// port. `CertManager`: cert-manager issues a certificate per pod and
    /// one for the operator from `issuerRef`, and renews them; the
    /// operator gathers them into `<name>-mesh-tls`, with every CA they
    /// name (`ca.crt`), so the pods trust each other across a CA change.
    /// `Disabled`: the mesh port is plaintext, and anyone who can reach it
    /// can act as a peer or as the operator; only for clusters whose
    /// network keeps everyone else out.
    #[serde(default)]
    pub mode: MeshTlsMode,
    /// With `mode: CertManager`: the cert-manager Issuer or ClusterIssuer
    /// that signs the mesh certificates. It must put the CA in the
    /// Secrets' `ca.crt` (the CA and Vault issuers do; ACME does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

/// A cert-manager issuer, as a `Certificate`'s `spec.issuerRef` names it.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerRef {
    /// The issuer's name; an `Issuer` must be in the cluster's namespace.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
    pub name: String,
    /// `Issuer` (default) or `ClusterIssuer`, or an external issuer's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z][A-Za-z0-9]*$"), length(max = 63))]
    pub kind: Option<String>,
    /// The issuer's API group; `cert-manager.io` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub group: Option<String>,
}

/// TLS and tokens on the client port.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("!self.requireClientCertificates || has(self.tlsSecret)")
        .message("clientAuth.requireClientCertificates needs clientAuth.tlsSecret (its ca.crt signs the clients' certificates)")
        .field_path(".tlsSecret")
        .reason(Reason::FieldValueRequired),
)]
pub struct ClientAuth {
    /// A Secret whose key `tokens.yaml` is the runtime's token file: every
    /// call must carry `authorization: Bearer <token>` of a token it
    /// grants the call's permission (acquire, publish, subscribe, admin) on
    /// the slot. Edits reach the pods without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub tokens_secret: Option<String>,
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`): the client port
    /// speaks TLS with that certificate, reloaded when the Secret changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub tls_secret: Option<String>,
    /// Require client certificates signed by the `ca.crt` of `tlsSecret`.
    #[serde(default)]
    pub require_client_certificates: bool,
}

/// Who secures the mesh port; see [`MeshTls::mode`].
// No doc comments on the variants: schemars would turn them into a
// `oneOf`, which a structural schema refuses; the field's doc says it.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MeshTlsMode {
    #[default]
    Operator,
    CertManager,
    Disabled,
}

impl VssClusterSpec {
    /// The mesh TLS mode in force (`Operator` when unset).
    pub fn mesh_tls_mode(&self) -> MeshTlsMode {
        self.mesh_tls.as_ref().map(|m| m.mode).unwrap_or_default()
    }

    /// Whether the pods mount `<name>-mesh-tls` and speak mTLS on the mesh
    /// port (every mode but `Disabled`).
    pub fn mesh_tls_enabled(&self) -> bool {
        self.mesh_tls_mode() != MeshTlsMode::Disabled
    }
}

/// What the operator observed.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VssClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded`.
    // One condition per type, as server-side apply and `kubectl wait`
    // expect of conditions.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Pods passing their readiness probe.
    #[serde(default)]
    pub ready_instances: i32,
    /// The leader named by the pods' routing tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Per pod, the slot config generation it runs.
    #[serde(default)]
    pub pods: Vec<PodConfigStatus>,
    /// When chaos last deleted a pod (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_chaos_kill: Option<String>,
}

/// One pod's applied configuration.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PodConfigStatus {
    pub name: String,
    /// Generation of the slot config in force on the pod; absent when the
    /// pod did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_generation: Option<i64>,
}

/// The CRD as applied: the derived one, with `nullable: true` taken out.
///
/// kube marks every `Option` field nullable. An absent field is what the
/// operator means by `None`, and the API server drops a `null` of a
/// non-nullable field before validating (so `image: null` still means
/// "not set"); a nullable field with an `enum` would instead have to
/// admit `null` as a value, which validators disagree on. Plain fields,
/// as controller-gen writes them, leave one meaning.
pub fn definition() -> CustomResourceDefinition {
    let mut crd = VssCluster::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            strip_nullable(schema);
        }
    }
    crd
}

fn strip_nullable(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    for s in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        strip_nullable(s);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(s)) = schema.items.as_mut() {
        strip_nullable(s);
    }
    if let Some(JSONSchemaPropsOrArray::Schemas(list)) = schema.items.as_mut() {
        list.iter_mut().for_each(strip_nullable);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(s)) = schema.additional_properties.as_mut() {
        strip_nullable(s);
    }
    for list in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of] {
        list.iter_mut().flatten().for_each(strip_nullable);
    }
    if let Some(s) = schema.not.as_mut() {
        strip_nullable(s);
    }
}

impl VssClusterStatus {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

#[cfg(test)]
mod tests;
