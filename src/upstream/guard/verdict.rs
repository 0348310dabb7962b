//! How an exchange went, judged once from its reply: what the breaker is told, and whether a
//! list may be retried.

use crate::error::Rejection;
use crate::exchange::Reply;
use crate::resilience::Permit;

/// How an exchange went, for retries and the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// A response that says upstream is healthy (2xx-4xx).
    Healthy,
    /// Upstream answered 429: healthy, but over its limit.
    Limited,
    /// A failure worth retrying for a list: no connection, reset before a response, 502/503/504.
    Retryable,
    /// A failure not worth retrying (timeout, other 5xx, unknown create outcome).
    Failed,
}

pub(super) fn judge(reply: &Reply) -> Verdict {
    match reply.upstream_status() {
        Some(429) => Verdict::Limited,
        Some(502..=504) => Verdict::Retryable,
        Some(s) if s >= 500 => Verdict::Failed,
        Some(_) => Verdict::Healthy,
        None => match reply.facts.rejection {
            Some(Rejection::UpstreamUnreachable) => Verdict::Retryable,
            _ => Verdict::Failed,
        },
    }
}

impl Verdict {
    /// Tells the breaker how the exchange went.
    pub(super) fn settle(self, permit: Permit) {
        match self {
            Verdict::Healthy | Verdict::Limited => permit.success(),
            Verdict::Retryable | Verdict::Failed => permit.failure(),
        }
    }
}
