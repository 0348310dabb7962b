//! Token buckets: one per upstream API key (JourneyBee allows ~100 requests/minute per key)
//! and lazily created per-user buckets for fair share, plus the IETF rate-limit headers.
//!
//! The level is kept in exact integer units (one token = `period` in nanoseconds, and each
//! elapsed nanosecond adds `capacity` units), so refill has no floating-point drift: with
//! 100 per 60 s exactly one token is back after exactly 600 ms, and with 3 per 7 s the
//! computed wait is rounded *up* to the nanosecond, never early.

use crate::lock;
use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A thread-safe token bucket holding at most `capacity` tokens that refills continuously at
/// `capacity` tokens per `period`. It starts full.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: u32,
    period: Duration,
    /// Units per token: the period in nanoseconds.
    unit: u128,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// Current level in units (see the module docs); at most `capacity * unit`.
    level: u128,
    /// The instant `level` was computed for. May lie in the future after a pause.
    last: Instant,
    /// No acquisition succeeds before this instant (set from upstream's `Retry-After`).
    paused_until: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens refilling `capacity` tokens per `period`.
    ///
    /// # Panics
    ///
    /// If `capacity` is zero or `period` is zero: such a bucket could never admit anything,
    /// which is a configuration error to catch at start-up, not at request time.
    pub fn new(capacity: u32, period: Duration, now: impl Into<Instant>) -> Self {
        let now = now.into();
        assert!(capacity > 0, "token bucket capacity must be positive");
        assert!(!period.is_zero(), "token bucket period must be positive");
        let unit = period.as_nanos();
        Self {
            capacity,
            period,
            unit,
            state: Mutex::new(BucketState {
                level: unit * u128::from(capacity),
                last: now,
                paused_until: None,
            }),
        }
    }

    /// The maximum number of tokens (the `limit` / `q` of the rate-limit headers).
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The time in which a fully drained bucket refills completely (the window `w`).
    pub fn period(&self) -> Duration {
        self.period
    }

    fn full(&self) -> u128 {
        self.unit * u128::from(self.capacity)
    }

    /// Brings `state` forward to `now`. Instants earlier than the last one seen are treated as
    /// "no time elapsed": concurrent callers read the clock before taking the lock, so slightly
    /// out-of-order instants are normal and must not refill twice or panic.
    fn refill(&self, state: &mut BucketState, now: Instant) {
        if now > state.last {
            let elapsed = (now - state.last).as_nanos();
            let added = elapsed.saturating_mul(u128::from(self.capacity));
            state.level = state.level.saturating_add(added).min(self.full());
            state.last = now;
        }
    }

    /// Nanoseconds of refill needed to gain `units`, rounded up so a caller waiting that long
    /// is never early.
    fn wait_for_units(&self, units: u128) -> Duration {
        let nanos = units.div_ceil(u128::from(self.capacity));
        duration_from_nanos(nanos)
    }

    /// Takes one token, or says how long to wait before one will be available.
    ///
    /// While paused (see [`pause_until`](Self::pause_until)) this fails with the time left
    /// in the pause.
    pub fn try_acquire(&self, now: impl Into<Instant>) -> Result<(), Duration> {
        let now = now.into();
        let mut state = lock(&self.state);
        if let Some(until) = state.paused_until {
            if now < until {
                return Err(until - now);
            }
            state.paused_until = None;
        }
        self.refill(&mut state, now);
        if state.level >= self.unit {
            state.level -= self.unit;
            Ok(())
        } else {
            let deficit = self.unit - state.level;
            // After a pause `last` may still be ahead of a `now` read just before the lock.
            let ahead = state.last.saturating_duration_since(now);
            Err(ahead + self.wait_for_units(deficit))
        }
    }

    /// [`try_acquire`](Self::try_acquire) at [`Instant::now`].
    pub fn try_acquire_now(&self) -> Result<(), Duration> {
        self.try_acquire(Instant::now())
    }

    /// Blocks all acquisitions until `until`, for when upstream answered 429 with a
    /// `Retry-After`. Pauses only ever extend: an earlier `until` than the current one is
    /// ignored.
    ///
    /// The bucket then restarts at `until` with a single token and refills at the steady rate:
    /// a 429 proves our picture of upstream's quota was wrong, so bursting straight back in is
    /// what would earn the next 429, while one token lets a request probe right away.
    pub fn pause_until(&self, until: impl Into<Instant>) {
        let until = until.into();
        let mut state = lock(&self.state);
        if state.paused_until.is_some_and(|current| current >= until) || until <= state.last {
            return;
        }
        state.paused_until = Some(until);
        state.level = self.unit;
        state.last = until;
    }

    /// Whole tokens available at `now` (zero while paused).
    pub fn remaining(&self, now: impl Into<Instant>) -> u32 {
        let now = now.into();
        let mut state = lock(&self.state);
        if state.paused_until.is_some_and(|until| now < until) {
            return 0;
        }
        self.refill(&mut state, now);
        u32::try_from(state.level / self.unit).unwrap_or(u32::MAX)
    }

    /// Time until the bucket is full again at `now` (the `t` / `reset` of the rate-limit
    /// headers), including any remaining pause.
    pub fn reset_after(&self, now: impl Into<Instant>) -> Duration {
        let now = now.into();
        let mut state = lock(&self.state);
        self.refill(&mut state, now);
        let ahead = state.last.saturating_duration_since(now);
        ahead + self.wait_for_units(self.full() - state.level)
    }

    /// True when the bucket is full at `now`: such a bucket behaves exactly like a fresh one,
    /// so [`KeyedBuckets`] may forget it without changing anyone's limits.
    fn is_full(&self, now: Instant) -> bool {
        let mut state = lock(&self.state);
        if state.paused_until.is_some_and(|until| now < until) {
            return false;
        }
        self.refill(&mut state, now);
        state.level == self.full()
    }
}

fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it fits a u32.
    let sub = (nanos % NANOS_PER_SEC) as u32;
    Duration::new(secs, sub)
}

/// Whole seconds, rounded up, so a client that waits that long is never early.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The `Retry-After` value in delta-seconds: rounded up, and at least 1 because `0` would
/// invite an immediate retry that is bound to fail again.
pub fn retry_after_secs(d: Duration) -> u64 {
    ceil_secs(d).max(1)
}

/// The rate-limit response headers in the structured-field form of
/// draft-ietf-httpapi-ratelimit-headers (revision 07 onwards):
///
/// ```text
/// RateLimit-Policy: "default";q=100;w=60
/// RateLimit: "default";r=42;t=25
/// ```
///
/// `q` is the quota (the bucket's capacity), `w` the window in seconds (the time to refill an
/// empty bucket), `r` the remaining quota units and `t` the seconds until the quota is fully
/// restored. Seconds are rounded up. The older `limit=, remaining=, reset=` dictionary form of
/// earlier drafts is deliberately not emitted: sending both invites clients to disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// Quota units per window (`q`).
    pub limit: u32,
    /// The window (`w`).
    pub window: Duration,
    /// Units left (`r`).
    pub remaining: u32,
    /// Time until the quota is fully restored (`t`).
    pub reset: Duration,
    /// Set when the request was refused: rendered as `Retry-After`.
    pub retry_after: Option<Duration>,
}

/// The policy name used in both headers; a single policy needs no more descriptive name.
const POLICY_NAME: &str = "default";

impl RateLimitHeaders {
    /// The `RateLimit-Policy` header name.
    pub const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
    /// The `RateLimit` header name.
    pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

    /// A snapshot of `bucket` at `now`, without a `Retry-After`.
    pub fn from_bucket(bucket: &TokenBucket, now: impl Into<Instant>) -> Self {
        let now = now.into();
        Self {
            limit: bucket.capacity(),
            window: bucket.period(),
            remaining: bucket.remaining(now),
            reset: bucket.reset_after(now),
            retry_after: None,
        }
    }

    /// The same snapshot, marked as refused with the given wait.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The `RateLimit-Policy` value, e.g. `"default";q=100;w=60`.
    pub fn policy_value(&self) -> String {
        format!(
            "\"{POLICY_NAME}\";q={};w={}",
            self.limit,
            ceil_secs(self.window).max(1)
        )
    }

    /// The `RateLimit` value, e.g. `"default";r=42;t=25`.
    pub fn ratelimit_value(&self) -> String {
        format!(
            "\"{POLICY_NAME}\";r={};t={}",
            self.remaining,
            ceil_secs(self.reset)
        )
    }

