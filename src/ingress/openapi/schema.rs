//! The JSON Schema building blocks every part of the document uses: ids, strings, enums,
//! objects and updates, references into `components`.

use serde_json::{json, Value};

/// The largest id the gateway accepts in a path or a body (i64::MAX).
pub(super) const MAX_ID: i64 = i64::MAX;

/// A positive integer id. In bodies it must be a JSON integer: `1.0` is refused.
pub(super) fn id_schema() -> Value {
    json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID})
}

pub(super) fn id_array() -> Value {
    json!({
        "type": "array",
        "items": id_schema(),
        "uniqueItems": true,
        "maxItems": 100,
    })
}

pub(super) fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

pub(super) fn string(max: usize) -> Value {
    json!({"type": "string", "maxLength": max})
}

pub(super) fn enum_of(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

pub(super) fn uuid() -> Value {
    json!({"type": "string", "format": "uuid", "pattern":
        "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"})
}

pub(super) fn color(default: &str) -> Value {
    json!({
        "type": "string",
        "pattern": "^#[0-9A-Fa-f]{6}$",
        "description": "A hex colour #RRGGBB.",
        "default": default,
    })
}

/// A label: a non-blank string of at most 200 characters.
pub(super) fn label() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"})
}

/// An e-mail address, checked as the gateway checks the create's.
pub(super) fn email() -> Value {
    json!({"type": "string", "format": "email", "maxLength": 254})
}

/// An update: every field optional, at least one given.
pub(super) fn update(props: Value, desc: &str) -> Value {
    let mut o = object(&[], props, true, desc);
    o["minProperties"] = json!(1);
    o
}

/// An object schema; `strict` refuses undocumented keys.
pub(super) fn object(required: &[&str], props: Value, strict: bool, desc: &str) -> Value {
    let mut o = json!({
        "type": "object",
        "properties": props,
        "description": desc,
    });
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    if strict {
        o["additionalProperties"] = json!(false);
    }
    o
}

pub(super) fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}
