//! Prometheus metrics. Every label set is resolved once at start-up into a handle held in a
//! plain array, so recording on the hot path is an index and an atomic add: no allocation, no
//! label lookup by string. Labels are bounded: route templates, status classes, reason enums,
//! and (only when switched on) user names from the config table.

use crate::config::Identity;
use crate::error::{AuthFailure, Denial, Rejection};
use crate::ingress::route::Route;
use http::Method;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;
use std::time::Duration;

mod economy;
mod issuers;

pub use economy::{BudgetPool, EconomyMetrics, StaleReason};

/// Common prefix of every gateway metric.
pub const PREFIX: &str = "jbgw";

/// Buckets from 100 µs to 30 s (seconds), dense where a proxy's latency lives.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

const METHODS: [&str; 3] = ["GET", "POST", "OTHER"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The validation rejections counted per route (their `reason` label is
/// [`Rejection::reason`]).
pub const VALIDATION_REASONS: [Rejection; 9] = [
    Rejection::UnsupportedMediaType,
    Rejection::BodyTooLarge,
    Rejection::BodyRead,
    Rejection::BodyTimeout,
    Rejection::Body(crate::error::BodyReason::InvalidJson),
    Rejection::Body(crate::error::BodyReason::NotAnObject),
    Rejection::Body(crate::error::BodyReason::Schema),
    Rejection::Body(crate::error::BodyReason::Domain),
    Rejection::Query,
];

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

pub use crate::error::Throttle;
pub use crate::exchange::CacheResult;

/// What caused a cache invalidation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidationCause {
    /// A create succeeded upstream.
    Create,
    /// The admin purge endpoint.
    Admin,
    /// Another write (update, delete, a lookup created) succeeded upstream.
    Write,
}

fn class_index(status: u16) -> usize {
    (usize::from(status / 100)).clamp(1, 5) - 1
}

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        _ => 2,
    }
}

/// All gateway metrics, pre-resolved.
pub struct Metrics {
    registry: Registry,
    /// Spans not exported, by reason (queue_full, export_failed).
    trace_spans_dropped: IntCounterVec,
    requests: Vec<IntCounter>,
    request_duration: Vec<Histogram>,
    in_flight: IntGauge,
    upstream_requests: Vec<IntCounter>,
    upstream_duration: Vec<Histogram>,
    upstream_errors: Vec<IntCounter>,
    auth_failures: Vec<IntCounter>,
    denials: Vec<IntCounter>,
    validation: Vec<IntCounter>,
    cache_lookups: [IntCounter; 4],
    cache_entries: IntGauge,
    cache_bytes: IntGauge,
    cache_evictions: IntCounter,
    cache_invalidations: [IntCounter; 3],
    user_vec: IntCounterVec,
    config_reloads: [IntCounter; 3],
    throttled: Vec<IntCounter>,
    retries: Vec<IntCounter>,
    idempotent_replays: IntCounter,
    breaker_state: IntGauge,
    budget_remaining: IntGaugeVec,
    upstream_rate_limited: IntCounterVec,
    jwks_fetches: IntCounterVec,
    jwks_age: prometheus::GaugeVec,
    jwks_seen: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
    issuers: issuers::IssuerGauges,
    per_user: std::sync::RwLock<Vec<IntCounter>>,
    state: StateMetrics,
    economy: EconomyMetrics,
    reference_checks: [IntCounter; 3],
}

/// How a write's reference check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceCheck {
    /// Every reference exists.
    Passed = 0,
    /// An unknown reference: refused with 400, nothing sent.
    Refused = 1,
    /// A lookup could not be read: checked by the schema alone and forwarded.
    Skipped = 2,
}

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

/// The state backend's health, command latency and errors, and the budget decisions.
pub struct StateMetrics {
    up: IntGauge,
    watch_up: IntGauge,
    command_duration: HistogramVec,
    errors: IntCounterVec,
}

/// Why a state command failed: the `kind` label of `jbgw_state_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateErrorKind {
    /// The server answered with an error for this command (a Lua runtime error, a key of
    /// the wrong type): a bug, not an outage. Only its own request fails.
    Script,
    /// No reply within `command_timeout`.
    Timeout,
    /// Refused, dropped or broken connection, or a server that cannot serve now (loading,
    /// read-only replica, out of memory, busy).
    Transport,
    /// Not sent: the local breaker is open after consecutive transport failures.
    Skipped,
}

