//! Lead deals: `GET/POST /lead-deals`, `GET
//! /companies/{cid}/lead-deals/{id}`, `PATCH /lead-deals/{id}`.
//!
//! The list page is only partly known: the documented filters are applied,
//! anything else is ignored (the gateway forwards it as it comes). No
//! `userId` is documented for deals, so none is required.

use serde::Serialize;
use serde_json::{json, Number, Value};

use crate::data::{uuid, CustomFieldOut, Dataset};
use crate::filter::{parse_flag, parse_id_list};
use crate::input::{self, Params};
use crate::lookups::{deal_stage_out, DealStageOut, DEAL_PHASES};
use crate::records::{
    Association, CfValue, CustomFieldValue, Deal, FieldCategory, Stage, Tag, User,
};
use crate::reply::{bad_request, Answer, Reply};
use crate::time::{format_timestamp, now_secs, parse_timestamp_millis};
use crate::validate::parse_custom_fields;

const MSG_BAD_QUERY: &str = "Invalid query parameters";
const MSG_NO_COMPANY: &str = "Company not found or user not authorized";
/// Not documented; in the style of the partnership messages.
const MSG_NO_DEAL: &str = "Deal not found or not accessible";
const MSG_BAD_FIELDS: &str = "Invalid field values or stage UUID not found";

// --- shape ------------------------------------------------------------------

/// A deal in the simulator's item shape (the docs give none).
#[derive(Serialize)]
pub(crate) struct DealOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<usize>,
    id: u64,
    uuid: &'a str,
    created_at: String,
    updated_at: String,
    label: Option<&'a str>,
    deal_value: Option<&'a Number>,
    lead_id: u64,
    stage: Option<DealStageOut<'a>>,
    payment_stage_uuid: Option<&'a str>,
    partnership_id: Option<u64>,
    assigned_users: Vec<&'a User>,
    tags: Vec<&'a Tag>,
    #[serde(rename = "customFields")]
    custom_fields: Vec<CustomFieldOut<'a>>,
}

pub(crate) fn deal_out<'a>(ds: &'a Dataset, d: &'a Deal, total: Option<usize>) -> DealOut<'a> {
    DealOut {
        total,
        id: d.id,
        uuid: &d.uuid,
        created_at: format_timestamp(d.created_at),
        updated_at: format_timestamp(d.updated_at),
        label: d.label.as_deref(),
        deal_value: d.deal_value.as_ref(),
        lead_id: d.lead_id,
        stage: stage(ds, d.stage_id).map(deal_stage_out),
        payment_stage_uuid: d.payment_stage_uuid.as_deref(),
        partnership_id: d.partnership_id,
        assigned_users: ds.users_of(&d.assigned_users),
        tags: ds.tags_of(&d.tags),
        custom_fields: ds.custom_field_values(&d.custom_fields),
    }
}

fn stage(ds: &Dataset, id: u64) -> Option<&Stage> {
    ds.deal_stages.iter().find(|s| s.id == id)
}

// --- list -------------------------------------------------------------------

