//! Create-body validation for `POST /api/v1/partnerships`.
//!
//! A create sends e-mail invitations and spends the company's scarce upstream budget, so the
//! gateway refuses every body JourneyBee would refuse (and a few it would accept by accident)
//! before anything leaves the building. The rules follow the Create Partner schema; the open
//! points (free-mail domains, partnering with self, `textarea` value key, `reseller` with a
//! referral partnership, ISO dates) follow the readings in `journeybee-api.md`.
//!
//! Every problem is collected, not only the first, so a client can fix a body in one round trip.
//! Schema problems (HTTP 400) take precedence: the domain rules (HTTP 406) only run on a body
//! whose schema is clean, because comparing domains of addresses that are not even valid would
//! only produce noise.
//!
//! `null` is never accepted for an optional field: it must be either a value of the documented
//! type or absent. JourneyBee does not document what `null` means (clear? default? error?), and
//! a create cannot be retried safely, so the gateway refuses to guess.

use super::FieldError;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// Limits and domain lists for create bodies. `Default` gives the documented defaults and the
/// built-in free-mail list ([`default_free_mail_domains`]); `own_domains` starts empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRules {
    /// Maximum length of `name`, in characters (default 200).
    pub max_name_len: usize,
    /// Maximum number of entries in `emails` (default 50).
    pub max_emails: usize,
    /// Maximum length, in characters, of `firstName`, `lastName` and custom-field text values
    /// (default 500).
    pub max_string_len: usize,
    /// Maximum number of items in `tags`, `assignedUsers`, `customFields`, `emails[].tags` and
    /// `multi_select` values (default 100).
    pub max_array_len: usize,
    /// Let unknown keys through (top level, e-mail objects, custom-field objects) instead of
    /// rejecting them (default false).
    pub allow_unknown_fields: bool,
    /// Lowercase free-mail domains; an address on one of them is not a business address.
    pub free_mail_domains: HashSet<String>,
    /// Lowercase domains of the company itself; an address on one of them, or on a subdomain of
    /// one, would be a partnership with self.
    pub own_domains: HashSet<String>,
}

impl Default for BodyRules {
    fn default() -> Self {
        Self {
            max_name_len: 200,
            max_emails: 50,
            max_string_len: 500,
            max_array_len: 100,
            allow_unknown_fields: false,
            free_mail_domains: default_free_mail_domains()
                .into_iter()
                .map(str::to_string)
                .collect(),
            own_domains: HashSet::new(),
        }
    }
}

/// The built-in list of consumer (free-mail) domains, lowercase. Deliberately short and
/// well-known: a false positive blocks a real partner, so the list is configurable and this is
/// only a sensible starting point.
pub fn default_free_mail_domains() -> Vec<&'static str> {
    vec![
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.co.in",
        "yahoo.co.jp",
        "yahoo.com.au",
        "yahoo.ca",
        "yahoo.de",
        "yahoo.es",
        "yahoo.fr",
        "yahoo.it",
        "ymail.com",
        "rocketmail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "live.com",
        "live.co.uk",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "pm.me",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "mail.com",
        "yandex.com",
        "yandex.ru",
        "mail.ru",
        "zoho.com",
        "fastmail.com",
        "hey.com",
        "tutanota.com",
        "tuta.io",
        "web.de",
        "qq.com",
        "163.com",
        "naver.com",
    ]
}

/// Why a create body was refused. `Schema` and the JSON variants map to 400, `Domain` to 406.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRejection {
    /// 400: not JSON. The message gives serde_json's line and column but never echoes the body.
    InvalidJson(String),
    /// 400: JSON but not an object.
    NotAnObject,
    /// 400: schema problems (every one found).
    Schema(Vec<FieldError>),
    /// 406: the body is well-formed but the domain rules refuse it (every one found).
    Domain(Vec<FieldError>),
}

impl BodyRejection {
    /// A one-line message that reads well alone; for `Schema` and `Domain` it is JourneyBee's
    /// own error text, so clients that only know the upstream's `{"error": ...}` shape still
    /// understand it.
    pub fn summary(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "Request body is not valid JSON",
            Self::NotAnObject => "Request body must be a JSON object",
            Self::Schema(_) => "Invalid email format or missing required fields",
            Self::Domain(_) => "Invalid email domains or attempting to partner with self",
        }
    }

    /// The per-field problems (empty for the JSON-level rejections).
    pub fn details(&self) -> &[FieldError] {
        match self {
            Self::Schema(v) | Self::Domain(v) => v,
            Self::InvalidJson(_) | Self::NotAnObject => &[],
        }
    }

    /// A short, fixed label for metrics: `invalid_json`, `not_object`, `schema` or `domain`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::NotAnObject => "not_object",
            Self::Schema(_) => "schema",
            Self::Domain(_) => "domain",
        }
    }
}

