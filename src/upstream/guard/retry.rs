//! Safe retries: only lists are retried (connect errors, resets before a response,
//! 502/503/504), at most `upstream.retries` times, each within the retry budget (so retries
//! cannot amplify an outage) and after a jittered backoff; a create is sent at most once.

use crate::config::UpstreamSettings;
use crate::upstream::guard::verdict::Verdict;
use std::time::Duration;
use tower::retry::budget::{Budget as _, TpsBudget};

/// How many times a list is retried, and how long it waits before each retry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retries {
    limit: u32,
    backoff_base: Duration,
    backoff_max: Duration,
}

impl Retries {
    /// The policy of `up` (`retries`, `retry_backoff`, `retry_backoff_max`).
    pub(super) fn new(up: &UpstreamSettings) -> Retries {
        Retries {
            limit: up.retries,
            backoff_base: up.retry_backoff,
            backoff_max: up.retry_backoff_max,
        }
    }

    /// Whether a list whose `attempt`-th try (0 for the original) went as `verdict` is tried
    /// again: a retryable failure, retries left, and one granted by `budget` (asked last, as
    /// asking spends it).
    pub(super) fn allow(&self, attempt: u32, verdict: Verdict, budget: &TpsBudget) -> bool {
        verdict == Verdict::Retryable && attempt < self.limit && budget.withdraw()
    }

    /// How long to wait before retrying after the `attempt`-th try.
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        crate::timeouts::retry_backoff(attempt, self.backoff_base, self.backoff_max)
    }
}
