//! The upstream guard, just above the forward: the user's fair share, the circuit breaker,
//! the per-key budget mirroring JourneyBee's limit (a sliding window: never more than the
//! limit in any minute), the connection bound, and safe retries.
//!
//! Everything it refuses is refused before a byte leaves, so a refused create certainly was
//! not sent. Only lists are retried (connect errors, resets before a response, 502/503/504),
//! within a retry budget and the key's own budget; a create is sent at most once.

use crate::config::{Identity, Settings};
use crate::error::{GatewayError, Rejection, Response};
use crate::metrics::{Metrics, Throttle};
use crate::resilience::{
    backoff, CircuitBreaker, KeyedBuckets, RateLimitHeaders, RetryBudget, SlidingWindow,
    TokenBucket,
};
use crate::route::Route;
use crate::upstream::UpstreamMeta;
use crate::BoxFuture;
use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::Request;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tower::{Layer, Service};

const MINUTE: Duration = Duration::from_secs(60);
/// An upstream 429 without a usable `Retry-After` pauses the key for a full window.
const DEFAULT_PAUSE: Duration = MINUTE;
/// Upper bound on a pause an upstream may ask for.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// The guard's state for one config generation.
pub struct GuardState {
    key_windows: Vec<SlidingWindow>,
    user_buckets: Vec<Option<TokenBucket>>,
    /// Fair share of users mapped by claim rules (not in the table), by name, bounded.
    rule_buckets: Option<KeyedBuckets<Arc<str>>>,
    breaker: CircuitBreaker,
    budget: RetryBudget,
    connections: Arc<Semaphore>,
    connection_wait: Duration,
    retries: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    key_names: Vec<Arc<str>>,
    metrics: Arc<Metrics>,
}

impl GuardState {
    /// Buckets per upstream key and per user, one breaker for the upstream.
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Arc<GuardState> {
        let now = Instant::now();
        let up = &settings.upstream;
        let mut user_buckets: Vec<Option<TokenBucket>> =
            (0..settings.users.len()).map(|_| None).collect();
        for identity in settings.users.values() {
            if let Some(rpm) = identity.requests_per_minute {
                user_buckets[identity.index] = Some(TokenBucket::new(rpm, MINUTE, now));
            }
        }
        metrics.declare_upstream_keys(&up.keys.iter().map(|k| &*k.name).collect::<Vec<_>>());
        Arc::new(GuardState {
            key_windows: up
                .keys
                .iter()
                .map(|k| SlidingWindow::new(k.requests_per_minute, MINUTE))
                .collect(),
            user_buckets,
            rule_buckets: settings
                .default_user_rpm
                .map(|rpm| KeyedBuckets::new(rpm, MINUTE, 10_000)),
            breaker: CircuitBreaker::new(up.breaker_failures, up.breaker_cooldown),
            budget: RetryBudget::new(Duration::from_secs(10), up.retry_budget_ratio, 3, now),
            connections: Arc::new(Semaphore::new(up.max_connections)),
            connection_wait: up.response_timeout,
            retries: up.retries,
            backoff_base: up.retry_backoff,
            backoff_max: up.retry_backoff_max,
            key_names: up.keys.iter().map(|k| k.name.clone()).collect(),
            metrics,
        })
    }

    /// Publishes budget and breaker gauges (called before each scrape).
    pub fn refresh_gauges(&self) {
        let now = Instant::now();
        for (name, window) in self.key_names.iter().zip(&self.key_windows) {
            self.metrics
                .set_budget_remaining(name, window.remaining(now));
        }
        self.metrics
            .set_breaker_state(self.breaker.state_at(now).as_gauge());
    }

    fn throttled(&self, reason: Throttle, headers: RateLimitHeaders) -> Response {
        self.metrics.throttle(reason);
        GatewayError::Throttled {
            reason: reason.as_str(),
            headers,
        }
        .into_response()
    }
}

/// A user's fair-share bucket: a table user's own, or a rule-mapped user's by name.
enum UserBucket<'a> {
    Table(&'a TokenBucket),
    Rule(Arc<TokenBucket>),
}

impl UserBucket<'_> {
    fn get(&self) -> &TokenBucket {
        match self {
            UserBucket::Table(b) => b,
            UserBucket::Rule(b) => b,
        }
    }
}

/// Applies [`GuardState`] in front of the upstream forward.
#[derive(Clone)]
pub struct GuardLayer {
    state: Arc<GuardState>,
}

impl GuardLayer {
    /// A layer using `state`.
    pub fn new(state: Arc<GuardState>) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            state: self.state.clone(),
        }
    }
}

/// Service produced by [`GuardLayer`].
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    state: Arc<GuardState>,
}

