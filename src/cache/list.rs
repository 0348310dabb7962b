//! The list cache: upstream list responses kept per (upstream key, generation, userId,
//! canonical query), bounded in bytes by moka's weigher, with coalesced misses, O(1)
//! invalidation on write, client `Cache-Control`, and stale copies served within bounds.
//!
//! Freshness and staleness (RFC 9111 §4.2, RFC 5861), per copy, local or in the shared L2:
//! - younger than the TTL: fresh, a `HIT`;
//! - older, within `stale_while_revalidate`: answered at once (`STALE`, detail
//!   `revalidating`) while one background fetch, across the fleet (the L2 lock), refreshes it,
//!   spending only the key's headroom above `[rate_limit] refresh_reserve`;
//! - older, within `max_stale`: refreshed in the foreground, and served (`STALE` with the
//!   reason: `budget`, `rate-limited`, `error`, `timeout`, `breaker`) when that cannot be done;
//! - beyond `max_stale`: gone (every copy, and every L2 key, has an end).
//!
//! Only copies of the current generation are ever served: a write bumps the generation,
//! which makes every older copy unreachable on every replica, stale or not.
//!
//! Concurrent misses for one key are coalesced by a small single-flight table in front of
//! moka (moka's `try_get_with` cannot refresh an entry that is present but expired, which
//! stale serving needs to keep): the first request fetches, the others wait for its answer,
//! errors included, and none of them is forwarded.

use super::entry::Entry;
use super::entry::Snapshot;
use super::flight::Flights;
use super::headers::seconds_value;
use super::headers::Directive;
use super::headers::AGE;
use super::headers::MAX_AGE;
use super::headers::X_CACHE;
use super::metrics::CacheMetrics;
use super::status::Status;
use super::status::CACHE_STATUS;
use super::CacheKey;
use crate::config::CacheSettings;
use crate::exchange::{CacheResult, Reply};
use crate::ingress::route::Group;
use crate::state::SharedStore;
use crate::validate::Purpose;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use moka::notification::RemovalCause;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
/// The cache. Each key's generation lives in the state store (shared by replicas with
/// Redis), so a create accepted anywhere makes every older list unreachable everywhere.
pub struct ListCache {
    pub(super) settings: CacheSettings,
    pub(super) store: moka::future::Cache<CacheKey, Arc<Entry>>,
    pub(super) state: SharedStore,
    /// While the state store is down, local entries are served only this young.
    pub(super) degraded_max_age: Duration,
    /// Per key and group: the last generation the store gave, used (with
    /// `degraded_max_age`) while it cannot be asked.
    pub(super) last_generation: Mutex<HashMap<(Arc<str>, Group), u64>>,
    /// Generations to bump once the store answers again (a write was accepted while it was
    /// down).
    pub(super) pending_bumps: Mutex<HashSet<(Arc<str>, Group)>>,
    /// Per key and group: how many writes this replica has had accepted. A fetch that
    /// started before a write is not stored after it, whatever the store's state: with the
    /// store down the generation cannot move, and this is what tells them apart.
    pub(super) write_epochs: Mutex<HashMap<(Arc<str>, Group), u64>>,
    /// Admin purges of everything: part of every write epoch.
    pub(super) purges: std::sync::atomic::AtomicU64,
    /// Per key: when the next background sweep of older generations may be registered. See
    /// [`SWEEP_INTERVAL`].
    pub(super) next_sweep: Mutex<HashMap<(Arc<str>, Group), Instant>>,
    pub(super) inflight: Arc<Flights>,
    /// Company lookups read for reference checks are kept even with `[cache] enabled =
    /// false` (they would otherwise multiply every create's upstream cost).
    pub(super) keep_lookups: bool,
    pub(super) metrics: Arc<CacheMetrics>,
}

impl ListCache {
    /// A cache for `settings` whose generations live in `state`; `keep_lookups` when reference
    /// checks read the company's lookups through it.
    pub fn new(
        settings: &CacheSettings,
        state: SharedStore,
        degraded_max_age: Duration,
        keep_lookups: bool,
        metrics: Arc<CacheMetrics>,
    ) -> Arc<ListCache> {
        let evictions = metrics.clone();
        let store = moka::future::Cache::builder()
            .max_capacity(settings.capacity)
            .weigher(|k: &CacheKey, v: &Arc<Entry>| {
                u32::try_from(k.weight() + v.snapshot.weight()).unwrap_or(u32::MAX)
            })
            // Entries outlive their freshness by the stale window (`max_stale`), and no longer.
            .time_to_live(settings.ttl.max(settings.lookup_ttl) + settings.max_stale)
            .support_invalidation_closures()
            .eviction_listener(move |_k, _v, cause| {
                if cause == RemovalCause::Size {
                    evictions.cache_eviction();
                }
            })
            .build();
        let cache = Arc::new(ListCache {
            settings: settings.clone(),
            store,
            state,
            degraded_max_age,
            last_generation: Mutex::new(HashMap::new()),
            pending_bumps: Mutex::new(HashSet::new()),
            write_epochs: Mutex::new(HashMap::new()),
            purges: std::sync::atomic::AtomicU64::new(0),
            next_sweep: Mutex::new(HashMap::new()),
            inflight: Arc::default(),
            keep_lookups,
            metrics,
        });
        cache.retry_pending_bumps();
        cache
    }

    /// Whether this cache was built for `settings` and `state` (so a reload keeps it).
    pub fn fits(
        &self,
        settings: &CacheSettings,
        state: &SharedStore,
        degraded: Duration,
        keep_lookups: bool,
    ) -> bool {
        self.settings == *settings
            && Arc::ptr_eq(&self.state, state)
            && self.degraded_max_age == degraded
            && self.keep_lookups == keep_lookups
    }

