//! Resilience building blocks for the upstream path: pure, synchronously testable logic with
//! no HTTP I/O and no tower, so the middleware that wires them stays thin.
//!
//! - [`ratelimit`]: the IETF `RateLimit` headers and `Retry-After` of a throttled answer.
//! - [`backoff`](mod@backoff): exponential backoff with full jitter between retries (the retry
//!   budget that bounds them is tower's `TpsBudget`, in the guard).
//! - [`breaker`]: a circuit breaker that fails fast while upstream is down.
//!
//! The upstream budget itself (JourneyBee's ~100 requests/minute per API key, and each user's
//! fair share) is not here: it is a sliding log of admissions, kept with the idempotency
//! records in the state store ([`crate::state`]), which outlives config generations and
//! replicas, and spent by the guard ([`crate::upstream::guard`]).
//!
//! Time is always passed in as a `now` where behaviour depends on it, so tests are
//! deterministic. The clock is tokio's ([`tokio::time::Instant`]), so a test on a paused clock
//! (`start_paused`, `advance`) drives it without sleeping. A `now` may also be a
//! `std::time::Instant` (converted: the same clock unless a test paused tokio's).

pub mod backoff;
pub mod breaker;
pub mod ratelimit;

pub use backoff::backoff;
pub use breaker::{BreakerState, CircuitBreaker, Open, Permit};
pub use ratelimit::{retry_after_secs, RateLimitHeaders};
