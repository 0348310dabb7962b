//! The per-key budget: JourneyBee's limit N per key, mirrored as a sliding log in the state
//! [`Store`] (never more than N in any window), with the user's fair share checked in the same
//! step.
//!
//! With Redis, each key's N is split into a shared part and a private share per replica
//! (`[state] private_share`): the shared log is asked first, the private share (kept in this
//! process) is used when the shared log is full or unreachable, so the total across
//! `max_replicas` replicas stays ≤ N in every state of the backend, and never fails open.
//! Part of the shared log is kept as a reserve for the classes that have it
//! ([`BudgetClass::has_reserve`]): refreshes spend only the headroom above it, the oldest
//! copies first.
//!
//! An admission whose request never reached upstream is refunded; an upstream 429 pauses the
//! key in every replica's log.

use crate::config::{Identity, Settings};
use crate::error::{GatewayError, Throttle};
use crate::exchange::{BudgetClass, Reply};
use crate::resilience::RateLimitHeaders;
use crate::state::memory::MemoryStore;
use crate::state::{Admit, BudgetAsk, SharedStore, Store, Ticket};
use crate::upstream::metrics::{BudgetPool, UpstreamMetrics};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

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

/// The keys' budgets for one config generation; the logs themselves live in the store.
pub(super) struct Budget {
    keys: Vec<KeyBudget>,
    window: Duration,
    default_user_rpm: Option<u32>,
    store: SharedStore,
    /// The private shares (only with a shared backend).
    local: Option<Arc<MemoryStore>>,
    metrics: Arc<UpstreamMetrics>,
}

/// An admission, from the pool that granted it.
pub(super) enum Granted {
    Shared(Ticket),
    Private(Ticket),
}

impl Budget {
    /// The budgets of `settings`' keys, spent in `store` (and, with a shared backend, the
    /// private shares in `local`).
    pub(super) fn new(
        settings: &Settings,
        metrics: Arc<UpstreamMetrics>,
        store: SharedStore,
        local: Option<Arc<MemoryStore>>,
    ) -> Budget {
        let up = &settings.upstream;
        metrics.declare_upstream_keys(&up.keys.iter().map(|k| &*k.name).collect::<Vec<_>>());
        Budget {
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
            metrics,
        }
    }

    /// Publishes the keys' remaining budget (called before each scrape).
    pub(super) async fn refresh_gauges(&self) {
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
    pub(super) async fn admit(
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
        let decision = |pool, admitted| self.metrics.decision(class, pool, admitted);
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
    pub(super) async fn refund(&self, granted: Granted) {
        let _ = match granted {
            Granted::Shared(t) => self.store.refund(&t).await,
            Granted::Private(t) => match &self.local {
                Some(local) => local.refund(&t).await,
                None => Ok(()),
            },
        };
    }

    /// An upstream 429: every replica (and this one's private share) pauses the key.
    pub(super) async fn pause(&self, key: &str, pause: Duration) {
        let _ = self.store.pause(key, pause).await;
        if let Some(local) = &self.local {
            let _ = local.pause(key, pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budgets over one memory store, for a config whose `read` key has the given limit.
    fn budget(
        read_rpm: &str,
    ) -> (
        Budget,
        Arc<MemoryStore>,
        Arc<Identity>,
        Arc<crate::metrics::Metrics>,
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
        let metrics = crate::metrics::Metrics::new();
        let store = Arc::new(MemoryStore::new(1 << 20));
        let state = Budget::new(&settings, metrics.upstream.clone(), store.clone(), None);
        (state, store, settings.users["bob"].clone(), metrics)
    }

    #[tokio::test]
    async fn a_limited_key_counts_every_admission() {
        let (state, store, bob, _) = budget("2");
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
        let (state, store, bob, metrics) = budget("\"unlimited\"");
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
