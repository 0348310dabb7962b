//! The request metrics the outermost layer records: requests by route, method and status
//! class, their duration, the in-flight gauge, per-user counts (when switched on), and spans
//! the tracer could not export.

use crate::config::Identity;
use crate::ingress::route::Route;
use crate::observe::registry::{class_index, Registry, CLASSES, LATENCY_BUCKETS};
use http::Method;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};
use std::sync::{Arc, RwLock};
use std::time::Duration;

const METHODS: [&str; 3] = ["GET", "POST", "OTHER"];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        _ => 2,
    }
}

/// The request metrics' handles.
pub struct RequestMetrics {
    requests: Vec<IntCounter>,
    duration: Vec<Histogram>,
    in_flight: IntGauge,
    user_vec: IntCounterVec,
    per_user: RwLock<Vec<IntCounter>>,
    /// Spans not exported, by reason (queue_full, export_failed).
    trace_spans_dropped: IntCounterVec,
}

impl RequestMetrics {
    /// Registers the request metrics.
    pub fn new(registry: &Registry) -> Arc<RequestMetrics> {
        let requests_vec = registry.counter_vec(
            "requests_total",
            "Requests answered, by route template, method and status class.",
            &["route", "method", "status_class"],
        );
        let mut requests = Vec::new();
        for r in Route::ALL {
            for m in METHODS {
                for c in CLASSES {
                    requests.push(requests_vec.with_label_values(&[r.label(), m, c]));
                }
            }
        }
        let duration_vec = registry.histogram_vec(
            "request_duration_seconds",
            "Time from request received to response ready, by route template.",
            &["route"],
            LATENCY_BUCKETS,
        );
        Arc::new(RequestMetrics {
            requests,
            duration: Route::ALL
                .iter()
                .map(|r| duration_vec.with_label_values(&[r.label()]))
                .collect(),
            in_flight: registry.gauge("requests_in_flight", "Requests being processed."),
            user_vec: registry.counter_vec(
                "user_requests_total",
                "Authenticated requests per mapped user (config name); only when metrics.per_user is on.",
                &["user"],
            ),
            per_user: RwLock::new(Vec::new()),
            trace_spans_dropped: registry.counter_vec(
                "trace_spans_dropped_total",
                "Spans not exported to the OTLP collector, by reason (queue_full: the export queue was full; export_failed: the collector did not take the batch).",
                &["reason"],
            ),
        })
    }

    /// Records one answered request.
    pub fn request(&self, route: Route, method: &Method, status: u16, elapsed: Duration) {
        let i = (route.index() * METHODS.len() + method_index(method)) * CLASSES.len()
            + class_index(status);
        self.requests[i].inc();
        self.duration[route.index()].observe(elapsed.as_secs_f64());
    }

    /// The in-flight gauge.
    pub fn in_flight(&self) -> &IntGauge {
        &self.in_flight
    }

    /// Counts `n` spans that were not exported, and why.
    pub fn trace_spans_dropped(&self, reason: &'static str, n: u64) {
        self.trace_spans_dropped
            .with_label_values(&[reason])
            .inc_by(n);
    }

    /// Resolves the per-user counters for a user table (empty: per-user counting off). Called
    /// at start and on each config reload, never on the request path.
    pub fn set_users(&self, users: &[Arc<Identity>]) {
        let mut sorted: Vec<&Arc<Identity>> = users.iter().collect();
        sorted.sort_by_key(|u| u.index);
        let handles = sorted
            .iter()
            .map(|u| self.user_vec.with_label_values(&[&*u.name]))
            .collect();
        *self.per_user.write().unwrap_or_else(|e| e.into_inner()) = handles;
    }

    /// Counts a request for the mapped user, when per-user metrics are on.
    pub fn user_request(&self, identity: &Identity) {
        if let Some(c) = self
            .per_user
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(identity.index)
        {
            c.inc();
        }
    }
}
