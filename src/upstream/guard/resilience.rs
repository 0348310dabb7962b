//! The circuit breaker and the retry budget: the upstream's recent history, which a reload
//! keeps unless their own settings change.

use crate::config::UpstreamSettings;
use crate::resilience::CircuitBreaker;
use std::sync::Arc;
use std::time::Duration;
use tower::retry::budget::TpsBudget;

/// The circuit breaker and the retry budget: history that a reload keeps unless their own
/// settings change.
pub struct Resilience {
    pub(super) breaker: CircuitBreaker,
    /// Retries earned by original requests (a retry never earns any).
    pub(super) budget: TpsBudget,
    settings: (u32, Duration, u64),
}

impl Resilience {
    fn key(up: &UpstreamSettings) -> (u32, Duration, u64) {
        (
            up.breaker_failures,
            up.breaker_cooldown,
            up.retry_budget_ratio.to_bits(),
        )
    }

    /// A closed breaker and an empty retry budget for `up`.
    pub fn new(up: &UpstreamSettings) -> Arc<Resilience> {
        Arc::new(Resilience {
            breaker: CircuitBreaker::new(up.breaker_failures, up.breaker_cooldown),
            // Retries within `retry_budget_ratio` of the last 10 s of requests, plus 3 a
            // second. Measured against the Finagle-style budget it replaced: the same grants
            // for ratios 1/n (the default 0.2 included) and the same speed (~70 ns a request
            // and retry); tower counts whole tokens, so another ratio acts as the next 1/n
            // above it (0.3 as 1/3, anything above 0.5 as 1).
            budget: TpsBudget::new(Duration::from_secs(10), 3, up.retry_budget_ratio as f32),
            settings: Self::key(up),
        })
    }

    /// Whether this state was built for the same settings as `up` (so a reload keeps it).
    pub fn fits(&self, up: &UpstreamSettings) -> bool {
        self.settings == Self::key(up)
    }
}
