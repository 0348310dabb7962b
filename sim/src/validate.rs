//! `POST .../partnerships`: the simulator's own reading of the create rules.
//!
//! Deliberately independent of the gateway's validator, so that the two can
//! catch each other's mistakes in integration tests.

use serde_json::{Map, Value};

use crate::data::Dataset;
use crate::records::{
    Association, CfValue, FieldCategory, FieldType, NewContact, NewPartnership, PartnerType,
};
use crate::time::parse_timestamp_millis;

/// Why a create request was refused, mapped to a status by the server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CreateError {
    /// 400 "Invalid email format or missing required fields".
    Invalid,
    /// 406 "Invalid email domains or attempting to partner with self".
    Domain,
    /// 409 "Partnership already exists with this company".
    Exists,
}

/// Domain lists from the configuration.
pub(crate) struct DomainRules<'a> {
    pub free_mail: &'a [String],
    pub company_domains: &'a [String],
}

type Obj = Map<String, Value>;

/// An optional field; JSON `null` counts as absent because JavaScript clients
/// send `null` for unset values.
fn opt<'a>(obj: &'a Obj, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn opt_id(obj: &Obj, key: &str) -> Result<Option<u64>, CreateError> {
    opt(obj, key)
        .map(|v| v.as_u64().ok_or(CreateError::Invalid))
        .transpose()
}

fn opt_str<'a>(obj: &'a Obj, key: &str) -> Result<Option<&'a str>, CreateError> {
    opt(obj, key)
        .map(|v| v.as_str().ok_or(CreateError::Invalid))
        .transpose()
}

fn opt_id_array(obj: &Obj, key: &str) -> Result<Vec<u64>, CreateError> {
    match opt(obj, key) {
        None => Ok(Vec::new()),
        Some(v) => v
            .as_array()
            .ok_or(CreateError::Invalid)?
            .iter()
            .map(|x| x.as_u64().ok_or(CreateError::Invalid))
            .collect(),
    }
}

/// Returns the lower-cased domain of a `local@domain.tld` address.
pub(crate) fn email_domain(email: &str) -> Option<String> {
    if email.len() > 254 {
        return None;
    }
    let (local, domain) = email.split_once('@')?;
    if local.is_empty()
        || local.len() > 64
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
    {
        return None;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return None;
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !labels.iter().all(label_ok) {
        return None;
    }
    let tld = labels[labels.len() - 1];
    if tld.len() < 2 || !tld.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    Some(domain.to_ascii_lowercase())
}

fn parse_contact(ds: &Dataset, v: &Value) -> Result<NewContact, CreateError> {
    let obj = v.as_object().ok_or(CreateError::Invalid)?;
    let email = obj
        .get("email")
        .and_then(Value::as_str)
        .ok_or(CreateError::Invalid)?;
    email_domain(email).ok_or(CreateError::Invalid)?;
    let first_name = opt_str(obj, "firstName")?.map(str::to_string);
    let last_name = opt_str(obj, "lastName")?.map(str::to_string);
    // Contact tags are contact-card tags; any existing tag is taken because
    // the docs do not say which association they need.
    let tags = opt_id_array(obj, "tags")?;
    if tags.iter().any(|id| ds.tag(*id).is_none()) {
        return Err(CreateError::Invalid);
    }
    Ok(NewContact {
        email: email.to_string(),
        first_name,
        last_name,
        tags,
    })
}

/// One `customFields[]` entry of a body: the field must exist, belong to
/// `category` and have the declared `type`, and the value must fit it.
pub(crate) fn parse_custom_field(
    ds: &Dataset,
    v: &Value,
    category: FieldCategory,
) -> Result<(u64, CfValue), CreateError> {
    let obj = v.as_object().ok_or(CreateError::Invalid)?;
    let id = obj
        .get("customFieldId")
        .and_then(Value::as_u64)
        .ok_or(CreateError::Invalid)?;
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .and_then(FieldType::parse)
        .ok_or(CreateError::Invalid)?;
    let value = obj
        .get("value")
        .and_then(Value::as_object)
        .ok_or(CreateError::Invalid)?;
    let def = ds.custom_field(id).ok_or(CreateError::Invalid)?;
    if def.field_type != ty || def.category != category {
        return Err(CreateError::Invalid);
    }
    let key = match ty {
        // The docs list no `textarea` key; the project reads it as `text`.
        FieldType::Textarea => "text",
        other => other.as_str(),
    };
    let raw = value.get(key).ok_or(CreateError::Invalid)?;
    let parsed = match ty {
        FieldType::Text | FieldType::Textarea => {
            CfValue::Text(raw.as_str().ok_or(CreateError::Invalid)?.to_string())
        }
        FieldType::Number => match raw {
            Value::Number(n) => CfValue::Number(n.clone()),
            _ => return Err(CreateError::Invalid),
        },
        FieldType::Date => {
            let d = raw.as_str().ok_or(CreateError::Invalid)?;
            parse_timestamp_millis(d).ok_or(CreateError::Invalid)?;
            CfValue::Date(d.to_string())
        }
        FieldType::Boolean => CfValue::Boolean(raw.as_bool().ok_or(CreateError::Invalid)?),
        FieldType::Select => {
            let opt = raw.as_u64().ok_or(CreateError::Invalid)?;
            if !def.has_option(opt) {
                return Err(CreateError::Invalid);
            }
            CfValue::Select(opt)
        }
        FieldType::MultiSelect => {
            let opts = raw
                .as_array()
                .ok_or(CreateError::Invalid)?
                .iter()
                .map(|x| {
                    x.as_u64()
                        .filter(|o| def.has_option(*o))
                        .ok_or(CreateError::Invalid)
                })
                .collect::<Result<Vec<_>, _>>()?;
            CfValue::MultiSelect(opts)
        }
    };
    Ok((id, parsed))
}

/// An optional `customFields` array: each entry as [`parse_custom_field`],
/// no field twice.
pub(crate) fn parse_custom_fields(
    ds: &Dataset,
    v: Option<&Value>,
    category: FieldCategory,
) -> Result<Vec<(u64, CfValue)>, CreateError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let fields = v
        .as_array()
        .ok_or(CreateError::Invalid)?
        .iter()
        .map(|f| parse_custom_field(ds, f, category))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, (id, _)) in fields.iter().enumerate() {
        if fields[..i].iter().any(|(other, _)| other == id) {
            return Err(CreateError::Invalid);
        }
    }
    Ok(fields)
}

