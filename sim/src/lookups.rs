//! The company-wide lookups: users, tags, tiers, categories, partner stages,
//! lead-deal stages and custom field definitions.
//!
//! [`enrich`] gives the generated data everything the lookup pages list
//! beyond what the partnership list shows (uuids, associations, phases,
//! lead and deal tags and fields, deal stages, user profiles, contact
//! details). The partnerships generated before keep referencing these
//! lookups: tiers 1-4, categories 1-6, partner stages 1-5, partner tags
//! 10-21, partner custom fields 5-11 and users 456-463.

use serde::Serialize;
use serde_json::{json, Value};

use crate::data::{
    pick_some, uuid, Association, Category, CustomFieldDef, Dataset, FieldCategory, FieldOption,
    FieldType, PartnerType, Stage, Tag, Tier, User,
};
use crate::input::{self, Params};
use crate::reply::{bad_request, Answer, Reply};
use crate::time::{days_from_civil, format_timestamp, now_secs};

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

const POSITIONS: &[&str] = &[
    "Head of Partnerships",
    "Partner Manager",
    "Channel Sales Lead",
    "Alliances Director",
    "Account Executive",
    "Solutions Engineer",
    "Customer Success Manager",
    "VP Sales",
];

/// Start of the generated history (the first user joined then).
fn epoch() -> i64 {
    days_from_civil(2022, 3, 1) * 86_400
}

