//! The upstream guard, just above the forward: the user's fair share, the circuit breaker,
//! the per-key budget mirroring JourneyBee's limit (a sliding log: never more than the limit
//! in any window), the connection bound, and safe retries.
//!
//! The budget lives in the state [`Store`]: in memory for one replica, or in Redis shared by
//! every replica. With Redis, each key's limit N is split into a shared part and a private
//! share per replica (`[state] private_share`): the shared log is asked first, the private
//! share (kept in this process) is used when the shared log is full or unreachable, so the
//! total across `max_replicas` replicas stays ≤ N in every state of the backend, and never
//! fails open.
//!
//! Everything it refuses is refused before a byte leaves, so a refused create certainly was
//! not sent, and an admission whose request never reached upstream is refunded. Only lists are
//! retried (connect errors, resets before a response, 502/503/504), within a retry budget and
//! the key's own budget; a create is sent at most once.

use crate::config::{Identity, Settings, UpstreamSettings};
use crate::error::{GatewayError, Rejection, Throttle};
use crate::exchange::{Outbound, Reply};
use crate::metrics::{BudgetPool, Metrics};
use crate::resilience::{backoff, CircuitBreaker, RateLimitHeaders, RetryBudget};
use crate::state::memory::MemoryStore;
use crate::state::{Admit, BudgetAsk, SharedStore, Store, Ticket};
use crate::BoxFuture;
use http::header::RETRY_AFTER;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, Service};

/// An upstream 429 without a usable `Retry-After` pauses the key for a full minute.
const DEFAULT_PAUSE: Duration = Duration::from_secs(60);
/// A request that waited this long for an upstream connection is counted again when it
/// leaves (well under the default 1 s budget margin).
const REQUEUE_AFTER: Duration = Duration::from_millis(100);
/// Upper bound on a pause an upstream may ask for.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// The circuit breaker and the retry budget: history that a reload keeps unless their own
/// settings change.
pub struct Resilience {
    breaker: CircuitBreaker,
    budget: RetryBudget,
    settings: (u32, Duration, u64),
}

impl Resilience {
    fn key(up: &UpstreamSettings) -> (u32, Duration, u64) {
        (
            up.breaker_failures,
            up.breaker_cooldown,
            up.retry_budget_ratio.to_bits(),
        )
    }

    /// A closed breaker and an empty retry budget for `up`.
    pub fn new(up: &UpstreamSettings) -> Arc<Resilience> {
        Arc::new(Resilience {
            breaker: CircuitBreaker::new(up.breaker_failures, up.breaker_cooldown),
            budget: RetryBudget::new(
                Duration::from_secs(10),
                up.retry_budget_ratio,
                3,
                Instant::now(),
            ),
            settings: Self::key(up),
        })
    }

    /// Whether this state was built for the same settings as `up` (so a reload keeps it).
    pub fn fits(&self, up: &UpstreamSettings) -> bool {
        self.settings == Self::key(up)
    }
}

/// A key's limit as this replica spends it.
#[derive(Debug, Clone)]
struct KeyBudget {
    name: Arc<str>,
    /// JourneyBee's limit N; `None` for an `unlimited` key, whose requests never ask the
    /// store (only an upstream 429's pause, held in this process, refuses them).
    limit: Option<u32>,
    /// Asked of the store (N with the memory backend).
    shared: u32,
    /// Spent alone when the shared part is full or unreachable (0 with the memory backend).
    private: u32,
}

/// The guard's state for one config generation; the budget itself lives in the store.
pub struct GuardState {
    keys: Vec<KeyBudget>,
    window: Duration,
    default_user_rpm: Option<u32>,
    store: SharedStore,
    /// The private shares (only with a shared backend).
    local: Option<Arc<MemoryStore>>,
    resilience: Arc<Resilience>,
    connections: Arc<ConnectionLimit>,
    connection_wait: Duration,
    retries: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    metrics: Arc<Metrics>,
}

/// The bound on upstream connections in use (`upstream.max_connections`), shared by every
/// generation: requests still running on the generation a reload replaced hold slots of the
/// same bound as the new generation's, so together they never use more than the limit. A
/// reload that changes the limit resizes it in place.
#[derive(Debug)]
pub struct ConnectionLimit {
    slots: Arc<Semaphore>,
    size: std::sync::Mutex<usize>,
}

impl ConnectionLimit {
    /// A bound of `size` connections.
    pub fn new(size: usize) -> Arc<ConnectionLimit> {
        Arc::new(ConnectionLimit {
            slots: Arc::new(Semaphore::new(size)),
            size: std::sync::Mutex::new(size),
        })
    }

