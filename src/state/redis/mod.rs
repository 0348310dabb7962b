//! The Redis-protocol [`Store`](crate::state::Store) (Redis ≥ 6.2, Valkey ≥ 7.2, no modules), shared by every
//! replica that points at the same server and key prefix.
//!
//! - Every decision that must be atomic is one Lua script (sent by `EVALSHA`, reloaded on
//!   `NOSCRIPT` after a server restart) reading the server's own clock (`TIME`), so replicas'
//!   clocks never matter: one round trip per decision.
//! - All of one upstream key's state shares one hash slot (`{prefix:key}`), so a Redis
//!   Cluster works too.
//! - Nothing stored is a secret: upstream keys are referred to by their config name, users
//!   and `Idempotency-Key`s by a SHA-256, and every key carries a TTL.
//! - Nothing waits longer than `command_timeout`. After [`BREAKER_THRESHOLD`] consecutive
//!   transport failures (timeouts, refused or dropped connections) a local breaker answers
//!   [`StoreError::Unavailable`](crate::state::StoreError::Unavailable) at once for [`PROBE_INTERVAL`], then lets one command probe.
//! - An error the server answers for one command (a script's runtime error, a key of another
//!   type) is a bug, not an outage: logged as an error, counted with `kind="script"`, and
//!   [`StoreError::Script`](crate::state::StoreError::Script) for that call only; the breaker and the health never see it.

mod connection;
mod keys;
mod operations;
mod scripts;

pub use connection::{RedisSettings, RedisStore, BREAKER_THRESHOLD, PROBE_INTERVAL};
