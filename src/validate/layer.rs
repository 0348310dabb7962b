//! The validation layer: read queries are parsed into their canonical form (against the
//! route's documented parameters), write bodies are read (bounded) and checked in full against
//! the route's body rules. What passes continues as `Request<Bytes>`, the exact bytes the
//! client sent, so the forward is byte-for-byte.

use super::body::{validate_create_value, BodyRules, CreateSummary};
use super::query::QueryLimits;
use super::references::Lookups;
use super::validated::{Purpose, Read, Validated, Write};
use super::writes::validate_write;
use crate::error::GatewayError;
use crate::exchange::{Ctx, Reply};
use crate::ingress::route::BodyKind;
use crate::policy::permission::Permitted;
use crate::step::Step;
use crate::validate::metrics::ValidationMetrics;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::uri::PathAndQuery;
use http::HeaderMap;
use hyper::body::Body;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// What the validation layer needs from config.
#[derive(Debug, Clone)]
pub struct ValidationSettings {
    /// Create-body rules.
    pub body: BodyRules,
    /// List-query limits.
    pub query: QueryLimits,
    /// Largest accepted request body.
    pub max_body_size: usize,
    /// Time allowed for the whole body to arrive.
    pub body_read_timeout: std::time::Duration,
}

/// Validates read queries and write bodies (and a partnership's references, with `lookups`);
/// refuses with 400/406/413/415.
#[derive(Clone)]
pub struct ValidateLayer {
    settings: Arc<ValidationSettings>,
    lookups: Option<Lookups>,
    metrics: Arc<ValidationMetrics>,
}

impl ValidateLayer {
    /// A layer applying `settings`, checking references against `lookups` when given,
    /// counting rejections in `metrics`.
    pub fn new(
        settings: Arc<ValidationSettings>,
        lookups: Option<Lookups>,
        metrics: Arc<ValidationMetrics>,
    ) -> Self {
        Self {
            settings,
            lookups,
            metrics,
        }
    }
}

