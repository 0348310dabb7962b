//! The request path: one tower stack, every layer in order, built by [`build_stack`].
//!
//! Each layer takes the request type the layer before it produced and passes on a richer
//! one, so the order is checked by the compiler: an HTTP request is `Accepted` (id and
//! deadline), `Routed` (route, parsed query), `Authenticated` (verified token), `Identified`
//! (upstream key, `userId`), `Permitted` (policy allowed it), then `Validated`: a `Read` goes
//! through the cache, a `Write` through idempotency, audit and invalidation. Both end as an
//! `Outbound` request in the guard and the forward.

use crate::cache::{CacheLayer, InvalidateLayer};
use crate::error::Response;
use crate::exchange::{Outbound, Reply};
use crate::generation::AppState;
use crate::identity::auth::AuthLayer;
use crate::identity::map::IdentityLayer;
use crate::ingress::limits::{Limits, LimitsLayer};
use crate::ingress::openapi::OpenApiLayer;
use crate::ingress::route::RouteLayer;
use crate::observe::audit::AuditLayer;
use crate::observe::layer::ObserveLayer;
use crate::policy::permission::PolicyLayer;
use crate::upstream::guard::GuardLayer;
use crate::upstream::Upstream;
use crate::validate::{Read, ValidateLayer, Validated, Write};
use crate::BoxFuture;
use bytes::Bytes;
use futures_util::future::Either;
use http::Request;
use hyper::body::Body;
use std::convert::Infallible;
use std::task::{Context, Poll};
use tower::util::{BoxCloneSyncService, Oneshot};
use tower::{Service, ServiceBuilder};

/// The request path, outermost layer first. Tests and `main` both build it here.
pub fn build_stack<B>(
    state: &AppState,
) -> impl Service<Request<B>, Response = Response, Error = Infallible, Future = BoxFuture<Response>>
       + Clone
       + Send
       + 'static
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    build_stack_with(state, tower::layer::util::Identity::new())
}

