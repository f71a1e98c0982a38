//! The operator's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Counters shared by every reconcile.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Reconciles by result (`ok`, `error`, `invalid`).
    pub reconciles: Family<ResultLabel, Counter>,
    /// Config pushes to pods by result (`ok`, `error`).
    pub pushes: Family<ResultLabel, Counter>,
    /// Objects created or repaired.
    pub applies: Counter,
    /// Pods deleted by chaos.
    pub chaos_kills: Counter,
}

impl Metrics {
    pub fn register(self, registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("vss_operator");
        r.register(
            "reconciles",
            "Reconciles by result",
            self.reconciles.clone(),
        );
        r.register(
            "config_pushes",
            "Config pushes to pods by result",
            self.pushes.clone(),
        );
        r.register(
            "applies",
            "Owned objects created or repaired",
            self.applies.clone(),
        );
        r.register(
            "chaos_pod_kills",
            "Pods deleted by chaos",
            self.chaos_kills.clone(),
        );
        self
    }

    pub fn reconciled(&self, result: &'static str) {
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn pushed(&self, result: &'static str) {
        self.pushes.get_or_create(&ResultLabel { result }).inc();
    }
}
