//! Local enforcement, decided before anything is sent: write permission on every write route,
//! the user's own route restrictions, and `userId` on every route that takes one.

use crate::config::{Access, Identity};
use crate::error::{Denial, GatewayError};
use crate::exchange::Reply;
use crate::identity::map::Identified;
use crate::ingress::route::RouteSpec;
use crate::policy::metrics::PolicyMetrics;
use crate::step::Step;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Refuses a write by a `read` user, a route outside the user's list, and a read naming
/// another user's `userId`, with 403.
#[derive(Clone)]
pub struct PolicyLayer {
    metrics: Arc<PolicyMetrics>,
}

impl PolicyLayer {
    /// A layer counting denials in `metrics`.
    pub fn new(metrics: Arc<PolicyMetrics>) -> Self {
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
    metrics: Arc<PolicyMetrics>,
}

/// An identified request that policy allows. Only this module can make one, so the layers
/// after policy cannot be reached by a request it did not look at.
#[derive(Debug)]
pub struct Permitted<B>(Identified<B>);

impl<B> Permitted<B> {
    /// The request, taken out.
    pub fn into_inner(self) -> Identified<B> {
        self.0
    }
}

/// The decision for one request; `user_ids` are the `userId`s its query names.
pub fn decide(spec: &RouteSpec, identity: &Identity, user_ids: &[u64]) -> Result<(), Denial> {
    if spec.is_write() && identity.access != Access::Write {
        return Err(Denial::WriteRequired);
    }
    if !identity.routes.contains(spec.route) {
        return Err(Denial::RouteNotAllowed);
    }
    // Nobody reads as another user. A numeric userId that differs is a denial; one that is
    // not a number is left to query validation (400), which also refuses repeats.
    if spec.query.takes_user_id() && user_ids.iter().any(|id| *id != identity.user_id) {
        return Err(Denial::ForeignUserId);
    }
    Ok(())
}

impl<S, B> Service<Identified<B>> for Policy<S>
where
    S: Service<Permitted<B>, Response = Reply, Error = Infallible>,
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

    fn call(&mut self, req: Identified<B>) -> Self::Future {
        let decision = decide(req.routed.spec, &req.identity, &req.routed.query.user_ids);
        if let Err(denial) = decision {
            self.metrics.denial(denial);
            let reply = GatewayError::Forbidden(denial).into();
            return Step::boxed(crate::ingress::drain::reject(
                req.routed.accepted.http.into_body(),
                reply,
            ));
        }
        Step::next(self.inner.call(Permitted(req)))
    }
}
