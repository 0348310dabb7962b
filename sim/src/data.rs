//! The simulated company and its partnerships.
//!
//! Everything is generated from a seed so that a test can rely on the same
//! ids, names and ordering on every run, and serialized in exactly the shape
//! of the documented "Get Partners" example.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{json, Number, Value};

use crate::deals::Deal;
use crate::leads::{Lead, Note};
use crate::time::{days_from_civil, format_date, format_timestamp};

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

/// One partnership of the company, with foreign keys into [`Dataset`].
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

/// The whole simulated tenant.
#[derive(Debug)]
pub(crate) struct Dataset {
    /// The simulated company's id (`company_id` of the lookups).
    pub company_id: u64,
    /// Partner types the company has enabled; the list default `view`.
    pub enabled_partner_types: Vec<PartnerType>,
    /// Active company users: valid `userId`s and `assignedUsers`.
    pub users: Vec<User>,
    /// Disabled and indirect users, listed by `GET /users?indirect=...` only;
    /// never valid as `userId` or in `assignedUsers`.
    pub other_users: Vec<User>,
    /// Partner stages.
    pub stages: Vec<Stage>,
    /// Lead-deal stages.
    pub deal_stages: Vec<Stage>,
    pub tiers: Vec<Tier>,
    pub categories: Vec<Category>,
    pub tags: Vec<Tag>,
    pub custom_fields: Vec<CustomFieldDef>,
    pub countries: Vec<Country>,
    /// Newest first.
    pub partnerships: Vec<Partnership>,
    /// Newest first.
    pub leads: Vec<Lead>,
    pub notes: Vec<Note>,
    /// Newest first.
    pub deals: Vec<Deal>,
    pub(crate) next_value_id: u64,
    /// Highest (id, partnership id, partner id, logo id) ever deleted, so that
    /// a create after a delete never reuses an id, as an auto-increment
    /// key would not.
    pub(crate) deleted_high: [u64; 4],
    /// Highest lead / deal id ever deleted (ids are never reused).
    pub(crate) deleted_lead_high: u64,
    pub(crate) deleted_deal_high: u64,
    pub(crate) next_contact_id: u64,
    rng: fastrand::Rng,
    /// Draws everything added after the original generator (lookup uuids,
    /// leads, deals, contact details), so that the partnerships stay
    /// exactly what they were for a seed.
    pub(crate) extra_rng: fastrand::Rng,
}

/// Domains used in the public docs' examples; never generated so that the
/// documented example request can be replayed against a fresh simulator.
const RESERVED_DOMAINS: &[&str] = &["techcorp.com", "partner.com", "company.com", "example.com"];

const FIRST_NAMES: &[&str] = &[
    "John", "Maria", "Wei", "Aisha", "Lukas", "Sofia", "Daniel", "Priya", "Tom", "Emma", "Carlos",
    "Yuki", "Olivia", "Ahmed", "Nina", "Jonas",
];
const LAST_NAMES: &[&str] = &[
    "Doe", "Smith", "Garcia", "Chen", "Khan", "Meyer", "Rossi", "Patel", "Novak", "Larsen",
    "Okafor", "Tanaka", "Dubois", "Silva", "Berg", "Walsh",
];
const COLORS: &[&str] = &[
    "#3B82F6", "#EF4444", "#10B981", "#F59E0B", "#8B5CF6", "#EC4899", "#14B8A6", "#6366F1",
];
const NAME_HEADS: &[&str] = &[
    "Acorn",
    "Apex",
    "Azure",
    "Beacon",
    "Birch",
    "Bluefin",
    "Bright",
    "Cedar",
    "Cobalt",
    "Copper",
    "Crest",
    "Delta",
    "Ember",
    "Evergreen",
    "Falcon",
    "Fathom",
    "Granite",
    "Harbor",
    "Horizon",
    "Ironclad",
    "Juniper",
    "Keystone",
    "Lumen",
    "Maple",
    "Meridian",
    "Nimbus",
    "Northwind",
    "Oakline",
    "Orbit",
    "Pinnacle",
    "Quartz",
    "Redwood",
    "Ridgeway",
    "Sage",
    "Summit",
    "Tidal",
    "Trident",
    "Vertex",
    "Willow",
    "Zephyr",
];
const NAME_TAILS: &[&str] = &[
    "Analytics",
    "Cloud",
    "Consulting",
    "Data",
    "Digital",
    "Dynamics",
    "Labs",
    "Logic",
    "Networks",
    "Partners",
    "Security",
    "Software",
    "Solutions",
    "Systems",
    "Technologies",
    "Ventures",
    "Works",
    "Media",
    "Health",
    "Logistics",
];
const LEGAL_SUFFIXES: &[&str] = &["", "", "", " Inc.", " Ltd", " GmbH", " LLC", " AG", " BV"];
const TLDS: &[&str] = &[
    "com", "com", "com", "io", "co", "net", "ai", "de", "co.uk", "tech",
];
const NOTES: &[&str] = &[
    "Met at SaaStr",
    "Intro via LinkedIn",
    "Strong in healthcare vertical",
    "Wants co-marketing budget",
    "Renewal due next quarter",
    "Reference customer",
    "Needs technical enablement",
];
const DESCRIPTIONS: &[&str] = &[
    "Regional systems integrator focused on mid-market retail.",
    "Boutique consultancy with a strong security practice.",
    "Reseller covering the DACH region.",
    "Agency building customer portals for B2B brands.",
];

