//! Leads and their notes: `GET/POST /leads`, `PATCH/DELETE
//! /leads/{id}`, `GET /companies/{cid}/leads/{id}`, `GET/POST
//! /leads/{id}/notes`, `PATCH /leads/{id}/notes/{noteId}`.
//!
//! The docs list the parameters but not the item shape; the simulator's
//! item ([`LeadOut`]) is the project's guess in the style of the
//! partnership item (`total`, nested users and tags, `customFields`).

use serde::Serialize;
use serde_json::{json, Value};

use crate::data::{uuid, CustomFieldOut, Dataset};
use crate::filter::{
    parse_custom_fields_filter, parse_flag, parse_id_list, values_match, CfFilter,
};
use crate::input::{self, Params};
use crate::records::{
    Association, CfValue, CustomFieldValue, FieldCategory, Lead, Note, Tag, User, LEAD_SOURCES,
    LEAD_STATUSES,
};
use crate::reply::{bad_request, Answer, Reply};
use crate::time::{days_from_civil, format_timestamp, now_secs, parse_timestamp_millis};
use crate::validate::parse_custom_fields;

const ASSOCIATION_TYPES: &[&str] = &["referral", "reseller", "campaigns"];
const MSG_BAD_QUERY: &str = "Invalid query parameters";
const MSG_NO_USER_ID: &str = "userId is required";
const MSG_NO_COMPANY: &str = "Company not found or user not authorized";
/// Not documented; in the style of the partnership messages.
pub(crate) const MSG_NO_LEAD: &str = "Lead not found or not accessible";
const MSG_NO_NOTE: &str = "Note not found";
const MSG_BAD_FIELDS: &str = "Invalid field values";

// --- shape ------------------------------------------------------------------

/// A lead in the simulator's item shape.
#[derive(Serialize)]
pub(crate) struct LeadOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<usize>,
    id: u64,
    uuid: &'a str,
    created_at: String,
    updated_at: String,
    company_name: Option<&'a str>,
    email: Option<&'a str>,
    phone_number: Option<&'a str>,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    status: &'a str,
    association_type: &'a str,
    direction: &'a str,
    source: &'a str,
    partnership_id: Option<u64>,
    partnership_lead_id: Option<u64>,
    assigned_users: Vec<&'a User>,
    tags: Vec<&'a Tag>,
    #[serde(rename = "customFields")]
    custom_fields: Vec<CustomFieldOut<'a>>,
}

pub(crate) fn lead_out<'a>(ds: &'a Dataset, l: &'a Lead, total: Option<usize>) -> LeadOut<'a> {
    LeadOut {
        total,
        id: l.id,
        uuid: &l.uuid,
        created_at: format_timestamp(l.created_at),
        updated_at: format_timestamp(l.updated_at),
        company_name: l.company_name.as_deref(),
        email: l.email.as_deref(),
        phone_number: l.phone_number.as_deref(),
        first_name: l.first_name.as_deref(),
        last_name: l.last_name.as_deref(),
        status: &l.status,
        association_type: &l.association_type,
        direction: l.direction,
        source: &l.source,
        partnership_id: l.partnership_id,
        partnership_lead_id: l.partnership_lead_id,
        assigned_users: ds.users_of(&l.assigned_users),
        tags: ds.tags_of(&l.tags),
        custom_fields: ds.custom_field_values(&l.custom_fields),
    }
}

#[derive(Serialize)]
struct NoteOut<'a> {
    id: u64,
    lead_id: u64,
    document: &'a Value,
    attachments: &'a Value,
    mentions: &'a Value,
    created_at: String,
    updated_at: String,
}

// --- list -------------------------------------------------------------------

/// The `view` of a lead list.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LeadView {
    All,
    Received,
    Sent,
    Reseller,
    Campaigns,
}

struct LeadQuery {
    user_id: u64,
    cursor: Option<i64>,
    search: Option<String>,
    view: LeadView,
    assigned: bool,
    unassigned: bool,
    statuses: Option<Vec<String>>,
    tags: Option<Vec<u64>>,
    users: Option<Vec<u64>>,
    custom_fields: Vec<CfFilter>,
    /// `Some(asc)` when sorted by status.
    sort_status: Option<bool>,
}

