//! A sliding-window limiter: at most `limit` acquisitions in any `window`.
//!
//! JourneyBee allows 100 requests a minute per key. A token bucket of capacity 100 refilling
//! 100/min would let ~200 through in the first minute (a full bucket plus a minute of refill)
//! and earn upstream 429s; a log of send times never exceeds the limit in any window.

use super::bucket::RateLimitHeaders;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct State {
    sent: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

/// At most `limit` acquisitions in any `window`, plus a pause an upstream 429 can impose.
#[derive(Debug)]
pub struct SlidingWindow {
    limit: u32,
    window: Duration,
    state: Mutex<State>,
}

impl SlidingWindow {
    /// A limiter allowing `limit` per `window` (`limit` ≥ 1).
    pub fn new(limit: u32, window: Duration) -> Self {
        SlidingWindow {
            limit: limit.max(1),
            window,
            state: Mutex::new(State {
                sent: VecDeque::with_capacity(limit as usize),
                paused_until: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn prune(&self, state: &mut State, now: Instant) {
        while let Some(&first) = state.sent.front() {
            if now.saturating_duration_since(first) >= self.window {
                state.sent.pop_front();
            } else {
                break;
            }
        }
    }

    /// Takes one slot, or says how long until one frees.
    pub fn try_acquire(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.lock();
        if let Some(until) = state.paused_until {
            if until > now {
                return Err(until - now);
            }
            state.paused_until = None;
        }
        self.prune(&mut state, now);
        if (state.sent.len() as u32) < self.limit {
            state.sent.push_back(now);
            Ok(())
        } else {
            let first = *state.sent.front().expect("full window is not empty");
            Err((first + self.window)
                .saturating_duration_since(now)
                .max(Duration::from_millis(1)))
        }
    }

    /// Refuses every acquisition until `until` (an upstream 429's `Retry-After`).
    pub fn pause_until(&self, until: Instant) {
        let mut state = self.lock();
        state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
    }

    /// Slots left now.
    pub fn remaining(&self, now: Instant) -> u32 {
        let mut state = self.lock();
        if state.paused_until.is_some_and(|u| u > now) {
            return 0;
        }
        self.prune(&mut state, now);
        self.limit - state.sent.len() as u32
    }

    /// The IETF RateLimit fields for a refusal that must wait `retry_after`.
    pub fn headers(&self, now: Instant, retry_after: Duration) -> RateLimitHeaders {
        let remaining = self.remaining(now);
        let reset = {
            let state = self.lock();
            state
                .sent
                .front()
                .map(|f| (*f + self.window).saturating_duration_since(now))
                .unwrap_or_default()
                .max(retry_after)
        };
        RateLimitHeaders {
            limit: self.limit,
            window: self.window,
            remaining,
            reset,
            retry_after: Some(retry_after),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_limit_in_any_window() {
        let w = SlidingWindow::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(w.try_acquire(t0 + Duration::from_secs(i)).is_ok());
        }
        let wait = w.try_acquire(t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(w.remaining(t0 + Duration::from_secs(10)), 0);
        assert!(w.try_acquire(t0 + Duration::from_secs(60)).is_ok());
        assert!(w.try_acquire(t0 + Duration::from_secs(60)).is_err());
        assert!(w.try_acquire(t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn a_pause_refuses_until_it_ends() {
        let w = SlidingWindow::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        w.pause_until(t0 + Duration::from_secs(5));
        assert_eq!(w.try_acquire(t0).unwrap_err(), Duration::from_secs(5));
        assert_eq!(w.remaining(t0), 0);
        assert!(w.try_acquire(t0 + Duration::from_secs(5)).is_ok());
        assert_eq!(w.remaining(t0 + Duration::from_secs(5)), 9);
    }
}
