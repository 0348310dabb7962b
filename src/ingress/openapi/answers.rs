//! The answers' schemas: the gateway's own errors and JourneyBee's documented records (a table
//! of data: one entry per record).

use super::schema::schema_ref;
use serde_json::{json, Map, Value};

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

pub(super) fn response_schemas(s: &mut Map<String, Value>) {
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