    /// The `Retry-After` value in seconds, if refused.
    pub fn retry_after_value(&self) -> Option<String> {
        self.retry_after.map(|d| retry_after_secs(d).to_string())
    }

    /// Sets the headers on `headers`, replacing any upstream sent: ours describe the limit
    /// the client actually faces.
    pub fn apply(&self, headers: &mut HeaderMap) {
        // The values are digits and a quoted token, always valid header values.
        let value = |s: String| HeaderValue::try_from(s).expect("ASCII header value");
        headers.insert(Self::POLICY, value(self.policy_value()));
        headers.insert(Self::RATELIMIT, value(self.ratelimit_value()));
        if let Some(retry_after) = self.retry_after_value() {
            headers.insert(RETRY_AFTER, value(retry_after));
        }
    }
}

/// Per-key token buckets, created lazily with one shared rate (for per-user fair share) and
/// bounded to `max_keys` entries.
///
/// Memory is bounded without changing anyone's limits where possible: a full bucket is
/// indistinguishable from a fresh one, so full buckets are forgotten first. Only if every
/// bucket is in use are the least recently used ones (a sixteenth of them, so the cost of
/// the scan is amortised) dropped, which at worst hands those keys a fresh, full bucket.
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    capacity: u32,
    period: Duration,
    max_keys: usize,
    map: Mutex<HashMap<K, Slot>>,
}

