//! The tenant's records and value types: partnerships and their contacts,
//! the lookups (users, stages, tiers, categories, tags, countries, custom
//! field definitions), custom field values, leads, notes and lead deals.
//!
//! Plain data, spelled as on the wire; [`crate::data::Dataset`] holds them.
//! Depends on no other module of the crate.

use serde::Serialize;
use serde_json::{json, Number, Value};

/// Partnership type, as in `partnership.partner_type` and `partnerType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PartnerType {
    Referral,
    Reseller,
}

impl PartnerType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PartnerType::Referral => "referral",
            PartnerType::Reseller => "reseller",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "referral" => Some(PartnerType::Referral),
            "reseller" => Some(PartnerType::Reseller),
            _ => None,
        }
    }
}

/// A JourneyBee user of the simulated company. Serializes as the
/// `assigned_users` item of the list; the extra attributes of `GET /users`
/// are skipped there (see `lookups::UserOut`).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct User {
    pub id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub profile_image_id: u64,
    pub profile_image_uuid: String,
    pub color: String,
    #[serde(skip)]
    pub created_at: i64,
    /// admin, partnerships, partner or indirect.
    #[serde(skip)]
    pub role: &'static str,
    #[serde(skip)]
    pub position: String,
    #[serde(skip)]
    pub email_verified: bool,
    #[serde(skip)]
    pub disabled_at: Option<i64>,
    #[serde(skip)]
    pub country_id: Option<u64>,
}

/// A stage: a partner stage (`stages`) or a lead-deal stage (`deal_stages`).
#[derive(Clone, Debug)]
pub(crate) struct Stage {
    pub id: u64,
    pub uuid: String,
    pub label: String,
    pub series: u64,
    /// Partner stages: discovery, evaluation, active, inactive. Deal stages:
    /// discovery, negotiation, closed_won, closed_lost.
    pub phase: String,
    /// `None`: the stage applies to both partner types.
    pub partner_type: Option<PartnerType>,
}

/// A partner tier; `id` doubles as its rank for sorting. Serializes as the
/// list item's `tier`; `GET /tiers` adds the skipped attributes.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Tier {
    pub id: u64,
    pub label: String,
    pub background_color: String,
    pub text_color: String,
    #[serde(skip)]
    pub uuid: String,
    #[serde(skip)]
    pub partner_type: Option<PartnerType>,
}

/// A partner category. Serializes as the list item's `category`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Category {
    pub id: u64,
    pub label: String,
    #[serde(skip)]
    pub uuid: String,
    #[serde(skip)]
    pub partner_type: Option<PartnerType>,
    #[serde(skip)]
    pub created_at: i64,
    #[serde(skip)]
    pub updated_at: i64,
}

/// What a tag can be put on, spelled as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Association {
    Lead,
    LeadDeal,
    Partner,
    /// Contact cards (the partner's contacts).
    Card,
}

impl Association {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Association::Lead => "lead",
            Association::LeadDeal => "lead_deal",
            Association::Partner => "partner",
            Association::Card => "card",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "lead" => Association::Lead,
            "lead_deal" => Association::LeadDeal,
            "partner" => Association::Partner,
            "card" => Association::Card,
            _ => return None,
        })
    }
}

/// A tag. Serializes as the list item's `tags[]` entry.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Tag {
    pub id: u64,
    pub label: String,
    pub background_color: String,
    pub text_color: String,
    #[serde(skip)]
    pub uuid: String,
    #[serde(skip)]
    pub association: Association,
    #[serde(skip)]
    pub partner_type: Option<PartnerType>,
}

/// A country of the address book.
#[derive(Clone, Debug)]
pub(crate) struct Country {
    pub id: u64,
    pub label: String,
    /// ISO 3166-1 alpha-2.
    pub code: &'static str,
}

/// Custom field types, spelled as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldType {
    Text,
    Textarea,
    Number,
    Date,
    Boolean,
    Select,
    MultiSelect,
}

