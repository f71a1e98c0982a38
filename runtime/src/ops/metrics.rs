//! Prometheus metrics of the runtime, exposed on `/metrics`.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub slot: u32,
    pub verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub slot: u32,
    pub verb: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub verb: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub slot: u32,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub slot: u32,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub slot_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlotLabels {
    pub slot: u32,
}

/// One Envoy rate limit rule's decisions. Domains and names come from the
/// configuration, never from requests, so the set of series is bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RlsRuleLabels {
    pub domain: String,
    pub rule: String,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// 1 µs .. ~1 s, for whole requests.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-6, 2.0, 21))
}

/// 100 ns .. ~100 ms, for time inside Wasm.
fn wasm_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-7, 2.0, 21))
}

/// 2 .. 128 requests per batch.
fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(2.0, 2.0, 7))
}

/// The client verbs a slot serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Acquire,
    Call,
    Publish,
    Register,
    Deregister,
    Increment,
    Decrement,
    ReadCounter,
    Set,
    Get,
    Delete,
    ListKeys,
    Announce,
    Withdraw,
    ListServices,
    WatchServices,
    WatchTicks,
}

impl Verb {
    pub const ALL: [Verb; 17] = [
        Verb::Acquire,
        Verb::Call,
        Verb::Publish,
        Verb::Register,
        Verb::Deregister,
        Verb::Increment,
        Verb::Decrement,
        Verb::ReadCounter,
        Verb::Set,
        Verb::Get,
        Verb::Delete,
        Verb::ListKeys,
        Verb::Announce,
        Verb::Withdraw,
        Verb::ListServices,
        Verb::WatchServices,
        Verb::WatchTicks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Verb::Acquire => "acquire",
            Verb::Call => "call",
            Verb::Publish => "publish",
            Verb::Register => "register",
            Verb::Deregister => "deregister",
            Verb::Increment => "increment",
            Verb::Decrement => "decrement",
            Verb::ReadCounter => "read_counter",
            Verb::Set => "set",
            Verb::Get => "get",
            Verb::Delete => "delete",
            Verb::ListKeys => "list_keys",
            Verb::Announce => "announce",
            Verb::Withdraw => "withdraw",
            Verb::ListServices => "list_services",
            Verb::WatchServices => "watch_services",
            Verb::WatchTicks => "watch_ticks",
        }
    }

    /// Whether a slot of `slot_type` (as status names it: `custom:<module>`
    /// for custom types) serves this verb. Only those get a series, so 100
    /// slots do not export a counter for every verb of every type.
    pub fn applies_to(self, slot_type: &str) -> bool {
        let custom = slot_type.starts_with("custom");
        match self {
            Verb::Call => true,
            Verb::Acquire => custom || matches!(slot_type, "token-bucket" | "leaky-bucket"),
            Verb::Publish | Verb::Register | Verb::Deregister => {
                custom || matches!(slot_type, "broadcast" | "multicast" | "random")
            }
            Verb::Increment | Verb::Decrement | Verb::ReadCounter => slot_type == "counter",
            Verb::Set | Verb::Get | Verb::Delete | Verb::ListKeys => slot_type == "register",
            Verb::Announce | Verb::Withdraw | Verb::ListServices | Verb::WatchServices => {
                slot_type == "registry"
            }
            Verb::WatchTicks => slot_type == "tick",
        }
    }
}

/// Series of one slot.
#[derive(Debug, Clone)]
pub struct SlotMetrics {
    /// Calls per verb, indexed by `Verb as usize`.
    pub calls: [Counter; Verb::ALL.len()],
    pub wasm_seconds: Histogram,
    pub restarts: Counter,
    /// Requests waiting in the slot's queue.
    pub queue_depth: Gauge,
    /// Time from enqueue to the start of the call that served it.
    pub queue_wait_seconds: Histogram,
    /// Requests per `handle-batch` call, for batches of two or more.
    pub batch_size: Histogram,
    /// Acquires answered with tokens, and with none.
    pub granted: Counter,
    pub refused: Counter,
}

impl SlotMetrics {
    /// Counts one acquire's answer: `granted` tokens, 0 for a refusal.
    pub fn decided(&self, granted: u32) {
        if granted > 0 {
            self.granted.inc();
        } else {
            self.refused.inc();
        }
    }
}

