//! The one Prometheus registry every domain registers its metrics on, and the helpers they
//! register with. Each domain owns its handles (auth's in `identity`, the cache's in `cache`,
//! …); every label set is resolved once at start-up into a handle held in a plain array, so
//! recording on the hot path is an index and an atomic add: no allocation, no label lookup by
//! string. Labels are bounded: route templates, status classes, reason enums, and (only when
//! switched on) user names from the config table.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, TextEncoder,
};

/// Common prefix of every gateway metric.
pub const PREFIX: &str = "jbgw";

/// Buckets from 100 µs to 30 s (seconds), dense where a proxy's latency lives.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Status classes, in label order.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The index of a status's class in [`CLASSES`].
pub fn class_index(status: u16) -> usize {
    (usize::from(status / 100)).clamp(1, 5) - 1
}

/// The process's registry. It lives as long as the process: config reloads keep counting into
/// the same series.
#[derive(Clone, Default)]
pub struct Registry(prometheus::Registry);

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers one of the gateway's own collectors. Names are unique by construction, so a
    /// clash is a bug, caught at start-up.
    pub fn add(&self, c: Box<dyn prometheus::core::Collector>) {
        self.0.register(c).expect("metric names are unique");
    }

    /// Registers a collector owned outside the domains (the TLS listener's, registered again
    /// by each generation): a second registration of the same name is ignored, and the first
    /// one keeps being exported.
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        let _ = self.0.register(c);
    }

    fn name(n: &str) -> String {
        format!("{PREFIX}_{n}")
    }

    /// A counter vector named `jbgw_<n>`.
    pub fn counter_vec(&self, n: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let v = IntCounterVec::new(Opts::new(Self::name(n), help), labels).expect("valid metric");
        self.add(Box::new(v.clone()));
        v
    }

    /// A counter named `jbgw_<n>`.
    pub fn counter(&self, n: &str, help: &str) -> IntCounter {
        let c = IntCounter::new(Self::name(n), help).expect("valid metric");
        self.add(Box::new(c.clone()));
        c
    }

    /// A histogram vector named `jbgw_<n>` with `buckets`.
    pub fn histogram_vec(
        &self,
        n: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let v = HistogramVec::new(
            HistogramOpts::new(Self::name(n), help).buckets(buckets.to_vec()),
            labels,
        )
        .expect("valid metric");
        self.add(Box::new(v.clone()));
        v
    }

    /// A gauge named `jbgw_<n>`.
    pub fn gauge(&self, n: &str, help: &str) -> IntGauge {
        let g = IntGauge::new(Self::name(n), help).expect("valid metric");
        self.add(Box::new(g.clone()));
        g
    }

    /// An integer gauge vector named `jbgw_<n>`.
    pub fn gauge_vec(&self, n: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let v = IntGaugeVec::new(Opts::new(Self::name(n), help), labels).expect("valid metric");
        self.add(Box::new(v.clone()));
        v
    }

    /// A float gauge vector named `jbgw_<n>`.
    pub fn float_gauge_vec(&self, n: &str, help: &str, labels: &[&str]) -> GaugeVec {
        let v = GaugeVec::new(Opts::new(Self::name(n), help), labels).expect("valid metric");
        self.add(Box::new(v.clone()));
        v
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.0.gather(), &mut buf);
        buf
    }
}
