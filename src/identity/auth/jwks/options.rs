//! Where a source's keys come from and how they are fetched and filtered.

use jsonwebtoken::Algorithm;
use std::fmt;
use std::time::Duration;

/// Where a source's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksLocation {
    /// A configured JWKS URL.
    Url(http::Uri),
    /// The `jwks_uri` of this issuer's OpenID configuration, discovered on the first fetch
    /// (and retried with it until it succeeds).
    Discover(String),
}

impl fmt::Display for JwksLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksLocation::Url(u) => write!(f, "{u}"),
            JwksLocation::Discover(issuer) => write!(f, "discovery:{issuer}"),
        }
    }
}

/// How a [`JwksSource`](super::JwksSource) fetches and filters keys.
#[derive(Debug, Clone)]
pub struct JwksOptions {
    /// How often the background loop refetches the set (a little jitter is added so replicas do
    /// not fetch in step). Default 5 minutes; at least 1 second is used.
    pub refresh_interval: Duration,
    /// Minimum time between on-demand refreshes caused by unknown `kid`s, and the longest
    /// wait between retries while there are no keys at all. Default 30 seconds.
    pub unknown_kid_cooldown: Duration,
    /// Algorithms tokens may use; keys that can verify none of them are skipped. `HS*` entries
    /// are ignored (never from a JWKS). Default RS256 and ES256.
    pub allowed: Vec<Algorithm>,
    /// Usable keys kept from one document; more are dropped with a warning. Default 32.
    pub max_keys: usize,
    /// Bound on one fetch, OIDC discovery included (the issuer's `jwks_timeout`), and so on
    /// how long a request waits on an unknown-kid refetch; also the backstop in case the
    /// fetcher's own timeout does not fire. Default 5 seconds.
    pub fetch_timeout: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            refresh_interval: Duration::from_secs(300),
            unknown_kid_cooldown: Duration::from_secs(30),
            allowed: vec![Algorithm::RS256, Algorithm::ES256],
            max_keys: 32,
            fetch_timeout: Duration::from_secs(5),
        }
    }
}
