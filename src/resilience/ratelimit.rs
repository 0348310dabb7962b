//! The IETF rate-limit response headers (and `Retry-After`) of a throttled answer.

use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use std::time::Duration;

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
/// `q` is the quota (requests per window), `w` the window in seconds, `r` the remaining quota
/// units and `t` the seconds until the quota is fully restored. Seconds are rounded up. The
/// older `limit=, remaining=, reset=` dictionary form of earlier drafts is deliberately not
/// emitted: sending both invites clients to disagree.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_use_the_structured_field_form() {
        let h = RateLimitHeaders {
            limit: 100,
            window: Duration::from_secs(60),
            remaining: 42,
            reset: Duration::from_millis(34_700),
            retry_after: None,
        };
        assert_eq!(h.policy_value(), "\"default\";q=100;w=60");
        // Seconds are rounded up.
        assert_eq!(h.ratelimit_value(), "\"default\";r=42;t=35");
        assert_eq!(h.retry_after_value(), None);

        let mut map = HeaderMap::new();
        RateLimitHeaders {
            retry_after: Some(Duration::from_millis(1)),
            ..h
        }
        .apply(&mut map);
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
}
