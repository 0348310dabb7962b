//! A circuit breaker: after `threshold` consecutive failures it opens and fails fast for a
//! cooldown, so a down upstream is not hammered and clients get an immediate answer; then it
//! lets exactly one probe through (half-open) and closes or reopens on the probe's verdict.
//!
//! Verdicts are tied to the breaker "generation" their permit was issued in: a request sent
//! while closed that fails after the breaker already opened (or closed again) must not count
//! toward the new state, or one slow burst of stale failures could reopen a healthy breaker.

use crate::lock;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The `retry_after` suggested while a half-open probe is in flight: its verdict, not a
/// timer, decides what happens next, so clients are told to come back soon.
pub const PROBE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The breaker's state, for a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Requests flow; consecutive failures are counted.
    Closed,
    /// Requests fail fast until the cooldown ends.
    Open,
    /// The cooldown ended: one probe request decides whether to close or reopen.
    HalfOpen,
}

impl BreakerState {
    /// A number for a gauge: 0 closed, 1 half-open, 2 open.
    pub fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// Refusal from an open breaker (or a half-open one whose probe is in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    /// How long the caller should wait before trying again.
    pub retry_after: Duration,
}

impl fmt::Display for Open {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit open, retry after {:?}", self.retry_after)
    }
}

impl std::error::Error for Open {}

/// A thread-safe circuit breaker; clones share one state.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Bumped on every state transition; permits from an older generation are ignored.
    generation: u64,
    phase: Phase,
}

#[derive(Debug)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

