//! The partnership routes: the list and the create (the original two, with
//! the documented create rules in [`crate::validate`]), and `PATCH` /
//! `DELETE /partnerships/{id}` and `GET /partnerships/{id}/users`.
//!
//! `{id}` is the list item's top-level `id` (the company partnership id):
//! the docs call it `partnershipId` without saying which of the two ids,
//! and the top-level one is what a client has at hand.

use http::StatusCode;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::data::Dataset;
use crate::filter::{list as run_list, parse_list_query, QueryError};
use crate::input;
use crate::records::{Association, CfValue, CustomFieldValue, FieldCategory};
use crate::reply::{Answer, Reply};
use crate::time::{format_timestamp, now_secs};
use crate::validate::{parse_custom_fields, validate_create, CreateError, DomainRules};

const MSG_NO_USER_ID: &str = "userId is required";
const MSG_BAD_QUERY: &str = "Invalid query parameters";
const MSG_NO_COMPANY: &str = "Company not found or user not authorized";
const MSG_BAD_BODY: &str = "Invalid email format or missing required fields";
const MSG_BAD_DOMAIN: &str = "Invalid email domains or attempting to partner with self";
const MSG_EXISTS: &str = "Partnership already exists with this company";
/// Documented messages of PATCH and DELETE.
pub(crate) const MSG_NOT_ACCESSIBLE: &str = "Partnership not found or not accessible";
const MSG_INVALID_UPDATE: &str = "Invalid field values or stage UUID not found";
const MSG_ALREADY_DELETED: &str = "Partnership not found or already deleted";
/// Its status is not documented; 409 is the project's guess.
const MSG_HAS_ACTIVE: &str = "Cannot delete partnership with active leads or deals";

/// `GET /partnerships`.
pub(crate) fn list(ds: &Dataset, raw: Option<&str>, page_size: usize) -> Answer {
    let query = parse_list_query(raw).map_err(|e| match e {
        QueryError::MissingUserId => Reply::bad(MSG_NO_USER_ID),
        QueryError::Invalid => Reply::bad(MSG_BAD_QUERY),
    })?;
    if ds.user(query.user_id).is_none() {
        return Err(Reply::not_found(MSG_NO_COMPANY));
    }
    Ok(Reply::ok(&run_list(ds, &query, page_size)))
}

/// The documented 201 body (a struct keeps the documented key order).
#[derive(Serialize)]
struct Created {
    status: &'static str,
    message: &'static str,
}

/// `POST /partnerships` (and the company variant, whose id the router
/// checked): a JSON content type, then the rules of [`validate_create`].
pub(crate) fn create(
    ds: &mut Dataset,
    headers: &http::HeaderMap,
    body: &[u8],
    rules: &DomainRules<'_>,
) -> Answer {
    if !is_json_content_type(headers) {
        return Err(Reply::bad(MSG_BAD_BODY));
    }
    match validate_create(body, ds, rules) {
        Ok(new) => {
            ds.insert(new);
            Ok(Reply::created(&Created {
                status: "created",
                message: "Partnership created successfully",
            }))
        }
        Err(CreateError::Invalid) => Err(Reply::bad(MSG_BAD_BODY)),
        Err(CreateError::Domain) => Err(Reply::error(StatusCode::NOT_ACCEPTABLE, MSG_BAD_DOMAIN)),
        Err(CreateError::Exists) => Err(Reply::error(StatusCode::CONFLICT, MSG_EXISTS)),
    }
}

/// `application/json`, optionally with parameters or a `+json` suffix type.
fn is_json_content_type(headers: &http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A validated PATCH; `Some(None)` removes a tier or category.
struct Update {
    tier_id: Option<Option<u64>>,
    category_id: Option<Option<u64>>,
    stage_id: Option<u64>,
    assigned_users: Option<Vec<u64>>,
    tags: Option<Vec<u64>>,
    custom_fields: Vec<(u64, CfValue)>,
    fallback_data: Option<Map<String, Value>>,
}

/// A nullable id: absent → `None`, `null` → `Some(None)`.
fn nullable_id(obj: &input::Obj, key: &str) -> Result<Option<Option<u64>>, ()> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => v.as_u64().map(|id| Some(Some(id))).ok_or(()),
    }
}

fn parse_update(ds: &Dataset, body: &[u8]) -> Result<Update, ()> {
    let obj = input::object(body).map_err(|_| ())?;
    let tier_id = nullable_id(&obj, "tierId")?;
    let category_id = nullable_id(&obj, "categoryId")?;
    if tier_id.flatten().is_some_and(|id| ds.tier(id).is_none())
        || category_id
            .flatten()
            .is_some_and(|id| ds.category(id).is_none())
    {
        return Err(());
    }
    let stage_id = match input::opt_str(&obj, "stageUuid").map_err(|_| ())? {
        None => None,
        Some(u) => Some(ds.stages.iter().find(|s| s.uuid == u).ok_or(())?.id),
    };
    let assigned_users = input::opt_ids(&obj, "assignedUsers").map_err(|_| ())?;
    if assigned_users
        .iter()
        .flatten()
        .any(|id| ds.user(*id).is_none())
    {
        return Err(());
    }
    let tags = input::opt_ids(&obj, "tags").map_err(|_| ())?;
    if tags
        .iter()
        .flatten()
        .any(|id| ds.tag_for(*id, Association::Partner).is_none())
    {
        return Err(());
    }
    let custom_fields =
        parse_custom_fields(ds, obj.get("customFields"), FieldCategory::Partner).map_err(|_| ())?;
    let fallback_data = match input::opt(&obj, "fallbackData") {
        None => None,
        Some(Value::Object(f)) => {
            const KEYS: &[&str] = &["name", "logo_square_uuid", "website_url", "country_label"];
            let mut out = Map::new();
            for (k, v) in f {
                if !KEYS.contains(&k.as_str()) || !(v.is_string() || v.is_null()) {
                    return Err(());
                }
                out.insert(k.clone(), v.clone());
            }
            Some(out)
        }
        Some(_) => return Err(()),
    };
    Ok(Update {
        tier_id,
        category_id,
        stage_id,
        assigned_users,
        tags,
        custom_fields,
        fallback_data,
    })
}

