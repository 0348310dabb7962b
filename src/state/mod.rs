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

pub mod memory;
pub mod redis;
pub mod watch;

use bytes::Bytes;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The future every store method returns.
pub struct StoreFuture<'a, T>(Answer<'a, T>);

enum Answer<'a, T> {
    /// Known at once (the memory store): no allocation.
    Ready(Option<Result<T, StoreError>>),
    /// A round trip (Redis).
    Pending(Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>),
}

impl<'a, T> StoreFuture<'a, T> {
    /// An answer known now.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        StoreFuture(Answer::Ready(Some(result)))
    }

    /// An answer that takes a round trip.
    pub fn pending(fut: impl Future<Output = Result<T, StoreError>> + Send + 'a) -> Self {
        StoreFuture(Answer::Pending(Box::pin(fut)))
    }
}

impl<T: Unpin> Future for StoreFuture<'_, T> {
    type Output = Result<T, StoreError>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut self.0 {
            Answer::Ready(r) => std::task::Poll::Ready(r.take().expect("polled after completion")),
            Answer::Pending(f) => f.as_mut().poll(cx),
        }
    }
}

/// Why a store could not answer.
///
/// Callers treat both alike for their request (the guard falls back to the private share, a
/// keyed create is refused with 503, a list is served from recent local entries only): either
/// way the shared state could not be read or written for it. They differ in what they say
/// about the backend, which the store itself accounts for: only `Unavailable` counts towards
/// its breaker and its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The backend is down, slow or not yet connected: the caller degrades.
    Unavailable,
    /// The backend answered this command with an error (a script's runtime error, a key of
    /// another type): a bug, logged and counted, that fails only this call. The backend is
    /// up, and stays so for every other call.
    Script,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreError::Unavailable => "state backend unavailable",
            StoreError::Script => "state backend refused the command (a bug)",
        })
    }
}

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

/// One budget question: may one more request go upstream on `key`?
#[derive(Debug, Clone)]
pub struct BudgetAsk<'a> {
    /// The upstream key's name (all replicas name a key alike; never the secret).
    pub key: &'a str,
    /// Admissions allowed in any `window`.
    pub limit: u32,
    /// The window, including the margin against the upstream's own count.
    pub window: Duration,
    /// The user's fair share, checked in the same atomic step: (user name, limit per window).
    pub user: Option<(&'a str, u32)>,
}

/// What a budget question got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Counted; refund the ticket if the request never reaches upstream.
    Admitted(Ticket),
    /// The key's window is full: a slot frees after `wait`.
    KeyFull {
        /// Until the oldest admission leaves the window.
        wait: Duration,
    },
    /// The user's share is used up.
    UserFull {
        /// Until the user's oldest admission leaves the window.
        wait: Duration,
    },
    /// An upstream 429 paused the key.
    Paused {
        /// Until the pause ends.
        wait: Duration,
    },
}

/// An admission, so it can be refunded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The key it was counted on.
    pub key: Arc<str>,
    /// The user it was counted on, if a share applied.
    pub user: Option<Arc<str>>,
    /// Unique among the key's admissions; never 0 (see [`Ticket::uncounted`]).
    pub id: u64,
}

impl Ticket {
    /// A request let through on a key without a local budget: nothing was counted, so
    /// refunding it takes nothing back (no store issues id 0).
    pub fn uncounted(key: Arc<str>) -> Ticket {
        Ticket {
            key,
            user: None,
            id: 0,
        }
    }
}

/// The identity of an idempotency record: (upstream key, user, `Idempotency-Key`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdemId {
    /// The upstream key's name.
    pub key: Arc<str>,
    /// The mapped user's name.
    pub user: Arc<str>,
    /// The client's `Idempotency-Key`.
    pub idem: String,
}

/// SHA-256 of what a create asked for (path and body): comparable across replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `material`.
    pub fn of(material: &[u8]) -> Fingerprint {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, material);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Fingerprint(out)
    }

    /// Lower-case hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// A definitive upstream answer, as stored and replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOutcome {
    /// The HTTP status.
    pub status: u16,
    /// The content type, if any (the only header a replay needs).
    pub content_type: Option<String>,
    /// The response body.
    pub body: Bytes,
}

/// What claiming an idempotency record found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First use: the record is now in flight and ours; send, then settle it.
    Proceed,
    /// Completed with the same request: replay this.
    Replay(StoredOutcome),
    /// The key was used with another request (422).
    Mismatch,
    /// The same request is upstream right now (wait, then 409).
    InFlight,
    /// The request was sent but its outcome is unknown (the sender died or timed out):
    /// never sent again.
    Unknown,
}

/// How a claimed record ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Upstream gave a definitive answer: replay it for the record's TTL.
    Completed(StoredOutcome),
    /// Sent, but no definitive answer: repeats get the "may have been created" error.
    Unknown,
    /// Never sent (refused locally before leaving): the key is free again.
    Release,
}

/// A copy of a cached list kept in the shared L2, and how old it is by the server's clock
/// (RFC 9111 §5.1: a copy read from the L2 carries the age it has there, not zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Copy {
    /// The stored list.
    pub value: Bytes,
    /// Time since it was stored.
    pub age: Duration,
}

/// A cached list as shared between replicas (the L2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L2Lookup {
    /// Another replica fetched it under the current generation, and it is still fresh.
    Fresh(L2Copy),
    /// No fresh copy, and this replica now holds the fetch lock: fetch, then
    /// [`Store::l2_put`]. `stale`: the copy past its freshness, if one is kept.
    Lead {
        /// The copy past its freshness, still within the stale window.
        stale: Option<L2Copy>,
    },
    /// No fresh copy, and another replica is fetching it: serve `stale` or poll again shortly.
    Busy {
        /// The copy past its freshness, still within the stale window.
        stale: Option<L2Copy>,
    },
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
    /// (a remote store's change notifications; see [`watch`]); `None`: ask
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
