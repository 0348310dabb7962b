//! The audit trail: one event per write sent upstream (who, which upstream key, which route,
//! for a partnership create the partner's name and e-mail domain, the upstream status, the
//! request id), on the `audit` log target.
//!
//! A write whose future is dropped before it completes (only at shutdown, when the grace is
//! over: a write runs in a task of its own, see `observe`) is logged too, with the outcome
//! `unknown` if it had been handed to upstream and `not_sent` otherwise: never silently.

use crate::exchange::{Ctx, Reply};
use crate::validate::body::CreateSummary;
use crate::validate::Write;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tower::{Layer, Service};

/// Emits an audit event for every write that leaves validation.
#[derive(Debug, Clone, Default)]
pub struct AuditLayer;

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;
    fn layer(&self, inner: S) -> Audit<S> {
        Audit { inner }
    }
}

/// Service produced by [`AuditLayer`].
#[derive(Debug, Clone)]
pub struct Audit<S> {
    inner: S,
}

/// The last numeric segment of a write's path (the partnership, lead, deal... it changes), for
/// the audit record. Ids are not secrets; tokens and keys never appear in a path.
fn route_path_id(path: &str) -> Option<u64> {
    path.rsplit('/').find_map(|s| s.parse().ok())
}

impl<S> Service<Write> for Audit<S>
where
    S: Service<Write, Response = Reply, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = Audited<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Write) -> Self::Future {
        let record = Record {
            ctx: req.ctx.clone(),
            path_id: route_path_id(req.target.path()),
            // Nothing after this layer needs it.
            summary: req.summary.take(),
        };
        Audited {
            inner: self.inner.call(req),
            record: Some(record),
        }
    }
}

/// What the audit event says besides the outcome.
struct Record {
    ctx: Ctx,
    path_id: Option<u64>,
    summary: Option<CreateSummary>,
}

impl Record {
    fn log(self, reply: &Reply) {
        let route = self.ctx.spec.route;
        let status = reply.status();
        let outcome = match reply.upstream_status() {
            Some(_) if status.is_success() && route.is_create() => "created",
            Some(_) if status.is_success() => "applied",
            Some(_) => "refused_upstream",
            // No upstream status: either never sent, or sent with the outcome unknown.
            None if reply.facts.upstream.is_some_and(|u| u.maybe_sent) => "outcome_unknown",
            None => "not_sent",
        };
        self.event(Some(status.as_u16()), reply.upstream_status(), outcome);
    }

    /// The write was dropped before it completed (shutdown's grace is over).
    fn log_unfinished(self) {
        let outcome = if self.ctx.gate.taken() {
            "unknown"
        } else {
            "not_sent"
        };
        self.event(None, None, outcome);
    }

    fn event(self, status: Option<u16>, upstream_status: Option<u16>, outcome: &str) {
        let Record {
            ctx,
            path_id,
            summary,
        } = self;
        let route = ctx.spec.route;
        let identity = &ctx.identity;
        tracing::info!(
            target: "audit",
            request_id = ctx.id.0.to_str().ok(),
            trace_id = ctx.trace.as_ref().map(|t| tracing::field::display(t.trace_id)),
            user = &*identity.name,
            user_id = identity.user_id,
            upstream_key = &*identity.key.name,
            route = route.label(),
            path_id,
            partner_name = summary.as_ref().map(|s| s.name.as_str()),
            email_domain = summary.as_ref().map(|s| s.email_domain.as_str()),
            partner_type = summary.as_ref().map(|s| s.partner_type.as_str()),
            inactive = summary.as_ref().map(|s| s.inactive),
            status,
            upstream_status,
            outcome,
            "write"
        );
    }
}

/// The write's future; logs the audit event when it completes.
pub struct Audited<F> {
    inner: F,
    record: Option<Record>,
}

impl<F> Future for Audited<F>
where
    F: Future<Output = Result<Reply, Infallible>> + Unpin,
{
    type Output = Result<Reply, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let reply = match ready!(Pin::new(&mut self.inner).poll(cx)) {
            Ok(reply) => reply,
            Err(never) => match never {},
        };
        if let Some(record) = self.record.take() {
            record.log(&reply);
        }
        Poll::Ready(Ok(reply))
    }
}

impl<F> Drop for Audited<F> {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            record.log_unfinished();
        }
    }
}