    /// Makes the bound `size`: larger at once; smaller as slots in use are given back (the
    /// excess is taken as it frees, ahead of any waiting request, and never given out again).
    pub fn resize(&self, size: usize) {
        let mut current = crate::lock(&self.size);
        if size > *current {
            self.slots.add_permits(size - *current);
        } else if size < *current {
            let excess = *current - size;
            let rest = excess - self.slots.forget_permits(excess);
            if rest > 0 {
                let slots = self.slots.clone();
                let rest = u32::try_from(rest).unwrap_or(u32::MAX);
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if let Ok(taken) = slots.acquire_many_owned(rest).await {
                            taken.forget();
                        }
                    });
                }
            }
        }
        *current = size;
    }
}

/// An admission, from the pool that granted it.
enum Granted {
    Shared(Ticket),
    Private(Ticket),
}

impl GuardState {
    /// The guard for `settings`, spending budget in `store` (and, with a shared backend, the
    /// private shares in `local`), bounding connections with `connections`.
    pub fn new(
        settings: &Settings,
        metrics: Arc<Metrics>,
        resilience: Arc<Resilience>,
        connections: Arc<ConnectionLimit>,
        store: SharedStore,
        local: Option<Arc<MemoryStore>>,
    ) -> Arc<GuardState> {
        let up = &settings.upstream;
        metrics.declare_upstream_keys(&up.keys.iter().map(|k| &*k.name).collect::<Vec<_>>());
        Arc::new(GuardState {
            keys: up
                .keys
                .iter()
                .map(|k| {
                    let (shared, private) = settings
                        .state
                        .split(k.requests_per_minute)
                        .unwrap_or_default();
                    KeyBudget {
                        name: k.name.clone(),
                        limit: k.requests_per_minute.limit(),
                        shared,
                        private,
                    }
                })
                .collect(),
            window: settings.budget_window(),
            default_user_rpm: settings.default_user_rpm,
            store,
            local,
            resilience,
            connections,
            connection_wait: up.response_timeout,
            retries: up.retries,
            backoff_base: up.retry_backoff,
            backoff_max: up.retry_backoff_max,
            metrics,
        })
    }

    /// Publishes budget and breaker gauges (called before each scrape).
    pub async fn refresh_gauges(&self) {
        for k in &self.keys {
            if k.limit.is_none() {
                // No local budget, so nothing remains or runs out: no series.
                self.metrics.clear_budget_remaining(&k.name);
                continue;
            }
            let shared = self
                .store
                .remaining(&k.name, k.shared, self.window)
                .await
                .unwrap_or(0);
            let private = match &self.local {
                Some(local) => local
                    .remaining(&k.name, k.private, self.window)
                    .await
                    .unwrap_or(0),
                None => 0,
            };
            self.metrics.set_budget_remaining(&k.name, shared + private);
        }
        self.metrics
            .set_breaker_state(self.resilience.breaker.state_at(Instant::now()).as_gauge());
    }

    fn throttled(&self, reason: Throttle, limit: u32, wait: Duration) -> Reply {
        self.metrics.throttle(reason);
        GatewayError::Throttled {
            reason,
            headers: RateLimitHeaders {
                limit,
                window: self.window,
                remaining: 0,
                reset: wait,
                retry_after: Some(wait),
            },
        }
        .into()
    }

