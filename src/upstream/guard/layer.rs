//! The guard as a layer of the stack, just above the forward: per request, the breaker, the
//! budget, a connection slot, the send, the verdict and, for a list, the retries. Everything
//! it refuses is refused before a byte leaves, so a refused create certainly was not sent, and
//! an admission whose request never reached upstream is refunded.

use crate::config::Settings;
use crate::error::{GatewayError, Throttle};
use crate::exchange::{Outbound, Reply};
use crate::state::memory::MemoryStore;
use crate::state::SharedStore;
use crate::upstream::guard::budget::Budget;
use crate::upstream::guard::connections::{ConnectionLimit, REQUEUE_AFTER};
use crate::upstream::guard::pause::pause_for;
use crate::upstream::guard::resilience::Resilience;
use crate::upstream::guard::retry::Retries;
use crate::upstream::guard::verdict::{judge, Verdict};
use crate::upstream::metrics::UpstreamMetrics;
use crate::BoxFuture;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::retry::budget::Budget as _;
use tower::{Layer, Service};

/// The guard's state for one config generation; the budget itself lives in the store.
pub struct GuardState {
    budget: Budget,
    resilience: Arc<Resilience>,
    connections: Arc<ConnectionLimit>,
    /// `upstream.response_timeout`: the longest a request waits for a connection slot.
    response_timeout: Duration,
    retries: Retries,
    metrics: Arc<UpstreamMetrics>,
}

impl GuardState {
    /// The guard for `settings`, spending budget in `store` (and, with a shared backend, the
    /// private shares in `local`), bounding connections with `connections`.
    pub fn new(
        settings: &Settings,
        metrics: Arc<UpstreamMetrics>,
        resilience: Arc<Resilience>,
        connections: Arc<ConnectionLimit>,
        store: SharedStore,
        local: Option<Arc<MemoryStore>>,
    ) -> Arc<GuardState> {
        let up = &settings.upstream;
        Arc::new(GuardState {
            budget: Budget::new(settings, metrics.clone(), store, local),
            resilience,
            connections,
            response_timeout: up.response_timeout,
            retries: Retries::new(up),
            metrics,
        })
    }

