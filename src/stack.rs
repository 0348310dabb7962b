//! The request path: one tower stack, every layer in order, built by [`build_stack`].

use crate::audit::AuditLayer;
use crate::auth::AuthLayer;
use crate::cache::CacheLayer;
use crate::error::Response;
use crate::guard::GuardLayer;
use crate::identity::IdentityLayer;
use crate::limits::{Limits, LimitsLayer};
use crate::observe::ObserveLayer;
use crate::policy::PolicyLayer;
use crate::route::RouteLayer;
use crate::server::AppState;
use crate::upstream::Upstream;
use crate::validate::ValidateLayer;
use crate::BoxFuture;
use bytes::Bytes;
use http::Request;
use hyper::body::Body;
use std::convert::Infallible;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder};

/// The request path, outermost layer first. Tests and `main` both build it here.
pub fn build_stack<B>(
    state: &AppState,
) -> impl Service<Request<B>, Response = Response, Error = Infallible, Future = BoxFuture>
       + Clone
       + Send
       + 'static
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    let s = &state.settings;
    // The read pipeline the validation layer fetches the company's lookups through: the same
    // cache, budget and upstream as every request, so a lookup is fetched once per TTL per
    // key and spends budget like any other call.
    let lookups = s.check_references.then(|| {
        crate::validate::references::Lookups::new(
            BoxCloneSyncService::new(
                ServiceBuilder::new()
                    .layer(CacheLayer::new(state.cache.clone()))
                    .layer(GuardLayer::new(state.guard.clone()))
                    .service(Upstream::new(
                        state.client.clone(),
                        &s.upstream,
                        state.metrics.clone(),
                    )),
            ),
            state.metrics.clone(),
        )
    });
    ServiceBuilder::new()
        // Request id, in-flight, whole-request timeout, request metrics, access log: outermost
        // so that every answer, rejections included, is counted and logged.
        .layer(ObserveLayer::new(
            state.metrics.clone(),
            s.server.request_timeout,
        ))
        // Limits: URI length (414), header size (431), global in-flight cap (503, shed at once).
        .layer(LimitsLayer::new(
            Limits {
                max_uri_length: s.server.max_uri_length,
                max_header_size: s.server.max_header_size,
                max_in_flight: s.server.max_in_flight,
            },
            state.shared.in_flight.clone(),
        ))
        // Routing: unknown paths 404 and unserved methods 405 before any credential is read.
        .layer(RouteLayer::new(s.routes))
        // Authentication: exactly one valid bearer JWT, else 401.
        .layer(AuthLayer::new(
            state.verifier.clone(),
            state.metrics.clone(),
        ))
        // Identity mapping: subject → upstream key, userId, access; unmapped → 403.
        .layer(IdentityLayer::new(
            state.settings.clone(),
            state.metrics.clone(),
        ))
        // Write policy: read users cannot write, users keep to their routes, nobody reads as
        // another user (403).
        .layer(PolicyLayer::new(state.metrics.clone()))
        // Validation: read queries canonicalised against the route's documented parameters,
        // write bodies read (bounded) and checked; a partnership's references checked
        // against the company's cached lookups.
        .layer(ValidateLayer::new(
            state.validation.clone(),
            lookups,
            state.metrics.clone(),
        ))
        // Idempotency-Key: a repeated write gets the stored outcome, never a second send.
        .layer(state.replay.clone())
        // Audit: one event per write sent upstream, with its outcome.
        .layer(AuditLayer)
        // Read cache: keyed by (upstream key, group generation, forwarded path and query);
        // accepted writes invalidate the groups they change.
        .layer(CacheLayer::new(state.cache.clone()))
        // Guard: fair share, circuit breaker, key budget, connection bound, read retries.
        .layer(GuardLayer::new(state.guard.clone()))
        // Upstream forward: the only place a request leaves the gateway.
        .service(Upstream::new(
            state.client.clone(),
            &s.upstream,
            state.metrics.clone(),
        ))
}
