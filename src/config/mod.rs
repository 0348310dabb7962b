//! Configuration in two steps: [`raw`] mirrors the TOML file strictly, then [`validate`] turns it
//! into typed [`Settings`], reporting every problem at once with its path.
//!
//! One file per concern: [`load`](load()) and the digest, the `Problems` collector, the
//! whole [`Settings`] and their assembly, then one file per section (`server` and `log`,
//! `upstream` and its keys, `users`, `cache` and `idempotency`, `validation`, [`auth`],
//! [`state`]). Every type is re-exported here: `config::X` is the public path.

pub mod auth;
mod cache;
pub mod ceilings;
mod digest;
mod footprint;
mod load;
mod names;
mod problems;
pub mod raw;
mod secret;
mod server;
mod settings;
pub mod state;
mod telemetry;
pub mod tls;
pub mod units;
mod upstream;
mod users;
mod validation;

pub use auth::{AuthSettings, ClaimRules, IssuerSettings, JwksSettings, VerifyKey};
pub use cache::{CacheSettings, IdempotencySettings};
pub use load::{from_toml, load};
pub use problems::ConfigError;
pub(crate) use problems::Problems;
pub(crate) use secret::read_secret;
pub use server::{ClientCertMode, LogFormat, LogSettings, ServerSettings, TlsSettings};
pub use settings::{validate, Settings};
pub use state::{Backend, StateSettings};
pub use telemetry::TracingSettings;
pub use upstream::{RequestsPerMinute, UpstreamKey, UpstreamSettings};
pub(crate) use users::route_set;
pub use users::{Access, Identity};
