//! Latency histograms and the summary printed for a run.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency recorded exactly; slower calls are recorded as this.
const MAX_MICROS: u64 = 60_000_000;

/// Latencies of one run, in microseconds, with 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, MAX_MICROS, 3)
                .expect("static bounds are valid"),
        }
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
        self.histogram
            .saturating_record(micros.clamp(1, MAX_MICROS));
    }

    pub fn add(&mut self, other: &Latencies) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at `quantile` (0-1), in microseconds.
    pub fn at(&self, quantile: f64) -> u64 {
        self.histogram.value_at_quantile(quantile)
    }

    pub fn max(&self) -> u64 {
        self.histogram.max()
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Summary {
    pub scenario: String,
    pub connections: usize,
    pub in_flight: usize,
    /// Offered rate of an open-loop run; None: closed loop.
    pub rate: Option<f64>,
    pub measured: Duration,
    pub ok: u64,
    /// Of `ok`, acquires that were granted (the rest were refused).
    pub granted: u64,
    pub errors: u64,
    pub latencies: Latencies,
}

impl Summary {
    pub fn throughput(&self) -> f64 {
        let secs = self.measured.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let l = &self.latencies;
        serde_json::json!({
            "scenario": self.scenario,
            "connections": self.connections,
            "inFlight": self.in_flight,
            "offeredRate": self.rate,
            "seconds": self.measured.as_secs_f64(),
            "ok": self.ok,
            "granted": self.granted,
            "errors": self.errors,
            "throughput": self.throughput(),
            "timed": l.count(),
            "latencyUs": {
                "p50": l.at(0.5), "p90": l.at(0.9), "p99": l.at(0.99),
                "p999": l.at(0.999), "max": l.max(),
            },
        })
    }

    pub fn text(&self) -> String {
        let l = &self.latencies;
        let load = match self.rate {
            Some(r) => format!(
                "open loop at {r:.0}/s offered, at most {} in flight per connection",
                self.in_flight
            ),
            None => format!("{} in flight per connection", self.in_flight),
        };
        format!(
            "{}: {} connections, {load}, {:.1} s measured\n\
             {} answers ({:.0}/s), {} granted, {} errors\n\
             latency µs: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            self.scenario,
            self.connections,
            self.measured.as_secs_f64(),
            self.ok,
            self.throughput(),
            self.granted,
            self.errors,
            l.at(0.5),
            l.at(0.9),
            l.at(0.99),
            l.at(0.999),
            l.max()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(micros: impl IntoIterator<Item = u64>) -> Latencies {
        let mut l = Latencies::new();
        for m in micros {
            l.record(Duration::from_micros(m));
        }
        l
    }

    /// Within the histogram's 3 significant digits.
    fn close(got: u64, want: u64) -> bool {
        got.abs_diff(want) * 1000 <= want.max(1)
    }

    #[test]
    fn percentiles_of_known_samples() {
        let l = of(1..=10_000);
        assert_eq!(l.count(), 10_000);
        for (q, want) in [(0.5, 5_000), (0.9, 9_000), (0.99, 9_900), (0.999, 9_990)] {
            assert!(close(l.at(q), want), "p{q}: {} vs {want}", l.at(q));
        }
        assert!(close(l.max(), 10_000));
    }

    #[test]
    fn a_slow_tail_shows_in_the_high_percentiles_only() {
        let l = of((0..990).map(|_| 100).chain((0..10).map(|_| 50_000)));
        assert!(close(l.at(0.5), 100));
        assert!(close(l.at(0.99), 100));
        assert!(close(l.at(0.999), 50_000));
    }

    #[test]
    fn histograms_add_up_and_clamp() {
        let mut a = of([10, 20]);
        a.add(&of([30]));
        assert_eq!(a.count(), 3);
        let mut huge = Latencies::new();
        huge.record(Duration::from_secs(3_600));
        huge.record(Duration::ZERO);
        assert_eq!(huge.count(), 2);
        assert!(close(huge.max(), MAX_MICROS));
    }

    #[test]
    fn throughput_is_answers_per_measured_second() {
        let s = Summary {
            scenario: "acquire".into(),
            connections: 1,
            in_flight: 1,
            rate: None,
            measured: Duration::from_secs(2),
            ok: 500,
            granted: 10,
            errors: 0,
            latencies: of([1]),
        };
        assert!((s.throughput() - 250.0).abs() < 1e-9);
        assert_eq!(s.json()["latencyUs"]["p50"], 1);
    }
}
