//! Custom field values (`customFields`), as a create and the other writes send them: each
//! type takes exactly one value key, and the value is checked by that type's rule.

use super::fields::{check_id_array, check_string, positive_id, required, unknown_keys};
use super::formats::is_iso_date_or_datetime;
use super::problems::{join, Errors};
use super::rules::BodyRules;
use serde_json::Value;
use std::collections::HashMap;

const CUSTOM_FIELD_KEYS: &[&str] = &["customFieldId", "type", "value"];

/// The custom field types and the single value key each one takes.
fn value_key(field_type: &str) -> Option<&'static str> {
    Some(match field_type {
        "text" | "textarea" => "text",
        "number" => "number",
        "date" => "date",
        "boolean" => "boolean",
        "select" => "select",
        "multi_select" => "multi_select",
        _ => return None,
    })
}

pub(crate) fn check_custom_fields(v: &Value, rules: &BodyRules, e: &mut Errors) {
    let Some(items) = v.as_array() else {
        e.push("customFields", "must be an array of custom field objects");
        return;
    };
    if items.len() > rules.max_array_len {
        e.push(
            "customFields",
            format!("must have at most {} items", rules.max_array_len),
        );
    }
    // customFieldId → index of its first occurrence, for the duplicate message.
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (i, item) in items.iter().take(rules.max_array_len).enumerate() {
        let path = format!("customFields[{i}]");
        let Some(obj) = item.as_object() else {
            e.push(
                &path,
                "must be an object with customFieldId, type and value",
            );
            continue;
        };
        let id_path = join(&path, "customFieldId");
        if let Some(v) = required(obj, "customFieldId", &id_path, "a positive integer", e) {
            match positive_id(v) {
                None => e.push(&id_path, "must be a positive integer"),
                Some(id) => {
                    if let Some(first) = seen.get(&id) {
                        e.push(
                            &id_path,
                            format!("duplicate custom field {id} (also at customFields[{first}])"),
                        );
                    } else {
                        seen.insert(id, i);
                    }
                }
            }
        }
        let type_path = join(&path, "type");
        let key = match required(obj, "type", &type_path, "a custom field type", e) {
            None => None,
            Some(t) => {
                let key = t.as_str().and_then(value_key);
                if key.is_none() {
                    e.push(
                        &type_path,
                        "must be one of text, textarea, number, date, boolean, select, multi_select",
                    );
                }
                key
            }
        };
        let value_path = join(&path, "value");
        if let Some(v) = required(obj, "value", &value_path, "an object", e) {
            check_custom_value(v, key, &value_path, rules, e);
        }
        if !rules.allow_unknown_fields {
            unknown_keys(obj, &path, CUSTOM_FIELD_KEYS, e);
        }
    }
}

/// `value` must be an object with exactly the one key its type takes. When the type itself is
/// invalid only the object shape is checked: there is nothing to match the key against.
fn check_custom_value(v: &Value, key: Option<&str>, path: &str, rules: &BodyRules, e: &mut Errors) {
    let Some(obj) = v.as_object() else {
        e.push(path, "must be an object such as {\"text\": \"...\"}");
        return;
    };
    let Some(key) = key else {
        return;
    };
    for other in obj.keys().filter(|k| k.as_str() != key) {
        e.push(
            join(path, other),
            format!("not allowed here; this field type takes only `{key}`"),
        );
    }
    let Some(inner) = obj.get(key) else {
        e.push(path, format!("must contain `{key}`"));
        return;
    };
    let inner_path = join(path, key);
    match key {
        "text" => check_string(inner, &inner_path, rules.max_string_len, e),
        "number" => {
            if !inner.is_number() {
                e.push(inner_path, "must be a number");
            }
        }
        "date" => {
            if !inner.as_str().is_some_and(is_iso_date_or_datetime) {
                e.push(
                    inner_path,
                    "must be an ISO 8601 date (YYYY-MM-DD) or RFC 3339 date-time",
                );
            }
        }
        "boolean" => {
            if !inner.is_boolean() {
                e.push(inner_path, "must be a boolean");
            }
        }
        "select" => {
            if positive_id(inner).is_none() {
                e.push(inner_path, "must be a positive integer (option id)");
            }
        }
        _ => check_id_array(inner, &inner_path, rules.max_array_len, e),
    }
}
