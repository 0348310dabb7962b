//! Exponential backoff with full jitter between retries of a read.
//!
//! Kept by hand (a few lines): the backoffs already in the tree, tower's
//! `retry::backoff::ExponentialBackoff` and backon's (through redis), wait `base × 2^attempt`
//! *plus* a jitter, so clients that failed together still all wait at least that long and come
//! back bunched; full jitter draws the whole wait from `[0, cap]`, which spreads them out.

use std::time::Duration;

/// Exponential backoff with full jitter: a uniformly random wait in
/// `[0, min(max, base × 2^attempt)]`, where `attempt` 0 is the first retry.
///
/// Full jitter (rather than "equal" or no jitter) spreads clients that failed together over
/// the whole interval, which is what stops them from retrying in lock-step.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    backoff_with(&mut fastrand::Rng::new(), attempt, base, max)
}

/// [`backoff`] drawing from the given generator, for reproducible tests.
fn backoff_with(rng: &mut fastrand::Rng, attempt: u32, base: Duration, max: Duration) -> Duration {
    let cap = backoff_cap(attempt, base, max);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.u64(0..=nanos))
}

/// The upper bound of [`backoff`]: `min(max, base × 2^attempt)`, without overflow.
fn backoff_cap(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(attempt).unwrap_or(0);
    if factor == 0 {
        return max;
    }
    base.checked_mul(factor).map_or(max, |d| d.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
