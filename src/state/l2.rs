//! The shared list cache (the L2) as a store answers it: a copy ([`L2Copy`]) and what a
//! lookup found ([`L2Lookup`]).

use bytes::Bytes;
use std::time::Duration;

/// A copy of a cached list kept in the shared L2, and how old it is by the server's clock
/// (RFC 9111 §5.1: a copy read from the L2 carries the age it has there, not zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Copy {
    /// The stored list.
    pub value: Bytes,
    /// Time since it was stored.
    pub age: Duration,
}

/// A cached list as shared between replicas (the L2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L2Lookup {
    /// Another replica fetched it under the current generation, and it is still fresh.
    Fresh(L2Copy),
    /// No fresh copy, and this replica now holds the fetch lock: fetch, then
    /// [`Store::l2_put`](super::Store::l2_put). `stale`: the copy past its freshness, if one is kept.
    Lead {
        /// The copy past its freshness, still within the stale window.
        stale: Option<L2Copy>,
    },
    /// No fresh copy, and another replica is fetching it: serve `stale` or poll again shortly.
    Busy {
        /// The copy past its freshness, still within the stale window.
        stale: Option<L2Copy>,
    },
}
