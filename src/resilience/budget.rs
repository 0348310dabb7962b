//! A retry budget in the style of Finagle's `RetryBudget` (and Envoy's retry budgets), plus
//! exponential backoff with full jitter.
//!
//! Per-request retry limits ("at most 2 retries") still triple the load on an upstream that
//! is already failing. A budget instead caps retries to a fraction of recent traffic, so
//! during an outage the extra load stays at, say, 20%, while a quiet gateway still gets a
//! small floor of retries so that a lone failed request can be retried at all.

use crate::lock;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Parts per million, so ratios like 0.2 are exact in integer arithmetic.
const PPM: u64 = 1_000_000;

/// A thread-safe retry budget over a sliding window bucketed per second.
///
/// A retry is allowed while, over the window,
/// `retries + 1 <= ratio × requests + min_per_sec × window_secs`.
///
/// `requests` counts original requests only ([`record_request`](Self::record_request));
/// retries are counted by [`try_retry`](Self::try_retry) when it grants one, so a retry never
/// earns budget for further retries. As in Finagle, the minimum is a reserve over the whole
/// window (`min_per_sec × window_secs`), i.e. a rate averaged over the window: after a quiet
/// spell up to that many retries may be granted in a burst.
#[derive(Debug)]
pub struct RetryBudget {
    ratio_ppm: u64,
    /// `min_per_sec × window_secs`, in parts per million of a retry.
    reserve_ppm: u64,
    origin: Instant,
    slots: Mutex<Vec<Slot>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The second (since `origin`) the counts belong to; a slot whose second fell out of the
    /// window is stale and reads as zero.
    second: u64,
    requests: u64,
    retries: u64,
}

impl RetryBudget {
    /// A budget allowing `ratio` retries per request (e.g. `0.2`) plus `min_per_sec` retries
    /// per second, over `window` rounded up to whole seconds. `now` is only the origin of the
    /// per-second buckets.
    ///
    /// # Panics
    ///
    /// If `ratio` is negative or not finite, or `window` is zero.
    pub fn new(window: Duration, ratio: f64, min_per_sec: u32, now: impl Into<Instant>) -> Self {
        let now = now.into();
        assert!(
            ratio.is_finite() && ratio >= 0.0,
            "retry budget ratio must be a non-negative number"
        );
        assert!(!window.is_zero(), "retry budget window must be positive");
        let secs = window.as_secs() + u64::from(window.subsec_nanos() > 0);
        // The ratio is checked finite and non-negative; the cast saturates at u64::MAX.
        let ratio_ppm = (ratio * PPM as f64).round() as u64;
        Self {
            ratio_ppm,
            reserve_ppm: u64::from(min_per_sec)
                .saturating_mul(secs)
                .saturating_mul(PPM),
            origin: now,
            slots: Mutex::new(vec![Slot::default(); secs as usize]),
        }
    }

