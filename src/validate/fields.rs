//! Reading a JSON body's fields: required or optional (never `null`), positive ids, bounded
//! strings and id arrays, and unknown keys with a "did you mean" hint.

use super::problems::{join, Errors};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;

/// An optional field: `None` when absent; `null` is reported (see [`super::body`]) and also
/// gives `None`, so callers only see real values.
pub(crate) fn optional<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: impl fmt::Display,
    expected: &str,
    e: &mut Errors,
) -> Option<&'a Value> {
    match map.get(key) {
        None => None,
        Some(Value::Null) => {
            e.push(
                path.to_string(),
                format!("must be {expected} or omitted; null is not accepted"),
            );
            None
        }
        Some(v) => Some(v),
    }
}

/// A required field: absence and `null` are both reported as missing.
pub(crate) fn required<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: impl fmt::Display,
    expected: &str,
    e: &mut Errors,
) -> Option<&'a Value> {
    match map.get(key) {
        None => {
            e.push(path.to_string(), format!("required ({expected})"));
            None
        }
        Some(Value::Null) => {
            e.push(
                path.to_string(),
                format!("required ({expected}); null is not accepted"),
            );
            None
        }
        Some(v) => Some(v),
    }
}

/// A positive integer id: a JSON integer in 1..=i64::MAX. Floats (`1.0`), strings (`"1"`),
/// zero and negatives are refused; the upper bound keeps ids inside a signed 64-bit column.
pub(crate) fn positive_id(v: &Value) -> Option<u64> {
    v.as_i64()
        .filter(|n| *n >= 1)
        .and_then(|n| u64::try_from(n).ok())
}

pub(crate) fn check_string(v: &Value, path: impl fmt::Display, max_chars: usize, e: &mut Errors) {
    match v.as_str() {
        None => e.push(path.to_string(), "must be a string"),
        Some(s) if s.chars().count() > max_chars => {
            e.push(
                path.to_string(),
                format!("must be at most {max_chars} characters"),
            );
        }
        Some(_) => {}
    }
}

/// An array of distinct positive integer ids, at most `max` long.
pub(crate) fn check_id_array(v: &Value, path: impl fmt::Display, max: usize, e: &mut Errors) {
    let Some(items) = v.as_array() else {
        e.push(path.to_string(), "must be an array of positive integers");
        return;
    };
    if items.len() > max {
        e.push(path.to_string(), format!("must have at most {max} items"));
    }
    // A short list is searched in place (no allocation); a long one through a set.
    let mut seen = HashSet::new();
    let short = items.len() <= 16;
    for (i, item) in items.iter().take(max).enumerate() {
        let id = positive_id(item);
        let mut repeated = |id: u64| {
            if short {
                items[..i].iter().any(|x| positive_id(x) == Some(id))
            } else {
                !seen.insert(id)
            }
        };
        match id {
            None => e.push(format!("{path}[{i}]"), "must be a positive integer"),
            Some(id) if repeated(id) => {
                e.push(format!("{path}[{i}]"), format!("duplicate id {id}"))
            }
            Some(_) => {}
        }
    }
}

/// Reports each key of `obj` not in `known`, suggesting the known key it most likely meant.
pub(crate) fn unknown_keys(obj: &Map<String, Value>, path: &str, known: &[&str], e: &mut Errors) {
    for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        e.push(join(path, key), unknown_message(key, known));
    }
}

/// "did you mean" for the common slips: snake_case, kebab-case, wrong capitalisation.
fn unknown_message(key: &str, known: &[&str]) -> String {
    fn fold(s: &str) -> String {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .flat_map(char::to_lowercase)
            .collect()
    }
    let folded = fold(key);
    match known.iter().find(|k| fold(k) == folded) {
        Some(k) => format!("unknown field; did you mean `{k}`?"),
        None => "unknown field".to_string(),
    }
}
