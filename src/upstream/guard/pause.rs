//! The pause an upstream 429 asks for: the key is paused (in every replica's budget log) for
//! as long as JourneyBee's `Retry-After` says, as delay-seconds or as an HTTP-date.

use crate::exchange::Reply;
use http::header::RETRY_AFTER;
use std::time::Duration;

/// An upstream 429 without a usable `Retry-After` pauses the key for a full minute.
const DEFAULT_PAUSE: Duration = Duration::from_secs(60);
/// Upper bound on a pause an upstream may ask for.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// The pause an upstream 429 asks for: `Retry-After` as delay-seconds or as an HTTP-date
/// (RFC 9110 §10.2.3), capped at [`MAX_PAUSE`]; [`DEFAULT_PAUSE`] when absent or unreadable.
pub(super) fn pause_for(reply: &Reply) -> Duration {
    let headers = reply.response.headers();
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v.trim(), headers.get(http::header::DATE)))
        .unwrap_or(DEFAULT_PAUSE)
        .min(MAX_PAUSE)
}

/// A `Retry-After` value as a delay. A date is measured from the response's own `Date` when
/// it has a valid one (both stamps then come from the upstream's clock, so a skew between
/// its clock and this host's does not shift the pause), else from this host's clock. A date
/// already past asks for no pause.
fn retry_after(value: &str, date: Option<&http::HeaderValue>) -> Option<Duration> {
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let now = date
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d.trim()).ok())
        .unwrap_or_else(std::time::SystemTime::now);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let at =
            |secs: u64| httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(secs));
        let hv = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert_eq!(retry_after("7", None), Some(Duration::from_secs(7)));
        // A date, measured from the response's own `Date`.
        let date = hv(&at(1_000_000));
        assert_eq!(
            retry_after(&at(1_000_042), Some(&date)),
            Some(Duration::from_secs(42))
        );
        // Past: no pause. Without a `Date`: from this host's clock.
        assert_eq!(retry_after(&at(999_000), Some(&date)), Some(Duration::ZERO));
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let wait = retry_after(&soon, None).unwrap();
        assert!(
            wait > Duration::from_secs(28) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(retry_after("soon", None), None);
    }
}
