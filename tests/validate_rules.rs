//! Table-driven tests of the create-body and list-query rules: every rule with valid and
//! invalid neighbours of its boundaries, asserting the exact set of reported field paths.

use journeybee_gateway::validate::body::{
    default_free_mail_domains, validate_create, BodyRejection, BodyRules, CreateSummary,
    PartnerType,
};
use journeybee_gateway::validate::query::{parse_list_query, QueryLimits};
use journeybee_gateway::validate::FieldError;
use serde_json::{json, Value};
use std::collections::BTreeSet;

// ---------------------------------------------------------------------------------------------
// Create bodies
// ---------------------------------------------------------------------------------------------

fn rules() -> BodyRules {
    BodyRules {
        own_domains: ["acme.com".to_string()].into_iter().collect(),
        ..BodyRules::default()
    }
}

/// A minimal valid body.
fn base() -> Value {
    json!({
        "name": "TechCorp Solutions",
        "emails": [{"email": "john@techcorp.com"}],
        "partnerType": "referral"
    })
}

/// `base()` with the given keys set (a `Value::Null` in `set` means "set to null").
fn with(set: Value) -> Value {
    let mut b = base();
    for (k, v) in set.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn without(key: &str) -> Value {
    let mut b = base();
    b.as_object_mut().unwrap().remove(key);
    b
}

fn email(addr: &str) -> Value {
    json!([{ "email": addr }])
}

fn emails(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"email": format!("c{i}@techcorp.com")}))
            .collect(),
    )
}

fn ids(n: usize) -> Value {
    Value::Array((1..=n as u64).map(Value::from).collect())
}

fn cf(id: Value, ty: &str, value: Value) -> Value {
    json!([{ "customFieldId": id, "type": ty, "value": value }])
}

#[derive(Debug)]
enum Want {
    Ok,
    Schema(&'static [&'static str]),
    Domain(&'static [&'static str]),
    InvalidJson,
    NotAnObject,
}

fn fields(v: &[FieldError]) -> BTreeSet<String> {
    v.iter().map(|e| e.field.clone()).collect()
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|s| s.to_string()).collect()
}

fn check_body(label: &str, body: &[u8], rules: &BodyRules, want: &Want) {
    let got = validate_create(body, rules);
    match (want, &got) {
        (Want::Ok, Ok(_)) => {}
        (Want::Schema(p), Err(BodyRejection::Schema(v)))
        | (Want::Domain(p), Err(BodyRejection::Domain(v))) => {
            assert_eq!(fields(v), set(p), "{label}: {v:?}");
        }
        (Want::InvalidJson, Err(BodyRejection::InvalidJson(_)))
        | (Want::NotAnObject, Err(BodyRejection::NotAnObject)) => {}
        _ => panic!("{label}: wanted {want:?}, got {got:?}"),
    }
}

