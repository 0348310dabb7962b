//! The company-wide lookups: users, tags, tiers, categories, partner stages,
//! lead-deal stages and custom field definitions: their `GET` pages, creates
//! and bulk updates. The generated lookups come from `seed`.

use serde::Serialize;
use serde_json::{json, Value};

use crate::data::{uuid, Dataset};
use crate::input::{self, Params};
use crate::records::{
    Association, Category, CustomFieldDef, FieldCategory, FieldOption, FieldType, PartnerType,
    Stage, Tag, Tier, User,
};
use crate::reply::{bad_request, Answer, Reply};
use crate::time::{format_timestamp, now_secs};

/// Partner stage phases.
pub(crate) const PARTNER_PHASES: &[&str] = &["discovery", "evaluation", "active", "inactive"];
/// Lead-deal stage phases.
pub(crate) const DEAL_PHASES: &[&str] = &["discovery", "negotiation", "closed_won", "closed_lost"];
const ASSOCIATIONS: &[&str] = &["lead", "lead_deal", "partner", "card"];
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
const MSG_BAD_QUERY: &str = "Invalid query parameters";

// --- shapes -------------------------------------------------------------

fn pt(p: Option<PartnerType>) -> Option<&'static str> {
    p.map(PartnerType::as_str)
}

/// `GET /users` item, in the documented key order.
#[derive(Serialize)]
struct UserOut<'a> {
    id: u64,
    created_at: String,
    email: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    role: &'a str,
    position: &'a str,
    email_verified: bool,
    disabled_at: Option<String>,
    color: &'a str,
    profile_image_id: u64,
    profile_image_uuid: &'a str,
    country_id: Option<u64>,
    country_label: Option<&'a str>,
    country_code: Option<&'a str>,
}

fn user_out<'a>(ds: &'a Dataset, u: &'a User) -> UserOut<'a> {
    let country = u.country_id.and_then(|id| ds.country(id));
    UserOut {
        id: u.id,
        created_at: format_timestamp(u.created_at),
        email: &u.email,
        first_name: &u.first_name,
        last_name: &u.last_name,
        role: u.role,
        position: &u.position,
        email_verified: u.email_verified,
        disabled_at: u.disabled_at.map(format_timestamp),
        color: &u.color,
        profile_image_id: u.profile_image_id,
        profile_image_uuid: &u.profile_image_uuid,
        country_id: country.map(|c| c.id),
        country_label: country.map(|c| c.label.as_str()),
        country_code: country.map(|c| c.code),
    }
}

#[derive(Serialize)]
struct TagOut<'a> {
    id: u64,
    uuid: &'a str,
    label: &'a str,
    background_color: &'a str,
    text_color: &'a str,
    association: &'static str,
    partner_type: Option<&'static str>,
    company_id: u64,
}

fn tag_out<'a>(ds: &Dataset, t: &'a Tag) -> TagOut<'a> {
    TagOut {
        id: t.id,
        uuid: &t.uuid,
        label: &t.label,
        background_color: &t.background_color,
        text_color: &t.text_color,
        association: t.association.as_str(),
        partner_type: pt(t.partner_type),
        company_id: ds.company_id,
    }
}

#[derive(Serialize)]
struct TierOut<'a> {
    id: u64,
    uuid: &'a str,
    label: &'a str,
    background_color: &'a str,
    text_color: &'a str,
    partner_type: Option<&'static str>,
    company_id: u64,
}

fn tier_out<'a>(ds: &Dataset, t: &'a Tier) -> TierOut<'a> {
    TierOut {
        id: t.id,
        uuid: &t.uuid,
        label: &t.label,
        background_color: &t.background_color,
        text_color: &t.text_color,
        partner_type: pt(t.partner_type),
        company_id: ds.company_id,
    }
}

#[derive(Serialize)]
struct CategoryOut<'a> {
    id: u64,
    uuid: &'a str,
    label: &'a str,
    partner_type: Option<&'static str>,
    company_id: u64,
    created_at: String,
    updated_at: String,
}

fn category_out<'a>(ds: &Dataset, c: &'a Category) -> CategoryOut<'a> {
    CategoryOut {
        id: c.id,
        uuid: &c.uuid,
        label: &c.label,
        partner_type: pt(c.partner_type),
        company_id: ds.company_id,
        created_at: format_timestamp(c.created_at),
        updated_at: format_timestamp(c.updated_at),
    }
}

