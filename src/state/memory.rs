//! The in-process [`Store`]: exact sliding logs, idempotency records and list generations for
//! one replica. Owned by the process, so a config reload keeps all of it.
//!
//! Memory grows with traffic, never with a configured limit: a log holds only the admissions
//! of the last window (nothing is reserved for the limit, and a log gives memory back after a
//! burst), so it holds at most `requests_per_minute` entries, a number the config caps
//! (`config::ceilings`); user logs are dropped once empty, and completed idempotency records
//! are bounded in bytes (oldest first out). A key without a local budget (`"unlimited"`) has
//! no log at all: the guard never asks the store.

use super::answer::StoreFuture;
use super::budget::{Admit, BudgetAsk, Ticket};
use super::idempotency::{Claim, Fingerprint, IdemId, Settle, StoredOutcome};
use super::l2::L2Lookup;
use super::store::{Health, Store};
use crate::lock;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// User logs kept before empty ones are swept.
const USER_LOGS_SWEEP_AT: usize = 10_000;
/// Fixed per-record overhead counted against the idempotency capacity.
const RECORD_OVERHEAD: u64 = 160;

/// A log keeps at least this much room once it has grown (no shrinking churn at low rates).
const LOG_KEEP: usize = 1024;

// The config's ceilings (`config::ceilings`) count this many bytes per log entry.
const _: () = assert!(
    std::mem::size_of::<(Instant, u64)>() as u64 <= crate::config::ceilings::LOG_ENTRY_BYTES
);

/// The send times of one key's (or user's) admissions within the window. Starts empty and
/// grows one entry per admission, so it never holds more than the limit; after a burst it
/// gives back what it no longer needs.
#[derive(Debug, Default)]
struct Log {
    sent: VecDeque<(Instant, u64)>,
}

impl Log {
    fn prune(&mut self, now: Instant, window: Duration) {
        while let Some(&(t, _)) = self.sent.front() {
            if now.saturating_duration_since(t) >= window {
                self.sent.pop_front();
            } else {
                break;
            }
        }
        // A quarter full: halve it (amortised, and never below LOG_KEEP).
        if self.sent.capacity() > LOG_KEEP && self.sent.len() < self.sent.capacity() / 4 {
            self.sent.shrink_to((self.sent.len() * 2).max(LOG_KEEP));
        }
    }

    /// Room for one more, or how long until there is.
    fn room(&self, now: Instant, limit: u32, window: Duration) -> Result<(), Duration> {
        if (self.sent.len() as u64) < u64::from(limit) {
            return Ok(());
        }
        // Full: the slot frees when the admission `len - limit` back leaves the window. A
        // limit of 0 (no pool at all) never frees: the whole window.
        let idx = self.sent.len() - limit as usize;
        let Some(&(t, _)) = self.sent.get(idx).filter(|_| limit > 0) else {
            return Err(window);
        };
        Err((t + window)
            .saturating_duration_since(now)
            .max(Duration::from_millis(1)))
    }

    fn remove(&mut self, id: u64) {
        if let Some(pos) = self.sent.iter().rposition(|&(_, i)| i == id) {
            self.sent.remove(pos);
        }
    }
}

#[derive(Debug, Default)]
struct KeyState {
    log: Log,
    paused_until: Option<Instant>,
    /// Per scope (`partnerships`, `tags`, ...).
    generations: HashMap<&'static str, u64>,
}

#[derive(Debug)]
enum RecState {
    InFlight { lease_until: Instant },
    Done(StoredOutcome),
    Unknown,
}

#[derive(Debug)]
struct Record {
    fingerprint: Fingerprint,
    state: RecState,
    expires: Instant,
    weight: u64,
}

#[derive(Debug, Default)]
struct Records {
    map: HashMap<IdemId, Record>,
    /// Insertion order, for expiry and for evicting the oldest completed records.
    order: VecDeque<IdemId>,
    bytes: u64,
}

impl Records {
    fn weight(id: &IdemId, outcome: Option<&StoredOutcome>) -> u64 {
        let o = outcome.map_or(0, |o| {
            o.body.len() + o.content_type.as_ref().map_or(0, String::len)
        });
        (id.key.len() + id.user.len() + id.idem.len() + o) as u64 + RECORD_OVERHEAD
    }

    fn remove(&mut self, id: &IdemId) {
        if let Some(r) = self.map.remove(id) {
            self.bytes -= r.weight;
        }
    }

