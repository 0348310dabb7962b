//! Resilience building blocks for the upstream path: pure, synchronously testable logic with
//! no HTTP I/O and no tower, so the middleware that wires them stays thin.
//!
//! - [`bucket`]: token buckets that keep us under JourneyBee's ~100 requests/minute per API
//!   key (and give each user a fair share), plus the IETF `RateLimit` headers.
//! - [`budget`]: a retry budget and jittered backoff, so retries cannot amplify an outage.
//! - [`breaker`]: a circuit breaker that fails fast while upstream is down.
//!
//! The budget windows and idempotency records themselves are history, not logic: they live in
//! the state store ([`crate::state`]), which outlives config generations and replicas.
//!
//! Time is always passed in as a `now` where behaviour depends on it, so tests are
//! deterministic. The clock is tokio's ([`tokio::time::Instant`]): the `*_now` wrappers read
//! it, so a test on a paused clock (`start_paused`, `advance`) drives them without sleeping.
//! A `now` may also be a `std::time::Instant` (converted: the same clock unless a test paused
//! tokio's).

pub mod breaker;
pub mod bucket;
pub mod budget;

pub use breaker::{BreakerState, CircuitBreaker, Open, Permit};
pub use bucket::{KeyedBuckets, RateLimitHeaders, TokenBucket};
pub use budget::{backoff, RetryBudget};

/// Whether `key` is an acceptable `Idempotency-Key`: 1 to 255 visible ASCII characters
/// (`!` through `~`; no spaces or control characters), so keys are safe to log and compare.
pub fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}
