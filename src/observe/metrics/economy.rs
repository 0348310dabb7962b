//! How a saturated key's budget is spent and what is served without it: budget decisions by
//! class and pool, stale copies served by reason, and the age of every cached answer.
//! Registered once on the process's registry; every label set resolved up front.

use crate::exchange::BudgetClass;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// Budget pools a decision is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetPool {
    /// The budget every replica shares (the memory backend's whole budget).
    Shared = 0,
    /// This replica's private share, used when the shared budget is full or unreachable.
    Private = 1,
}

/// Why a stale copy was served instead of a fresh answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// Past its freshness but inside `stale_while_revalidate`: answered at once while a
    /// background fetch refreshes it (or tries to, within budget).
    Revalidating,
    /// The key's budget (above the reserve, for a refresh) or the user's share is spent, or
    /// the key is paused after an upstream 429.
    Budget,
    /// JourneyBee answered 429.
    RateLimited,
    /// JourneyBee answered 5xx, or could not be reached.
    Error,
    /// JourneyBee did not answer in time.
    Timeout,
    /// The circuit breaker is open.
    Breaker,
}

impl StaleReason {
    /// Every reason, for pre-resolving label sets.
    pub const ALL: [StaleReason; 6] = [
        StaleReason::Revalidating,
        StaleReason::Budget,
        StaleReason::RateLimited,
        StaleReason::Error,
        StaleReason::Timeout,
        StaleReason::Breaker,
    ];

    /// The metric label and the `Cache-Status` `detail` token.
    pub fn as_str(self) -> &'static str {
        match self {
            StaleReason::Revalidating => "revalidating",
            StaleReason::Budget => "budget",
            StaleReason::RateLimited => "rate-limited",
            StaleReason::Error => "error",
            StaleReason::Timeout => "timeout",
            StaleReason::Breaker => "breaker",
        }
    }
}

/// Buckets for the age of a served copy (seconds): fresh copies live under the TTL (30 s by
/// default), stale ones up to `max_stale` (5 min by default).
const AGE_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
];

/// The economy's handles.
pub struct EconomyMetrics {
    /// [class][pool][admitted, denied]
    decisions: [[[IntCounter; 2]; 2]; BudgetClass::ALL.len()],
    stale_served: [IntCounter; StaleReason::ALL.len()],
    /// [hit, miss, stale]
    served_age: [Histogram; 3],
}

impl EconomyMetrics {
    pub(crate) fn new(registry: &Registry) -> EconomyMetrics {
        let counter_vec = |n: &str, help: &str, labels: &[&str]| {
            let v =
                IntCounterVec::new(Opts::new(super::name(n), help), labels).expect("valid metric");
            registry
                .register(Box::new(v.clone()))
                .expect("metric names are unique");
            v
        };
        let decisions_vec = counter_vec(
            "budget_decisions_total",
            "Upstream budget decisions, by class (write, cold: no copy anywhere, refresh: a copy exists, forced: client no-cache, lookup: reference checks), pool (shared, private) and result (admitted, denied).",
            &["class", "pool", "result"],
        );
        let decisions = BudgetClass::ALL.map(|class| {
            ["shared", "private"].map(|pool| {
                ["admitted", "denied"]
                    .map(|r| decisions_vec.with_label_values(&[class.as_str(), pool, r]))
            })
        });
        let stale_vec = counter_vec(
            "cache_stale_served_total",
            "Lists answered from a copy past its freshness, by reason (revalidating, budget, rate-limited, error, timeout, breaker).",
            &["reason"],
        );
        let stale_served = StaleReason::ALL.map(|r| stale_vec.with_label_values(&[r.as_str()]));
        let age_vec = prometheus::HistogramVec::new(
            HistogramOpts::new(
                super::name("cache_served_age_seconds"),
                "Age of cached lists as served (the Age header), by result (hit, miss, stale).",
            )
            .buckets(AGE_BUCKETS.to_vec()),
            &["result"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(age_vec.clone()))
            .expect("metric names are unique");
        let served_age = ["hit", "miss", "stale"].map(|r| age_vec.with_label_values(&[r]));
        EconomyMetrics {
            decisions,
            stale_served,
            served_age,
        }
    }

    /// Counts a budget decision.
    pub fn decision(&self, class: BudgetClass, pool: BudgetPool, admitted: bool) {
        self.decisions[class as usize][pool as usize][usize::from(!admitted)].inc();
    }

    /// Counts a stale copy served.
    pub fn stale_served(&self, reason: StaleReason) {
        self.stale_served[reason as usize].inc();
    }

    /// Records the age of a cached answer.
    pub fn served_age(&self, result: crate::exchange::CacheResult, age_secs: f64) {
        use crate::exchange::CacheResult;
        let i = match result {
            CacheResult::Hit => 0,
            CacheResult::Miss => 1,
            CacheResult::Stale => 2,
            CacheResult::Bypass => return,
        };
        self.served_age[i].observe(age_secs);
    }
}