    /// Drops expired records, then the oldest completed ones while over `capacity`.
    /// In-flight and unknown records are never evicted early: forgetting one would let a
    /// repeat through as a second send.
    fn sweep(&mut self, now: Instant, capacity: u64) {
        while let Some(id) = self.order.front() {
            match self.map.get(id) {
                None => {
                    self.order.pop_front();
                }
                Some(r) if r.expires <= now => {
                    let id = self.order.pop_front().expect("front exists");
                    self.remove(&id);
                }
                Some(_) => break,
            }
        }
        if self.bytes <= capacity {
            return;
        }
        let mut kept = VecDeque::with_capacity(self.order.len());
        while let Some(id) = self.order.pop_front() {
            let evict = self.bytes > capacity
                && matches!(
                    self.map.get(&id),
                    Some(Record {
                        state: RecState::Done(_),
                        ..
                    })
                );
            if evict {
                self.remove(&id);
            } else if self.map.contains_key(&id) {
                kept.push_back(id);
            }
        }
        self.order = kept;
    }
}

/// (upstream key, user) of a fair-share log.
type UserKey = (Arc<str>, Arc<str>);

/// The in-process store.
#[derive(Debug)]
pub struct MemoryStore {
    keys: Mutex<HashMap<Arc<str>, KeyState>>,
    users: Mutex<HashMap<UserKey, Log>>,
    records: Mutex<Records>,
    /// Bytes the idempotency records may hold.
    capacity: AtomicU64,
    next_id: AtomicU64,
}

impl MemoryStore {
    /// An empty store whose idempotency records may hold `capacity` bytes.
    pub fn new(capacity: u64) -> MemoryStore {
        MemoryStore {
            keys: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            records: Mutex::new(Records::default()),
            capacity: AtomicU64::new(capacity),
            next_id: AtomicU64::new(1),
        }
    }

    /// Changes the idempotency capacity (a reload); records over it leave oldest first.
    pub fn set_capacity(&self, capacity: u64) {
        self.capacity.store(capacity, Ordering::Relaxed);
    }

    /// Idempotency records held (for tests and gauges).
    pub fn records(&self) -> usize {
        lock(&self.records).map.len()
    }

