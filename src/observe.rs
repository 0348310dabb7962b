//! The outermost layer: request id, in-flight gauge, the whole-request timeout, request
//! metrics and the access log. Being outermost, it sees every answer, rejections included.

use crate::error::{ErrorDetail, GatewayError, Rejection, Response};
use crate::identity::MappedUser;
use crate::metrics::{CacheResult, Metrics};
use crate::route::Route;
use crate::upstream::UpstreamMeta;
use crate::BoxFuture;
use http::{HeaderValue, Method, Request};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::{Layer, Service};

/// The request's id: the client's `X-Request-Id` when sane, else a new one.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

const X_REQUEST_ID: &str = "x-request-id";

/// A client id is kept when it is 1–128 visible ASCII characters, so it can go into logs and
/// upstream headers without escaping.
fn sane_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| (0x21..=0x7e).contains(c))
}

fn new_request_id() -> HeaderValue {
    let id = format!("{:032x}", fastrand::u128(..));
    HeaderValue::from_str(&id).expect("hex is a valid header value")
}

/// Adds request ids, metrics and access logging around the stack.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
    request_timeout: Duration,
}

impl ObserveLayer {
    /// A layer recording into `metrics` and bounding each request by `request_timeout`.
    pub fn new(metrics: Arc<Metrics>, request_timeout: Duration) -> Self {
        Self {
            metrics,
            request_timeout,
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.metrics.clone(),
            request_timeout: self.request_timeout,
        }
    }
}

/// Service produced by [`ObserveLayer`].
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
    request_timeout: Duration,
}

/// Decrements the in-flight gauge however the request ends (including a dropped future when
/// the client goes away).
struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight().dec();
    }
}

impl<S, B> Service<Request<B>> for Observe<S>
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
        let started = Instant::now();
        let id = match req.headers().get(X_REQUEST_ID) {
            Some(v) if sane_request_id(v) => v.clone(),
            _ => new_request_id(),
        };
        req.extensions_mut().insert(RequestId(id.clone()));
        let method = req.method().clone();
        self.metrics.in_flight().inc();
        let guard = InFlight(self.metrics.clone());
        let metrics = self.metrics.clone();
        let timeout = self.request_timeout;
        let fut = self.inner.call(req);
        Box::pin(async move {
            let _guard = guard;
            let mut resp = match tokio::time::timeout(timeout, fut).await {
                Ok(Ok(resp)) => resp,
                Ok(Err(never)) => match never {},
                // A write cut short may still have been delivered.
                Err(_) if method != Method::GET && method != Method::HEAD => {
                    GatewayError::CreateOutcomeUnknown("whole-request timeout".into())
                        .into_response()
                }
                Err(_) => GatewayError::RequestTimeout.into_response(),
            };
            resp.headers_mut().insert(X_REQUEST_ID, id.clone());
            let elapsed = started.elapsed();
            let route = resp
                .extensions()
                .get::<Route>()
                .copied()
                .unwrap_or(Route::Unmatched);
            metrics.request(route, &method, resp.status().as_u16(), elapsed);
            log_access(&id, &method, route, &resp, elapsed);
            Ok(resp)
        })
    }
}

fn log_access(id: &HeaderValue, method: &Method, route: Route, resp: &Response, elapsed: Duration) {
    let ext = resp.extensions();
    let upstream = ext.get::<UpstreamMeta>();
    let rejection = ext.get::<Rejection>();
    tracing::info!(
        target: "access",
        request_id = id.to_str().unwrap_or("-"),
        method = method.as_str(),
        route = route.label(),
        status = resp.status().as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        upstream_status = upstream.and_then(|u| u.status),
        upstream_ms = upstream.map(|u| u.duration.as_secs_f64() * 1000.0),
        cache = ext.get::<CacheResult>().map(|c| c.as_str()),
        user = ext.get::<MappedUser>().map(|u| &*u.0),
        rejected = rejection.map(|r| r.kind),
        reason = rejection.map(|r| r.reason),
        detail = ext.get::<ErrorDetail>().map(|d| d.0.as_str()),
        "request"
    );
}
