//! The upstream guard, just above the forward: the user's fair share, the circuit breaker,
//! the per-key budget mirroring JourneyBee's limit (a sliding log: never more than the limit
//! in any window), the connection bound, and safe retries.
//!
//! - `budget`: the per-key budget in the state store, split into a shared pool and private
//!   shares per replica, with a reserve kept for the budget classes that need it;
//! - `resilience`: the circuit breaker and the retry budget a reload keeps;
//! - `verdict`: how an exchange went, for the breaker and for retries;
//! - `retry`: which requests are retried, how often and after what backoff (lists only);
//! - `pause`: how long an upstream 429 pauses its key (`Retry-After`);
//! - `connections`: the bound on upstream connections in use, resized in place;
//! - `layer`: the tower layer that runs them for each request.
//!
//! Its waits (a connection slot, a retry's backoff) are computed by [`crate::timeouts`].

mod budget;
mod connections;
mod layer;
mod pause;
mod resilience;
mod retry;
mod verdict;

pub use connections::{ConnectionLimit, Slot};
pub use layer::{Guard, GuardLayer, GuardState};
pub use resilience::Resilience;