/// Every metric the runtime records, registered once.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub calls: Family<CallLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    /// Request latency per verb, indexed by `Verb as usize`; resolved once
    /// so the request path does no label lookup.
    request_seconds: [Histogram; Verb::ALL.len()],
    /// `AcquireBatch` calls: a series of the same family, not a slot verb.
    acquire_batch_seconds: Histogram,
    pub wasm_call_seconds: Family<TypeLabels, Histogram>,
    pub restarts: Family<SlotLabels, Counter>,
    pub queue_depth: Family<SlotLabels, Gauge>,
    pub queue_wait_seconds: Family<SlotLabels, Histogram>,
    pub batch_size: Family<TypeLabels, Histogram>,
    pub rejected: Family<RejectLabels, Counter>,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub connected_clients: Gauge,
    pub cluster: ClusterMetrics,
    pub rls: RlsMetrics,
    pub mesh_tls: TlsMetrics,
    pub client_tls: TlsMetrics,
    pub access: AccessMetrics,
    pub connections: ConnectionMetrics,
    registry: Arc<Registry>,
}

/// Series of TLS on one port (zero without its `--*-tls-*` flags).
#[derive(Debug, Clone, Default)]
pub struct TlsMetrics {
    /// Connections refused during the handshake: no certificate, another
    /// CA, plaintext, too slow.
    pub handshake_failures: Counter,
    /// Certificate sets swapped in after a change of the files.
    pub reloads: Counter,
    /// Changed file sets that did not build (the old set stays).
    pub reload_failures: Counter,
    /// notAfter of the certificate in force, seconds since the Unix epoch.
    pub cert_expiry_seconds: Gauge,
}

impl TlsMetrics {
    pub fn record_expiry(&self, not_after: Option<i64>) {
        self.cert_expiry_seconds.set(not_after.unwrap_or(0));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// `unauthenticated` or `permission_denied`.
    pub reason: &'static str,
    /// The permission asked for: acquire, publish, subscribe, admin.
    pub permission: &'static str,
}

/// Series of client tokens (zero without `--client-tokens`).
#[derive(Debug, Clone, Default)]
pub struct AccessMetrics {
    /// Calls refused for want of a token or a permission.
    pub refused: Family<RefusedLabels, Counter>,
    /// Token files swapped in after a change.
    pub reloads: Counter,
    /// Changed token files that did not parse (the tokens in force stay).
    pub reload_failures: Counter,
}

/// Series of Envoy's rate limit service.
#[derive(Debug, Clone)]
pub struct RlsMetrics {
    /// Per rule: allowed, over_limit, shadowed.
    pub decisions: Family<RlsRuleLabels, Counter>,
    /// Per request: ok, over_limit, unavailable, invalid, refused (token).
    pub requests: Family<OutcomeLabels, Counter>,
    /// Descriptors no rule matched (answered OK, no limit).
    pub unmatched: Counter,
    pub request_seconds: Histogram,
}

/// Series of the mesh and of routing.
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    pub peer_up: Family<PeerLabels, Gauge>,
    pub peer_rtt_seconds: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    pub forwarded: Family<PeerLabels, Counter>,
    pub replicated: Family<PeerLabels, Counter>,
    pub routing_epoch: Gauge,
    pub leader: Gauge,
    pub refused_mesh_messages: Counter,
    pub config_generation: Gauge,
    /// 1 once the slots kept on every instance took their peers' state.
    pub everywhere_synced: Gauge,
    /// How late each tick was sent after its due time.
    pub tick_lateness_seconds: Histogram,
    pub replication_lag: ReplicationLag,
    /// Acquires answered here from a bucket known empty, unasked of its owner.
    pub local_denials: Family<SlotLabels, Counter>,
    /// Leases this instance got from buckets' owners, and their tokens.
    pub leases: Family<SlotLabels, Counter>,
    pub leased_tokens: Family<SlotLabels, Counter>,
    /// Acquires answered here from a lease.
    pub lease_decisions: Family<SlotLabels, Counter>,
    /// Unused leased tokens given back to their buckets.
    pub returned_tokens: Family<SlotLabels, Counter>,
    /// Partitions of split slots this instance owns.
    pub partitions_owned: Gauge,
    /// Slots and partitions handed over to their new owner with their
    /// final state, counted by the instance that handed them.
    pub handed_over: Counter,
    /// Slots and partitions taken over from a live owner and served from
    /// the replica because its final state did not come in time: what
    /// that owner decided since the last replication round is lost.
    pub handover_waits_expired: Counter,
}