impl FieldType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Textarea => "textarea",
            FieldType::Number => "number",
            FieldType::Date => "date",
            FieldType::Boolean => "boolean",
            FieldType::Select => "select",
            FieldType::MultiSelect => "multi_select",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "text" => FieldType::Text,
            "textarea" => FieldType::Textarea,
            "number" => FieldType::Number,
            "date" => FieldType::Date,
            "boolean" => FieldType::Boolean,
            "select" => FieldType::Select,
            "multi_select" => FieldType::MultiSelect,
            _ => return None,
        })
    }
}

/// What a custom field definition belongs to (`category` on the wire; not
/// to be confused with partner categories).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldCategory {
    Lead,
    LeadDeal,
    Partner,
}

impl FieldCategory {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FieldCategory::Lead => "lead",
            FieldCategory::LeadDeal => "lead_deal",
            FieldCategory::Partner => "partner",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "lead" => FieldCategory::Lead,
            "lead_deal" => FieldCategory::LeadDeal,
            "partner" => FieldCategory::Partner,
            _ => return None,
        })
    }
}

/// One choice of a select / multi_select field.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FieldOption {
    pub id: u64,
    pub label: String,
}

/// Definition of a custom field; `options` hold the ids valid for
/// select / multi_select values (empty for the other types).
#[derive(Clone, Debug)]
pub(crate) struct CustomFieldDef {
    pub id: u64,
    pub uuid: String,
    pub label: String,
    pub field_type: FieldType,
    pub category: FieldCategory,
    pub partner_type: Option<PartnerType>,
    pub required: bool,
    pub shared: bool,
    pub options: Vec<FieldOption>,
}

impl CustomFieldDef {
    pub(crate) fn option_ids(&self) -> Vec<u64> {
        self.options.iter().map(|o| o.id).collect()
    }

    pub(crate) fn has_option(&self, id: u64) -> bool {
        self.options.iter().any(|o| o.id == id)
    }
}

/// A stored custom field value. The value object key follows the project's
/// reading of the docs: `textarea` uses `text`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CfValue {
    Text(String),
    Number(Number),
    Date(String),
    Boolean(bool),
    Select(u64),
    MultiSelect(Vec<u64>),
}

impl CfValue {
    pub(crate) fn to_json(&self) -> Value {
        match self {
            CfValue::Text(s) => json!({ "text": s }),
            CfValue::Number(n) => json!({ "number": n }),
            CfValue::Date(d) => json!({ "date": d }),
            CfValue::Boolean(b) => json!({ "boolean": b }),
            CfValue::Select(id) => json!({ "select": id }),
            CfValue::MultiSelect(ids) => json!({ "multi_select": ids }),
        }
    }
}

/// A custom field value attached to one partnership.
#[derive(Clone, Debug)]
pub(crate) struct CustomFieldValue {
    pub field_id: u64,
    pub value_id: u64,
    pub value: CfValue,
}

/// A contact person of the partner company: searched by the list, checked
/// for the duplicate-domain rule, served by `/contacts` and as the partner's
/// users (`/partnerships/{id}/users`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Contact {
    pub id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub position: Option<String>,
    pub phone_number: Option<String>,
    /// Tag ids (association `card`).
    pub tags: Vec<u64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A contact of a create request, before it gets an id.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NewContact {
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub tags: Vec<u64>,
}