fn parse_query(raw: Option<&str>) -> Result<LeadQuery, Reply> {
    let p = Params::parse(raw);
    let bad = || Reply::bad(MSG_BAD_QUERY);
    // The same rule as the partnership list: a decimal id, then it must be a
    // company user (checked by the caller).
    let user_id = p
        .get("userId")
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Reply::bad(MSG_NO_USER_ID))?;
    let view = match p.non_empty("view") {
        None => LeadView::All,
        Some("received") => LeadView::Received,
        Some("sent") => LeadView::Sent,
        Some("reseller") => LeadView::Reseller,
        Some("campaigns") => LeadView::Campaigns,
        Some(_) => return Err(bad()),
    };
    let cursor = p
        .non_empty("cursor")
        .map(|c| parse_timestamp_millis(c).ok_or_else(bad))
        .transpose()?;
    let statuses = p
        .non_empty("status")
        .map(|s| {
            s.split(',')
                .map(|x| {
                    let x = x.trim();
                    LEAD_STATUSES
                        .contains(&x)
                        .then(|| x.to_string())
                        .ok_or_else(bad)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let list = |name: &str| {
        p.get(name)
            .map_or(Ok(None), parse_id_list)
            .map_err(|_| bad())
    };
    let flag = |name: &str| p.get(name).map_or(Ok(false), parse_flag).map_err(|_| bad());
    let sort_status = match p.non_empty("sort") {
        None => None,
        Some(s) => {
            let v: Value = serde_json::from_str(s).map_err(|_| bad())?;
            let keys = v.as_array().ok_or_else(bad)?;
            let mut asc = None;
            for k in keys {
                if k.get("type").and_then(Value::as_str) != Some("status") {
                    return Err(bad());
                }
                asc = Some(match k.get("asc") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(bad()),
                });
            }
            asc
        }
    };
    Ok(LeadQuery {
        user_id,
        cursor,
        search: p.non_empty("search").map(str::to_lowercase),
        view,
        assigned: flag("assigned")?,
        unassigned: flag("unassigned")?,
        statuses,
        tags: list("tags")?,
        users: list("users")?,
        custom_fields: p
            .get("customFields")
            .map_or(Ok(Vec::new()), parse_custom_fields_filter)
            .map_err(|_| bad())?,
        sort_status,
    })
}

fn lead_matches(q: &LeadQuery, l: &Lead) -> bool {
    let view_ok = match q.view {
        LeadView::All => true,
        LeadView::Received => l.association_type == "referral" && l.direction == "received",
        LeadView::Sent => l.association_type == "referral" && l.direction == "sent",
        LeadView::Reseller => l.association_type == "reseller",
        LeadView::Campaigns => l.association_type == "campaigns",
    };
    let hit = |s: &Option<String>, needle: &str| {
        s.as_deref()
            .is_some_and(|s| s.to_lowercase().contains(needle))
    };
    view_ok
        && q.search.as_deref().is_none_or(|n| {
            hit(&l.company_name, n)
                || hit(&l.email, n)
                || hit(&l.first_name, n)
                || hit(&l.last_name, n)
        })
        && q.statuses.as_ref().is_none_or(|s| s.contains(&l.status))
        && q.tags
            .as_ref()
            .is_none_or(|t| l.tags.iter().any(|x| t.contains(x)))
        && q.users
            .as_ref()
            .is_none_or(|u| l.assigned_users.iter().any(|x| u.contains(x)))
        && (!q.assigned || !l.assigned_users.is_empty())
        && (!q.unassigned || l.assigned_users.is_empty())
        && q.custom_fields
            .iter()
            .all(|f| values_match(&l.custom_fields, f))
}

fn status_rank(s: &str) -> usize {
    LEAD_STATUSES
        .iter()
        .position(|x| *x == s)
        .unwrap_or(usize::MAX)
}

/// `GET /leads`: `userId` required (a company user, as for partnership
/// lists), filters, newest first, one page of `page_size`.
pub(crate) fn list(ds: &Dataset, raw: Option<&str>, page_size: usize) -> Answer {
    let q = parse_query(raw)?;
    if ds.user(q.user_id).is_none() {
        return Err(Reply::not_found(MSG_NO_COMPANY));
    }
    let matching: Vec<&Lead> = ds.leads.iter().filter(|l| lead_matches(&q, l)).collect();
    let total = matching.len();
    let mut page: Vec<&Lead> = matching
        .into_iter()
        .filter(|l| q.cursor.is_none_or(|c| l.created_at * 1000 < c))
        .collect();
    page.sort_by(|a, b| {
        let by_status = match q.sort_status {
            Some(true) => status_rank(&a.status).cmp(&status_rank(&b.status)),
            Some(false) => status_rank(&b.status).cmp(&status_rank(&a.status)),
            None => std::cmp::Ordering::Equal,
        };
        by_status
            .then(b.created_at.cmp(&a.created_at))
            .then(a.id.cmp(&b.id))
    });
    let items: Vec<LeadOut<'_>> = page
        .into_iter()
        .take(page_size)
        .map(|l| lead_out(ds, l, Some(total)))
        .collect();
    Ok(Reply::ok(&items))
}

/// `GET /companies/{cid}/leads/{id}`.
pub(crate) fn get_one(ds: &Dataset, company_id: Option<u64>, id: u64) -> Answer {
    if company_id != Some(ds.company_id) {
        return Err(Reply::not_found(MSG_NO_COMPANY));
    }
    let lead = ds.lead(id).ok_or_else(|| Reply::not_found(MSG_NO_LEAD))?;
    Ok(Reply::ok(&lead_out(ds, lead, None)))
}

// --- writes -----------------------------------------------------------------

/// The optional lead attributes shared by create and update.
struct LeadFields {
    company_name: Option<String>,
    email: Option<String>,
    phone_number: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    assigned_users: Option<Vec<u64>>,
    tags: Option<Vec<u64>>,
    custom_fields: Option<Vec<(u64, CfValue)>>,
}

fn parse_fields(ds: &Dataset, obj: &input::Obj) -> Result<LeadFields, Reply> {
    let s = |key: &str| {
        input::opt_str(obj, key)
            .map(|v| v.map(str::to_string))
            .map_err(bad_request)
    };
    let email = s("email")?;
    if email
        .as_deref()
        .is_some_and(|e| crate::validate::email_domain(e).is_none())
    {
        return Err(Reply::bad("email is not a valid address"));
    }
    let assigned_users = input::opt_ids(obj, "assignedUsers").map_err(bad_request)?;
    if assigned_users
        .iter()
        .flatten()
        .any(|id| ds.user(*id).is_none())
    {
        return Err(Reply::bad(MSG_BAD_FIELDS));
    }
    let tags = input::opt_ids(obj, "tags").map_err(bad_request)?;
    if tags
        .iter()
        .flatten()
        .any(|id| ds.tag_for(*id, Association::Lead).is_none())
    {
        return Err(Reply::bad(MSG_BAD_FIELDS));
    }
    let custom_fields = input::opt(obj, "customFields")
        .map(|v| parse_custom_fields(ds, Some(v), FieldCategory::Lead))
        .transpose()
        .map_err(|_| Reply::bad(MSG_BAD_FIELDS))?;
    Ok(LeadFields {
        company_name: s("company_name")?,
        email,
        phone_number: s("phone_number")?,
        first_name: s("first_name")?,
        last_name: s("last_name")?,
        assigned_users,
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

/// `POST /leads`: `associationType`* (referral, reseller, campaigns),
/// `source` among the documented values, references that exist; a
/// `partnershipLead` object may name its partnership (`partnershipId`).
/// → 201 `{id, uuid, partnershipLeadId}`.
pub(crate) fn create(ds: &mut Dataset, body: &[u8]) -> Answer {
    let obj = input::object(body).map_err(bad_request)?;
    let association_type =
        input::req_enum(&obj, "associationType", ASSOCIATION_TYPES).map_err(bad_request)?;
    let source = input::opt_enum(&obj, "source", LEAD_SOURCES).map_err(bad_request)?;
    input::opt_id(&obj, "companyCampaignId").map_err(bad_request)?;
    let fields = parse_fields(ds, &obj)?;
    let partnership_id = match input::opt(&obj, "partnershipLead") {
        None => None,
        Some(Value::Object(pl)) => {
            let id = input::opt_id(pl, "partnershipId").map_err(bad_request)?;
            if id.is_some_and(|id| ds.partnership(id).is_none()) {
                return Err(Reply::bad(MSG_BAD_FIELDS));
            }
            Some(id)
        }
        Some(_) => return Err(Reply::bad("partnershipLead must be an object")),
    };
    let id = ds
        .leads
        .iter()
        .map(|l| l.id)
        .max()
        .unwrap_or(6999)
        .max(ds.deleted_lead_high)
        + 1;
    let created_at = ds
        .leads
        .iter()
        .map(|l| l.created_at)
        .max()
        .map_or(days_from_civil(2025, 6, 1) * 86_400, |t| t + 1);
    let partnership_lead_id = partnership_id.map(|_| {
        ds.leads
            .iter()
            .filter_map(|l| l.partnership_lead_id)
            .max()
            .unwrap_or(8999)
            + 1
    });
    let custom_fields = values(ds, fields.custom_fields.unwrap_or_default());
    let lead = Lead {
        id,
        uuid: uuid(&mut ds.extra_rng),
        created_at,
        updated_at: created_at,
        company_name: fields.company_name,
        email: fields.email,
        phone_number: fields.phone_number,
        first_name: fields.first_name,
        last_name: fields.last_name,
        status: "new".into(),
        association_type: association_type.to_string(),
        direction: "sent",
        source: source
            .unwrap_or(if partnership_id.is_some() {
                "partnership"
            } else {
                "manual"
            })
            .to_string(),
        partnership_id: partnership_id.flatten(),
        partnership_lead_id,
        assigned_users: fields.assigned_users.unwrap_or_default(),
        tags: fields.tags.unwrap_or_default(),
        custom_fields,
    };
    let reply = Reply::created(&json!({
        "id": lead.id, "uuid": lead.uuid, "partnershipLeadId": lead.partnership_lead_id
    }));
    ds.leads.insert(0, lead);
    Ok(reply)
}

/// `PATCH /leads/{id}` → `{id, uuid, updated_at}`; `status` among the
/// documented values; arrays replace.
pub(crate) fn update(ds: &mut Dataset, id: u64, body: &[u8]) -> Answer {
    if ds.lead(id).is_none() {
        return Err(Reply::not_found(MSG_NO_LEAD));
    }
    let obj = input::object(body).map_err(bad_request)?;
    let status = input::opt_enum(&obj, "status", LEAD_STATUSES).map_err(bad_request)?;
    let fields = parse_fields(ds, &obj)?;
    let custom_fields = fields.custom_fields.map(|f| values(ds, f));
    let now = now_secs();
    let lead = ds
        .leads
        .iter_mut()
        .find(|l| l.id == id)
        .ok_or_else(|| Reply::not_found(MSG_NO_LEAD))?;
    let set = |slot: &mut Option<String>, v: Option<String>| {
        if v.is_some() {
            *slot = v;
        }
    };
    set(&mut lead.company_name, fields.company_name);
    set(&mut lead.email, fields.email);
    set(&mut lead.phone_number, fields.phone_number);
    set(&mut lead.first_name, fields.first_name);
    set(&mut lead.last_name, fields.last_name);
    if let Some(s) = status {
        lead.status = s.to_string();
    }
    if let Some(u) = fields.assigned_users {
        lead.assigned_users = u;
    }
    if let Some(t) = fields.tags {
        lead.tags = t;
    }
    if let Some(c) = custom_fields {
        lead.custom_fields = c;
    }
    lead.updated_at = now;
    Ok(Reply::ok(&json!({
        "id": lead.id, "uuid": lead.uuid, "updated_at": format_timestamp(now)
    })))
}

/// `DELETE /leads/{id}` → 204; its notes go with it, and its deals.
pub(crate) fn delete(ds: &mut Dataset, id: u64) -> Answer {
    let i = ds
        .leads
        .iter()
        .position(|l| l.id == id)
        .ok_or_else(|| Reply::not_found("Lead not found or already deleted"))?;
    ds.leads.remove(i);
    ds.deleted_lead_high = ds.deleted_lead_high.max(id);
    ds.notes.retain(|n| n.lead_id != id);
    ds.deals.retain(|d| d.lead_id != id);
    Ok(Reply::no_content())
}

/// `GET /leads/{id}/notes`, oldest first.
pub(crate) fn notes(ds: &Dataset, lead_id: u64) -> Answer {
    if ds.lead(lead_id).is_none() {
        return Err(Reply::not_found(MSG_NO_LEAD));
    }
    let items: Vec<NoteOut<'_>> = ds
        .notes
        .iter()
        .filter(|n| n.lead_id == lead_id)
        .map(|n| NoteOut {
            id: n.id,
            lead_id: n.lead_id,
            document: &n.document,
            attachments: &n.attachments,
            mentions: &n.mentions,
            created_at: format_timestamp(n.created_at),
            updated_at: format_timestamp(n.updated_at),
        })
        .collect();
    Ok(Reply::ok(&items))
}

/// A ProseMirror document: an object with a string `type` (`doc` at the top).
fn document(obj: &input::Obj) -> Result<Option<Value>, Reply> {
    match input::opt(obj, "document") {
        None => Ok(None),
        Some(d @ Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("doc") => {
            Ok(Some(d.clone()))
        }
        Some(_) => Err(Reply::bad(
            "document must be a ProseMirror JSON document ({\"type\": \"doc\", ...})",
        )),
    }
}

fn mentions(ds: &Dataset, obj: &input::Obj) -> Result<Value, Reply> {
    let ids = input::opt_ids(obj, "mentions").map_err(bad_request)?;
    if ids.iter().flatten().any(|id| ds.user(*id).is_none()) {
        return Err(Reply::bad(MSG_BAD_FIELDS));
    }
    Ok(json!(ids.unwrap_or_default()))
}

/// `POST /leads/{id}/notes`: `document`* → 201 `{id}`.
pub(crate) fn create_note(ds: &mut Dataset, lead_id: u64, body: &[u8]) -> Answer {
    if ds.lead(lead_id).is_none() {
        return Err(Reply::not_found(MSG_NO_LEAD));
    }
    let obj = input::object(body).map_err(bad_request)?;
    let document = document(&obj)?.ok_or_else(|| Reply::bad("document is required"))?;
    let attachments = match input::opt(&obj, "attachments") {
        None => json!([]),
        Some(a @ Value::Array(_)) => a.clone(),
        Some(_) => return Err(Reply::bad("attachments must be an array")),
    };
    let mentions = mentions(ds, &obj)?;
    let id = ds.notes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
    let now = now_secs();
    ds.notes.push(Note {
        id,
        lead_id,
        document,
        attachments,
        mentions,
        created_at: now,
        updated_at: now,
    });
    Ok(Reply::created(&json!({ "id": id })))
}

/// `PATCH /leads/{id}/notes/{noteId}` → `{id, updated_at}`.
pub(crate) fn update_note(ds: &mut Dataset, lead_id: u64, note_id: u64, body: &[u8]) -> Answer {
    if ds.lead(lead_id).is_none() {
        return Err(Reply::not_found(MSG_NO_LEAD));
    }
    if !ds
        .notes
        .iter()
        .any(|n| n.id == note_id && n.lead_id == lead_id)
    {
        return Err(Reply::not_found(MSG_NO_NOTE));
    }
    let obj = input::object(body).map_err(bad_request)?;
    let document = document(&obj)?;
    let mentions = input::opt(&obj, "mentions")
        .is_some()
        .then(|| mentions(ds, &obj))
        .transpose()?;
    let now = now_secs();
    let note = ds
        .notes
        .iter_mut()
        .find(|n| n.id == note_id)
        .ok_or_else(|| Reply::not_found(MSG_NO_NOTE))?;
    if let Some(d) = document {
        note.document = d;
    }
    if let Some(m) = mentions {
        note.mentions = m;
    }
    note.updated_at = now;
    Ok(Reply::ok(
        &json!({ "id": note_id, "updated_at": format_timestamp(now) }),
    ))
}
