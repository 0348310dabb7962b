//! History: what a reload changes configuration around, never forgets (the state store, the
//! breaker, the list cache, the upstream pool, remembered key sets).

use crate::cache::ListCache;
use crate::config::Settings;
use crate::lock;
use crate::metrics::Metrics;
use crate::state::memory::MemoryStore;
use crate::state::redis::RedisStore;
use crate::state::SharedStore;
use crate::upstream::guard::{ConnectionLimit, Resilience};
use crate::upstream::{build_client, build_pool};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

/// What outlives a config reload: the metrics registry, the in-flight counter the limits
/// layer sheds on, readiness, and the history.
pub struct Shared {
    /// Metrics registry and handles.
    pub metrics: Arc<Metrics>,
    /// Requests in progress across every generation of the stack.
    pub in_flight: Arc<AtomicUsize>,
    /// Set once both listeners accept; cleared on shutdown.
    pub ready: AtomicBool,
    /// State a reload keeps.
    pub history: History,
}

/// History: what a reload changes configuration around, never forgets. Each part is reused
/// by the next generation unless its own settings changed.
pub struct History {
    /// In-process budgets, idempotency records and generations: the memory backend itself,
    /// and the private budget shares beside a shared backend.
    pub(super) local: Arc<MemoryStore>,
    /// The shared backend, with the settings it was built for.
    shared: std::sync::Mutex<Option<(crate::state::redis::RedisSettings, SharedStore)>>,
    /// The breaker and the retry budget.
    resilience: std::sync::Mutex<Option<Arc<Resilience>>>,
    /// The list cache.
    cache: std::sync::Mutex<Option<Arc<ListCache>>>,
    /// The bound on upstream connections in use, across generations.
    connections: std::sync::Mutex<Option<Arc<ConnectionLimit>>>,
    /// The IdP client and the upstream connection pool, with the settings they were built
    /// for.
    client: std::sync::Mutex<Option<(ClientKey, Clients)>>,
    /// The last good JWKS document of each issuer and key source: a new generation starts
    /// from it, so a reload during an IdP outage keeps the keys that work.
    pub(super) jwks: Arc<crate::identity::auth::jwks::KeyMemory>,
    /// The writes running on in tasks of their own, whichever generation accepted them:
    /// shutdown waits for them.
    writes: Arc<crate::observe::writes::Writes>,
}

/// The IdP client and JourneyBee's connection pool.
#[derive(Clone)]
pub(super) struct Clients {
    /// For JWKS and discovery documents.
    pub(super) idp: crate::upstream::HttpClient,
    /// For JourneyBee.
    pub(super) upstream: Arc<crate::upstream::pool::Pool>,
}

/// What the clients are built from: a reload with the same keeps their connections.
#[derive(Debug, Clone, PartialEq)]
struct ClientKey {
    origin: String,
    extra_ca_file: Option<std::path::PathBuf>,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    digest: [u8; 32],
}

impl ClientKey {
    fn of(up: &crate::config::UpstreamSettings) -> ClientKey {
        // The CA file's content counts: a renewed bundle at the same path must rebuild.
        let ca = up
            .extra_ca_file
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .unwrap_or_default();
        let digest = crate::state::Fingerprint::of(&ca).0;
        ClientKey {
            origin: format!("{}://{}", up.scheme, up.authority),
            extra_ca_file: up.extra_ca_file.clone(),
            connect_timeout: up.connect_timeout,
            pool_idle_timeout: up.pool_idle_timeout,
            pool_max_idle_per_host: up.pool_max_idle_per_host,
            digest,
        }
    }
}

impl History {
    /// Empty history, for a process's first generation.
    pub fn new() -> History {
        History {
            local: Arc::new(MemoryStore::new(16 << 20)),
            shared: std::sync::Mutex::new(None),
            resilience: std::sync::Mutex::new(None),
            cache: std::sync::Mutex::new(None),
            connections: std::sync::Mutex::new(None),
            client: std::sync::Mutex::new(None),
            jwks: Default::default(),
            writes: Default::default(),
        }
    }

    /// The writes running in tasks of their own.
    /// The list cache in use, if one was built.
    pub fn current_cache(&self) -> Option<Arc<ListCache>> {
        lock(&self.cache).clone()
    }

    /// The writes running on in tasks of their own.
    pub fn writes(&self) -> &Arc<crate::observe::writes::Writes> {
        &self.writes
    }

    /// The store for `settings`: the same one as before unless the backend changed.
    pub(super) async fn store(
        &self,
        settings: &Settings,
        metrics: &Arc<Metrics>,
    ) -> Result<SharedStore, String> {
        self.local.set_capacity(settings.idempotency.capacity);
        match &settings.state.backend {
            crate::config::Backend::Memory => {
                metrics.state.set_up(true);
                Ok(self.local.clone())
            }
            crate::config::Backend::Redis(redis) => {
                if let Some((s, store)) = &*lock(&self.shared) {
                    if s == redis {
                        return Ok(store.clone());
                    }
                }
                let store = Arc::new(RedisStore::new(redis, metrics.state.clone())?);
                if !store.probe().await {
                    tracing::warn!(
                        "state backend unreachable at start: serving degraded until it answers"
                    );
                }
                let store: SharedStore = store;
                *lock(&self.shared) = Some((redis.clone(), store.clone()));
                Ok(store)
            }
        }
    }

    pub(super) fn resilience(&self, settings: &Settings) -> Arc<Resilience> {
        let mut r = lock(&self.resilience);
        match &*r {
            Some(existing) if existing.fits(&settings.upstream) => existing.clone(),
            _ => {
                let fresh = Resilience::new(&settings.upstream);
                *r = Some(fresh.clone());
                fresh
            }
        }
    }

    pub(super) fn connections(&self, settings: &Settings) -> Arc<ConnectionLimit> {
        let size = settings.upstream.max_connections;
        let mut c = lock(&self.connections);
        match &*c {
            Some(existing) => {
                existing.resize(size);
                existing.clone()
            }
            None => {
                let fresh = ConnectionLimit::new(size);
                *c = Some(fresh.clone());
                fresh
            }
        }
    }

    pub(super) fn cache(
        &self,
        settings: &Settings,
        store: &SharedStore,
        metrics: &Arc<Metrics>,
    ) -> Arc<ListCache> {
        let mut c = lock(&self.cache);
        let degraded = settings.state.degraded_max_age;
        match &*c {
            Some(existing)
                if existing.fits(&settings.cache, store, degraded, settings.check_references) =>
            {
                existing.clone()
            }
            _ => {
                let fresh = ListCache::new(
                    &settings.cache,
                    store.clone(),
                    degraded,
                    settings.check_references,
                    metrics.cache.clone(),
                );
                if let Some(old) = &*c {
                    // Bumps the store has not taken yet are history, not configuration:
                    // the new cache retries them (they reach the other replicas).
                    fresh.take_pending_bumps(old);
                }
                *c = Some(fresh.clone());
                fresh
            }
        }
    }

    pub(super) fn clients(&self, settings: &Settings) -> Result<Clients, String> {
        let key = ClientKey::of(&settings.upstream);
        let mut c = lock(&self.client);
        if let Some((k, clients)) = &*c {
            if *k == key {
                return Ok(clients.clone());
            }
        }
        let clients = Clients {
            idp: build_client(&settings.upstream)?,
            upstream: {
                let pool = Arc::new(build_pool(&settings.upstream)?);
                crate::upstream::pool::Pool::start_reaper(&pool);
                pool
            },
        };
        *c = Some((key, clients.clone()));
        Ok(clients)
    }
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}