fn hex_id(rng: &mut fastrand::Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from_digit(rng.u32(0..16), 16).unwrap_or('0'))
        .collect()
}

/// A random UUID-v4-shaped string (shape only; nothing depends on the bits).
pub(crate) fn uuid(rng: &mut fastrand::Rng) -> String {
    format!(
        "{}-{}-4{}-{}{}-{}",
        hex_id(rng, 8),
        hex_id(rng, 4),
        hex_id(rng, 3),
        ["8", "9", "a", "b"][rng.usize(0..4)],
        hex_id(rng, 3),
        hex_id(rng, 12)
    )
}

/// Picks `0..=max` distinct items from `ids`, keeping their original order.
pub(crate) fn pick_some(rng: &mut fastrand::Rng, ids: &[u64], max: usize) -> Vec<u64> {
    let n = rng.usize(0..=max.min(ids.len()));
    let mut chosen: Vec<usize> = Vec::with_capacity(n);
    while chosen.len() < n {
        let i = rng.usize(0..ids.len());
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen.sort_unstable();
    chosen.into_iter().map(|i| ids[i]).collect()
}

pub(crate) fn slug(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Inputs of [`Dataset::generate`].
pub(crate) struct GenParams<'a> {
    pub company_id: u64,
    pub company_domain: &'a str,
    pub partnerships: usize,
    pub seed: u64,
}

impl Dataset {
    /// Builds the tenant deterministically from `seed`.
    pub(crate) fn generate(p: &GenParams<'_>) -> Self {
        let mut rng = fastrand::Rng::with_seed(p.seed);

        let users = (0..8u64)
            .map(|i| {
                let first = FIRST_NAMES[rng.usize(0..FIRST_NAMES.len())];
                let last = LAST_NAMES[rng.usize(0..LAST_NAMES.len())];
                User {
                    id: 456 + i,
                    // The user index keeps e-mails unique even if names repeat.
                    email: format!(
                        "{}.{}{}@{}",
                        first.to_lowercase(),
                        slug(last),
                        if i == 0 { String::new() } else { i.to_string() },
                        p.company_domain
                    ),
                    first_name: first.to_string(),
                    last_name: last.to_string(),
                    profile_image_id: 789 + i,
                    profile_image_uuid: uuid(&mut rng),
                    color: COLORS[i as usize % COLORS.len()].to_string(),
                    // The remaining attributes are filled in by
                    // `lookups::enrich` from its own random stream.
                    created_at: 0,
                    role: if i == 0 { "admin" } else { "partnerships" },
                    position: String::new(),
                    email_verified: true,
                    disabled_at: None,
                    country_id: None,
                }
            })
            .collect::<Vec<_>>();

        let stages = [
            "Prospecting",
            "Onboarding",
            "Enablement",
            "Active",
            "Strategic",
        ]
        .iter()
        .enumerate()
        .map(|(i, label)| Stage {
            id: i as u64 + 1,
            uuid: uuid(&mut rng),
            label: (*label).to_string(),
            series: i as u64 + 1,
            phase: ["discovery", "evaluation", "evaluation", "active", "active"][i].to_string(),
            partner_type: None,
        })
        .collect::<Vec<_>>();

        let tiers = [
            ("Bronze", "#CD7F32", "#FFFFFF"),
            ("Silver", "#C0C0C0", "#000000"),
            ("Gold", "#FFD700", "#000000"),
            ("Platinum", "#E5E4E2", "#000000"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (label, bg, fg))| Tier {
            id: i as u64 + 1,
            label: (*label).to_string(),
            background_color: (*bg).to_string(),
            text_color: (*fg).to_string(),
            uuid: String::new(),
            partner_type: None,
        })
        .collect::<Vec<_>>();

        let categories = [
            "Agency",
            "Consulting",
            "Technology",
            "Systems Integrator",
            "Managed Services",
            "Distribution",
        ]
        .iter()
        .enumerate()
        .map(|(i, label)| Category {
            id: i as u64 + 1,
            label: (*label).to_string(),
            uuid: String::new(),
            partner_type: None,
            created_at: 0,
            updated_at: 0,
        })
        .collect::<Vec<_>>();

        let tags = [
            ("High Priority", "#EF4444", "#FFFFFF"),
            ("Strategic", "#8B5CF6", "#FFFFFF"),
            ("Co-marketing", "#EC4899", "#FFFFFF"),
            ("Enterprise", "#1E3A8A", "#FFFFFF"),
            ("SMB", "#10B981", "#FFFFFF"),
            ("EMEA", "#F59E0B", "#000000"),
            ("APAC", "#14B8A6", "#000000"),
            ("Americas", "#3B82F6", "#FFFFFF"),
            ("Needs Follow-up", "#FDE68A", "#000000"),
            ("Certified", "#22C55E", "#FFFFFF"),
            ("Dormant", "#9CA3AF", "#000000"),
            ("Top Referrer", "#F97316", "#FFFFFF"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (label, bg, fg))| Tag {
            id: i as u64 + 10,
            label: (*label).to_string(),
            background_color: (*bg).to_string(),
            text_color: (*fg).to_string(),
            uuid: String::new(),
            association: Association::Partner,
            partner_type: None,
        })
        .collect::<Vec<_>>();

        // Partner fields only: the generator below draws values for each of
        // them. Lead and deal fields are added by `lookups::enrich`.
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
        let def = |id: u64, label: &str, field_type: FieldType, options: Vec<FieldOption>| {
            CustomFieldDef {
                id,
                uuid: String::new(),
                label: label.into(),
                field_type,
                category: FieldCategory::Partner,
                partner_type: None,
                required: false,
                shared: false,
                options,
            }
        };
        let custom_fields = vec![
            def(5, "Revenue Potential", FieldType::Number, vec![]),
            def(
                6,
                "Region",
                FieldType::Select,
                opts(&["EMEA", "Americas", "APAC", "LATAM"]),
            ),
            def(7, "Notes", FieldType::Text, vec![]),
            def(
                8,
                "Products",
                FieldType::MultiSelect,
                opts(&[
                    "Core",
                    "Analytics",
                    "Integrations",
                    "Support Plus",
                    "Training",
                ]),
            ),
            def(9, "NDA Signed", FieldType::Boolean, vec![]),
            def(10, "Contract Start", FieldType::Date, vec![]),
            def(11, "Description", FieldType::Textarea, vec![]),
        ];

        let countries = [
            ("United States", "US"),
            ("United Kingdom", "GB"),
            ("Germany", "DE"),
            ("France", "FR"),
            ("Netherlands", "NL"),
            ("Spain", "ES"),
            ("Italy", "IT"),
            ("Sweden", "SE"),
            ("Norway", "NO"),
            ("Denmark", "DK"),
            ("Ireland", "IE"),
            ("Switzerland", "CH"),
            ("Austria", "AT"),
            ("Poland", "PL"),
            ("Canada", "CA"),
            ("Australia", "AU"),
            ("Japan", "JP"),
            ("Singapore", "SG"),
            ("India", "IN"),
            ("Brazil", "BR"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (label, code))| Country {
            id: i as u64 + 1,
            label: (*label).to_string(),
            code,
        })
        .collect::<Vec<_>>();

        let mut ds = Dataset {
            company_id: p.company_id,
            enabled_partner_types: vec![PartnerType::Referral, PartnerType::Reseller],
            users,
            other_users: Vec::new(),
            stages,
            deal_stages: Vec::new(),
            tiers,
            categories,
            tags,
            custom_fields,
            countries,
            partnerships: Vec::with_capacity(p.partnerships),
            leads: Vec::new(),
            notes: Vec::new(),
            deals: Vec::new(),
            next_value_id: 100,
            deleted_high: [0; 4],
            deleted_lead_high: 0,
            deleted_deal_high: 0,
            next_contact_id: 1,
            rng: fastrand::Rng::with_seed(0),
            extra_rng: fastrand::Rng::with_seed(p.seed ^ 0x6a62_7369_6d5f_7832),
        };

        let user_ids: Vec<u64> = ds.users.iter().map(|u| u.id).collect();
        let tag_ids: Vec<u64> = ds.tags.iter().map(|t| t.id).collect();
        let mut used_names: HashSet<String> = HashSet::new();
        let mut used_domains: HashSet<String> =
            RESERVED_DOMAINS.iter().map(|d| (*d).to_string()).collect();
        used_domains.insert(p.company_domain.to_ascii_lowercase());

        // The newest partnership is a little before a fixed instant; older
        // ones step back by at least one second so created_at is unique and
        // strictly decreasing, which is what makes it usable as a cursor.
        let mut created_at = days_from_civil(2025, 6, 2) * 86_400 + 9 * 3600;
        let n = p.partnerships as u64;
        for i in 0..n {
            let (name, domain) = unique_name(&mut rng, &mut used_names, &mut used_domains);
            let website_url = if rng.bool() {
                format!("https://www.{domain}")
            } else {
                format!("https://{domain}")
            };
            let contacts = (0..rng.usize(1..=3))
                .map(|_| {
                    let first = FIRST_NAMES[rng.usize(0..FIRST_NAMES.len())];
                    let last = LAST_NAMES[rng.usize(0..LAST_NAMES.len())];
                    // Ids, positions, phones and tags come from
                    // `lookups::enrich`.
                    Contact {
                        id: 0,
                        email: format!("{}.{}@{domain}", first.to_lowercase(), slug(last)),
                        first_name: first.to_string(),
                        last_name: last.to_string(),
                        position: None,
                        phone_number: None,
                        tags: Vec::new(),
                        created_at: 0,
                        updated_at: 0,
                    }
                })
                .collect();
            let mut custom_fields = Vec::new();
            for def in &ds.custom_fields {
                if rng.u8(0..10) >= 7 {
                    continue;
                }
                let value = match def.field_type {
                    FieldType::Number => CfValue::Number(Number::from(rng.u64(5..=500) * 1000)),
                    FieldType::Select => {
                        CfValue::Select(def.options[rng.usize(0..def.options.len())].id)
                    }
                    FieldType::Text => CfValue::Text(NOTES[rng.usize(0..NOTES.len())].to_string()),
                    FieldType::Textarea => {
                        CfValue::Text(DESCRIPTIONS[rng.usize(0..DESCRIPTIONS.len())].to_string())
                    }
                    FieldType::MultiSelect => {
                        let mut v = pick_some(&mut rng, &def.option_ids(), 3);
                        if v.is_empty() {
                            v.push(def.options[0].id);
                        }
                        CfValue::MultiSelect(v)
                    }
                    FieldType::Boolean => CfValue::Boolean(rng.bool()),
                    FieldType::Date => CfValue::Date(format_date(
                        days_from_civil(2023, 1, 1) * 86_400 + rng.i64(0..900) * 86_400,
                    )),
                };
                custom_fields.push(CustomFieldValue {
                    field_id: def.id,
                    value_id: ds.next_value_id,
                    value,
                });
                ds.next_value_id += 1;
            }
            // Ids grow with age reversed so the newest partnership has the
            // largest id, as an auto-increment key would.
            let k = n - 1 - i;
            ds.partnerships.push(Partnership {
                id: 1000 + k,
                partnership_id: 5000 + k,
                // Drawn by `lookups::enrich`, off the main stream.
                uuid: String::new(),
                created_at,
                updated_at: created_at,
                status: if rng.u8(0..100) < 85 {
                    "accepted".into()
                } else {
                    "pending".into()
                },
                partner_type: if rng.u8(0..100) < 65 {
                    PartnerType::Referral
                } else {
                    PartnerType::Reseller
                },
                stage_id: ds.stages[rng.usize(0..ds.stages.len())].id,
                tier_id: Some(ds.tiers[rng.usize(0..ds.tiers.len())].id),
                category_id: Some(ds.categories[rng.usize(0..ds.categories.len())].id),
                partner_id: 20_000 + k,
                name,
                website_url,
                logo_id: 30_000 + k,
                logo_uuid: uuid(&mut rng),
                country_id: Some(ds.countries[rng.usize(0..ds.countries.len())].id),
                domain,
                contacts,
                assigned_users: pick_some(&mut rng, &user_ids, 3),
                tags: pick_some(&mut rng, &tag_ids, 3),
                custom_fields,
                fallback_data: None,
            });
            created_at -= rng.i64(1..=129_600);
        }
        // Keep the remaining random stream (used for uuids of created
        // partnerships) deterministic too.
        ds.rng = rng;
        crate::lookups::enrich(&mut ds);
        crate::leads::generate(&mut ds);
        crate::deals::generate(&mut ds);
        ds
    }

    pub(crate) fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub(crate) fn stage(&self, id: u64) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }

    pub(crate) fn tier(&self, id: u64) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.id == id)
    }

    pub(crate) fn category(&self, id: u64) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    pub(crate) fn country(&self, id: u64) -> Option<&Country> {
        self.countries.iter().find(|c| c.id == id)
    }

    pub(crate) fn tag(&self, id: u64) -> Option<&Tag> {
        self.tags.iter().find(|t| t.id == id)
    }

    pub(crate) fn custom_field(&self, id: u64) -> Option<&CustomFieldDef> {
        self.custom_fields.iter().find(|f| f.id == id)
    }

    /// True if some partnership already uses this (lower-cased) domain.
    pub(crate) fn domain_exists(&self, domain: &str) -> bool {
        self.partnerships.iter().any(|p| p.domain == domain)
    }

    /// Inserts a validated partnership as the newest one.
    pub(crate) fn insert(&mut self, new: NewPartnership) {
        let newest = self.partnerships.iter().map(|p| p.created_at).max();
        // One second after the newest keeps created_at unique and makes the
        // new partnership first in a default list, without depending on the
        // wall clock (tests stay deterministic).
        let created_at = newest.map_or(days_from_civil(2025, 6, 2) * 86_400, |t| t + 1);
        let high = self.deleted_high;
        let max_id = |f: fn(&Partnership) -> u64, base: u64, deleted: u64| {
            self.partnerships
                .iter()
                .map(f)
                .max()
                .unwrap_or(base)
                .max(deleted)
        };
        let id = max_id(|p| p.id, 999, high[0]) + 1;
        let partnership_id = max_id(|p| p.partnership_id, 4999, high[1]) + 1;
        let partner_id = max_id(|p| p.partner_id, 19_999, high[2]) + 1;
        let logo_id = max_id(|p| p.logo_id, 29_999, high[3]) + 1;
        let custom_fields = new
            .custom_fields
            .into_iter()
            .map(|(field_id, value)| {
                let value_id = self.next_value_id;
                self.next_value_id += 1;
                CustomFieldValue {
                    field_id,
                    value_id,
                    value,
                }
            })
            .collect();
        let logo_uuid = uuid(&mut self.rng);
        let now = crate::time::now_secs();
        let contacts = new
            .contacts
            .into_iter()
            .map(|c| {
                let id = self.take_contact_id();
                // A contact given without a name gets the local part, as a
                // user who never filled in a profile shows up.
                let local = c.email.split('@').next().unwrap_or_default().to_string();
                Contact {
                    id,
                    first_name: c.first_name.unwrap_or(local),
                    last_name: c.last_name.unwrap_or_default(),
                    email: c.email,
                    position: None,
                    phone_number: None,
                    tags: c.tags,
                    created_at: now,
                    updated_at: now,
                }
            })
            .collect();
        self.partnerships.insert(
            0,
            Partnership {
                id,
                partnership_id,
                uuid: uuid(&mut self.extra_rng),
                created_at,
                updated_at: created_at,
                // Invitations go out on create; an inactive partnership sends
                // none.
                status: if new.inactive { "inactive" } else { "pending" }.into(),
                partner_type: new.partner_type,
                stage_id: new.stage_id,
                tier_id: new.tier_id,
                category_id: new.category_id,
                partner_id,
                website_url: format!("https://{}", new.domain),
                name: new.name,
                logo_id,
                logo_uuid,
                country_id: new.country_id,
                domain: new.domain,
                contacts,
                assigned_users: new.assigned_users,
                tags: new.tags,
                custom_fields,
                fallback_data: None,
            },
        );
    }

    /// A fresh contact id.
    pub(crate) fn take_contact_id(&mut self) -> u64 {
        let id = self.next_contact_id;
        self.next_contact_id += 1;
        id
    }

    /// A fresh custom field value id.
    pub(crate) fn take_value_id(&mut self) -> u64 {
        let id = self.next_value_id;
        self.next_value_id += 1;
        id
    }

    /// The partnership with this (top-level, "company partnership") id.
    pub(crate) fn partnership(&self, id: u64) -> Option<&Partnership> {
        self.partnerships.iter().find(|p| p.id == id)
    }

    /// Mutable [`Dataset::partnership`].
    pub(crate) fn partnership_mut(&mut self, id: u64) -> Option<&mut Partnership> {
        self.partnerships.iter_mut().find(|p| p.id == id)
    }

    /// Removes a partnership, remembering its ids so they are never reused.
    pub(crate) fn remove_partnership(&mut self, id: u64) -> Option<Partnership> {
        let i = self.partnerships.iter().position(|p| p.id == id)?;
        let p = self.partnerships.remove(i);
        let h = &mut self.deleted_high;
        h[0] = h[0].max(p.id);
        h[1] = h[1].max(p.partnership_id);
        h[2] = h[2].max(p.partner_id);
        h[3] = h[3].max(p.logo_id);
        Some(p)
    }

    /// The tag with this id if it has this association.
    pub(crate) fn tag_for(&self, id: u64, association: Association) -> Option<&Tag> {
        self.tag(id).filter(|t| t.association == association)
    }

    pub(crate) fn lead(&self, id: u64) -> Option<&Lead> {
        self.leads.iter().find(|l| l.id == id)
    }

    pub(crate) fn deal(&self, id: u64) -> Option<&Deal> {
        self.deals.iter().find(|d| d.id == id)
    }

    /// The users with these ids, in the given order (unknown ids skipped).
    pub(crate) fn users_of(&self, ids: &[u64]) -> Vec<&User> {
        ids.iter().filter_map(|id| self.any_user(*id)).collect()
    }

    /// The tags with these ids, in the given order (unknown ids skipped).
    pub(crate) fn tags_of(&self, ids: &[u64]) -> Vec<&Tag> {
        ids.iter().filter_map(|id| self.tag(*id)).collect()
    }

    /// Stored values in the items' `customFields` shape.
    pub(crate) fn custom_field_values<'a>(
        &'a self,
        values: &'a [CustomFieldValue],
    ) -> Vec<CustomFieldOut<'a>> {
        values
            .iter()
            .filter_map(|v| {
                self.custom_field(v.field_id).map(|d| CustomFieldOut {
                    id: d.id,
                    label: &d.label,
                    field_type: d.field_type.as_str(),
                    value: v.value.to_json(),
                    custom_field_value_id: v.value_id,
                })
            })
            .collect()
    }

    /// An active user or a disabled/indirect one (for rendering only).
    pub(crate) fn any_user(&self, id: u64) -> Option<&User> {
        self.user(id)
            .or_else(|| self.other_users.iter().find(|u| u.id == id))
    }

    /// One partnership in the documented list-item shape, ready to be
    /// serialized (field order as in the docs' example).
    pub(crate) fn item<'a>(&'a self, p: &'a Partnership, total: usize) -> Item<'a> {
        let stage = self.stage(p.stage_id);
        let country = p.country_id.and_then(|id| self.country(id));
        Item {
            total,
            id: p.id,
            stage_id: p.stage_id,
            stage_label: stage.map(|s| s.label.as_str()),
            stage_series: stage.map(|s| s.series),
            partnership: PartnershipOut {
                id: p.partnership_id,
                created_at: format_timestamp(p.created_at),
                stage: &p.status,
                partner_type: p.partner_type.as_str(),
            },
            tier: p.tier_id.and_then(|id| self.tier(id)),
            category: p.category_id.and_then(|id| self.category(id)),
            partner: PartnerOut {
                id: p.partner_id,
                name: &p.name,
                website_url: &p.website_url,
                logo: LogoOut {
                    id: p.logo_id,
                    uuid: &p.logo_uuid,
                },
                address: AddressOut {
                    country_id: country.map(|c| c.id),
                    country_label: country.map(|c| c.label.as_str()),
                },
                fallback_data: p.fallback_data.clone(),
            },
            assigned_users: p
                .assigned_users
                .iter()
                .filter_map(|id| self.user(*id))
                .collect(),
            tags: p.tags.iter().filter_map(|id| self.tag(*id)).collect(),
            custom_fields: self.custom_field_values(&p.custom_fields),
        }
    }
}