fn body_cases() -> Vec<(&'static str, Value, Want)> {
    let r = BodyRules::default();
    let name_max = "n".repeat(r.max_name_len);
    let name_over = "n".repeat(r.max_name_len + 1);
    let s_max = "é".repeat(r.max_string_len);
    let s_over = "é".repeat(r.max_string_len + 1);
    let local64 = format!("{}@techcorp.com", "a".repeat(64));
    let local65 = format!("{}@techcorp.com", "a".repeat(65));
    let label63 = format!("a@{}.com", "b".repeat(63));
    let label64 = format!("a@{}.com", "b".repeat(64));
    // 254 bytes total is accepted, 255 refused (labels of 60 keep every label valid).
    let long_domain = |total: usize| {
        let mut d = String::from("a@");
        while d.len() + 61 < total - 4 {
            d.push_str(&"x".repeat(60));
            d.push('.');
        }
        let fill = total - 4 - d.len();
        d.push_str(&"y".repeat(fill));
        d.push_str(".com");
        assert_eq!(d.len(), total);
        d
    };
    let a254 = long_domain(254);
    let a255 = long_domain(255);

    vec![
        ("minimal valid", base(), Want::Ok),
        (
            "full documented example",
            json!({
                "name": "TechCorp Solutions",
                "emails": [{"email": "john@techcorp.com", "firstName": "John", "lastName": "Smith", "tags": [1, 2]},
                           {"email": "jane@TechCorp.COM"}],
                "partnerType": "reseller", "reseller": "partner",
                "tierId": 2, "categoryId": 3, "countryId": 1,
                "stageUuid": "123e4567-E89B-12d3-a456-426614174000",
                "inactive": true, "emailDomain": "TECHCORP.com",
                "assignedUsers": [456], "tags": [10, 11],
                "customFields": [
                    {"customFieldId": 5, "type": "number", "value": {"number": 100000}},
                    {"customFieldId": 6, "type": "select", "value": {"select": 2}}
                ]
            }),
            Want::Ok,
        ),
        // name
        ("name missing", without("name"), Want::Schema(&["name"])),
        (
            "name null",
            with(json!({"name": null})),
            Want::Schema(&["name"]),
        ),
        (
            "name number",
            with(json!({"name": 5})),
            Want::Schema(&["name"]),
        ),
        (
            "name empty",
            with(json!({"name": ""})),
            Want::Schema(&["name"]),
        ),
        (
            "name blank",
            with(json!({"name": " \t\n"})),
            Want::Schema(&["name"]),
        ),
        ("name at max", with(json!({ "name": name_max })), Want::Ok),
        (
            "name over max",
            with(json!({ "name": name_over })),
            Want::Schema(&["name"]),
        ),
        // emails: count
        (
            "emails missing",
            without("emails"),
            Want::Schema(&["emails"]),
        ),
        (
            "emails not array",
            with(json!({"emails": {"email": "a@techcorp.com"}})),
            Want::Schema(&["emails"]),
        ),
        (
            "emails 0",
            with(json!({"emails": []})),
            Want::Schema(&["emails"]),
        ),
        ("emails 1", with(json!({ "emails": emails(1) })), Want::Ok),
        (
            "emails at max",
            with(json!({ "emails": emails(r.max_emails) })),
            Want::Ok,
        ),
        (
            "emails over max",
            with(json!({ "emails": emails(r.max_emails + 1) })),
            Want::Schema(&["emails"]),
        ),
        // emails: objects
        (
            "email item not object",
            with(json!({"emails": ["a@techcorp.com"]})),
            Want::Schema(&["emails[0]"]),
        ),
        (
            "email missing",
            with(json!({"emails": [{"firstName": "A"}]})),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email number",
            with(json!({"emails": [{"email": 1}]})),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email no @",
            with(json!({ "emails": email("john.techcorp.com") })),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email two @",
            with(json!({ "emails": email("a@b@techcorp.com") })),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email empty local",
            with(json!({ "emails": email("@techcorp.com") })),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email space",
            with(json!({ "emails": email("jo hn@techcorp.com") })),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email control",
            with(json!({ "emails": email("jo\u{7}hn@techcorp.com") })),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email local 64",
            with(json!({ "emails": email(&local64) })),
            Want::Ok,
        ),
        (
            "email local 65",
            with(json!({ "emails": email(&local65) })),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email label 63",
            with(json!({ "emails": email(&label63) })),
            Want::Ok,
        ),
        (
            "email label 64",
            with(json!({ "emails": email(&label64) })),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email total 254",
            with(json!({ "emails": email(&a254) })),
            Want::Ok,
        ),
        (
            "email total 255",
            with(json!({ "emails": email(&a255) })),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email single label",
            with(json!({ "emails": email("a@localhost") })),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email numeric tld",
            with(json!({ "emails": email("a@techcorp.c0m") })),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email 1-letter tld",
            with(json!({ "emails": email("a@techcorp.c") })),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email hyphen label",
            with(json!({ "emails": email("a@-techcorp.com") })),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email empty label",
            with(json!({ "emails": email("a@techcorp..com") })),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email underscore",
            with(json!({ "emails": email("a@tech_corp.com") })),
            Want::Schema(&["emails[0].email"]),
        ),
        (
            "email hyphen inside ok",
            with(json!({ "emails": email("a.b+c@tech-corp.co.uk") })),
            Want::Ok,
        ),
        (
            "firstName at max",
            with(json!({"emails": [{"email": "a@techcorp.com", "firstName": s_max}]})),
            Want::Ok,
        ),
        (
            "firstName over max",
            with(json!({"emails": [{"email": "a@techcorp.com", "firstName": s_over}]})),
            Want::Schema(&["emails[0].firstName"]),
        ),
        (
            "lastName number",
            with(json!({"emails": [{"email": "a@techcorp.com", "lastName": 7}]})),
            Want::Schema(&["emails[0].lastName"]),
        ),
        (
            "lastName null",
            with(json!({"emails": [{"email": "a@techcorp.com", "lastName": null}]})),
            Want::Schema(&["emails[0].lastName"]),
        ),
        (
            "email tags bad items",
            with(json!({"emails": [{"email": "a@techcorp.com", "tags": [1, 0, 1, "2", 2.5]}]})),
            Want::Schema(&[
                "emails[0].tags[1]",
                "emails[0].tags[2]",
                "emails[0].tags[3]",
                "emails[0].tags[4]",
            ]),
        ),
        (
            "email tags not array",
            with(json!({"emails": [{"email": "a@techcorp.com", "tags": 1}]})),
            Want::Schema(&["emails[0].tags"]),
        ),
        (
            "email unknown key",
            with(json!({"emails": [{"email": "a@techcorp.com", "first_name": "A", "phone": "1"}]})),
            Want::Schema(&["emails[0].first_name", "emails[0].phone"]),
        ),
        // partnerType / reseller
        (
            "partnerType missing",
            without("partnerType"),
            Want::Schema(&["partnerType"]),
        ),
        (
            "partnerType wrong case",
            with(json!({"partnerType": "Referral"})),
            Want::Schema(&["partnerType"]),
        ),
        (
            "partnerType other",
            with(json!({"partnerType": "affiliate"})),
            Want::Schema(&["partnerType"]),
        ),
        (
            "reseller company",
            with(json!({"partnerType": "reseller", "reseller": "company"})),
            Want::Ok,
        ),
        (
            "reseller omitted",
            with(json!({"partnerType": "reseller"})),
            Want::Ok,
        ),
        (
            "reseller bad value",
            with(json!({"partnerType": "reseller", "reseller": "both"})),
            Want::Schema(&["reseller"]),
        ),
        (
            "reseller with referral",
            with(json!({"reseller": "partner"})),
            Want::Schema(&["reseller"]),
        ),
        (
            "reseller null",
            with(json!({"partnerType": "reseller", "reseller": null})),
            Want::Schema(&["reseller"]),
        ),
        // ids
        ("tierId 1", with(json!({"tierId": 1})), Want::Ok),
        (
            "tierId max i64",
            with(json!({"tierId": i64::MAX})),
            Want::Ok,
        ),
        (
            "tierId over i64",
            with(json!({"tierId": (i64::MAX as u64) + 1})),
            Want::Schema(&["tierId"]),
        ),
        (
            "tierId 0",
            with(json!({"tierId": 0})),
            Want::Schema(&["tierId"]),
        ),
        (
            "tierId -1",
            with(json!({"tierId": -1})),
            Want::Schema(&["tierId"]),
        ),
        (
            "tierId 1.5",
            with(json!({"tierId": 1.5})),
            Want::Schema(&["tierId"]),
        ),
        (
            "tierId 1.0",
            with(json!({"tierId": 1.0})),
            Want::Schema(&["tierId"]),
        ),
        (
            "tierId string",
            with(json!({"tierId": "1"})),
            Want::Schema(&["tierId"]),
        ),
        (
            "tierId null",
            with(json!({"tierId": null})),
            Want::Schema(&["tierId"]),
        ),
        (
            "categoryId 0, countryId 1.5",
            with(json!({"categoryId": 0, "countryId": 1.5})),
            Want::Schema(&["categoryId", "countryId"]),
        ),
        // stageUuid / inactive / emailDomain
        (
            "stageUuid lower",
            with(json!({"stageUuid": "123e4567-e89b-12d3-a456-426614174000"})),
            Want::Ok,
        ),
        (
            "stageUuid no dashes",
            with(json!({"stageUuid": "123e4567e89b12d3a456426614174000"})),
            Want::Schema(&["stageUuid"]),
        ),
        (
            "stageUuid non-hex",
            with(json!({"stageUuid": "123e4567-e89b-12d3-a456-42661417400g"})),
            Want::Schema(&["stageUuid"]),
        ),
        (
            "stageUuid number",
            with(json!({"stageUuid": 5})),
            Want::Schema(&["stageUuid"]),
        ),
        ("inactive false", with(json!({"inactive": false})), Want::Ok),
        (
            "inactive string",
            with(json!({"inactive": "true"})),
            Want::Schema(&["inactive"]),
        ),
        (
            "inactive null",
            with(json!({"inactive": null})),
            Want::Schema(&["inactive"]),
        ),
        (
            "emailDomain ok",
            with(json!({"emailDomain": "techcorp.com"})),
            Want::Ok,
        ),
        (
            "emailDomain invalid",
            with(json!({"emailDomain": "https://techcorp.com"})),
            Want::Schema(&["emailDomain"]),
        ),
        // assignedUsers / tags
        (
            "tags at max",
            with(json!({ "tags": ids(r.max_array_len) })),
            Want::Ok,
        ),
        (
            "tags over max",
            with(json!({ "tags": ids(r.max_array_len + 1) })),
            Want::Schema(&["tags"]),
        ),
        (
            "tags duplicate",
            with(json!({"tags": [3, 4, 3]})),
            Want::Schema(&["tags[2]"]),
        ),
        ("tags empty ok", with(json!({"tags": []})), Want::Ok),
        (
            "assignedUsers items",
            with(json!({"assignedUsers": [0, -1, "1", 1.5, 1]})),
            Want::Schema(&[
                "assignedUsers[0]",
                "assignedUsers[1]",
                "assignedUsers[2]",
                "assignedUsers[3]",
            ]),
        ),
        (
            "assignedUsers object",
            with(json!({"assignedUsers": {"id": 1}})),
            Want::Schema(&["assignedUsers"]),
        ),
        // customFields: one right and one wrong per type
        (
            "cf text",
            with(json!({ "customFields": cf(json!(1), "text", json!({"text": "x"})) })),
            Want::Ok,
        ),
        (
            "cf text number",
            with(json!({ "customFields": cf(json!(1), "text", json!({"text": 1})) })),
            Want::Schema(&["customFields[0].value.text"]),
        ),
        (
            "cf text too long",
            with(json!({ "customFields": cf(json!(1), "text", json!({"text": s_over})) })),
            Want::Schema(&["customFields[0].value.text"]),
        ),
        (
            "cf textarea",
            with(json!({ "customFields": cf(json!(1), "textarea", json!({"text": "x\ny"})) })),
            Want::Ok,
        ),
        (
            "cf textarea wrong key",
            with(json!({ "customFields": cf(json!(1), "textarea", json!({"textarea": "x"})) })),
            Want::Schema(&["customFields[0].value", "customFields[0].value.textarea"]),
        ),
        (
            "cf number",
            with(json!({ "customFields": cf(json!(1), "number", json!({"number": -1.5})) })),
            Want::Ok,
        ),
        (
            "cf number string",
            with(json!({ "customFields": cf(json!(1), "number", json!({"number": "100"})) })),
            Want::Schema(&["customFields[0].value.number"]),
        ),
        (
            "cf number wrong key",
            with(json!({ "customFields": cf(json!(1), "number", json!({"text": "100"})) })),
            Want::Schema(&["customFields[0].value", "customFields[0].value.text"]),
        ),
        (
            "cf number extra key",
            with(
                json!({ "customFields": cf(json!(1), "number", json!({"number": 1, "text": "1"})) }),
            ),
            Want::Schema(&["customFields[0].value.text"]),
        ),
        (
            "cf date",
            with(json!({ "customFields": cf(json!(1), "date", json!({"date": "2024-02-29"})) })),
            Want::Ok,
        ),
        (
            "cf datetime",
            with(
                json!({ "customFields": cf(json!(1), "date", json!({"date": "2024-01-15T10:30:00Z"})) }),
            ),
            Want::Ok,
        ),
        (
            "cf date not leap",
            with(json!({ "customFields": cf(json!(1), "date", json!({"date": "2023-02-29"})) })),
            Want::Schema(&["customFields[0].value.date"]),
        ),
        (
            "cf date free text",
            with(json!({ "customFields": cf(json!(1), "date", json!({"date": "next tuesday"})) })),
            Want::Schema(&["customFields[0].value.date"]),
        ),
        (
            "cf boolean",
            with(json!({ "customFields": cf(json!(1), "boolean", json!({"boolean": false})) })),
            Want::Ok,
        ),
        (
            "cf boolean string",
            with(json!({ "customFields": cf(json!(1), "boolean", json!({"boolean": "false"})) })),
            Want::Schema(&["customFields[0].value.boolean"]),
        ),
        (
            "cf select",
            with(json!({ "customFields": cf(json!(1), "select", json!({"select": 2})) })),
            Want::Ok,
        ),
        (
            "cf select 0",
            with(json!({ "customFields": cf(json!(1), "select", json!({"select": 0})) })),
            Want::Schema(&["customFields[0].value.select"]),
        ),
        (
            "cf multi_select",
            with(
                json!({ "customFields": cf(json!(1), "multi_select", json!({"multi_select": [1, 2]})) }),
            ),
            Want::Ok,
        ),
        (
            "cf multi_select dup",
            with(
                json!({ "customFields": cf(json!(1), "multi_select", json!({"multi_select": [1, 2, 1]})) }),
            ),
            Want::Schema(&["customFields[0].value.multi_select[2]"]),
        ),
        (
            "cf multi_select scalar",
            with(
                json!({ "customFields": cf(json!(1), "multi_select", json!({"multi_select": 1})) }),
            ),
            Want::Schema(&["customFields[0].value.multi_select"]),
        ),
        (
            "cf value not object",
            with(json!({ "customFields": cf(json!(1), "number", json!(5)) })),
            Want::Schema(&["customFields[0].value"]),
        ),
        (
            "cf bad type",
            with(json!({ "customFields": cf(json!(1), "email", json!({"text": "x"})) })),
            Want::Schema(&["customFields[0].type"]),
        ),
        (
            "cf id 0",
            with(json!({ "customFields": cf(json!(0), "text", json!({"text": "x"})) })),
            Want::Schema(&["customFields[0].customFieldId"]),
        ),
        (
            "cf id string",
            with(json!({ "customFields": cf(json!("5"), "text", json!({"text": "x"})) })),
            Want::Schema(&["customFields[0].customFieldId"]),
        ),
        (
            "cf missing all",
            with(json!({"customFields": [{}]})),
            Want::Schema(&[
                "customFields[0].customFieldId",
                "customFields[0].type",
                "customFields[0].value",
            ]),
        ),
        (
            "cf not object",
            with(json!({"customFields": [5]})),
            Want::Schema(&["customFields[0]"]),
        ),
        (
            "cf duplicate id",
            with(json!({"customFields": [
                {"customFieldId": 5, "type": "text", "value": {"text": "a"}},
                {"customFieldId": 6, "type": "text", "value": {"text": "b"}},
                {"customFieldId": 5, "type": "number", "value": {"number": 1}}]})),
            Want::Schema(&["customFields[2].customFieldId"]),
        ),
        (
            "cf unknown key",
            with(
                json!({"customFields": [{"customFieldId": 5, "type": "text", "value": {"text": "a"}, "label": "x"}]}),
            ),
            Want::Schema(&["customFields[0].label"]),
        ),
        (
            "cf over max",
            with(
                json!({"customFields": Value::Array((1..=101).map(|i| json!({"customFieldId": i, "type": "boolean", "value": {"boolean": true}})).collect())}),
            ),
            Want::Schema(&["customFields"]),
        ),
        // unknown top-level keys
        (
            "unknown partner_type",
            with(json!({"partner_type": "referral"})),
            Want::Schema(&["partner_type"]),
        ),
        (
            "unknown field plain",
            with(json!({"website": "x"})),
            Want::Schema(&["website"]),
        ),
        // every error listed, not only the first
        (
            "every error listed",
            json!({
                "name": "",
                "emails": [{"email": "ok@techcorp.com"}, {"email": "bad"}, {"email": "x@techcorp.com", "tags": [0]}],
                "partnerType": "referral", "reseller": "company",
                "tierId": "2", "stageUuid": "nope", "inactive": 1,
                "customFields": [{"customFieldId": 1, "type": "date", "value": {"date": "2024-13-01"}}],
                "extra": true
            }),
            Want::Schema(&[
                "name",
                "emails[1].email",
                "emails[2].tags[0]",
                "reseller",
                "tierId",
                "stageUuid",
                "inactive",
                "customFields[0].value.date",
                "extra",
            ]),
        ),
        // domain rules (406)
        (
            "free mail",
            with(json!({ "emails": email("john@gmail.com") })),
            Want::Domain(&["emails[0].email"]),
        ),
        (
            "free mail any case",
            with(json!({ "emails": email("john@GMail.Com") })),
            Want::Domain(&["emails[0].email"]),
        ),
        (
            "own domain",
            with(json!({ "emails": email("me@acme.com") })),
            Want::Domain(&["emails[0].email"]),
        ),
        (
            "own subdomain",
            with(json!({ "emails": email("me@eu.ACME.com") })),
            Want::Domain(&["emails[0].email"]),
        ),
        (
            "not own: suffix only",
            with(json!({ "emails": email("me@notacme.com") })),
            Want::Ok,
        ),
        (
            "mixed domains",
            with(
                json!({"emails": [{"email": "a@techcorp.com"}, {"email": "b@TECHCORP.com"}, {"email": "c@other.com"}, {"email": "d@other.io"}]}),
            ),
            Want::Domain(&["emails[2].email", "emails[3].email"]),
        ),
        (
            "emailDomain mismatch",
            with(json!({"emailDomain": "other.com"})),
            Want::Domain(&["emailDomain"]),
        ),
        (
            "domain errors all listed",
            with(
                json!({"emails": [{"email": "a@gmail.com"}, {"email": "b@acme.com"}], "emailDomain": "techcorp.com"}),
            ),
            Want::Domain(&["emails[0].email", "emails[1].email", "emailDomain"]),
        ),
        (
            "schema errors suppress domain",
            with(json!({"emails": [{"email": "a@gmail.com"}], "tierId": 0})),
            Want::Schema(&["tierId"]),
        ),
        (
            "schema error in one e-mail suppresses domain",
            with(
                json!({"emails": [{"email": "a@gmail.com"}, {"email": "b@other.com", "tags": "x"}]}),
            ),
            Want::Schema(&["emails[1].tags"]),
        ),
        // not objects
        ("array", json!([base()]), Want::NotAnObject),
        ("string", json!("x"), Want::NotAnObject),
        ("null", Value::Null, Want::NotAnObject),
    ]
}

