//! Write bodies of the routes beyond the partnership create: each checked against its
//! documented required fields and enums (every problem reported), so a bad request never
//! spends the upstream budget. Bodies whose schema JourneyBee does not document are only
//! required to be JSON objects (or arrays), and are forwarded byte for byte.
//!
//! The readings follow the create's (see [`super::body`]):
//! - every problem is listed, addressed by its path (`stages[1].id`, `customFields[0].value`;
//!   a bulk body sent as the docs' bare array uses `[1].id`);
//! - `null` is refused for an optional field (it must be a value or absent), except where the
//!   docs give it a meaning: `tierId` / `categoryId` `null` on a partnership update removes it;
//! - unknown keys are refused with a "did you mean" hint, like the create's default
//!   (`allow_unknown_fields = false`). The two exceptions are `POST /leads` and
//!   `POST /lead-deals`, whose documented field lists end in "...": refusing a field the
//!   gateway does not know of there would refuse real requests, so only the fields it does
//!   know are checked and the rest is forwarded as sent;
//! - an update must change something: at least one documented field;
//! - the create's limits apply: labels at most 200 characters, other strings 500, arrays 100
//!   items; custom field values have exactly the create's shape and rules;
//! - ids are positive integers, `series` a non-negative integer, colours `#RRGGBB`.

use super::custom_fields::check_custom_fields;
use super::fields::{check_id_array, check_string, optional, positive_id, required, unknown_keys};
use super::formats::{email_domain, is_uuid};
use super::problems::{join, json_error_message, BodyRejection, Errors};
use super::rules::BodyRules;
use crate::ingress::route::BodyKind;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

type Obj = Map<String, Value>;

const PARTNER_TYPES: &[&str] = &["referral", "reseller"];
const TAG_ASSOCIATIONS: &[&str] = &["lead", "lead_deal", "partner", "card"];
const PARTNER_PHASES: &[&str] = &["discovery", "evaluation", "active", "inactive"];
const DEAL_PHASES: &[&str] = &["discovery", "negotiation", "closed_won", "closed_lost"];
const FIELD_TYPES: &[&str] = &[
    "text",
    "textarea",
    "number",
    "date",
    "boolean",
    "select",
    "multi_select",
];
const FIELD_CATEGORIES: &[&str] = &["lead", "lead_deal", "partner"];
const LEAD_ASSOCIATION_TYPES: &[&str] = &["referral", "reseller", "campaigns"];
const LEAD_SOURCES: &[&str] = &[
    "manual",
    "campaign",
    "partnership",
    "integration",
    "lead_submission_form",
];
const LEAD_STATUSES: &[&str] = &["new", "contacted", "qualified", "converted", "lost"];

const TAG_KEYS: &[&str] = &[
    "label",
    "association",
    "background_color",
    "text_color",
    "partner_type",
];
const TIER_KEYS: &[&str] = &["label", "background_color", "text_color", "partner_type"];
const CATEGORY_KEYS: &[&str] = &["label", "partner_type"];
const CATEGORY_ITEM_KEYS: &[&str] = &["id", "label"];
const STAGE_KEYS: &[&str] = &["label", "partner_type", "phase", "series"];
const STAGE_ITEM_KEYS: &[&str] = &["id", "label", "series", "phase"];
const CUSTOM_FIELD_KEYS: &[&str] = &[
    "label",
    "type",
    "category",
    "partner_type",
    "required",
    "shared",
    "options",
];
const OPTION_KEYS: &[&str] = &["label"];
const LEAD_UPDATE_KEYS: &[&str] = &[
    "company_name",
    "email",
    "phone_number",
    "first_name",
    "last_name",
    "status",
    "assignedUsers",
    "tags",
    "customFields",
];
const DEAL_UPDATE_KEYS: &[&str] = &[
    "label",
    "deal_value",
    "stage_uuid",
    "payment_stage_uuid",
    "tags",
    "customFields",
];
const CONTACT_UPDATE_KEYS: &[&str] = &[
    "first_name",
    "last_name",
    "email",
    "position",
    "phone_number",
    "tags",
];
const PARTNERSHIP_UPDATE_KEYS: &[&str] = &[
    "tierId",
    "categoryId",
    "stageUuid",
    "assignedUsers",
    "tags",
    "customFields",
    "fallbackData",
];
const FALLBACK_KEYS: &[&str] = &["name", "logo_square_uuid", "website_url", "country_label"];

/// The create's default limits (no domain lists: no e-mail here is a partnership contact).
fn rules() -> &'static BodyRules {
    static RULES: OnceLock<BodyRules> = OnceLock::new();
    RULES.get_or_init(|| BodyRules {
        free_mail_domains: Default::default(),
        ..BodyRules::default()
    })
}

