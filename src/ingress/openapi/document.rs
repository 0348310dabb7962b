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

use crate::ingress::route::{BodyKind, Caching, Group, Route, RouteSet, RouteSpec, Verb, TABLE};
use crate::validate::query::Kind;
use serde_json::{json, Map, Value};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The largest id the gateway accepts in a path or a body (i64::MAX).
const MAX_ID: i64 = i64::MAX;

/// Custom field types (seed page, `GET /custom-fields`).
const FIELD_TYPES: &[&str] = &[
    "text",
    "textarea",
    "number",
    "date",
    "boolean",
    "select",
    "multi_select",
];
const PARTNER_TYPES: &[&str] = &["referral", "reseller"];

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

/// The `{name}` segments of a template, in order.
pub fn path_params(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|n| n.strip_suffix('}')))
        .collect()
}

/// A positive integer id. In bodies it must be a JSON integer: `1.0` is refused.
fn id_schema() -> Value {
    json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID})
}

fn id_array() -> Value {
    json!({
        "type": "array",
        "items": id_schema(),
        "uniqueItems": true,
        "maxItems": 100,
    })
}

fn operation(spec: &RouteSpec) -> Value {
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

// ------------------------------------------------------------------ request bodies

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

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
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

fn string(max: usize) -> Value {
    json!({"type": "string", "maxLength": max})
}

fn enum_of(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

fn uuid() -> Value {
    json!({"type": "string", "format": "uuid", "pattern":
        "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"})
}

fn color(default: &str) -> Value {
    json!({
        "type": "string",
        "pattern": "^#[0-9A-Fa-f]{6}$",
        "description": "A hex colour #RRGGBB.",
        "default": default,
    })
}

/// A label: a non-blank string of at most 200 characters.
fn label() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"})
}

/// An e-mail address, checked as the gateway checks the create's.
fn email() -> Value {
    json!({"type": "string", "format": "email", "maxLength": 254})
}

/// An update: every field optional, at least one given.
fn update(props: Value, desc: &str) -> Value {
    let mut o = object(&[], props, true, desc);
    o["minProperties"] = json!(1);
    o
}

/// An object schema; `strict` refuses undocumented keys.
fn object(required: &[&str], props: Value, strict: bool, desc: &str) -> Value {
    let mut o = json!({
        "type": "object",
        "properties": props,
        "description": desc,
    });
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    if strict {
        o["additionalProperties"] = json!(false);
    }
    o
}

/// The value of one custom field: the `value` object holds exactly the key named by `type`.
fn custom_field_value() -> Value {
    let variants: Vec<Value> = FIELD_TYPES
        .iter()
        .map(|t| {
            let (key, inner) = match *t {
                "text" | "textarea" => ("text", string(500)),
                "number" => ("number", json!({"type": "number"})),
                "date" => (
                    "date",
                    json!({
                        "type": "string",
                        "anyOf": [{"format": "date"}, {"format": "date-time"}],
                        "description": "An ISO 8601 date (YYYY-MM-DD) or RFC 3339 date-time.",
                    }),
                ),
                "boolean" => ("boolean", json!({"type": "boolean"})),
                "select" => ("select", id_schema()),
                _ => ("multi_select", id_array()),
            };
            json!({
                "type": "object",
                "required": ["customFieldId", "type", "value"],
                "properties": {
                    "customFieldId": id_schema(),
                    "type": {"const": t},
                    "value": {
                        "type": "object",
                        "required": [key],
                        "properties": {key: inner},
                        "additionalProperties": false,
                    },
                },
                "additionalProperties": false,
            })
        })
        .collect();
    json!({
        "description": "A custom field value: `value` holds the one key that `type` names \
                        (text and textarea take `text`, select an option id, multi_select \
                        option ids).",
        "oneOf": variants,
    })
}

fn custom_fields() -> Value {
    json!({"type": "array", "items": schema_ref("CustomFieldValue"), "maxItems": 100})
}

fn body_schemas(s: &mut Map<String, Value>) {
    s.insert("CustomFieldValue".into(), custom_field_value());
    s.insert("IdList".into(), id_array());
    let ids = || schema_ref("IdList");
    s.insert(
        "PartnershipCreate".into(),
        object(
            &["name", "emails", "partnerType"],
            json!({
                "name": {"type": "string", "minLength": 1, "maxLength": 200,
                         "description": "The partner company's name."},
                "emails": {
                    "type": "array", "minItems": 1, "maxItems": 50,
                    "description": "The partner's contacts; all from one business domain \
                                    (free-mail or the company's own domains: 406).",
                    "items": object(&["email"], json!({
                        "email": email(),
                        "firstName": string(500),
                        "lastName": string(500),
                        "tags": ids(),
                    }), true, "A contact."),
                },
                "partnerType": enum_of(PARTNER_TYPES),
                "tierId": id_schema(),
                "categoryId": id_schema(),
                "stageUuid": uuid(),
                "inactive": {"type": "boolean", "description": "Create inactive (no invitations)."},
                "countryId": id_schema(),
                "emailDomain": {
                    "type": "string",
                    "maxLength": 253,
                    "pattern": "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,63}$",
                    "description": "A domain name such as example.com.",
                },
                "reseller": {"type": "string", "enum": ["company", "partner"],
                             "description": "Who resells (reseller partnerships)."},
                "assignedUsers": ids(),
                "tags": ids(),
                "customFields": custom_fields(),
            }),
            true,
            "The documented partnership create. Undocumented keys are refused unless \
             `[validation] allow_unknown_fields` is on.",
        ),
    );
    // `reseller` says who resells: only for reseller partnerships.
    s["PartnershipCreate"]["dependentSchemas"] = json!({
        "reseller": {"required": ["partnerType"], "properties": {"partnerType": {"const": "reseller"}}},
    });
    s.insert(
        "PartnershipUpdate".into(),
        update(
            json!({
                "tierId": {"type": ["integer", "null"], "minimum": 1,
                           "description": "null removes the tier."},
                "categoryId": {"type": ["integer", "null"], "minimum": 1,
                               "description": "null removes the category."},
                "stageUuid": uuid(),
                "assignedUsers": {"allOf": [ids()], "description": "Replaces the assigned users."},
                "tags": {"allOf": [ids()], "description": "Replaces the tags."},
                "customFields": custom_fields(),
                "fallbackData": object(&[], json!({
                    "name": string(500),
                    "logo_square_uuid": string(500),
                    "website_url": string(500),
                    "country_label": string(500),
                }), true, "Shown while the partner has not joined."),
            }),
            "A partnership update: every field optional, at least one given.",
        ),
    );
    let series = || json!({"type": "integer", "minimum": 0, "maximum": MAX_ID, "description": "The stage's position."});
    s.insert(
        "TagCreate".into(),
        object(
            &["label", "association"],
            json!({
                "label": label(),
                "association": enum_of(&["lead", "lead_deal", "partner", "card"]),
                "background_color": color("#6B7280"),
                "text_color": color("#FFFFFF"),
                "partner_type": enum_of(PARTNER_TYPES),
            }),
            true,
            "A new tag.",
        ),
    );
    s.insert(
        "TierCreate".into(),
        object(
            &["label"],
            json!({
                "label": label(),
                "background_color": color("#6B7280"),
                "text_color": color("#FFFFFF"),
                "partner_type": enum_of(PARTNER_TYPES),
            }),
            true,
            "A new tier.",
        ),
    );
    s.insert(
        "CategoryCreate".into(),
        object(
            &["label"],
            json!({"label": label(), "partner_type": enum_of(PARTNER_TYPES)}),
            true,
            "A new category.",
        ),
    );
    let rename = object(
        &["id", "label"],
        json!({"id": id_schema(), "label": label()}),
        true,
        "A category and its new label.",
    );
    s.insert(
        "CategoriesBulk".into(),
        json!({
            "description": "The documented object, or the bare array the docs' example sends.",
            "oneOf": [
                object(&["categories"], json!({
                    "categories": {"type": "array", "minItems": 1, "maxItems": 100, "items": rename.clone()},
                }), false, "Categories to rename."),
                {"type": "array", "minItems": 1, "maxItems": 100, "items": rename},
            ],
        }),
    );
    let phases = &["discovery", "evaluation", "active", "inactive"];
    s.insert(
        "PartnerStageCreate".into(),
        object(
            &["label", "partner_type"],
            json!({
                "label": label(),
                "partner_type": enum_of(PARTNER_TYPES),
                "phase": enum_of(phases),
                "series": series(),
            }),
            true,
            "A new partner stage.",
        ),
    );
    let stage = object(
        &["id"],
        json!({"id": id_schema(), "label": label(), "series": series(), "phase": enum_of(phases)}),
        true,
        "A stage and what changes.",
    );
    let mut stage = stage;
    stage["minProperties"] = json!(2);
    s.insert(
        "PartnerStagesBulk".into(),
        json!({
            "description": "The documented object, or the bare array the docs' example sends.",
            "oneOf": [
                object(&["stages"], json!({
                    "stages": {"type": "array", "minItems": 1, "maxItems": 100, "items": stage.clone()},
                }), false, "Stages to update."),
                {"type": "array", "minItems": 1, "maxItems": 100, "items": stage},
            ],
        }),
    );
    s.insert(
        "DealStageCreate".into(),
        object(
            &["label", "phase"],
            json!({
                "label": label(),
                "phase": enum_of(&["discovery", "negotiation", "closed_won", "closed_lost"]),
                "partner_type": enum_of(PARTNER_TYPES),
                "series": series(),
            }),
            true,
            "A new lead-deal stage.",
        ),
    );
    s.insert(
        "CustomFieldCreate".into(),
        object(
            &["label", "type", "category"],
            json!({
                "label": label(),
                "type": enum_of(FIELD_TYPES),
                "category": enum_of(&["lead", "lead_deal", "partner"]),
                "partner_type": enum_of(PARTNER_TYPES),
                "required": {"type": "boolean", "default": false},
                "shared": {"type": "boolean", "default": false},
                "options": {
                    "type": "array",
                    "description": "The choices of a select or multi_select field.",
                    "items": object(&["label"], json!({"label": label()}), true, "A choice."),
                },
            }),
            true,
            "A new custom field definition.",
        ),
    );
    // Options: required (at least one) for select and multi_select, refused for other types.
    s["CustomFieldCreate"]["if"] = json!({
        "required": ["type"],
        "properties": {"type": {"enum": ["select", "multi_select"]}},
    });
    s["CustomFieldCreate"]["then"] = json!({
        "required": ["options"],
        "properties": {"options": {"minItems": 1, "maxItems": 100}},
    });
    s["CustomFieldCreate"]["else"] = json!({"not": {"required": ["options"]}});
    let lead_status = &["new", "contacted", "qualified", "converted", "lost"];
    s.insert(
        "LeadCreate".into(),
        object(
            &["associationType"],
            json!({
                "associationType": enum_of(&["referral", "reseller", "campaigns"]),
                "company_name": string(500),
                "email": email(),
                "phone_number": string(500),
                "first_name": string(500),
                "last_name": string(500),
                "source": enum_of(&["manual", "campaign", "partnership", "integration",
                                    "lead_submission_form"]),
                "companyCampaignId": id_schema(),
                "partnershipLead": {"type": "object", "description": "Not fully documented."},
                "tags": ids(),
                "customFields": custom_fields(),
                "partnerCustomFields": {"type": "array"},
                "attributions": {"type": "array"},
                "integrationName": {"type": "string"},
            }),
            false,
            "A new lead (notifies, fires webhooks). Only partly documented: other fields are \
             forwarded.",
        ),
    );
    s.insert(
        "LeadUpdate".into(),
        update(
            json!({
                "company_name": string(500),
                "email": email(),
                "phone_number": string(500),
                "first_name": string(500),
                "last_name": string(500),
                "status": enum_of(lead_status),
                "assignedUsers": ids(),
                "tags": ids(),
                "customFields": custom_fields(),
            }),
            "A lead update: every field optional, at least one given.",
        ),
    );
    s.insert(
        "DealCreate".into(),
        object(
            &["lead_id"],
            json!({
                "lead_id": id_schema(),
                "deal_value": {"type": "number", "minimum": 0},
                "label": string(500),
                "stage_uuid": uuid(),
                "partnership_id": id_schema(),
                "tags": ids(),
                "customFields": custom_fields(),
            }),
            false,
            "A new deal. Only partly documented: other fields are forwarded.",
        ),
    );
    s.insert(
        "DealUpdate".into(),
        update(
            json!({
                "label": string(500),
                "deal_value": {"type": "number", "minimum": 0},
                "stage_uuid": uuid(),
                "payment_stage_uuid": uuid(),
                "tags": ids(),
                "customFields": custom_fields(),
            }),
            "A deal update: every field optional, at least one given.",
        ),
    );
    s.insert(
        "ContactUpdate".into(),
        update(
            json!({
                "first_name": string(500),
                "last_name": string(500),
                "email": email(),
                "position": string(500),
                "phone_number": string(500),
                "tags": {"allOf": [ids()], "description": "Replaces the tags."},
            }),
            "A contact update: every field optional, at least one given.",
        ),
    );
    s.insert(
        "LeadNote".into(),
        object(
            &["document"],
            json!({
                "document": {"type": "object", "description": "ProseMirror JSON."},
                "attachments": {"type": "array"},
                "mentions": {"type": "array"},
            }),
            false,
            "A note (JourneyBee's documented fields; the gateway checks only that the body is \
             a JSON object and forwards it byte for byte).",
        ),
    );
    s.insert(
        "Forwarded".into(),
        json!({
            "type": "object",
            "description": "Not documented by JourneyBee: any JSON object, forwarded byte for \
                            byte.",
        }),
    );
}

// ------------------------------------------------------------------ responses

/// Documented item fields of the lookups and lists: `(name, type)` with `id` an id.
fn item(props: &[(&str, &str)], desc: &str) -> Value {
    let mut p = Map::new();
    for (name, ty) in props {
        let schema = match *ty {
            "id" => json!({"type": "integer"}),
            "id?" => json!({"type": ["integer", "null"]}),
            "string?" => json!({"type": ["string", "null"]}),
            "any" => json!({}),
            t => json!({"type": t}),
        };
        p.insert((*name).to_string(), schema);
    }
    json!({"type": "object", "properties": p, "description": desc})
}

fn response_schemas(s: &mut Map<String, Value>) {
    s.insert(
        "FieldError".into(),
        json!({
            "type": "object",
            "required": ["field", "message"],
            "properties": {
                "field": {"type": "string", "description": "The parameter, or a path inside the \
                          body such as emails[0].email (empty for the whole body)."},
                "message": {"type": "string"},
            },
        }),
    );
    s.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "details": {"type": "array", "items": schema_ref("FieldError")},
            },
            "description": "An error answered by the gateway (JourneyBee's own errors are \
                            `{\"error\": \"...\"}` too).",
        }),
    );
    let lookup_common: &[(&str, &str)] = &[
        ("id", "id"),
        ("uuid", "string"),
        ("label", "string"),
        ("partner_type", "string?"),
        ("company_id", "id"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<(&str, &str)> = lookup_common.to_vec();
        v.extend_from_slice(extra);
        v
    };
    s.insert(
        "User".into(),
        item(
            &[
                ("id", "id"),
                ("created_at", "string"),
                ("email", "string"),
                ("first_name", "string?"),
                ("last_name", "string?"),
                ("role", "string"),
                ("position", "string?"),
                ("email_verified", "any"),
                ("disabled_at", "string?"),
                ("color", "string?"),
                ("profile_image_id", "id?"),
                ("profile_image_uuid", "string?"),
                ("country_id", "id?"),
                ("country_label", "string?"),
                ("country_code", "string?"),
            ],
            "A company user (role: admin, partnerships, partner, indirect).",
        ),
    );
    s.insert(
        "Tag".into(),
        item(
            &with(&[
                ("background_color", "string"),
                ("text_color", "string"),
                ("association", "string"),
            ]),
            "A tag.",
        ),
    );
    s.insert(
        "Tier".into(),
        item(
            &with(&[("background_color", "string"), ("text_color", "string")]),
            "A tier.",
        ),
    );
    s.insert(
        "Category".into(),
        item(
            &with(&[("created_at", "string"), ("updated_at", "string")]),
            "A category.",
        ),
    );
    s.insert(
        "PartnerStage".into(),
        item(
            &with(&[("series", "any"), ("phase", "string")]),
            "A partner stage; its uuid is what stageUuid takes.",
        ),
    );
    s.insert(
        "DealStage".into(),
        item(
            &with(&[("series", "any"), ("phase", "string")]),
            "A lead-deal stage.",
        ),
    );
    s.insert(
        "CustomField".into(),
        item(
            &with(&[
                ("type", "string"),
                ("category", "string"),
                ("required", "boolean"),
                ("shared", "boolean"),
                ("options", "any"),
            ]),
            "A custom field definition (options: [{id, label}] or null).",
        ),
    );
    s.insert(
        "PartnerUser".into(),
        item(
            &[
                ("total", "any"),
                ("id", "id"),
                ("email", "string"),
                ("first_name", "string?"),
                ("last_name", "string?"),
                ("color", "string?"),
                ("position", "string?"),
                ("phone_number", "string?"),
                ("profile_image_id", "id?"),
                ("profile_image_uuid", "string?"),
                ("company_id", "id"),
                ("meeting_link", "string?"),
                ("company_name", "string?"),
                ("country_label", "string?"),
                ("city_label", "string?"),
            ],
            "A user of the partner company.",
        ),
    );
    s.insert(
        "Created".into(),
        item(&[("id", "id"), ("uuid", "string")], "The new record's ids."),
    );
    s.insert(
        "Updated".into(),
        item(
            &[("id", "id"), ("uuid", "string"), ("updated_at", "string")],
            "The updated record.",
        ),
    );
    s.insert(
        "BulkUpdated".into(),
        json!({
            "type": "object",
            "properties": {"updated": {"type": "array", "items": {"type": "integer"}}},
            "description": "The ids updated.",
        }),
    );
    s.insert(
        "PartnershipCreated".into(),
        item(
            &[("status", "string"), ("message", "string")],
            "Documented as `{\"status\": \"created\", \"message\": ...}` (the page also says \
             the body may be empty).",
        ),
    );
    s.insert(
        "LeadCreated".into(),
        item(
            &[
                ("id", "id"),
                ("uuid", "string"),
                ("partnershipLeadId", "id?"),
            ],
            "The new lead's ids.",
        ),
    );
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
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

fn components() -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

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