    /// The usual configuration: 20% of requests over 10 s, plus 3 retries per second.
    pub fn standard(now: impl Into<Instant>) -> Self {
        Self::new(Duration::from_secs(10), 0.2, 3, now)
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// The slot for `second`, cleared first if it still holds an older second's counts.
    fn slot(slots: &mut [Slot], second: u64) -> &mut Slot {
        let len = slots.len() as u64;
        let slot = &mut slots[(second % len) as usize];
        if slot.second != second {
            *slot = Slot {
                second,
                ..Slot::default()
            };
        }
        slot
    }

    /// Sums (requests, retries) over the window ending at `second`.
    fn totals(slots: &[Slot], second: u64) -> (u64, u64) {
        let len = slots.len() as u64;
        slots
            .iter()
            // A slot counts if its second is within the window; slots "from the future"
            // (an instant read before another thread's later one) count too.
            .filter(|s| second.saturating_sub(s.second) < len)
            .fold((0, 0), |(req, ret), s| (req + s.requests, ret + s.retries))
    }

    /// Counts an original (non-retry) request, which earns `ratio` retries of budget.
    pub fn record_request(&self, now: impl Into<Instant>) {
        let now = now.into();
        let second = self.second(now);
        let mut slots = lock(&self.slots);
        let slot = Self::slot(&mut slots, second);
        slot.requests = slot.requests.saturating_add(1);
    }

    /// Withdraws one retry if the budget allows it, and says whether it did.
    pub fn try_retry(&self, now: impl Into<Instant>) -> bool {
        let now = now.into();
        let second = self.second(now);
        let mut slots = lock(&self.slots);
        let (requests, retries) = Self::totals(&slots, second);
        let allowed = requests
            .saturating_mul(self.ratio_ppm)
            .saturating_add(self.reserve_ppm);
        if retries.saturating_add(1).saturating_mul(PPM) > allowed {
            return false;
        }
        let slot = Self::slot(&mut slots, second);
        slot.retries = slot.retries.saturating_add(1);
        true
    }

    /// [`record_request`](Self::record_request) at [`Instant::now`].
    pub fn record_request_now(&self) {
        self.record_request(Instant::now());
    }

    /// [`try_retry`](Self::try_retry) at [`Instant::now`].
    pub fn try_retry_now(&self) -> bool {
        self.try_retry(Instant::now())
    }
}

/// Exponential backoff with full jitter: a uniformly random wait in
/// `[0, min(max, base × 2^attempt)]`, where `attempt` 0 is the first retry.
///
/// Full jitter (rather than "equal" or no jitter) spreads clients that failed together over
/// the whole interval, which is what stops them from retrying in lock-step.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    backoff_with(&mut fastrand::Rng::new(), attempt, base, max)
}

/// [`backoff`] drawing from the given generator, for reproducible tests.
pub fn backoff_with(
    rng: &mut fastrand::Rng,
    attempt: u32,
    base: Duration,
    max: Duration,
) -> Duration {
    let cap = backoff_cap(attempt, base, max);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.u64(0..=nanos))
}