#[derive(Serialize)]
struct PartnerStageOut<'a> {
    id: u64,
    uuid: &'a str,
    label: &'a str,
    series: u64,
    phase: &'a str,
    partner_type: Option<&'static str>,
    company_id: u64,
}

fn partner_stage_out<'a>(ds: &Dataset, s: &'a Stage) -> PartnerStageOut<'a> {
    PartnerStageOut {
        id: s.id,
        uuid: &s.uuid,
        label: &s.label,
        series: s.series,
        phase: &s.phase,
        partner_type: pt(s.partner_type),
        company_id: ds.company_id,
    }
}

/// `GET /stages/lead-deal-stages` item (the page lists no `company_id`).
#[derive(Serialize)]
pub(crate) struct DealStageOut<'a> {
    id: u64,
    uuid: &'a str,
    label: &'a str,
    series: u64,
    phase: &'a str,
    partner_type: Option<&'static str>,
}

pub(crate) fn deal_stage_out(s: &Stage) -> DealStageOut<'_> {
    DealStageOut {
        id: s.id,
        uuid: &s.uuid,
        label: &s.label,
        series: s.series,
        phase: &s.phase,
        partner_type: pt(s.partner_type),
    }
}

#[derive(Serialize)]
struct FieldDefOut<'a> {
    id: u64,
    uuid: &'a str,
    label: &'a str,
    #[serde(rename = "type")]
    field_type: &'static str,
    category: &'static str,
    partner_type: Option<&'static str>,
    required: bool,
    shared: bool,
    /// `null` for the types without options.
    options: Option<&'a [FieldOption]>,
}

fn field_out(f: &CustomFieldDef) -> FieldDefOut<'_> {
    FieldDefOut {
        id: f.id,
        uuid: &f.uuid,
        label: &f.label,
        field_type: f.field_type.as_str(),
        category: f.category.as_str(),
        partner_type: pt(f.partner_type),
        required: f.required,
        shared: f.shared,
        options: matches!(f.field_type, FieldType::Select | FieldType::MultiSelect)
            .then_some(f.options.as_slice()),
    }
}

fn to_values<T: Serialize>(items: impl Iterator<Item = T>) -> Vec<Value> {
    items
        .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
        .collect()
}

/// The lookups as `GET` serves them, for [`crate::SimHandle`]'s accessors.
pub(crate) mod snapshot {
    use super::*;

    pub(crate) fn tiers(ds: &Dataset) -> Vec<Value> {
        to_values(ds.tiers.iter().map(|t| tier_out(ds, t)))
    }
    pub(crate) fn categories(ds: &Dataset) -> Vec<Value> {
        to_values(ds.categories.iter().map(|c| category_out(ds, c)))
    }
    pub(crate) fn partner_stages(ds: &Dataset) -> Vec<Value> {
        to_values(ds.stages.iter().map(|s| partner_stage_out(ds, s)))
    }
    pub(crate) fn deal_stages(ds: &Dataset) -> Vec<Value> {
        to_values(ds.deal_stages.iter().map(deal_stage_out))
    }
    pub(crate) fn tags(ds: &Dataset) -> Vec<Value> {
        to_values(ds.tags.iter().map(|t| tag_out(ds, t)))
    }
    pub(crate) fn custom_fields(ds: &Dataset) -> Vec<Value> {
        to_values(ds.custom_fields.iter().map(field_out))
    }
    pub(crate) fn users(ds: &Dataset, indirect: bool) -> Vec<Value> {
        let others = ds.other_users.iter().filter(|_| indirect);
        to_values(ds.users.iter().chain(others).map(|u| user_out(ds, u)))
    }
}

// --- reads ----------------------------------------------------------------

/// A lookup filtered by `partner_type` shows the items of that type and the
/// ones without a type (they apply to both); the docs say no more.
fn type_matches(item: Option<PartnerType>, wanted: Option<PartnerType>) -> bool {
    wanted.is_none_or(|w| item.is_none_or(|i| i == w))
}

fn partner_type_param(params: &Params) -> Result<Option<PartnerType>, Reply> {
    params
        .non_empty("partner_type")
        .map(|v| PartnerType::parse(v).ok_or_else(|| Reply::bad(MSG_BAD_QUERY)))
        .transpose()
}

