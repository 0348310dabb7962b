//! State that outlives a config generation, a restart and a replica: the per-key upstream
//! budget, idempotency records and list-cache coherence.
//!
//! The layers talk to one trait, [`Store`], and never know which backend answers:
//! - [`memory::MemoryStore`]: in-process, for one replica (the default and the demo). It
//!   outlives config reloads because it is owned by the process, not by a generation.
//! - [`redis::RedisStore`]: every replica that points at the same Redis and key prefix shares
//!   it, so the promises hold across replicas and restarts.
//!
//! The Redis backend can be down. Every method then fails fast with
//! [`StoreError::Unavailable`] (never waits longer than the command timeout, and a local
//! health breaker stops asking a dead server on every request); what each caller does then is
//! decided where the promise lives: the guard falls back to the replica's private budget,
//! a keyed create is refused with 503, a list is served from recent local entries only.

mod answer;
mod budget;
mod idempotency;
mod l2;
pub mod memory;
pub mod metrics;
pub mod redis;
mod store;
pub mod watch;

pub use answer::{StoreError, StoreFuture};
pub use budget::{Admit, BudgetAsk, Ticket};
pub use idempotency::{Claim, Fingerprint, IdemId, Settle, SettleTicket, StoredOutcome};
pub use l2::{L2Copy, L2Lookup};
pub use store::{Health, SharedStore, Store};