/// Checks a write body of `kind`; on success returns it parsed. The partnership create has its
/// own, richer check ([`super::body::validate_create`]); `None` and `PartnershipCreate` are not
/// checked here (they only need to be JSON).
pub fn validate_write(kind: BodyKind, body: &[u8]) -> Result<Value, BodyRejection> {
    let value: Value = serde_json::from_slice(body).map_err(json_error_message)?;
    let mut e = Errors::default();
    match kind {
        BodyKind::None | BodyKind::PartnershipCreate => return Ok(value),
        BodyKind::Forward => {
            return match value {
                Value::Object(_) | Value::Array(_) => Ok(value),
                _ => Err(BodyRejection::NotAnObject),
            };
        }
        BodyKind::CategoriesBulk => bulk(&value, "categories", category_item, &mut e)?,
        BodyKind::PartnerStagesBulk => bulk(&value, "stages", stage_item, &mut e)?,
        _ => {
            let Value::Object(map) = &value else {
                return Err(BodyRejection::NotAnObject);
            };
            match kind {
                BodyKind::Tag => tag(map, &mut e),
                BodyKind::Tier => tier(map, &mut e),
                BodyKind::Category => category(map, &mut e),
                BodyKind::PartnerStage => partner_stage(map, &mut e),
                BodyKind::DealStage => deal_stage(map, &mut e),
                BodyKind::CustomField => custom_field(map, &mut e),
                BodyKind::Lead => lead(map, &mut e),
                BodyKind::LeadUpdate => lead_update(map, &mut e),
                BodyKind::Deal => deal(map, &mut e),
                BodyKind::DealUpdate => deal_update(map, &mut e),
                BodyKind::ContactUpdate => contact_update(map, &mut e),
                BodyKind::PartnershipUpdate => partnership_update(map, &mut e),
                // Handled above.
                BodyKind::None
                | BodyKind::PartnershipCreate
                | BodyKind::Forward
                | BodyKind::CategoriesBulk
                | BodyKind::PartnerStagesBulk => {}
            }
        }
    }
    if e.is_empty() {
        Ok(value)
    } else {
        Err(BodyRejection::Schema(e.finish()))
    }
}

// --- the kinds ----------------------------------------------------------------------------

fn tag(map: &Obj, e: &mut Errors) {
    label(map, "", "label", true, e);
    one_of(map, "", "association", TAG_ASSOCIATIONS, true, e);
    colours(map, e);
    one_of(map, "", "partner_type", PARTNER_TYPES, false, e);
    unknown_keys(map, "", TAG_KEYS, e);
}

fn tier(map: &Obj, e: &mut Errors) {
    label(map, "", "label", true, e);
    colours(map, e);
    one_of(map, "", "partner_type", PARTNER_TYPES, false, e);
    unknown_keys(map, "", TIER_KEYS, e);
}

fn category(map: &Obj, e: &mut Errors) {
    label(map, "", "label", true, e);
    one_of(map, "", "partner_type", PARTNER_TYPES, false, e);
    unknown_keys(map, "", CATEGORY_KEYS, e);
}

fn partner_stage(map: &Obj, e: &mut Errors) {
    label(map, "", "label", true, e);
    one_of(map, "", "partner_type", PARTNER_TYPES, true, e);
    one_of(map, "", "phase", PARTNER_PHASES, false, e);
    series(map, "", e);
    unknown_keys(map, "", STAGE_KEYS, e);
}

fn deal_stage(map: &Obj, e: &mut Errors) {
    label(map, "", "label", true, e);
    one_of(map, "", "phase", DEAL_PHASES, true, e);
    one_of(map, "", "partner_type", PARTNER_TYPES, false, e);
    series(map, "", e);
    unknown_keys(map, "", STAGE_KEYS, e);
}

fn custom_field(map: &Obj, e: &mut Errors) {
    label(map, "", "label", true, e);
    let field_type = one_of(map, "", "type", FIELD_TYPES, true, e);
    one_of(map, "", "category", FIELD_CATEGORIES, true, e);
    one_of(map, "", "partner_type", PARTNER_TYPES, false, e);
    boolean(map, "required", e);
    boolean(map, "shared", e);
    options(map, field_type, e);
    unknown_keys(map, "", CUSTOM_FIELD_KEYS, e);
}

/// A definition's `options`: required and non-empty for the select types, refused (when not
/// empty) for the others; each `{"label": ...}`. When the type itself is invalid only the
/// shape is checked.
fn options(map: &Obj, field_type: Option<&str>, e: &mut Errors) {
    let selectable = field_type.map(|t| matches!(t, "select" | "multi_select"));
    let expected = "an array of {\"label\": ...} objects";
    let Some(v) = optional(map, "options", "options", expected, e) else {
        if selectable == Some(true) {
            e.push(
                "options",
                "required for select and multi_select (at least one {\"label\": ...})",
            );
        }
        return;
    };
    let Some(items) = v.as_array() else {
        e.push("options", format!("must be {expected}"));
        return;
    };
    match (selectable, field_type) {
        (Some(true), _) if items.is_empty() => {
            e.push("options", "must not be empty for select and multi_select")
        }
        (Some(false), Some(t)) if !items.is_empty() => e.push(
            "options",
            format!("only allowed for select and multi_select, not {t}"),
        ),
        _ => {}
    }
    let max = rules().max_array_len;
    if items.len() > max {
        e.push("options", format!("must have at most {max} items"));
    }
    for (i, item) in items.iter().take(max).enumerate() {
        let path = format!("options[{i}]");
        let Some(obj) = item.as_object() else {
            e.push(&path, "must be an object with a `label`");
            continue;
        };
        label(obj, &path, "label", true, e);
        unknown_keys(obj, &path, OPTION_KEYS, e);
    }
}

