//! What a cached read is stored under.

use crate::ingress::route::Group;
use crate::validate::query::ListQuery;
use http::uri::PathAndQuery;
use std::sync::Arc;
/// What a cached read is stored under. Two requests share a key only if upstream must answer
/// them identically: same upstream key (and its generation of the route's data), same
/// forwarded path and canonical query (which carries the mapped `userId` on routes that take
/// one, never the client's).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The upstream key's name.
    pub upstream_key: Arc<str>,
    /// The family of data the read returns (its generation is per group).
    pub group: Group,
    /// Bumped by every accepted write to the route's data on that key, which orphans all
    /// older entries at once.
    pub generation: u64,
    /// The path and canonical query, exactly as forwarded.
    pub target: PathAndQuery,
}

impl CacheKey {
    /// The key of a read of `path` with `query`, forcing `user_id` where the route takes one:
    /// the same target the validation layer builds for the forward.
    pub fn new(
        upstream_key: Arc<str>,
        group: Group,
        generation: u64,
        path: &str,
        query: &ListQuery,
        user_id: Option<u64>,
    ) -> CacheKey {
        CacheKey {
            upstream_key,
            group,
            generation,
            target: query.target(path, user_id),
        }
    }

    pub(super) fn weight(&self) -> usize {
        self.upstream_key.len() + self.target.as_str().len() + 64
    }
}
