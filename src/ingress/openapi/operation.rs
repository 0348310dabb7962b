//! One route's operation: its path and query parameters, its description (access, caching,
//! what a write makes stale, the body check), its request body and its answers.

use super::schema::{id_schema, json_content, schema_ref};
use crate::ingress::route::{BodyKind, Caching, Route, RouteSpec, Verb};
use crate::validate::query::Kind;
use serde_json::{json, Map, Value};

/// The `{name}` segments of a template, in order.
pub fn path_params(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|n| n.strip_suffix('}')))
        .collect()
}

pub(super) fn operation(spec: &RouteSpec) -> Value {
    let mut params: Vec<Value> = path_params(spec.template)
        .into_iter()
        .map(|name| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "description": "A positive integer id (anything else: 400, nothing sent).",
                "schema": id_schema(),
            })
        })
        .collect();
    params.extend(
        spec.query
            .params
            .iter()
            .map(|(name, kind)| query_param(name, *kind)),
    );
    if spec.is_write() {
        params.push(json!({"$ref": "#/components/parameters/IdempotencyKey"}));
    }

    let mut op = Map::new();
    op.insert("operationId".into(), json!(spec.label));
    op.insert("summary".into(), json!(spec.summary));
    op.insert("description".into(), json!(description(spec)));
    op.insert("tags".into(), json!([spec.group.as_str()]));
    op.insert(
        "x-access".into(),
        json!(if spec.is_write() { "write" } else { "read" }),
    );
    if spec.query.open {
        op.insert("x-query-forwarded".into(), json!(true));
    }
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some(body) = request_body(spec) {
        op.insert("requestBody".into(), body);
    }
    op.insert("responses".into(), responses(spec));
    Value::Object(op)
}

fn description(spec: &RouteSpec) -> String {
    let mut d = Vec::new();
    d.push(format!(
        "`{}` on JourneyBee's v1 API, forwarded with the gateway's API key. Requires {} access.",
        spec.name(),
        if spec.is_write() { "write" } else { "read" }
    ));
    if spec.query.takes_user_id() {
        d.push(
            "`userId` is optional here: it is forced to the caller's mapped id (any other \
             value: 403)."
                .into(),
        );
    }
    if spec.query.open {
        d.push(
            "This route's query is only partly documented by JourneyBee: the parameters below \
             are validated, and any other parameter is forwarded as given."
                .into(),
        );
    }
    match spec.caching {
        Caching::Lookup => d.push(
            "A company-wide lookup: cached per upstream key (shared by every user of the key) \
             for `[cache] lookup_ttl` (default 5 min). `Cache-Control: no-store` bypasses the \
             cache; `X-Cache` says HIT, MISS or BYPASS."
                .into(),
        ),
        Caching::Read => d.push(
            "Cached per upstream key and exact forwarded query (which carries the forced \
             `userId` where the route takes one) for `[cache] ttl`. `Cache-Control: no-store` \
             bypasses the cache; `X-Cache` says HIT, MISS or BYPASS."
                .into(),
        ),
        Caching::None => {}
    }
    if spec.is_write() {
        d.push(
            "Sent at most once (never retried); `Idempotency-Key` replays the first answer; an \
             unknown outcome is answered 504 (\"may have been applied\"); audited."
                .into(),
        );
        if !spec.invalidates.is_empty() {
            let names: Vec<&str> = spec.invalidates.iter().map(|g| g.as_str()).collect();
            d.push(format!(
                "A success makes the cached reads of {} stale.",
                names.join(", ")
            ));
        }
    }
    match spec.body {
        BodyKind::PartnershipCreate | BodyKind::PartnershipUpdate => d.push(
            "The body is checked against the documented schema and, unless \
             `[validation] check_references` is off, its tierId, categoryId, stageUuid, tags, \
             emails[].tags, assignedUsers and customFields against the company's real data \
             (every problem listed in `details`, nothing sent). When the lookups cannot be \
             read, the schema alone decides."
                .into(),
        ),
        BodyKind::Forward => d.push(
            "JourneyBee does not document this body fully: it must be a JSON object and is \
             forwarded byte for byte."
                .into(),
        ),
        BodyKind::None => {}
        _ => d.push(
            "The body is checked against JourneyBee's documented required fields and enums; \
             other fields are forwarded as given."
                .into(),
        ),
    }
    d.join("\n\n")
}

