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

use super::custom_fields::check_custom_fields;
use super::fields::{check_id_array, check_string, optional, positive_id, required, unknown_keys};
use super::formats::{email_domain, is_domain, is_uuid};
use super::problems::{json_error_message, Errors, FieldError};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;

pub use super::problems::{BodyRejection, MAX_REPORTED_ERRORS};
pub use super::rules::{default_free_mail_domains, BodyRules};

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
    fn own_domains() {
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