/// The documented partnership types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartnerType {
    /// `"referral"`
    Referral,
    /// `"reseller"`
    Reseller,
}

impl PartnerType {
    /// The wire value (`"referral"` or `"reseller"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Referral => "referral",
            Self::Reseller => "reseller",
        }
    }
}

/// What the audit log needs from an accepted body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSummary {
    /// The partner name, trimmed.
    pub name: String,
    /// The (single) business domain of the contact e-mails, lowercase.
    pub email_domain: String,
    /// `partnerType`.
    pub partner_type: PartnerType,
    /// `inactive` (false when omitted): an active create sends invitations.
    pub inactive: bool,
    /// Number of contact e-mails.
    pub emails: usize,
}

/// At most this many problems are listed; the rest are counted in one final entry. Without a
/// bound a body of a few hundred kilobytes of bad keys would produce a response many times its
/// size.
pub const MAX_REPORTED_ERRORS: usize = 100;

const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "emails",
    "partnerType",
    "tierId",
    "categoryId",
    "stageUuid",
    "inactive",
    "countryId",
    "emailDomain",
    "reseller",
    "assignedUsers",
    "tags",
    "customFields",
];
const EMAIL_KEYS: &[&str] = &["email", "firstName", "lastName", "tags"];
const CUSTOM_FIELD_KEYS: &[&str] = &["customFieldId", "type", "value"];

/// Validates a create body. On success returns what the audit log needs; on failure every
/// problem found (schema problems first: domain rules only run on a schema-clean body).
///
/// Arrays longer than their limit get one length error and only their first `limit` items are
/// inspected: the length error already refuses the body, and it keeps the error list bounded.
pub fn validate_create(body: &[u8], rules: &BodyRules) -> Result<CreateSummary, BodyRejection> {
    validate_create_value(body, rules).map(|(summary, _)| summary)
}

/// [`validate_create`], also giving back the parsed body (for the reference checks: the body
/// is parsed once).
pub fn validate_create_value(
    body: &[u8],
    rules: &BodyRules,
) -> Result<(CreateSummary, Value), BodyRejection> {
    let value: Value = serde_json::from_slice(body).map_err(json_error_message)?;
    let Value::Object(map) = value else {
        return Err(BodyRejection::NotAnObject);
    };
    let mut e = Errors::default();

    let name = check_name(&map, rules, &mut e);
    let emails = check_emails(&map, rules, &mut e);
    let partner_type = check_partner_type(&map, &mut e);
    check_reseller(&map, partner_type, &mut e);
    for key in ["tierId", "categoryId", "countryId"] {
        if let Some(v) = optional(&map, key, key, "a positive integer", &mut e) {
            if positive_id(v).is_none() {
                e.push(key, "must be a positive integer");
            }
        }
    }
    if let Some(v) = optional(&map, "stageUuid", "stageUuid", "a UUID string", &mut e) {
        if !v.as_str().is_some_and(is_uuid) {
            e.push(
                "stageUuid",
                "must be a UUID string (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
            );
        }
    }
    let inactive = match optional(&map, "inactive", "inactive", "a boolean", &mut e) {
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            e.push("inactive", "must be a boolean");
            false
        }
        None => false,
    };
    let email_domain = match optional(&map, "emailDomain", "emailDomain", "a domain name", &mut e) {
        Some(Value::String(s)) if is_domain(s) => Some(s.to_ascii_lowercase()),
        Some(_) => {
            e.push("emailDomain", "must be a domain name such as example.com");
            None
        }
        None => None,
    };
    for key in ["assignedUsers", "tags"] {
        if let Some(v) = optional(&map, key, key, "an array of positive integers", &mut e) {
            check_id_array(v, key, rules.max_array_len, &mut e);
        }
    }
    if let Some(v) = optional(
        &map,
        "customFields",
        "customFields",
        "an array of custom field objects",
        &mut e,
    ) {
        check_custom_fields(v, rules, &mut e);
    }
    if !rules.allow_unknown_fields {
        unknown_keys(&map, "", TOP_LEVEL_KEYS, &mut e);
    }

    if !e.is_empty() {
        return Err(BodyRejection::Schema(e.finish()));
    }
    // The schema is clean, so every value below is present and valid.
    let (Some(name), Some(domains), Some(partner_type)) = (name, emails, partner_type) else {
        // Unreachable in practice (each None pushed an error); refuse rather than panic.
        return Err(BodyRejection::Schema(vec![FieldError::new(
            "",
            "missing required fields",
        )]));
    };
    let Some(first) = domains.first().cloned() else {
        return Err(BodyRejection::Schema(vec![FieldError::new(
            "emails",
            "at least one e-mail is required",
        )]));
    };

    check_domains(&domains, email_domain.as_deref(), rules, &mut e);
    if !e.is_empty() {
        return Err(BodyRejection::Domain(e.finish()));
    }
    let summary = CreateSummary {
        name,
        email_domain: first,
        partner_type,
        inactive,
        emails: domains.len(),
    };
    Ok((summary, Value::Object(map)))
}

