//! Upstream: everything between a validated request and JourneyBee. The guard (fair share,
//! budget, breaker, connection bound, retries) decides whether and when a request may go; the
//! forward ([`forward`]) is the only place a request leaves the gateway, over the pool of
//! keep-alive connections ([`pool`]) the connectors build ([`connect`]).

pub mod connect;
pub mod forward;
pub mod guard;
pub mod metrics;
pub mod pool;

pub use connect::{build_client, build_pool, HttpClient};
pub use forward::*;
