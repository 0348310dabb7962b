//! Partner contacts: `GET/POST /contacts`, `PATCH /contacts/{id}`.
//!
//! Contacts live on their partnership (they are also what the partnership
//! list searches and what the one-partnership-per-domain rule reads). The
//! docs state no business-e-mail rule for contacts, so any valid address is
//! taken. Item and create shapes are the project's reading.

use serde::Serialize;
use serde_json::json;

use crate::data::Dataset;
use crate::input::{self, Params};
use crate::records::{Contact, Tag};
use crate::reply::{bad_request, Answer, Reply};
use crate::time::{format_timestamp, now_secs};
use crate::validate::email_domain;

const MSG_NO_CONTACT: &str = "Contact not found";

#[derive(Serialize)]
struct ContactOut<'a> {
    id: u64,
    partnership_id: u64,
    first_name: &'a str,
    last_name: &'a str,
    email: &'a str,
    position: Option<&'a str>,
    phone_number: Option<&'a str>,
    tags: Vec<&'a Tag>,
    created_at: String,
    updated_at: String,
}

/// `GET /contacts`, optionally `partnership_id`; ordered by id.
pub(crate) fn list(ds: &Dataset, raw: Option<&str>) -> Answer {
    let params = Params::parse(raw);
    let wanted = params
        .non_empty("partnership_id")
        .map(|v| {
            v.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| v.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| Reply::bad("Invalid query parameters"))
        })
        .transpose()?;
    let mut items: Vec<ContactOut<'_>> = ds
        .partnerships
        .iter()
        .filter(|p| wanted.is_none_or(|w| p.id == w))
        .flat_map(|p| {
            p.contacts.iter().map(move |c| ContactOut {
                id: c.id,
                partnership_id: p.id,
                first_name: &c.first_name,
                last_name: &c.last_name,
                email: &c.email,
                position: c.position.as_deref(),
                phone_number: c.phone_number.as_deref(),
                tags: ds.tags_of(&c.tags),
                created_at: format_timestamp(c.created_at),
                updated_at: format_timestamp(c.updated_at),
            })
        })
        .collect();
    items.sort_by_key(|c| c.id);
    Ok(Reply::ok(&items))
}

/// Optional contact attributes shared by create and update.
struct Fields {
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    position: Option<String>,
    phone_number: Option<String>,
    tags: Option<Vec<u64>>,
}

fn parse_fields(ds: &Dataset, obj: &input::Obj) -> Result<Fields, Reply> {
    let s = |key: &str| {
        input::opt_str(obj, key)
            .map(|v| v.map(str::to_string))
            .map_err(bad_request)
    };
    let email = s("email")?;
    if email.as_deref().is_some_and(|e| email_domain(e).is_none()) {
        return Err(Reply::bad("email is not a valid address"));
    }
    let tags = input::opt_ids(obj, "tags").map_err(bad_request)?;
    if tags.iter().flatten().any(|id| ds.tag(*id).is_none()) {
        return Err(Reply::bad("Invalid field values"));
    }
    Ok(Fields {
        first_name: s("first_name")?,
        last_name: s("last_name")?,
        email,
        position: s("position")?,
        phone_number: s("phone_number")?,
        tags,
    })
}

/// `POST /contacts`: `partnership_id`* (or `partnershipId`), `email`*,
/// names, position, phone, tags → 201 `{id}`.
pub(crate) fn create(ds: &mut Dataset, body: &[u8]) -> Answer {
    let obj = input::object(body).map_err(bad_request)?;
    let partnership_id = match input::opt_id(&obj, "partnership_id").map_err(bad_request)? {
        Some(id) => Some(id),
        None => input::opt_id(&obj, "partnershipId").map_err(bad_request)?,
    }
    .ok_or_else(|| Reply::bad("partnership_id is required"))?;
    let f = parse_fields(ds, &obj)?;
    let email = f.email.ok_or_else(|| Reply::bad("email is required"))?;
    if ds.partnership(partnership_id).is_none() {
        return Err(Reply::not_found(crate::partnerships::MSG_NOT_ACCESSIBLE));
    }
    let id = ds.take_contact_id();
    let now = now_secs();
    let contact = Contact {
        id,
        first_name: f
            .first_name
            .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string()),
        last_name: f.last_name.unwrap_or_default(),
        email,
        position: f.position,
        phone_number: f.phone_number,
        tags: f.tags.unwrap_or_default(),
        created_at: now,
        updated_at: now,
    };
    if let Some(p) = ds.partnership_mut(partnership_id) {
        p.contacts.push(contact);
    }
    Ok(Reply::created(&json!({ "id": id })))
}

/// `PATCH /contacts/{id}` → `{id, updated_at}`; `tags` replace.
pub(crate) fn update(ds: &mut Dataset, id: u64, body: &[u8]) -> Answer {
    let exists = ds
        .partnerships
        .iter()
        .any(|p| p.contacts.iter().any(|c| c.id == id));
    if !exists {
        return Err(Reply::not_found(MSG_NO_CONTACT));
    }
    let obj = input::object(body).map_err(bad_request)?;
    let f = parse_fields(ds, &obj)?;
    let now = now_secs();
    let contact = ds
        .partnerships
        .iter_mut()
        .flat_map(|p| p.contacts.iter_mut())
        .find(|c| c.id == id)
        .ok_or_else(|| Reply::not_found(MSG_NO_CONTACT))?;
    if let Some(v) = f.first_name {
        contact.first_name = v;
    }
    if let Some(v) = f.last_name {
        contact.last_name = v;
    }
    if let Some(v) = f.email {
        contact.email = v;
    }
    if f.position.is_some() {
        contact.position = f.position;
    }
    if f.phone_number.is_some() {
        contact.phone_number = f.phone_number;
    }
    if let Some(t) = f.tags {
        contact.tags = t;
    }
    contact.updated_at = now;
    Ok(Reply::ok(
        &json!({ "id": id, "updated_at": format_timestamp(now) }),
    ))
}
