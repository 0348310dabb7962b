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
use crate::exchange::{BudgetClass, Outbound, Reply};
use crate::observe::metrics::{BudgetPool, Metrics};
use crate::resilience::{CircuitBreaker, RateLimitHeaders, RetryBudget};
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
    /// Admissions of the shared part kept for classes that have the reserve
    /// ([`BudgetClass::has_reserve`]): `refresh_reserve × N` less what the replicas' private
    /// shares already keep for them. The others are admitted only below `shared - reserve`,
    /// and never from the private share (kept for when the store is down).
    reserve: u32,
    /// More headroom a refresh of a copy just past its freshness needs, falling to none for
    /// one at the end of its stale window (`urgency` 100): the oldest copies first.
    early: u32,
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
///
/// Invariant, kept under one mutex: permits in the semaphore (free plus held) minus `debt`
/// equal the configured size. A shrink forgets the free permits it can and owes the rest as
/// `debt`; a slot given back while there is debt pays one unit instead of returning its
/// permit; a grow cancels debt first and adds permits only for the remainder. So any
/// interleaving of shrinks, grows and releases ends, once every slot is back, with exactly
/// the configured number free, and never more in use than the largest size in force since.
#[derive(Debug)]
pub struct ConnectionLimit {
    slots: Arc<Semaphore>,
    sizing: std::sync::Mutex<Sizing>,
}

#[derive(Debug)]
struct Sizing {
    /// The configured bound.
    size: usize,
    /// Permits a shrink could not take at once (they were in use): taken as they come back.
    debt: usize,
}

/// One upstream connection slot, held while the request uses upstream; given back (or used to
/// pay a shrink's debt) on drop.
#[derive(Debug)]
pub struct Slot {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    limit: Arc<ConnectionLimit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        // Under the lock, so a resize sees either the permit back or the debt paid, never a
        // permit freed between its forgetting and its counting of the debt.
        let mut sizing = crate::lock(&self.limit.sizing);
        if sizing.debt > 0 {
            sizing.debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
    }
}

impl ConnectionLimit {
    /// A bound of `size` connections.
    pub fn new(size: usize) -> Arc<ConnectionLimit> {
        Arc::new(ConnectionLimit {
            slots: Arc::new(Semaphore::new(size)),
            sizing: std::sync::Mutex::new(Sizing { size, debt: 0 }),
        })
    }

