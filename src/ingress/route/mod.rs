//! Routing: the request's method and path are matched against the route table ([`table`]);
//! everything not in it (or disabled by config) is answered locally and never forwarded.

pub mod table;

pub use table::{BodyKind, Caching, Group, Route, RouteSpec, Verb, TABLE};

use crate::error::GatewayError;
use crate::exchange::{Accepted, Reply};
use crate::step::Step;
use crate::validate::query::{ParsedQuery, QueryLimits};
use http::Method;
use std::convert::Infallible;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// A set of routes, as a bit mask over [`Route::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteSet(u64);

impl RouteSet {
    /// Every route in the table.
    pub const ALL: RouteSet = RouteSet((1u64 << TABLE.len()) - 1);
    /// No route.
    pub const NONE: RouteSet = RouteSet(0);

    /// Whether `route` is in the set.
    pub fn contains(self, route: Route) -> bool {
        route != Route::Unmatched && self.0 & (1 << route.index()) != 0
    }

    /// The set with `route` added.
    pub fn with(self, route: Route) -> RouteSet {
        RouteSet(self.0 | (1 << route.index()))
    }

    /// The set without `route`.
    pub fn without(self, route: Route) -> RouteSet {
        RouteSet(self.0 & !(1 << route.index()))
    }

    /// The routes of a config list such as `["GET /api/v1/tiers", "PATCH /api/v1/partnerships/{partnershipId}"]`;
    /// `Err` names the entries that are not in the table.
    pub fn parse(names: &[String]) -> Result<RouteSet, Vec<String>> {
        let mut set = RouteSet::NONE;
        let mut unknown = Vec::new();
        for name in names {
            let normalized = name.split_whitespace().collect::<Vec<_>>().join(" ");
            match TABLE.iter().find(|s| s.name() == normalized) {
                Some(spec) => set = set.with(spec.route),
                None => unknown.push(name.clone()),
            }
        }
        if unknown.is_empty() {
            Ok(set)
        } else {
            Err(unknown)
        }
    }
}

/// How a path compares with a template.
enum Shape {
    Match,
    /// The same shape, but an id segment is not a positive integer.
    BadId(&'static str),
    NoMatch,
}

/// A positive integer in JourneyBee's id range (1..=i64::MAX), plain ASCII digits.
fn is_id(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 19
        && segment.bytes().all(|b| b.is_ascii_digit())
        && segment
            .parse::<u64>()
            .is_ok_and(|n| n >= 1 && n <= i64::MAX as u64)
}

fn shape(template: &'static str, path: &str) -> Shape {
    let mut t = template.split('/');
    let mut p = path.split('/');
    let mut bad = None;
    loop {
        match (t.next(), p.next()) {
            (None, None) => return bad.map_or(Shape::Match, Shape::BadId),
            (Some(ts), Some(ps)) => {
                if let Some(name) = ts.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                    if !is_id(ps) && bad.is_none() {
                        // An empty segment (`//`) is no id of any kind: not this route.
                        if ps.is_empty() {
                            return Shape::NoMatch;
                        }
                        bad = Some(name);
                    }
                } else if ts != ps {
                    return Shape::NoMatch;
                }
            }
            _ => return Shape::NoMatch,
        }
    }
}

/// Matches a method and path against the enabled routes. The path must match a template
/// exactly (no trailing slash, no percent-encoded separators; ids are positive integers): the
/// same path is forwarded upstream, so anything looser would forward paths nobody reviewed.
pub fn match_route(
    method: &Method,
    path: &str,
    enabled: RouteSet,
) -> Result<&'static RouteSpec, GatewayError> {
    let verb = Verb::of(method);
    let mut allow: Vec<&'static str> = Vec::new();
    let mut bad_id = None;
    for spec in TABLE.iter().filter(|s| enabled.contains(s.route)) {
        match shape(spec.template, path) {
            Shape::Match if Some(spec.verb) == verb => return Ok(spec),
            Shape::Match => {
                if !allow.contains(&spec.verb.as_str()) {
                    allow.push(spec.verb.as_str());
                }
            }
            Shape::BadId(name) => bad_id = bad_id.or(Some(name)),
            Shape::NoMatch => {}
        }
    }
    if !allow.is_empty() {
        return Err(GatewayError::MethodNotAllowed {
            allow: allow.join(", "),
        });
    }
    match bad_id {
        Some(name) => Err(GatewayError::InvalidPathId { name }),
        None => Err(GatewayError::NotFound),
    }
}

/// A request matched to a route, its query parsed once for every later stage.
#[derive(Debug)]
pub struct Routed<B> {
    /// The request as accepted.
    pub accepted: Accepted<B>,
    /// The matched route.
    pub spec: &'static RouteSpec,
    /// Its query string, parsed.
    pub query: ParsedQuery,
}

/// Routes requests: unknown (or disabled) paths get 404, unserved methods 405 with `Allow`, a
/// non-numeric id 400; a matched request continues as a [`Routed`] one.
#[derive(Debug, Clone)]
pub struct RouteLayer {
    enabled: RouteSet,
    limits: QueryLimits,
    openapi: bytes::Bytes,
}

