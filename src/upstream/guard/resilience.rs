//! The circuit breaker and the retry budget: the upstream's recent history, which a reload
//! keeps unless their own settings change.

use crate::config::UpstreamSettings;
use crate::resilience::{CircuitBreaker, RetryBudget};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The circuit breaker and the retry budget: history that a reload keeps unless their own
/// settings change.
pub struct Resilience {
    pub(super) breaker: CircuitBreaker,
    /// Retries earned by original requests (a retry never earns any).
    pub(super) budget: RetryBudget,
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
            budget: RetryBudget::new(
                Duration::from_secs(10),
                up.retry_budget_ratio,
                3,
                Instant::now(),
            ),
            settings: Self::key(up),
        })
    }

    /// Whether this state was built for the same settings as `up` (so a reload keeps it).
    pub fn fits(&self, up: &UpstreamSettings) -> bool {
        self.settings == Self::key(up)
    }
}
