//! Reading request input: query parameters and JSON write bodies, with the
//! messages the simulator answers 400 with.
//!
//! Bodies follow the create endpoint's reading: JSON `null` counts as absent
//! (JavaScript clients send `null` for unset values), unknown keys are
//! ignored, and the first wrong field decides the message.

use serde_json::{Map, Value};

use crate::records::PartnerType;

/// A JSON object body.
pub(crate) type Obj = Map<String, Value>;

/// A 400 message.
pub(crate) type Bad = String;

/// Query parameters in order, decoded. Repeated parameters: the first wins,
/// as for the partnership list.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        Params(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The parameter unless absent or empty.
    pub(crate) fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

/// The body as a JSON object.
pub(crate) fn object(body: &[u8]) -> Result<Obj, Bad> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err("Request body must be a JSON object".into()),
        Err(_) => Err("Request body is not valid JSON".into()),
    }
}

/// The body as an array of objects: either bare, or under `key` of an
/// object. Bulk PATCH documents `{"<key>": [...]}` while its curl example
/// sends the bare array, so both are taken.
pub(crate) fn bulk_items(body: &[u8], key: &str) -> Result<Vec<Obj>, Bad> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| Bad::from("Request body is not valid JSON"))?;
    let arr = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove(key) {
            Some(Value::Array(a)) => a,
            _ => return Err(format!("{key} is required and must be an array")),
        },
        _ => return Err(format!("{key} is required and must be an array")),
    };
    if arr.is_empty() {
        return Err(format!("{key} must not be empty"));
    }
    arr.into_iter()
        .map(|item| match item {
            Value::Object(o) => Ok(o),
            _ => Err(format!("each item of {key} must be an object")),
        })
        .collect()
}

/// A present, non-null value.
pub(crate) fn opt<'a>(obj: &'a Obj, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// A required non-empty (after trimming) string.
pub(crate) fn req_str<'a>(obj: &'a Obj, key: &str) -> Result<&'a str, Bad> {
    opt(obj, key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{key} is required"))
}

/// An optional string.
pub(crate) fn opt_str<'a>(obj: &'a Obj, key: &str) -> Result<Option<&'a str>, Bad> {
    opt(obj, key)
        .map(|v| v.as_str().ok_or_else(|| format!("{key} must be a string")))
        .transpose()
}

/// An optional non-empty string (a present empty one is refused).
pub(crate) fn opt_label<'a>(obj: &'a Obj, key: &str) -> Result<Option<&'a str>, Bad> {
    match opt_str(obj, key)? {
        Some(s) if s.trim().is_empty() => Err(format!("{key} must not be empty")),
        other => Ok(other.map(str::trim)),
    }
}

/// An optional boolean.
pub(crate) fn opt_bool(obj: &Obj, key: &str) -> Result<Option<bool>, Bad> {
    opt(obj, key)
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| format!("{key} must be a boolean"))
        })
        .transpose()
}

/// An optional non-negative integer id.
pub(crate) fn opt_id(obj: &Obj, key: &str) -> Result<Option<u64>, Bad> {
    opt(obj, key)
        .map(|v| {
            v.as_u64()
                .ok_or_else(|| format!("{key} must be an integer id"))
        })
        .transpose()
}

/// An optional array of integer ids.
pub(crate) fn opt_ids(obj: &Obj, key: &str) -> Result<Option<Vec<u64>>, Bad> {
    opt(obj, key)
        .map(|v| {
            v.as_array()
                .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<_>>>())
                .ok_or_else(|| format!("{key} must be an array of integer ids"))
        })
        .transpose()
}

/// An optional string that must be one of `allowed`.
pub(crate) fn opt_enum<'a>(
    obj: &'a Obj,
    key: &str,
    allowed: &[&str],
) -> Result<Option<&'a str>, Bad> {
    match opt_str(obj, key)? {
        None => Ok(None),
        Some(s) if allowed.contains(&s) => Ok(Some(s)),
        Some(_) => Err(format!("{key} must be one of {}", allowed.join(", "))),
    }
}

/// A required string among `allowed`.
pub(crate) fn req_enum<'a>(obj: &'a Obj, key: &str, allowed: &[&str]) -> Result<&'a str, Bad> {
    opt_enum(obj, key, allowed)?
        .ok_or_else(|| format!("{key} is required (one of {})", allowed.join(", ")))
}

/// An optional `partner_type`.
pub(crate) fn opt_partner_type(obj: &Obj, key: &str) -> Result<Option<PartnerType>, Bad> {
    Ok(opt_enum(obj, key, &["referral", "reseller"])?.and_then(PartnerType::parse))
}

/// An optional `#RGB` / `#RRGGBB` colour, or `default`.
pub(crate) fn color(obj: &Obj, key: &str, default: &str) -> Result<String, Bad> {
    match opt_str(obj, key)? {
        None => Ok(default.to_string()),
        Some(c)
            if (c.len() == 7 || c.len() == 4)
                && c.starts_with('#')
                && c[1..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(c.to_ascii_uppercase())
        }
        Some(_) => Err(format!("{key} must be a hex colour such as #6B7280")),
    }
}