impl RouteLayer {
    /// A router serving the `enabled` routes (and their OpenAPI document at
    /// [`OPENAPI_PATH`], unauthenticated: it describes the gateway, and holds no secret),
    /// parsing read queries within `limits`.
    pub fn new(enabled: RouteSet, limits: QueryLimits) -> Self {
        let doc = crate::ingress::openapi::document(enabled);
        RouteLayer {
            enabled,
            limits,
            openapi: bytes::Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()),
        }
    }
}

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

impl<S> Layer<S> for RouteLayer {
    type Service = Router<S>;
    fn layer(&self, inner: S) -> Router<S> {
        Router {
            inner,
            enabled: self.enabled,
            limits: self.limits,
            openapi: self.openapi.clone(),
        }
    }
}

/// Service produced by [`RouteLayer`].
#[derive(Debug, Clone)]
pub struct Router<S> {
    inner: S,
    enabled: RouteSet,
    limits: QueryLimits,
    openapi: bytes::Bytes,
}

impl<S, B> Service<Accepted<B>> for Router<S>
where
    S: Service<Routed<B>, Response = Reply, Error = Infallible>,
    S::Future: Unpin,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
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
        if http.uri().path() == OPENAPI_PATH {
            let reply = if http.method() == Method::GET {
                let mut r = http::Response::new(http_body_util::Full::new(self.openapi.clone()));
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
            return Step::boxed(crate::ingress::drain::reject(req.http.into_body(), reply));
        }
        let spec = match match_route(http.method(), http.uri().path(), self.enabled) {
            Ok(spec) => spec,
            Err(e) => {
                return Step::boxed(crate::ingress::drain::reject(
                    req.http.into_body(),
                    e.into(),
                ))
            }
        };
        let query = ParsedQuery::parse(
            http.uri().query(),
            &spec.query,
            spec.verb == Verb::Get,
            &self.limits,
        );
        let route = spec.route;
        Step::next(self.inner.call(Routed {
            accepted: req,
            spec,
            query,
        }))
        .route(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(method: Method, path: &str) -> Result<Route, GatewayError> {
        match_route(&method, path, RouteSet::ALL).map(|s| s.route)
    }

    #[test]
    fn routes() {
        assert_eq!(m(Method::GET, "/api/v1/partnerships").unwrap(), Route::List);
        assert_eq!(
            m(Method::POST, "/api/v1/partnerships").unwrap(),
            Route::Create
        );
        assert_eq!(
            m(Method::POST, "/api/v1/companies/123/partnerships").unwrap(),
            Route::CreateForCompany
        );
        assert_eq!(
            m(Method::PATCH, "/api/v1/partnerships/7").unwrap(),
            Route::UpdatePartnership
        );
        assert_eq!(m(Method::GET, "/api/v1/tiers").unwrap(), Route::Tiers);
        assert_eq!(
            m(Method::PATCH, "/api/v1/leads/3/notes/4").unwrap(),
            Route::UpdateLeadNote
        );
        match m(Method::DELETE, "/api/v1/partnerships") {
            Err(GatewayError::MethodNotAllowed { allow }) => assert_eq!(allow, "GET, POST"),
            other => panic!("{other:?}"),
        }
        match m(Method::GET, "/api/v1/companies/123/partnerships") {
            Err(GatewayError::MethodNotAllowed { allow }) => assert_eq!(allow, "POST"),
            other => panic!("{other:?}"),
        }
        for p in [
            "/api/v1/companies/abc/partnerships",
            "/api/v1/companies/-1/partnerships",
            "/api/v1/companies/1%2F2/partnerships",
            "/api/v1/companies/0/partnerships",
            "/api/v1/companies/9223372036854775808/partnerships",
        ] {
            assert!(
                matches!(
                    m(Method::POST, p),
                    Err(GatewayError::InvalidPathId { name: "companyId" })
                ),
                "{p}"
            );
        }
        assert!(matches!(
            m(Method::PATCH, "/api/v1/partnerships/abc"),
            Err(GatewayError::InvalidPathId {
                name: "partnershipId"
            })
        ));
        for p in [
            "/api/v1/partnerships/",
            "/api/v1/companies//partnerships",
            "/api/v1/countries",
            "/api/v1/tags/1",
            "/",
        ] {
            assert!(
                matches!(m(Method::POST, p), Err(GatewayError::NotFound)),
                "{p}"
            );
        }
    }

    #[test]
    fn disabled_routes_are_not_served() {
        let set = RouteSet::ALL.without(Route::DeletePartnership);
        assert!(matches!(
            match_route(&Method::DELETE, "/api/v1/partnerships/1", set),
            Err(GatewayError::MethodNotAllowed { .. })
        ));
        let set = set.without(Route::UpdatePartnership);
        assert!(matches!(
            match_route(&Method::DELETE, "/api/v1/partnerships/1", set),
            Err(GatewayError::NotFound)
        ));
    }

    #[test]
    fn route_names_parse() {
        let set = RouteSet::parse(&[
            "GET /api/v1/tiers".into(),
            "DELETE  /api/v1/partnerships/{partnershipId}".into(),
        ])
        .unwrap();
        assert!(set.contains(Route::Tiers));
        assert!(set.contains(Route::DeletePartnership));
        assert!(!set.contains(Route::List));
        assert_eq!(
            RouteSet::parse(&["GET /api/v1/countries".into()]),
            Err(vec!["GET /api/v1/countries".to_string()])
        );
    }
}
