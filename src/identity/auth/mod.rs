//! Authentication: every proxied request carries exactly one `Authorization: Bearer <JWT>`.

pub mod fetch;
pub mod jwks;
pub mod typ;
pub mod verify;

use crate::error::{AuthFailure, GatewayError};
use crate::exchange::Reply;
use crate::identity::metrics::AuthMetrics;
use crate::ingress::route::Routed;
use crate::server::tls::PeerCert;
use crate::step::Step;
use http::header::AUTHORIZATION;
use http::HeaderMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};
pub use verify::{IssuerStatus, VerifiedToken, Verifier};

/// Each issuer's readiness for the `/readyz` body: name → ready, key source, key count, last
/// successful load and consecutive failures. No key material, no kid.
pub fn readiness_json(verifier: &Verifier) -> serde_json::Value {
    let issuers = verifier
        .issuer_status()
        .into_iter()
        .map(|s| {
            (
                s.name,
                serde_json::json!({
                    "ready": s.ready,
                    "source": s.source,
                    "keys": s.keys,
                    "last_success_unix": s.last_success_unix,
                    "consecutive_failures": s.consecutive_failures,
                }),
            )
        })
        .collect::<serde_json::Map<_, _>>();
    serde_json::Value::Object(issuers)
}

/// What a request proved about its sender: a verified bearer token, the connection's verified
/// client certificate, or both (which must then name the same user: see `identity`).
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A bearer token only.
    Token(Arc<VerifiedToken>),
    /// A client certificate only (a machine client without an IdP).
    Certificate(Arc<PeerCert>),
    /// Both.
    Both(Arc<VerifiedToken>, Arc<PeerCert>),
}

impl Credentials {
    fn token(token: Arc<VerifiedToken>, peer: Option<Arc<PeerCert>>) -> Credentials {
        match peer {
            Some(peer) => Credentials::Both(token, peer),
            None => Credentials::Token(token),
        }
    }
}

/// A routed request whose credentials verified.
#[derive(Debug)]
pub struct Authenticated<B> {
    /// The routed request.
    pub routed: Routed<B>,
    /// What verified.
    pub credentials: Credentials,
}

/// Verifies the bearer token; a request continues as [`Authenticated`], or is refused with
/// 401 and `WWW-Authenticate`.
#[derive(Clone)]
pub struct AuthLayer {
    verifier: Arc<Verifier>,
    metrics: Arc<AuthMetrics>,
}

impl AuthLayer {
    /// A layer verifying with `verifier`, counting failures in `metrics`.
    pub fn new(verifier: Arc<Verifier>, metrics: Arc<AuthMetrics>) -> Self {
        Self { verifier, metrics }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            verifier: self.verifier.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Service produced by [`AuthLayer`].
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    verifier: Arc<Verifier>,
    metrics: Arc<AuthMetrics>,
}

/// Pulls the single bearer credential out of a request's headers; `in_query` says whether
/// its query also carries an `access_token`.
///
/// RFC 6750 §2: a client must not use more than one method to send the token, so a second
/// `Authorization` header or an `access_token` query parameter is refused, not ignored (and a
/// token in the query string would end up in access logs upstream of us).
pub fn bearer_token(headers: &HeaderMap, in_query: bool) -> Result<&str, AuthFailure> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) if in_query => return Err(AuthFailure::Malformed),
        (None, _) => return Err(AuthFailure::Missing),
        (Some(_), Some(_)) => return Err(AuthFailure::MultipleCredentials),
        (Some(_), None) if in_query => return Err(AuthFailure::MultipleCredentials),
        (Some(v), None) => v,
    };
    let value = value.to_str().map_err(|_| AuthFailure::Malformed)?;
    // The auth scheme is case-insensitive (RFC 9110 §11.1).
    let (scheme, token) = value.split_once(' ').ok_or(AuthFailure::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Malformed);
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(AuthFailure::Malformed);
    }
    Ok(token)
}

