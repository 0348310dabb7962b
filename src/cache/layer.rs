//! The read side's layer: reads go through the cache.

use super::headers::client_directive;
use super::ListCache;
use crate::exchange::{Outbound, Reply};
use crate::validate::Read;
use crate::BoxFuture;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};
/// Serves reads through the cache.
#[derive(Clone)]
pub struct CacheLayer {
    pub(super) cache: Arc<ListCache>,
}

impl CacheLayer {
    /// A layer using `cache`.
    pub fn new(cache: Arc<ListCache>) -> Self {
        Self { cache }
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = Cached<S>;
    fn layer(&self, inner: S) -> Cached<S> {
        Cached {
            inner,
            cache: self.cache.clone(),
        }
    }
}

/// Service produced by [`CacheLayer`].
#[derive(Clone)]
pub struct Cached<S> {
    pub(super) inner: S,
    pub(super) cache: Arc<ListCache>,
}

impl<S> Service<Read> for Cached<S>
where
    S: Service<Outbound, Response = Reply, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, read: Read) -> BoxFuture {
        // The service polled ready is the one a miss calls; a hit drops it unused.
        let fresh = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, fresh);
        let cache = self.cache.clone();
        let directive = client_directive(&read.headers);
        // The cache decision's span: HIT, MISS, STALE or BYPASS (a miss's upstream call is
        // its sibling, under the request's span).
        let span = crate::observe::trace::Span::child(
            read.ctx.trace.as_ref(),
            "cache",
            crate::observe::trace::Kind::Internal,
        );
        if cache.bypassed(directive, read.purpose) {
            return Box::pin(async move { Ok(cache_span(span, cache.bypass(read, inner).await)) });
        }
        Box::pin(async move { Ok(cache_span(span, cache.serve(read, directive, inner).await)) })
    }
}

/// Ends the cache span with the result the reply carries.
pub(super) fn cache_span(mut span: crate::observe::trace::Span, reply: Reply) -> Reply {
    if let Some(c) = reply.facts.cache {
        span.attr("jbgw.cache.result", c.as_str());
    }
    reply
}