/// Turns a serde_json error into a message with its position. Syntax and end-of-input messages
/// are fixed texts in serde_json; anything else gets a generic text, so no part of the body can
/// be echoed back.
pub(crate) fn json_error_message(err: serde_json::Error) -> BodyRejection {
    use serde_json::error::Category;
    let what = match err.classify() {
        Category::Syntax | Category::Eof => err.to_string(),
        Category::Data | Category::Io => format!(
            "invalid JSON at line {} column {}",
            err.line(),
            err.column()
        ),
    };
    BodyRejection::InvalidJson(what)
}

/// Collects problems up to [`MAX_REPORTED_ERRORS`] and counts the rest.
#[derive(Default)]
pub(crate) struct Errors {
    list: Vec<FieldError>,
    dropped: usize,
}

impl Errors {
    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.list.len() < MAX_REPORTED_ERRORS {
            self.list.push(FieldError::new(field, message));
        } else {
            self.dropped += 1;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn finish(mut self) -> Vec<FieldError> {
        if self.dropped > 0 {
            self.list.push(FieldError::new(
                "*",
                format!("{} more problem(s) not listed", self.dropped),
            ));
        }
        self.list
    }
}

/// Joins a parent path and a key (`emails[0]` + `email` → `emails[0].email`). Very long keys
/// are shortened so an error list cannot be used to reflect large amounts of input.
/// `base[index]`, written out only when a problem is reported.
#[derive(Debug, Clone, Copy)]
struct Indexed(&'static str, usize);

impl fmt::Display for Indexed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

/// `base.key`, written out only when a problem is reported.
#[derive(Debug, Clone, Copy)]
struct Field<B>(B, &'static str);

impl<B: fmt::Display> fmt::Display for Field<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

pub(crate) fn join(base: &str, key: &str) -> String {
    let key = shorten(key, 64);
    if base.is_empty() {
        key
    } else {
        format!("{base}.{key}")
    }
}

fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// An optional field: `None` when absent; `null` is reported (see the module docs) and also
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

fn check_name(map: &Map<String, Value>, rules: &BodyRules, e: &mut Errors) -> Option<String> {
    let v = required(map, "name", "name", "a non-empty string", e)?;
    let Some(s) = v.as_str() else {
        e.push("name", "must be a string");
        return None;
    };
    if s.trim().is_empty() {
        e.push("name", "must not be blank");
        return None;
    }
    if s.chars().count() > rules.max_name_len {
        e.push(
            "name",
            format!("must be at most {} characters", rules.max_name_len),
        );
        return None;
    }
    Some(s.trim().to_string())
}

/// Checks `emails`; returns the lowercase domain of every address when all are valid.
fn check_emails(
    map: &Map<String, Value>,
    rules: &BodyRules,
    e: &mut Errors,
) -> Option<Vec<String>> {
    let v = required(map, "emails", "emails", "an array of e-mail objects", e)?;
    let Some(items) = v.as_array() else {
        e.push("emails", "must be an array of e-mail objects");
        return None;
    };
    if items.is_empty() {
        e.push("emails", "at least one e-mail is required");
        return None;
    }
    let mut ok = true;
    if items.len() > rules.max_emails {
        e.push(
            "emails",
            format!("must have at most {} e-mails", rules.max_emails),
        );
        ok = false;
    }
    let mut domains = Vec::with_capacity(items.len().min(rules.max_emails));
    for (i, item) in items.iter().take(rules.max_emails).enumerate() {
        // Paths are written out only when a problem is reported.
        let path = Indexed("emails", i);
        match check_email_object(item, path, rules, e) {
            Some(d) => domains.push(d),
            None => ok = false,
        }
    }
    ok.then_some(domains)
}

fn check_email_object(
    v: &Value,
    path: Indexed,
    rules: &BodyRules,
    e: &mut Errors,
) -> Option<String> {
    let Some(obj) = v.as_object() else {
        e.push(path.to_string(), "must be an object with an `email` key");
        return None;
    };
    let before = e.list.len() + e.dropped;
    let email_path = Field(path, "email");
    let mut domain = None;
    if let Some(v) = required(obj, "email", email_path, "an e-mail address", e) {
        match v.as_str() {
            None => e.push(email_path.to_string(), "must be a string"),
            Some(s) => match email_domain(s) {
                Ok(d) => domain = Some(d.to_ascii_lowercase()),
                Err(why) => e.push(
                    email_path.to_string(),
                    format!("not a valid e-mail address: {why}"),
                ),
            },
        }
    }
    for key in ["firstName", "lastName"] {
        let p = Field(path, key);
        if let Some(v) = optional(obj, key, p, "a string", e) {
            check_string(v, p, rules.max_string_len, e);
        }
    }
    let tags_path = Field(path, "tags");
    if let Some(v) = optional(obj, "tags", tags_path, "an array of positive integers", e) {
        check_id_array(v, tags_path, rules.max_array_len, e);
    }
    if !rules.allow_unknown_fields && obj.keys().any(|k| !EMAIL_KEYS.contains(&k.as_str())) {
        unknown_keys(obj, &path.to_string(), EMAIL_KEYS, e);
    }
    // Only a fully clean contact contributes its domain to the domain rules.
    if e.list.len() + e.dropped == before {
        domain
    } else {
        None
    }
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

fn check_partner_type(map: &Map<String, Value>, e: &mut Errors) -> Option<PartnerType> {
    let v = required(
        map,
        "partnerType",
        "partnerType",
        "\"referral\" or \"reseller\"",
        e,
    )?;
    match v.as_str() {
        Some("referral") => Some(PartnerType::Referral),
        Some("reseller") => Some(PartnerType::Reseller),
        _ => {
            e.push("partnerType", "must be \"referral\" or \"reseller\"");
            None
        }
    }
}

/// `reseller` says who resells, so it only means something for a reseller partnership; with a
/// referral partnership it is refused rather than silently ignored.
fn check_reseller(map: &Map<String, Value>, partner_type: Option<PartnerType>, e: &mut Errors) {
    let Some(v) = optional(map, "reseller", "reseller", "\"company\" or \"partner\"", e) else {
        return;
    };
    if !matches!(v.as_str(), Some("company" | "partner")) {
        e.push("reseller", "must be \"company\" or \"partner\"");
    } else if partner_type == Some(PartnerType::Referral) {
        e.push("reseller", "only allowed when partnerType is \"reseller\"");
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

/// Splits an address and returns its domain, or why it is not acceptable. Deliberately
/// simpler than RFC 5322 (no quoted local parts or IP literals): these are business contacts.
pub(crate) fn email_domain(addr: &str) -> Result<&str, &'static str> {
    if addr.len() > 254 {
        return Err("longer than 254 bytes");
    }
    let Some((local, domain)) = addr.split_once('@') else {
        return Err("must contain an @");
    };
    if domain.contains('@') {
        return Err("must contain exactly one @");
    }
    if local.is_empty() || local.len() > 64 {
        return Err("the part before @ must be 1 to 64 bytes");
    }
    if local.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the part before @ must not contain spaces or control characters");
    }
    if !is_domain(domain) {
        return Err("the part after @ is not a valid domain name");
    }
    Ok(domain)
}

/// A DNS host name with at least two labels: labels of 1–63 ASCII letters, digits and `-`
/// (not at either end), an alphabetic top-level label of at least two letters, ≤ 253 bytes.
fn is_domain(d: &str) -> bool {
    if d.is_empty() || d.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = d.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let labels_ok = labels.iter().all(|l| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    });
    let tld = labels[labels.len() - 1];
    labels_ok && tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic())
}

/// 8-4-4-4-12 hexadecimal digits, either case.
pub(crate) fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Parses a fixed-width run of ASCII digits.
fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

/// `YYYY-MM-DD`, or an RFC 3339 date-time `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, with a
/// real calendar check (no 2023-02-29). Leap seconds (`:60`) are refused: common upstream
/// date parsers reject them.
fn is_iso_date_or_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 10 || !is_calendar_date(&b[..10]) {
        return false;
    }
    match b.get(10) {
        None => true,
        Some(b'T' | b't') => is_rfc3339_time(&b[11..]),
        Some(_) => false,
    }
}

fn is_calendar_date(b: &[u8]) -> bool {
    if b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (digits(&b[..4]), digits(&b[5..7]), digits(&b[8..10])) else {
        return false;
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

fn is_rfc3339_time(b: &[u8]) -> bool {
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return false;
    }
    let (Some(h), Some(m), Some(s)) = (digits(&b[..2]), digits(&b[3..5]), digits(&b[6..8])) else {
        return false;
    };
    if h > 23 || m > 59 || s > 59 {
        return false;
    }
    let mut rest = &b[8..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            matches!((digits(&[*h1, *h2]), digits(&[*m1, *m2])), (Some(h), Some(m)) if h <= 23 && m <= 59)
        }
        _ => false,
    }
}

/// The 406 rules, on a schema-clean body: one shared business domain, matching `emailDomain`,
/// not free-mail and not the company's own (or a subdomain of it). Each offending address is
/// reported on its own path.
fn check_domains(
    domains: &[String],
    email_domain: Option<&str>,
    rules: &BodyRules,
    e: &mut Errors,
) {
    let first = &domains[0];
    for (i, d) in domains.iter().enumerate() {
        let path = || Field(Indexed("emails", i), "email").to_string();
        if d != first {
            e.push(
                path(),
                format!("domain {d} differs from {first} (emails[0]); all e-mails must share one business domain"),
            );
        }
        if rules.free_mail_domains.contains(d) {
            e.push(
                path(),
                format!("{d} is a free-mail domain; a business e-mail is required"),
            );
        }
        if is_own(d, &rules.own_domains) {
            e.push(
                path(),
                format!("{d} is one of your own domains; a company cannot partner with itself"),
            );
        }
    }
    if let Some(declared) = email_domain {
        if declared != first {
            e.push(
                "emailDomain",
                format!("does not match the e-mail domain {first}"),
            );
        }
    }
}

/// `d` is an own domain or a subdomain of one (`eu.acme.com` under `acme.com`).
fn is_own(d: &str, own: &HashSet<String>) -> bool {
    if own.contains(d) {
        return true;
    }
    // Walk the parent domains: "eu.acme.com" → "acme.com" → "com".
    let mut rest = d;
    while let Some((_, parent)) = rest.split_once('.') {
        if own.contains(parent) {
            return true;
        }
        rest = parent;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        for ok in [
            "2024-02-29",
            "2023-12-31",
            "2024-01-15T10:30:00Z",
            "2024-01-15t10:30:00.123z",
            "2024-01-15T10:30:00+05:30",
            "2000-02-29T23:59:59-00:00",
        ] {
            assert!(is_iso_date_or_datetime(ok), "{ok}");
        }
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "2024-1-01",
            "2024-01-15 10:30:00Z",
            "2024-01-15T24:00:00Z",
            "2024-01-15T10:30:00",
            "2024-01-15T10:30:60Z",
            "2024-01-15T10:30:00.Z",
            "2024-01-15T10:30:00+5:30",
            "2024-01-15T",
            "+024-01-15",
            "",
            "2024-01-15Z",
        ] {
            assert!(!is_iso_date_or_datetime(bad), "{bad}");
        }
    }

    #[test]
    fn domains_and_uuid() {
        assert!(is_domain("a.io"));
        assert!(is_domain("x-y.example.co.uk"));
        assert!(!is_domain("localhost"));
        assert!(!is_domain("a.c"));
        assert!(!is_domain("a.c0m"));
        assert!(!is_domain("-a.com"));
        assert!(!is_domain("a..com"));
        assert!(!is_domain("a.com."));
        assert!(is_uuid("123e4567-E89B-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
        assert!(is_own(
            "eu.acme.com",
            &HashSet::from(["acme.com".to_string()])
        ));
        assert!(!is_own(
            "notacme.com",
            &HashSet::from(["acme.com".to_string()])
        ));
    }
}