#[test]
fn body_rules_table() {
    let rules = rules();
    for (label, body, want) in body_cases() {
        check_body(label, body.to_string().as_bytes(), &rules, &want);
    }
}

#[test]
fn raw_body_table() {
    let rules = rules();
    let cases: &[(&str, &[u8], Want)] = &[
        ("empty", b"", Want::InvalidJson),
        ("truncated", br#"{"name": "x""#, Want::InvalidJson),
        ("trailing", br#"{} {}"#, Want::InvalidJson),
        ("not utf-8", b"{\"name\": \"\xff\"}", Want::InvalidJson),
        ("number overflow", b"{\"tierId\": 1e400}", Want::InvalidJson),
        ("deep nesting", &[b'['; 10_000], Want::InvalidJson),
        ("number", b"42", Want::NotAnObject),
        (
            "empty object",
            b"{}",
            Want::Schema(&["name", "emails", "partnerType"]),
        ),
    ];
    for (label, body, want) in cases {
        check_body(label, body, &rules, want);
    }
}

#[test]
fn invalid_json_message_has_position_and_no_echo() {
    let secret = br#"{"name": "TOP-SECRET-NAME" "emails": []}"#;
    let Err(BodyRejection::InvalidJson(msg)) = validate_create(secret, &rules()) else {
        panic!("expected InvalidJson");
    };
    assert!(msg.contains("line 1 column"), "{msg}");
    assert!(!msg.contains("TOP-SECRET"), "{msg}");
}

#[test]
fn did_you_mean() {
    let rules = rules();
    for (key, suggestion) in [
        ("partner_type", Some("partnerType")),
        ("partnertype", Some("partnerType")),
        ("PartnerType", Some("partnerType")),
        ("email_domain", Some("emailDomain")),
        ("assigned_users", Some("assignedUsers")),
        ("website", None),
    ] {
        let body = with(json!({ key: "x" })).to_string();
        let Err(BodyRejection::Schema(errs)) = validate_create(body.as_bytes(), &rules) else {
            panic!("{key}: expected Schema");
        };
        assert_eq!(errs.len(), 1, "{key}: {errs:?}");
        assert_eq!(errs[0].field, key);
        match suggestion {
            Some(s) => assert_eq!(
                errs[0].message,
                format!("unknown field; did you mean `{s}`?")
            ),
            None => assert_eq!(errs[0].message, "unknown field"),
        }
    }
    // Nested objects get the same help.
    let body =
        with(json!({"emails": [{"email": "a@techcorp.com", "first_name": "A"}]})).to_string();
    let Err(BodyRejection::Schema(errs)) = validate_create(body.as_bytes(), &rules) else {
        panic!("expected Schema");
    };
    assert_eq!(errs[0].message, "unknown field; did you mean `firstName`?");
}

#[test]
fn allow_unknown_fields() {
    let rules = BodyRules {
        allow_unknown_fields: true,
        ..rules()
    };
    let body = json!({
        "name": "X", "partnerType": "referral", "website": "x",
        "emails": [{"email": "a@techcorp.com", "phone": "1"}],
        "customFields": [{"customFieldId": 1, "type": "text", "value": {"text": "a"}, "label": "l"}]
    });
    check_body("allowed", body.to_string().as_bytes(), &rules, &Want::Ok);
}

#[test]
fn null_is_refused_for_every_optional_field() {
    let rules = rules();
    for key in [
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
    ] {
        let body = with(json!({ key: null })).to_string();
        let Err(BodyRejection::Schema(errs)) = validate_create(body.as_bytes(), &rules) else {
            panic!("{key}: expected Schema");
        };
        assert_eq!(fields(&errs), set(&[key]), "{key}");
        assert!(errs[0].message.contains("or omitted"), "{key}: {errs:?}");
    }
}

#[test]
fn summary_of_an_accepted_body() {
    let body = json!({
        "name": "  TechCorp  ",
        "emails": [{"email": "a@TechCorp.com"}, {"email": "b@techcorp.COM"}],
        "partnerType": "reseller", "inactive": true
    });
    let got = validate_create(body.to_string().as_bytes(), &rules()).unwrap();
    assert_eq!(
        got,
        CreateSummary {
            name: "TechCorp".into(),
            email_domain: "techcorp.com".into(),
            partner_type: PartnerType::Reseller,
            inactive: true,
            emails: 2,
        }
    );
    let got = validate_create(base().to_string().as_bytes(), &rules()).unwrap();
    assert_eq!(got.partner_type, PartnerType::Referral);
    assert!(!got.inactive);
}

#[test]
fn rejection_texts_and_reasons() {
    let cases = [
        (
            BodyRejection::InvalidJson("x".into()),
            "Request body is not valid JSON",
            "invalid_json",
        ),
        (
            BodyRejection::NotAnObject,
            "Request body must be a JSON object",
            "not_object",
        ),
        (
            BodyRejection::Schema(vec![]),
            "Invalid email format or missing required fields",
            "schema",
        ),
        (
            BodyRejection::Domain(vec![]),
            "Invalid email domains or attempting to partner with self",
            "domain",
        ),
    ];
    for (r, summary, reason) in cases {
        assert_eq!(r.summary(), summary);
        assert_eq!(r.reason(), reason);
    }
    let d = vec![FieldError::new("a", "b")];
    assert_eq!(BodyRejection::Domain(d.clone()).details(), d.as_slice());
    assert!(BodyRejection::NotAnObject.details().is_empty());
}

#[test]
fn default_rules() {
    let r = BodyRules::default();
    assert_eq!(
        (
            r.max_name_len,
            r.max_emails,
            r.max_string_len,
            r.max_array_len
        ),
        (200, 50, 500, 100)
    );
    assert!(!r.allow_unknown_fields);
    assert!(r.own_domains.is_empty());
    let list = default_free_mail_domains();
    assert!(list.len() >= 30);
    for d in [
        "gmail.com",
        "yahoo.co.uk",
        "outlook.com",
        "proton.me",
        "web.de",
    ] {
        assert!(list.contains(&d) && r.free_mail_domains.contains(d), "{d}");
    }
    assert!(list.iter().all(|d| *d == d.to_ascii_lowercase()));
}

#[test]
fn error_list_is_bounded() {
    let mut body = base();
    let obj = body.as_object_mut().unwrap();
    for i in 0..1000 {
        obj.insert(format!("junk{i}"), json!(1));
    }
    let Err(BodyRejection::Schema(errs)) = validate_create(body.to_string().as_bytes(), &rules())
    else {
        panic!("expected Schema");
    };
    assert!(errs.len() <= 101, "{}", errs.len());
    assert!(errs.last().unwrap().message.contains("more problem"));
}

// ---------------------------------------------------------------------------------------------
// List queries
// ---------------------------------------------------------------------------------------------

enum Q {
    /// Accepted, with this canonical form and client userId.
    Ok(&'static str, Option<u64>),
    /// Accepted (canonical form checked elsewhere).
    Accepted,
    /// Refused, with exactly these fields.
    Err(&'static [&'static str]),
}

fn query_cases() -> Vec<(String, Q)> {
    let l = QueryLimits::default();
    let ids_max = (1..=l.max_ids)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let ids_over = (1..=l.max_ids + 1)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let s = |q: &str| q.to_string();
    let mut cases = vec![
        (s(""), Q::Ok("", None)),
        (s("&&"), Q::Ok("", None)),
        // userId
        (s("userId=456"), Q::Ok("", Some(456))),
        (s("userId=0"), Q::Err(&["userId"])),
        (s("userId=-1"), Q::Err(&["userId"])),
        (s("userId=1.5"), Q::Err(&["userId"])),
        (s("userId=abc"), Q::Err(&["userId"])),
        (s("userId="), Q::Err(&["userId"])),
        (s("userId=9223372036854775807"), Q::Ok("", Some(9_223_372_036_854_775_807))),
        (s("userId=9223372036854775808"), Q::Err(&["userId"])),
        // view
        (s("view=all"), Q::Ok("view=all", None)),
        (s("view=assigned"), Q::Ok("view=assigned", None)),
        (s("view=referral"), Q::Ok("view=referral", None)),
        (s("view=reseller"), Q::Ok("view=reseller", None)),
        (s("view=All"), Q::Err(&["view"])),
        (s("view="), Q::Err(&["view"])),
        // id lists
        (s("tags=3,1,2,1"), Q::Ok("tags=1%2C2%2C3", None)),
        (s("stages=%201%20,%092"), Q::Ok("stages=1%2C2", None)),
        (s("tiers=007"), Q::Ok("tiers=7", None)),
        (s("categories=1,,2"), Q::Err(&["categories"])),
        (s("users=1,2,"), Q::Err(&["users"])),
        (s("tags="), Q::Err(&["tags"])),
        (s("tags=0"), Q::Err(&["tags"])),
        (s("tags=-1"), Q::Err(&["tags"])),
        (s("tags=%2B1"), Q::Err(&["tags"])),
        (s("tags=1.5"), Q::Err(&["tags"])),
        (s("tags=a"), Q::Err(&["tags"])),
        (format!("tags={ids_max}"), Q::Accepted), // canonical: ids_at_max_are_normalized
        (format!("tags={ids_over}"), Q::Err(&["tags"])),
        // assigned / unassigned
        (s("assigned=1"), Q::Ok("assigned=1", None)),
        (s("unassigned=1"), Q::Ok("unassigned=1", None)),
        (s("assigned=0"), Q::Err(&["assigned"])),
        (s("assigned=true"), Q::Err(&["assigned"])),
        (s("unassigned="), Q::Err(&["unassigned"])),
        (s("assigned=1&unassigned=1"), Q::Err(&["unassigned"])),
        // search / cursor
        (s("search=a+b"), Q::Ok("search=a+b", None)),
        (s("search=Tech%20Corp"), Q::Ok("search=Tech+Corp", None)),
        (s("search=caf%C3%A9"), Q::Ok("search=caf%C3%A9", None)),
        (s("search="), Q::Err(&["search"])),
        (s("search=%FF"), Q::Err(&["search"])),
        (format!("search={}", "é".repeat(l.max_search_len)), Q::Accepted),
        (format!("search={}", "é".repeat(l.max_search_len + 1)), Q::Err(&["search"])),
        (s("cursor=2024-01-15T10%3A30%3A00Z"), Q::Ok("cursor=2024-01-15T10%3A30%3A00Z", None)),
        (s("cursor="), Q::Err(&["cursor"])),
        (format!("cursor={}", "c".repeat(l.max_value_len)), Q::Accepted),
        (format!("cursor={}", "c".repeat(l.max_value_len + 1)), Q::Err(&["cursor"])),
        // customFields
        (
            s(r#"customFields=[{"value":{"text":"x"},"id":9},{"id":5,"value":{"number":100}}]"#),
            Q::Ok("customFields=%5B%7B%22id%22%3A5%2C%22value%22%3A%7B%22number%22%3A100%7D%7D%2C%7B%22id%22%3A9%2C%22value%22%3A%7B%22text%22%3A%22x%22%7D%7D%5D", None),
        ),
        (s(r#"customFields=[{"id":1,"value":{"date":"2024-01-01"}},{"id":2,"value":{"boolean":true}},{"id":3,"value":{"select":4}},{"id":4,"value":{"multi_select":[2,1]}}]"#), Q::Accepted),
        (s("customFields=[]"), Q::Ok("customFields=%5B%5D", None)),
        (s("customFields=nope"), Q::Err(&["customFields"])),
        (s(r#"customFields={"id":1}"#), Q::Err(&["customFields"])),
        (s("customFields=[1]"), Q::Err(&["customFields[0]"])),
        (s(r#"customFields=[{"id":0,"value":{"text":"x"}}]"#), Q::Err(&["customFields[0].id"])),
        (s(r#"customFields=[{"id":"1","value":{"text":"x"}}]"#), Q::Err(&["customFields[0].id"])),
        (s(r#"customFields=[{"value":{"text":"x"}}]"#), Q::Err(&["customFields[0].id"])),
        (s(r#"customFields=[{"id":1}]"#), Q::Err(&["customFields[0].value"])),
        (s(r#"customFields=[{"id":1,"value":{"text":5}}]"#), Q::Err(&["customFields[0].value"])),
        (s(r#"customFields=[{"id":1,"value":{"number":"5"}}]"#), Q::Err(&["customFields[0].value"])),
        (s(r#"customFields=[{"id":1,"value":{"date":20240101}}]"#), Q::Err(&["customFields[0].value"])),
        (s(r#"customFields=[{"id":1,"value":{"boolean":"true"}}]"#), Q::Err(&["customFields[0].value"])),
        (s(r#"customFields=[{"id":1,"value":{"select":1.5}}]"#), Q::Err(&["customFields[0].value"])),
        (s(r#"customFields=[{"id":1,"value":{"multi_select":[1,"2"]}}]"#), Q::Err(&["customFields[0].value"])),
        (s(r#"customFields=[{"id":1,"value":{"colour":"red"}}]"#), Q::Err(&["customFields[0].value"])),
        (s(r#"customFields=[{"id":1,"value":{"text":"a","number":1}}]"#), Q::Err(&["customFields[0].value"])),
        (s(r#"customFields=[{"id":1,"value":{}}]"#), Q::Err(&["customFields[0].value"])),
        (s(r#"customFields=[{"id":1,"value":{"text":"a"},"op":"eq"}]"#), Q::Err(&["customFields[0]"])),
        (s(r#"customFields=[{"id":1,"value":{"text":"a"}},{"id":1,"value":{"text":"b"}}]"#), Q::Err(&["customFields[1].id"])),
        // sort
        (s(r#"sort=[{"asc":false,"type":"tier"},{"type":"stage","asc":true}]"#),
            Q::Ok("sort=%5B%7B%22type%22%3A%22tier%22%2C%22asc%22%3Afalse%7D%2C%7B%22type%22%3A%22stage%22%2C%22asc%22%3Atrue%7D%5D", None)),
        (s(r#"sort=[{"type":"name","asc":true}]"#), Q::Err(&["sort[0].type"])),
        (s(r#"sort=[{"type":"stage","asc":"yes"}]"#), Q::Err(&["sort[0].asc"])),
        (s(r#"sort=[{"type":"stage"}]"#), Q::Err(&["sort[0].asc"])),
        (s(r#"sort=[{"type":"stage","asc":true,"nulls":"last"}]"#), Q::Err(&["sort[0]"])),
        (s(r#"sort=[{"type":"stage","asc":true},{"type":"stage","asc":false}]"#), Q::Err(&["sort[1].type"])),
        (s(r#"sort={"type":"stage","asc":true}"#), Q::Err(&["sort"])),
        // unknown / repeated / limits
        (s("page=2"), Q::Err(&["page"])),
        (s("Tags=1"), Q::Err(&["Tags"])),
        (s("tags=1&tags=2"), Q::Err(&["tags"])),
        (s("view=all&view=all"), Q::Err(&["view"])),
        (format!("search={}", "a".repeat(l.max_query_len)), Q::Err(&["query"])),
        // every problem listed
        (s("view=x&tags=0&page=1&assigned=1&unassigned=1&sort=[]&sort=[]"),
            Q::Err(&["view", "tags", "page", "unassigned", "sort"])),
        // canonical ordering across parameters
        (s("view=all&stages=2,1&search=Tech&userId=7"), Q::Ok("search=Tech&stages=1%2C2&view=all", Some(7))),
    ];
    // Percent-encoded JSON is the normal client form; it must give the same result.
    let encoded: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("sort", r#"[{"type":"stage","asc":true}]"#)
        .finish();
    cases.push((
        encoded,
        Q::Ok(
            "sort=%5B%7B%22type%22%3A%22stage%22%2C%22asc%22%3Atrue%7D%5D",
            None,
        ),
    ));
    cases
}

#[test]
fn query_rules_table() {
    let limits = QueryLimits::default();
    for (raw, want) in query_cases() {
        let got = parse_list_query(Some(&raw), &limits);
        match (want, got) {
            (Q::Ok(canonical, user), Ok(q)) => {
                assert_eq!(q.canonical(), canonical, "{raw}");
                assert_eq!(q.client_user_id(), user, "{raw}");
            }
            (Q::Accepted, Ok(_)) => {}
            (Q::Err(paths), Err(errs)) => assert_eq!(fields(&errs), set(paths), "{raw}: {errs:?}"),
            (Q::Ok(..) | Q::Accepted, Err(errs)) => panic!("{raw}: wanted Ok, got {errs:?}"),
            (Q::Err(_), Ok(q)) => panic!("{raw}: wanted Err, got {q:?}"),
        }
    }
}

#[test]
fn none_is_the_empty_query() {
    let q = parse_list_query(None, &QueryLimits::default()).unwrap();
    assert_eq!(q.canonical(), "");
    assert_eq!(q.client_user_id(), None);
    assert_eq!(q.upstream_query(456), "userId=456");
}

#[test]
fn upstream_query_orders_user_id_by_name() {
    let q = parse_list_query(
        Some("view=all&users=3&unassigned=1&userId=9&search=a"),
        &QueryLimits::default(),
    )
    .unwrap();
    assert_eq!(q.canonical(), "search=a&unassigned=1&users=3&view=all");
    // The mapped user wins over whatever the client sent.
    assert_eq!(
        q.upstream_query(456),
        "search=a&unassigned=1&userId=456&users=3&view=all"
    );
}

#[test]
fn missing_view_differs_from_view_all() {
    let l = QueryLimits::default();
    let a = parse_list_query(Some("search=x"), &l).unwrap();
    let b = parse_list_query(Some("search=x&view=all"), &l).unwrap();
    assert_ne!(a, b);
    assert_ne!(a.canonical(), b.canonical());
}

#[test]
fn search_case_and_spacing_are_kept() {
    let l = QueryLimits::default();
    let a = parse_list_query(Some("search=Tech"), &l).unwrap();
    let b = parse_list_query(Some("search=tech"), &l).unwrap();
    let c = parse_list_query(Some("search=tech+"), &l).unwrap();
    assert_ne!(a.canonical(), b.canonical());
    assert_ne!(b.canonical(), c.canonical());
}

#[test]
fn equivalent_spellings_normalize_equal() {
    let l = QueryLimits::default();
    let pairs = [
        ("tags=2,1", "tags=1%2C2"),
        ("tags=1,2,2", "tags=1, 2"),
        ("search=a b", "search=a+b"),
        ("search=a%20b", "search=a+b"),
        (
            r#"customFields=[{"id":2,"value":{"boolean":true}},{"id":1,"value":{"text":"x"}}]"#,
            r#"customFields=[ {"value": {"text": "x"}, "id": 1}, {"id": 2, "value": {"boolean": true}} ]"#,
        ),
        (
            r#"sort=[{"type":"tier","asc":true}]"#,
            r#"sort=[{"asc": true, "type": "tier"}]"#,
        ),
    ];
    for (a, b) in pairs {
        let qa = parse_list_query(Some(a), &l).unwrap();
        let qb = parse_list_query(Some(b), &l).unwrap();
        assert_eq!(qa, qb, "{a} vs {b}");
    }
}

#[test]
fn ids_at_max_are_normalized() {
    let l = QueryLimits::default();
    let raw = format!(
        "tags={}",
        (1..=l.max_ids)
            .rev()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let q = parse_list_query(Some(&raw), &l).unwrap();
    let expected: String = form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "tags",
            &(1..=l.max_ids)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(","),
        )
        .finish();
    assert_eq!(q.canonical(), expected);
}

#[test]
fn query_length_boundary() {
    let l = QueryLimits {
        max_query_len: 20,
        ..QueryLimits::default()
    };
    let at = format!("search={}", "a".repeat(13));
    assert_eq!(at.len(), 20);
    assert!(parse_list_query(Some(&at), &l).is_ok());
    let over = format!("search={}", "a".repeat(14));
    let errs = parse_list_query(Some(&over), &l).unwrap_err();
    assert_eq!(fields(&errs), set(&["query"]));
}