/// How an exchange went, for retries and the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A response that says upstream is healthy (2xx-4xx).
    Healthy,
    /// Upstream answered 429: healthy, but over its limit.
    Limited,
    /// A failure worth retrying for a list: no connection, reset before a response, 502/503/504.
    Retryable,
    /// A failure not worth retrying (timeout, other 5xx, unknown create outcome).
    Failed,
}

fn judge(resp: &Response) -> Verdict {
    match resp
        .extensions()
        .get::<UpstreamMeta>()
        .and_then(|m| m.status)
    {
        Some(429) => Verdict::Limited,
        Some(502..=504) => Verdict::Retryable,
        Some(s) if s >= 500 => Verdict::Failed,
        Some(_) => Verdict::Healthy,
        None => match resp.extensions().get::<Rejection>().map(|r| r.reason) {
            Some("unreachable") => Verdict::Retryable,
            _ => Verdict::Failed,
        },
    }
}

/// The pause an upstream 429 asks for (`Retry-After` in seconds; HTTP dates are treated as
/// the default window).
fn pause_for(resp: &Response) -> Duration {
    resp.headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_PAUSE)
        .min(MAX_PAUSE)
}

fn clone_request(req: &Request<Bytes>) -> Request<Bytes> {
    let mut out = Request::new(req.body().clone());
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = req.uri().clone();
    *out.version_mut() = req.version();
    *out.headers_mut() = req.headers().clone();
    *out.extensions_mut() = req.extensions().clone();
    out
}

impl<S> Service<Request<Bytes>> for Guard<S>
where
    S: Service<Request<Bytes>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> BoxFuture {
        let state = self.state.clone();
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let route = req.extensions().get::<Route>().copied();
            let Some(identity) = req.extensions().get::<Arc<Identity>>().cloned() else {
                return Ok(
                    GatewayError::Internal("guard reached without identity".into()).into_response(),
                );
            };
            let now = Instant::now();
            // The user's fair share first: it is about this user, not about upstream.
            let bucket = match state.user_buckets.get(identity.index) {
                Some(Some(b)) => Some(UserBucket::Table(b)),
                Some(None) => None,
                // Not in the table: mapped by claim rules, shared by name.
                None => state
                    .rule_buckets
                    .as_ref()
                    .map(|k| UserBucket::Rule(k.get(&identity.name, now))),
            };
            if let Some(bucket) = bucket {
                let bucket = bucket.get();
                if let Err(wait) = bucket.try_acquire(now) {
                    let headers = RateLimitHeaders::from_bucket(bucket, now).with_retry_after(wait);
                    return Ok(state.throttled(Throttle::UserShare, headers));
                }
            }
            let permit = match state.breaker.try_acquire(now) {
                Ok(p) => p,
                Err(open) => {
                    state.metrics.throttle(Throttle::CircuitOpen);
                    return Ok(GatewayError::CircuitOpen {
                        retry_after: open.retry_after,
                    }
                    .into_response());
                }
            };
            let key_window = &state.key_windows[identity.key.index];
            if let Err(wait) = key_window.try_acquire(now) {
                // Not sent: says nothing about upstream health, so the permit is dropped
                // without a verdict.
                drop(permit);
                let headers = key_window.headers(now, wait);
                return Ok(state.throttled(Throttle::UpstreamBudget, headers));
            }
            state.budget.record_request(now);
            let retryable_route = route == Some(Route::List);
            let mut attempt = 0u32;
            loop {
                let slot = match tokio::time::timeout(
                    state.connection_wait,
                    state.connections.clone().acquire_owned(),
                )
                .await
                {
                    Ok(Ok(slot)) => slot,
                    _ => {
                        drop(permit);
                        state.metrics.throttle(Throttle::UpstreamConnections);
                        return Ok(GatewayError::UpstreamBusy.into_response());
                    }
                };
                // Only a list ever comes back round this loop; a create leaves after one call.
                let resp = match inner.call(clone_request(&req)).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                drop(slot);
                let verdict = judge(&resp);
                if verdict == Verdict::Limited {
                    let pause = pause_for(&resp);
                    key_window.pause_until(Instant::now() + pause);
                    state.metrics.upstream_rate_limited(&identity.key.name);
                    tracing::warn!(
                        upstream_key = &*identity.key.name,
                        pause_secs = pause.as_secs(),
                        "JourneyBee answered 429: pausing this key"
                    );
                }
                let now = Instant::now();
                if retryable_route
                    && verdict == Verdict::Retryable
                    && attempt < state.retries
                    && state.budget.try_retry(now)
                    && key_window.try_acquire(now).is_ok()
                {
                    let wait = backoff(attempt, state.backoff_base, state.backoff_max);
                    attempt += 1;
                    state.metrics.upstream_retry(Route::List);
                    tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, "retrying list");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                match verdict {
                    Verdict::Healthy | Verdict::Limited => permit.success(),
                    Verdict::Retryable | Verdict::Failed => permit.failure(),
                }
                return Ok(resp);
            }
        })
    }
}
