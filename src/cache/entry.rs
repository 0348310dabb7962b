//! A cached response: the snapshot shared between waiters and stored, the stored entry with
//! its times, and the outcome of one fetch.

use super::metrics::StaleReason;
use crate::error::{Rejection, Throttle};
use crate::exchange::{Facts, Reply};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::StatusCode;
use http_body_util::Full;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
/// A response as it can be shared between waiters and stored: everything but the body is
/// small, and the body is a shared `Bytes`.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Full<Bytes>,
    pub(super) facts: Facts,
}

impl Snapshot {
    pub(super) fn from_reply(reply: Reply) -> Snapshot {
        let (parts, body) = reply.response.into_parts();
        Snapshot {
            status: parts.status,
            headers: parts.headers,
            // A `Full` body is one shared chunk: keeping it copies nothing.
            body,
            facts: reply.facts,
        }
    }

    /// The reply, with room for `extra` more headers (the cache's own, the request id) so
    /// adding them does not grow the map again.
    pub(super) fn to_reply(&self, extra: usize) -> Reply {
        let mut resp = http::Response::new(self.body.clone());
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        headers.reserve(self.headers.len() + extra);
        // Values are shared bytes: copying the map copies no header text.
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        Reply {
            response: resp,
            facts: self.facts.clone(),
        }
    }

    /// The same response in allocations of its own. hyper hands out the body and header
    /// values as slices of the connection's read buffer (8 KiB and up): a stored slice would
    /// keep that whole buffer alive, several times what the weigher counts for the entry.
    pub(super) fn detached(self) -> Snapshot {
        let body = crate::exchange::body_bytes(&self.body);
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let mut copy =
                HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
            copy.set_sensitive(value.is_sensitive());
            headers.append(name.clone(), copy);
        }
        Snapshot {
            status: self.status,
            headers,
            body: Full::new(Bytes::copy_from_slice(&body)),
            facts: self.facts,
        }
    }

    pub(super) fn body_len(&self) -> usize {
        use hyper::body::Body as _;
        self.body.size_hint().exact().unwrap_or(0) as usize
    }

    pub(super) fn weight(&self) -> usize {
        self.body_len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 32)
                .sum::<usize>()
            + 96
    }

    /// Why this answer is a reason to serve a stale copy instead, if it is one: the budget
    /// or the breaker refused the fetch, or upstream answered 429 or 5xx, timed out or could
    /// not be reached. Anything else (a 4xx, a 200 that was not storable) is passed on.
    pub(super) fn stale_reason(&self) -> Option<StaleReason> {
        match self.facts.rejection {
            Some(Rejection::Throttled(Throttle::CircuitOpen)) => Some(StaleReason::Breaker),
            Some(Rejection::Throttled(_)) => Some(StaleReason::Budget),
            Some(Rejection::UpstreamTimeout | Rejection::RequestTimeout) => {
                Some(StaleReason::Timeout)
            }
            Some(Rejection::UpstreamUnreachable | Rejection::UpstreamTooLarge) => {
                Some(StaleReason::Error)
            }
            _ if self.status == StatusCode::TOO_MANY_REQUESTS => Some(StaleReason::RateLimited),
            _ if self.status.is_server_error() => Some(StaleReason::Error),
            _ => None,
        }
    }
}

/// A stored read response.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) snapshot: Snapshot,
    /// When it was fetched from upstream (for a copy from the L2: backdated by its age there).
    pub(super) stored_at: Instant,
    /// How long it is fresh (the route's TTL).
    pub(super) ttl: Duration,
}

impl Entry {
    pub(super) fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored_at)
    }
}

/// The outcome of one fetch, shared with everyone who waited for it.
#[derive(Debug)]
pub(super) enum Fetched {
    /// Fetched from upstream, stored and fresh.
    Stored(Arc<Entry>),
    /// Answered but not storable (not 200 JSON, `no-store`, too large), or a failure with no
    /// copy to serve instead.
    Passed(Box<Snapshot>),
    /// Fetched by another replica (the shared L2), now stored here too.
    Shared(Arc<Entry>),
    /// A copy past its freshness, served for this reason.
    Stale(Arc<Entry>, StaleReason),
    /// A background refresh found another replica refreshing it and brought nothing back:
    /// whoever waited on it looks again.
    Elsewhere,
}