fn query_param(name: &str, kind: Kind) -> Value {
    let (schema, desc): (Value, String) = match kind {
        Kind::UserId => (
            id_schema(),
            "Optional: forced to the caller's mapped id. Any other value is refused with 403."
                .into(),
        ),
        Kind::Opaque => (
            json!({"type": "string", "minLength": 1}),
            "An opaque value, forwarded as given (non-empty).".into(),
        ),
        Kind::Search => (
            json!({"type": "string", "minLength": 1, "maxLength": 200}),
            "Free text (not empty), at most `[validation] max_search_len` characters (default 200).".into(),
        ),
        Kind::Enum(values) => (
            json!({"type": "string", "enum": values}),
            format!("One of {}.", values.join(", ")),
        ),
        Kind::EnumSet(values) => {
            let alt = values.join("|");
            (
                json!({"type": "string", "pattern": format!("^({alt})(,({alt}))*$")}),
                format!(
                    "A comma-separated set of {} (order and repeats do not matter).",
                    values.join(", ")
                ),
            )
        }
        Kind::Ids => (
            json!({"type": "string", "pattern": "^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17})*$"}),
            "Comma-separated positive integer ids such as `1,2,3` (at most 100; a set: order \
             and repeats do not matter)."
                .into(),
        ),
        Kind::Id => (id_schema(), "A positive integer id.".into()),
        Kind::Flag => (
            json!({"type": "string", "enum": ["1"]}),
            "A flag: present with the value 1.".into(),
        ),
        Kind::Any => (
            json!({"type": "string"}),
            "Forwarded as given (any value).".into(),
        ),
        Kind::CustomFields => (
            json!({
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "value"],
                        "properties": {
                            "id": id_schema(),
                            "value": {"type": "object", "minProperties": 1, "maxProperties": 1},
                        },
                        "additionalProperties": false,
                    },
                },
            }),
            "JSON: an array of custom field filters such as \
             `[{\"id\":5,\"value\":{\"number\":100}}]`; each value is an object with exactly one \
             of text, number, date, boolean, select, multi_select."
                .into(),
        ),
        Kind::Sort(types) => (
            json!({
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "asc"],
                        "properties": {
                            "type": {"type": "string", "enum": types},
                            "asc": {"type": "boolean"},
                        },
                        "additionalProperties": false,
                    },
                },
            }),
            format!(
                "JSON: an array of sort keys such as `[{{\"type\":\"{}\",\"asc\":true}}]`, \
                 type one of {}.",
                types.first().copied().unwrap_or("stage"),
                types.join(", ")
            ),
        ),
    };
    json!({
        "name": name,
        "in": "query",
        "required": false,
        "description": desc,
        "schema": schema,
    })
}

fn request_body(spec: &RouteSpec) -> Option<Value> {
    let schema = match (spec.route, spec.body) {
        (_, BodyKind::None) => return None,
        (Route::CreateLeadNote, _) => schema_ref("LeadNote"),
        (_, kind) => schema_ref(body_schema_name(kind)?),
    };
    Some(json!({
        "required": true,
        "content": {"application/json": {"schema": schema}},
    }))
}