/// `POST /leads`. The documented list ends in "...", so keys not named here are forwarded
/// unchecked (see the module docs).
fn lead(map: &Obj, e: &mut Errors) {
    one_of(map, "", "associationType", LEAD_ASSOCIATION_TYPES, true, e);
    for key in ["company_name", "phone_number", "first_name", "last_name"] {
        text(map, key, e);
    }
    email(map, "email", e);
    one_of(map, "", "source", LEAD_SOURCES, false, e);
    id(map, "companyCampaignId", e);
    if let Some(v) = optional(map, "partnershipLead", "partnershipLead", "an object", e) {
        if !v.is_object() {
            e.push("partnershipLead", "must be an object");
        }
    }
    ids(map, "tags", e);
    custom_fields(map, e);
}

fn lead_update(map: &Obj, e: &mut Errors) {
    for key in ["company_name", "phone_number", "first_name", "last_name"] {
        text(map, key, e);
    }
    email(map, "email", e);
    one_of(map, "", "status", LEAD_STATUSES, false, e);
    ids(map, "assignedUsers", e);
    ids(map, "tags", e);
    custom_fields(map, e);
    update_keys(map, LEAD_UPDATE_KEYS, e);
}

/// `POST /lead-deals`. Like the lead create, its documented list ends in "...".
fn deal(map: &Obj, e: &mut Errors) {
    if let Some(v) = required(map, "lead_id", "lead_id", "a positive integer", e) {
        if positive_id(v).is_none() {
            e.push("lead_id", "must be a positive integer");
        }
    }
    deal_fields(map, e);
    id(map, "partnership_id", e);
}

fn deal_update(map: &Obj, e: &mut Errors) {
    deal_fields(map, e);
    uuid(map, "payment_stage_uuid", e);
    update_keys(map, DEAL_UPDATE_KEYS, e);
}

/// What a deal create and update share.
fn deal_fields(map: &Obj, e: &mut Errors) {
    text(map, "label", e);
    if let Some(v) = optional(map, "deal_value", "deal_value", "a number ≥ 0", e) {
        if !v.as_f64().is_some_and(|n| n >= 0.0) {
            e.push("deal_value", "must be a number ≥ 0");
        }
    }
    uuid(map, "stage_uuid", e);
    ids(map, "tags", e);
    custom_fields(map, e);
}

fn contact_update(map: &Obj, e: &mut Errors) {
    for key in ["first_name", "last_name", "position", "phone_number"] {
        text(map, key, e);
    }
    email(map, "email", e);
    ids(map, "tags", e);
    update_keys(map, CONTACT_UPDATE_KEYS, e);
}

fn partnership_update(map: &Obj, e: &mut Errors) {
    // `null` removes the tier or category: the one documented meaning of null.
    for key in ["tierId", "categoryId"] {
        match map.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => {
                if positive_id(v).is_none() {
                    e.push(key, "must be a positive integer, or null to remove it");
                }
            }
        }
    }
    uuid(map, "stageUuid", e);
    ids(map, "assignedUsers", e);
    ids(map, "tags", e);
    custom_fields(map, e);
    let expected = "an object with name, logo_square_uuid, website_url or country_label";
    if let Some(v) = optional(map, "fallbackData", "fallbackData", expected, e) {
        match v.as_object() {
            None => e.push("fallbackData", format!("must be {expected}")),
            Some(obj) => {
                for key in FALLBACK_KEYS {
                    let path = join("fallbackData", key);
                    if let Some(v) = optional(obj, key, &path, "a string", e) {
                        check_string(v, &path, rules().max_string_len, e);
                    }
                }
                unknown_keys(obj, "fallbackData", FALLBACK_KEYS, e);
            }
        }
    }
    update_keys(map, PARTNERSHIP_UPDATE_KEYS, e);
}

// --- bulk PATCH ---------------------------------------------------------------------------

/// A bulk body: the documented `{"<key>": [...]}` or the docs' example's bare array. Not
/// empty, at most `max_array_len` items, each an object with a distinct positive `id`; `item`
/// checks the rest of each.
fn bulk(
    value: &Value,
    key: &str,
    item: fn(&Obj, &str, &mut Errors),
    e: &mut Errors,
) -> Result<(), BodyRejection> {
    let expected = "a non-empty array of objects";
    let (items, base) = match value {
        Value::Array(items) => (items, ""),
        Value::Object(map) => {
            unknown_keys(map, "", &[key], e);
            match required(map, key, key, expected, e) {
                None => return Ok(()),
                Some(Value::Array(items)) => (items, key),
                Some(_) => {
                    e.push(key, format!("must be {expected}"));
                    return Ok(());
                }
            }
        }
        _ => return Err(BodyRejection::NotAnObject),
    };
    if items.is_empty() {
        e.push(base, "must contain at least one item");
    }
    let max = rules().max_array_len;
    if items.len() > max {
        e.push(base, format!("must have at most {max} items"));
    }
    // id → index of its first occurrence, for the duplicate message.
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (i, v) in items.iter().take(max).enumerate() {
        let path = format!("{base}[{i}]");
        let Some(obj) = v.as_object() else {
            e.push(&path, "must be an object with an `id`");
            continue;
        };
        let id_path = join(&path, "id");
        if let Some(v) = required(obj, "id", &id_path, "a positive integer", e) {
            match positive_id(v) {
                None => e.push(&id_path, "must be a positive integer"),
                Some(id) => match seen.get(&id) {
                    Some(first) => e.push(
                        &id_path,
                        format!("duplicate id {id} (also at {base}[{first}])"),
                    ),
                    None => {
                        seen.insert(id, i);
                    }
                },
            }
        }
        item(obj, &path, e);
    }
    Ok(())
}