/// `GET /users`: active users; with `indirect` (any value) also disabled and
/// indirect ones.
pub(crate) fn get_users(ds: &Dataset, query: Option<&str>) -> Reply {
    let indirect = Params::parse(query).get("indirect").is_some();
    Reply::ok(&snapshot::users(ds, indirect))
}

/// `GET /tags` with `association` and `partner_type`.
pub(crate) fn get_tags(ds: &Dataset, query: Option<&str>) -> Answer {
    let params = Params::parse(query);
    let association = params
        .non_empty("association")
        .map(|v| Association::parse(v).ok_or_else(|| Reply::bad(MSG_BAD_QUERY)))
        .transpose()?;
    let partner_type = partner_type_param(&params)?;
    let items: Vec<TagOut<'_>> = ds
        .tags
        .iter()
        .filter(|t| association.is_none_or(|a| t.association == a))
        .filter(|t| type_matches(t.partner_type, partner_type))
        .map(|t| tag_out(ds, t))
        .collect();
    Ok(Reply::ok(&items))
}

/// `GET /tiers`.
pub(crate) fn get_tiers(ds: &Dataset) -> Reply {
    let items: Vec<_> = ds.tiers.iter().map(|t| tier_out(ds, t)).collect();
    Reply::ok(&items)
}

/// `GET /categories`.
pub(crate) fn get_categories(ds: &Dataset) -> Reply {
    let items: Vec<_> = ds.categories.iter().map(|c| category_out(ds, c)).collect();
    Reply::ok(&items)
}

/// `GET /stages/partner-stages`, in series order.
pub(crate) fn get_partner_stages(ds: &Dataset) -> Reply {
    let mut stages: Vec<&Stage> = ds.stages.iter().collect();
    stages.sort_by_key(|s| (s.series, s.id));
    let items: Vec<_> = stages
        .into_iter()
        .map(|s| partner_stage_out(ds, s))
        .collect();
    Reply::ok(&items)
}

/// `GET /stages/lead-deal-stages`, in series order.
pub(crate) fn get_deal_stages(ds: &Dataset) -> Reply {
    let mut stages: Vec<&Stage> = ds.deal_stages.iter().collect();
    stages.sort_by_key(|s| (s.series, s.id));
    let items: Vec<_> = stages.into_iter().map(deal_stage_out).collect();
    Reply::ok(&items)
}

/// `GET /custom-fields` with `category` and `partner_type`.
pub(crate) fn get_custom_fields(ds: &Dataset, query: Option<&str>) -> Answer {
    let params = Params::parse(query);
    let category = params
        .non_empty("category")
        .map(|v| FieldCategory::parse(v).ok_or_else(|| Reply::bad(MSG_BAD_QUERY)))
        .transpose()?;
    let partner_type = partner_type_param(&params)?;
    let items: Vec<_> = ds
        .custom_fields
        .iter()
        .filter(|f| category.is_none_or(|c| f.category == c))
        .filter(|f| type_matches(f.partner_type, partner_type))
        .map(field_out)
        .collect();
    Ok(Reply::ok(&items))
}

// --- writes ---------------------------------------------------------------

fn next_id(ids: impl Iterator<Item = u64>) -> u64 {
    ids.max().unwrap_or(0) + 1
}

fn created(id: u64, uuid: &str) -> Reply {
    Reply::created(&json!({ "id": id, "uuid": uuid }))
}

/// `POST /tags`: `label`*, `association`*, colours, `partner_type`.
pub(crate) fn create_tag(ds: &mut Dataset, body: &[u8]) -> Answer {
    let obj = input::object(body).map_err(bad_request)?;
    let label = input::req_str(&obj, "label").map_err(bad_request)?;
    let association = input::req_enum(&obj, "association", ASSOCIATIONS).map_err(bad_request)?;
    let background_color =
        input::color(&obj, "background_color", "#6B7280").map_err(bad_request)?;
    let text_color = input::color(&obj, "text_color", "#FFFFFF").map_err(bad_request)?;
    let partner_type = input::opt_partner_type(&obj, "partner_type").map_err(bad_request)?;
    let tag = Tag {
        id: next_id(ds.tags.iter().map(|t| t.id)),
        label: label.to_string(),
        background_color,
        text_color,
        uuid: uuid(&mut ds.extra_rng),
        association: Association::parse(association).unwrap_or(Association::Partner),
        partner_type,
    };
    let reply = created(tag.id, &tag.uuid);
    ds.tags.push(tag);
    Ok(reply)
}

