//! The upstream side's metrics: JourneyBee's answers and errors by route, local throttles,
//! retries, the breaker, each key's budget (remaining, 429s) and budget decisions by class and
//! pool.

use crate::error::Throttle;
use crate::exchange::BudgetClass;
use crate::ingress::route::Route;
use crate::observe::registry::{class_index, Registry, CLASSES, LATENCY_BUCKETS};
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use std::sync::Arc;
use std::time::Duration;

/// Why an upstream exchange produced no usable response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// DNS, TCP connect or TLS handshake failed.
    Connect,
    /// No complete response within the timeout.
    Timeout,
    /// Reset, protocol error, or a response over the size limit.
    Other,
}

const UPSTREAM_ERROR_KINDS: [&str; 3] = ["connect", "timeout", "other"];

/// Budget pools a decision is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetPool {
    /// The budget every replica shares (the memory backend's whole budget).
    Shared = 0,
    /// This replica's private share, used when the shared budget is full or unreachable.
    Private = 1,
}

/// The upstream side's handles.
pub struct UpstreamMetrics {
    responses: Vec<IntCounter>,
    duration: Vec<Histogram>,
    errors: Vec<IntCounter>,
    throttled: Vec<IntCounter>,
    retries: Vec<IntCounter>,
    breaker_state: IntGauge,
    budget_remaining: IntGaugeVec,
    rate_limited: IntCounterVec,
    /// [class][pool][admitted, denied]
    decisions: [[[IntCounter; 2]; 2]; BudgetClass::ALL.len()],
}

impl UpstreamMetrics {
    /// Registers the upstream side's metrics.
    pub fn new(registry: &Registry) -> Arc<UpstreamMetrics> {
        let upstream_vec = registry.counter_vec(
            "upstream_requests_total",
            "Responses received from JourneyBee, by route template and status class.",
            &["route", "status_class"],
        );
        let mut responses = Vec::new();
        for r in Route::ALL {
            for c in CLASSES {
                responses.push(upstream_vec.with_label_values(&[r.label(), c]));
            }
        }
        let duration_vec = registry.histogram_vec(
            "upstream_duration_seconds",
            "Time for a JourneyBee exchange (request sent to body received), by route template.",
            &["route"],
            LATENCY_BUCKETS,
        );
        let err_vec = registry.counter_vec(
            "upstream_errors_total",
            "JourneyBee exchanges without a usable response, by route and kind (connect, timeout, other).",
            &["route", "kind"],
        );
        let mut errors = Vec::new();
        for r in Route::ALL {
            for k in UPSTREAM_ERROR_KINDS {
                errors.push(err_vec.with_label_values(&[r.label(), k]));
            }
        }
        let throttle_vec = registry.counter_vec(
            "throttled_total",
            "Requests refused locally to protect the upstream, by reason (user_share, upstream_budget, circuit_open, upstream_connections).",
            &["reason"],
        );
        let retry_vec = registry.counter_vec(
            "upstream_retries_total",
            "Upstream retries (lists only), by route template.",
            &["route"],
        );
        let decisions_vec = registry.counter_vec(
            "budget_decisions_total",
            "Upstream budget decisions, by class (write, cold: no copy anywhere, refresh: a copy exists, forced: client no-cache, lookup: reference checks), pool (shared, private) and result (admitted, denied).",
            &["class", "pool", "result"],
        );
        Arc::new(UpstreamMetrics {
            responses,
            duration: Route::ALL
                .iter()
                .map(|r| duration_vec.with_label_values(&[r.label()]))
                .collect(),
            errors,
            throttled: Throttle::ALL
                .iter()
                .map(|t| throttle_vec.with_label_values(&[t.as_str()]))
                .collect(),
            retries: Route::ALL
                .iter()
                .map(|r| retry_vec.with_label_values(&[r.label()]))
                .collect(),
            breaker_state: registry.gauge(
                "circuit_breaker_state",
                "Upstream circuit breaker: 0 closed, 1 half-open, 2 open.",
            ),
            budget_remaining: registry.gauge_vec(
                "upstream_budget_remaining",
                "Requests left in the local mirror of each upstream key's rate budget.",
                &["upstream_key"],
            ),
            rate_limited: registry.counter_vec(
                "upstream_rate_limited_total",
                "JourneyBee 429 answers, by upstream key (each pauses the key until its Retry-After).",
                &["upstream_key"],
            ),
            decisions: BudgetClass::ALL.map(|class| {
                ["shared", "private"].map(|pool| {
                    ["admitted", "denied"]
                        .map(|r| decisions_vec.with_label_values(&[class.as_str(), pool, r]))
                })
            }),
        })
    }

    /// Records an upstream response.
    pub fn upstream_response(&self, route: Route, status: u16, elapsed: Duration) {
        self.responses[route.index() * CLASSES.len() + class_index(status)].inc();
        self.duration[route.index()].observe(elapsed.as_secs_f64());
    }

    /// Records an upstream exchange that failed.
    pub fn upstream_error(&self, route: Route, kind: UpstreamErrorKind) {
        let k = match kind {
            UpstreamErrorKind::Connect => 0,
            UpstreamErrorKind::Timeout => 1,
            UpstreamErrorKind::Other => 2,
        };
        self.errors[route.index() * UPSTREAM_ERROR_KINDS.len() + k].inc();
    }

    /// Counts a local throttle.
    pub fn throttle(&self, reason: Throttle) {
        self.throttled[reason as usize].inc();
    }

    /// Counts a retry.
    pub fn upstream_retry(&self, route: Route) {
        self.retries[route.index()].inc();
    }

    /// Sets the breaker gauge (called before each scrape).
    pub fn set_breaker_state(&self, state: i64) {
        self.breaker_state.set(state);
    }

    /// Sets a key's remaining budget (called before each scrape; the label set is bounded by
    /// the configured keys).
    pub fn set_budget_remaining(&self, key: &str, remaining: u32) {
        self.budget_remaining
            .with_label_values(&[key])
            .set(i64::from(remaining));
    }

    /// Drops a key's budget series: an `unlimited` key has no local budget to report.
    pub fn clear_budget_remaining(&self, key: &str) {
        let _ = self.budget_remaining.remove_label_values(&[key]);
    }

    /// Creates the per-key 429 series at zero, so rates and alerts see them from the start.
    pub fn declare_upstream_keys(&self, keys: &[&str]) {
        for k in keys {
            self.rate_limited.with_label_values(&[k]);
        }
    }

    /// Counts an upstream 429 (rare: labels resolved here, off the hot path).
    pub fn upstream_rate_limited(&self, key: &str) {
        self.rate_limited.with_label_values(&[key]).inc();
    }

    /// Counts a budget decision.
    pub fn decision(&self, class: BudgetClass, pool: BudgetPool, admitted: bool) {
        self.decisions[class as usize][pool as usize][usize::from(!admitted)].inc();
    }
}