impl StateErrorKind {
    /// Every kind, in label order.
    pub const ALL: [StateErrorKind; 4] = [
        StateErrorKind::Script,
        StateErrorKind::Timeout,
        StateErrorKind::Transport,
        StateErrorKind::Skipped,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StateErrorKind::Script => "script",
            StateErrorKind::Timeout => "timeout",
            StateErrorKind::Transport => "transport",
            StateErrorKind::Skipped => "skipped",
        }
    }
}

/// Every state operation, so their series exist from the start.
pub const STATE_OPS: &[&str] = &[
    "admit",
    "refund",
    "pause",
    "remaining",
    "claim",
    "settle",
    "generation",
    "generations",
    "bump",
    "l2_lookup",
    "l2_put",
];

impl StateMetrics {
    /// Sets the backend-up gauge.
    pub fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    /// Sets the generation-watch gauge (the bump channel's subscription is live).
    pub fn set_watch_up(&self, up: bool) {
        self.watch_up.set(i64::from(up));
    }

    /// Records one command's latency, and why it failed (`None`: it did not).
    pub fn command(&self, op: &'static str, elapsed: Duration, failed: Option<StateErrorKind>) {
        self.command_duration
            .with_label_values(&[op])
            .observe(elapsed.as_secs_f64());
        if let Some(kind) = failed {
            self.errors.with_label_values(&[op, kind.as_str()]).inc();
        }
    }
}

fn name(s: &str) -> String {
    format!("{PREFIX}_{s}")
}

