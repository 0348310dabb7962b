//! The audit trail: one event per write sent upstream (who, which upstream key, which route,
//! for a partnership create the partner's name and e-mail domain, the upstream status, the
//! request id), on the `audit` log target.

use crate::config::Identity;
use crate::error::Response;
use crate::observe::RequestId;
use crate::route::Route;
use crate::upstream::UpstreamMeta;
use crate::validate::body::CreateSummary;
use crate::BoxFuture;
use bytes::Bytes;
use http::Request;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
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

impl<S> Service<Request<Bytes>> for Audit<S>
where
    S: Service<Request<Bytes>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> BoxFuture {
        let path = req.uri().path().to_string();
        let ext = req.extensions();
        let record = match ext.get::<Route>() {
            Some(r) if r.is_write() => Some((
                *r,
                ext.get::<Arc<Identity>>().cloned(),
                ext.get::<Arc<CreateSummary>>().cloned(),
                ext.get::<RequestId>().cloned(),
            )),
            _ => None,
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            if let Some((route, identity, summary, id)) = record {
                let upstream = resp.extensions().get::<UpstreamMeta>();
                let status = resp.status();
                let outcome = match upstream.and_then(|u| u.status) {
                    Some(_) if status.is_success() && route.is_create() => "created",
                    Some(_) if status.is_success() => "applied",
                    Some(_) => "refused_upstream",
                    // No upstream status: either never sent, or sent with the outcome unknown.
                    None if status == http::StatusCode::GATEWAY_TIMEOUT => "outcome_unknown",
                    None => "not_sent",
                };
                tracing::info!(
                    target: "audit",
                    request_id = id.as_ref().and_then(|i| i.0.to_str().ok()),
                    user = identity.as_ref().map(|i| &*i.name),
                    user_id = identity.as_ref().map(|i| i.user_id),
                    upstream_key = identity.as_ref().map(|i| &*i.key.name),
                    route = route.label(),
                    path_id = route_path_id(&path),
                    partner_name = summary.as_ref().map(|s| s.name.as_str()),
                    email_domain = summary.as_ref().map(|s| s.email_domain.as_str()),
                    partner_type = summary.as_ref().map(|s| s.partner_type.as_str()),
                    inactive = summary.as_ref().map(|s| s.inactive),
                    status = status.as_u16(),
                    upstream_status = upstream.and_then(|u| u.status),
                    outcome,
                    "write"
                );
            }
            Ok(resp)
        })
    }
}