/// Fills in the lookup attributes and adds the lookups the partnership
/// generator does not use. Draws only from `ds.extra_rng`.
pub(crate) fn enrich(ds: &mut Dataset) {
    let mut rng = std::mem::replace(&mut ds.extra_rng, fastrand::Rng::with_seed(0));
    let countries = ds.countries.len() as u64;
    let mut joined = epoch();
    for u in &mut ds.users {
        u.created_at = joined;
        joined += rng.i64(86_400..=40 * 86_400);
        u.position = POSITIONS[rng.usize(0..POSITIONS.len())].to_string();
        u.country_id = Some(rng.u64(1..=countries.min(5)));
    }
    // A disabled former colleague and an indirect (partner-side) user: only
    // listed with `indirect`, never valid for `userId` or `assignedUsers`.
    let next_user = ds.users.iter().map(|u| u.id).max().unwrap_or(455) + 1;
    let template = ds.users[0].clone();
    ds.other_users = vec![
        User {
            id: next_user,
            email: format!("former.employee@{}", domain_of(&template.email)),
            first_name: "Former".into(),
            last_name: "Employee".into(),
            profile_image_id: template.profile_image_id + 100,
            profile_image_uuid: uuid(&mut rng),
            color: "#9CA3AF".into(),
            created_at: epoch() + 30 * 86_400,
            role: "partnerships",
            position: "Partner Manager".into(),
            email_verified: true,
            disabled_at: Some(days_from_civil(2024, 11, 29) * 86_400),
            country_id: Some(1),
        },
        User {
            id: next_user + 1,
            email: "reseller.rep@indirect-partner.com".into(),
            first_name: "Indirect".into(),
            last_name: "Rep".into(),
            profile_image_id: template.profile_image_id + 101,
            profile_image_uuid: uuid(&mut rng),
            color: "#6366F1".into(),
            created_at: epoch() + 200 * 86_400,
            role: "indirect",
            position: "Reseller Sales".into(),
            email_verified: false,
            disabled_at: None,
            country_id: Some(3),
        },
    ];

    for t in &mut ds.tiers {
        t.uuid = uuid(&mut rng);
    }
    for (i, c) in ds.categories.iter_mut().enumerate() {
        c.uuid = uuid(&mut rng);
        c.created_at = epoch() + i as i64 * 86_400;
        c.updated_at = c.created_at;
    }
    for t in &mut ds.tags {
        t.uuid = uuid(&mut rng);
    }
    // Contact-card tags take ids 1-4 so that the docs' example
    // (`emails[].tags: [1, 2]`) names existing tags.
    let extra_tags: &[TagSeed] = &[
        (
            1,
            "Decision Maker",
            "#1E40AF",
            "#FFFFFF",
            Association::Card,
            None,
        ),
        (2, "Champion", "#059669", "#FFFFFF", Association::Card, None),
        (
            3,
            "Technical",
            "#6B7280",
            "#FFFFFF",
            Association::Card,
            None,
        ),
        (4, "Billing", "#D97706", "#000000", Association::Card, None),
        (
            30,
            "Hot Lead",
            "#DC2626",
            "#FFFFFF",
            Association::Lead,
            None,
        ),
        (31, "Inbound", "#2563EB", "#FFFFFF", Association::Lead, None),
        (
            32,
            "Referral Bonus",
            "#7C3AED",
            "#FFFFFF",
            Association::Lead,
            Some(PartnerType::Referral),
        ),
        (
            33,
            "Resold",
            "#0D9488",
            "#FFFFFF",
            Association::Lead,
            Some(PartnerType::Reseller),
        ),
        (
            40,
            "Upsell",
            "#16A34A",
            "#FFFFFF",
            Association::LeadDeal,
            None,
        ),
        (
            41,
            "Multi-year",
            "#9333EA",
            "#FFFFFF",
            Association::LeadDeal,
            None,
        ),
        (
            42,
            "At Risk",
            "#B91C1C",
            "#FFFFFF",
            Association::LeadDeal,
            None,
        ),
    ];
    for &(id, label, bg, fg, association, partner_type) in extra_tags {
        ds.tags.push(Tag {
            id,
            label: label.into(),
            background_color: bg.into(),
            text_color: fg.into(),
            uuid: uuid(&mut rng),
            association,
            partner_type,
        });
    }
    ds.tags.sort_by_key(|t| t.id);

    for f in &mut ds.custom_fields {
        f.uuid = uuid(&mut rng);
    }
    let opts = |labels: &[&str]| -> Vec<FieldOption> {
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| FieldOption {
                id: i as u64 + 1,
                label: (*l).to_string(),
            })
            .collect()
    };
    let extra_fields = [
        (12, "Budget", FieldType::Number, FieldCategory::Lead, vec![]),
        (
            13,
            "Use Case",
            FieldType::Textarea,
            FieldCategory::Lead,
            vec![],
        ),
        (
            14,
            "Industry",
            FieldType::Select,
            FieldCategory::Lead,
            opts(&["SaaS", "Retail", "Healthcare", "Finance", "Manufacturing"]),
        ),
        (
            15,
            "Close Probability",
            FieldType::Number,
            FieldCategory::LeadDeal,
            vec![],
        ),
        (
            16,
            "Competitors",
            FieldType::MultiSelect,
            FieldCategory::LeadDeal,
            opts(&["Crossbeam", "PartnerStack", "Impartner", "None"]),
        ),
    ];
    for (id, label, field_type, category, options) in extra_fields {
        ds.custom_fields.push(CustomFieldDef {
            id,
            uuid: uuid(&mut rng),
            label: label.into(),
            field_type,
            category,
            partner_type: None,
            required: false,
            shared: category != FieldCategory::Partner,
            options,
        });
    }

    ds.deal_stages = [
        ("Qualification", "discovery"),
        ("Demo", "discovery"),
        ("Proposal", "negotiation"),
        ("Negotiation", "negotiation"),
        ("Closed Won", "closed_won"),
        ("Closed Lost", "closed_lost"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (label, phase))| Stage {
        id: i as u64 + 1,
        uuid: uuid(&mut rng),
        label: (*label).to_string(),
        series: i as u64 + 1,
        phase: (*phase).to_string(),
        partner_type: None,
    })
    .collect();

    // Contacts: ids grow from the oldest partnership, like the partnership ids.
    let card_tags: Vec<u64> = ds
        .tags
        .iter()
        .filter(|t| t.association == Association::Card)
        .map(|t| t.id)
        .collect();
    let mut next_contact = 1;
    for p in ds.partnerships.iter_mut().rev() {
        p.uuid = uuid(&mut rng);
        for c in &mut p.contacts {
            c.id = next_contact;
            next_contact += 1;
            c.created_at = p.created_at;
            c.updated_at = p.created_at;
            c.position = rng
                .bool()
                .then(|| POSITIONS[rng.usize(0..POSITIONS.len())].to_string());
            c.phone_number = rng
                .bool()
                .then(|| format!("+1 555 {:03} {:04}", rng.u32(100..1000), rng.u32(0..10_000)));
            c.tags = pick_some(&mut rng, &card_tags, 1);
        }
    }
    ds.next_contact_id = next_contact;
    ds.extra_rng = rng;
}

/// id, label, background, text colour, association, partner type.
type TagSeed = (
    u64,
    &'static str,
    &'static str,
    &'static str,
    Association,
    Option<PartnerType>,
);

fn domain_of(email: &str) -> &str {
    email.split_once('@').map_or("", |(_, d)| d)
}

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
