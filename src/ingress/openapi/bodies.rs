//! The write bodies' schemas, from JourneyBee's documented required fields and enums (a table
//! of data: one entry per body kind).

use super::schema::{
    color, email, enum_of, id_array, id_schema, label, object, schema_ref, string, update, uuid,
    MAX_ID,
};
use serde_json::{json, Map, Value};

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

pub(super) fn body_schemas(s: &mut Map<String, Value>) {
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
