//! The OpenAPI 3.1 document of the routes this gateway serves, generated from the route table
//! (so it can never disagree with what is served), and served unauthenticated at
//! `GET /openapi.json` on the public listener (by [`super::service`]).
//!
//! What it says comes from three places:
//! * the table ([`TABLE`]): paths, methods, path ids, documented query parameters with their
//!   kinds, access, caching, which reads a write makes stale, the body check;
//! * JourneyBee's documentation (`journeybee-api-more.md` and the seed pages): the write bodies'
//!   required fields and enums, and the documented answers. Where the docs are partial, the
//!   schemas stay permissive (`additionalProperties` allowed, types left open);
//! * the gateway itself: the errors it answers locally, all `{"error", "details"?}`.
//!
//! The document is a `serde_json::Value` whose maps are sorted (serde_json without
//! `preserve_order`), so it is byte-for-byte deterministic for a given route set.

use super::components::components;
use super::operation::operation;
use crate::ingress::route::{Group, RouteSet, TABLE};
use serde_json::{json, Map, Value};

pub use super::operation::path_params;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The document for the `enabled` routes.
pub fn document(enabled: RouteSet) -> Value {
    let mut paths = Map::new();
    let mut groups: Vec<Group> = Vec::new();
    for spec in TABLE.iter().filter(|s| enabled.contains(s.route)) {
        if !groups.contains(&spec.group) {
            groups.push(spec.group);
        }
        let item = paths
            .entry(spec.template.to_string())
            .or_insert_with(|| json!({}));
        item[spec.verb.as_str().to_ascii_lowercase()] = operation(spec);
    }
    paths.insert(OPENAPI_PATH.to_string(), openapi_path());
    let mut tags: Vec<Value> = groups
        .iter()
        .map(|g| json!({"name": g.as_str(), "description": group_description(*g)}))
        .collect();
    tags.push(json!({"name": "gateway", "description": "The gateway's own endpoints."}));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "JourneyBee API gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "The JourneyBee v1 API, behind an authenticating gateway.",
            "description": INFO_DESCRIPTION,
        },
        "servers": [{"url": "/", "description": "This gateway"}],
        "security": [{"bearer": []}],
        "tags": tags,
        "paths": paths,
        "components": components(),
    })
}

const INFO_DESCRIPTION: &str = "Generated from the gateway's route table: only the routes this \
configuration serves are listed; anything else is answered 404 locally and never forwarded.\n\n\
Authenticate with your organisation's JWT (`Authorization: Bearer <token>`); the gateway holds \
the JourneyBee API key. Reads need read access, POST/PATCH/DELETE write access (403 otherwise, \
nothing sent). Where a route takes `userId`, the gateway forces it to the caller's mapped \
JourneyBee user id: omit it, or give your own (any other value is refused with 403).\n\n\
Query parameters are validated (unknown or repeated parameters: 400) except on routes whose \
query JourneyBee documents only partly, where undocumented parameters are forwarded as given. \
Write bodies are checked against JourneyBee's documented required fields and enums, and \
partnership creates and updates against the company's real tiers, categories, stages, tags, \
users and custom fields; every problem is listed in `details`. Every write is sent at most \
once, honours `Idempotency-Key`, and is audited.\n\n\
Errors produced by the gateway itself are `{\"error\": \"...\", \"details\"?: [{\"field\", \
\"message\"}]}`; JourneyBee's own answers (including its errors, as `{\"error\": \"...\"}`) are \
passed through.";

fn group_description(g: Group) -> &'static str {
    match g {
        Group::Partnerships => "Partnerships and the partner companies' users.",
        Group::Users => "Company users (ids for assignedUsers, userId, users=).",
        Group::Tags => "Tags.",
        Group::Tiers => "Partner tiers.",
        Group::Categories => "Partner categories.",
        Group::PartnerStages => "Partner stages (their uuid is what stageUuid takes).",
        Group::DealStages => "Lead-deal stages.",
        Group::CustomFields => "Custom field definitions.",
        Group::Contacts => "Partner contacts.",
        Group::Leads => "Leads and their notes.",
        Group::Deals => "Deals (lead-deals).",
    }
}

