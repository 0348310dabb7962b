//! The JSON-valued parameters: `customFields` filters (ordered by id) and the `sort` list
//! (order kept), each re-serialized compactly with a fixed key order.

use crate::validate::problems::{shorten, FieldError};
use serde_json::{Map, Value};
use std::collections::HashSet;

/// A JSON positive integer id (1..=i64::MAX); floats and strings are refused.
fn json_id(v: &Value) -> Option<u64> {
    v.as_i64()
        .filter(|n| *n >= 1)
        .and_then(|n| u64::try_from(n).ok())
}

/// Parses a JSON parameter that must be an array, reporting on `name` otherwise.
fn json_array(
    name: &'static str,
    value: &str,
    example: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Vec<Value>> {
    match serde_json::from_str::<Value>(value) {
        Ok(Value::Array(items)) => Some(items),
        Ok(_) => {
            errors.push(FieldError::new(
                name,
                format!("must be a JSON array such as {example}"),
            ));
            None
        }
        Err(e) => {
            errors.push(FieldError::new(
                name,
                format!(
                    "not valid JSON (line {} column {}); expected an array such as {example}",
                    e.line(),
                    e.column()
                ),
            ));
            None
        }
    }
}

fn unknown_keys(
    obj: &Map<String, Value>,
    path: &str,
    known: &[&str],
    errors: &mut Vec<FieldError>,
) {
    for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        errors.push(FieldError::new(
            path,
            format!(
                "unknown key {:?}; allowed keys are {}",
                shorten(key, 32),
                known.join(", ")
            ),
        ));
    }
}

/// `[{"id": 5, "value": {"number": 100}}, ...]` → filters ordered by id, compact, fixed key order.
/// Filter values are checked for their JSON type only (a `date` filter is any string): what
/// they match is upstream's business, and a stricter reading could refuse valid filters.
pub(super) fn custom_field_filters(value: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    const NAME: &str = "customFields";
    let items = json_array(NAME, value, r#"[{"id":1,"value":{"text":"x"}}]"#, errors)?;
    let before = errors.len();
    let mut filters: Vec<(u64, String)> = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{NAME}[{i}]");
        let Some(obj) = item.as_object() else {
            errors.push(FieldError::new(path, "must be an object with id and value"));
            continue;
        };
        unknown_keys(obj, &path, &["id", "value"], errors);
        let id_path = format!("{path}.id");
        let id = match obj.get("id") {
            None => {
                errors.push(FieldError::new(id_path, "required (a positive integer)"));
                None
            }
            Some(v) => match json_id(v) {
                None => {
                    errors.push(FieldError::new(id_path, "must be a positive integer"));
                    None
                }
                Some(id) if !seen.insert(id) => {
                    errors.push(FieldError::new(
                        id_path,
                        format!("custom field {id} is filtered twice"),
                    ));
                    None
                }
                Some(id) => Some(id),
            },
        };
        let value_path = format!("{path}.value");
        let rendered = match obj.get("value") {
            None => {
                errors.push(FieldError::new(value_path, "required"));
                None
            }
            Some(v) => filter_value(v, &value_path, errors),
        };
        if let (Some(id), Some(rendered)) = (id, rendered) {
            let id_json = id.to_string();
            filters.push((id, format!(r#"{{"id":{id_json},"value":{rendered}}}"#)));
        }
    }
    if errors.len() != before {
        return None;
    }
    filters.sort_by_key(|(id, _)| *id);
    let parts: Vec<String> = filters.into_iter().map(|(_, f)| f).collect();
    Some(format!("[{}]", parts.join(",")))
}

/// `{"<key>": <value of the matching JSON type>}` with exactly one known key, rendered compactly.
fn filter_value(v: &Value, path: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let expected =
        "must be an object with exactly one of text, number, date, boolean, select, multi_select";
    let Some(obj) = v.as_object() else {
        errors.push(FieldError::new(path, expected));
        return None;
    };
    let mut entries = obj.iter();
    let (Some((key, inner)), None) = (entries.next(), entries.next()) else {
        errors.push(FieldError::new(path, expected));
        return None;
    };
    let type_ok = match key.as_str() {
        "text" | "date" => inner.is_string(),
        "number" => inner.is_number(),
        "boolean" => inner.is_boolean(),
        "select" => json_id(inner).is_some(),
        "multi_select" => inner
            .as_array()
            .is_some_and(|a| a.iter().all(|x| json_id(x).is_some())),
        _ => {
            errors.push(FieldError::new(
                path,
                format!("unknown value key {:?}; {expected}", shorten(key, 32)),
            ));
            return None;
        }
    };
    if !type_ok {
        let want = match key.as_str() {
            "text" | "date" => "a string",
            "number" => "a number",
            "boolean" => "a boolean",
            "select" => "a positive integer",
            _ => "an array of positive integers",
        };
        errors.push(FieldError::new(path, format!("`{key}` must be {want}")));
        return None;
    }
    // serde_json's compact output is deterministic for these (strings escaped the same way,
    // numbers in their shortest round-trip form), so equal filters render equally.
    let key_json = serde_json::to_string(key).ok()?;
    let inner_json = serde_json::to_string(inner).ok()?;
    Some(format!("{{{key_json}:{inner_json}}}"))
}

/// `[{"type": "stage", "asc": true}, ...]` → compact, fixed key order, array order kept.
pub(super) fn sort_list(
    value: &str,
    sort_types: &[&str],
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    const NAME: &str = "sort";
    let items = json_array(NAME, value, r#"[{"type":"stage","asc":true}]"#, errors)?;
    let before = errors.len();
    let mut parts = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{NAME}[{i}]");
        let Some(obj) = item.as_object() else {
            errors.push(FieldError::new(path, "must be an object with type and asc"));
            continue;
        };
        unknown_keys(obj, &path, &["type", "asc"], errors);
        let ty = match obj.get("type").and_then(Value::as_str) {
            Some(t) if sort_types.contains(&t) => {
                if seen.insert(t) {
                    Some(t)
                } else {
                    errors.push(FieldError::new(
                        format!("{path}.type"),
                        format!("sorting by {t} twice"),
                    ));
                    None
                }
            }
            _ => {
                errors.push(FieldError::new(
                    format!("{path}.type"),
                    format!("must be one of {}", sort_types.join(", ")),
                ));
                None
            }
        };
        let asc = obj.get("asc").and_then(Value::as_bool);
        if asc.is_none() {
            errors.push(FieldError::new(format!("{path}.asc"), "must be a boolean"));
        }
        if let (Some(ty), Some(asc)) = (ty, asc) {
            parts.push(format!(r#"{{"type":"{ty}","asc":{asc}}}"#));
        }
    }
    if errors.len() != before {
        return None;
    }
    Some(format!("[{}]", parts.join(",")))
}
