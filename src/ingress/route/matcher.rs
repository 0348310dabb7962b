//! Matching a method and path against the enabled routes.

use super::set::RouteSet;
use super::table::{RouteSpec, Verb, TABLE};
use crate::error::GatewayError;
use http::Method;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::route::Route;

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
