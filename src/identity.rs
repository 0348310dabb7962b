//! Identity mapping: a verified subject becomes a JourneyBee identity (upstream key, `userId`,
//! access level) from the config's user table.

use crate::auth::VerifiedToken;
use crate::config::{Access, ClaimRules, Identity, Settings};
use crate::error::{Denial, GatewayError, Response};
use crate::metrics::Metrics;
use crate::BoxFuture;
use http::Request;
use serde_json::{Map, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Values of a claim that may be a string (space-separated, as OAuth `scope`) or an array.
fn claim_values<'a>(claims: &'a Map<String, Value>, name: &str) -> Vec<&'a str> {
    match claims.get(name) {
        Some(Value::String(s)) => s.split_whitespace().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Maps a token by its issuer's claim rules; None when it matches nothing (→ 403).
pub fn map_by_rules(rules: &ClaimRules, token: &VerifiedToken) -> Option<Identity> {
    let claims = &token.claims;
    let user_id = if let Some(claim) = &rules.user_id_claim {
        match claims.get(claim)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse::<u64>().ok(),
            _ => None,
        }
    } else {
        let claim = rules.user_id_lookup_claim.as_ref()?;
        let value = claims.get(claim)?.as_str()?;
        rules.user_ids.get(value).copied()
    }
    .filter(|id| *id > 0)?;
    let scopes = [claim_values(claims, "scope"), claim_values(claims, "scp")].concat();
    let writes = scopes
        .iter()
        .any(|s| rules.write_scopes.iter().any(|w| w == s))
        || claim_values(claims, &rules.groups_claim)
            .iter()
            .any(|g| rules.write_groups.iter().any(|w| w == g))
        || claim_values(claims, &rules.roles_claim)
            .iter()
            .any(|r| rules.write_roles.iter().any(|w| w == r));
    let (access, key) = match (&rules.write_key, &rules.read_key) {
        (Some(w), _) if writes => (Access::Write, w.clone()),
        (_, Some(r)) => (Access::Read, r.clone()),
        (Some(w), None) => (Access::Read, w.clone()),
        (None, None) => return None,
    };
    Some(Identity {
        name: Arc::from(token.subject.as_str()),
        // Rule-mapped users are not in the table: no per-user counter slot.
        index: usize::MAX,
        user_id,
        access,
        key,
        requests_per_minute: None,
        routes: rules.routes,
    })
}

/// The mapped user's config name, attached to the response for the access log.
#[derive(Debug, Clone)]
pub struct MappedUser(pub Arc<str>);

/// Maps the verified subject to an `Arc<Identity>` in the request's extensions; an unmapped
/// subject gets 403.
#[derive(Clone)]
pub struct IdentityLayer {
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
}

impl IdentityLayer {
    /// A layer mapping subjects with the user table in `settings`.
    pub fn new(settings: Arc<Settings>, metrics: Arc<Metrics>) -> Self {
        Self { settings, metrics }
    }
}

impl<S> Layer<S> for IdentityLayer {
    type Service = IdentityMap<S>;
    fn layer(&self, inner: S) -> IdentityMap<S> {
        IdentityMap {
            inner,
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Service produced by [`IdentityLayer`].
#[derive(Clone)]
pub struct IdentityMap<S> {
    inner: S,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for IdentityMap<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> BoxFuture {
        // The explicit table wins; an issuer's claim rules map everyone else.
        let identity: Option<Arc<Identity>> =
            req.extensions().get::<Arc<VerifiedToken>>().and_then(|t| {
                self.settings.users.get(&t.subject).cloned().or_else(|| {
                    let rules = self.settings.auth.issuers.get(t.issuer)?.rules.as_ref()?;
                    map_by_rules(rules, t).map(Arc::new)
                })
            });
        let Some(identity) = identity else {
            self.metrics.denial(Denial::UnmappedUser);
            let resp = GatewayError::Forbidden(Denial::UnmappedUser).into_response();
            return crate::drain::reject(req, resp);
        };
        self.metrics.user_request(&identity);
        let user = MappedUser(identity.name.clone());
        req.extensions_mut().insert(identity);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            resp.extensions_mut().insert(user);
            Ok(resp)
        })
    }
}
