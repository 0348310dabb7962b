//! Lookup enrichment: gives the generated data everything the lookup pages
//! list beyond what the partnership list shows (uuids, associations,
//! phases, lead and deal tags and fields, deal stages, user profiles,
//! contact details). The partnerships generated before keep referencing
//! these lookups: tiers 1-4, categories 1-6, partner stages 1-5, partner
//! tags 10-21, partner custom fields 5-11 and users 456-463.

use super::common::pick_some;
use crate::data::{uuid, Dataset};
use crate::records::{
    Association, CustomFieldDef, FieldCategory, FieldOption, FieldType, PartnerType, Stage, Tag,
    User,
};
use crate::time::days_from_civil;

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