fn category_item(obj: &Obj, path: &str, e: &mut Errors) {
    label(obj, path, "label", true, e);
    unknown_keys(obj, path, CATEGORY_ITEM_KEYS, e);
}

fn stage_item(obj: &Obj, path: &str, e: &mut Errors) {
    label(obj, path, "label", false, e);
    series(obj, path, e);
    one_of(obj, path, "phase", PARTNER_PHASES, false, e);
    unknown_keys(obj, path, STAGE_ITEM_KEYS, e);
    if !["label", "series", "phase"]
        .iter()
        .any(|k| obj.contains_key(*k))
    {
        e.push(path, "nothing to update: give label, series or phase");
    }
}

// --- field helpers --------------------------------------------------------------------------

/// A label: a non-blank string of at most `max_name_len` characters.
fn label(map: &Obj, base: &str, key: &str, is_required: bool, e: &mut Errors) {
    let path = join(base, key);
    let expected = "a non-empty string";
    let v = if is_required {
        required(map, key, &path, expected, e)
    } else {
        optional(map, key, &path, expected, e)
    };
    let Some(v) = v else {
        return;
    };
    let max = rules().max_name_len;
    match v.as_str() {
        None => e.push(&path, "must be a string"),
        Some(s) if s.trim().is_empty() => e.push(&path, "must not be blank"),
        Some(s) if s.chars().count() > max => {
            e.push(&path, format!("must be at most {max} characters"))
        }
        Some(_) => {}
    }
}

/// An optional free-text string (names, phone numbers), at most `max_string_len` characters.
fn text(map: &Obj, key: &str, e: &mut Errors) {
    if let Some(v) = optional(map, key, key, "a string", e) {
        check_string(v, key, rules().max_string_len, e);
    }
}

/// `"a" or "b"` for two values, `one of a, b, c` for more (the create's wording).
fn describe(allowed: &[&str]) -> String {
    match allowed {
        [a, b] => format!("\"{a}\" or \"{b}\""),
        _ => format!("one of {}", allowed.join(", ")),
    }
}

/// A string among `allowed`; returns it when it is one.
fn one_of<'a>(
    map: &'a Obj,
    base: &str,
    key: &str,
    allowed: &[&str],
    is_required: bool,
    e: &mut Errors,
) -> Option<&'a str> {
    let path = join(base, key);
    let expected = describe(allowed);
    let v = if is_required {
        required(map, key, &path, &expected, e)
    } else {
        optional(map, key, &path, &expected, e)
    }?;
    match v.as_str() {
        Some(s) if allowed.contains(&s) => Some(s),
        _ => {
            e.push(&path, format!("must be {expected}"));
            None
        }
    }
}

/// `#RRGGBB`, either case.
fn is_hex_colour(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7 && b[0] == b'#' && b[1..].iter().all(u8::is_ascii_hexdigit)
}

fn colours(map: &Obj, e: &mut Errors) {
    for key in ["background_color", "text_color"] {
        if let Some(v) = optional(map, key, key, "a hex colour #RRGGBB", e) {
            if !v.as_str().is_some_and(is_hex_colour) {
                e.push(key, "must be a hex colour #RRGGBB (such as #6B7280)");
            }
        }
    }
}

/// `series`: the stage's position, a non-negative integer.
fn series(map: &Obj, base: &str, e: &mut Errors) {
    let path = join(base, "series");
    if let Some(v) = optional(map, "series", &path, "a non-negative integer", e) {
        if v.as_i64().is_none_or(|n| n < 0) {
            e.push(&path, "must be a non-negative integer");
        }
    }
}

fn boolean(map: &Obj, key: &str, e: &mut Errors) {
    if let Some(v) = optional(map, key, key, "a boolean", e) {
        if !v.is_boolean() {
            e.push(key, "must be a boolean");
        }
    }
}

/// An optional positive integer id.
fn id(map: &Obj, key: &str, e: &mut Errors) {
    if let Some(v) = optional(map, key, key, "a positive integer", e) {
        if positive_id(v).is_none() {
            e.push(key, "must be a positive integer");
        }
    }
}

/// An optional array of distinct positive integer ids.
fn ids(map: &Obj, key: &str, e: &mut Errors) {
    if let Some(v) = optional(map, key, key, "an array of positive integers", e) {
        check_id_array(v, key, rules().max_array_len, e);
    }
}

fn uuid(map: &Obj, key: &str, e: &mut Errors) {
    if let Some(v) = optional(map, key, key, "a UUID string", e) {
        if !v.as_str().is_some_and(is_uuid) {
            e.push(
                key,
                "must be a UUID string (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
            );
        }
    }
}

fn email(map: &Obj, key: &str, e: &mut Errors) {
    if let Some(v) = optional(map, key, key, "an e-mail address", e) {
        match v.as_str() {
            None => e.push(key, "must be a string"),
            Some(s) => {
                if let Err(why) = email_domain(s) {
                    e.push(key, format!("not a valid e-mail address: {why}"));
                }
            }
        }
    }
}

/// `customFields`: the partnership create's shape and rules.
fn custom_fields(map: &Obj, e: &mut Errors) {
    if let Some(v) = optional(
        map,
        "customFields",
        "customFields",
        "an array of custom field objects",
        e,
    ) {
        check_custom_fields(v, rules(), e);
    }
}