/// `PATCH /partnerships/{id}` → `{id, uuid, updated_at}`. Arrays replace;
/// `customFields` set the given fields and keep the others.
pub(crate) fn update(ds: &mut Dataset, id: u64, body: &[u8]) -> Answer {
    if ds.partnership(id).is_none() {
        return Err(Reply::not_found(MSG_NOT_ACCESSIBLE));
    }
    let u = parse_update(ds, body).map_err(|()| Reply::bad(MSG_INVALID_UPDATE))?;
    let values: Vec<CustomFieldValue> = u
        .custom_fields
        .into_iter()
        .map(|(field_id, value)| CustomFieldValue {
            field_id,
            value_id: ds.take_value_id(),
            value,
        })
        .collect();
    let now = now_secs();
    let p = ds
        .partnership_mut(id)
        .ok_or_else(|| Reply::not_found(MSG_NOT_ACCESSIBLE))?;
    if let Some(t) = u.tier_id {
        p.tier_id = t;
    }
    if let Some(c) = u.category_id {
        p.category_id = c;
    }
    if let Some(s) = u.stage_id {
        p.stage_id = s;
    }
    if let Some(a) = u.assigned_users {
        p.assigned_users = a;
    }
    if let Some(t) = u.tags {
        p.tags = t;
    }
    for v in values {
        match p
            .custom_fields
            .iter_mut()
            .find(|x| x.field_id == v.field_id)
        {
            Some(slot) => *slot = v,
            None => p.custom_fields.push(v),
        }
    }
    if let Some(f) = u.fallback_data {
        let mut merged = match p.fallback_data.take() {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        merged.extend(f);
        p.fallback_data = Some(Value::Object(merged));
    }
    p.updated_at = now;
    Ok(Reply::ok(&json!({
        "id": p.id, "uuid": p.uuid, "updated_at": format_timestamp(now)
    })))
}

/// `DELETE /partnerships/{id}` → 204. Refused while a lead or deal through
/// the partnership is still open.
pub(crate) fn delete(ds: &mut Dataset, id: u64) -> Answer {
    if ds.partnership(id).is_none() {
        return Err(Reply::not_found(MSG_ALREADY_DELETED));
    }
    let active = ds
        .leads
        .iter()
        .any(|l| l.partnership_id == Some(id) && l.is_active())
        || ds
            .deals
            .iter()
            .any(|d| d.partnership_id == Some(id) && d.is_active(&ds.deal_stages));
    if active {
        return Err(Reply::error(StatusCode::CONFLICT, MSG_HAS_ACTIVE));
    }
    ds.remove_partnership(id);
    Ok(Reply::no_content())
}

/// `GET /partnerships/{id}/users` item.
#[derive(Serialize)]
struct PartnerUserOut<'a> {
    total: usize,
    id: u64,
    email: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    color: &'static str,
    position: Option<&'a str>,
    phone_number: Option<&'a str>,
    profile_image_id: Option<u64>,
    profile_image_uuid: Option<&'a str>,
    company_id: u64,
    meeting_link: Option<&'a str>,
    company_name: &'a str,
    country_label: Option<&'a str>,
    city_label: Option<&'a str>,
}

/// Offset of partner user ids over contact ids: the partner's users are the
/// partnership's contacts seen from the partner company's side.
const PARTNER_USER_ID_BASE: u64 = 100_000;

/// `GET /partnerships/{id}/users`: the partner company's users.
pub(crate) fn users(ds: &Dataset, id: u64) -> Answer {
    let p = ds
        .partnership(id)
        .ok_or_else(|| Reply::not_found(MSG_NOT_ACCESSIBLE))?;
    let country = p.country_id.and_then(|c| ds.country(c));
    let total = p.contacts.len();
    let colors = ["#3B82F6", "#10B981", "#F59E0B", "#8B5CF6"];
    let items: Vec<PartnerUserOut<'_>> = p
        .contacts
        .iter()
        .enumerate()
        .map(|(i, c)| PartnerUserOut {
            total,
            id: PARTNER_USER_ID_BASE + c.id,
            email: &c.email,
            first_name: &c.first_name,
            last_name: &c.last_name,
            color: colors[i % colors.len()],
            position: c.position.as_deref(),
            phone_number: c.phone_number.as_deref(),
            profile_image_id: None,
            profile_image_uuid: None,
            company_id: p.partner_id,
            meeting_link: None,
            company_name: &p.name,
            country_label: country.map(|c| c.label.as_str()),
            city_label: None,
        })
        .collect();
    Ok(Reply::ok(&items))
}
