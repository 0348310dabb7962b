//! The config file exactly as written: strict serde structs, no interpretation.
//!
//! Every struct denies unknown fields so a typo (`shutdown_grase`) is an error, not a silently
//! ignored option. Durations and sizes stay strings here; `validate` turns them into types.

use serde::Deserialize;
use std::path::PathBuf;

/// The whole TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub log: RawLog,
    pub upstream: Option<RawUpstream>,
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub validation: RawValidation,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub rate_limit: RawRateLimit,
    #[serde(default)]
    pub idempotency: RawIdempotency,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub routes: RawRoutes,
    #[serde(default)]
    pub tracing: RawTracing,
}

/// `[tracing]`: OTLP/HTTP span export (off without `otlp_endpoint`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    pub otlp_endpoint: Option<String>,
    pub sample_ratio: Option<f64>,
    pub export_interval: Option<String>,
    pub export_timeout: Option<String>,
    pub max_queue_size: Option<usize>,
    pub max_export_batch_size: Option<usize>,
}

/// `[routes]`: which of the built-in routes this gateway serves.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoutes {
    /// Routes answered 404 (`"DELETE /api/v1/partnerships/{partnershipId}"`).
    #[serde(default)]
    pub disabled: Vec<String>,
}

/// `[state]`: the store shared by replicas (or kept in memory across reloads).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub backend: Option<String>,
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    pub connect_timeout: Option<String>,
    pub command_timeout: Option<String>,
    pub key_prefix: Option<String>,
    pub max_replicas: Option<u32>,
    pub private_share: Option<f64>,
    pub degraded_max_age: Option<String>,
}

/// `[rate_limit]`: per-user fair share of the upstream budget.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub per_user_requests_per_minute: Option<u32>,
    pub budget_margin: Option<String>,
    pub refresh_reserve: Option<f64>,
}

/// `[idempotency]`: remembered create outcomes for `Idempotency-Key`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdempotency {
    pub ttl: Option<String>,
    pub capacity: Option<String>,
    pub wait: Option<String>,
}

/// `[server]`: listeners and request-level limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub shutdown_grace: Option<String>,
    pub request_timeout: Option<String>,
    pub max_body_size: Option<String>,
    pub max_header_size: Option<String>,
    pub max_uri_length: Option<String>,
    pub header_read_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_in_flight: Option<usize>,
    /// `[server.tls]`: HTTPS on the public listener.
    pub tls: Option<RawServerTls>,
}

/// `[server.tls]`: the public listener's certificate, and client certificates.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    /// PEM chain, leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificate(s) client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// `"optional"` or `"required"` (default `"optional"` when `client_ca_file` is set).
    pub client_cert: Option<String>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

/// `[upstream]`: where JourneyBee is and how to reach it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub base_url: Option<String>,
    pub allow_plain_http: Option<bool>,
    pub extra_ca_file: Option<PathBuf>,
    pub connect_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub max_response_size: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle_per_host: Option<usize>,
    pub max_connections: Option<usize>,
    pub retries: Option<u32>,
    pub retry_backoff: Option<String>,
    pub retry_backoff_max: Option<String>,
    pub retry_budget_ratio: Option<f64>,
    pub breaker_failures: Option<u32>,
    pub breaker_cooldown: Option<String>,
    #[serde(default)]
    pub keys: std::collections::BTreeMap<String, RawUpstreamKey>,
}

/// `[upstream.keys.<name>]`: one JourneyBee API key, its secret read from the environment or a file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamKey {
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub read: Option<bool>,
    pub write: Option<bool>,
    pub requests_per_minute: Option<RawRequestsPerMinute>,
}

/// A key's `requests_per_minute` as written: an integer, or a word (`"unlimited"`). Anything
/// else is a parse error naming both forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawRequestsPerMinute {
    /// `requests_per_minute = 100` (any integer: the range is checked by `validate`).
    Count(i64),
    /// `requests_per_minute = "unlimited"` (any string: the word is checked by `validate`).
    Word(String),
}