/// `POST /tiers`: `label`*, colours, `partner_type`.
pub(crate) fn create_tier(ds: &mut Dataset, body: &[u8]) -> Answer {
    let obj = input::object(body).map_err(bad_request)?;
    let label = input::req_str(&obj, "label").map_err(bad_request)?;
    let background_color =
        input::color(&obj, "background_color", "#6B7280").map_err(bad_request)?;
    let text_color = input::color(&obj, "text_color", "#FFFFFF").map_err(bad_request)?;
    let partner_type = input::opt_partner_type(&obj, "partner_type").map_err(bad_request)?;
    let tier = Tier {
        id: next_id(ds.tiers.iter().map(|t| t.id)),
        label: label.to_string(),
        background_color,
        text_color,
        uuid: uuid(&mut ds.extra_rng),
        partner_type,
    };
    let reply = created(tier.id, &tier.uuid);
    ds.tiers.push(tier);
    Ok(reply)
}

/// `POST /categories`: `label`*, `partner_type`.
pub(crate) fn create_category(ds: &mut Dataset, body: &[u8]) -> Answer {
    let obj = input::object(body).map_err(bad_request)?;
    let label = input::req_str(&obj, "label").map_err(bad_request)?;
    let partner_type = input::opt_partner_type(&obj, "partner_type").map_err(bad_request)?;
    let now = now_secs();
    let category = Category {
        id: next_id(ds.categories.iter().map(|c| c.id)),
        label: label.to_string(),
        uuid: uuid(&mut ds.extra_rng),
        partner_type,
        created_at: now,
        updated_at: now,
    };
    let reply = created(category.id, &category.uuid);
    ds.categories.push(category);
    Ok(reply)
}

/// `PATCH /categories`: bulk rename, `{"categories": [{id, label}]}` or the
/// bare array. All or nothing: one unknown id refuses the whole request.
pub(crate) fn update_categories(ds: &mut Dataset, body: &[u8]) -> Answer {
    let items = input::bulk_items(body, "categories").map_err(bad_request)?;
    let mut changes = Vec::with_capacity(items.len());
    for item in &items {
        let id = input::opt_id(item, "id")
            .map_err(bad_request)?
            .ok_or_else(|| Reply::bad("id is required"))?;
        let label = input::req_str(item, "label").map_err(bad_request)?;
        if ds.category(id).is_none() {
            return Err(Reply::bad(&format!("Category {id} not found")));
        }
        changes.push((id, label.to_string()));
    }
    let now = now_secs();
    for (id, label) in &changes {
        if let Some(c) = ds.categories.iter_mut().find(|c| c.id == *id) {
            c.label.clone_from(label);
            c.updated_at = now;
        }
    }
    let ids: Vec<u64> = changes.iter().map(|(id, _)| *id).collect();
    Ok(Reply::ok(&json!({ "updated": ids })))
}

/// `POST /stages/partner-stages`: `label`*, `partner_type`*, `phase`, `series`.
pub(crate) fn create_partner_stage(ds: &mut Dataset, body: &[u8]) -> Answer {
    let obj = input::object(body).map_err(bad_request)?;
    let label = input::req_str(&obj, "label").map_err(bad_request)?;
    let partner_type =
        input::req_enum(&obj, "partner_type", &["referral", "reseller"]).map_err(bad_request)?;
    let phase = input::opt_enum(&obj, "phase", PARTNER_PHASES).map_err(bad_request)?;
    let series = input::opt_id(&obj, "series").map_err(bad_request)?;
    let stage = Stage {
        id: next_id(ds.stages.iter().map(|s| s.id)),
        uuid: uuid(&mut ds.extra_rng),
        label: label.to_string(),
        series: series.unwrap_or_else(|| next_id(ds.stages.iter().map(|s| s.series))),
        phase: phase.unwrap_or("discovery").to_string(),
        partner_type: PartnerType::parse(partner_type),
    };
    let reply = created(stage.id, &stage.uuid);
    ds.stages.push(stage);
    Ok(reply)
}

