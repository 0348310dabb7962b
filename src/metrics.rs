//! The process's metrics: one registry, and each domain's handles registered on it (the
//! domains own their metrics; this only puts them together, as `AppState` puts the layers
//! together). Built once per process: config reloads keep counting into the same series.

use crate::cache::metrics::CacheMetrics;
use crate::identity::metrics::AuthMetrics;
use crate::observe::metrics::RequestMetrics;
use crate::observe::registry::Registry;
use crate::policy::metrics::PolicyMetrics;
use crate::state::metrics::StateMetrics;
use crate::upstream::metrics::UpstreamMetrics;
use crate::validate::metrics::ValidationMetrics;
use prometheus::IntCounter;
use std::sync::Arc;

/// How a config reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new generation serves.
    Success = 0,
    /// Refused: the old generation keeps serving.
    Failure = 1,
    /// The file parsed to the same settings: nothing was rebuilt.
    Unchanged = 2,
}

/// Every domain's metric handles, on one registry.
pub struct Metrics {
    registry: Registry,
    /// Requests, in flight, per user, spans dropped (the outermost layer's).
    pub requests: Arc<RequestMetrics>,
    /// 401s, JWKS, issuers.
    pub auth: Arc<AuthMetrics>,
    /// 403s, idempotent replays.
    pub policy: Arc<PolicyMetrics>,
    /// Validation rejections, reference checks.
    pub validation: Arc<ValidationMetrics>,
    /// The list cache.
    pub cache: Arc<CacheMetrics>,
    /// JourneyBee's answers, throttles, budgets, the breaker.
    pub upstream: Arc<UpstreamMetrics>,
    /// The state backend.
    pub state: Arc<StateMetrics>,
    config_reloads: [IntCounter; 3],
}

impl Metrics {
    /// Registers every domain's metrics, the build info, the process collector and the log
    /// writer's dropped-lines counter.
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        // Counted by the log writer, which starts before any registry (one per process).
        registry.add(Box::new(crate::observe::logging::dropped_lines().clone()));
        let build = registry.gauge_vec(
            "build_info",
            "Build information; the value is always 1.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        #[cfg(target_os = "linux")]
        registry.add(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        let reload_vec = registry.counter_vec(
            "config_reloads_total",
            "Config reloads, by result (success, failure, unchanged: the file parsed to the same settings).",
            &["result"],
        );
        Arc::new(Metrics {
            requests: RequestMetrics::new(&registry),
            auth: AuthMetrics::new(&registry),
            policy: PolicyMetrics::new(&registry),
            validation: ValidationMetrics::new(&registry),
            cache: CacheMetrics::new(&registry),
            upstream: UpstreamMetrics::new(&registry),
            state: StateMetrics::new(&registry),
            config_reloads: ["success", "failure", "unchanged"]
                .map(|r| reload_vec.with_label_values(&[r])),
            registry,
        })
    }

    /// Counts a config reload.
    pub fn config_reload(&self, result: ReloadResult) {
        self.config_reloads[result as usize].inc();
    }

    /// Registers a metric owned by another module (the TLS listener's). A second registration
    /// of the same name is ignored: the first one keeps being exported.
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        self.registry.register(c);
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> Vec<u8> {
        self.registry.render()
    }
}