    /// Updates the entry and byte gauges (moka's counts settle after pending tasks run).
    pub async fn refresh_gauges(&self) {
        self.store.run_pending_tasks().await;
        self.metrics
            .set_cache_size(self.store.entry_count(), self.store.weighted_size());
    }

    /// Bytes currently held, after pending maintenance (for tests and the admin view).
    pub async fn weighted_size(&self) -> u64 {
        self.store.run_pending_tasks().await;
        self.store.weighted_size()
    }

    /// Whether a copy may still be served stale: within its TTL plus `max_stale`.
    pub(super) fn within_max_stale(&self, entry: &Entry, now: Instant) -> bool {
        !self.settings.max_stale.is_zero() && entry.age(now) < entry.ttl + self.settings.max_stale
    }

    /// How far into its stale-while-revalidate window a copy is, 0 to 100 (100 past it).
    pub(super) fn urgency(&self, entry: &Entry, now: Instant) -> u8 {
        let stale = entry.age(now).saturating_sub(entry.ttl);
        let window = self.settings.stale_while_revalidate;
        if window.is_zero() || stale >= window {
            return 100;
        }
        (stale.as_secs_f64() / window.as_secs_f64() * 100.0) as u8
    }

    /// Whether a copy past its freshness is still inside `stale_while_revalidate`.
    pub(super) fn within_revalidate(&self, entry: &Entry, now: Instant) -> bool {
        entry.age(now) < entry.ttl + self.settings.stale_while_revalidate
    }

    /// The answer from a stored copy, with `X-Cache`, `Age` (RFC 9111 §5.1), the freshness
    /// left, and `Cache-Status` (RFC 9211).
    pub(super) fn respond(&self, entry: &Entry, status: Status, now: Instant) -> Reply {
        let age = entry.age(now);
        let result = status.result();
        let mut reply = entry.snapshot.to_reply(5);
        let resp = &mut reply.response;
        // Rounded up, so a response fetched just now says the full TTL.
        let remaining = entry.ttl.saturating_sub(age).as_secs_f64().ceil() as u64;
        let h = resp.headers_mut();
        h.insert(X_CACHE, HeaderValue::from_static(result.as_str()));
        h.insert(
            header::CACHE_CONTROL,
            seconds_value(&MAX_AGE, remaining, "private, max-age="),
        );
        if result != CacheResult::Miss {
            h.insert(header::AGE, seconds_value(&AGE, age.as_secs(), ""));
        }
        let ttl = if remaining > 0 {
            remaining as i64
        } else {
            // Negative: stale by that many seconds, rounded up (RFC 9211 §2.5).
            -(age.saturating_sub(entry.ttl).as_secs_f64().ceil() as i64).max(1)
        };
        h.insert(CACHE_STATUS, status.header(Some(ttl)));
        self.metrics.cache_lookup(result);
        self.metrics.served_age(result, age.as_secs_f64());
        if let Status::Stale(reason) = status {
            self.metrics.stale_served(reason);
        }
        reply.facts.cache = Some(result);
        reply
    }

    /// An answer that was not stored (a failure with no copy to serve, or not storable).
    pub(super) fn passed(&self, snap: &Snapshot, status: Status) -> Reply {
        let mut reply = snap.to_reply(3);
        let result = status.result();
        let h = reply.response.headers_mut();
        h.insert(X_CACHE, HeaderValue::from_static(result.as_str()));
        h.insert(CACHE_STATUS, status.header(None));
        self.metrics.cache_lookup(result);
        reply.facts.cache = Some(result);
        reply
    }

    /// The bodies of fresh, successful cached reads of several whole-path routes (lookups)
    /// on the key `name`, in order, `None` where there is none: what `ListCache::serve`
    /// would answer as a HIT, without building a response, and with every generation read in
    /// one store call. The reference checks read the company's lookups this way; where it
    /// says no, they go through the whole read pipeline (which coalesces, spends budget and
    /// stores).
    pub async fn peek(
        &self,
        name: &Arc<str>,
        specs: &[&'static crate::ingress::route::RouteSpec],
    ) -> Vec<Option<Bytes>> {
        if !(self.settings.enabled || self.keep_lookups) || specs.is_empty() {
            return vec![None; specs.len()];
        }
        let groups: Vec<Group> = specs.iter().map(|s| s.group).collect();
        let (generations, coherent) = self.generations(name, &groups).await;
        let mut out = Vec::with_capacity(specs.len());
        for (spec, generation) in specs.iter().zip(generations) {
            let (_, max_age) = self.max_age(spec, coherent);
            let key = CacheKey {
                upstream_key: name.clone(),
                group: spec.group,
                generation,
                // A lookup takes no query: its path is its whole target.
                target: PathAndQuery::from_static(spec.template),
            };
            let body = self.store.get(&key).await.filter(|entry| {
                entry.age(Instant::now()) < max_age && entry.snapshot.status.is_success()
            });
            out.push(body.map(|entry| {
                self.metrics.cache_lookup(CacheResult::Hit);
                crate::exchange::body_bytes(&entry.snapshot.body)
            }));
        }
        out
    }

    /// Whether a read goes around the cache: the client said `no-store`, or the cache is off
    /// (but for the lookups reference checks read, kept whenever those checks are on).
    pub(super) fn bypassed(&self, directive: Directive, purpose: Purpose) -> bool {
        directive == Directive::Bypass
            || !(self.settings.enabled || (self.keep_lookups && purpose == Purpose::References))
    }
}
