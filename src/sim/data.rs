//! The simulated company and its partnerships.
//!
//! Everything is generated from a seed so that a test can rely on the same
//! ids, names and ordering on every run, and serialized in exactly the shape
//! of the documented "Get Partners" example.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{json, Number, Value};

use super::time::{days_from_civil, format_date, format_timestamp};

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

/// A JourneyBee user of the simulated company.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct User {
    pub id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub profile_image_id: u64,
    pub profile_image_uuid: String,
    pub color: String,
}

/// A partner stage of the company's pipeline.
#[derive(Clone, Debug)]
pub(crate) struct Stage {
    pub id: u64,
    pub uuid: String,
    pub label: String,
    pub series: u64,
}

/// A partner tier; `id` doubles as its rank for sorting.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Tier {
    pub id: u64,
    pub label: String,
    pub background_color: String,
    pub text_color: String,
}

/// A partner category.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Category {
    pub id: u64,
    pub label: String,
}

/// A tag that can be put on partnerships.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Tag {
    pub id: u64,
    pub label: String,
    pub background_color: String,
    pub text_color: String,
}

/// A country of the address book.
#[derive(Clone, Debug)]
pub(crate) struct Country {
    pub id: u64,
    pub label: String,
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

/// Definition of a custom field; `options` are the ids valid for
/// select / multi_select values.
#[derive(Clone, Debug)]
pub(crate) struct CustomFieldDef {
    pub id: u64,
    pub label: String,
    pub field_type: FieldType,
    pub options: Vec<u64>,
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
    fn to_json(&self) -> Value {
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

/// A contact person of the partner company (kept for search and the
/// duplicate-domain check; not part of the list response).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Contact {
    pub email: String,
}

/// One partnership of the company, with foreign keys into [`Dataset`].
#[derive(Clone, Debug)]
pub(crate) struct Partnership {
    /// Company partnership id (top-level `id`).
    pub id: u64,
    /// `partnership.id`.
    pub partnership_id: u64,
    pub created_at: i64,
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
}

/// A validated create request, ready to be inserted.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NewPartnership {
    pub name: String,
    pub domain: String,
    pub contacts: Vec<Contact>,
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
    /// Partner types the company has enabled; the list default `view`.
    pub enabled_partner_types: Vec<PartnerType>,
    pub users: Vec<User>,
    pub stages: Vec<Stage>,
    pub tiers: Vec<Tier>,
    pub categories: Vec<Category>,
    pub tags: Vec<Tag>,
    pub custom_fields: Vec<CustomFieldDef>,
    pub countries: Vec<Country>,
    /// Newest first.
    pub partnerships: Vec<Partnership>,
    next_value_id: u64,
    rng: fastrand::Rng,
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
fn uuid(rng: &mut fastrand::Rng) -> String {
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
fn pick_some(rng: &mut fastrand::Rng, ids: &[u64], max: usize) -> Vec<u64> {
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

fn slug(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Inputs of [`Dataset::generate`].
pub(crate) struct GenParams<'a> {
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
        })
        .collect::<Vec<_>>();

        let custom_fields = vec![
            CustomFieldDef {
                id: 5,
                label: "Revenue Potential".into(),
                field_type: FieldType::Number,
                options: vec![],
            },
            CustomFieldDef {
                id: 6,
                label: "Region".into(),
                field_type: FieldType::Select,
                options: vec![1, 2, 3, 4],
            },
            CustomFieldDef {
                id: 7,
                label: "Notes".into(),
                field_type: FieldType::Text,
                options: vec![],
            },
            CustomFieldDef {
                id: 8,
                label: "Products".into(),
                field_type: FieldType::MultiSelect,
                options: vec![1, 2, 3, 4, 5],
            },
            CustomFieldDef {
                id: 9,
                label: "NDA Signed".into(),
                field_type: FieldType::Boolean,
                options: vec![],
            },
            CustomFieldDef {
                id: 10,
                label: "Contract Start".into(),
                field_type: FieldType::Date,
                options: vec![],
            },
            CustomFieldDef {
                id: 11,
                label: "Description".into(),
                field_type: FieldType::Textarea,
                options: vec![],
            },
        ];

        let countries = [
            "United States",
            "United Kingdom",
            "Germany",
            "France",
            "Netherlands",
            "Spain",
            "Italy",
            "Sweden",
            "Norway",
            "Denmark",
            "Ireland",
            "Switzerland",
            "Austria",
            "Poland",
            "Canada",
            "Australia",
            "Japan",
            "Singapore",
            "India",
            "Brazil",
        ]
        .iter()
        .enumerate()
        .map(|(i, label)| Country {
            id: i as u64 + 1,
            label: (*label).to_string(),
        })
        .collect::<Vec<_>>();

        let mut ds = Dataset {
            enabled_partner_types: vec![PartnerType::Referral, PartnerType::Reseller],
            users,
            stages,
            tiers,
            categories,
            tags,
            custom_fields,
            countries,
            partnerships: Vec::with_capacity(p.partnerships),
            next_value_id: 100,
            rng: fastrand::Rng::with_seed(0),
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
                    Contact {
                        email: format!("{}.{}@{domain}", first.to_lowercase(), slug(last)),
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
                        CfValue::Select(def.options[rng.usize(0..def.options.len())])
                    }
                    FieldType::Text => CfValue::Text(NOTES[rng.usize(0..NOTES.len())].to_string()),
                    FieldType::Textarea => {
                        CfValue::Text(DESCRIPTIONS[rng.usize(0..DESCRIPTIONS.len())].to_string())
                    }
                    FieldType::MultiSelect => {
                        let mut v = pick_some(&mut rng, &def.options, 3);
                        if v.is_empty() {
                            v.push(def.options[0]);
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
                created_at,
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
            });
            created_at -= rng.i64(1..=129_600);
        }
        // Keep the remaining random stream (used for uuids of created
        // partnerships) deterministic too.
        ds.rng = rng;
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
        let max_id = |f: fn(&Partnership) -> u64, base: u64| {
            self.partnerships.iter().map(f).max().unwrap_or(base)
        };
        let id = max_id(|p| p.id, 999) + 1;
        let partnership_id = max_id(|p| p.partnership_id, 4999) + 1;
        let partner_id = max_id(|p| p.partner_id, 19_999) + 1;
        let logo_id = max_id(|p| p.logo_id, 29_999) + 1;
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
        self.partnerships.insert(
            0,
            Partnership {
                id,
                partnership_id,
                created_at,
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
                contacts: new.contacts,
                assigned_users: new.assigned_users,
                tags: new.tags,
                custom_fields,
            },
        );
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
                fallback_data: None,
            },
            assigned_users: p
                .assigned_users
                .iter()
                .filter_map(|id| self.user(*id))
                .collect(),
            tags: p.tags.iter().filter_map(|id| self.tag(*id)).collect(),
            custom_fields: p
                .custom_fields
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
                .collect(),
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

#[derive(Serialize)]
struct CustomFieldOut<'a> {
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
