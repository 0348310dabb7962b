//! The cache's metrics: lookups by result, size, evictions, invalidations by cause, stale
//! copies served by reason, and the age of every cached answer.

use crate::exchange::CacheResult;
use crate::observe::registry::Registry;
use prometheus::{Histogram, IntCounter, IntGauge};
use std::sync::Arc;

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

/// Why a stale copy was served instead of a fresh answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// Past its freshness but inside `stale_while_revalidate`: answered at once while a
    /// background fetch refreshes it (or tries to, within budget).
    Revalidating,
    /// The key's budget (above the reserve, for a refresh) or the user's share is spent, or
    /// the key is paused after an upstream 429.
    Budget,
    /// JourneyBee answered 429.
    RateLimited,
    /// JourneyBee answered 5xx, or could not be reached.
    Error,
    /// JourneyBee did not answer in time.
    Timeout,
    /// The circuit breaker is open.
    Breaker,
}

impl StaleReason {
    /// Every reason, for pre-resolving label sets.
    pub const ALL: [StaleReason; 6] = [
        StaleReason::Revalidating,
        StaleReason::Budget,
        StaleReason::RateLimited,
        StaleReason::Error,
        StaleReason::Timeout,
        StaleReason::Breaker,
    ];

    /// The metric label and the `Cache-Status` `detail` token.
    pub fn as_str(self) -> &'static str {
        match self {
            StaleReason::Revalidating => "revalidating",
            StaleReason::Budget => "budget",
            StaleReason::RateLimited => "rate-limited",
            StaleReason::Error => "error",
            StaleReason::Timeout => "timeout",
            StaleReason::Breaker => "breaker",
        }
    }
}

/// Buckets for the age of a served copy (seconds): fresh copies live under the TTL (30 s by
/// default), stale ones up to `max_stale` (5 min by default).
const AGE_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
];

/// The cache's handles.
pub struct CacheMetrics {
    lookups: [IntCounter; 4],
    entries: IntGauge,
    bytes: IntGauge,
    evictions: IntCounter,
    invalidations: [IntCounter; 3],
    stale_served: [IntCounter; StaleReason::ALL.len()],
    /// [hit, miss, stale]
    served_age: [Histogram; 3],
}

impl CacheMetrics {
    /// Registers the cache's metrics.
    pub fn new(registry: &Registry) -> Arc<CacheMetrics> {
        let lookup_vec = registry.counter_vec(
            "cache_lookups_total",
            "List-cache lookups, by result (hit, miss, stale, bypass).",
            &["result"],
        );
        let inval_vec = registry.counter_vec(
            "cache_invalidations_total",
            "List-cache invalidations, by cause (create, admin).",
            &["cause"],
        );
        let stale_vec = registry.counter_vec(
            "cache_stale_served_total",
            "Lists answered from a copy past its freshness, by reason (revalidating, budget, rate-limited, error, timeout, breaker).",
            &["reason"],
        );
        let age_vec = registry.histogram_vec(
            "cache_served_age_seconds",
            "Age of cached lists as served (the Age header), by result (hit, miss, stale).",
            &["result"],
            AGE_BUCKETS,
        );
        Arc::new(CacheMetrics {
            lookups: ["hit", "miss", "stale", "bypass"].map(|r| lookup_vec.with_label_values(&[r])),
            entries: registry.gauge("cache_entries", "Entries in the list cache."),
            bytes: registry.gauge(
                "cache_bytes",
                "Bytes held by the list cache (keys, headers, bodies).",
            ),
            evictions: registry.counter(
                "cache_evictions_total",
                "List-cache entries evicted to stay within capacity.",
            ),
            invalidations: ["create", "admin", "write"].map(|c| inval_vec.with_label_values(&[c])),
            stale_served: StaleReason::ALL.map(|r| stale_vec.with_label_values(&[r.as_str()])),
            served_age: ["hit", "miss", "stale"].map(|r| age_vec.with_label_values(&[r])),
        })
    }

    /// Records a cache lookup.
    pub fn cache_lookup(&self, result: CacheResult) {
        let i = match result {
            CacheResult::Hit => 0,
            CacheResult::Miss => 1,
            CacheResult::Stale => 2,
            CacheResult::Bypass => 3,
        };
        self.lookups[i].inc();
    }

    /// Records an invalidation.
    pub fn cache_invalidation(&self, cause: InvalidationCause) {
        self.invalidations[cause as usize].inc();
    }

    /// Records an eviction for capacity.
    pub fn cache_eviction(&self) {
        self.evictions.inc();
    }

    /// Sets the cache size gauges (called before each scrape).
    pub fn set_cache_size(&self, entries: u64, bytes: u64) {
        self.entries.set(entries as i64);
        self.bytes.set(bytes as i64);
    }

    /// Counts a stale copy served.
    pub fn stale_served(&self, reason: StaleReason) {
        self.stale_served[reason as usize].inc();
    }

    /// Records the age of a cached answer.
    pub fn served_age(&self, result: CacheResult, age_secs: f64) {
        let i = match result {
            CacheResult::Hit => 0,
            CacheResult::Miss => 1,
            CacheResult::Stale => 2,
            CacheResult::Bypass => return,
        };
        self.served_age[i].observe(age_secs);
    }
}