/// [`build_stack`] with `around_upstream` wrapped around the upstream forward (one service,
/// shared by reads, writes and lookups): for tests that put standard tower middleware (a
/// concurrency limit, a load shedder) where the stack reaches JourneyBee. Every layer polls
/// the one below for readiness and calls the service it polled, so such middleware works.
pub fn build_stack_with<B, L>(
    state: &AppState,
    around_upstream: L,
) -> impl Service<Request<B>, Response = Response, Error = Infallible, Future = BoxFuture<Response>>
       + Clone
       + Send
       + 'static
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
    L: tower::Layer<Upstream>,
    L::Service:
        Service<Outbound, Response = Reply, Error = Infallible> + Clone + Send + Sync + 'static,
    <L::Service as Service<Outbound>>::Future: Send + 'static,
{
    let s = &state.settings;
    let upstream = around_upstream.layer(Upstream::new(
        state.pool.clone(),
        &s.upstream,
        state.metrics.upstream.clone(),
    ));
    // Reads: the cache in front of the guard and the forward.
    let reads = ServiceBuilder::new()
        // Read cache: keyed by (upstream key, group generation, forwarded path and query).
        .layer(CacheLayer::new(state.cache.clone()))
        // Guard: fair share, circuit breaker, key budget, connection bound, read retries.
        .layer(GuardLayer::new(state.guard.clone()))
        // Upstream forward: the only place a request leaves the gateway.
        .service(upstream.clone());
    // The read pipeline the validation layer fetches the company's lookups through: the same
    // cache, budget and upstream as every read, so a lookup is fetched once per TTL per key
    // and spends budget like any other call.
    let lookups = s.check_references.then(|| {
        crate::validate::references::Lookups::new(
            BoxCloneSyncService::new(reads.clone()),
            state.cache.clone(),
            state.metrics.validation.clone(),
        )
    });
    // Writes: sent at most once, never retried, outcome recorded whatever the client does.
    let writes = ServiceBuilder::new()
        // Idempotency-Key: a repeated write gets the stored outcome, never a second send.
        .layer(state.replay.clone())
        // Audit: one event per write, with its real outcome.
        .layer(AuditLayer)
        // Invalidation: an accepted write bumps the generations of the groups it changes
        // before its answer is returned.
        .layer(InvalidateLayer::new(state.cache.clone()))
        // Guard: as for reads, but a write is sent once and never retried.
        .layer(GuardLayer::new(state.guard.clone()))
        // Upstream forward.
        .service(upstream);
    ServiceBuilder::new()
        // Request id, the request's deadline, in-flight, request metrics, access log:
        // outermost so that every answer, rejections included, is counted and logged. A
        // write runs on in its own task once accepted (see `observe`).
        .layer(
            ObserveLayer::new(
                state.metrics.requests.clone(),
                s.server.request_timeout,
                state.shared.history.writes().clone(),
            )
            .with_tracer(state.tracer.clone()),
        )
        // Limits: URI length (414), header size (431), global in-flight cap (503, shed at once).
        .layer(LimitsLayer::new(
            Limits {
                max_uri_length: s.server.max_uri_length,
                max_header_size: s.server.max_header_size,
                max_in_flight: s.server.max_in_flight,
            },
            state.shared.in_flight.clone(),
        ))
        // OpenAPI: `GET /openapi.json` answered here, unauthenticated, before routing.
        .layer(OpenApiLayer::new(s.routes))
        // Routing: unknown paths 404 and unserved methods 405 before any credential is read;
        // the query is parsed here, once, for every later layer.
        .layer(RouteLayer::new(s.routes, s.query_limits))
        // Authentication: exactly one valid bearer JWT, else 401.
        .layer(AuthLayer::new(
            state.verifier.clone(),
            state.metrics.auth.clone(),
        ))
        // Identity mapping: subject → upstream key, userId, access; unmapped → 403.
        .layer(IdentityLayer::new(
            state.settings.clone(),
            state.metrics.policy.clone(),
            state.metrics.requests.clone(),
        ))
        // Write policy: read users cannot write, users keep to their routes, nobody reads as
        // another user (403).
        .layer(PolicyLayer::new(state.metrics.policy.clone()))
        // Validation: a read's canonical query becomes its target; a write's body is read
        // (bounded) and checked, a partnership's references against the company's lookups.
        .layer(ValidateLayer::new(
            state.validation.clone(),
            lookups,
            state.metrics.validation.clone(),
        ))
        // Reads and writes part here: a read never passes a write-only layer.
        .service(Split { reads, writes })
}

/// Sends a validated read one way and a write the other.
///
/// Always ready: which side a request needs is known only once it is here, and holding
/// both sides ready would hold what each reserves (a concurrency limit below both would never
/// be ready twice). So the side a request takes is driven to readiness in its own future (a
/// clone of that side, polled with the request's waker), then called.
#[derive(Clone)]
pub struct Split<R, W> {
    reads: R,
    writes: W,
}

impl<R, W> Service<Validated> for Split<R, W>
where
    R: Service<Read, Response = Reply, Error = Infallible> + Clone,
    W: Service<Write, Response = Reply, Error = Infallible> + Clone,
{
    type Response = Reply;
    type Error = Infallible;
    // futures-util's Either (the future of one side or the other). Not tower's `util::Either`:
    // that is a service, whose future is made only by calling it with one request type, and a
    // read and a write are two.
    type Future = Either<Oneshot<R, Read>, Oneshot<W, Write>>;

    /// Always ready (see [`Split`]): the side's readiness is awaited in the call's future.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Validated) -> Self::Future {
        match req {
            Validated::Read(read) => Either::Left(Oneshot::new(self.reads.clone(), read)),
            Validated::Write(write) => Either::Right(Oneshot::new(self.writes.clone(), write)),
        }
    }
}