impl<S, B> Service<Routed<B>> for Auth<S>
where
    S: Service<Authenticated<B>, Response = Reply, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + Unpin + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = Step<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, routed: Routed<B>) -> Self::Future {
        // The connection's verified client certificate, handed to the request by the listener
        // (a client cannot set an extension).
        let peer = routed
            .accepted
            .http
            .extensions()
            .get::<Arc<PeerCert>>()
            .cloned();
        // The authentication span ends with the decision, before the rest of the stack runs.
        let mut span = crate::observe::trace::Span::child(
            routed.accepted.http.extensions().get(),
            "authenticate",
            crate::observe::trace::Kind::Internal,
        );
        if peer.as_ref().is_some_and(|p| p.expired()) {
            span_result(
                &mut span,
                "certificate",
                Err(AuthFailure::CertificateExpired),
            );
            self.metrics.auth_failure(AuthFailure::CertificateExpired);
            return Step::boxed(crate::ingress::drain::reject(
                routed.accepted.http.into_body(),
                GatewayError::Unauthenticated(AuthFailure::CertificateExpired).into(),
            ));
        }
        let token = bearer_token(routed.accepted.http.headers(), routed.query.access_token);
        // No bearer credential at all: a client certificate alone authenticates. A token that
        // is there but bad is never ignored because a certificate came with it.
        if let (Err(AuthFailure::Missing), Some(peer)) = (&token, &peer) {
            let credentials = Credentials::Certificate(peer.clone());
            span_result(&mut span, "certificate", Ok(()));
            drop(span);
            return Step::next(self.inner.call(Authenticated {
                routed,
                credentials,
            }));
        }
        // Fast path: a token verified before (and not expired) is answered from the verified-
        // token cache without awaiting anything, so the rest of the stack is called directly.
        if let Ok(Some(token)) = token.map(|t| self.verifier.cached(t)) {
            let credentials = Credentials::token(token, peer);
            span_result(&mut span, "jwt", Ok(()));
            drop(span);
            return Step::next(self.inner.call(Authenticated {
                routed,
                credentials,
            }));
        }
        let token = token.map(str::to_owned);
        let verifier = self.verifier.clone();
        let metrics = self.metrics.clone();
        // The service polled ready is the one called, later; a fresh clone waits here for
        // the next poll_ready.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        Step::boxed(Box::pin(async move {
            let verified = match token {
                // A key-set refetch for an unknown kid is bounded by jwks_timeout, and by the
                // request's deadline.
                Ok(t) => match tokio::time::timeout_at(
                    routed.accepted.deadline.at(),
                    verifier.verify_cached(&t),
                )
                .await
                {
                    Ok(v) => v,
                    Err(_) => {
                        span.attr("jbgw.auth.result", "timeout");
                        drop(span);
                        return crate::ingress::drain::reject(
                            routed.accepted.http.into_body(),
                            GatewayError::RequestTimeout.into(),
                        )
                        .await;
                    }
                },
                Err(e) => Err(e),
            };
            span_result(
                &mut span,
                "jwt",
                verified.as_ref().map(|_| ()).map_err(|f| *f),
            );
            drop(span);
            match verified {
                Ok(token) => {
                    let credentials = Credentials::token(token, peer);
                    inner
                        .call(Authenticated {
                            routed,
                            credentials,
                        })
                        .await
                }
                Err(failure) => {
                    metrics.auth_failure(failure);
                    crate::ingress::drain::reject(
                        routed.accepted.http.into_body(),
                        GatewayError::Unauthenticated(failure).into(),
                    )
                    .await
                }
            }
        }))
    }
}

/// The authentication span's attributes: how, and whether it passed (the failure's label,
/// never the credential).
fn span_result(
    span: &mut crate::observe::trace::Span,
    method: &'static str,
    result: Result<(), AuthFailure>,
) {
    span.attr("jbgw.auth.method", method);
    match result {
        Ok(()) => span.attr("jbgw.auth.result", "ok"),
        Err(f) => {
            span.attr("jbgw.auth.result", "rejected");
            span.attr("jbgw.auth.failure", f.as_str());
        }
    }
}
