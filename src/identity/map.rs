//! Identity mapping: a verified subject (or client certificate) becomes a JourneyBee identity
//! (upstream key, `userId`, access level) from the config's user table.

use crate::config::{Access, ClaimRules, Identity, Settings};
use crate::error::{Denial, GatewayError};
use crate::exchange::Reply;
use crate::identity::auth::{Authenticated, Credentials, VerifiedToken};
use crate::ingress::route::Routed;
use crate::observe::metrics::RequestMetrics;
use crate::policy::metrics::PolicyMetrics;
use crate::server::tls::PeerCert;
use crate::step::Step;
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

/// An authenticated request mapped to a JourneyBee identity.
#[derive(Debug)]
pub struct Identified<B> {
    /// The routed request.
    pub routed: Routed<B>,
    /// Who it is upstream: key, `userId`, access.
    pub identity: Arc<Identity>,
}

/// Maps the verified subject to an [`Identity`]; an unmapped subject gets 403.
#[derive(Clone)]
pub struct IdentityLayer {
    settings: Arc<Settings>,
    metrics: MapMetrics,
}

/// What mapping counts: refusals (403) with policy's, mapped users with the request metrics'.
#[derive(Clone)]
struct MapMetrics {
    denials: Arc<PolicyMetrics>,
    requests: Arc<RequestMetrics>,
}

impl MapMetrics {
    fn denial(&self, denial: Denial) {
        self.denials.denial(denial);
    }

    fn user_request(&self, identity: &Identity) {
        self.requests.user_request(identity);
    }
}

impl IdentityLayer {
    /// A layer mapping subjects with the user table in `settings`.
    pub fn new(
        settings: Arc<Settings>,
        denials: Arc<PolicyMetrics>,
        requests: Arc<RequestMetrics>,
    ) -> Self {
        Self {
            settings,
            metrics: MapMetrics { denials, requests },
        }
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
    metrics: MapMetrics,
}

impl<S> IdentityMap<S> {
    /// The token's user: the explicit table wins; an issuer's claim rules map everyone else.
    fn by_token(&self, token: &VerifiedToken) -> Option<Arc<Identity>> {
        self.settings
            .users
            .get(&token.subject)
            .cloned()
            .or_else(|| {
                let rules = self
                    .settings
                    .auth
                    .issuers
                    .get(token.issuer)?
                    .rules
                    .as_ref()?;
                map_by_rules(rules, token).map(Arc::new)
            })
    }

    /// The certificate's user, by its URI or DNS SANs; two SANs naming different users make
    /// the certificate ambiguous, which is refused rather than resolved by an order.
    fn by_certificate(&self, peer: &PeerCert) -> Result<Option<Arc<Identity>>, Denial> {
        let table = &self.settings.certificates;
        let mut found: Option<&Arc<Identity>> = None;
        for name in peer.sans() {
            if let Some(user) = table.get(name) {
                match found {
                    Some(f) if !Arc::ptr_eq(f, user) => return Err(Denial::CredentialMismatch),
                    _ => found = Some(user),
                }
            }
        }
        Ok(found.cloned())
    }
}

impl<S, B> Service<Authenticated<B>> for IdentityMap<S>
where
    S: Service<Identified<B>, Response = Reply, Error = Infallible>,
    S::Future: Unpin,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = Step<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Authenticated<B>) -> Self::Future {
        let Authenticated {
            routed,
            credentials,
        } = req;
        let identity = match &credentials {
            Credentials::Token(token) => Ok(self.by_token(token)),
            Credentials::Certificate(peer) => self.by_certificate(peer),
            // Both: the token names the user; a certificate mapped to a user must name the
            // same one. A certificate mapped to nobody (a transport certificate every client
            // has) leaves the token to decide.
            Credentials::Both(token, peer) => {
                match (self.by_token(token), self.by_certificate(peer)) {
                    (t, Ok(None)) => Ok(t),
                    (Some(t), Ok(Some(c))) if Arc::ptr_eq(&t, &c) => Ok(Some(t)),
                    _ => Err(Denial::CredentialMismatch),
                }
            }
        };
        let identity = match identity {
            Ok(identity) => identity,
            Err(denial) => {
                self.metrics.denial(denial);
                let reply = GatewayError::Forbidden(denial).into();
                return Step::boxed(crate::ingress::drain::reject(
                    routed.accepted.http.into_body(),
                    reply,
                ));
            }
        };
        let Some(identity) = identity else {
            self.metrics.denial(Denial::UnmappedUser);
            let reply = GatewayError::Forbidden(Denial::UnmappedUser).into();
            return Step::boxed(crate::ingress::drain::reject(
                routed.accepted.http.into_body(),
                reply,
            ));
        };
        self.metrics.user_request(&identity);
        let user = identity.name.clone();
        Step::next(self.inner.call(Identified { routed, identity })).user(user)
    }
}
