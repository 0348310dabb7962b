//! The write side's layer: an accepted write invalidates what it changed.

use super::metrics::InvalidationCause;
use super::ListCache;
use crate::exchange::{BudgetClass, Outbound, Reply};
use crate::validate::Write;
use crate::BoxFuture;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};
/// Invalidates the groups a write changes once upstream accepted it, before its answer is
/// returned: no replica serves an older read once the client has seen the write.
#[derive(Clone)]
pub struct InvalidateLayer {
    pub(super) cache: Arc<ListCache>,
}

impl InvalidateLayer {
    /// A layer invalidating `cache`.
    pub fn new(cache: Arc<ListCache>) -> Self {
        Self { cache }
    }
}

impl<S> Layer<S> for InvalidateLayer {
    type Service = Invalidate<S>;
    fn layer(&self, inner: S) -> Invalidate<S> {
        Invalidate {
            inner,
            cache: self.cache.clone(),
        }
    }
}

/// Service produced by [`InvalidateLayer`].
#[derive(Clone)]
pub struct Invalidate<S> {
    pub(super) inner: S,
    pub(super) cache: Arc<ListCache>,
}

impl<S> Service<Write> for Invalidate<S>
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

    fn call(&mut self, write: Write) -> BoxFuture {
        let cache = self.cache.clone();
        let spec = write.ctx.spec;
        let name = write.ctx.identity.key.name.clone();
        // A keyed write's claimed record travels down with it (see `policy::replay`): settled
        // here with the bump when upstream accepts the write, so the two are one store call.
        // Why here rather than bump in replay: the bump is this layer's promise (its write
        // epochs, remembered generations and pending bumps live in the cache), while a settle
        // needs only the ticket and the reply; and replay learns the outcome from the reply's
        // facts, plain data on the way back up, with nothing shared between the two layers.
        let ticket = write.settle;
        let fut = self.inner.call(Outbound {
            ctx: write.ctx,
            class: BudgetClass::Write,
            urgency: 100,
            method: write.method,
            target: write.target,
            headers: write.headers,
            body: write.body,
        });
        Box::pin(async move {
            let mut reply = fut.await?;
            // Only a write upstream accepted changes what reads return.
            if reply.status().is_success() && reply.upstream_status().is_some() {
                let cause = if spec.route.is_create() {
                    InvalidationCause::Create
                } else {
                    InvalidationCause::Write
                };
                let settle = ticket.map(|t| (t, reply.settlement()));
                reply.facts.settled = cache
                    .invalidate_settling(&name, spec.invalidates, cause, settle)
                    .await;
            }
            Ok(reply)
        })
    }
}