    /// Waits for a slot (FIFO with the other waiters).
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        Slot {
            permit: Some(permit),
            limit: self.clone(),
        }
    }

    /// Makes the bound `size`: larger at once; smaller as slots in use are given back (the
    /// excess is taken as it frees, ahead of any waiting request, and never given out again).
    pub fn resize(&self, size: usize) {
        let mut sizing = crate::lock(&self.sizing);
        if size > sizing.size {
            let grow = size - sizing.size;
            // Owed permits are simply no longer owed: a grow right after a shrink gives back
            // what the shrink had not yet taken, not new permits on top of it.
            let cancelled = grow.min(sizing.debt);
            sizing.debt -= cancelled;
            self.slots.add_permits(grow - cancelled);
        } else if size < sizing.size {
            let shrink = sizing.size - size;
            let forgotten = self.slots.forget_permits(shrink);
            sizing.debt += shrink - forgotten;
        }
        sizing.size = size;
    }

    /// Free slots now (for tests and gauges).
    pub fn available(&self) -> usize {
        self.slots.available_permits()
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
                    let limit = k.requests_per_minute.limit();
                    KeyBudget {
                        name: k.name.clone(),
                        limit,
                        shared,
                        private,
                        // The replicas' private shares are spent only by classes with the
                        // reserve already: they count towards it, and only the rest is kept
                        // back in the shared part.
                        reserve: limit.map_or(0, |n| {
                            ((f64::from(n) * settings.refresh_reserve).ceil() as u32)
                                .saturating_sub(private.saturating_mul(settings.state.max_replicas))
                        }),
                        early: limit.map_or(0, |n| {
                            (f64::from(n) * settings.refresh_reserve).ceil() as u32
                        }),
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

    /// Spends one admission of `class` for `identity`, from the shared pool or else the
    /// private share.
    async fn admit(
        &self,
        identity: &Identity,
        class: BudgetClass,
        urgency: u8,
    ) -> Result<Granted, Reply> {
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
        let decision = |pool, admitted| self.metrics.economy().decision(class, pool, admitted);
        let shared = if class.has_reserve() {
            key.shared
        } else {
            let early = key.early * u32::from(100 - urgency.min(100)) / 100;
            key.shared.saturating_sub(key.reserve + early)
        };
        if shared == 0 {
            // Nothing above the reserve to spend (and a limit of 0 is never asked of the
            // store): refused without a round trip.
            decision(BudgetPool::Shared, false);
            return Err(self.throttled(Throttle::UpstreamBudget, limit, self.window));
        }
        let ask = BudgetAsk {
            key: &key.name,
            limit: shared,
            window: self.window,
            user: user_rpm.map(|n| (&*identity.name, n)),
        };
        let shared_wait = match self.store.admit(&ask).await {
            Ok(Admit::Admitted(t)) => {
                decision(BudgetPool::Shared, true);
                return Ok(Granted::Shared(t));
            }
            Ok(Admit::UserFull { wait }) => {
                decision(BudgetPool::Shared, false);
                return Err(self.throttled(Throttle::UserShare, user_rpm.unwrap_or(0), wait));
            }
            Ok(Admit::Paused { wait }) => {
                decision(BudgetPool::Shared, false);
                return Err(self.throttled(Throttle::UpstreamBudget, limit, wait));
            }
            Ok(Admit::KeyFull { wait }) => {
                decision(BudgetPool::Shared, false);
                Some(wait)
            }
            Err(_unavailable) => None,
        };
        // The private share is for classes with the reserve only: a refresh has a copy to
        // serve instead.
        let Some(local) = self
            .local
            .as_ref()
            .filter(|_| key.private > 0 && class.has_reserve())
        else {
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
                decision(BudgetPool::Private, true);
                Ok(Granted::Private(t))
            }
            Admit::UserFull { wait } => {
                decision(BudgetPool::Private, false);
                Err(self.throttled(Throttle::UserShare, user_rpm.unwrap_or(0), wait))
            }
            Admit::KeyFull { wait } | Admit::Paused { wait } => {
                decision(BudgetPool::Private, false);
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
        let a = limit.acquire().await;
        let b = limit.acquire().await;
        // Smaller while both slots are in use: the excess is taken as they come back.
        limit.resize(1);
        drop(a);
        tokio::task::yield_now().await;
        assert_eq!(limit.available(), 0, "the freed slot was the excess");
        drop(b);
        assert_eq!(limit.available(), 1);
        // Larger: at once.
        limit.resize(3);
        assert_eq!(limit.available(), 3);
    }

    /// Lets anything the resize may have spawned run.
    async fn settle() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_grow_before_a_shrink_has_taken_its_slots_keeps_the_configured_bound() {
        let limit = ConnectionLimit::new(2);
        let a = limit.acquire().await;
        let b = limit.acquire().await;
        // Shrink while both are held, then grow back before either is given back: at no
        // moment may a third slot be free (the old spawned debt collector left one free
        // until it ran).
        limit.resize(1);
        limit.resize(2);
        assert_eq!(limit.available(), 0, "two in use under a bound of two");
        settle().await;
        assert_eq!(limit.available(), 0, "two in use under a bound of two");
        drop(a);
        settle().await;
        assert_eq!(limit.available(), 1);
        drop(b);
        settle().await;
        assert_eq!(limit.available(), 2, "exactly the configured bound");

        // Shrink by more than is free, pay part of it, grow past it, shrink again.
        let limit = ConnectionLimit::new(3);
        let held: Vec<_> = vec![
            limit.acquire().await,
            limit.acquire().await,
            limit.acquire().await,
        ];
        limit.resize(0);
        settle().await;
        let mut held = held.into_iter();
        drop(held.next());
        settle().await;
        assert_eq!(limit.available(), 0, "the freed slot paid the shrink");
        limit.resize(4);
        settle().await;
        assert_eq!(limit.available(), 2, "4 configured, 2 in use");
        limit.resize(1);
        settle().await;
        assert_eq!(limit.available(), 0);
        drop(held);
        settle().await;
        assert_eq!(limit.available(), 1, "exactly the configured bound");
    }

    #[tokio::test]
    async fn a_shrink_takes_a_freed_slot_ahead_of_a_waiting_request() {
        let limit = ConnectionLimit::new(1);
        let a = limit.acquire().await;
        // A request already queued for a slot when the bound drops to 0.
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        settle().await;
        limit.resize(0);
        drop(a);
        settle().await;
        assert!(!waiting.is_finished(), "a bound of 0 gave a slot out");
        limit.resize(1);
        let slot = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the grow gave the waiting request its slot")
            .unwrap();
        assert_eq!(limit.available(), 0);
        drop(slot);
        assert_eq!(limit.available(), 1, "exactly the configured bound");
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let at =
            |secs: u64| httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(secs));
        let hv = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert_eq!(retry_after("7", None), Some(Duration::from_secs(7)));
        // A date, measured from the response's own `Date`.
        let date = hv(&at(1_000_000));
        assert_eq!(
            retry_after(&at(1_000_042), Some(&date)),
            Some(Duration::from_secs(42))
        );
        // Past: no pause. Without a `Date`: from this host's clock.
        assert_eq!(retry_after(&at(999_000), Some(&date)), Some(Duration::ZERO));
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let wait = retry_after(&soon, None).unwrap();
        assert!(
            wait > Duration::from_secs(28) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(retry_after("soon", None), None);
    }

    /// Random interleavings of takes, gives back, shrinks and grows: after every step the
    /// free slots are exactly what the bound leaves (`size - in use`, or none while more are
    /// in use than the bound), and once everything is given back, exactly the bound.
    #[tokio::test]
    async fn resizes_interleaved_with_slots_in_use_leave_exactly_the_bound() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _round in 0..200 {
            let mut size = next(5) as usize;
            let limit = ConnectionLimit::new(size);
            let mut held = Vec::new();
            for _step in 0..40 {
                match next(4) {
                    0 if limit.available() > 0 => held.push(limit.acquire().await),
                    1 if !held.is_empty() => {
                        let i = next(held.len() as u64) as usize;
                        drop(held.swap_remove(i));
                    }
                    2 | 3 => {
                        size = next(6) as usize;
                        limit.resize(size);
                    }
                    _ => {}
                }
                // At every instant, not only once background work has run: a bound that
                // is exceeded for a while is exceeded.
                assert_eq!(
                    limit.available(),
                    size.saturating_sub(held.len()),
                    "bound {size}, {} in use",
                    held.len()
                );
            }
            held.clear();
            settle().await;
            assert_eq!(
                limit.available(),
                size,
                "everything back: exactly the bound"
            );
        }
    }

    #[tokio::test]
    async fn a_limited_key_counts_every_admission() {
        let (state, store, bob, _) = guard("2");
        assert!(state.admit(&bob, BudgetClass::Cold, 100).await.is_ok());
        assert!(state.admit(&bob, BudgetClass::Cold, 100).await.is_ok());
        assert!(
            state.admit(&bob, BudgetClass::Cold, 100).await.is_err(),
            "the third is over the limit"
        );
        let left = store.remaining("read", 2, state.window).await.unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn an_unlimited_key_never_asks_the_store_but_honours_a_pause() {
        let (state, store, bob, metrics) = guard("\"unlimited\"");
        for _ in 0..10_000 {
            match state.admit(&bob, BudgetClass::Cold, 100).await {
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
        assert!(
            state.admit(&bob, BudgetClass::Cold, 100).await.is_err(),
            "paused"
        );
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

/// The pause an upstream 429 asks for: `Retry-After` as delay-seconds or as an HTTP-date
/// (RFC 9110 §10.2.3), capped at [`MAX_PAUSE`]; [`DEFAULT_PAUSE`] when absent or unreadable.
fn pause_for(reply: &Reply) -> Duration {
    let headers = reply.response.headers();
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v.trim(), headers.get(http::header::DATE)))
        .unwrap_or(DEFAULT_PAUSE)
        .min(MAX_PAUSE)
}

/// A `Retry-After` value as a delay. A date is measured from the response's own `Date` when
/// it has a valid one (both stamps then come from the upstream's clock, so a skew between
/// its clock and this host's does not shift the pause), else from this host's clock. A date
/// already past asks for no pause.
fn retry_after(value: &str, date: Option<&http::HeaderValue>) -> Option<Duration> {
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let now = date
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d.trim()).ok())
        .unwrap_or_else(std::time::SystemTime::now);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
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
                let admitted = state.admit(&identity, class, urgency).await;
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
                let until = deadline.slot_wait(state.connection_wait);
                let slot = match tokio::time::timeout_at(until, state.connections.acquire()).await {
                    Ok(slot) => slot,
                    _ => {
                        drop(permit);
                        state.refund(granted).await;
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
                    state.refund(granted).await;
                    granted = match state.admit(&identity, class, urgency).await {
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
                    let wait = crate::timeouts::retry_backoff(
                        attempt,
                        state.backoff_base,
                        state.backoff_max,
                    );
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