    /// The budget decision, synchronously (the memory store never waits).
    pub fn admit_now(&self, ask: &BudgetAsk<'_>, now: Instant) -> Admit {
        let mut keys = lock(&self.keys);
        let state = match keys.get_mut(ask.key) {
            Some(s) => s,
            None => keys.entry(Arc::from(ask.key)).or_default(),
        };
        if let Some(until) = state.paused_until {
            if until > now {
                return Admit::Paused { wait: until - now };
            }
            state.paused_until = None;
        }
        state.log.prune(now, ask.window);
        if let Err(wait) = state.log.room(now, ask.limit, ask.window) {
            return Admit::KeyFull { wait };
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut user_name = None;
        if let Some((user, limit)) = ask.user {
            // Lock order: keys, then users (everywhere).
            let mut users = lock(&self.users);
            if users.len() >= USER_LOGS_SWEEP_AT {
                users.retain(|_, log| {
                    log.prune(now, ask.window);
                    !log.sent.is_empty()
                });
            }
            let k: UserKey = (Arc::from(ask.key), Arc::from(user));
            let log = users.entry(k).or_default();
            log.prune(now, ask.window);
            if let Err(wait) = log.room(now, limit, ask.window) {
                return Admit::UserFull { wait };
            }
            log.sent.push_back((now, id));
            user_name = Some(Arc::from(user));
        }
        state.log.sent.push_back((now, id));
        Admit::Admitted(Ticket {
            key: Arc::from(ask.key),
            user: user_name,
            id,
        })
    }

    /// Ends a record (see [`Store::settle`]).
    fn settle_now(&self, id: &IdemId, how: Settle, ttl: Duration) {
        let now = Instant::now();
        let mut recs = lock(&self.records);
        match how {
            // Only a record still in flight is freed: an unknown or completed one stays.
            Settle::Release => {
                if matches!(
                    recs.map.get(id),
                    Some(Record {
                        state: RecState::InFlight { .. },
                        ..
                    })
                ) {
                    recs.remove(id);
                }
            }
            Settle::Unknown => {
                if let Some(r) = recs.map.get_mut(id) {
                    r.state = RecState::Unknown;
                }
            }
            Settle::Completed(mut outcome) => {
                // Its own allocation: the body is a slice of an upstream connection's read
                // buffer, which would otherwise stay alive, whole, for the record's TTL.
                outcome.body = bytes::Bytes::copy_from_slice(&outcome.body);
                let weight = Records::weight(id, Some(&outcome));
                if let Some(r) = recs.map.get_mut(id) {
                    let old = r.weight;
                    r.state = RecState::Done(outcome);
                    r.expires = r.expires.max(now + ttl);
                    r.weight = weight;
                    recs.bytes = recs.bytes - old + weight;
                }
                recs.sweep(now, self.capacity.load(Ordering::Relaxed));
            }
        }
    }

    /// Bumps the key's generations of `scopes` (see [`Store::bump`]).
    fn bump_now(&self, key: &str, scopes: &[&str]) -> Vec<u64> {
        let mut keys = lock(&self.keys);
        // The key's name is copied only the first time it is seen, not per write.
        if !keys.contains_key(key) {
            keys.insert(Arc::from(key), KeyState::default());
        }
        let state = keys.get_mut(key).expect("inserted above");
        scopes
            .iter()
            .map(|scope| match state.generations.get_mut(*scope) {
                Some(g) => {
                    *g += 1;
                    *g
                }
                None => {
                    // Scopes are a small fixed set of names (the route groups): each is
                    // interned once per key, never per request.
                    let name: &'static str = Box::leak(scope.to_string().into_boxed_str());
                    state.generations.insert(name, 1);
                    1
                }
            })
            .collect()
    }
}

impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn health(&self) -> Health {
        Health::Up
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn admit<'a>(&'a self, ask: &'a BudgetAsk<'a>) -> StoreFuture<'a, Admit> {
        let out = self.admit_now(ask, Instant::now());
        StoreFuture::ready(Ok(out))
    }

    fn refund<'a>(&'a self, ticket: &'a Ticket) -> StoreFuture<'a, ()> {
        if let Some(s) = lock(&self.keys).get_mut(&ticket.key) {
            s.log.remove(ticket.id);
        }
        if let Some(user) = &ticket.user {
            if let Some(log) = lock(&self.users).get_mut(&(ticket.key.clone(), user.clone())) {
                log.remove(ticket.id);
            }
        }
        StoreFuture::ready(Ok(()))
    }

    fn pause<'a>(&'a self, key: &'a str, pause: Duration) -> StoreFuture<'a, ()> {
        let until = Instant::now() + pause;
        let mut keys = lock(&self.keys);
        let state = keys.entry(Arc::from(key)).or_default();
        state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
        StoreFuture::ready(Ok(()))
    }

    fn local_pause(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let until = lock(&self.keys).get(key)?.paused_until?;
        (until > now).then(|| until - now)
    }

    fn remaining<'a>(&'a self, key: &'a str, limit: u32, window: Duration) -> StoreFuture<'a, u32> {
        let now = Instant::now();
        let left = match lock(&self.keys).get_mut(key) {
            Some(s) if s.paused_until.is_some_and(|u| u > now) => 0,
            Some(s) => {
                s.log.prune(now, window);
                limit.saturating_sub(s.log.sent.len() as u32)
            }
            None => limit,
        };
        StoreFuture::ready(Ok(left))
    }

    fn claim<'a>(
        &'a self,
        id: &'a IdemId,
        fingerprint: &'a Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> StoreFuture<'a, Claim> {
        let now = Instant::now();
        let mut recs = lock(&self.records);
        recs.sweep(now, self.capacity.load(Ordering::Relaxed));
        let out = match recs.map.get_mut(id) {
            None => {
                let weight = Records::weight(id, None);
                recs.map.insert(
                    id.clone(),
                    Record {
                        fingerprint: *fingerprint,
                        state: RecState::InFlight {
                            lease_until: now + lease,
                        },
                        expires: now + ttl,
                        weight,
                    },
                );
                recs.bytes += weight;
                recs.order.push_back(id.clone());
                Claim::Proceed
            }
            Some(r) if r.fingerprint != *fingerprint => Claim::Mismatch,
            Some(r) => match &r.state {
                RecState::Done(o) => Claim::Replay(o.clone()),
                RecState::InFlight { lease_until } if *lease_until > now => Claim::InFlight,
                RecState::InFlight { .. } => {
                    r.state = RecState::Unknown;
                    Claim::Unknown
                }
                RecState::Unknown => Claim::Unknown,
            },
        };
        StoreFuture::ready(Ok(out))
    }

    fn settle<'a>(&'a self, id: &'a IdemId, how: Settle, ttl: Duration) -> StoreFuture<'a, ()> {
        self.settle_now(id, how, ttl);
        StoreFuture::ready(Ok(()))
    }

    fn generation<'a>(&'a self, key: &'a str, scope: &'a str) -> StoreFuture<'a, u64> {
        let g = lock(&self.keys)
            .get(key)
            .and_then(|s| s.generations.get(scope).copied())
            .unwrap_or(0);
        StoreFuture::ready(Ok(g))
    }

    fn generations<'a>(&'a self, key: &'a str, scopes: &'a [&'a str]) -> StoreFuture<'a, Vec<u64>> {
        let keys = lock(&self.keys);
        let state = keys.get(key);
        let out = scopes
            .iter()
            .map(|scope| {
                state
                    .and_then(|s| s.generations.get(*scope).copied())
                    .unwrap_or(0)
            })
            .collect();
        StoreFuture::ready(Ok(out))
    }

    fn bump<'a>(&'a self, key: &'a str, scopes: &'a [&'a str]) -> StoreFuture<'a, Vec<u64>> {
        StoreFuture::ready(Ok(self.bump_now(key, scopes)))
    }

    fn settle_and_bump<'a>(
        &'a self,
        id: &'a IdemId,
        how: Settle,
        ttl: Duration,
        key: &'a str,
        scopes: &'a [&'a str],
    ) -> StoreFuture<'a, Vec<u64>> {
        // In process there is no round trip to save: the two operations, in the order they
        // ran as two calls (the bump, then the settle).
        let out = self.bump_now(key, scopes);
        self.settle_now(id, how, ttl);
        StoreFuture::ready(Ok(out))
    }

    fn l2_lookup<'a>(
        &'a self,
        _key: &'a str,
        _entry: &'a str,
        _fresh_for: Duration,
        _lock: Duration,
    ) -> StoreFuture<'a, L2Lookup> {
        // One process: the local cache is the only level, and its own single-flight
        // coalesces concurrent misses.
        StoreFuture::ready(Ok(L2Lookup::Lead { stale: None }))
    }

    fn l2_put<'a>(
        &'a self,
        _key: &'a str,
        _entry: &'a str,
        _value: Option<Bytes>,
        _keep: Duration,
    ) -> StoreFuture<'a, ()> {
        StoreFuture::ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask<'a>(key: &'a str, limit: u32) -> BudgetAsk<'a> {
        BudgetAsk {
            key,
            limit,
            window: Duration::from_secs(61),
            user: Some(("bob", limit)),
        }
    }

    fn log_capacity(store: &MemoryStore, key: &str) -> usize {
        lock(&store.keys)
            .get(key)
            .map_or(0, |s| s.log.sent.capacity())
    }

    #[test]
    fn a_huge_limit_reserves_nothing_and_a_log_holds_at_most_its_limit() {
        let store = MemoryStore::new(1 << 20);
        let now = Instant::now();
        let big = ask("k", crate::config::ceilings::MAX_REQUESTS_PER_MINUTE);
        assert!(matches!(store.admit_now(&big, now), Admit::Admitted(_)));
        assert!(
            log_capacity(&store, "k") < 64,
            "nothing reserved for the limit"
        );
        let small = ask("s", 3);
        for _ in 0..3 {
            assert!(matches!(store.admit_now(&small, now), Admit::Admitted(_)));
        }
        for _ in 0..100 {
            assert!(matches!(
                store.admit_now(&small, now),
                Admit::KeyFull { .. }
            ));
        }
        assert_eq!(lock(&store.keys)["s"].log.sent.len(), 3);
    }

    #[test]
    fn a_log_gives_memory_back_after_a_burst() {
        let store = MemoryStore::new(1 << 20);
        let start = Instant::now();
        let burst = ask("k", 100_000);
        for _ in 0..100_000 {
            assert!(matches!(store.admit_now(&burst, start), Admit::Admitted(_)));
        }
        assert!(log_capacity(&store, "k") >= 100_000);
        // A window later, one admission prunes the burst away and shrinks the log.
        let later = start + Duration::from_secs(62);
        for _ in 0..8 {
            store.admit_now(&burst, later);
        }
        assert!(
            log_capacity(&store, "k") <= 2 * LOG_KEEP,
            "{}",
            log_capacity(&store, "k")
        );
    }

    #[tokio::test]
    async fn a_pause_is_known_locally() {
        let store = MemoryStore::new(1 << 20);
        assert_eq!(store.local_pause("k"), None);
        store.pause("k", Duration::from_secs(5)).await.unwrap();
        let left = store.local_pause("k").expect("paused");
        assert!(left <= Duration::from_secs(5) && left > Duration::from_secs(4));
    }
}