impl CircuitBreaker {
    /// A closed breaker that opens after `threshold` consecutive failures and stays open for
    /// `cooldown`.
    ///
    /// # Panics
    ///
    /// If `threshold` is zero (a breaker that opens without any failure).
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        assert!(threshold > 0, "circuit breaker threshold must be positive");
        Self {
            shared: Arc::new(Shared {
                threshold,
                cooldown,
                inner: Mutex::new(Inner {
                    generation: 0,
                    phase: Phase::Closed { failures: 0 },
                }),
            }),
        }
    }

    /// Asks to send a request at `now`. When closed every caller gets a permit; when the
    /// cooldown has ended the first caller gets the half-open probe permit and everyone else
    /// is refused until the probe's verdict.
    pub fn try_acquire(&self, now: impl Into<Instant>) -> Result<Permit, Open> {
        let now = now.into();
        let mut inner = lock(&self.shared.inner);
        let probe = match inner.phase {
            Phase::Closed { .. } => false,
            Phase::Open { until } if now < until => {
                return Err(Open {
                    retry_after: until - now,
                })
            }
            Phase::Open { .. } => {
                inner.generation += 1;
                inner.phase = Phase::HalfOpen {
                    probe_in_flight: true,
                };
                true
            }
            Phase::HalfOpen {
                ref mut probe_in_flight,
            } => {
                if *probe_in_flight {
                    return Err(Open {
                        retry_after: PROBE_RETRY_AFTER,
                    });
                }
                *probe_in_flight = true;
                true
            }
        };
        Ok(Permit {
            shared: Some(Arc::clone(&self.shared)),
            generation: inner.generation,
            probe,
        })
    }

    /// The state at `now`. An open breaker whose cooldown has ended reports
    /// [`BreakerState::HalfOpen`], since the next request will be a probe.
    pub fn state_at(&self, now: impl Into<Instant>) -> BreakerState {
        let now = now.into();
        match lock(&self.shared.inner).phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

impl Shared {
    fn verdict(&self, generation: u64, probe: bool, verdict: Verdict) {
        let mut guard = lock(&self.inner);
        // Borrow through a plain reference so the phase and generation borrow disjointly.
        let inner = &mut *guard;
        if inner.generation != generation {
            return;
        }
        match (&mut inner.phase, verdict) {
            (Phase::Closed { failures }, Verdict::Success) => *failures = 0,
            (Phase::Closed { failures }, Verdict::Failure(now)) => {
                *failures += 1;
                if *failures >= self.threshold {
                    inner.generation += 1;
                    inner.phase = Phase::Open {
                        until: now + self.cooldown,
                    };
                }
            }
            (Phase::Closed { .. }, Verdict::Neutral) => {}
            // Only the probe is issued in a half-open generation, but check anyway.
            (Phase::HalfOpen { .. }, _) if !probe => {}
            (Phase::HalfOpen { .. }, Verdict::Success) => {
                inner.generation += 1;
                inner.phase = Phase::Closed { failures: 0 };
            }
            (Phase::HalfOpen { .. }, Verdict::Failure(now)) => {
                inner.generation += 1;
                inner.phase = Phase::Open {
                    until: now + self.cooldown,
                };
            }
            // The probe told us nothing: free the slot so the next caller probes instead.
            (Phase::HalfOpen { probe_in_flight }, Verdict::Neutral) => *probe_in_flight = false,
            // Unreachable in practice (opening bumps the generation), and harmless.
            (Phase::Open { .. }, _) => {}
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Verdict {
    Success,
    Failure(Instant),
    Neutral,
}

/// Permission to send one request. Report the outcome with [`success`](Self::success) or
/// [`failure`](Self::failure).
///
/// Dropping a permit without a verdict (the request was cancelled, e.g. the client went away,
/// or the outcome says nothing about upstream health, e.g. a 4xx) is *neutral*: it neither
/// resets nor increments the failure count, and a half-open probe dropped this way frees the
/// probe slot so the next caller becomes the probe. It never leaves the breaker stuck.
#[must_use = "a permit must be resolved with success() or failure(); dropping it is neutral"]
#[derive(Debug)]
pub struct Permit {
    shared: Option<Arc<Shared>>,
    generation: u64,
    probe: bool,
}

impl Permit {
    /// True if this permit is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The request succeeded: resets the failure count, or closes a half-open breaker.
    pub fn success(mut self) {
        self.resolve(Verdict::Success);
    }

    /// The request failed (upstream error or timeout) at `now`: counts toward opening, or
    /// reopens a half-open breaker for another cooldown from `now`.
    pub fn failure_at(mut self, now: impl Into<Instant>) {
        let now = now.into();
        self.resolve(Verdict::Failure(now));
    }

    /// [`failure_at`](Self::failure_at) at [`Instant::now`].
    pub fn failure(self) {
        self.failure_at(Instant::now());
    }

    fn resolve(&mut self, verdict: Verdict) {
        if let Some(shared) = self.shared.take() {
            shared.verdict(self.generation, self.probe, verdict);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.resolve(Verdict::Neutral);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn fail(b: &CircuitBreaker, now: Instant) {
        b.try_acquire(now).expect("permit").failure_at(now);
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(3, 10 * SEC);
        fail(&b, t0);
        fail(&b, t0);
        b.try_acquire(t0).unwrap().success();
        fail(&b, t0);
        fail(&b, t0);
        assert_eq!(b.state_at(t0), BreakerState::Closed);
        fail(&b, t0);
        assert_eq!(b.state_at(t0), BreakerState::Open);
        assert_eq!(
            b.try_acquire(t0 + 4 * SEC).unwrap_err(),
            Open {
                retry_after: 6 * SEC
            }
        );
    }

    #[test]
    fn neutral_drops_do_not_reset_the_count() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(2, 10 * SEC);
        fail(&b, t0);
        drop(b.try_acquire(t0).unwrap());
        fail(&b, t0);
        assert_eq!(b.state_at(t0), BreakerState::Open);
    }

    #[test]
    fn cooldown_boundary_then_single_probe() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(1, 10 * SEC);
        fail(&b, t0);
        let end = t0 + 10 * SEC;
        assert_eq!(
            b.try_acquire(end - Duration::from_nanos(1)).unwrap_err(),
            Open {
                retry_after: Duration::from_nanos(1)
            }
        );
        assert_eq!(b.state_at(end), BreakerState::HalfOpen);
        let probe = b.try_acquire(end).unwrap();
        assert!(probe.is_probe());
        assert_eq!(
            b.try_acquire(end).unwrap_err(),
            Open {
                retry_after: PROBE_RETRY_AFTER
            }
        );
        probe.success();
        assert_eq!(b.state_at(end), BreakerState::Closed);
        let p = b.try_acquire(end).unwrap();
        assert!(!p.is_probe());
        p.success();
    }

    #[test]
    fn failed_probe_reopens_for_a_full_cooldown() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(1, 10 * SEC);
        fail(&b, t0);
        let probe = b.try_acquire(t0 + 10 * SEC).unwrap();
        probe.failure_at(t0 + 12 * SEC);
        assert_eq!(b.state_at(t0 + 12 * SEC), BreakerState::Open);
        assert_eq!(
            b.try_acquire(t0 + 13 * SEC).unwrap_err().retry_after,
            9 * SEC
        );
        assert!(b.try_acquire(t0 + 22 * SEC).unwrap().is_probe());
    }

    #[test]
    fn dropped_probe_frees_the_slot() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(1, SEC);
        fail(&b, t0);
        let probe = b.try_acquire(t0 + SEC).unwrap();
        drop(probe);
        assert_eq!(b.state_at(t0 + SEC), BreakerState::HalfOpen);
        let probe = b.try_acquire(t0 + SEC).unwrap();
        assert!(probe.is_probe());
        assert!(b.try_acquire(t0 + SEC).is_err());
        probe.success();
        assert_eq!(b.state_at(t0 + SEC), BreakerState::Closed);
    }

    #[test]
    fn stale_verdicts_are_ignored() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(2, SEC);
        let slow_ok = b.try_acquire(t0).unwrap();
        let slow_fail = b.try_acquire(t0).unwrap();
        fail(&b, t0);
        fail(&b, t0);
        assert_eq!(b.state_at(t0), BreakerState::Open);
        // A success from before the opening does not close it.
        slow_ok.success();
        assert_eq!(b.state_at(t0), BreakerState::Open);
        let probe = b.try_acquire(t0 + SEC).unwrap();
        probe.success();
        // A failure from before the opening does not count against the new closed state.
        slow_fail.failure_at(t0 + SEC);
        fail(&b, t0 + SEC);
        assert_eq!(b.state_at(t0 + SEC), BreakerState::Closed);
    }

    #[test]
    fn concurrent_half_open_admits_exactly_one_probe() {
        let t0 = Instant::now();
        let b = CircuitBreaker::new(1, SEC);
        fail(&b, t0);
        let now = t0 + SEC;
        let barrier = std::sync::Barrier::new(16);
        let permits: Vec<Permit> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        b.try_acquire(now).ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(permits.len(), 1);
        assert!(permits[0].is_probe());
        drop(permits);
        // The dropped probe released the slot.
        assert!(b.try_acquire(now).unwrap().is_probe());
    }

    #[test]
    fn clones_share_state() {
        let t0 = Instant::now();
        let a = CircuitBreaker::new(1, SEC);
        let b = a.clone();
        fail(&a, t0);
        assert_eq!(b.state_at(t0), BreakerState::Open);
        assert_eq!(BreakerState::Open.as_gauge(), 2);
    }

    /// The breaker runs on tokio's clock (`failure` reads it): a paused test advances it
    /// instead of sleeping through the cooldown.
    #[tokio::test(start_paused = true)]
    async fn the_cooldown_runs_on_tokios_clock() {
        let b = CircuitBreaker::new(1, 10 * SEC);
        let now = Instant::now;
        b.try_acquire(now()).expect("closed").failure();
        assert_eq!(b.state_at(now()), BreakerState::Open);
        tokio::time::advance(9 * SEC).await;
        assert_eq!(b.try_acquire(now()).unwrap_err().retry_after, SEC);
        tokio::time::advance(SEC).await;
        assert_eq!(b.state_at(now()), BreakerState::HalfOpen);
        let probe = b.try_acquire(now()).expect("the probe");
        assert!(probe.is_probe());
        probe.success();
        assert_eq!(b.state_at(now()), BreakerState::Closed);
    }
}
