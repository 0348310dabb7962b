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
mod fetcher;
mod keys;
mod memory;
mod options;
mod source;

pub use discovery::{check_jwks_url, discover_jwks_uri};
pub use fetcher::{FetchFuture, Fetcher, MAX_DOCUMENT_BYTES};
pub use keys::{parse_jwks, JwkKey, KeyId, KeySet};
pub use memory::{KeyMemory, MemoryKey};
pub use options::{JwksLocation, JwksOptions};
pub use source::{JwksSource, JwksStats, RefreshTask};
