//! What the cache did, for `X-Cache` and `Cache-Status` (RFC 9211).

use super::metrics::StaleReason;
use crate::exchange::CacheResult;
use http::header::{self, HeaderValue};
/// What the cache did, for `X-Cache` and `Cache-Status` (RFC 9211).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// A fresh copy of this replica's.
    Hit,
    /// A fresh copy another replica stored in the L2.
    SharedHit,
    /// Fetched and stored.
    Fetched {
        forced: bool,
        refreshed: bool,
        collapsed: bool,
    },
    /// Forwarded, not stored (a failure with no copy, or not storable).
    Forwarded {
        forced: bool,
        collapsed: bool,
        upstream: Option<u16>,
    },
    /// A copy past its freshness.
    Stale(StaleReason),
    /// The cache was not used.
    Bypass,
}

/// This cache's name in `Cache-Status`.
pub(super) const CACHE_NAME: &str = "journeybee-gateway";
pub(super) const CACHE_STATUS: header::HeaderName = header::HeaderName::from_static("cache-status");

impl Status {
    pub(super) fn result(self) -> CacheResult {
        match self {
            Status::Hit | Status::SharedHit => CacheResult::Hit,
            Status::Fetched { .. } | Status::Forwarded { .. } => CacheResult::Miss,
            Status::Stale(_) => CacheResult::Stale,
            Status::Bypass => CacheResult::Bypass,
        }
    }

    /// The `Cache-Status` member, with `ttl` (negative: stale) when a copy is served.
    pub(super) fn header(self, ttl: Option<i64>) -> HeaderValue {
        use std::fmt::Write as _;
        let mut v = String::with_capacity(64);
        v.push_str(CACHE_NAME);
        let fwd = |forced: bool, refreshed: bool| match (forced, refreshed) {
            (true, _) => "request",
            (false, true) => "stale",
            (false, false) => "uri-miss",
        };
        match self {
            Status::Hit => v.push_str("; hit"),
            Status::SharedHit => v.push_str("; hit; detail=shared"),
            Status::Stale(_) => v.push_str("; hit"),
            Status::Fetched {
                forced,
                refreshed,
                collapsed,
            } => {
                let _ = write!(
                    v,
                    "; fwd={}; fwd-status=200; stored",
                    fwd(forced, refreshed)
                );
                if collapsed {
                    v.push_str("; collapsed");
                }
            }
            Status::Forwarded {
                forced,
                collapsed,
                upstream,
            } => {
                let _ = write!(v, "; fwd={}", fwd(forced, false));
                if let Some(status) = upstream {
                    let _ = write!(v, "; fwd-status={status}");
                }
                if collapsed {
                    v.push_str("; collapsed");
                }
            }
            Status::Bypass => v.push_str("; fwd=bypass"),
        }
        if let Some(ttl) = ttl {
            let _ = write!(v, "; ttl={ttl}");
        }
        if let Status::Stale(reason) = self {
            let _ = write!(v, "; detail={}", reason.as_str());
        }
        HeaderValue::from_str(&v).expect("ASCII header")
    }
}