#[derive(Debug)]
struct Slot {
    bucket: Arc<TokenBucket>,
    last_used: Instant,
}

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    /// Buckets of `capacity` tokens per `period`, at most `max_keys` of them.
    ///
    /// # Panics
    ///
    /// If `capacity`, `period` or `max_keys` is zero.
    pub fn new(capacity: u32, period: Duration, max_keys: usize) -> Self {
        assert!(capacity > 0, "token bucket capacity must be positive");
        assert!(!period.is_zero(), "token bucket period must be positive");
        assert!(max_keys > 0, "keyed buckets need room for at least one key");
        Self {
            capacity,
            period,
            max_keys,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket for `key`, created full if absent.
    pub fn get(&self, key: &K, now: impl Into<Instant>) -> Arc<TokenBucket> {
        let now = now.into();
        let mut map = lock(&self.map);
        if let Some(slot) = map.get_mut(key) {
            slot.last_used = slot.last_used.max(now);
            return Arc::clone(&slot.bucket);
        }
        if map.len() >= self.max_keys {
            self.make_room(&mut map, now);
        }
        let bucket = Arc::new(TokenBucket::new(self.capacity, self.period, now));
        map.insert(
            key.clone(),
            Slot {
                bucket: Arc::clone(&bucket),
                last_used: now,
            },
        );
        bucket
    }

    /// Takes one token from `key`'s bucket (see [`TokenBucket::try_acquire`]).
    pub fn try_acquire(&self, key: &K, now: impl Into<Instant>) -> Result<(), Duration> {
        let now = now.into();
        self.get(key, now).try_acquire(now)
    }

    /// The number of keys currently tracked.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn make_room(&self, map: &mut HashMap<K, Slot>, now: Instant) {
        map.retain(|_, slot| !slot.bucket.is_full(now));
        if map.len() < self.max_keys {
            return;
        }
        let evict = (map.len() / 16).max(1);
        let mut ages: Vec<Instant> = map.values().map(|slot| slot.last_used).collect();
        let (_, cutoff, _) = ages.select_nth_unstable(evict - 1);
        let cutoff = *cutoff;
        // Ties at the cutoff may evict a few more than `evict`, which is harmless.
        map.retain(|_, slot| slot.last_used > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn minute_bucket(now: Instant) -> TokenBucket {
        TokenBucket::new(100, Duration::from_secs(60), now)
    }

    #[test]
    fn starts_full_and_drains_exactly_capacity() {
        let t0 = Instant::now();
        let b = minute_bucket(t0);
        assert_eq!(b.remaining(t0), 100);
        for _ in 0..100 {
            assert_eq!(b.try_acquire(t0), Ok(()));
        }
        assert_eq!(b.remaining(t0), 0);
        assert_eq!(b.try_acquire(t0), Err(600 * MS));
    }

    #[test]
    fn refill_is_exact_at_the_boundary() {
        let t0 = Instant::now();
        let b = minute_bucket(t0);
        for _ in 0..100 {
            b.try_acquire(t0).unwrap();
        }
        assert_eq!(b.try_acquire(t0 + 599 * MS), Err(MS));
        assert_eq!(b.try_acquire(t0 + 600 * MS), Ok(()));
        assert_eq!(b.try_acquire(t0 + 600 * MS), Err(600 * MS));
        // A whole period refills the whole bucket, and no more.
        assert_eq!(b.remaining(t0 + Duration::from_secs(3600)), 100);
    }

    #[test]
    fn non_divisible_rates_round_waits_up() {
        let t0 = Instant::now();
        let b = TokenBucket::new(3, Duration::from_secs(7), t0);
        for _ in 0..3 {
            b.try_acquire(t0).unwrap();
        }
        // 7 s / 3 = 2.333_333_333_3… s: the wait is rounded up to the next nanosecond.
        let wait = Duration::from_nanos(2_333_333_334);
        assert_eq!(b.try_acquire(t0), Err(wait));
        assert!(b.try_acquire(t0 + wait - Duration::from_nanos(1)).is_err());
        assert_eq!(b.try_acquire(t0 + wait), Ok(()));
        // Fractions carry over: after exactly 7 s from the start, 3 tokens were regained.
        assert_eq!(b.remaining(t0 + Duration::from_secs(7)), 2);
    }

    #[test]
    fn earlier_instants_do_not_refill_or_panic() {
        let t0 = Instant::now();
        let b = minute_bucket(t0 + Duration::from_secs(1));
        for _ in 0..100 {
            b.try_acquire(t0 + Duration::from_secs(1)).unwrap();
        }
        assert_eq!(b.try_acquire(t0), Err(Duration::from_secs(1) + 600 * MS));
        assert_eq!(b.remaining(t0), 0);
    }

    #[test]
    fn pause_blocks_until_its_end_then_restarts_with_one_token() {
        let t0 = Instant::now();
        let b = minute_bucket(t0);
        let until = t0 + Duration::from_secs(30);
        b.pause_until(until);
        assert_eq!(b.try_acquire(t0), Err(Duration::from_secs(30)));
        assert_eq!(b.try_acquire(until - MS), Err(MS));
        assert_eq!(b.remaining(until - MS), 0);
        assert_eq!(b.try_acquire(until), Ok(()));
        assert_eq!(b.try_acquire(until), Err(600 * MS));
        assert_eq!(b.remaining(until + 1200 * MS), 2);
    }

    #[test]
    fn pauses_only_extend() {
        let t0 = Instant::now();
        let b = minute_bucket(t0);
        b.pause_until(t0 + Duration::from_secs(10));
        b.pause_until(t0 + Duration::from_secs(5));
        assert_eq!(
            b.try_acquire(t0 + Duration::from_secs(6)),
            Err(Duration::from_secs(4))
        );
        b.pause_until(t0 + Duration::from_secs(20));
        assert_eq!(
            b.try_acquire(t0 + Duration::from_secs(11)),
            Err(Duration::from_secs(9))
        );
        assert_eq!(b.try_acquire(t0 + Duration::from_secs(20)), Ok(()));
        // A pause that already ended changes nothing.
        b.pause_until(t0);
        assert_eq!(b.remaining(t0 + Duration::from_secs(20) + 600 * MS), 1);
    }

    #[test]
    fn reset_after_is_time_to_full() {
        let t0 = Instant::now();
        let b = minute_bucket(t0);
        assert_eq!(b.reset_after(t0), Duration::ZERO);
        for _ in 0..10 {
            b.try_acquire(t0).unwrap();
        }
        assert_eq!(b.reset_after(t0), Duration::from_secs(6));
        assert_eq!(
            b.reset_after(t0 + Duration::from_secs(2)),
            Duration::from_secs(4)
        );
        b.pause_until(t0 + Duration::from_secs(10));
        // 10 s of pause left, then 99 tokens to refill at 600 ms each.
        assert_eq!(b.reset_after(t0), Duration::from_secs(10) + 99 * 600 * MS);
    }

    #[test]
    fn concurrent_acquisitions_never_exceed_capacity() {
        let t0 = Instant::now();
        let b = Arc::new(minute_bucket(t0));
        let granted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let b = Arc::clone(&b);
                    s.spawn(move || (0..50).filter(|_| b.try_acquire(t0).is_ok()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 100);
    }

    #[test]
    #[should_panic(expected = "capacity")]
    fn zero_capacity_is_rejected() {
        let _ = TokenBucket::new(0, Duration::from_secs(1), Instant::now());
    }

    #[test]
    fn headers_use_the_structured_field_form() {
        let t0 = Instant::now();
        let b = minute_bucket(t0);
        for _ in 0..58 {
            b.try_acquire(t0).unwrap();
        }
        let h = RateLimitHeaders::from_bucket(&b, t0 + 100 * MS);
        assert_eq!(h.policy_value(), "\"default\";q=100;w=60");
        // 42 left; 58 - 1/6 tokens missing → 34.7 s, rounded up.
        assert_eq!(h.ratelimit_value(), "\"default\";r=42;t=35");
        assert_eq!(h.retry_after_value(), None);

        let mut map = HeaderMap::new();
        h.with_retry_after(Duration::from_millis(1)).apply(&mut map);
        assert_eq!(map["ratelimit-policy"], "\"default\";q=100;w=60");
        assert_eq!(map["ratelimit"], "\"default\";r=42;t=35");
        assert_eq!(map["retry-after"], "1");
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
    }

    #[test]
    fn keyed_buckets_are_independent_per_key() {
        let t0 = Instant::now();
        let k = KeyedBuckets::new(2, Duration::from_secs(10), 100);
        assert!(k.try_acquire(&"alice", t0).is_ok());
        assert!(k.try_acquire(&"alice", t0).is_ok());
        assert_eq!(k.try_acquire(&"alice", t0), Err(Duration::from_secs(5)));
        assert!(k.try_acquire(&"bob", t0).is_ok());
        assert_eq!(k.len(), 2);
        assert!(Arc::ptr_eq(&k.get(&"alice", t0), &k.get(&"alice", t0)));
    }

    #[test]
    fn keyed_buckets_forget_full_buckets_first() {
        let t0 = Instant::now();
        let k = KeyedBuckets::new(1, Duration::from_secs(10), 2);
        k.try_acquire(&1, t0).unwrap();
        k.try_acquire(&2, t0 + Duration::from_secs(5)).unwrap();
        // At 10 s key 1 is full again (forgettable), key 2 is not.
        let t = t0 + Duration::from_secs(10);
        k.try_acquire(&3, t).unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k.try_acquire(&2, t), Err(Duration::from_secs(5)));
        assert_eq!(k.try_acquire(&3, t), Err(Duration::from_secs(10)));
    }

    #[test]
    fn keyed_buckets_evict_least_recently_used_when_all_busy() {
        let t0 = Instant::now();
        let k = KeyedBuckets::new(1, Duration::from_secs(60), 4);
        for i in 0..4u32 {
            k.try_acquire(&i, t0 + Duration::from_secs(u64::from(i)))
                .unwrap();
        }
        let t = t0 + Duration::from_secs(10);
        k.try_acquire(&99, t).unwrap();
        assert_eq!(k.len(), 4);
        // Key 0 was the least recently used and was forgotten: it gets a fresh bucket.
        assert_eq!(k.try_acquire(&0, t), Ok(()));
        // Key 3 kept its drained bucket.
        assert!(k.try_acquire(&3, t).is_err());
        assert!(k.len() <= 4);
    }

    /// [`TokenBucket::try_acquire_now`] reads tokio's clock: a paused test advances it to the
    /// refill instead of sleeping.
    #[tokio::test(start_paused = true)]
    async fn refills_on_tokios_clock() {
        let b = TokenBucket::new(2, Duration::from_secs(60), Instant::now());
        assert_eq!(b.try_acquire_now(), Ok(()));
        assert_eq!(b.try_acquire_now(), Ok(()));
        let wait = b.try_acquire_now().unwrap_err();
        assert_eq!(wait, Duration::from_secs(30));
        tokio::time::advance(wait - MS).await;
        assert!(b.try_acquire_now().is_err());
        tokio::time::advance(MS).await;
        assert_eq!(b.try_acquire_now(), Ok(()));
    }
}