/// How far behind this instance each standby peer is: 0 after a
/// replication round that left it holding the state of every slot it
/// stands by for, else the time since the last round that did. A counter
/// of pushes cannot show a standby that stopped taking them; this can.
#[derive(Debug, Clone, Default)]
pub struct ReplicationLag {
    seconds: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    caught_up: Arc<Mutex<HashMap<String, Instant>>>,
}

impl ReplicationLag {
    /// Records one replication round's result for `peer`. A peer that has
    /// never caught up counts from its first round.
    pub fn record(&self, peer: &str, caught_up: bool, now: Instant) {
        let mut since = self.caught_up.lock().unwrap_or_else(|p| p.into_inner());
        let last = since.entry(peer.to_string()).or_insert(now);
        if caught_up {
            *last = now;
        }
        self.seconds
            .get_or_create(&PeerLabels {
                peer: peer.to_string(),
            })
            .set(now.saturating_duration_since(*last).as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let calls = Family::default();
        let errors = Family::default();
        let request_seconds = Family::<VerbLabels, Histogram>::new_with_constructor(
            request_histogram as fn() -> Histogram,
        );
        let wasm_call_seconds = Family::<TypeLabels, Histogram>::new_with_constructor(
            wasm_histogram as fn() -> Histogram,
        );
        let restarts = Family::default();
        let queue_depth = Family::default();
        let queue_wait_seconds = Family::<SlotLabels, Histogram>::new_with_constructor(
            request_histogram as fn() -> Histogram,
        );
        let batch_size = Family::<TypeLabels, Histogram>::new_with_constructor(
            batch_histogram as fn() -> Histogram,
        );
        let rejected = Family::default();
        let deliveries = Family::default();
        let decisions = Family::default();
        let connected_clients = Gauge::default();
        let mut registry = Registry::with_prefix("vss");
        registry.register("slot_calls", "Calls per slot and verb", calls.clone());
        registry.register(
            "slot_errors",
            "Failed calls per slot, verb and gRPC code",
            errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to serve a client request, by verb",
            request_seconds.clone(),
        );
        registry.register(
            "wasm_call_duration_seconds",
            "Time spent inside slot modules per call, by slot type",
            wasm_call_seconds.clone(),
        );
        registry.register(
            "slot_restarts",
            "Slot instances rebuilt after a trap, timeout or memory overrun",
            restarts.clone(),
        );
        registry.register(
            "slot_queue_depth",
            "Requests waiting in each slot's queue",
            queue_depth.clone(),
        );
        registry.register(
            "slot_queue_wait_seconds",
            "Time a request waited in its slot's queue before its call began",
            queue_wait_seconds.clone(),
        );
        registry.register(
            "slot_batch_size",
            "Requests handed to a slot module in one handle-batch call, by slot type",
            batch_size.clone(),
        );
        registry.register(
            "requests_rejected",
            "Requests refused before reaching a slot, by verb and gRPC code",
            rejected.clone(),
        );
        registry.register(
            "deliveries",
            "Signal deliveries by slot and outcome (delivered, failed)",
            deliveries.clone(),
        );
        registry.register(
            "acquire_decisions",
            "Acquires answered per slot, by decision (granted, refused)",
            decisions.clone(),
        );
        registry.register(
            "connected_clients",
            "Clients with an open event stream on this instance",
            connected_clients.clone(),
        );
        let cluster = ClusterMetrics {
            peer_up: Family::default(),
            peer_rtt_seconds: Family::default(),
            forwarded: Family::default(),
            replicated: Family::default(),
            routing_epoch: Gauge::default(),
            leader: Gauge::default(),
            refused_mesh_messages: Counter::default(),
            config_generation: Gauge::default(),
            everywhere_synced: Gauge::default(),
            tick_lateness_seconds: request_histogram(),
            replication_lag: ReplicationLag::default(),
            local_denials: Family::default(),
            leases: Family::default(),
            leased_tokens: Family::default(),
            lease_decisions: Family::default(),
            returned_tokens: Family::default(),
            partitions_owned: Gauge::default(),
            handed_over: Counter::default(),
            handover_waits_expired: Counter::default(),
        };
        registry.register(
            "local_denials",
            "Acquires denied here from a bucket known empty until its refill, without asking its owner",
            cluster.local_denials.clone(),
        );
        registry.register(
            "leases",
            "Leases of tokens this instance got from hot buckets' owners",
            cluster.leases.clone(),
        );
        registry.register(
            "leased_tokens",
            "Tokens this instance got in leases",
            cluster.leased_tokens.clone(),
        );
        registry.register(
            "lease_decisions",
            "Acquires answered here from a lease, without asking the bucket's owner",
            cluster.lease_decisions.clone(),
        );
        registry.register(
            "lease_returned_tokens",
            "Unused leased tokens given back to their buckets",
            cluster.returned_tokens.clone(),
        );
        registry.register(
            "partitions_owned",
            "Partitions of split limiter slots this instance owns",
            cluster.partitions_owned.clone(),
        );
        registry.register(
            "handed_over",
            "Slots and partitions handed over to their new owner with their final state",
            cluster.handed_over.clone(),
        );
        registry.register(
            "handover_waits_expired",
            "Slots and partitions taken over from a live owner and served from the replica because its final state did not come in time",
            cluster.handover_waits_expired.clone(),
        );
        registry.register(
            "peer_up",
            "1 while the peer answers heartbeats",
            cluster.peer_up.clone(),
        );
        registry.register(
            "peer_rtt_seconds",
            "Round-trip time of the last heartbeat to each peer",
            cluster.peer_rtt_seconds.clone(),
        );
        registry.register(
            "forwarded_requests",
            "Requests forwarded to the owning peer",
            cluster.forwarded.clone(),
        );
        registry.register(
            "replication_pushes",
            "Slot state pushes to each standby peer",
            cluster.replicated.clone(),
        );
        registry.register(
            "routing_epoch",
            "Epoch of the routing table in force",
            cluster.routing_epoch.clone(),
        );
        registry.register(
            "leader",
            "1 while this instance is the leader",
            cluster.leader.clone(),
        );
        registry.register(
            "refused_mesh_messages",
            "Mesh messages refused (stale epoch, unknown peer, bad content)",
            cluster.refused_mesh_messages.clone(),
        );
        registry.register(
            "config_generation",
            "Generation of the slot configuration in force",
            cluster.config_generation.clone(),
        );
        registry.register(
            "replicated_slots_synced",
            "1 once the counter, register and registry slots took their peers' state after a start",
            cluster.everywhere_synced.clone(),
        );
        registry.register(
            "tick_lateness_seconds",
            "How long after its due time each tick left this instance",
            cluster.tick_lateness_seconds.clone(),
        );
        registry.register(
            "replication_lag_seconds",
            "Time each standby peer has been behind the slot state this instance owns (0: caught up)",
            cluster.replication_lag.seconds.clone(),
        );
        let rls = RlsMetrics {
            decisions: Family::default(),
            requests: Family::default(),
            unmatched: Counter::default(),
            request_seconds: request_histogram(),
        };
        registry.register(
            "rls_decisions",
            "Envoy rate limit decisions per configured rule (allowed, over_limit, shadowed)",
            rls.decisions.clone(),
        );
        registry.register(
            "rls_requests",
            "Envoy ShouldRateLimit calls by outcome (ok, over_limit, unavailable, invalid)",
            rls.requests.clone(),
        );
        registry.register(
            "rls_unmatched_descriptors",
            "Descriptors of ShouldRateLimit calls that no rule matched (answered OK)",
            rls.unmatched.clone(),
        );
        registry.register(
            "rls_request_duration_seconds",
            "Time to answer a ShouldRateLimit call",
            rls.request_seconds.clone(),
        );
        let mesh_tls = TlsMetrics::default();
        registry.register(
            "mesh_tls_handshake_failures",
            "Connections to the mesh port refused during the TLS handshake",
            mesh_tls.handshake_failures.clone(),
        );
        registry.register(
            "mesh_tls_reloads",
            "Mesh certificate sets reloaded after their files changed",
            mesh_tls.reloads.clone(),
        );
        registry.register(
            "mesh_tls_reload_failures",
            "Changed mesh certificate files that did not load (the certificate in force stays)",
            mesh_tls.reload_failures.clone(),
        );
        registry.register(
            "mesh_tls_cert_expiry_seconds",
            "Expiry (notAfter) of the mesh certificate in force, in seconds since the Unix epoch",
            mesh_tls.cert_expiry_seconds.clone(),
        );
        let client_tls = TlsMetrics::default();
        registry.register(
            "client_tls_handshake_failures",
            "Connections to the client port refused during the TLS handshake",
            client_tls.handshake_failures.clone(),
        );
        registry.register(
            "client_tls_reloads",
            "Client port certificate sets reloaded after their files changed",
            client_tls.reloads.clone(),
        );
        registry.register(
            "client_tls_reload_failures",
            "Changed client port certificate files that did not load (the certificate in force stays)",
            client_tls.reload_failures.clone(),
        );
        registry.register(
            "client_tls_cert_expiry_seconds",
            "Expiry (notAfter) of the client port's certificate in force, in seconds since the Unix epoch",
            client_tls.cert_expiry_seconds.clone(),
        );
        let connections = ConnectionMetrics::default();
        registry.register(
            "client_connections",
            "Client connections open on the client port",
            connections.open.clone(),
        );
        registry.register(
            "client_connections_refused",
            "Client connections closed at once because the port held --client-max-connections",
            connections.refused.clone(),
        );
        registry.register(
            "client_calls_refused",
            "Client calls refused because their connection spent --client-max-calls-per-second",
            connections.calls_refused.clone(),
        );
        let access = AccessMetrics::default();
        registry.register(
            "access_refused",
            "Client calls refused: no or unknown token (unauthenticated), or a token without the permission (permission_denied)",
            access.refused.clone(),
        );
        registry.register(
            "access_reloads",
            "Token files reloaded after they changed",
            access.reloads.clone(),
        );
        registry.register(
            "access_reload_failures",
            "Changed token files that did not load (the tokens in force stay)",
            access.reload_failures.clone(),
        );
        // Bound on its own: the family's lock guard lives as long as the
        // statement, and the one below takes the lock again.
        let acquire_batch_seconds = request_seconds
            .get_or_create(&VerbLabels {
                verb: "acquire_batch",
            })
            .clone();
        Self {
            cluster,
            rls,
            mesh_tls,
            client_tls,
            access,
            connections,
            deliveries,
            decisions,
            connected_clients,
            rejected,
            calls,
            errors,
            acquire_batch_seconds,
            request_seconds: Verb::ALL.map(|verb| {
                request_seconds
                    .get_or_create(&VerbLabels { verb: verb.name() })
                    .clone()
            }),
            wasm_call_seconds,
            restarts,
            queue_depth,
            queue_wait_seconds,
            batch_size,
            registry: Arc::new(registry),
        }
    }

    /// Handles to one slot's series, resolved once at load so the request
    /// path does no label lookups.
    pub fn for_slot(&self, slot: u8, slot_type: &str) -> SlotMetrics {
        let slot = u32::from(slot);
        // One statement per lookup: a lookup's read guard lives to the end
        // of its statement, and a second lookup that inserts would deadlock.
        let calls = Verb::ALL.map(|verb| {
            if !verb.applies_to(slot_type) {
                // Still counted (for status), never exported.
                return Counter::default();
            }
            self.calls
                .get_or_create(&CallLabels {
                    slot,
                    verb: verb.name(),
                })
                .clone()
        });
        let wasm_seconds = self
            .wasm_call_seconds
            .get_or_create(&TypeLabels {
                slot_type: slot_type.to_string(),
            })
            .clone();
        let restarts = self.restarts.get_or_create(&SlotLabels { slot }).clone();
        let queue_depth = self.queue_depth.get_or_create(&SlotLabels { slot }).clone();
        let queue_wait_seconds = self
            .queue_wait_seconds
            .get_or_create(&SlotLabels { slot })
            .clone();
        let batch_size = self
            .batch_size
            .get_or_create(&TypeLabels {
                slot_type: slot_type.to_string(),
            })
            .clone();
        // Zero series from the start, so a rate or a ratio over them
        // exists before the first refusal or failed delivery.
        let decision = |decision| {
            if !Verb::Acquire.applies_to(slot_type) {
                return Counter::default();
            }
            self.decisions
                .get_or_create(&DecisionLabels { slot, decision })
                .clone()
        };
        let granted = decision("granted");
        let refused = decision("refused");
        if Verb::Publish.applies_to(slot_type) {
            for outcome in ["delivered", "failed"] {
                let _ = self
                    .deliveries
                    .get_or_create(&DeliveryLabels { slot, outcome });
            }
        }
        SlotMetrics {
            calls,
            wasm_seconds,
            restarts,
            queue_depth,
            queue_wait_seconds,
            batch_size,
            granted,
            refused,
        }
    }

    /// Records how long serving one `verb` request took.
    pub fn observe_request(&self, verb: Verb, seconds: f64) {
        self.request_seconds[verb as usize].observe(seconds);
    }

    /// Records how long serving one `AcquireBatch` took, all its slots.
    pub fn observe_acquire_batch(&self, seconds: f64) {
        self.acquire_batch_seconds.observe(seconds);
    }

    pub fn record_error(&self, slot: u8, verb: &'static str, code: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels {
                slot: u32::from(slot),
                verb,
                code,
            })
            .inc();
    }

    /// A request refused before it reached a slot (bad or unconfigured id).
    /// Not labelled by slot: the requested number is unbounded input.
    pub fn record_rejected(&self, verb: &'static str, code: &'static str) {
        self.rejected
            .get_or_create(&RejectLabels { verb, code })
            .inc();
    }

    pub fn record_deliveries(&self, slot: u32, delivered: u32, failed: u32) {
        for (outcome, n) in [("delivered", delivered), ("failed", failed)] {
            if n > 0 {
                self.deliveries
                    .get_or_create(&DeliveryLabels { slot, outcome })
                    .inc_by(u64::from(n));
            }
        }
    }

    /// Deliveries on `slot` since start: (acknowledged, failed).
    pub fn deliveries_of(&self, slot: u32) -> (u64, u64) {
        let count = |outcome| {
            self.deliveries
                .get(&DeliveryLabels { slot, outcome })
                .map_or(0, |c| c.get())
        };
        (count("delivered"), count("failed"))
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_export_only_the_verbs_of_their_type() {
        let metrics = Metrics::new();
        let limiter = metrics.for_slot(0, "token-bucket");
        let counter = metrics.for_slot(20, "counter");
        limiter.calls[Verb::Acquire as usize].inc();
        counter.calls[Verb::Increment as usize].inc();
        let text = metrics.encode().expect("encodes");
        assert!(text.contains(r#"vss_slot_calls_total{slot="0",verb="acquire"} 1"#));
        assert!(text.contains(r#"vss_slot_calls_total{slot="20",verb="increment"} 1"#));
        assert!(text.contains(r#"vss_slot_calls_total{slot="20",verb="call"} 0"#));
        assert!(!text.contains(r#"slot="0",verb="increment""#), "{text}");
        assert!(!text.contains(r#"slot="20",verb="acquire""#), "{text}");
    }

    #[test]
    fn acquire_decisions_and_deliveries_start_at_zero_for_their_slot_types() {
        let metrics = Metrics::new();
        let limiter = metrics.for_slot(0, "token-bucket");
        metrics.for_slot(10, "broadcast");
        metrics.for_slot(20, "counter");
        limiter.decided(3);
        limiter.decided(0);
        limiter.decided(0);
        let text = metrics.encode().expect("encodes");
        assert!(text.contains(r#"vss_acquire_decisions_total{slot="0",decision="granted"} 1"#));
        assert!(text.contains(r#"vss_acquire_decisions_total{slot="0",decision="refused"} 2"#));
        assert!(text.contains(r#"vss_deliveries_total{slot="10",outcome="failed"} 0"#));
        assert!(!text.contains(r#"decisions_total{slot="10""#), "{text}");
        assert!(!text.contains(r#"decisions_total{slot="20""#), "{text}");
        assert!(!text.contains(r#"deliveries_total{slot="0""#), "{text}");
    }

    #[test]
    fn replication_lag_counts_from_the_last_round_that_caught_up() {
        let metrics = Metrics::new();
        let lag = &metrics.cluster.replication_lag;
        let start = Instant::now();
        let at = |ms| start + std::time::Duration::from_millis(ms);
        lag.record("vss-1", true, at(0));
        lag.record("vss-1", false, at(1000));
        lag.record("vss-1", false, at(2500));
        // Never caught up: counts from its first round.
        lag.record("vss-2", false, at(1000));
        lag.record("vss-2", false, at(1500));
        let text = metrics.encode().expect("encodes");
        assert!(
            text.contains(r#"vss_replication_lag_seconds{peer="vss-1"} 2.5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"vss_replication_lag_seconds{peer="vss-2"} 0.5"#),
            "{text}"
        );
        lag.record("vss-1", true, at(3000));
        let text = metrics.encode().expect("encodes");
        assert!(
            text.contains(r#"vss_replication_lag_seconds{peer="vss-1"} 0.0"#),
            "{text}"
        );
    }
}

/// Series of the client port's connection limits.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    /// Client connections open now.
    pub open: Gauge,
    /// Connections closed at once because the port held its maximum.
    pub refused: Counter,
    /// Calls refused because their connection spent its budget.
    pub calls_refused: Counter,
}