    /// Spends one admission for `identity`, from the shared pool or else the private share.
    async fn admit(&self, identity: &Identity) -> Result<Granted, Reply> {
        let key = &self.keys[identity.key.index];
        let Some(limit) = key.limit else {
            // `unlimited`: no store call and no log (fair shares do not apply either); only
            // a pause after an upstream 429 refuses, as this process's own stores hold it.
            let paused = self.store.local_pause(&key.name).or_else(|| {
                self.local
                    .as_ref()
                    .and_then(|local| local.local_pause(&key.name))
            });
            return match paused {
                Some(wait) => Err(self.throttled(Throttle::UpstreamBudget, 0, wait)),
                None => Ok(Granted::Private(Ticket::uncounted(key.name.clone()))),
            };
        };
        let user_rpm = identity.requests_per_minute.or(self.default_user_rpm);
        let ask = BudgetAsk {
            key: &key.name,
            limit: key.shared,
            window: self.window,
            user: user_rpm.map(|n| (&*identity.name, n)),
        };
        let shared_wait = match self.store.admit(&ask).await {
            Ok(Admit::Admitted(t)) => {
                self.metrics.state().decision(BudgetPool::Shared, true);
                return Ok(Granted::Shared(t));
            }
            Ok(Admit::UserFull { wait }) => {
                self.metrics.state().decision(BudgetPool::Shared, false);
                return Err(self.throttled(Throttle::UserShare, user_rpm.unwrap_or(0), wait));
            }
            Ok(Admit::Paused { wait }) => {
                self.metrics.state().decision(BudgetPool::Shared, false);
                return Err(self.throttled(Throttle::UpstreamBudget, limit, wait));
            }
            Ok(Admit::KeyFull { wait }) => {
                self.metrics.state().decision(BudgetPool::Shared, false);
                Some(wait)
            }
            Err(_unavailable) => None,
        };
        let Some(local) = self.local.as_ref().filter(|_| key.private > 0) else {
            // Never fail open: an unreachable backend without a private share admits nothing.
            let wait = shared_wait.unwrap_or(crate::state::redis::PROBE_INTERVAL);
            return Err(self.throttled(Throttle::UpstreamBudget, limit, wait));
        };
        let private = BudgetAsk {
            limit: key.private,
            ..ask
        };
        match local.admit_now(&private, Instant::now()) {
            Admit::Admitted(t) => {
                self.metrics.state().decision(BudgetPool::Private, true);
                Ok(Granted::Private(t))
            }
            Admit::UserFull { wait } => {
                self.metrics.state().decision(BudgetPool::Private, false);
                Err(self.throttled(Throttle::UserShare, user_rpm.unwrap_or(0), wait))
            }
            Admit::KeyFull { wait } | Admit::Paused { wait } => {
                self.metrics.state().decision(BudgetPool::Private, false);
                let wait = shared_wait.map_or(wait, |s| s.min(wait));
                Err(self.throttled(Throttle::UpstreamBudget, limit, wait))
            }
        }
    }

    /// Takes back an admission whose request never reached upstream.
    async fn refund(&self, granted: Granted) {
        let _ = match granted {
            Granted::Shared(t) => self.store.refund(&t).await,
            Granted::Private(t) => match &self.local {
                Some(local) => local.refund(&t).await,
                None => Ok(()),
            },
        };
    }

