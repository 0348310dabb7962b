//! Local enforcement, decided before anything is sent: write permission on every write route,
//! the user's own route restrictions, and `userId` on every route that takes one.

use crate::config::{Access, Identity};
use crate::error::{Denial, GatewayError, Response};
use crate::metrics::Metrics;
use crate::route::Route;
use crate::BoxFuture;
use http::Request;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Refuses a write by a `read` user, a route outside the user's list, and a read naming
/// another user's `userId`, with 403.
#[derive(Clone)]
pub struct PolicyLayer {
    metrics: Arc<Metrics>,
}

impl PolicyLayer {
    /// A layer counting denials in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = Policy<S>;
    fn layer(&self, inner: S) -> Policy<S> {
        Policy {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Service produced by [`PolicyLayer`].
#[derive(Clone)]
pub struct Policy<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// The decision for one request.
pub fn decide(route: Route, identity: &Identity, query: Option<&str>) -> Result<(), Denial> {
    let Some(spec) = route.spec() else {
        // Unmatched requests never get past the router.
        return Err(Denial::RouteNotAllowed);
    };
    if spec.is_write() && identity.access != Access::Write {
        return Err(Denial::WriteRequired);
    }
    if !identity.routes.contains(route) {
        return Err(Denial::RouteNotAllowed);
    }
    if spec.query.takes_user_id() {
        // Nobody reads as another user. A numeric userId that differs is a denial; one that is
        // not a number is left to query validation (400), which also refuses repeats.
        let foreign = query
            .into_iter()
            .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
            .any(|(k, v)| k == "userId" && v.parse::<u64>().is_ok_and(|id| id != identity.user_id));
        if foreign {
            return Err(Denial::ForeignUserId);
        }
    }
    Ok(())
}

impl<S, B> Service<Request<B>> for Policy<S>
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

    fn call(&mut self, req: Request<B>) -> BoxFuture {
        let route = req.extensions().get::<Route>().copied();
        let identity = req.extensions().get::<Arc<Identity>>();
        let decision = match (route, identity) {
            (Some(route), Some(identity)) => decide(route, identity, req.uri().query()),
            // The stack puts both in place before this layer; missing means a wiring bug.
            _ => {
                let resp =
                    GatewayError::Internal("policy reached without route or identity".into())
                        .into_response();
                return Box::pin(async move { Ok(resp) });
            }
        };
        if let Err(denial) = decision {
            self.metrics.denial(denial);
            let resp = GatewayError::Forbidden(denial).into_response();
            return crate::drain::reject(req, resp);
        }
        Box::pin(self.inner.call(req))
    }
}