impl<'de> Deserialize<'de> for RawRequestsPerMinute {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawRequestsPerMinute;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a positive integer or \"unlimited\"")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(RawRequestsPerMinute::Count(n))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(RawRequestsPerMinute::Count(
                    i64::try_from(n).unwrap_or(i64::MAX),
                ))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(RawRequestsPerMinute::Word(s.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `[auth]`: how client JWTs are verified. Its own issuer fields describe the default issuer
/// (the common single-IdP setup); `[[auth.issuers]]` adds more.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub algorithms: Option<Vec<String>>,
    pub issuer: Option<StringOrList>,
    pub audience: Option<StringOrList>,
    pub leeway: Option<String>,
    pub subject_claim: Option<String>,
    pub max_token_size: Option<String>,
    #[serde(default)]
    pub keys: Vec<RawVerifyKey>,
    pub jwks_url: Option<String>,
    pub discovery: Option<bool>,
    pub jwks_refresh: Option<String>,
    pub jwks_cooldown: Option<String>,
    pub jwks_timeout: Option<String>,
    pub token_types: Option<Vec<String>>,
    pub rules: Option<RawRules>,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
}

/// `[[auth.issuers]]`: one more trusted token issuer, with its own keys, audience and rules.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub name: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub issuer: Option<StringOrList>,
    pub audience: Option<StringOrList>,
    pub leeway: Option<String>,
    pub subject_claim: Option<String>,
    #[serde(default)]
    pub keys: Vec<RawVerifyKey>,
    pub jwks_url: Option<String>,
    pub discovery: Option<bool>,
    pub jwks_refresh: Option<String>,
    pub jwks_cooldown: Option<String>,
    pub jwks_timeout: Option<String>,
    pub token_types: Option<Vec<String>>,
    pub rules: Option<RawRules>,
}

/// `[auth.rules]` / `[auth.issuers.rules]`: map users by claims instead of listing them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    pub user_id_claim: Option<String>,
    pub user_id_lookup_claim: Option<String>,
    pub user_ids: Option<std::collections::BTreeMap<String, i64>>,
    pub read_key: Option<String>,
    pub write_key: Option<String>,
    #[serde(default)]
    pub write_scopes: Vec<String>,
    #[serde(default)]
    pub write_groups: Vec<String>,
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub write_roles: Vec<String>,
    pub roles_claim: Option<String>,
    /// Restricts the users these rules map to these routes.
    pub routes: Option<Vec<String>>,
}

/// A string or a list of strings (`audience = "a"` or `audience = ["a", "b"]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    /// The values as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

/// `[[auth.keys]]`: one verification key: an HMAC secret or a PEM public key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerifyKey {
    pub kid: Option<String>,
    pub hmac_secret_env: Option<String>,
    pub hmac_secret_file: Option<PathBuf>,
    pub public_key_env: Option<String>,
    pub public_key_file: Option<PathBuf>,
}

/// `[[users]]`: one row of the identity table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub subject: Option<String>,
    /// A client certificate's URI SAN (`spiffe://corp/crm-sync`) or DNS SAN that maps to this
    /// user (machine clients without an IdP); with `subject` too, both name the same user.
    pub certificate: Option<String>,
    pub name: Option<String>,
    pub upstream_key: Option<String>,
    pub user_id: Option<i64>,
    pub access: Option<String>,
    pub requests_per_minute: Option<u32>,
    /// Restricts the user to these routes (`"GET /api/v1/tiers"`); default all its access allows.
    pub routes: Option<Vec<String>>,
}

/// `[validation]`: create-body and list-query rules.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValidation {
    pub allow_unknown_fields: Option<bool>,
    pub free_mail_domains: Option<Vec<String>>,
    pub extra_free_mail_domains: Option<Vec<String>>,
    pub own_domains: Option<Vec<String>>,
    pub max_name_length: Option<usize>,
    pub max_emails: Option<usize>,
    pub check_references: Option<bool>,
}

/// `[cache]`: the list-response cache.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub enabled: Option<bool>,
    pub ttl: Option<String>,
    pub capacity: Option<String>,
    pub max_entry_size: Option<String>,
    pub max_stale: Option<String>,
    /// The older name of `max_stale`, still accepted.
    pub stale_if_error: Option<String>,
    pub stale_while_revalidate: Option<String>,
    pub lookup_ttl: Option<String>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub per_user: Option<bool>,
}