/// Validates a create body against the dataset (400 → 406 → 409, in that
/// order) and returns what to insert.
pub(crate) fn validate_create(
    body: &[u8],
    ds: &Dataset,
    rules: &DomainRules<'_>,
) -> Result<NewPartnership, CreateError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| CreateError::Invalid)?;
    let obj = v.as_object().ok_or(CreateError::Invalid)?;

    // --- 400: shape and types -------------------------------------------
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or(CreateError::Invalid)?;
    let contacts = obj
        .get("emails")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or(CreateError::Invalid)?
        .iter()
        .map(|c| parse_contact(ds, c))
        .collect::<Result<Vec<_>, _>>()?;
    let partner_type = obj
        .get("partnerType")
        .and_then(Value::as_str)
        .and_then(PartnerType::parse)
        .ok_or(CreateError::Invalid)?;
    let tier_id = opt_id(obj, "tierId")?;
    let category_id = opt_id(obj, "categoryId")?;
    let country_id = opt_id(obj, "countryId")?;
    let stage_uuid = opt_str(obj, "stageUuid")?;
    let inactive = match opt(obj, "inactive") {
        None => false,
        Some(v) => v.as_bool().ok_or(CreateError::Invalid)?,
    };
    let email_domain_field = opt_str(obj, "emailDomain")?;
    match opt_str(obj, "reseller")? {
        None => {}
        // Only meaningful for reseller partnerships (project reading).
        Some("company" | "partner") if partner_type == PartnerType::Reseller => {}
        Some(_) => return Err(CreateError::Invalid),
    }
    let assigned_users = opt_id_array(obj, "assignedUsers")?;
    let tags = opt_id_array(obj, "tags")?;
    let custom_fields = parse_custom_fields(ds, obj.get("customFields"), FieldCategory::Partner)?;

    // --- 400: references must exist --------------------------------------
    // A real backend would fail on a dangling foreign key; answering 400 keeps
    // the simulator's data consistent.
    if tier_id.is_some_and(|id| ds.tier(id).is_none())
        || category_id.is_some_and(|id| ds.category(id).is_none())
        || country_id.is_some_and(|id| ds.country(id).is_none())
        || assigned_users.iter().any(|id| ds.user(*id).is_none())
        || tags
            .iter()
            .any(|id| ds.tag_for(*id, Association::Partner).is_none())
    {
        return Err(CreateError::Invalid);
    }
    // A partner field marked `required` (none is, until a test creates one)
    // must be given for the partnership's type.
    let missing_required = ds.custom_fields.iter().any(|d| {
        d.category == FieldCategory::Partner
            && d.required
            && d.partner_type.is_none_or(|t| t == partner_type)
            && !custom_fields.iter().any(|(id, _)| *id == d.id)
    });
    if missing_required {
        return Err(CreateError::Invalid);
    }
    let stage_id = match stage_uuid {
        None => ds
            .stages
            .iter()
            .min_by_key(|s| s.series)
            .map(|s| s.id)
            .ok_or(CreateError::Invalid)?,
        Some(u) => ds
            .stages
            .iter()
            .find(|s| s.uuid == u)
            .map(|s| s.id)
            .ok_or(CreateError::Invalid)?,
    };

    // --- 406: domain rules ------------------------------------------------
    let mut domains = contacts.iter().filter_map(|c| email_domain(&c.email));
    let domain = domains.next().ok_or(CreateError::Invalid)?;
    if domains.any(|d| d != domain)
        || rules
            .free_mail
            .iter()
            .any(|f| f.eq_ignore_ascii_case(&domain))
        || rules
            .company_domains
            .iter()
            .any(|f| f.eq_ignore_ascii_case(&domain))
        || email_domain_field.is_some_and(|d| !d.eq_ignore_ascii_case(&domain))
    {
        return Err(CreateError::Domain);
    }

    // --- 409: one partnership per partner domain ---------------------------
    if ds.domain_exists(&domain) {
        return Err(CreateError::Exists);
    }

    Ok(NewPartnership {
        name: name.to_string(),
        domain,
        contacts,
        partner_type,
        stage_id,
        tier_id,
        category_id,
        country_id,
        inactive,
        assigned_users,
        tags,
        custom_fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::{generate, GenParams};

    fn ds() -> Dataset {
        generate(&GenParams {
            company_id: 123,
            company_domain: "acme-partners.io",
            partnerships: 20,
            seed: 42,
        })
    }

    fn check(body: &str) -> Result<NewPartnership, CreateError> {
        let free = vec!["gmail.com".to_string()];
        let own = vec!["acme-partners.io".to_string()];
        validate_create(
            body.as_bytes(),
            &ds(),
            &DomainRules {
                free_mail: &free,
                company_domains: &own,
            },
        )
    }

    #[test]
    fn emails() {
        assert_eq!(email_domain("a@B.Com").as_deref(), Some("b.com"));
        assert_eq!(email_domain("a.b+c@x.co.uk").as_deref(), Some("x.co.uk"));
        for bad in [
            "",
            "a",
            "@b.com",
            "a@",
            "a@b",
            "a@b.c",
            "a b@c.com",
            "a@@b.com",
            "a@-b.com",
            "a@b..com",
            ".a@b.com",
            "a@b.c0m",
        ] {
            assert_eq!(email_domain(bad), None, "{bad}");
        }
    }

    #[test]
    fn documented_example_is_accepted() {
        let body = r#"{"name":"TechCorp Solutions","emails":[{"email":"john@techcorp.com","firstName":"John","lastName":"Smith","tags":[1,2]}],"partnerType":"referral","tierId":2,"categoryId":3,"countryId":1,"assignedUsers":[456],"tags":[10,11],"customFields":[{"customFieldId":5,"type":"number","value":{"number":100000}},{"customFieldId":6,"type":"select","value":{"select":2}}]}"#;
        let n = check(body).expect("valid");
        assert_eq!(n.domain, "techcorp.com");
    }

    #[test]
    fn rejections() {
        let base = |extra: &str| {
            format!(
                r#"{{"name":"X","emails":[{{"email":"a@x-corp.com"}}],"partnerType":"reseller"{extra}}}"#
            )
        };
        assert!(check(&base("")).is_ok());
        for extra in [
            r#","tierId":"2""#,
            r#","tierId":99"#,
            r#","inactive":"yes""#,
            r#","reseller":"someone""#,
            r#","assignedUsers":[1]"#,
            r#","tags":"10""#,
            r#","customFields":[{"customFieldId":5,"type":"text","value":{"text":"x"}}]"#,
            r#","customFields":[{"customFieldId":5,"type":"number","value":{"number":"1"}}]"#,
            r#","stageUuid":"nope""#,
        ] {
            assert_eq!(check(&base(extra)), Err(CreateError::Invalid), "{extra}");
        }
        for body in [
            "[]",
            "{",
            r#"{"name":" ","emails":[{"email":"a@x-corp.com"}],"partnerType":"referral"}"#,
            r#"{"name":"X","emails":[],"partnerType":"referral"}"#,
            r#"{"name":"X","emails":[{"email":"a@x-corp.com"}]}"#,
            r#"{"name":"X","emails":[{"email":"a@x-corp.com"}],"partnerType":"referral","reseller":"partner"}"#,
        ] {
            assert_eq!(check(body), Err(CreateError::Invalid), "{body}");
        }
        let mk = |emails: &str| {
            format!(r#"{{"name":"X","emails":[{emails}],"partnerType":"referral"}}"#)
        };
        for emails in [
            r#"{"email":"a@x-corp.com"},{"email":"b@y-corp.com"}"#,
            r#"{"email":"a@GMAIL.com"}"#,
            r#"{"email":"a@acme-partners.io"}"#,
        ] {
            assert_eq!(check(&mk(emails)), Err(CreateError::Domain), "{emails}");
        }
        assert_eq!(
            check(&base(r#","emailDomain":"other.com""#)),
            Err(CreateError::Domain)
        );
        assert!(check(&base(r#","emailDomain":"X-Corp.com""#)).is_ok());
        let existing = ds().partnerships[3].domain.clone();
        assert_eq!(
            check(&mk(&format!(r#"{{"email":"z@{existing}"}}"#))),
            Err(CreateError::Exists)
        );
    }
}
