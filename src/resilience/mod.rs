//! Resilience building blocks for the upstream path: pure, synchronously testable logic with
//! no HTTP I/O and no tower, so the middleware that wires them stays thin.
//!
//! - [`bucket`]: token buckets that keep us under JourneyBee's ~100 requests/minute per API
//!   key (and give each user a fair share), plus the IETF `RateLimit` headers.
//! - [`budget`]: a retry budget and jittered backoff, so retries cannot amplify an outage.
//! - [`breaker`]: a circuit breaker that fails fast while upstream is down.
//! - [`idempotency`]: `Idempotency-Key` bookkeeping, because a create sends e-mail invitations
//!   and must never reach upstream twice.
//!
//! Time is always passed in as a `now: Instant` where behaviour depends on it, so tests are
//! deterministic; `*_now` wrappers use [`std::time::Instant::now`].

pub mod breaker;
pub mod bucket;
pub mod budget;
pub mod idempotency;
pub mod window;

pub use breaker::{BreakerState, CircuitBreaker, Open, Permit};
pub use bucket::{KeyedBuckets, RateLimitHeaders, TokenBucket};
pub use budget::{backoff, RetryBudget};
pub use idempotency::{
    valid_key, Begin, Fingerprint, Guard, IdempotencyStore, StoredOutcome, Waiter,
};
pub use window::SlidingWindow;

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning. Every critical section in this module leaves its state
/// consistent before anything that could panic, so a panic elsewhere in the holder's thread
/// must not take rate limiting or the breaker down with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
