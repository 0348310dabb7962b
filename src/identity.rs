//! Identity mapping: a verified subject becomes a JourneyBee identity (upstream key, `userId`,
//! access level) from the config's user table.

use crate::auth::VerifiedToken;
use crate::config::{Identity, Settings};
use crate::error::{Denial, GatewayError, Response};
use crate::metrics::Metrics;
use crate::BoxFuture;
use http::Request;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

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
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> BoxFuture {
        let identity: Option<Arc<Identity>> = req
            .extensions()
            .get::<Arc<VerifiedToken>>()
            .and_then(|t| self.settings.users.get(&t.subject))
            .cloned();
        let Some(identity) = identity else {
            self.metrics.denial(Denial::UnmappedUser);
            let resp = GatewayError::Forbidden(Denial::UnmappedUser).into_response();
            return Box::pin(async move { Ok(resp) });
        };
        self.metrics.user_request(&identity);
        let user = MappedUser(identity.name.clone());
        req.extensions_mut().insert(identity);
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let mut resp = inner.call(req).await?;
            resp.extensions_mut().insert(user);
            Ok(resp)
        })
    }
}