/// A list item. Typed rather than a `serde_json::Value` so that keys keep the
/// documented order (a `Value` map would sort them).
#[derive(Serialize)]
pub(crate) struct Item<'a> {
    total: usize,
    id: u64,
    stage_id: u64,
    stage_label: Option<&'a str>,
    stage_series: Option<u64>,
    partnership: PartnershipOut<'a>,
    tier: Option<&'a Tier>,
    category: Option<&'a Category>,
    partner: PartnerOut<'a>,
    assigned_users: Vec<&'a User>,
    tags: Vec<&'a Tag>,
    #[serde(rename = "customFields")]
    custom_fields: Vec<CustomFieldOut<'a>>,
}

#[derive(Serialize)]
struct PartnershipOut<'a> {
    id: u64,
    created_at: String,
    stage: &'a str,
    partner_type: &'static str,
}

#[derive(Serialize)]
struct PartnerOut<'a> {
    id: u64,
    name: &'a str,
    website_url: &'a str,
    logo: LogoOut<'a>,
    address: AddressOut<'a>,
    /// Always `null` here, as in the docs' example.
    fallback_data: Option<Value>,
}

#[derive(Serialize)]
struct LogoOut<'a> {
    id: u64,
    uuid: &'a str,
}

#[derive(Serialize)]
struct AddressOut<'a> {
    country_id: Option<u64>,
    country_label: Option<&'a str>,
}

