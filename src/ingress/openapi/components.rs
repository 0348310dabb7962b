//! The document's `components`: the bearer scheme, the `Idempotency-Key` parameter, the
//! headers, the error responses every operation refers to, and the schemas.

use super::answers::response_schemas;
use super::bodies::body_schemas;
use super::schema::{json_content, schema_ref};
use serde_json::{json, Map, Value};

fn error_response(desc: &str, headers: &[&str]) -> Value {
    let mut r = json!({
        "description": desc,
        "content": json_content(schema_ref("Error")),
    });
    if !headers.is_empty() {
        let h: Map<String, Value> = headers
            .iter()
            .map(|name| {
                (
                    (*name).to_string(),
                    json!({"$ref": format!("#/components/headers/{name}")}),
                )
            })
            .collect();
        r["headers"] = Value::Object(h);
    }
    r
}

pub(super) fn components() -> Value {
    let mut schemas = Map::new();
    body_schemas(&mut schemas);
    response_schemas(&mut schemas);
    json!({
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "Your organisation's JWT, checked by the gateway (signature, \
                                issuer, audience, expiry) and mapped to a JourneyBee user and \
                                access level. The JourneyBee API key never leaves the gateway.",
            }
        },
        "parameters": {
            "IdempotencyKey": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": false,
                "description": "1 to 255 visible ASCII characters. A retry with the same key and \
                                body gets the first answer replayed and is never sent twice; the \
                                same key with another body: 422; still in flight: 409.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                           "pattern": "^[!-~]+$"},
            }
        },
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 0},
            },
            "WWW-Authenticate": {
                "description": "`Bearer`, or `Bearer error=\"invalid_token\"` for a token that \
                                was given but refused.",
                "schema": {"type": "string"},
            },
            "Allow": {
                "description": "The methods served on this path.",
                "schema": {"type": "string"},
            },
            "X-Cache": {
                "description": "HIT, MISS or BYPASS (`Cache-Control: no-store`).",
                "schema": {"type": "string", "enum": ["HIT", "MISS", "BYPASS"]},
            },
        },
        "responses": {
            "BadRequest": error_response(
                "Invalid request: a non-numeric path id, unknown, repeated or invalid query \
                 parameters, an invalid Idempotency-Key, or a body that is not JSON, does not \
                 match the documented schema or names records the company does not have \
                 (`details` lists every problem). Nothing was sent. JourneyBee's own 400s are \
                 passed through.", &[]),
            "Unauthorized": error_response(
                "Missing, malformed, mis-signed or expired bearer token.", &["WWW-Authenticate"]),
            "Forbidden": error_response(
                "The caller may not do this: a read user writing, a route not allowed for the \
                 user, another user's userId, or an unmapped user. Nothing was sent.", &[]),
            "NotFound": error_response(
                "Not a route this gateway serves (answered locally), or JourneyBee's 404 for an \
                 unknown id (passed through).", &[]),
            "MethodNotAllowed": error_response(
                "The path is served, but not with this method.", &["Allow"]),
            "NotAcceptable": error_response(
                "E-mail domains refused: free-mail, mixed or the company's own domains (checked \
                 locally), or JourneyBee's 406.", &[]),
            "Conflict": error_response(
                "A request with this Idempotency-Key is still in flight (Retry-After) or its \
                 outcome is unknown, or JourneyBee's conflict (e.g. the partnership already \
                 exists).", &["Retry-After"]),
            "PayloadTooLarge": error_response("The body exceeds the configured limit.", &[]),
            "UnsupportedMediaType": error_response("Content-Type must be application/json.", &[]),
            "UnprocessableEntity": error_response(
                "The Idempotency-Key was already used with a different body.", &[]),
            "TooManyRequests": error_response(
                "The JourneyBee rate limit (per API key) or this user's fair share is spent; \
                 nothing was sent.", &["Retry-After"]),
            "BadGateway": error_response(
                "JourneyBee is unreachable or answered something unusable.", &[]),
            "ServiceUnavailable": error_response(
                "The gateway is overloaded, JourneyBee is failing (circuit open), or the shared \
                 state needed for an idempotent write is unavailable; nothing was sent.",
                &["Retry-After"]),
            "GatewayTimeout": error_response(
                "JourneyBee did not answer in time. For a write: it may have been applied; \
                 check before retrying.", &[]),
        },
        "schemas": schemas,
    })
}
