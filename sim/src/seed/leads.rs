//! Generated leads and their notes.

use serde_json::{json, Value};

use super::common::{pick_some, slug, tag_ids};
use crate::data::{uuid, Dataset};
use crate::records::{
    Association, CfValue, CustomFieldValue, Lead, Note, LEAD_SOURCES, LEAD_STATUSES,
};
use crate::time::days_from_civil;

const COMPANIES: &[&str] = &[
    "Globex",
    "Initech",
    "Umbrella Retail",
    "Stark Logistics",
    "Wayne Health",
    "Hooli",
    "Vandelay Imports",
    "Soylent Foods",
    "Tyrell Systems",
    "Cyberdyne Labs",
    "Wonka Brands",
    "Massive Dynamic",
];
const FIRST: &[&str] = &[
    "Anna", "Ben", "Chloe", "Dev", "Eli", "Farah", "Greg", "Hana",
];
const LAST: &[&str] = &[
    "Lopez", "Ng", "Ivanova", "Mensah", "Schulz", "Kim", "Moreau",
];

/// Generates the leads (ids from 7000, newest first) and a few notes.
/// Leads that came through a partnership reference the older half of the
/// partnerships, so the newest ones can be deleted without tripping the
/// "active leads or deals" rule.
pub(crate) fn generate(ds: &mut Dataset) {
    let mut rng = std::mem::replace(&mut ds.extra_rng, fastrand::Rng::with_seed(0));
    let user_ids: Vec<u64> = ds.users.iter().map(|u| u.id).collect();
    let lead_tags: Vec<u64> = tag_ids(ds, Association::Lead);
    let older: Vec<u64> = ds
        .partnerships
        .iter()
        .skip(ds.partnerships.len() / 2)
        .map(|p| p.id)
        .collect();
    let n = 60u64;
    let mut created_at = days_from_civil(2025, 6, 1) * 86_400 + 15 * 3600;
    let mut leads = Vec::with_capacity(n as usize);
    for i in 0..n {
        let company = COMPANIES[rng.usize(0..COMPANIES.len())];
        let first = FIRST[rng.usize(0..FIRST.len())];
        let last = LAST[rng.usize(0..LAST.len())];
        let association_type = match rng.u8(0..10) {
            0..=5 => "referral",
            6..=8 => "reseller",
            _ => "campaigns",
        };
        let partnership_id = (association_type != "campaigns" && !older.is_empty())
            .then(|| older[rng.usize(0..older.len())]);
        let mut custom_fields = Vec::new();
        if rng.bool() {
            custom_fields.push(CustomFieldValue {
                field_id: 12,
                value_id: ds.take_value_id(),
                value: CfValue::Number(serde_json::Number::from(rng.u64(1..=200) * 500)),
            });
        }
        if rng.bool() {
            custom_fields.push(CustomFieldValue {
                field_id: 14,
                value_id: ds.take_value_id(),
                value: CfValue::Select(rng.u64(1..=5)),
            });
        }
        let k = n - 1 - i;
        leads.push(Lead {
            id: 7000 + k,
            uuid: uuid(&mut rng),
            created_at,
            updated_at: created_at,
            company_name: Some(format!("{company} {}", k + 1)),
            email: Some(format!(
                "{}.{}@{}{}.com",
                first.to_lowercase(),
                slug(last),
                slug(company),
                k + 1
            )),
            phone_number: rng
                .bool()
                .then(|| format!("+44 20 {:04} {:04}", rng.u32(0..10_000), rng.u32(0..10_000))),
            first_name: Some(first.to_string()),
            last_name: Some(last.to_string()),
            status: LEAD_STATUSES[rng.usize(0..LEAD_STATUSES.len())].to_string(),
            association_type: association_type.to_string(),
            direction: if rng.u8(0..3) == 0 {
                "sent"
            } else {
                "received"
            },
            source: if partnership_id.is_some() {
                "partnership".into()
            } else {
                LEAD_SOURCES[rng.usize(0..LEAD_SOURCES.len())].into()
            },
            partnership_lead_id: partnership_id.map(|_| 9000 + k),
            partnership_id,
            assigned_users: pick_some(&mut rng, &user_ids, 2),
            tags: pick_some(&mut rng, &lead_tags, 2),
            custom_fields,
        });
        created_at -= rng.i64(600..=172_800);
    }
    let mut notes = Vec::new();
    for lead in leads.iter().rev().filter(|_| rng.u8(0..3) == 0) {
        notes.push(Note {
            id: notes.len() as u64 + 1,
            lead_id: lead.id,
            document: doc("Called, follow up next week."),
            attachments: json!([]),
            mentions: json!([]),
            created_at: lead.created_at + 3600,
            updated_at: lead.created_at + 3600,
        });
    }
    ds.leads = leads;
    ds.notes = notes;
    ds.extra_rng = rng;
}

/// A one-paragraph ProseMirror document.
fn doc(text: &str) -> Value {
    json!({"type": "doc", "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}]})
}