impl<S> Layer<S> for ValidateLayer {
    type Service = Validate<S>;
    fn layer(&self, inner: S) -> Validate<S> {
        Validate {
            inner,
            settings: self.settings.clone(),
            lookups: self.lookups.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Service produced by [`ValidateLayer`].
#[derive(Clone)]
pub struct Validate<S> {
    inner: S,
    settings: Arc<ValidationSettings>,
    lookups: Option<Lookups>,
    metrics: Arc<ValidationMetrics>,
}

/// `application/json`, optionally with `charset=utf-8` (RFC 8259 §8.1: JSON is UTF-8).
pub fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|param| match param.trim().split_once('=') {
        Some((name, val)) if name.trim().eq_ignore_ascii_case("charset") => {
            val.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => false,
    })
}

/// Reads a body up to `limit` bytes. A declared `Content-Length` over the limit is refused
/// before a single byte is read; an undeclared one stops reading at the limit.
async fn read_body<B>(headers: &HeaderMap, body: B, limit: usize) -> Result<Bytes, GatewayError>
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<crate::BoxError>,
{
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    match crate::exchange::read_whole(body, limit, declared).await {
        Ok(bytes) => Ok(bytes),
        Err(crate::exchange::ReadError::TooLarge) => Err(GatewayError::PayloadTooLarge { limit }),
        Err(crate::exchange::ReadError::Failed(e)) => Err(GatewayError::BodyRead(e.to_string())),
    }
}

/// A write's body, read and checked; the references of a partnership checked against the
/// company's lookups.
async fn check_write<B>(
    ctx: &Ctx,
    headers: &HeaderMap,
    body: B,
    settings: &ValidationSettings,
    lookups: Option<&Lookups>,
) -> Result<(Bytes, Option<CreateSummary>), GatewayError>
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<crate::BoxError>,
{
    let spec = ctx.spec;
    if spec.body == BodyKind::None {
        // A DELETE's body has no documented meaning: drained, never forwarded.
        crate::ingress::drain::drain(body).await;
        return Ok((Bytes::new(), None));
    }
    if !is_json_content_type(headers) {
        // Not read as JSON, but drained so the connection stays usable.
        crate::ingress::drain::drain(body).await;
        return Err(GatewayError::UnsupportedMediaType);
    }
    // A client trickling its body holds a slot; it gets 408 once its time is up (or the
    // request's deadline has passed, whichever is first).
    let until = ctx.deadline.within(settings.body_read_timeout);
    let bytes = tokio::time::timeout_at(until, read_body(headers, body, settings.max_body_size))
        .await
        .map_err(|_| GatewayError::BodyTimeout)??;
    let mut summary = None;
    let references = match spec.body {
        BodyKind::PartnershipCreate => {
            let (s, value) =
                validate_create_value(&bytes, &settings.body).map_err(GatewayError::InvalidBody)?;
            summary = Some(s);
            Some((value, true))
        }
        BodyKind::PartnershipUpdate => {
            let value = validate_write(BodyKind::PartnershipUpdate, &bytes)
                .map_err(GatewayError::InvalidBody)?;
            Some((value, false))
        }
        kind => {
            validate_write(kind, &bytes).map_err(GatewayError::InvalidBody)?;
            None
        }
    };
    if let (Some(lookups), Some((value, create))) = (lookups, references) {
        lookups
            .check(ctx, &value, create)
            .await
            .map_err(GatewayError::UnknownReferences)?;
    }
    Ok((bytes, summary))
}

impl<S, B> Service<Permitted<B>> for Validate<S>
where
    S: Service<Validated, Response = Reply, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + Unpin + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = Step<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Permitted<B>) -> Self::Future {
        let req = req.into_inner();
        let routed = req.routed;
        let spec = routed.spec;
        let route = spec.route;
        let (parts, body) = routed.accepted.http.into_parts();
        let ctx = Ctx {
            id: routed.accepted.id,
            deadline: routed.accepted.deadline,
            gate: routed.accepted.gate,
            spec,
            identity: req.identity,
            trace: parts
                .extensions
                .get::<crate::observe::trace::TraceContext>()
                .cloned(),
        };
        match routed.query.list {
            // A read: nothing to await, so the rest of the stack is called directly. A GET's
            // body has no meaning upstream: it is dropped, never read nor forwarded.
            Some(Ok(query)) => {
                let forced = spec.query.takes_user_id().then_some(ctx.identity.user_id);
                let target = query.target(parts.uri.path(), forced);
                Step::next(self.inner.call(Validated::Read(Read {
                    ctx,
                    target,
                    headers: parts.headers,
                    purpose: Purpose::Client,
                })))
            }
            Some(Err(problems)) => {
                self.metrics
                    .validation_rejection(route, crate::error::Rejection::Query);
                Step::boxed(crate::ingress::drain::reject(
                    body,
                    GatewayError::InvalidQuery(problems).into(),
                ))
            }
            None => {
                let settings = self.settings.clone();
                let lookups = self.lookups.clone();
                let metrics = self.metrics.clone();
                // The service polled ready is the one called once the body is checked.
                let fresh = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, fresh);
                Step::boxed(Box::pin(async move {
                    match check_write(&ctx, &parts.headers, body, &settings, lookups.as_ref()).await
                    {
                        Ok((body, summary)) => {
                            let target = parts.uri.path_and_query().map_or_else(
                                || PathAndQuery::from_static("/"),
                                |pq| {
                                    PathAndQuery::try_from(pq.path()).unwrap_or_else(|_| pq.clone())
                                },
                            );
                            inner
                                .call(Validated::Write(Write {
                                    ctx,
                                    method: parts.method,
                                    target,
                                    headers: parts.headers,
                                    body,
                                    summary,
                                    settle: None,
                                }))
                                .await
                        }
                        Err(e) => {
                            // A body refused for its size was not read to its end: the
                            // connection cannot be reused.
                            let too_large = matches!(e, GatewayError::PayloadTooLarge { .. });
                            let rejection = e.rejection();
                            metrics.validation_rejection(route, rejection);
                            Ok(crate::ingress::drain::finish(!too_large, e.into()))
                        }
                    }
                }))
            }
        }
    }
}