/// An update's keys: every one documented, and at least one of them.
fn update_keys(map: &Obj, known: &[&str], e: &mut Errors) {
    unknown_keys(map, "", known, e);
    if !map.keys().any(|k| known.contains(&k.as_str())) {
        e.push(
            "",
            format!(
                "nothing to update: give at least one of {}",
                known.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const UUID: &str = "123e4567-e89b-12d3-a456-426614174000";

    fn check(kind: BodyKind, body: &Value) -> Result<Value, BodyRejection> {
        validate_write(kind, body.to_string().as_bytes())
    }

    #[track_caller]
    fn ok(kind: BodyKind, body: Value) {
        match check(kind, &body) {
            Ok(v) => assert_eq!(v, body),
            Err(r) => panic!("{kind:?} {body} refused: {r:?}"),
        }
    }

    /// The paths of every schema problem, in order.
    #[track_caller]
    fn fields(kind: BodyKind, body: Value) -> Vec<String> {
        match check(kind, &body) {
            Err(BodyRejection::Schema(list)) => list.into_iter().map(|f| f.field).collect(),
            other => panic!("{kind:?} {body}: expected schema errors, got {other:?}"),
        }
    }

    /// The message of the one problem at `field`.
    #[track_caller]
    fn message(kind: BodyKind, body: Value, field: &str) -> String {
        let Err(BodyRejection::Schema(list)) = check(kind, &body) else {
            panic!("{kind:?} {body}: expected schema errors");
        };
        let found: Vec<_> = list.iter().filter(|f| f.field == field).collect();
        assert_eq!(found.len(), 1, "{list:?}");
        found[0].message.clone()
    }

    #[test]
    fn json_level_rejections() {
        for kind in [
            BodyKind::Tag,
            BodyKind::LeadUpdate,
            BodyKind::CategoriesBulk,
        ] {
            assert!(matches!(
                validate_write(kind, b"{\"label\": "),
                Err(BodyRejection::InvalidJson(_))
            ));
            assert_eq!(
                validate_write(kind, b"\"label\""),
                Err(BodyRejection::NotAnObject)
            );
        }
        // Only the bulk kinds take a top-level array.
        assert_eq!(
            validate_write(BodyKind::Tag, b"[]"),
            Err(BodyRejection::NotAnObject)
        );
        // Forward: any object or array, nothing else checked.
        ok(BodyKind::Forward, json!({"anything": [1, null]}));
        ok(BodyKind::Forward, json!([1, 2]));
        assert_eq!(
            validate_write(BodyKind::Forward, b"3"),
            Err(BodyRejection::NotAnObject)
        );
        // Not checked here at all.
        ok(BodyKind::None, json!({}));
        ok(BodyKind::PartnershipCreate, json!({}));
    }

    #[test]
    fn tag() {
        ok(
            BodyKind::Tag,
            json!({"label": "VIP", "association": "lead"}),
        );
        ok(
            BodyKind::Tag,
            json!({"label": "VIP", "association": "card", "background_color": "#6b7280",
                   "text_color": "#FFFFFF", "partner_type": "reseller"}),
        );
        assert_eq!(fields(BodyKind::Tag, json!({})), ["label", "association"]);
        assert_eq!(
            message(BodyKind::Tag, json!({"label": "x"}), "association"),
            "required (one of lead, lead_deal, partner, card)"
        );
        // Every problem at once.
        let got = fields(
            BodyKind::Tag,
            json!({"label": "  ", "association": "deal", "background_color": "#FFF",
                   "text_color": "white", "partner_type": "agency", "colour": 1}),
        );
        assert_eq!(
            got,
            [
                "label",
                "association",
                "background_color",
                "text_color",
                "partner_type",
                "colour"
            ]
        );
        assert_eq!(
            message(
                BodyKind::Tag,
                json!({"label": "x", "association": "lead", "partner_type": "agency"}),
                "partner_type"
            ),
            "must be \"referral\" or \"reseller\""
        );
        assert_eq!(
            message(
                BodyKind::Tag,
                json!({"label": "x", "association": "lead", "backgroundColor": "#000000"}),
                "backgroundColor"
            ),
            "unknown field; did you mean `background_color`?"
        );
        assert_eq!(
            message(
                BodyKind::Tag,
                json!({"label": "x", "association": "lead", "text_color": null}),
                "text_color"
            ),
            "must be a hex colour #RRGGBB or omitted; null is not accepted"
        );
        assert_eq!(
            message(
                BodyKind::Tag,
                json!({"label": "x".repeat(201), "association": "lead"}),
                "label"
            ),
            "must be at most 200 characters"
        );
    }

    #[test]
    fn tier_and_category() {
        ok(BodyKind::Tier, json!({"label": "Gold"}));
        ok(
            BodyKind::Tier,
            json!({"label": "Gold", "background_color": "#FFD700", "text_color": "#000000",
                   "partner_type": "referral"}),
        );
        assert_eq!(
            fields(
                BodyKind::Tier,
                json!({"label": 3, "background_color": "FFD700", "association": "lead"})
            ),
            ["label", "background_color", "association"]
        );
        ok(
            BodyKind::Category,
            json!({"label": "Tech", "partner_type": "reseller"}),
        );
        assert_eq!(
            fields(
                BodyKind::Category,
                json!({"partner_type": "both", "text_color": "#000000"})
            ),
            ["label", "partner_type", "text_color"]
        );
    }

    #[test]
    fn categories_bulk_takes_both_shapes() {
        let items = json!([{"id": 1, "label": "Tech"}, {"id": 2, "label": "Finance"}]);
        ok(BodyKind::CategoriesBulk, json!({ "categories": items }));
        ok(BodyKind::CategoriesBulk, items);
        assert_eq!(
            fields(
                BodyKind::CategoriesBulk,
                json!({"categories": [{"id": 0, "label": "x"}, {"label": ""}, 3,
                                      {"id": 4, "label": "y", "uuid": "u"}, {"id": 4, "label": "z"}]})
            ),
            [
                "categories[0].id",
                "categories[1].id",
                "categories[1].label",
                "categories[2]",
                "categories[3].uuid",
                "categories[4].id"
            ]
        );
        assert_eq!(
            message(
                BodyKind::CategoriesBulk,
                json!([{"id": 4, "label": "y"}, {"id": 4, "label": "z"}]),
                "[1].id"
            ),
            "duplicate id 4 (also at [0])"
        );
        assert_eq!(
            fields(BodyKind::CategoriesBulk, json!([{"id": "1", "name": "x"}])),
            ["[0].id", "[0].label", "[0].name"]
        );
        assert_eq!(fields(BodyKind::CategoriesBulk, json!([])), [""]);
        assert_eq!(
            fields(BodyKind::CategoriesBulk, json!({"categories": []})),
            ["categories"]
        );
        assert_eq!(
            fields(
                BodyKind::CategoriesBulk,
                json!({"stages": [{"id": 1, "label": "x"}]})
            ),
            ["stages", "categories"]
        );
        assert_eq!(
            fields(BodyKind::CategoriesBulk, json!({"categories": {"id": 1}})),
            ["categories"]
        );
        let many: Vec<Value> = (1..=101).map(|i| json!({"id": i, "label": "x"})).collect();
        assert_eq!(
            message(BodyKind::CategoriesBulk, Value::Array(many), ""),
            "must have at most 100 items"
        );
    }

    #[test]
    fn partner_stages() {
        ok(
            BodyKind::PartnerStage,
            json!({"label": "Onboarding", "partner_type": "referral"}),
        );
        ok(
            BodyKind::PartnerStage,
            json!({"label": "Onboarding", "partner_type": "reseller", "phase": "evaluation",
                   "series": 0}),
        );
        assert_eq!(
            fields(
                BodyKind::PartnerStage,
                json!({"phase": "negotiation", "series": -1})
            ),
            ["label", "partner_type", "phase", "series"]
        );
        assert_eq!(
            message(
                BodyKind::PartnerStage,
                json!({"label": "x", "partner_type": "referral", "series": 1.5}),
                "series"
            ),
            "must be a non-negative integer"
        );

        let items = json!([{"id": 1, "label": "Won", "series": 3, "phase": "active"},
                           {"id": 2, "phase": "inactive"}]);
        ok(BodyKind::PartnerStagesBulk, json!({ "stages": items }));
        ok(BodyKind::PartnerStagesBulk, items);
        assert_eq!(
            fields(
                BodyKind::PartnerStagesBulk,
                json!({"stages": [{"id": 1, "label": "ok"},
                                  {"label": "", "series": "2", "phase": "won"},
                                  {"id": 3}, {"id": 1, "partner_type": "referral"}]})
            ),
            [
                "stages[1].id",
                "stages[1].label",
                "stages[1].series",
                "stages[1].phase",
                "stages[2]",
                "stages[3].id",
                "stages[3].partner_type",
                "stages[3]"
            ]
        );
        assert_eq!(
            message(BodyKind::PartnerStagesBulk, json!([{"id": 3}]), "[0]"),
            "nothing to update: give label, series or phase"
        );
        assert_eq!(
            message(BodyKind::PartnerStagesBulk, json!({}), "stages"),
            "required (a non-empty array of objects)"
        );
    }

    #[test]
    fn deal_stage() {
        ok(
            BodyKind::DealStage,
            json!({"label": "Won", "phase": "closed_won"}),
        );
        ok(
            BodyKind::DealStage,
            json!({"label": "Won", "phase": "closed_lost", "partner_type": "referral", "series": 4}),
        );
        assert_eq!(
            fields(
                BodyKind::DealStage,
                json!({"label": null, "phase": "active", "partner_type": "x", "series": "1"})
            ),
            ["label", "phase", "partner_type", "series"]
        );
        assert_eq!(
            message(BodyKind::DealStage, json!({"label": "x"}), "phase"),
            "required (one of discovery, negotiation, closed_won, closed_lost)"
        );
    }

    #[test]
    fn custom_field() {
        ok(
            BodyKind::CustomField,
            json!({"label": "Revenue", "type": "number", "category": "partner"}),
        );
        ok(
            BodyKind::CustomField,
            json!({"label": "Region", "type": "multi_select", "category": "lead",
                   "partner_type": "reseller", "required": true, "shared": false,
                   "options": [{"label": "EMEA"}, {"label": "APAC"}]}),
        );
        // An empty options array means nothing for a non-select type.
        ok(
            BodyKind::CustomField,
            json!({"label": "Notes", "type": "textarea", "category": "lead_deal", "options": []}),
        );
        assert_eq!(
            fields(BodyKind::CustomField, json!({})),
            ["label", "type", "category"]
        );
        assert_eq!(
            fields(
                BodyKind::CustomField,
                json!({"label": "x", "type": "dropdown", "category": "card", "partner_type": "x",
                       "required": "yes", "shared": 1,
                       "options": [{"label": ""}, "B", {"name": "C"}], "default": 1})
            ),
            [
                "type",
                "category",
                "partner_type",
                "required",
                "shared",
                "options[0].label",
                "options[1]",
                "options[2].label",
                "options[2].name",
                "default"
            ]
        );
        assert_eq!(
            message(
                BodyKind::CustomField,
                json!({"label": "x", "type": "select", "category": "partner"}),
                "options"
            ),
            "required for select and multi_select (at least one {\"label\": ...})"
        );
        assert_eq!(
            message(
                BodyKind::CustomField,
                json!({"label": "x", "type": "select", "category": "partner", "options": []}),
                "options"
            ),
            "must not be empty for select and multi_select"
        );
        assert_eq!(
            message(
                BodyKind::CustomField,
                json!({"label": "x", "type": "text", "category": "partner",
                       "options": [{"label": "a"}]}),
                "options"
            ),
            "only allowed for select and multi_select, not text"
        );
        assert_eq!(
            fields(
                BodyKind::CustomField,
                json!({"label": "x", "type": "select", "category": "partner",
                       "options": {"label": "a"}})
            ),
            ["options"]
        );
    }

    #[test]
    fn lead() {
        ok(BodyKind::Lead, json!({"associationType": "campaigns"}));
        ok(
            BodyKind::Lead,
            json!({"associationType": "referral", "company_name": "Globex",
                   "email": "jane@globex.io", "phone_number": "+44 20 7946 0958",
                   "first_name": "Jane", "last_name": "Doe", "source": "lead_submission_form",
                   "companyCampaignId": 3, "partnershipLead": {"partnershipId": 4},
                   "tags": [1, 2],
                   "customFields": [{"customFieldId": 5, "type": "text", "value": {"text": "hi"}}]}),
        );
        // The documented list ends in "...": other keys are forwarded unchecked.
        ok(
            BodyKind::Lead,
            json!({"associationType": "reseller", "attributions": [{"x": 1}],
                   "integrationName": "hubspot"}),
        );
        assert_eq!(
            fields(
                BodyKind::Lead,
                json!({"associationType": "partner", "email": "jane", "source": "web",
                       "first_name": 5, "tags": [0, "a"], "companyCampaignId": -1,
                       "partnershipLead": 4,
                       "customFields": [{"customFieldId": 5, "type": "number",
                                         "value": {"text": "x"}}]})
            ),
            [
                "associationType",
                "first_name",
                "email",
                "source",
                "companyCampaignId",
                "partnershipLead",
                "tags[0]",
                "tags[1]",
                "customFields[0].value.text",
                "customFields[0].value"
            ]
        );
        assert_eq!(
            message(BodyKind::Lead, json!({}), "associationType"),
            "required (one of referral, reseller, campaigns)"
        );
        assert_eq!(
            message(
                BodyKind::Lead,
                json!({"associationType": "referral", "email": "a@b@c.io"}),
                "email"
            ),
            "not a valid e-mail address: must contain exactly one @"
        );
    }

    #[test]
    fn lead_update() {
        ok(BodyKind::LeadUpdate, json!({"status": "qualified"}));
        ok(
            BodyKind::LeadUpdate,
            json!({"company_name": "Globex", "email": "a@globex.io", "phone_number": "1",
                   "first_name": "A", "last_name": "B", "status": "lost", "assignedUsers": [7],
                   "tags": [], "customFields": []}),
        );
        assert_eq!(
            message(BodyKind::LeadUpdate, json!({}), ""),
            "nothing to update: give at least one of company_name, email, phone_number, \
             first_name, last_name, status, assignedUsers, tags, customFields"
        );
        assert_eq!(
            fields(
                BodyKind::LeadUpdate,
                json!({"status": "won", "email": "x@localhost", "assignedUsers": [3, 3],
                       "last_name": null, "associationType": "referral"})
            ),
            [
                "last_name",
                "email",
                "status",
                "assignedUsers[1]",
                "associationType"
            ]
        );
        // Only unknown keys: both problems listed.
        assert_eq!(
            fields(BodyKind::LeadUpdate, json!({"firstName": "A"})),
            ["firstName", ""]
        );
        assert_eq!(
            message(BodyKind::LeadUpdate, json!({"firstName": "A"}), "firstName"),
            "unknown field; did you mean `first_name`?"
        );
    }

    #[test]
    fn deal() {
        ok(BodyKind::Deal, json!({"lead_id": 7001}));
        ok(
            BodyKind::Deal,
            json!({"lead_id": 7001, "deal_value": 12500.5, "label": "Q3", "stage_uuid": UUID,
                   "partnership_id": 4, "tags": [1], "customFields": [
                       {"customFieldId": 9, "type": "date", "value": {"date": "2025-01-31"}}]}),
        );
        ok(
            BodyKind::Deal,
            json!({"lead_id": 1, "deal_value": 0, "currency": "EUR"}),
        );
        assert_eq!(
            fields(
                BodyKind::Deal,
                json!({"deal_value": -1, "label": 3, "stage_uuid": "won", "partnership_id": 0,
                       "tags": "1", "customFields": [{"customFieldId": 9, "type": "date",
                                                      "value": {"date": "2025-02-30"}}]})
            ),
            [
                "lead_id",
                "label",
                "deal_value",
                "stage_uuid",
                "tags",
                "customFields[0].value.date",
                "partnership_id"
            ]
        );
        assert_eq!(
            message(BodyKind::Deal, json!({"lead_id": "7001"}), "lead_id"),
            "must be a positive integer"
        );
        assert_eq!(
            message(
                BodyKind::Deal,
                json!({"lead_id": 1, "deal_value": "10"}),
                "deal_value"
            ),
            "must be a number ≥ 0"
        );
    }

    #[test]
    fn deal_update() {
        ok(BodyKind::DealUpdate, json!({"deal_value": 10}));
        ok(
            BodyKind::DealUpdate,
            json!({"label": "Q4", "deal_value": 1, "stage_uuid": UUID, "payment_stage_uuid": UUID,
                   "tags": [2], "customFields": []}),
        );
        assert_eq!(fields(BodyKind::DealUpdate, json!({})), [""]);
        assert_eq!(
            fields(
                BodyKind::DealUpdate,
                json!({"payment_stage_uuid": 5, "stage_uuid": null, "lead_id": 4})
            ),
            ["stage_uuid", "payment_stage_uuid", "lead_id"]
        );
    }

    #[test]
    fn contact_update() {
        ok(BodyKind::ContactUpdate, json!({"position": "CTO"}));
        ok(
            BodyKind::ContactUpdate,
            json!({"first_name": "A", "last_name": "B", "email": "a@b.io", "position": "CTO",
                   "phone_number": "1", "tags": [1, 2]}),
        );
        assert_eq!(fields(BodyKind::ContactUpdate, json!({})), [""]);
        assert_eq!(
            fields(
                BodyKind::ContactUpdate,
                json!({"first_name": ["A"], "email": "@b.io", "tags": [1.5], "company": "x"})
            ),
            ["first_name", "email", "tags[0]", "company"]
        );
    }

    #[test]
    fn partnership_update() {
        ok(BodyKind::PartnershipUpdate, json!({"tierId": 2}));
        ok(BodyKind::PartnershipUpdate, json!({"categoryId": null}));
        ok(BodyKind::PartnershipUpdate, json!({"tierId": null}));
        ok(
            BodyKind::PartnershipUpdate,
            json!({"tierId": 2, "categoryId": 3, "stageUuid": UUID, "assignedUsers": [456],
                   "tags": [10, 11],
                   "customFields": [{"customFieldId": 6, "type": "select", "value": {"select": 2}}],
                   "fallbackData": {"name": "Globex", "logo_square_uuid": UUID,
                                    "website_url": "https://globex.io",
                                    "country_label": "France"}}),
        );
        assert_eq!(
            message(BodyKind::PartnershipUpdate, json!({}), ""),
            "nothing to update: give at least one of tierId, categoryId, stageUuid, \
             assignedUsers, tags, customFields, fallbackData"
        );
        assert_eq!(
            fields(
                BodyKind::PartnershipUpdate,
                json!({"tierId": "2", "categoryId": 0, "stageUuid": "abc", "assignedUsers": [-1],
                       "tags": null,
                       "customFields": [{"customFieldId": 1, "type": "x", "value": {}, "id": 1}],
                       "fallbackData": {"name": 1, "logo": "x", "country_label": null},
                       "name": "Globex", "partnerType": "referral"})
            ),
            [
                "tierId",
                "categoryId",
                "stageUuid",
                "assignedUsers[0]",
                "tags",
                "customFields[0].type",
                "customFields[0].id",
                "fallbackData.name",
                "fallbackData.country_label",
                "fallbackData.logo",
                "name",
                "partnerType"
            ]
        );
        assert_eq!(
            message(
                BodyKind::PartnershipUpdate,
                json!({"categoryId": 1.0}),
                "categoryId"
            ),
            "must be a positive integer, or null to remove it"
        );
        assert_eq!(
            message(
                BodyKind::PartnershipUpdate,
                json!({"fallbackData": []}),
                "fallbackData"
            ),
            "must be an object with name, logo_square_uuid, website_url or country_label"
        );
        assert_eq!(
            message(
                BodyKind::PartnershipUpdate,
                json!({"customFields": [
                    {"customFieldId": 1, "type": "boolean", "value": {"boolean": true}},
                    {"customFieldId": 1, "type": "boolean", "value": {"boolean": false}}]}),
                "customFields[1].customFieldId"
            ),
            "duplicate custom field 1 (also at customFields[0])"
        );
    }

    #[test]
    fn the_error_list_is_bounded() {
        let mut body = Map::new();
        body.insert("label".into(), json!("x"));
        body.insert("association".into(), json!("lead"));
        for i in 0..150 {
            body.insert(format!("k{i}"), json!(1));
        }
        let Err(BodyRejection::Schema(list)) = check(BodyKind::Tag, &Value::Object(body)) else {
            panic!("expected schema errors");
        };
        assert_eq!(list.len(), super::super::problems::MAX_REPORTED_ERRORS + 1);
        assert_eq!(
            list.last().unwrap().message,
            "50 more problem(s) not listed"
        );
    }
}
