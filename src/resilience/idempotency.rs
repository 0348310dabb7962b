//! `Idempotency-Key` bookkeeping for creates, which send e-mail invitations and so must never
//! reach upstream twice.
//!
//! An entry is keyed by (user name, idempotency key) so keys are private to each user. While
//! the first request is upstream its entry is *in flight* and lives in a small map outside
//! the cache: the in-flight set is bounded by concurrency, and an in-flight entry must never
//! be evicted, or a concurrent duplicate would be let through. Once the outcome is known it
//! moves to a moka cache bounded in bytes (LRU, so the newest outcomes, which are the ones
//! retried, survive pressure) with a time-to-live counted from completion.
//!
//! Limits: an outcome larger than the whole cache is not retained, and under memory pressure
//! the least recently used outcomes are forgotten before their TTL; a retry of a forgotten key
//! is sent again. Size the cache so that this only happens under abuse.

use super::lock;
use bytes::Bytes;
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a completed outcome is replayed: 24 hours, the usual client retry horizon.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Fixed per-entry overhead added to the weight (map nodes, `Arc`s, the small structs), so
/// many tiny entries cannot exceed the byte budget by much.
const ENTRY_OVERHEAD: usize = 128;

/// Whether `key` is an acceptable `Idempotency-Key`: 1 to 255 visible ASCII characters
/// (`!` through `~`; no spaces or control characters), so keys are safe to log and compare.
pub fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// A 128-bit fingerprint of a request body, compared to detect a key reused with a
/// different body.
///
/// It is built from two independently, randomly keyed std hashers (currently SipHash-1-3)
/// held by the store: keyed with per-process secrets, so a client cannot construct two bodies
/// that collide, and 128 bits make accidental collisions negligible. Fingerprints are only
/// comparable within one [`IdempotencyStore`] (and process), which is all the store needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(u128);

impl Fingerprint {
    /// A fingerprint from a raw value, e.g. computed by the caller with another hash.
    pub const fn from_u128(raw: u128) -> Self {
        Self(raw)
    }
}

/// A finished upstream answer as stored and replayed: only what a replay needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOutcome {
    /// The HTTP status.
    pub status: u16,
    /// A minimal set of headers to replay (typically just `content-type`).
    pub headers: Vec<(String, String)>,
    /// The response body.
    pub body: Bytes,
}

impl StoredOutcome {
    fn weight(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len() + 16)
                .sum::<usize>()
    }
}

/// What [`IdempotencyStore::begin`] decided.
#[derive(Debug)]
pub enum Begin {
    /// First use of the key: send upstream, then [`Guard::complete`] or [`Guard::abandon`].
    Proceed(Guard),
    /// Already done with the same body: answer with this, do not send.
    Replay(StoredOutcome),
    /// The key was used with a different body (answer 422).
    Mismatch,
    /// The same request is upstream right now: [`Waiter::wait`] for its outcome.
    InFlight(Waiter),
}

type Key = (Arc<str>, String);

#[derive(Debug)]
struct Done {
    fingerprint: Fingerprint,
    outcome: StoredOutcome,
}

#[derive(Debug)]
struct Flight {
    id: u64,
    fingerprint: Fingerprint,
    state: FlightState,
}

#[derive(Debug)]
enum FlightState {
    /// Upstream has not answered; waiters subscribe here.
    Pending(watch::Receiver<Option<StoredOutcome>>),
    /// Answered, but not yet (or, after a cancelled `complete`, not yet known to be) in the
    /// cache: replays are served from here meanwhile.
    Done(Arc<Done>),
}

/// Remembers create outcomes per (user, idempotency key). Clones share one store.
#[derive(Clone)]
pub struct IdempotencyStore {
    inner: Arc<Inner>,
}

struct Inner {
    done: Cache<Key, Arc<Done>>,
    in_flight: Mutex<HashMap<Key, Flight>>,
    hashers: [RandomState; 2],
    next_id: AtomicU64,
}

impl fmt::Debug for IdempotencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyStore")
            .field("stored", &self.inner.done.entry_count())
            .field("in_flight", &self.in_flight_len())
            .finish()
    }
}

