//! The three routes the gateway serves; everything else is answered locally and never forwarded.

use crate::error::{GatewayError, Response};
use crate::BoxFuture;
use http::{Method, Request};
use std::convert::Infallible;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// A matched route. Its label is the bounded value used in metrics and logs (never the raw path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET /api/v1/partnerships`
    List,
    /// `POST /api/v1/partnerships`
    Create,
    /// `POST /api/v1/companies/{id}/partnerships`
    CreateForCompany,
    /// Anything else (answered 404/405 locally).
    Unmatched,
}

impl Route {
    /// Every route, for pre-resolving metric label sets; `index()` is the position here.
    pub const ALL: [Route; 4] = [
        Route::List,
        Route::Create,
        Route::CreateForCompany,
        Route::Unmatched,
    ];

    /// The route template label.
    pub fn label(self) -> &'static str {
        match self {
            Route::List => "list",
            Route::Create => "create",
            Route::CreateForCompany => "create_company",
            Route::Unmatched => "unmatched",
        }
    }

    /// Position in [`Route::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether this route creates a partnership (needs write access, sends invitations).
    pub fn is_create(self) -> bool {
        matches!(self, Route::Create | Route::CreateForCompany)
    }
}

/// Matches a method and path against the routes. The path must match exactly (no trailing
/// slash, no percent-encoded separators): the same path is forwarded upstream, so anything
/// looser would forward paths nobody reviewed.
pub fn match_route(method: &Method, path: &str) -> Result<Route, GatewayError> {
    if path == "/api/v1/partnerships" {
        return match *method {
            Method::GET => Ok(Route::List),
            Method::POST => Ok(Route::Create),
            _ => Err(GatewayError::MethodNotAllowed { allow: "GET, POST" }),
        };
    }
    if let Some(id) = path
        .strip_prefix("/api/v1/companies/")
        .and_then(|rest| rest.strip_suffix("/partnerships"))
    {
        // A company id is a positive integer of sane length.
        if !id.is_empty() && id.len() <= 19 && id.bytes().all(|b| b.is_ascii_digit()) {
            return match *method {
                Method::POST => Ok(Route::CreateForCompany),
                _ => Err(GatewayError::MethodNotAllowed { allow: "POST" }),
            };
        }
    }
    Err(GatewayError::NotFound)
}

/// Routes requests: unknown paths get 404, unserved methods 405 with `Allow`; a matched
/// [`Route`] is put in the request's extensions (and copied to the response's, for the log).
#[derive(Debug, Clone, Default)]
pub struct RouteLayer;

impl<S> Layer<S> for RouteLayer {
    type Service = Router<S>;
    fn layer(&self, inner: S) -> Router<S> {
        Router { inner }
    }
}

/// Service produced by [`RouteLayer`].
#[derive(Debug, Clone)]
pub struct Router<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Router<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> BoxFuture {
        let route = match match_route(req.method(), req.uri().path()) {
            Ok(route) => route,
            Err(e) => {
                let mut resp = e.into_response();
                resp.extensions_mut().insert(Route::Unmatched);
                return crate::drain::reject(req, resp);
            }
        };
        req.extensions_mut().insert(route);
        // Called now rather than inside the future: no clone of the rest of the stack.
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            resp.extensions_mut().insert(route);
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            match_route(&Method::GET, "/api/v1/partnerships").unwrap(),
            Route::List
        );
        assert_eq!(
            match_route(&Method::POST, "/api/v1/partnerships").unwrap(),
            Route::Create
        );
        assert_eq!(
            match_route(&Method::POST, "/api/v1/companies/123/partnerships").unwrap(),
            Route::CreateForCompany
        );
        assert!(matches!(
            match_route(&Method::DELETE, "/api/v1/partnerships"),
            Err(GatewayError::MethodNotAllowed { allow: "GET, POST" })
        ));
        assert!(matches!(
            match_route(&Method::GET, "/api/v1/companies/123/partnerships"),
            Err(GatewayError::MethodNotAllowed { allow: "POST" })
        ));
        for p in [
            "/api/v1/partnerships/",
            "/api/v1/companies/abc/partnerships",
            "/api/v1/companies//partnerships",
            "/api/v1/companies/1%2F2/partnerships",
            "/api/v1/companies/-1/partnerships",
            "/api/v1/tags",
            "/",
        ] {
            assert!(
                matches!(match_route(&Method::POST, p), Err(GatewayError::NotFound)),
                "{p}"
            );
        }
    }
}