/// `PATCH /stages/partner-stages`: bulk update, `{"stages": [{id*, label,
/// series, phase}]}` or the bare array; all or nothing.
pub(crate) fn update_partner_stages(ds: &mut Dataset, body: &[u8]) -> Answer {
    let items = input::bulk_items(body, "stages").map_err(bad_request)?;
    let mut changes = Vec::with_capacity(items.len());
    for item in &items {
        let id = input::opt_id(item, "id")
            .map_err(bad_request)?
            .ok_or_else(|| Reply::bad("id is required"))?;
        let label = input::opt_label(item, "label").map_err(bad_request)?;
        let series = input::opt_id(item, "series").map_err(bad_request)?;
        let phase = input::opt_enum(item, "phase", PARTNER_PHASES).map_err(bad_request)?;
        if ds.stage(id).is_none() {
            return Err(Reply::bad(&format!("Stage {id} not found")));
        }
        changes.push((
            id,
            label.map(str::to_string),
            series,
            phase.map(str::to_string),
        ));
    }
    for (id, label, series, phase) in &changes {
        if let Some(s) = ds.stages.iter_mut().find(|s| s.id == *id) {
            if let Some(l) = label {
                s.label.clone_from(l);
            }
            if let Some(n) = series {
                s.series = *n;
            }
            if let Some(p) = phase {
                s.phase.clone_from(p);
            }
        }
    }
    let ids: Vec<u64> = changes.iter().map(|c| c.0).collect();
    Ok(Reply::ok(&json!({ "updated": ids })))
}

/// `POST /stages/lead-deal-stages`: `label`*, `phase`*, `partner_type`, `series`.
pub(crate) fn create_deal_stage(ds: &mut Dataset, body: &[u8]) -> Answer {
    let obj = input::object(body).map_err(bad_request)?;
    let label = input::req_str(&obj, "label").map_err(bad_request)?;
    let phase = input::req_enum(&obj, "phase", DEAL_PHASES).map_err(bad_request)?;
    let partner_type = input::opt_partner_type(&obj, "partner_type").map_err(bad_request)?;
    let series = input::opt_id(&obj, "series").map_err(bad_request)?;
    let stage = Stage {
        id: next_id(ds.deal_stages.iter().map(|s| s.id)),
        uuid: uuid(&mut ds.extra_rng),
        label: label.to_string(),
        series: series.unwrap_or_else(|| next_id(ds.deal_stages.iter().map(|s| s.series))),
        phase: phase.to_string(),
        partner_type,
    };
    let reply = created(stage.id, &stage.uuid);
    ds.deal_stages.push(stage);
    Ok(reply)
}

/// `POST /custom-fields`: `label`*, `type`*, `category`*, `partner_type`,
/// `required`, `shared`, `options` `[{label}]`. Select types need at least
/// one option; the others take none.
pub(crate) fn create_custom_field(ds: &mut Dataset, body: &[u8]) -> Answer {
    let obj = input::object(body).map_err(bad_request)?;
    let label = input::req_str(&obj, "label").map_err(bad_request)?;
    let field_type = input::req_enum(&obj, "type", FIELD_TYPES).map_err(bad_request)?;
    let field_type = FieldType::parse(field_type).unwrap_or(FieldType::Text);
    let category = input::req_enum(&obj, "category", FIELD_CATEGORIES).map_err(bad_request)?;
    let partner_type = input::opt_partner_type(&obj, "partner_type").map_err(bad_request)?;
    let required = input::opt_bool(&obj, "required").map_err(bad_request)?;
    let shared = input::opt_bool(&obj, "shared").map_err(bad_request)?;
    let options: Vec<FieldOption> = match input::opt(&obj, "options") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, o)| {
                o.as_object()
                    .and_then(|o| o.get("label"))
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| FieldOption {
                        id: i as u64 + 1,
                        label: l.to_string(),
                    })
                    .ok_or_else(|| Reply::bad("each option needs a label"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(Reply::bad("options must be an array")),
    };
    let selectable = matches!(field_type, FieldType::Select | FieldType::MultiSelect);
    if selectable && options.is_empty() {
        return Err(Reply::bad(
            "options are required for select and multi_select",
        ));
    }
    if !selectable && !options.is_empty() {
        return Err(Reply::bad(
            "options are only allowed for select and multi_select",
        ));
    }
    let def = CustomFieldDef {
        id: next_id(ds.custom_fields.iter().map(|f| f.id)),
        uuid: uuid(&mut ds.extra_rng),
        label: label.to_string(),
        field_type,
        category: FieldCategory::parse(category).unwrap_or(FieldCategory::Partner),
        partner_type,
        required: required.unwrap_or(false),
        shared: shared.unwrap_or(false),
        options,
    };
    let reply = created(def.id, &def.uuid);
    ds.custom_fields.push(def);
    Ok(reply)
}