/// The upper bound of [`backoff`]: `min(max, base × 2^attempt)`, without overflow.
pub fn backoff_cap(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(attempt).unwrap_or(0);
    if factor == 0 {
        return max;
    }
    base.checked_mul(factor).map_or(max, |d| d.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn grant_all(b: &RetryBudget, now: Instant) -> u32 {
        let mut n = 0;
        while b.try_retry(now) {
            n += 1;
            assert!(n < 10_000, "budget never ran out");
        }
        n
    }

    #[test]
    fn idle_budget_grants_only_the_minimum_reserve() {
        let t0 = Instant::now();
        let b = RetryBudget::standard(t0);
        // 3 per second over 10 s.
        assert_eq!(grant_all(&b, t0), 30);
    }

    #[test]
    fn zero_minimum_means_no_retry_without_traffic() {
        let t0 = Instant::now();
        let b = RetryBudget::new(10 * SEC, 0.2, 0, t0);
        assert!(!b.try_retry(t0));
        for _ in 0..4 {
            b.record_request(t0);
        }
        // 4 × 0.2 = 0.8 < 1.
        assert!(!b.try_retry(t0));
        b.record_request(t0);
        assert!(b.try_retry(t0));
        assert!(!b.try_retry(t0));
    }

    #[test]
    fn ratio_adds_to_the_minimum() {
        let t0 = Instant::now();
        let b = RetryBudget::new(10 * SEC, 0.2, 1, t0);
        for _ in 0..100 {
            b.record_request(t0);
        }
        // 100 × 0.2 + 1 × 10.
        assert_eq!(grant_all(&b, t0), 30);
    }

    #[test]
    fn retries_do_not_earn_budget() {
        let t0 = Instant::now();
        let b = RetryBudget::new(10 * SEC, 0.5, 0, t0);
        for _ in 0..10 {
            b.record_request(t0);
        }
        assert_eq!(grant_all(&b, t0), 5);
    }

    #[test]
    fn window_slides_per_second() {
        let t0 = Instant::now();
        let b = RetryBudget::new(10 * SEC, 0.2, 0, t0);
        for _ in 0..10 {
            b.record_request(t0);
        }
        assert_eq!(grant_all(&b, t0 + 9 * SEC), 2);
        // Retries made at 9 s still count at 18 s, requests from 0 s no longer do.
        for _ in 0..10 {
            b.record_request(t0 + 10 * SEC);
        }
        assert!(!b.try_retry(t0 + 18 * SEC));
        // At 19 s the retries from 9 s have left the window too.
        assert_eq!(grant_all(&b, t0 + 19 * SEC), 2);
        // Long after, everything has expired.
        assert!(!b.try_retry(t0 + 100 * SEC));
    }

    #[test]
    fn sub_second_windows_round_up() {
        let t0 = Instant::now();
        let b = RetryBudget::new(Duration::from_millis(1500), 0.0, 1, t0);
        assert_eq!(grant_all(&b, t0), 2);
    }

    #[test]
    fn earlier_instants_are_tolerated() {
        let t0 = Instant::now();
        let b = RetryBudget::new(10 * SEC, 1.0, 0, t0 + 5 * SEC);
        b.record_request(t0);
        assert!(b.try_retry(t0 + 5 * SEC));
        assert!(!b.try_retry(t0));
    }

    #[test]
    fn concurrent_retries_respect_the_budget() {
        let t0 = Instant::now();
        let b = RetryBudget::new(10 * SEC, 0.2, 0, t0);
        for _ in 0..50 {
            b.record_request(t0);
        }
        let granted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..10).filter(|_| b.try_retry(t0)).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 10);
    }

    #[test]
    fn backoff_cap_doubles_and_saturates() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        assert_eq!(backoff_cap(0, base, max), base);
        assert_eq!(backoff_cap(1, base, max), 2 * base);
        assert_eq!(backoff_cap(5, base, max), Duration::from_millis(3200));
        assert_eq!(backoff_cap(6, base, max), max);
        assert_eq!(backoff_cap(31, base, max), max);
        assert_eq!(backoff_cap(32, base, max), max);
        assert_eq!(backoff_cap(u32::MAX, base, max), max);
        assert_eq!(backoff_cap(40, Duration::MAX, Duration::MAX), Duration::MAX);
    }

    #[test]
    fn backoff_is_within_bounds_and_jittered() {
        let mut rng = fastrand::Rng::with_seed(7);
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for attempt in 0..10 {
            let cap = backoff_cap(attempt, base, max);
            let draws: Vec<_> = (0..200)
                .map(|_| backoff_with(&mut rng, attempt, base, max))
                .collect();
            assert!(draws.iter().all(|d| *d <= cap));
            // Full jitter: draws cover the low and the high half of the interval.
            assert!(draws.iter().any(|d| *d < cap / 2));
            assert!(draws.iter().any(|d| *d > cap / 2));
        }
        assert!(backoff(3, base, max) <= Duration::from_millis(800));
        assert_eq!(backoff(3, Duration::ZERO, max), Duration::ZERO);
    }

    /// The `*_now` wrappers read tokio's clock: a paused test advances it past the window
    /// instead of sleeping.
    #[tokio::test(start_paused = true)]
    async fn the_window_slides_on_tokios_clock() {
        // No ratio, a reserve of 1 retry a second over 2 s: 2 retries per window.
        let b = RetryBudget::new(2 * SEC, 0.0, 1, Instant::now());
        b.record_request_now();
        assert!(b.try_retry_now());
        assert!(b.try_retry_now());
        assert!(!b.try_retry_now());
        tokio::time::advance(SEC).await;
        assert!(!b.try_retry_now(), "both retries are still in the window");
        tokio::time::advance(SEC).await;
        assert!(b.try_retry_now());
    }
}
