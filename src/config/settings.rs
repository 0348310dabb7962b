//! The whole validated configuration, and the validation that assembles it section by
//! section.

use super::cache::{validate_cache, validate_idempotency};
use super::digest::sha256;
use super::footprint::Footprint;
use super::raw::RawConfig;
use super::server::{validate_log, validate_server};
use super::upstream::validate_upstream;
use super::users::validate_users;
use super::validation::validate_body_rules;
use super::{
    auth, state, AuthSettings, CacheSettings, ConfigError, IdempotencySettings, Identity,
    LogSettings, Problems, ServerSettings, StateSettings, UpstreamSettings,
};
use crate::validate::body::BodyRules;
use crate::validate::query::QueryLimits;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The whole validated configuration.
#[derive(Debug)]
pub struct Settings {
    /// Listeners and limits.
    pub server: ServerSettings,
    /// Logging.
    pub log: LogSettings,
    /// The upstream and its keys.
    pub upstream: UpstreamSettings,
    /// JWT verification.
    pub auth: AuthSettings,
    /// Subject → identity.
    pub users: HashMap<String, Arc<Identity>>,
    /// Client certificate name (URI SAN as written, DNS SAN in lower case) → identity: users
    /// with `certificate`, some of them in `users` too.
    pub certificates: HashMap<String, Arc<Identity>>,
    /// Create-body rules.
    pub body_rules: BodyRules,
    /// List-query limits.
    pub query_limits: QueryLimits,
    /// List cache.
    pub cache: CacheSettings,
    /// Count requests per mapped user (label bounded by the user table).
    pub per_user_metrics: bool,
    /// Idempotency-Key handling.
    pub idempotency: IdempotencySettings,
    /// Default fair share per user (also applied to users mapped by claim rules).
    pub default_user_rpm: Option<u32>,
    /// Each admission counts against the key's budget for 60 s plus this margin, because
    /// JourneyBee counts a request when it arrives, a little after the gateway admitted it.
    pub budget_margin: Duration,
    /// The share of each key's limit kept for requests that have no copy anywhere (`cold`),
    /// writes and reference lookups: refreshes of cached lists and client-forced refetches
    /// are admitted only while the key has more than this left.
    pub refresh_reserve: f64,
    /// Where budgets, idempotency records and cache coherence live.
    pub state: StateSettings,
    /// OTLP span export (None: no span is recorded).
    pub tracing: Option<super::TracingSettings>,
    /// The routes served (the table minus `[routes] disabled`).
    pub routes: crate::ingress::route::RouteSet,
    /// Whether creates and updates are checked against the company's cached lookups.
    pub check_references: bool,
    /// SHA-256 of the config text and of every secret it loaded: equal digests mean a reload
    /// would change nothing.
    pub digest: [u8; 32],
}

impl Settings {
    /// Every user of the table once (by subject or certificate), in table order.
    pub fn identities(&self) -> Vec<Arc<Identity>> {
        let mut all: Vec<Arc<Identity>> = self
            .users
            .values()
            .chain(self.certificates.values())
            .cloned()
            .collect();
        all.sort_by_key(|u| u.index);
        all.dedup_by_key(|u| u.index);
        all
    }

    /// The window each admission counts in: JourneyBee's minute plus the margin.
    pub fn budget_window(&self) -> Duration {
        Duration::from_secs(60) + self.budget_margin
    }
}

/// Turns raw config into settings, collecting every problem.
pub fn validate(raw: RawConfig, base: &Path) -> Result<Settings, ConfigError> {
    let mut p = Problems::default();
    let server = validate_server(&raw.server, base, &mut p);
    let log = validate_log(&raw.log, &mut p);
    let upstream = match raw.upstream {
        Some(u) => validate_upstream(u, base, &mut p),
        None => {
            p.push(
                "upstream",
                "missing section (base_url and at least one key)",
            );
            None
        }
    };
    let auth = match raw.auth {
        Some(a) => auth::validate_auth(
            a,
            upstream.as_ref().map(|u| u.keys.as_slice()).unwrap_or(&[]),
            base,
            &mut p,
        ),
        None => {
            p.push("auth", "missing section (algorithms and keys)");
            None
        }
    };
    let table = validate_users(
        &raw.users,
        upstream.as_ref().map(|u| u.keys.as_slice()).unwrap_or(&[]),
        upstream.is_some(),
        raw.rate_limit.per_user_requests_per_minute,
        &mut p,
    );
    if !table.by_certificate.is_empty()
        && server
            .tls
            .as_ref()
            .and_then(|t| t.client_ca.as_ref())
            .is_none()
    {
        p.push(
            "users",
            "a user is mapped by certificate, but [server.tls] has no client_ca_file: no client certificate is ever asked for",
        );
    }
    let body_rules = validate_body_rules(&raw.validation, &mut p);
    let cache = validate_cache(&raw.cache, &mut p);
    let idempotency = validate_idempotency(&raw.idempotency, &mut p);
    let budget_margin = p.duration(
        "rate_limit.budget_margin",
        raw.rate_limit.budget_margin.as_deref(),
        Duration::from_secs(1),
    );
    if budget_margin > Duration::from_secs(60) {
        p.push("rate_limit.budget_margin", "must be at most 60s");
    }
    let refresh_reserve = match raw.rate_limit.refresh_reserve {
        None => 0.2,
        Some(r) if r.is_finite() && (0.0..1.0).contains(&r) => r,
        Some(_) => {
            p.push(
                "rate_limit.refresh_reserve",
                "must be a fraction of the key's limit, at least 0 and below 1",
            );
            0.0
        }
    };
    let state = state::validate_state(&raw.state, base, &mut p);
    let tracing = super::telemetry::validate_tracing(&raw.tracing, &mut p);
    let routes = match crate::ingress::route::RouteSet::parse(&raw.routes.disabled) {
        Ok(disabled) => crate::ingress::route::TABLE
            .iter()
            .filter(|s| disabled.contains(s.route))
            .fold(crate::ingress::route::RouteSet::ALL, |set, s| {
                set.without(s.route)
            }),
        Err(unknown) => {
            p.push(
                "routes.disabled",
                format!("not served routes: {}", unknown.join(", ")),
            );
            crate::ingress::route::RouteSet::ALL
        }
    };
    Footprint::of(&server, upstream.as_ref(), &cache, &idempotency).check(&mut p);
    let check_references = raw.validation.check_references.unwrap_or(true);
    let digest = sha256(&[&p.1]);
    match (upstream, auth) {
        (Some(upstream), Some(auth)) if p.0.is_empty() => Ok(Settings {
            server,
            log,
            upstream,
            auth,
            users: table.by_subject,
            certificates: table.by_certificate,
            body_rules,
            query_limits: QueryLimits::default(),
            cache,
            per_user_metrics: raw.metrics.per_user.unwrap_or(false),
            idempotency,
            default_user_rpm: raw
                .rate_limit
                .per_user_requests_per_minute
                .filter(|n| *n > 0),
            budget_margin,
            refresh_reserve,
            state,
            tracing,
            routes,
            check_references,
            digest,
        }),
        _ => Err(ConfigError { problems: p.0 }),
    }
}
