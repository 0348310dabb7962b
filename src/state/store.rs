//! The [`Store`] trait every backend implements, its [`Health`], and the shared handle
//! ([`SharedStore`]).

use super::answer::StoreFuture;
use super::budget::{Admit, BudgetAsk, Ticket};
use super::idempotency::{Claim, Fingerprint, IdemId, Settle};
use super::l2::L2Lookup;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// Which backend, and whether it is answering (for `/readyz` and the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Answering.
    Up,
    /// Unreachable or failing: the gateway serves in degraded mode.
    Degraded,
}

impl Health {
    /// `up` / `degraded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
        }
    }
}

/// The state every replica shares (or, in memory, every generation of one process).
pub trait Store: Send + Sync + 'static {
    /// `memory` or `redis`.
    fn backend(&self) -> &'static str;

    /// Whether the backend is answering.
    fn health(&self) -> Health;

    /// Whether other processes share this store (then its L2 is worth asking).
    fn is_shared(&self) -> bool;

    /// Counts one admission on the key (and the user's share) if both have room, atomically.
    fn admit<'a>(&'a self, ask: &'a BudgetAsk<'a>) -> StoreFuture<'a, Admit>;

    /// Takes back an admission whose request never reached upstream.
    fn refund<'a>(&'a self, ticket: &'a Ticket) -> StoreFuture<'a, ()>;

    /// Refuses every admission on `key` for `pause` (an upstream 429's `Retry-After`).
    fn pause<'a>(&'a self, key: &'a str, pause: Duration) -> StoreFuture<'a, ()>;

    /// How long `key` stays paused, if this process knows without asking anyone: the memory
    /// store does (it holds every pause this process was told of); a remote store answers
    /// `None`. For keys without a local budget, whose requests never [`admit`](Store::admit).
    fn local_pause(&self, key: &str) -> Option<Duration> {
        let _ = key;
        None
    }

    /// Admissions left on `key` now (for the gauge).
    fn remaining<'a>(&'a self, key: &'a str, limit: u32, window: Duration) -> StoreFuture<'a, u32>;

    /// Claims the record for `id` with the request's fingerprint. A new record is in flight
    /// for its whole `ttl` (an expiry would be a second send) with a `lease`: an in-flight
    /// record whose lease ran out belongs to a sender that died, and reads as unknown.
    fn claim<'a>(
        &'a self,
        id: &'a IdemId,
        fingerprint: &'a Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> StoreFuture<'a, Claim>;

    /// Ends a record this replica claimed.
    fn settle<'a>(&'a self, id: &'a IdemId, how: Settle, ttl: Duration) -> StoreFuture<'a, ()>;

    /// The key's generation of one family of data (`scope`: partnerships, tags, ...):
    /// bumped by every accepted write to it, so a read cached under an older one is never
    /// served.
    fn generation<'a>(&'a self, key: &'a str, scope: &'a str) -> StoreFuture<'a, u64>;

    /// The key's generation of `scope` if this process knows it is current without asking
    /// (a remote store's change notifications; see [`watch`](super::watch)); `None`: ask
    /// [`Store::generation`].
    fn known_generation(&self, key: &str, scope: &str) -> Option<u64> {
        let _ = (key, scope);
        None
    }

    /// The key's generations of `scopes`, in order, in one step (one round trip: a create's
    /// reference checks read four lookups' at once).
    fn generations<'a>(&'a self, key: &'a str, scopes: &'a [&'a str]) -> StoreFuture<'a, Vec<u64>>;

    /// Bumps the key's generations of `scopes` in one step (after an accepted write, before
    /// its answer is returned), returning the new values in order.
    fn bump<'a>(&'a self, key: &'a str, scopes: &'a [&'a str]) -> StoreFuture<'a, Vec<u64>>;

    /// [`Store::settle`] and [`Store::bump`] in one step: an accepted keyed write's record
    /// is settled in the same call that bumps its generations (one round trip instead of
    /// two), and the bump keeps every promise of [`Store::bump`] (done, and on a shared store
    /// seen by every replica, before this returns). On an error the caller cannot tell
    /// whether either happened, and falls back as if neither had: the bump is retried as a
    /// pending one and the record settled on its own, both harmless if already done.
    fn settle_and_bump<'a>(
        &'a self,
        id: &'a IdemId,
        how: Settle,
        ttl: Duration,
        key: &'a str,
        scopes: &'a [&'a str],
    ) -> StoreFuture<'a, Vec<u64>>;

    /// Looks a list up in the shared L2: a copy younger than `fresh_for` is fresh; otherwise
    /// the fetch lock is taken (for `lock`) if free, and any older copy still kept comes along.
    fn l2_lookup<'a>(
        &'a self,
        key: &'a str,
        entry: &'a str,
        fresh_for: Duration,
        lock: Duration,
    ) -> StoreFuture<'a, L2Lookup>;

    /// Stores a fetched list in the L2, kept for `keep` (its freshness plus the stale window:
    /// every L2 key has a TTL), and releases the fetch lock if this replica still holds it.
    /// `None` stores nothing and only releases the lock.
    fn l2_put<'a>(
        &'a self,
        key: &'a str,
        entry: &'a str,
        value: Option<Bytes>,
        keep: Duration,
    ) -> StoreFuture<'a, ()>;
}

/// A shared handle on the process's store.
pub type SharedStore = Arc<dyn Store>;