/// `GET /lead-deals`: `view` (through the lead: received, sent, reseller,
/// campaigns; other values show all), `cursor`, `search` (label, lead
/// company), `assigned`, `unassigned`, `stages` (deal stage ids), `phases`,
/// `tags`; newest first, one page.
pub(crate) fn list(ds: &Dataset, raw: Option<&str>, page_size: usize) -> Answer {
    let p = Params::parse(raw);
    let bad = || Reply::bad(MSG_BAD_QUERY);
    let cursor = p
        .non_empty("cursor")
        .map(|c| parse_timestamp_millis(c).ok_or_else(bad))
        .transpose()?;
    let list = |name: &str| {
        p.get(name)
            .map_or(Ok(None), parse_id_list)
            .map_err(|_| bad())
    };
    let flag = |name: &str| p.get(name).map_or(Ok(false), parse_flag).map_err(|_| bad());
    let stages = list("stages")?;
    let tags = list("tags")?;
    let assigned = flag("assigned")?;
    let unassigned = flag("unassigned")?;
    flag("showPartnersStages")?;
    let phases = p
        .non_empty("phases")
        .map(|s| {
            s.split(',')
                .map(|x| {
                    let x = x.trim();
                    DEAL_PHASES
                        .contains(&x)
                        .then(|| x.to_string())
                        .ok_or_else(bad)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let search = p.non_empty("search").map(str::to_lowercase);
    let view = p.non_empty("view");
    let matches = |d: &Deal| {
        let lead = ds.lead(d.lead_id);
        let view_ok = match view {
            Some("received" | "sent") => {
                lead.is_some_and(|l| l.association_type == "referral" && Some(l.direction) == view)
            }
            Some(v @ ("reseller" | "campaigns")) => lead.is_some_and(|l| l.association_type == v),
            _ => true,
        };
        let phase = stage(ds, d.stage_id).map(|s| s.phase.as_str());
        view_ok
            && search.as_deref().is_none_or(|n| {
                d.label
                    .as_deref()
                    .is_some_and(|l| l.to_lowercase().contains(n))
                    || lead
                        .and_then(|l| l.company_name.as_deref())
                        .is_some_and(|c| c.to_lowercase().contains(n))
            })
            && stages.as_ref().is_none_or(|s| s.contains(&d.stage_id))
            && phases
                .as_ref()
                .is_none_or(|ps| phase.is_some_and(|ph| ps.iter().any(|x| x == ph)))
            && tags
                .as_ref()
                .is_none_or(|t| d.tags.iter().any(|x| t.contains(x)))
            && (!assigned || !d.assigned_users.is_empty())
            && (!unassigned || d.assigned_users.is_empty())
    };
    let matching: Vec<&Deal> = ds.deals.iter().filter(|d| matches(d)).collect();
    let total = matching.len();
    let mut page: Vec<&Deal> = matching
        .into_iter()
        .filter(|d| cursor.is_none_or(|c| d.created_at * 1000 < c))
        .collect();
    page.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let items: Vec<DealOut<'_>> = page
        .into_iter()
        .take(page_size)
        .map(|d| deal_out(ds, d, Some(total)))
        .collect();
    Ok(Reply::ok(&items))
}

/// `GET /companies/{cid}/lead-deals/{id}`.
pub(crate) fn get_one(ds: &Dataset, company_id: Option<u64>, id: u64) -> Answer {
    if company_id != Some(ds.company_id) {
        return Err(Reply::not_found(MSG_NO_COMPANY));
    }
    let deal = ds.deal(id).ok_or_else(|| Reply::not_found(MSG_NO_DEAL))?;
    Ok(Reply::ok(&deal_out(ds, deal, None)))
}

// --- writes -----------------------------------------------------------------

/// The attributes shared by create and update.
struct DealFields {
    label: Option<String>,
    deal_value: Option<Number>,
    stage_id: Option<u64>,
    tags: Option<Vec<u64>>,
    custom_fields: Option<Vec<(u64, CfValue)>>,
}

fn parse_fields(ds: &Dataset, obj: &input::Obj) -> Result<DealFields, Reply> {
    let label = input::opt_str(obj, "label").map_err(bad_request)?;
    let deal_value = match input::opt(obj, "deal_value") {
        None => None,
        Some(Value::Number(n)) if n.as_f64().is_some_and(|v| v >= 0.0) => Some(n.clone()),
        Some(_) => return Err(Reply::bad("deal_value must be a non-negative number")),
    };
    let stage_id = match input::opt_str(obj, "stage_uuid").map_err(bad_request)? {
        None => None,
        Some(u) => Some(
            ds.deal_stages
                .iter()
                .find(|s| s.uuid == u)
                .map(|s| s.id)
                .ok_or_else(|| Reply::bad(MSG_BAD_FIELDS))?,
        ),
    };
    let tags = input::opt_ids(obj, "tags").map_err(bad_request)?;
    if tags
        .iter()
        .flatten()
        .any(|id| ds.tag_for(*id, Association::LeadDeal).is_none())
    {
        return Err(Reply::bad(MSG_BAD_FIELDS));
    }
    let custom_fields = input::opt(obj, "customFields")
        .map(|v| parse_custom_fields(ds, Some(v), FieldCategory::LeadDeal))
        .transpose()
        .map_err(|_| Reply::bad(MSG_BAD_FIELDS))?;
    Ok(DealFields {
        label: label.map(str::to_string),
        deal_value,
        stage_id,
        tags,
        custom_fields,
    })
}

fn values(ds: &mut Dataset, fields: Vec<(u64, CfValue)>) -> Vec<CustomFieldValue> {
    fields
        .into_iter()
        .map(|(field_id, value)| CustomFieldValue {
            field_id,
            value_id: ds.take_value_id(),
            value,
        })
        .collect()
}

/// `POST /lead-deals`: `lead_id`* (an existing lead), `deal_value`,
/// `label`, `stage_uuid` (a lead-deal stage; default the first),
/// `partnership_id`, `tags`, `customFields` → 201 `{id, uuid}`.
pub(crate) fn create(ds: &mut Dataset, body: &[u8]) -> Answer {
    let obj = input::object(body).map_err(bad_request)?;
    let lead_id = input::opt_id(&obj, "lead_id")
        .map_err(bad_request)?
        .ok_or_else(|| Reply::bad("lead_id is required"))?;
    let lead = ds
        .lead(lead_id)
        .ok_or_else(|| Reply::bad("Lead not found"))?;
    let lead_users = lead.assigned_users.clone();
    let lead_partnership = lead.partnership_id;
    let partnership_id = input::opt_id(&obj, "partnership_id").map_err(bad_request)?;
    if partnership_id.is_some_and(|id| ds.partnership(id).is_none()) {
        return Err(Reply::bad(MSG_BAD_FIELDS));
    }
    let fields = parse_fields(ds, &obj)?;
    let stage_id = match fields.stage_id {
        Some(id) => id,
        None => ds
            .deal_stages
            .iter()
            .min_by_key(|s| s.series)
            .map(|s| s.id)
            .ok_or_else(|| Reply::bad(MSG_BAD_FIELDS))?,
    };
    let id = ds
        .deals
        .iter()
        .map(|d| d.id)
        .max()
        .unwrap_or(7999)
        .max(ds.deleted_deal_high)
        + 1;
    let created_at = ds.deals.iter().map(|d| d.created_at).max().unwrap_or(0) + 1;
    let custom_fields = values(ds, fields.custom_fields.unwrap_or_default());
    let deal = Deal {
        id,
        uuid: uuid(&mut ds.extra_rng),
        created_at,
        updated_at: created_at,
        lead_id,
        label: fields.label,
        deal_value: fields.deal_value,
        stage_id,
        payment_stage_uuid: None,
        partnership_id: partnership_id.or(lead_partnership),
        assigned_users: lead_users,
        tags: fields.tags.unwrap_or_default(),
        custom_fields,
    };
    let reply = Reply::created(&json!({ "id": deal.id, "uuid": deal.uuid }));
    ds.deals.insert(0, deal);
    Ok(reply)
}

/// `PATCH /lead-deals/{id}`: `label`, `deal_value`, `stage_uuid`,
/// `payment_stage_uuid`, `tags`, `customFields` → `{id, uuid, updated_at}`.
pub(crate) fn update(ds: &mut Dataset, id: u64, body: &[u8]) -> Answer {
    if ds.deal(id).is_none() {
        return Err(Reply::not_found(MSG_NO_DEAL));
    }
    let obj = input::object(body).map_err(bad_request)?;
    let fields = parse_fields(ds, &obj)?;
    let payment = input::opt_str(&obj, "payment_stage_uuid").map_err(bad_request)?;
    let custom_fields = fields.custom_fields.map(|f| values(ds, f));
    let now = now_secs();
    let deal = ds
        .deals
        .iter_mut()
        .find(|d| d.id == id)
        .ok_or_else(|| Reply::not_found(MSG_NO_DEAL))?;
    if let Some(l) = fields.label {
        deal.label = Some(l);
    }
    if let Some(v) = fields.deal_value {
        deal.deal_value = Some(v);
    }
    if let Some(s) = fields.stage_id {
        deal.stage_id = s;
    }
    if let Some(p) = payment {
        deal.payment_stage_uuid = Some(p.to_string());
    }
    if let Some(t) = fields.tags {
        deal.tags = t;
    }
    if let Some(c) = custom_fields {
        deal.custom_fields = c;
    }
    deal.updated_at = now;
    Ok(Reply::ok(&json!({
        "id": deal.id, "uuid": deal.uuid, "updated_at": format_timestamp(now)
    })))
}
