//! `[cache]` (the list cache) and `[idempotency]` (remembered create outcomes): the two
//! byte-bounded stores.

use super::raw::{RawCache, RawIdempotency};
use super::Problems;
use std::time::Duration;

/// `[idempotency]`, validated.
#[derive(Debug, Clone)]
pub struct IdempotencySettings {
    /// How long an outcome is remembered.
    pub ttl: Duration,
    /// Bytes the remembered outcomes may hold.
    pub capacity: u64,
    /// How long a repeat waits for the first request still in flight (then 409).
    pub wait: Duration,
}

/// `[cache]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    /// Whether list responses are cached at all.
    pub enabled: bool,
    /// How long an entry is fresh.
    pub ttl: Duration,
    /// Total bytes the cache may hold (keys, headers and bodies).
    pub capacity: u64,
    /// Responses larger than this pass through uncached.
    pub max_entry_size: usize,
    /// How long past its TTL a copy (local or in the shared L2) is kept and may be served
    /// when it cannot be refreshed (budget spent, upstream 429/5xx/timeout, breaker open);
    /// zero disables stale serving. Bounded by `MAX_STALE_LIMIT` (1 day).
    pub max_stale: Duration,
    /// How long past its TTL a copy is answered at once while one background fetch refreshes
    /// it (RFC 5861 `stale-while-revalidate`); at most `max_stale`.
    pub stale_while_revalidate: Duration,
    /// How long a company-wide lookup (tiers, tags, stages, ...) is fresh.
    pub lookup_ttl: Duration,
}

/// The longest `max_stale` accepted: every copy, in memory and in Redis, has an end.
pub const MAX_STALE_LIMIT: Duration = Duration::from_secs(24 * 3600);

pub(super) fn validate_cache(raw: &RawCache, p: &mut Problems) -> CacheSettings {
    let ttl = p.duration("cache.ttl", raw.ttl.as_deref(), Duration::from_secs(30));
    let enabled = raw.enabled.unwrap_or(true);
    if enabled && ttl.is_zero() {
        p.push(
            "cache.ttl",
            "must be greater than zero (set cache.enabled = false to disable)",
        );
    }
    let capacity = p.size("cache.capacity", raw.capacity.as_deref(), 64 << 20);
    let max_entry = p.size(
        "cache.max_entry_size",
        raw.max_entry_size.as_deref(),
        1 << 20,
    );
    if max_entry > capacity {
        p.push("cache.max_entry_size", "must not exceed cache.capacity");
    }
    let max_stale = match (&raw.max_stale, &raw.stale_if_error) {
        (Some(_), Some(_)) => {
            p.push(
                "cache.stale_if_error",
                "is the older name of cache.max_stale: set only max_stale",
            );
            Duration::ZERO
        }
        (None, Some(old)) => p.duration("cache.stale_if_error", Some(old), Duration::ZERO),
        (new, None) => p.duration("cache.max_stale", new.as_deref(), Duration::from_secs(300)),
    };
    if max_stale > MAX_STALE_LIMIT {
        p.push("cache.max_stale", "must be at most 24h");
    }
    let stale_while_revalidate = p.duration(
        "cache.stale_while_revalidate",
        raw.stale_while_revalidate.as_deref(),
        Duration::from_secs(60).min(max_stale),
    );
    if stale_while_revalidate > max_stale {
        p.push(
            "cache.stale_while_revalidate",
            "must not exceed cache.max_stale (a copy is never served older than that)",
        );
    }
    CacheSettings {
        enabled,
        ttl,
        capacity,
        max_entry_size: usize::try_from(max_entry).unwrap_or(usize::MAX),
        max_stale,
        stale_while_revalidate,
        lookup_ttl: p.duration(
            "cache.lookup_ttl",
            raw.lookup_ttl.as_deref(),
            Duration::from_secs(300),
        ),
    }
}

pub(super) fn validate_idempotency(raw: &RawIdempotency, p: &mut Problems) -> IdempotencySettings {
    let idempotency = IdempotencySettings {
        ttl: p.duration(
            "idempotency.ttl",
            raw.ttl.as_deref(),
            Duration::from_secs(86_400),
        ),
        capacity: p.size("idempotency.capacity", raw.capacity.as_deref(), 16 << 20),
        wait: p.duration(
            "idempotency.wait",
            raw.wait.as_deref(),
            Duration::from_secs(10),
        ),
    };
    if idempotency.ttl.is_zero() || idempotency.capacity == 0 {
        p.push("idempotency", "ttl and capacity must be greater than zero");
    }
    idempotency
}
