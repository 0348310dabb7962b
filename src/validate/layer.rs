//! The validation layer: read queries are parsed into their canonical form (against the
//! route's documented parameters), write bodies are read (bounded) and checked in full against
//! the route's body rules. What passes continues as `Request<Bytes>`, the exact bytes the
//! client sent, so the forward is byte-for-byte.

use super::body::{validate_create, BodyRules};
use super::query::{parse_query, QueryLimits};
use super::references::Lookups;
use super::writes::validate_write;
use crate::config::Identity;
use crate::error::{GatewayError, Response};
use crate::metrics::Metrics;
use crate::route::Route;
use crate::route::{BodyKind, RouteSpec, Verb};
use crate::BoxFuture;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Limited};
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
    metrics: Arc<Metrics>,
}

impl ValidateLayer {
    /// A layer applying `settings`, checking references against `lookups` when given,
    /// counting rejections in `metrics`.
    pub fn new(
        settings: Arc<ValidationSettings>,
        lookups: Option<Lookups>,
        metrics: Arc<Metrics>,
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
    metrics: Arc<Metrics>,
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
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::PayloadTooLarge { limit })
        }
        Err(e) => Err(GatewayError::BodyRead(e.to_string())),
    }
}

/// The read path: synchronous (a GET's body is never read).
fn check_list<B>(
    req: Request<B>,
    spec: &RouteSpec,
    settings: &ValidationSettings,
) -> Result<Request<Bytes>, GatewayError> {
    let (mut parts, _body) = req.into_parts();
    let query = parse_query(parts.uri.query(), &spec.query, &settings.query)
        .map_err(GatewayError::InvalidQuery)?;
    parts.extensions.insert(Arc::new(query));
    // A GET body has no meaning upstream; it is dropped rather than forwarded.
    Ok(Request::from_parts(parts, Bytes::new()))
}

async fn check<B>(
    req: Request<B>,
    spec: &RouteSpec,
    settings: &ValidationSettings,
    lookups: Option<&Lookups>,
) -> Result<Request<Bytes>, GatewayError>
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<crate::BoxError>,
{
    let (mut parts, body) = req.into_parts();
    if spec.verb == Verb::Get {
        return check_list(Request::from_parts(parts, body), spec, settings);
    }
    if spec.body == BodyKind::None {
        // A DELETE's body has no documented meaning: drained, never forwarded.
        crate::drain::drain(body).await;
        return Ok(Request::from_parts(parts, Bytes::new()));
    }
    if !is_json_content_type(&parts.headers) {
        // Not read as JSON, but drained so the connection stays usable.
        crate::drain::drain(body).await;
        return Err(GatewayError::UnsupportedMediaType);
    }
    // A client trickling its body holds a slot; it gets 408 once its time is up.
    let bytes = tokio::time::timeout(
        settings.body_read_timeout,
        read_body(&parts.headers, body, settings.max_body_size),
    )
    .await
    .map_err(|_| GatewayError::BodyTimeout)??;
    let references = match spec.body {
        BodyKind::PartnershipCreate => {
            let summary =
                validate_create(&bytes, &settings.body).map_err(GatewayError::InvalidBody)?;
            parts.extensions.insert(Arc::new(summary));
            // Valid JSON: validate_create parsed it.
            serde_json::from_slice(&bytes).ok().map(|v| (v, true))
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
        if let Some(identity) = parts.extensions.get::<Arc<Identity>>() {
            lookups
                .check(identity, &value, create)
                .await
                .map_err(GatewayError::UnknownReferences)?;
        }
    }
    Ok(Request::from_parts(parts, bytes))
}

impl<S, B> Service<Request<B>> for Validate<S>
where
    S: Service<Request<Bytes>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> BoxFuture {
        let settings = self.settings.clone();
        let lookups = self.lookups.clone();
        let metrics = self.metrics.clone();
        let route = req
            .extensions()
            .get::<Route>()
            .copied()
            .unwrap_or(Route::Unmatched);
        let Some(spec) = route.spec() else {
            let resp =
                GatewayError::Internal("validation reached without a route".into()).into_response();
            return Box::pin(async move { Ok(resp) });
        };
        if spec.verb == Verb::Get {
            // Nothing to await: call the rest of the stack directly, without cloning it.
            return match check_list(req, spec, &settings) {
                Ok(req) => Box::pin(self.inner.call(req)),
                Err(e) => {
                    metrics.validation_rejection(route, "query");
                    let resp = e.into_response();
                    Box::pin(async move { Ok(resp) })
                }
            };
        }
        let mut inner = self.inner.clone();
        Box::pin(async move {
            match check(req, spec, &settings, lookups.as_ref()).await {
                Ok(req) => inner.call(req).await,
                Err(e) => {
                    // A body refused for its size was not read to its end: the connection
                    // cannot be reused.
                    let too_large = matches!(e, GatewayError::PayloadTooLarge { .. });
                    let resp = crate::drain::finish(!too_large, e.into_response());
                    if let Some(r) = resp.extensions().get::<crate::error::Rejection>() {
                        metrics.validation_rejection(route, r.reason);
                    }
                    Ok(resp)
                }
            }
        })
    }
}