    /// An upstream 429: every replica (and this one's private share) pauses the key.
    async fn pause(&self, key: &str, pause: Duration) {
        let _ = self.store.pause(key, pause).await;
        if let Some(local) = &self.local {
            let _ = local.pause(key, pause).await;
        }
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    /// A guard over one memory store, for a config whose `read` key has the given limit.
    fn guard(
        read_rpm: &str,
    ) -> (
        Arc<GuardState>,
        Arc<MemoryStore>,
        Arc<Identity>,
        Arc<Metrics>,
    ) {
        let dir = std::env::temp_dir().join(format!(
            "jbgw-guard-{}-{}",
            std::process::id(),
            read_rpm.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("read.key"), "jb_read").unwrap();
        std::fs::write(dir.join("jwt.secret"), "0123456789abcdef0123456789abcdef").unwrap();
        let text = format!(
            "[upstream]\nbase_url = \"http://127.0.0.1:9\"\n\
             [upstream.keys.read]\nsecret_file = \"read.key\"\nrequests_per_minute = {read_rpm}\n\
             [auth]\nalgorithms = [\"HS256\"]\nissuer = \"https://idp.test\"\naudience = \"gw\"\n\
             [[auth.keys]]\nhmac_secret_file = \"jwt.secret\"\n\
             [[users]]\nsubject = \"bob\"\nupstream_key = \"read\"\nuser_id = 2\naccess = \"read\"\n"
        );
        let settings = crate::config::from_toml(&text, &dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::remove_dir_all(&dir).ok();
        let metrics = Metrics::new();
        let store = Arc::new(MemoryStore::new(1 << 20));
        let state = GuardState::new(
            &settings,
            metrics.clone(),
            Resilience::new(&settings.upstream),
            ConnectionLimit::new(settings.upstream.max_connections),
            store.clone(),
            None,
        );
        (state, store, settings.users["bob"].clone(), metrics)
    }

    #[tokio::test]
    async fn the_connection_bound_resizes_in_place() {
        let limit = ConnectionLimit::new(2);
        let a = limit.slots.clone().acquire_owned().await.unwrap();
        let b = limit.slots.clone().acquire_owned().await.unwrap();
        // Smaller while both slots are in use: the excess is taken as they come back.
        limit.resize(1);
        drop(a);
        tokio::task::yield_now().await;
        assert_eq!(
            limit.slots.available_permits(),
            0,
            "the freed slot was the excess"
        );
        drop(b);
        assert_eq!(limit.slots.available_permits(), 1);
        // Larger: at once.
        limit.resize(3);
        assert_eq!(limit.slots.available_permits(), 3);
    }

    #[tokio::test]
    async fn a_limited_key_counts_every_admission() {
        let (state, store, bob, _) = guard("2");
        assert!(state.admit(&bob).await.is_ok());
        assert!(state.admit(&bob).await.is_ok());
        assert!(
            state.admit(&bob).await.is_err(),
            "the third is over the limit"
        );
        let left = store.remaining("read", 2, state.window).await.unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn an_unlimited_key_never_asks_the_store_but_honours_a_pause() {
        let (state, store, bob, metrics) = guard("\"unlimited\"");
        for _ in 0..10_000 {
            match state.admit(&bob).await {
                Ok(Granted::Private(t)) => state.refund(Granted::Private(t)).await,
                Ok(Granted::Shared(_)) => panic!("an unlimited key asked the store"),
                Err(_) => panic!("an unlimited key was refused"),
            }
        }
        // Nothing was counted: the store has no log for the key at all.
        assert_eq!(store.remaining("read", 1, state.window).await.unwrap(), 1);
        state.refresh_gauges().await;
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            !text.contains("upstream_budget_remaining{"),
            "no budget series for an unlimited key"
        );
        // An upstream 429 still pauses it.
        state.pause("read", Duration::from_secs(30)).await;
        assert!(state.admit(&bob).await.is_err(), "paused");
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

fn judge(reply: &Reply) -> Verdict {
    match reply.upstream_status() {
        Some(429) => Verdict::Limited,
        Some(502..=504) => Verdict::Retryable,
        Some(s) if s >= 500 => Verdict::Failed,
        Some(_) => Verdict::Healthy,
        None => match reply.facts.rejection {
            Some(Rejection::UpstreamUnreachable) => Verdict::Retryable,
            _ => Verdict::Failed,
        },
    }
}

/// The pause an upstream 429 asks for (`Retry-After` in seconds; HTTP dates are treated as
/// the default window).
fn pause_for(reply: &Reply) -> Duration {
    reply
        .response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_PAUSE)
        .min(MAX_PAUSE)
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
                let mut granted = match state.admit(&identity).await {
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
                // it, nothing is sent (a write's client has been told it may have been applied,
                // and it certainly is not).
                let queued_at = Instant::now();
                let until = deadline.min(Instant::now() + state.connection_wait);
                let slot = match tokio::time::timeout_at(
                    until,
                    state.connections.slots.clone().acquire_owned(),
                )
                .await
                {
                    Ok(Ok(slot)) => slot,
                    _ => {
                        drop(permit);
                        state.refund(granted).await;
                        let refused = if Instant::now() < deadline {
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
                    state.refund(granted).await;
                    granted = match state.admit(&identity).await {
                        Ok(g) => g,
                        Err(refused) => {
                            drop(permit);
                            return Ok(previous.unwrap_or(refused));
                        }
                    };
                }
                // Only a write takes its gate (a lookup read on a write's behalf carries the
                // write's context, gate included).
                if !retryable_route && !this.ctx.gate.take() {
                    // The write's client was answered at its deadline and told that nothing
                    // was sent: it never is.
                    drop(slot);
                    drop(permit);
                    state.refund(granted).await;
                    return Ok(GatewayError::WriteTimedOutUnsent.into());
                }
                if attempt == 0 {
                    // An original request earns retry budget; a retry never does.
                    resilience.budget.record_request(Instant::now());
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
                    state.pause(&identity.key.name, pause).await;
                    state.metrics.upstream_rate_limited(&identity.key.name);
                    tracing::warn!(
                        upstream_key = &*identity.key.name,
                        pause_secs = pause.as_secs(),
                        "JourneyBee answered 429: pausing this key"
                    );
                }
                let never_sent = resp.facts.upstream.is_some_and(|m| !m.maybe_sent);
                if never_sent {
                    state.refund(granted).await;
                }
                let retry = copy.filter(|_| {
                    verdict == Verdict::Retryable
                        && attempt < state.retries
                        && resilience.budget.try_retry(Instant::now())
                });
                if let Some(copy) = retry {
                    this = copy;
                    let wait = backoff(attempt, state.backoff_base, state.backoff_max);
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
                match verdict {
                    Verdict::Healthy | Verdict::Limited => permit.success(),
                    Verdict::Retryable | Verdict::Failed => permit.failure(),
                }
                return Ok(resp);
            }
        })
    }
}