/// One partnership of the company, with foreign keys into
/// [`crate::data::Dataset`].
#[derive(Clone, Debug)]
pub(crate) struct Partnership {
    /// Company partnership id (top-level `id`).
    pub id: u64,
    /// `partnership.id`.
    pub partnership_id: u64,
    /// Returned by `PATCH /partnerships/{id}`; not part of the list item.
    pub uuid: String,
    pub created_at: i64,
    /// Last `PATCH`; `created_at` until then.
    pub updated_at: i64,
    /// `partnership.stage`: invitation status such as `accepted`.
    pub status: String,
    pub partner_type: PartnerType,
    pub stage_id: u64,
    pub tier_id: Option<u64>,
    pub category_id: Option<u64>,
    pub partner_id: u64,
    pub name: String,
    pub website_url: String,
    pub logo_id: u64,
    pub logo_uuid: String,
    pub country_id: Option<u64>,
    /// Lower-cased e-mail domain of the partner; unique across partnerships.
    pub domain: String,
    pub contacts: Vec<Contact>,
    pub assigned_users: Vec<u64>,
    pub tags: Vec<u64>,
    pub custom_fields: Vec<CustomFieldValue>,
    /// Set by `PATCH /partnerships/{id}` (`fallbackData`); `null` otherwise.
    pub fallback_data: Option<Value>,
}

/// A validated create request, ready to be inserted.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NewPartnership {
    pub name: String,
    pub domain: String,
    pub contacts: Vec<NewContact>,
    pub partner_type: PartnerType,
    pub stage_id: u64,
    pub tier_id: Option<u64>,
    pub category_id: Option<u64>,
    pub country_id: Option<u64>,
    pub inactive: bool,
    pub assigned_users: Vec<u64>,
    pub tags: Vec<u64>,
    /// (field id, value)
    pub custom_fields: Vec<(u64, CfValue)>,
}

/// Lead statuses, in pipeline order (the lead list's `sort` type `status`
/// uses it).
pub(crate) const LEAD_STATUSES: &[&str] = &["new", "contacted", "qualified", "converted", "lost"];
/// Lead sources.
pub(crate) const LEAD_SOURCES: &[&str] = &[
    "manual",
    "campaign",
    "partnership",
    "integration",
    "lead_submission_form",
];

/// A lead.
#[derive(Clone, Debug)]
pub(crate) struct Lead {
    pub id: u64,
    pub uuid: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub company_name: Option<String>,
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// One of [`LEAD_STATUSES`].
    pub status: String,
    /// referral, reseller or campaigns.
    pub association_type: String,
    /// A referral lead is `received` from a partner or `sent` to one.
    pub direction: &'static str,
    pub source: String,
    /// The company partnership (top-level id) the lead came through.
    pub partnership_id: Option<u64>,
    pub partnership_lead_id: Option<u64>,
    pub assigned_users: Vec<u64>,
    pub tags: Vec<u64>,
    pub custom_fields: Vec<CustomFieldValue>,
}

impl Lead {
    /// Converted and lost leads are closed; the others block deleting their
    /// partnership.
    pub(crate) fn is_active(&self) -> bool {
        !matches!(self.status.as_str(), "converted" | "lost")
    }
}

/// A note on a lead.
#[derive(Clone, Debug)]
pub(crate) struct Note {
    pub id: u64,
    pub lead_id: u64,
    /// ProseMirror JSON, stored as given.
    pub document: Value,
    pub attachments: Value,
    pub mentions: Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A deal on a lead.
#[derive(Clone, Debug)]
pub(crate) struct Deal {
    pub id: u64,
    pub uuid: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub lead_id: u64,
    pub label: Option<String>,
    pub deal_value: Option<Number>,
    /// A lead-deal stage id.
    pub stage_id: u64,
    /// Stored as given: no payment stage list is documented.
    pub payment_stage_uuid: Option<String>,
    pub partnership_id: Option<u64>,
    pub assigned_users: Vec<u64>,
    pub tags: Vec<u64>,
    pub custom_fields: Vec<CustomFieldValue>,
}

impl Deal {
    /// A deal not yet closed (won or lost) blocks deleting its partnership.
    /// `deal_stages`: the tenant's lead-deal stages.
    pub(crate) fn is_active(&self, deal_stages: &[Stage]) -> bool {
        deal_stages
            .iter()
            .find(|s| s.id == self.stage_id)
            .is_none_or(|s| !s.phase.starts_with("closed"))
    }
}