impl IdempotencyStore {
    /// A store holding at most about `max_bytes` of outcomes (keys, headers, bodies and a
    /// fixed overhead per entry), each replayable for `ttl` after completion.
    pub fn new(max_bytes: u64, ttl: Duration) -> Self {
        let done = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &Key, done: &Arc<Done>| {
                let weight = key.0.len() + key.1.len() + done.outcome.weight() + ENTRY_OVERHEAD;
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl)
            // Plain LRU: TinyLFU's admission filter could refuse a brand-new outcome in
            // favour of older ones, and the newest outcomes are the ones clients retry.
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Self {
            inner: Arc::new(Inner {
                done,
                in_flight: Mutex::new(HashMap::new()),
                hashers: [RandomState::new(), RandomState::new()],
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// A store of `max_bytes` with the [`DEFAULT_TTL`] of 24 hours.
    pub fn with_capacity(max_bytes: u64) -> Self {
        Self::new(max_bytes, DEFAULT_TTL)
    }

    /// The fingerprint of a request body under this store's keys.
    pub fn fingerprint(&self, body: &[u8]) -> Fingerprint {
        let [a, b] = &self.inner.hashers;
        Fingerprint((u128::from(a.hash_one(body)) << 64) | u128::from(b.hash_one(body)))
    }

    /// Starts (or recognises) the request `key` of `user` with the given body fingerprint.
    pub async fn begin(&self, user: Arc<str>, key: String, fingerprint: Fingerprint) -> Begin {
        let key: Key = (user, key);
        // Fast path for replays, without touching the in-flight map.
        if let Some(done) = self.inner.done.get(&key).await {
            return classify(&done, fingerprint);
        }
        let (tx, rx) = watch::channel(None);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut in_flight = lock(&self.inner.in_flight);
            if let Some(flight) = in_flight.get(&key) {
                return match &flight.state {
                    FlightState::Done(done) => classify(done, fingerprint),
                    FlightState::Pending(_) if flight.fingerprint != fingerprint => Begin::Mismatch,
                    FlightState::Pending(rx) => Begin::InFlight(Waiter { rx: rx.clone() }),
                };
            }
            in_flight.insert(
                key.clone(),
                Flight {
                    id,
                    fingerprint,
                    state: FlightState::Pending(rx),
                },
            );
        }
        let guard = Guard {
            store: self.clone(),
            key,
            id,
            tx,
            state: GuardState::Pending,
        };
        // A request with this key may have completed between the cache lookup above and the
        // insertion (it stores its outcome before leaving the in-flight map), so look again
        // now that we hold the key.
        if let Some(done) = self.inner.done.get(&guard.key).await {
            // Waiters that joined us meanwhile share our fingerprint; give them the answer
            // when it is theirs too. Dropping the guard then leaves the in-flight map.
            if done.fingerprint == fingerprint {
                guard.tx.send_replace(Some(done.outcome.clone()));
            }
            return classify(&done, fingerprint);
        }
        Begin::Proceed(guard)
    }

    /// The number of requests currently in flight (for a gauge).
    pub fn in_flight_len(&self) -> usize {
        lock(&self.inner.in_flight).len()
    }

    /// The approximate number of stored outcomes (for a gauge; moka counts lazily).
    pub fn stored_len(&self) -> u64 {
        self.inner.done.entry_count()
    }

    /// The approximate number of bytes stored (for a gauge; moka counts lazily).
    pub fn stored_bytes(&self) -> u64 {
        self.inner.done.weighted_size()
    }

    fn remove_flight(&self, key: &Key, id: u64) {
        let mut in_flight = lock(&self.inner.in_flight);
        // Only remove our own entry; ids are unique, so a later holder of the key is safe.
        if in_flight.get(key).is_some_and(|flight| flight.id == id) {
            in_flight.remove(key);
        }
    }
}

fn classify(done: &Done, fingerprint: Fingerprint) -> Begin {
    if done.fingerprint == fingerprint {
        Begin::Replay(done.outcome.clone())
    } else {
        Begin::Mismatch
    }
}

#[derive(Debug)]
enum GuardState {
    /// Upstream has not answered.
    Pending,
    /// Answered and published in the in-flight map, not yet confirmed in the cache.
    Completed(Arc<Done>),
    /// Nothing left to do.
    Finished,
}

/// Ownership of an idempotency key while its request is upstream.
///
/// Dropping the guard without [`complete`](Self::complete) is [`abandon`](Self::abandon). Run
/// the upstream call and `complete` in a task the client cannot cancel (e.g. `tokio::spawn`):
/// if a client disconnect dropped the guard after upstream had already acted, the outcome
/// would be unknown and a retry would be sent again.
#[must_use = "dropping the guard abandons the key; call complete() with the outcome"]
#[derive(Debug)]
pub struct Guard {
    store: IdempotencyStore,
    key: Key,
    id: u64,
    tx: watch::Sender<Option<StoredOutcome>>,
    state: GuardState,
}

impl Guard {
    /// Records the definitive outcome: it is handed to waiting duplicates and replayed to
    /// retries for the store's TTL. Only call this when upstream's answer is known (including
    /// definitive errors such as a 4xx); when it is not (timeout, connection reset, 5xx),
    /// [`abandon`](Self::abandon) instead.
    pub async fn complete(mut self, outcome: StoredOutcome) {
        let fingerprint = match lock(&self.store.inner.in_flight).get(&self.key) {
            Some(flight) if flight.id == self.id => flight.fingerprint,
            // Unreachable: nothing else removes our entry while we hold the guard.
            _ => return,
        };
        let done = Arc::new(Done {
            fingerprint,
            outcome,
        });
        self.publish(Arc::clone(&done));
        self.store
            .inner
            .done
            .insert(self.key.clone(), Arc::clone(&done))
            .await;
        self.store.remove_flight(&self.key, self.id);
        self.state = GuardState::Finished;
    }

    /// Publishes the outcome synchronously, so that from here on a cancelled `complete` can
    /// no longer lose it: the in-flight entry serves replays until the cache has it.
    fn publish(&mut self, done: Arc<Done>) {
        if let Some(flight) = lock(&self.store.inner.in_flight).get_mut(&self.key) {
            if flight.id == self.id {
                flight.state = FlightState::Done(Arc::clone(&done));
            }
        }
        self.tx.send_replace(Some(done.outcome.clone()));
        self.state = GuardState::Completed(done);
    }

    /// Gives the key up because the outcome is unknown: waiters get `None`, and the next
    /// request with the key is sent upstream.
    pub fn abandon(self) {}
}

impl Drop for Guard {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.state, GuardState::Finished) {
            GuardState::Finished => {}
            // The sender is dropped with the guard, which wakes waiters with `None`.
            GuardState::Pending => self.store.remove_flight(&self.key, self.id),
            // `complete` was cancelled while storing: finish in the background. The in-flight
            // entry keeps answering with the outcome until then (and indefinitely, should
            // there be no runtime, which only a misuse outside tokio could cause).
            GuardState::Completed(done) => {
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    let store = self.store.clone();
                    let key = self.key.clone();
                    let id = self.id;
                    handle.spawn(async move {
                        store.inner.done.insert(key.clone(), done).await;
                        store.remove_flight(&key, id);
                    });
                }
            }
        }
    }
}

