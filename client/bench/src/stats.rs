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

/// What a fan-out run measured: publishes on a broadcast slot, each
/// timed until its RPC returned, which is when every delivery was
/// acknowledged (or had failed).
#[derive(Debug, Clone)]
pub struct FanoutSummary {
    pub scenario: String,
    /// Subscribers every publish must reach.
    pub subscribers: usize,
    /// Subscriber processes (none of them the server's).
    pub processes: usize,
    /// TCP connections the subscribers' event streams use, all processes.
    pub connections: usize,
    pub measured: Duration,
    /// Publishes that reached every subscriber (`delivered == S`,
    /// `failed == 0`).
    pub complete: u64,
    /// Publishes answered with fewer deliveries or some failed.
    pub incomplete: u64,
    /// Publishes that failed as RPCs.
    pub errors: u64,
    /// Of every answered publish, complete or not.
    pub latencies: Latencies,
}

impl FanoutSummary {
    pub fn publishes_per_second(&self) -> f64 {
        per_second(self.complete + self.incomplete, self.measured)
    }

    /// Acknowledged deliveries per second (complete publishes only).
    pub fn deliveries_per_second(&self) -> f64 {
        per_second(self.complete * self.subscribers as u64, self.measured)
    }

    pub fn json(&self) -> serde_json::Value {
        let l = &self.latencies;
        serde_json::json!({
            "scenario": self.scenario,
            "subscribers": self.subscribers,
            "processes": self.processes,
            "connections": self.connections,
            "seconds": self.measured.as_secs_f64(),
            "complete": self.complete,
            "incomplete": self.incomplete,
            "errors": self.errors,
            "throughput": self.publishes_per_second(),
            "deliveriesPerSecond": self.deliveries_per_second(),
            "timed": l.count(),
            "latencyUs": {
                "p50": l.at(0.5), "p90": l.at(0.9), "p99": l.at(0.99),
                "p999": l.at(0.999), "max": l.max(),
            },
        })
    }

    pub fn text(&self) -> String {
        let l = &self.latencies;
        format!(
            "{}: {} subscribers in {} processes over {} connections, 1 publish in flight, {:.1} s measured\n\
             {} publishes ({:.1}/s, {:.0} acknowledged deliveries/s): {} reached all {}, {} did not, {} errors\n\
             publish latency µs (until every delivery is acknowledged): p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            self.scenario,
            self.subscribers,
            self.processes,
            self.connections,
            self.measured.as_secs_f64(),
            self.complete + self.incomplete,
            self.publishes_per_second(),
            self.deliveries_per_second(),
            self.complete,
            self.subscribers,
            self.incomplete,
            self.errors,
            l.at(0.5),
            l.at(0.9),
            l.at(0.99),
            l.at(0.999),
            l.max()
        )
    }
}

/// What a connections run measured: the server's resident memory before
/// and after C clients opened an event stream each on its own connection.
#[derive(Debug, Clone)]
pub struct ConnectionsSummary {
    pub clients: usize,
    pub processes: usize,
    /// Time to open every client's connection and stream.
    pub connect: Duration,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// Broadcasts to every client after the measurement, if any.
    pub broadcast: Option<FanoutSummary>,
}

impl ConnectionsSummary {
    pub fn kib_per_client(&self) -> f64 {
        kib_per_client(self.rss_before_kib, self.rss_after_kib, self.clients)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": "connections",
            "clients": self.clients,
            "processes": self.processes,
            "connectSeconds": self.connect.as_secs_f64(),
            "rssBeforeKiB": self.rss_before_kib,
            "rssAfterKiB": self.rss_after_kib,
            "kibPerClient": self.kib_per_client(),
            "broadcast": self.broadcast.as_ref().map(FanoutSummary::json),
        })
    }

    pub fn text(&self) -> String {
        let mut text = format!(
            "connections: {} clients, each on its own connection with an open event stream, from {} processes, opened in {:.1} s\n\
             server RSS {} KiB before, {} KiB after: {:.1} KiB per client",
            self.clients,
            self.processes,
            self.connect.as_secs_f64(),
            self.rss_before_kib,
            self.rss_after_kib,
            self.kib_per_client(),
        );
        if let Some(b) = &self.broadcast {
            text.push('\n');
            text.push_str(&b.text());
        }
        text
    }
}

fn per_second(n: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// Memory a server grew by per client; growth below zero (the allocator
/// gave memory back meanwhile) counts as none.
pub fn kib_per_client(before_kib: u64, after_kib: u64, clients: usize) -> f64 {
    if clients == 0 {
        return 0.0;
    }
    after_kib.saturating_sub(before_kib) as f64 / clients as f64
}

/// The `VmRSS` of a `/proc/<pid>/status` text, in KiB.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(value)
}

/// `total` split into `parts` shares as even as can be, larger first.
pub fn split(total: usize, parts: usize) -> Vec<usize> {
    let parts = parts.max(1);
    (0..parts)
        .map(|i| total / parts + usize::from(i < total % parts))
        .collect()
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

    #[test]
    fn vm_rss_is_read_from_proc_status() {
        let status =
            "Name:\tvss-runtime\nVmPeak:\t  900000 kB\nVmRSS:\t   51234 kB\nRssAnon:\t 40000 kB\n";
        assert_eq!(vm_rss_kib(status), Some(51_234));
        assert_eq!(
            vm_rss_kib("Name:\tkthreadd\n"),
            None,
            "kernel threads have none"
        );
        assert_eq!(vm_rss_kib("VmRSS:\tlots kB\n"), None);
        assert_eq!(vm_rss_kib("VmRSS:\t12 MB\n"), None, "only kB is understood");
    }

    #[test]
    fn memory_per_client_is_the_growth_shared_out() {
        assert!((kib_per_client(10_000, 160_000, 15_000) - 10.0).abs() < 1e-9);
        assert_eq!(
            kib_per_client(10_000, 9_000, 100),
            0.0,
            "shrinking is no growth"
        );
        assert_eq!(kib_per_client(1, 2, 0), 0.0);
    }

    #[test]
    fn clients_split_evenly_over_processes() {
        assert_eq!(split(10, 4), [3, 3, 2, 2]);
        assert_eq!(split(15_000, 4), [3_750; 4]);
        assert_eq!(split(2, 3), [1, 1, 0]);
        assert_eq!(split(5, 0), [5], "at least one part");
        assert_eq!(split(1_001, 3).iter().sum::<usize>(), 1_001);
    }

    #[test]
    fn fanout_rates_count_publishes_and_acknowledged_deliveries() {
        let s = FanoutSummary {
            scenario: "publish".into(),
            subscribers: 1_000,
            processes: 2,
            connections: 32,
            measured: Duration::from_secs(4),
            complete: 398,
            incomplete: 2,
            errors: 1,
            latencies: of([5_000, 6_000]),
        };
        assert!((s.publishes_per_second() - 100.0).abs() < 1e-9);
        assert!((s.deliveries_per_second() - 99_500.0).abs() < 1e-9);
        let json = s.json();
        assert_eq!(json["incomplete"], 2);
        assert!(close(
            json["latencyUs"]["max"].as_u64().expect("a number"),
            6_000
        ));
    }
}