/// A custom field value as items show it.
#[derive(Serialize)]
pub(crate) struct CustomFieldOut<'a> {
    id: u64,
    label: &'a str,
    #[serde(rename = "type")]
    field_type: &'static str,
    value: Value,
    custom_field_value_id: u64,
}

/// Draws a partner company name and a matching e-mail domain, both unique.
fn unique_name(
    rng: &mut fastrand::Rng,
    used_names: &mut HashSet<String>,
    used_domains: &mut HashSet<String>,
) -> (String, String) {
    for attempt in 0u32.. {
        let head = NAME_HEADS[rng.usize(0..NAME_HEADS.len())];
        let tail = NAME_TAILS[rng.usize(0..NAME_TAILS.len())];
        // After a few collisions (only likely with many partnerships) a
        // number makes the name unique instead of looping for long.
        let number = if attempt >= 8 {
            format!(" {}", attempt - 6)
        } else {
            String::new()
        };
        let name = format!(
            "{head} {tail}{number}{}",
            LEGAL_SUFFIXES[rng.usize(0..LEGAL_SUFFIXES.len())]
        );
        let domain = format!(
            "{}{}{}.{}",
            slug(head),
            slug(tail),
            slug(&number),
            TLDS[rng.usize(0..TLDS.len())]
        );
        let base_name = format!("{head} {tail}{number}");
        if used_names.contains(&base_name) || used_domains.contains(&domain) {
            continue;
        }
        used_names.insert(base_name);
        used_domains.insert(domain.clone());
        return (name, domain);
    }
    unreachable!("the attempt counter is unbounded")
}