/// `GET /openapi.json` itself: unauthenticated.
fn openapi_path() -> Value {
    json!({
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "description": "The OpenAPI 3.1 description of the routes this gateway serves. \
                            Unauthenticated; it holds no secret.",
            "tags": ["gateway"],
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "405": {"$ref": "#/components/responses/MethodNotAllowed"},
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::route::{BodyKind, Route, RouteSpec};

    fn op<'a>(doc: &'a Value, spec: &RouteSpec) -> &'a Value {
        &doc["paths"][spec.template][spec.verb.as_str().to_ascii_lowercase()]
    }

    /// Every `$ref` in the document, recursively.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(s)) => out.push(s),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_enabled_route_is_described() {
        let doc = document(RouteSet::ALL);
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids = std::collections::HashSet::new();
        for spec in TABLE {
            let op = op(&doc, spec);
            assert!(op.is_object(), "{} missing", spec.name());
            assert_eq!(op["operationId"], spec.label);
            assert!(
                ids.insert(spec.label),
                "duplicate operationId {}",
                spec.label
            );
            assert_eq!(op["tags"][0], spec.group.as_str());
            assert!(op["responses"]["401"].is_object(), "{}", spec.name());
            assert!(op["responses"]["429"].is_object(), "{}", spec.name());
            let has_success = ["200", "201", "204"]
                .iter()
                .any(|c| op["responses"][c].is_object());
            assert!(has_success, "{}", spec.name());
            let has_key = op["parameters"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|p| p["$ref"] == "#/components/parameters/IdempotencyKey")
            });
            assert_eq!(has_key, spec.is_write(), "{}", spec.name());
            assert_eq!(
                op["requestBody"].is_object(),
                spec.body != BodyKind::None,
                "{}",
                spec.name()
            );
        }
        // One path item per template, one operation per route, plus /openapi.json.
        let n: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(n, TABLE.len() + 1);
        assert_eq!(doc["security"], json!([{"bearer": []}]));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(doc["paths"]["/openapi.json"]["get"]["security"], json!([]));
    }

    #[test]
    fn disabled_routes_are_absent() {
        let set = RouteSet::ALL
            .without(Route::DeletePartnership)
            .without(Route::Tiers)
            .without(Route::CreateTier);
        let doc = document(set);
        for spec in TABLE {
            assert_eq!(
                op(&doc, spec).is_object(),
                set.contains(spec.route),
                "{}",
                spec.name()
            );
        }
        // A template with no enabled method has no path item at all.
        assert!(doc["paths"].get("/api/v1/tiers").is_none());
        assert!(doc["paths"]["/api/v1/partnerships/{partnershipId}"]["patch"].is_object());
        let doc = document(RouteSet::NONE);
        assert_eq!(doc["paths"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn every_path_id_is_a_required_positive_integer() {
        let doc = document(RouteSet::ALL);
        for spec in TABLE {
            let names = path_params(spec.template);
            let params = op(&doc, spec)["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let in_path: Vec<&Value> = params.iter().filter(|p| p["in"] == "path").collect();
            assert_eq!(in_path.len(), names.len(), "{}", spec.name());
            for name in names {
                let p = in_path
                    .iter()
                    .find(|p| p["name"] == name)
                    .unwrap_or_else(|| panic!("{}: no parameter {name}", spec.name()));
                assert_eq!(p["required"], true);
                assert_eq!(p["schema"]["type"], "integer");
                assert_eq!(p["schema"]["minimum"], 1);
            }
        }
    }

    #[test]
    fn query_parameters_follow_the_table() {
        let doc = document(RouteSet::ALL);
        for spec in TABLE {
            let params = op(&doc, spec)["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let query: Vec<&str> = params
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let want: Vec<&str> = spec.query.params.iter().map(|(n, _)| *n).collect();
            assert_eq!(query, want, "{}", spec.name());
            for p in params.iter().filter(|p| p["in"] == "query") {
                assert_eq!(p["required"], false, "{} {}", spec.name(), p["name"]);
            }
            let desc = op(&doc, spec)["description"].as_str().unwrap();
            assert_eq!(
                desc.contains("any other parameter is forwarded"),
                spec.query.open,
                "{}",
                spec.name()
            );
        }
        let leads = &doc["paths"]["/api/v1/leads"]["get"]["parameters"];
        let user = leads
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "userId")
            .unwrap();
        assert!(user["description"]
            .as_str()
            .unwrap()
            .contains("forced to the caller's mapped id"));
        let status = leads
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "status")
            .unwrap();
        let re = status["schema"]["pattern"].as_str().unwrap();
        assert!(re.starts_with("^(new|contacted|"), "{re}");
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document(RouteSet::ALL);
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let pointer = r.strip_prefix('#').expect("local reference");
            assert!(doc.pointer(pointer).is_some(), "dangling {r}");
        }
    }

    #[test]
    fn errors_and_headers() {
        let doc = document(RouteSet::ALL);
        let c = &doc["components"];
        assert_eq!(c["schemas"]["Error"]["required"], json!(["error"]));
        assert!(c["responses"]["Unauthorized"]["headers"]["WWW-Authenticate"].is_object());
        assert!(c["responses"]["TooManyRequests"]["headers"]["Retry-After"].is_object());
        let create = &doc["paths"]["/api/v1/partnerships"]["post"];
        assert!(create["responses"]["406"].is_object());
        assert!(create["responses"]["409"].is_object());
        assert_eq!(
            c["schemas"]["PartnershipCreate"]["required"],
            json!(["name", "emails", "partnerType"])
        );
        assert_eq!(
            c["schemas"]["PartnershipCreate"]["dependentSchemas"]["reseller"]["properties"]
                ["partnerType"]["const"],
            "reseller"
        );
        assert!(doc["paths"]["/api/v1/partnerships"]["get"]["responses"]["406"].is_null());
        let delete = &doc["paths"]["/api/v1/partnerships/{partnershipId}"]["delete"];
        assert!(delete["responses"]["204"]["content"].is_null());
    }

    #[test]
    fn deterministic() {
        let a = serde_json::to_string(&document(RouteSet::ALL)).unwrap();
        let b = serde_json::to_string(&document(RouteSet::ALL)).unwrap();
        assert_eq!(a, b);
    }
}
