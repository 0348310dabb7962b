//! The router layer: a matched request continues as a [`Routed`] one, its query parsed once for
//! every later stage; anything else is answered here and never forwarded.

use super::matcher::match_route;
use super::set::RouteSet;
use super::table::{RouteSpec, Verb};
use crate::exchange::{Accepted, Reply};
use crate::step::Step;
use crate::validate::query::{ParsedQuery, QueryLimits};
use std::convert::Infallible;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// A request matched to a route, its query parsed once for every later stage.
#[derive(Debug)]
pub struct Routed<B> {
    /// The request as accepted.
    pub accepted: Accepted<B>,
    /// The matched route.
    pub spec: &'static RouteSpec,
    /// Its query string, parsed.
    pub query: ParsedQuery,
}

/// Routes requests: unknown (or disabled) paths get 404, unserved methods 405 with `Allow`, a
/// non-numeric id 400; a matched request continues as a [`Routed`] one.
#[derive(Debug, Clone)]
pub struct RouteLayer {
    enabled: RouteSet,
    limits: QueryLimits,
}

impl RouteLayer {
    /// A router serving the `enabled` routes, parsing read queries within `limits`.
    pub fn new(enabled: RouteSet, limits: QueryLimits) -> Self {
        RouteLayer { enabled, limits }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Router<S>;
    fn layer(&self, inner: S) -> Router<S> {
        Router {
            inner,
            enabled: self.enabled,
            limits: self.limits,
        }
    }
}

/// Service produced by [`RouteLayer`].
#[derive(Debug, Clone)]
pub struct Router<S> {
    inner: S,
    enabled: RouteSet,
    limits: QueryLimits,
}

impl<S, B> Service<Accepted<B>> for Router<S>
where
    S: Service<Routed<B>, Response = Reply, Error = Infallible>,
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

    fn call(&mut self, req: Accepted<B>) -> Self::Future {
        let http = &req.http;
        let spec = match match_route(http.method(), http.uri().path(), self.enabled) {
            Ok(spec) => spec,
            Err(e) => {
                return Step::boxed(crate::ingress::drain::reject(
                    req.http.into_body(),
                    e.into(),
                ))
            }
        };
        let query = ParsedQuery::parse(
            http.uri().query(),
            &spec.query,
            spec.verb == Verb::Get,
            &self.limits,
        );
        let route = spec.route;
        Step::next(self.inner.call(Routed {
            accepted: req,
            spec,
            query,
        }))
        .route(route)
    }
}
