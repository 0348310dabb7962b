//! Signing keys from the identity provider's JSON Web Key Set (JWKS).
//!
//! Okta, Entra ID, Auth0, Keycloak and Google publish their token-signing public keys as a JWKS
//! and rotate them without notice. [`JwksSource`] fetches that document, keeps the last good
//! copy as an immutable [`KeySet`], refreshes it on a timer and, rate-limited, when a token names
//! a `kid` the set does not have.
//!
//! Failure modes of other gateways this is built to avoid:
//! - keys never refetched after a rotation: [`JwksSource::spawn_refresh`] refreshes on a timer
//!   and [`JwksSource::refresh_for_unknown_kid`] on demand;
//! - a refetch on every unknown `kid`, which lets anyone hammer the IdP with made-up kids:
//!   on-demand refreshes are limited to one per [`JwksOptions::unknown_kid_cooldown`] and all
//!   concurrent callers share one fetch;
//! - the last good key set dropped when the IdP blips: a failed fetch or an unusable document
//!   never replaces the current set;
//! - a crash on a failed fetch: every failure is a `Result`, nothing here panics on any input.
//!
//! Security rules:
//! - Keys come only from the configured URL (or the `jwks_uri` of the configured issuer's
//!   discovery document). A token's `jku`, `x5u`, `jwk` and `x5c` headers are never read or
//!   followed, here or in the verifier: they would let a token name its own key.
//! - Symmetric keys (`kty: oct`) and `HS*` algorithms are never taken from a JWKS: the document
//!   is public, so an HMAC key in it is a key anyone can sign with.
//! - A key that carries private members (`d`) is skipped: a published private key is
//!   compromised.
//! - A key verifies only the algorithms it was published for (its `alg`), or without `alg` only
//!   the algorithms of its type and curve that the gateway allows, so a token's `alg` never
//!   chooses how a key is used.

mod discovery;
mod keys;
mod memory;
mod source;

pub use discovery::{check_jwks_url, discover_jwks_uri};
pub use keys::{parse_jwks, JwkKey, KeyId, KeySet};
pub use memory::{KeyMemory, MemoryKey};
pub use source::{JwksLocation, JwksSource, JwksStats, RefreshTask};

use bytes::Bytes;
use jsonwebtoken::Algorithm;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// What a [`Fetcher`] returns: the response body, or why there is none.
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send>>;

/// Fetches a URL's body — supplied by the gateway so this module does not depend on its HTTP
/// client. Implementations send a GET, treat any status but 2xx as an error, bound the body
/// size (see [`MAX_DOCUMENT_BYTES`]) and apply a timeout.
pub trait Fetcher: Send + Sync + 'static {
    /// GETs `url` and returns its body.
    fn get(&self, url: &http::Uri) -> FetchFuture;
}

/// Largest JWKS or discovery document accepted. Real ones are a few KiB; the fetcher should
/// stop reading well before this, and this module checks again so a fetcher that does not
/// cannot make it parse an arbitrarily large body.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// How a [`JwksSource`] fetches and filters keys.
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

/// Shortens `s` to at most `max` bytes on a char boundary, so messages built from a document
/// stay small.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("ééé", 3), "é…");
    }
}
