//! Generated lead deals.

use serde_json::Number;

use super::common::{pick_some, tag_ids};
use crate::data::{uuid, Dataset};
use crate::records::{Association, CfValue, CustomFieldValue, Deal, Lead, LEAD_STATUSES};

/// One deal (ids from 8000, newest first) for about half of the qualified
/// and converted leads, on the lead's partnership.
pub(crate) fn generate(ds: &mut Dataset) {
    let mut rng = std::mem::replace(&mut ds.extra_rng, fastrand::Rng::with_seed(0));
    let deal_tags = tag_ids(ds, Association::LeadDeal);
    let stage_ids: Vec<u64> = ds.deal_stages.iter().map(|s| s.id).collect();
    let candidates: Vec<Lead> = ds
        .leads
        .iter()
        .rev()
        .filter(|l| l.status == LEAD_STATUSES[2] || l.status == LEAD_STATUSES[3])
        .cloned()
        .collect();
    let mut deals = Vec::new();
    for lead in candidates {
        if rng.bool() && !deals.is_empty() {
            continue;
        }
        let mut custom_fields = Vec::new();
        if rng.bool() {
            custom_fields.push(CustomFieldValue {
                field_id: 15,
                value_id: ds.take_value_id(),
                value: CfValue::Number(Number::from(rng.u64(1..=10) * 10)),
            });
        }
        let at = lead.created_at + rng.i64(3600..=86_400);
        deals.push(Deal {
            id: 8000 + deals.len() as u64,
            uuid: uuid(&mut rng),
            created_at: at,
            updated_at: at,
            lead_id: lead.id,
            label: lead.company_name.map(|c| format!("{c} - annual plan")),
            deal_value: Some(Number::from(rng.u64(2..=120) * 1000)),
            stage_id: stage_ids[rng.usize(0..stage_ids.len())],
            payment_stage_uuid: None,
            partnership_id: lead.partnership_id,
            assigned_users: lead.assigned_users,
            tags: pick_some(&mut rng, &deal_tags, 2),
            custom_fields,
        });
    }
    deals.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    ds.deals = deals;
    ds.extra_rng = rng;
}
