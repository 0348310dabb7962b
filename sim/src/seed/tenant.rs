//! The original generator: users, partner stages, tiers, categories, tags,
//! partner custom fields, countries and the partnerships, all from the
//! main random stream.

use std::collections::HashSet;

use serde_json::Number;

use super::common::{pick_some, slug};
use crate::data::{uuid, Dataset};
use crate::records::{
    Association, Category, CfValue, Contact, Country, CustomFieldDef, CustomFieldValue,
    FieldCategory, FieldOption, FieldType, PartnerType, Partnership, Stage, Tag, Tier, User,
};
use crate::time::{days_from_civil, format_date};

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

/// Inputs of the generator (`seed::generate`).
pub(crate) struct GenParams<'a> {
    pub company_id: u64,
    pub company_domain: &'a str,
    pub partnerships: usize,
    pub seed: u64,
}

/// The users, the partner lookups and the partnerships, from the main
/// stream (seeded with `p.seed`), which is left in `Dataset::rng`.
pub(crate) fn generate(p: &GenParams<'_>) -> Dataset {
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
    let def =
        |id: u64, label: &str, field_type: FieldType, options: Vec<FieldOption>| CustomFieldDef {
            id,
            uuid: String::new(),
            label: label.into(),
            field_type,
            category: FieldCategory::Partner,
            partner_type: None,
            required: false,
            shared: false,
            options,
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
    ds
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