/// A handle on a duplicate's in-flight original.
#[derive(Debug)]
pub struct Waiter {
    rx: watch::Receiver<Option<StoredOutcome>>,
}

impl Waiter {
    /// Waits up to `timeout` for the original to finish. `None` if it was abandoned or is still
    /// running (answer 409 with a `Retry-After` so the client retries later).
    pub async fn wait(mut self, timeout: Duration) -> Option<StoredOutcome> {
        match tokio::time::timeout(timeout, self.rx.wait_for(Option::is_some)).await {
            Ok(Ok(outcome)) => outcome.clone(),
            // Abandoned (the sender was dropped) or still running at the deadline.
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(5);

    fn outcome(body: &'static str) -> StoredOutcome {
        StoredOutcome {
            status: 201,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    fn user(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    async fn proceed(store: &IdempotencyStore, key: &str, body: &[u8]) -> Guard {
        match store
            .begin(user("ann"), key.into(), store.fingerprint(body))
            .await
        {
            Begin::Proceed(guard) => guard,
            other => panic!("expected Proceed, got {other:?}"),
        }
    }

    #[test]
    fn key_validation_boundaries() {
        assert!(!valid_key(""));
        assert!(valid_key("a"));
        assert!(valid_key(&"a".repeat(255)));
        assert!(!valid_key(&"a".repeat(256)));
        assert!(valid_key("!~0aZ-_.:{}\"\\"));
        assert!(valid_key("9f1c2e4a-8b7d-4c3e-a1f0-123456789abc"));
        assert!(!valid_key("has space"));
        assert!(!valid_key("tab\t"));
        assert!(!valid_key("del\x7f"));
        assert!(!valid_key("nul\0"));
        assert!(!valid_key("caf\u{e9}"));
    }

    #[test]
    fn fingerprints_distinguish_bodies() {
        let store = IdempotencyStore::with_capacity(1 << 20);
        assert_eq!(
            store.fingerprint(b"{\"a\":1}"),
            store.fingerprint(b"{\"a\":1}")
        );
        assert_ne!(
            store.fingerprint(b"{\"a\":1}"),
            store.fingerprint(b"{\"a\":2}")
        );
        assert_ne!(store.fingerprint(b""), store.fingerprint(b"\0"));
        assert_eq!(store.clone().fingerprint(b"x"), store.fingerprint(b"x"));
    }

    #[tokio::test]
    async fn completed_outcome_is_replayed_for_the_same_body() {
        let store = IdempotencyStore::with_capacity(1 << 20);
        let guard = proceed(&store, "k1", b"body").await;
        guard.complete(outcome("created")).await;
        assert_eq!(store.in_flight_len(), 0);
        match store
            .begin(user("ann"), "k1".into(), store.fingerprint(b"body"))
            .await
        {
            Begin::Replay(o) => assert_eq!(o, outcome("created")),
            other => panic!("expected Replay, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn different_body_is_a_mismatch() {
        let store = IdempotencyStore::with_capacity(1 << 20);
        proceed(&store, "k1", b"body")
            .await
            .complete(outcome("created"))
            .await;
        let begin = store
            .begin(user("ann"), "k1".into(), store.fingerprint(b"other"))
            .await;
        assert!(matches!(begin, Begin::Mismatch));
    }

    #[tokio::test]
    async fn keys_are_private_to_each_user() {
        let store = IdempotencyStore::with_capacity(1 << 20);
        proceed(&store, "k1", b"body")
            .await
            .complete(outcome("created"))
            .await;
        let begin = store
            .begin(user("bob"), "k1".into(), store.fingerprint(b"body"))
            .await;
        assert!(matches!(begin, Begin::Proceed(_)));
    }

    #[tokio::test]
    async fn duplicate_waits_for_the_original() {
        let store = IdempotencyStore::with_capacity(1 << 20);
        let guard = proceed(&store, "k1", b"body").await;
        let waiter = match store
            .begin(user("ann"), "k1".into(), store.fingerprint(b"body"))
            .await
        {
            Begin::InFlight(w) => w,
            other => panic!("expected InFlight, got {other:?}"),
        };
        let waiting = tokio::spawn(waiter.wait(LONG));
        tokio::task::yield_now().await;
        guard.complete(outcome("created")).await;
        assert_eq!(waiting.await.unwrap(), Some(outcome("created")));
    }

    #[tokio::test]
    async fn waiter_after_completion_gets_the_outcome_immediately() {
        let store = IdempotencyStore::with_capacity(1 << 20);
        let guard = proceed(&store, "k1", b"body").await;
        let Begin::InFlight(waiter) = store
            .begin(user("ann"), "k1".into(), store.fingerprint(b"body"))
            .await
        else {
            panic!("expected InFlight");
        };
        guard.complete(outcome("created")).await;
        assert_eq!(waiter.wait(Duration::ZERO).await, Some(outcome("created")));
    }

    #[tokio::test]
    async fn in_flight_with_a_different_body_is_a_mismatch() {
        let store = IdempotencyStore::with_capacity(1 << 20);
        let _guard = proceed(&store, "k1", b"body").await;
        let begin = store
            .begin(user("ann"), "k1".into(), store.fingerprint(b"other"))
            .await;
        assert!(matches!(begin, Begin::Mismatch));
    }

    #[tokio::test]
    async fn wait_times_out_while_the_original_runs() {
        let store = IdempotencyStore::with_capacity(1 << 20);
        let _guard = proceed(&store, "k1", b"body").await;
        let Begin::InFlight(waiter) = store
            .begin(user("ann"), "k1".into(), store.fingerprint(b"body"))
            .await
        else {
            panic!("expected InFlight");
        };
        assert_eq!(waiter.wait(Duration::from_millis(100)).await, None);
        assert_eq!(store.in_flight_len(), 1);
    }

    #[tokio::test]
    async fn abandon_wakes_waiters_with_none_and_frees_the_key() {
        let store = IdempotencyStore::with_capacity(1 << 20);
        let guard = proceed(&store, "k1", b"body").await;
        let Begin::InFlight(waiter) = store
            .begin(user("ann"), "k1".into(), store.fingerprint(b"body"))
            .await
        else {
            panic!("expected InFlight");
        };
        let waiting = tokio::spawn(waiter.wait(LONG));
        tokio::task::yield_now().await;
        guard.abandon();
        assert_eq!(waiting.await.unwrap(), None);
        assert_eq!(store.in_flight_len(), 0);
        // Nothing was stored: the next attempt is sent, even with another body.
        let _again = proceed(&store, "k1", b"other").await;
    }

    #[tokio::test]
    async fn dropping_the_guard_abandons() {
        let store = IdempotencyStore::with_capacity(1 << 20);
        drop(proceed(&store, "k1", b"body").await);
        assert_eq!(store.in_flight_len(), 0);
        let _again = proceed(&store, "k1", b"body").await;
    }

    #[tokio::test]
    async fn cancelled_complete_still_keeps_the_outcome() {
        let store = IdempotencyStore::with_capacity(1 << 20);
        let mut guard = proceed(&store, "k1", b"body").await;
        // What `complete` does before its only await point, then a cancellation.
        let done = Arc::new(Done {
            fingerprint: store.fingerprint(b"body"),
            outcome: outcome("created"),
        });
        guard.publish(done);
        drop(guard);
        // Served from the in-flight entry or, once the background insert ran, the cache.
        for _ in 0..2 {
            let begin = store
                .begin(user("ann"), "k1".into(), store.fingerprint(b"body"))
                .await;
            assert!(matches!(begin, Begin::Replay(o) if o == outcome("created")));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(store.in_flight_len(), 0);
        assert!(store
            .inner
            .done
            .get(&(user("ann"), "k1".into()))
            .await
            .is_some());
    }

    #[tokio::test]
    async fn outcomes_expire_after_the_ttl() {
        let store = IdempotencyStore::new(1 << 20, Duration::from_millis(100));
        proceed(&store, "k1", b"body")
            .await
            .complete(outcome("created"))
            .await;
        assert!(matches!(
            store
                .begin(user("ann"), "k1".into(), store.fingerprint(b"body"))
                .await,
            Begin::Replay(_)
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
        let _again = proceed(&store, "k1", b"body").await;
    }

    #[tokio::test]
    async fn memory_is_bounded_by_the_weigher() {
        let max = 10_000;
        let store = IdempotencyStore::new(max, DEFAULT_TTL);
        let body = Bytes::from(vec![b'x'; 1_000]);
        for i in 0..50 {
            let guard = proceed(&store, &format!("k{i}"), b"body").await;
            guard
                .complete(StoredOutcome {
                    status: 201,
                    headers: Vec::new(),
                    body: body.clone(),
                })
                .await;
        }
        store.inner.done.run_pending_tasks().await;
        assert!(
            store.stored_bytes() <= max,
            "{} bytes",
            store.stored_bytes()
        );
        assert!(store.stored_len() < 50);
        // LRU keeps the newest outcome.
        assert!(matches!(
            store
                .begin(user("ann"), "k49".into(), store.fingerprint(b"body"))
                .await,
            Begin::Replay(_)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_duplicates_send_exactly_once() {
        let store = IdempotencyStore::with_capacity(1 << 20);
        let fp = store.fingerprint(b"body");
        let barrier = Arc::new(tokio::sync::Barrier::new(32));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let store = store.clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    match store.begin(user("ann"), "k1".into(), fp).await {
                        Begin::Proceed(guard) => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            guard.complete(outcome("created")).await;
                            1
                        }
                        Begin::InFlight(waiter) => {
                            assert_eq!(waiter.wait(LONG).await, Some(outcome("created")));
                            0
                        }
                        Begin::Replay(o) => {
                            assert_eq!(o, outcome("created"));
                            0
                        }
                        Begin::Mismatch => panic!("same body reported as mismatch"),
                    }
                })
            })
            .collect();
        let mut sent = 0;
        for task in tasks {
            sent += task.await.unwrap();
        }
        assert_eq!(sent, 1);
        assert_eq!(store.in_flight_len(), 0);
    }
}