impl Metrics {
    /// Registers every metric. The registry lives as long as the process: config reloads
    /// keep counting into the same series.
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique");
        };
        let counter_vec = |n: &str, help: &str, labels: &[&str]| {
            let v = IntCounterVec::new(Opts::new(name(n), help), labels).expect("valid metric");
            reg(Box::new(v.clone()));
            v
        };
        let histogram_vec = |n: &str, help: &str, labels: &[&str]| {
            let v = HistogramVec::new(
                HistogramOpts::new(name(n), help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric");
            reg(Box::new(v.clone()));
            v
        };
        let gauge = |n: &str, help: &str| {
            let g = IntGauge::new(name(n), help).expect("valid metric");
            reg(Box::new(g.clone()));
            g
        };
        // Counted by the log writer, which starts before any registry (one per process).
        reg(Box::new(crate::observe::logging::dropped_lines().clone()));

        let requests_vec = counter_vec(
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
        let duration_vec = histogram_vec(
            "request_duration_seconds",
            "Time from request received to response ready, by route template.",
            &["route"],
        );
        let request_duration = Route::ALL
            .iter()
            .map(|r| duration_vec.with_label_values(&[r.label()]))
            .collect();
        let upstream_vec = counter_vec(
            "upstream_requests_total",
            "Responses received from JourneyBee, by route template and status class.",
            &["route", "status_class"],
        );
        let mut upstream_requests = Vec::new();
        for r in Route::ALL {
            for c in CLASSES {
                upstream_requests.push(upstream_vec.with_label_values(&[r.label(), c]));
            }
        }
        let up_duration_vec = histogram_vec(
            "upstream_duration_seconds",
            "Time for a JourneyBee exchange (request sent to body received), by route template.",
            &["route"],
        );
        let upstream_duration = Route::ALL
            .iter()
            .map(|r| up_duration_vec.with_label_values(&[r.label()]))
            .collect();
        let up_err_vec = counter_vec(
            "upstream_errors_total",
            "JourneyBee exchanges without a usable response, by route and kind (connect, timeout, other).",
            &["route", "kind"],
        );
        let mut upstream_errors = Vec::new();
        for r in Route::ALL {
            for k in UPSTREAM_ERROR_KINDS {
                upstream_errors.push(up_err_vec.with_label_values(&[r.label(), k]));
            }
        }
        let auth_vec = counter_vec(
            "auth_failures_total",
            "Requests refused with 401, by reason.",
            &["reason"],
        );
        let auth_failures = AuthFailure::ALL
            .iter()
            .map(|f| auth_vec.with_label_values(&[f.as_str()]))
            .collect();
        let denial_vec = counter_vec(
            "authz_denials_total",
            "Authenticated requests refused with 403, by reason.",
            &["reason"],
        );
        let denials = Denial::ALL
            .iter()
            .map(|d| denial_vec.with_label_values(&[d.as_str()]))
            .collect();
        let val_vec = counter_vec(
            "validation_rejections_total",
            "Requests refused by local validation, by route template and reason.",
            &["route", "reason"],
        );
        let mut validation = Vec::new();
        for r in Route::ALL {
            for reason in VALIDATION_REASONS {
                validation.push(val_vec.with_label_values(&[r.label(), reason.reason()]));
            }
        }
        let lookup_vec = counter_vec(
            "cache_lookups_total",
            "List-cache lookups, by result (hit, miss, stale, bypass).",
            &["result"],
        );
        let cache_lookups =
            ["hit", "miss", "stale", "bypass"].map(|r| lookup_vec.with_label_values(&[r]));
        let inval_vec = counter_vec(
            "cache_invalidations_total",
            "List-cache invalidations, by cause (create, admin).",
            &["cause"],
        );
        let cache_invalidations =
            ["create", "admin", "write"].map(|c| inval_vec.with_label_values(&[c]));
        let cache_evictions = IntCounter::new(
            name("cache_evictions_total"),
            "List-cache entries evicted to stay within capacity.",
        )
        .expect("valid metric");
        reg(Box::new(cache_evictions.clone()));
        let reload_vec = counter_vec(
            "config_reloads_total",
            "Config reloads, by result (success, failure, unchanged: the file parsed to the same settings).",
            &["result"],
        );
        let config_reloads =
            ["success", "failure", "unchanged"].map(|r| reload_vec.with_label_values(&[r]));
        let throttle_vec = counter_vec(
            "throttled_total",
            "Requests refused locally to protect the upstream, by reason (user_share, upstream_budget, circuit_open, upstream_connections).",
            &["reason"],
        );
        let throttled = Throttle::ALL
            .iter()
            .map(|t| throttle_vec.with_label_values(&[t.as_str()]))
            .collect();
        let retry_vec = counter_vec(
            "upstream_retries_total",
            "Upstream retries (lists only), by route template.",
            &["route"],
        );
        let retries = Route::ALL
            .iter()
            .map(|r| retry_vec.with_label_values(&[r.label()]))
            .collect();
        let idempotent_replays = IntCounter::new(
            name("idempotent_replays_total"),
            "Creates answered from a stored outcome for a repeated Idempotency-Key.",
        )
        .expect("valid metric");
        reg(Box::new(idempotent_replays.clone()));
        let budget_remaining = IntGaugeVec::new(
            Opts::new(
                name("upstream_budget_remaining"),
                "Requests left in the local mirror of each upstream key's rate budget.",
            ),
            &["upstream_key"],
        )
        .expect("valid metric");
        reg(Box::new(budget_remaining.clone()));
        let breaker_state = gauge(
            "circuit_breaker_state",
            "Upstream circuit breaker: 0 closed, 1 half-open, 2 open.",
        );
        let upstream_rate_limited = counter_vec(
            "upstream_rate_limited_total",
            "JourneyBee 429 answers, by upstream key (each pauses the key until its Retry-After).",
            &["upstream_key"],
        );
        let jwks_fetches = counter_vec(
            "jwks_fetches_total",
            "JWKS fetches from identity providers, by issuer and result (success, failure).",
            &["issuer", "result"],
        );
        let jwks_age = prometheus::GaugeVec::new(
            Opts::new(
                name("jwks_key_set_age_seconds"),
                "Age of the key set in use, by issuer (grows while the IdP is unreachable).",
            ),
            &["issuer"],
        )
        .expect("valid metric");
        reg(Box::new(jwks_age.clone()));
        let issuers = issuers::IssuerGauges::new(&registry);
        let user_vec = counter_vec(
            "user_requests_total",
            "Authenticated requests per mapped user (config name); only when metrics.per_user is on.",
            &["user"],
        );
        let build = IntGaugeVec::new(
            Opts::new(
                name("build_info"),
                "Build information; the value is always 1.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        reg(Box::new(build));
        #[cfg(target_os = "linux")]
        reg(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));

        let refs_vec = counter_vec(
            "reference_checks_total",
            "Partnership creates and updates checked against the company's lookups, by result (passed, refused, skipped: a lookup could not be read, so the schema alone was checked).",
            &["result"],
        );
        let reference_checks =
            ["passed", "refused", "skipped"].map(|r| refs_vec.with_label_values(&[r]));
        let state = {
            let up = gauge(
                "state_backend_up",
                "1 while the state backend answers, 0 while the gateway runs degraded on local state.",
            );
            up.set(1);
            let command_duration = HistogramVec::new(
                HistogramOpts::new(
                    name("state_command_duration_seconds"),
                    "State backend command latency, by operation.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["op"],
            )
            .expect("valid metric");
            reg(Box::new(command_duration.clone()));
            for op in STATE_OPS {
                command_duration.with_label_values(&[op]);
            }
            let errors = counter_vec(
                "state_errors_total",
                "State backend commands that failed, by operation and kind (script: the server refused this command, a bug; timeout; transport; skipped: not sent while the breaker is open).",
                &["op", "kind"],
            );
            for op in STATE_OPS {
                for kind in StateErrorKind::ALL {
                    errors.with_label_values(&[op, kind.as_str()]);
                }
            }
            let watch_up = gauge(
                "state_generation_watch_up",
                "1 while this replica's subscription to generation bumps is live (cache hits then need no round trip to the state backend), 0 while hits read the generation from it.",
            );
            StateMetrics {
                up,
                watch_up,
                command_duration,
                errors,
            }
        };
        let economy = EconomyMetrics::new(&registry);
        Arc::new(Metrics {
            trace_spans_dropped: counter_vec(
                "trace_spans_dropped_total",
                "Spans not exported to the OTLP collector, by reason (queue_full: the export queue was full; export_failed: the collector did not take the batch).",
                &["reason"],
            ),
            in_flight: gauge("requests_in_flight", "Requests being processed."),
            cache_entries: gauge("cache_entries", "Entries in the list cache."),
            cache_bytes: gauge(
                "cache_bytes",
                "Bytes held by the list cache (keys, headers, bodies).",
            ),
            registry,
            requests,
            request_duration,
            upstream_requests,
            upstream_duration,
            upstream_errors,
            auth_failures,
            denials,
            validation,
            cache_lookups,
            cache_evictions,
            cache_invalidations,
            user_vec,
            config_reloads,
            economy,
            state,
            reference_checks,
            throttled,
            retries,
            idempotent_replays,
            breaker_state,
            budget_remaining,
            upstream_rate_limited,
            jwks_fetches,
            jwks_age,
            jwks_seen: std::sync::Mutex::new(std::collections::HashMap::new()),
            issuers,
            per_user: std::sync::RwLock::new(Vec::new()),
        })
    }

    /// Records one answered request.
    pub fn request(&self, route: Route, method: &Method, status: u16, elapsed: Duration) {
        let i = (route.index() * METHODS.len() + method_index(method)) * CLASSES.len()
            + class_index(status);
        self.requests[i].inc();
        self.request_duration[route.index()].observe(elapsed.as_secs_f64());
    }

    /// Counts `n` spans that were not exported, and why.
    pub fn trace_spans_dropped(&self, reason: &'static str, n: u64) {
        self.trace_spans_dropped
            .with_label_values(&[reason])
            .inc_by(n);
    }

    /// The in-flight gauge.
    pub fn in_flight(&self) -> &IntGauge {
        &self.in_flight
    }

    /// Records an upstream response.
    pub fn upstream_response(&self, route: Route, status: u16, elapsed: Duration) {
        self.upstream_requests[route.index() * CLASSES.len() + class_index(status)].inc();
        self.upstream_duration[route.index()].observe(elapsed.as_secs_f64());
    }

    /// Records an upstream exchange that failed.
    pub fn upstream_error(&self, route: Route, kind: UpstreamErrorKind) {
        let k = match kind {
            UpstreamErrorKind::Connect => 0,
            UpstreamErrorKind::Timeout => 1,
            UpstreamErrorKind::Other => 2,
        };
        self.upstream_errors[route.index() * UPSTREAM_ERROR_KINDS.len() + k].inc();
    }

    /// Records a 401.
    pub fn auth_failure(&self, failure: AuthFailure) {
        if let Some(i) = AuthFailure::ALL.iter().position(|f| *f == failure) {
            self.auth_failures[i].inc();
        }
    }

    /// Records a 403.
    pub fn denial(&self, denial: Denial) {
        if let Some(i) = Denial::ALL.iter().position(|d| *d == denial) {
            self.denials[i].inc();
        }
    }

    /// Records a validation rejection (those in [`VALIDATION_REASONS`]; the others are
    /// counted as rejections by the request metrics only).
    pub fn validation_rejection(&self, route: Route, rejection: Rejection) {
        let Some(i) = VALIDATION_REASONS.iter().position(|r| *r == rejection) else {
            return;
        };
        self.validation[route.index() * VALIDATION_REASONS.len() + i].inc();
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
        *self.per_user.write().expect("per-user lock") = handles;
    }

    /// Counts a local throttle.
    pub fn throttle(&self, reason: Throttle) {
        self.throttled[reason as usize].inc();
    }

    /// Counts a retry.
    pub fn upstream_retry(&self, route: Route) {
        self.retries[route.index()].inc();
    }

    /// Counts an idempotent replay.
    pub fn idempotent_replay(&self) {
        self.idempotent_replays.inc();
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
            self.upstream_rate_limited.with_label_values(&[k]);
        }
    }

    /// Counts an upstream 429 (rare: labels resolved here, off the hot path).
    pub fn upstream_rate_limited(&self, key: &str) {
        self.upstream_rate_limited.with_label_values(&[key]).inc();
    }

    /// Publishes an issuer's JWKS statistics (called before each scrape): the fetch counters
    /// advance by what happened since the last scrape, so they stay counters across reloads.
    pub fn set_jwks(&self, issuer: &str, ok: u64, failed: u64, age: Option<Duration>) {
        let mut seen = self.jwks_seen.lock().expect("jwks lock");
        let last = seen.entry(issuer.to_string()).or_insert((0, 0));
        // A reload builds a new source whose counts restart from zero.
        let (d_ok, d_failed) = (
            ok.checked_sub(last.0).unwrap_or(ok),
            failed.checked_sub(last.1).unwrap_or(failed),
        );
        *last = (ok, failed);
        self.jwks_fetches
            .with_label_values(&[issuer, "success"])
            .inc_by(d_ok);
        self.jwks_fetches
            .with_label_values(&[issuer, "failure"])
            .inc_by(d_failed);
        if let Some(age) = age {
            self.jwks_age
                .with_label_values(&[issuer])
                .set(age.as_secs_f64());
        }
    }

    /// Publishes every issuer's key state (called before each scrape).
    pub fn set_issuers(&self, issuers: &[crate::identity::auth::IssuerStatus]) {
        self.issuers.set(issuers);
    }

    /// Counts a config reload.
    pub fn config_reload(&self, result: ReloadResult) {
        self.config_reloads[result as usize].inc();
    }

    /// Counts a reference check.
    pub fn reference_check(&self, result: ReferenceCheck) {
        self.reference_checks[result as usize].inc();
    }

    /// The budget economy's handles (decisions by class, stale served, served age).
    pub fn economy(&self) -> &EconomyMetrics {
        &self.economy
    }

    /// The state backend's handles.
    pub fn state(&self) -> &StateMetrics {
        &self.state
    }

    /// Counts a request for the mapped user, when per-user metrics are on.
    pub fn user_request(&self, identity: &Identity) {
        if let Some(c) = self
            .per_user
            .read()
            .expect("per-user lock")
            .get(identity.index)
        {
            c.inc();
        }
    }

    /// Records a cache lookup.
    pub fn cache_lookup(&self, result: CacheResult) {
        let i = match result {
            CacheResult::Hit => 0,
            CacheResult::Miss => 1,
            CacheResult::Stale => 2,
            CacheResult::Bypass => 3,
        };
        self.cache_lookups[i].inc();
    }

    /// Records an invalidation.
    pub fn cache_invalidation(&self, cause: InvalidationCause) {
        self.cache_invalidations[cause as usize].inc();
    }

    /// Records an eviction for capacity.
    pub fn cache_eviction(&self) {
        self.cache_evictions.inc();
    }

    /// Sets the cache size gauges (called before each scrape).
    pub fn set_cache_size(&self, entries: u64, bytes: u64) {
        self.cache_entries.set(entries as i64);
        self.cache_bytes.set(bytes as i64);
    }

    /// Registers a metric owned by another module (the TLS listener's). A second registration
    /// of the same name is ignored: the first one keeps being exported.
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        let _ = self.registry.register(c);
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}