    /// Publishes budget and breaker gauges (called before each scrape).
    pub async fn refresh_gauges(&self) {
        self.budget.refresh_gauges().await;
        self.metrics
            .set_breaker_state(self.resilience.breaker.state_at(Instant::now()).as_gauge());
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

impl<S> Service<Outbound> for Guard<S>
where
    S: Service<Outbound, Response = Reply, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, out: Outbound) -> BoxFuture {
        let state = self.state.clone();
        // The service polled ready is the one the first attempt calls; a retry takes a clone
        // and waits for it to be ready.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        Box::pin(async move {
            let route = out.ctx.spec.route;
            let identity = out.ctx.identity.clone();
            let (class, urgency) = (out.class, out.urgency);
            let deadline = out.ctx.deadline;
            let resilience = &state.resilience;
            let permit = match resilience.breaker.try_acquire(Instant::now()) {
                Ok(p) => p,
                Err(open) => {
                    state.metrics.throttle(Throttle::CircuitOpen);
                    return Ok(GatewayError::CircuitOpen {
                        retry_after: open.retry_after,
                    }
                    .into());
                }
            };
            let retryable_route = route.is_read();
            let mut attempt = 0u32;
            let mut previous: Option<Reply> = None;
            let mut this = out;
            loop {
                // The user's share and the key's budget, in one step: a request over budget
                // is refused at once, without queueing for a connection.
                // The budget decision's span (one per attempt): its class and whether it passed.
                let mut span = crate::observe::trace::Span::child(
                    this.ctx.trace.as_ref(),
                    "budget",
                    crate::observe::trace::Kind::Internal,
                );
                span.attr("jbgw.budget.class", class.as_str());
                let admitted = state.budget.admit(&identity, class, urgency).await;
                span.attr(
                    "jbgw.budget.result",
                    if admitted.is_ok() {
                        "admitted"
                    } else {
                        "refused"
                    },
                );
                drop(span);
                let mut granted = match admitted {
                    Ok(g) => g,
                    Err(refused) => {
                        // Not sent: says nothing about upstream health, so the permit is
                        // dropped without a verdict (a retry without budget answers with the
                        // failure it would have retried).
                        drop(permit);
                        return Ok(previous.unwrap_or(refused));
                    }
                };
                // Waiting for a connection ends at the request's deadline at the latest: past
                // it, nothing is sent (a write's client has been told it was not sent, and it
                // certainly is not).
                let queued_at = Instant::now();
                let until = deadline.slot_wait(state.response_timeout);
                let slot = match tokio::time::timeout_at(until, state.connections.acquire()).await {
                    Ok(slot) => slot,
                    _ => {
                        drop(permit);
                        state.budget.refund(granted).await;
                        let refused = if !deadline.passed() {
                            state.metrics.throttle(Throttle::UpstreamConnections);
                            GatewayError::UpstreamBusy.into()
                        } else if retryable_route {
                            GatewayError::RequestTimeout.into()
                        } else {
                            GatewayError::WriteTimedOutUnsent.into()
                        };
                        return Ok(previous.unwrap_or(refused));
                    }
                };
                if queued_at.elapsed() > REQUEUE_AFTER {
                    // It waited for a connection: counted when it leaves, not when it queued,
                    // so the upstream (which counts arrivals) sees it within the budget
                    // margin of the gateway's count.
                    state.budget.refund(granted).await;
                    granted = match state.budget.admit(&identity, class, urgency).await {
                        Ok(g) => g,
                        Err(refused) => {
                            drop(permit);
                            return Ok(previous.unwrap_or(refused));
                        }
                    };
                }
                // Only a write has a gate to look at (a lookup read on a write's behalf
                // carries the write's context, gate included); the pool takes it as it hands
                // the write to a connection, so connecting still counts as "not sent".
                if !retryable_route && this.ctx.gate.is_closed() {
                    // The write's client was answered at its deadline and told that nothing
                    // was sent: it never is.
                    drop(slot);
                    drop(permit);
                    state.budget.refund(granted).await;
                    return Ok(GatewayError::WriteTimedOutUnsent.into());
                }
                if attempt == 0 {
                    // An original request earns retry budget; a retry never does.
                    resilience.budget.deposit();
                }
                // A read keeps a copy for a retry (cheap: shared bytes and Arcs); a write is
                // moved into its only call, so it cannot be sent twice.
                let copy = retryable_route.then(|| this.clone());
                let resp = match inner.call(this).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                drop(slot);
                let verdict = judge(&resp);
                if verdict == Verdict::Limited {
                    let pause = pause_for(&resp);
                    state.budget.pause(&identity.key.name, pause).await;
                    state.metrics.upstream_rate_limited(&identity.key.name);
                    tracing::warn!(
                        upstream_key = &*identity.key.name,
                        pause_secs = pause.as_secs(),
                        "JourneyBee answered 429: pausing this key"
                    );
                }
                let never_sent = resp.facts.upstream.is_some_and(|m| !m.maybe_sent);
                if never_sent {
                    state.budget.refund(granted).await;
                }
                let retry =
                    copy.filter(|_| state.retries.allow(attempt, verdict, &resilience.budget));
                if let Some(copy) = retry {
                    this = copy;
                    let wait = state.retries.backoff(attempt);
                    attempt += 1;
                    state.metrics.upstream_retry(route);
                    tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, "retrying read");
                    previous = Some(resp);
                    tokio::time::sleep(wait).await;
                    // The called service is spent: a clone, ready, for the retry.
                    inner = inner.clone();
                    if let Err(never) = tower::ServiceExt::ready(&mut inner).await {
                        match never {}
                    }
                    continue;
                }
                verdict.settle(permit);
                return Ok(resp);
            }
        })
    }
}