fn body_schema_name(kind: BodyKind) -> Option<&'static str> {
    Some(match kind {
        BodyKind::None => return None,
        BodyKind::PartnershipCreate => "PartnershipCreate",
        BodyKind::PartnershipUpdate => "PartnershipUpdate",
        BodyKind::Tag => "TagCreate",
        BodyKind::Tier => "TierCreate",
        BodyKind::Category => "CategoryCreate",
        BodyKind::CategoriesBulk => "CategoriesBulk",
        BodyKind::PartnerStage => "PartnerStageCreate",
        BodyKind::PartnerStagesBulk => "PartnerStagesBulk",
        BodyKind::DealStage => "DealStageCreate",
        BodyKind::CustomField => "CustomFieldCreate",
        BodyKind::Lead => "LeadCreate",
        BodyKind::LeadUpdate => "LeadUpdate",
        BodyKind::Deal => "DealCreate",
        BodyKind::DealUpdate => "DealUpdate",
        BodyKind::ContactUpdate => "ContactUpdate",
        BodyKind::Forward => "Forwarded",
    })
}

/// The documented success answer of a route: (status, description, schema or None for no body).
fn success(spec: &RouteSpec) -> (&'static str, &'static str, Option<Value>) {
    let array_of = |name: &str| Some(json!({"type": "array", "items": schema_ref(name)}));
    let any = || Some(json!({}));
    match spec.route {
        Route::Users => ("200", "The company's users", array_of("User")),
        Route::Tags => ("200", "The tags", array_of("Tag")),
        Route::Tiers => ("200", "The tiers", array_of("Tier")),
        Route::Categories => ("200", "The categories", array_of("Category")),
        Route::PartnerStages => ("200", "The partner stages", array_of("PartnerStage")),
        Route::DealStages => ("200", "The lead-deal stages", array_of("DealStage")),
        Route::CustomFields => ("200", "The definitions", array_of("CustomField")),
        Route::PartnershipUsers => ("200", "The partner's users", array_of("PartnerUser")),
        Route::Create | Route::CreateForCompany => (
            "201",
            "Created; invitations are sent unless inactive",
            Some(schema_ref("PartnershipCreated")),
        ),
        Route::CreateLead => ("201", "Created", Some(schema_ref("LeadCreated"))),
        Route::UpdateCategories | Route::UpdatePartnerStages => {
            ("200", "Updated", Some(schema_ref("BulkUpdated")))
        }
        _ => match spec.verb {
            Verb::Get => ("200", "JourneyBee's answer, passed through", any()),
            Verb::Post => (
                "201",
                "Created (`{id, uuid}` or `{id}`; JourneyBee does not document the status)",
                Some(schema_ref("Created")),
            ),
            Verb::Patch => ("200", "Updated", Some(schema_ref("Updated"))),
            Verb::Delete => ("204", "Deleted (no body)", None),
        },
    }
}

fn responses(spec: &RouteSpec) -> Value {
    let (status, desc, schema) = success(spec);
    let mut ok = json!({"description": desc});
    if let Some(schema) = schema {
        ok["content"] = json_content(schema);
    }
    if spec.caching != Caching::None {
        ok["headers"] = json!({"X-Cache": {"$ref": "#/components/headers/X-Cache"}});
    }
    let mut r = Map::new();
    r.insert(status.into(), ok);
    let mut refs = vec![
        ("400", "BadRequest"),
        ("401", "Unauthorized"),
        ("403", "Forbidden"),
        ("404", "NotFound"),
        ("405", "MethodNotAllowed"),
        ("429", "TooManyRequests"),
        ("502", "BadGateway"),
        ("503", "ServiceUnavailable"),
        ("504", "GatewayTimeout"),
    ];
    if spec.is_write() {
        refs.extend([
            ("409", "Conflict"),
            ("413", "PayloadTooLarge"),
            ("415", "UnsupportedMediaType"),
            ("422", "UnprocessableEntity"),
        ]);
    }
    if spec.route.is_create() {
        refs.push(("406", "NotAcceptable"));
    }
    for (code, name) in refs {
        r.insert(
            code.into(),
            json!({"$ref": format!("#/components/responses/{name}")}),
        );
    }
    Value::Object(r)
}
