//! Serves the OpenAPI document at [`OPENAPI_PATH`], unauthenticated (it describes the gateway
//! and holds no secret), in front of the router: the document is built once per generation,
//! from the routes that generation enables.

use super::document::{document, OPENAPI_PATH};
use crate::error::GatewayError;
use crate::exchange::{Accepted, Reply};
use crate::ingress::drain::reject;
use crate::ingress::route::RouteSet;
use crate::step::Step;
use bytes::Bytes;
use http::Method;
use std::convert::Infallible;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Answers `GET /openapi.json` with the document of the `enabled` routes; every other request
/// goes on to the router.
#[derive(Debug, Clone)]
pub struct OpenApiLayer {
    document: Bytes,
}

impl OpenApiLayer {
    /// The layer serving the document of the `enabled` routes.
    pub fn new(enabled: RouteSet) -> Self {
        OpenApiLayer {
            document: Bytes::from(serde_json::to_vec(&document(enabled)).unwrap_or_default()),
        }
    }
}

impl<S> Layer<S> for OpenApiLayer {
    type Service = OpenApi<S>;
    fn layer(&self, inner: S) -> OpenApi<S> {
        OpenApi {
            inner,
            document: self.document.clone(),
        }
    }
}

/// Service produced by [`OpenApiLayer`].
#[derive(Debug, Clone)]
pub struct OpenApi<S> {
    inner: S,
    document: Bytes,
}

impl<S, B> Service<Accepted<B>> for OpenApi<S>
where
    S: Service<Accepted<B>, Response = Reply, Error = Infallible>,
    S::Future: Unpin,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = Step<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Accepted<B>) -> Self::Future {
        let http = &req.http;
        if http.uri().path() != OPENAPI_PATH {
            return Step::next(self.inner.call(req));
        }
        let reply = if http.method() == Method::GET {
            let mut r = http::Response::new(http_body_util::Full::new(self.document.clone()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Reply::new(r)
        } else {
            GatewayError::MethodNotAllowed {
                allow: "GET".into(),
            }
            .into()
        };
        Step::boxed(reject(req.http.into_body(), reply))
    }
}
