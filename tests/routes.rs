//! The whole JourneyBee API behind the gateway, over real HTTP against the simulator: every
//! route is local access control, id and query validation first; lookups are cached per
//! upstream key and invalidated by writes; partnership writes are checked against the
//! company's real lookups; every write gets the create guarantees.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::Full;
use serde_json::{json, Value};

async fn send(h: &Harness, method: Method, path: &str, token: &str, body: Option<&str>) -> Resp {
    let mut b = h.request(method, path, Some(token));
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    h.send(
        b.body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
            .unwrap(),
    )
    .await
}

fn with_references() -> Opts {
    Opts {
        check_references: true,
        ..Opts::default()
    }
}

#[tokio::test]
async fn a_read_user_cannot_write_anywhere_and_nothing_reaches_upstream() {
    let h = Harness::start().await;
    let bob = h.token("bob@corp.test");
    let pid = h.sim.partnership_ids()[0];
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/tags".to_string(),
            Some(r#"{"label":"x","association":"partner"}"#),
        ),
        (
            Method::PATCH,
            format!("/api/v1/partnerships/{pid}"),
            Some(r#"{"tierId":1}"#),
        ),
        (Method::DELETE, format!("/api/v1/partnerships/{pid}"), None),
        (
            Method::POST,
            "/api/v1/leads".to_string(),
            Some(r#"{"associationType":"referral"}"#),
        ),
        (Method::DELETE, "/api/v1/leads/7000".to_string(), None),
    ] {
        let r = send(&h, method.clone(), &path, &bob, body).await;
        assert_eq!(
            r.assert_error(403),
            "Write access required for this operation",
            "{method} {path}"
        );
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"insufficient_scope\"")
        );
    }
    assert_eq!(h.upstream_count(), 0);
}

#[tokio::test]
async fn ids_and_queries_are_validated_before_anything_is_sent() {
    let h = Harness::start().await;
    let alice = h.token("alice@corp.test");
    let r = send(
        &h,
        Method::PATCH,
        "/api/v1/partnerships/abc",
        &alice,
        Some("{}"),
    )
    .await;
    assert_eq!(r.assert_error(400), "Invalid path parameter");
    assert_eq!(r.json()["details"][0]["field"], "partnershipId");
    let r = send(&h, Method::GET, "/api/v1/companies/1/leads/x", &alice, None).await;
    assert_eq!(r.json()["details"][0]["field"], "leadId");
    // Unknown and repeated parameters on a documented query.
    let r = h.get("/api/v1/tiers?foo=1", Some(&alice)).await;
    assert_eq!(r.assert_error(400), "Invalid query parameters");
    let r = h
        .get(
            "/api/v1/tags?association=lead&association=partner",
            Some(&alice),
        )
        .await;
    r.assert_error(400);
    let r = h.get("/api/v1/tags?association=nope", Some(&alice)).await;
    assert!(
        r.text().contains("lead, lead_deal, partner, card"),
        "{}",
        r.text()
    );
    let r = h.get("/api/v1/leads?status=new,bogus", Some(&alice)).await;
    r.assert_error(400);
    assert_eq!(h.upstream_count(), 0);
    // lead-deals is only partly documented: other parameters are forwarded as given.
    let r = h
        .get("/api/v1/lead-deals?undocumentedFilter=7", Some(&alice))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = h.sim.requests();
    let last = sent.last().unwrap();
    assert_eq!(last.path, "/api/v1/lead-deals");
    assert_eq!(last.query.as_deref(), Some("undocumentedFilter=7"));
}

#[tokio::test]
async fn lead_lists_force_the_callers_user_id() {
    let h = Harness::start().await;
    let alice = h.token("alice@corp.test");
    let r = h.get("/api/v1/leads?status=new", Some(&alice)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let q = h.sim.requests().last().unwrap().query.clone().unwrap();
    assert_eq!(q, format!("status=new&userId={}", h.alice_id));
    let r = h
        .get(&format!("/api/v1/leads?userId={}", h.bob_id), Some(&alice))
        .await;
    assert_eq!(
        r.assert_error(403),
        "userId does not match the authenticated user"
    );
    assert_eq!(h.upstream_count(), 1);
}

#[tokio::test]
async fn lookups_are_cached_per_key_and_a_write_invalidates_them() {
    let h = Harness::start().await;
    let alice = h.token("alice@corp.test");
    let carol = h.token("carol@corp.test");
    let bob = h.token("bob@corp.test");
    let r = h.get("/api/v1/tags", Some(&alice)).await;
    assert_eq!(
        (r.status.as_u16(), r.header("x-cache")),
        (200, Some("MISS"))
    );
    // Company-wide: carol (same upstream key) shares alice's entry; bob (another key) not.
    let r = h.get("/api/v1/tags", Some(&carol)).await;
    assert_eq!(r.header("x-cache"), Some("HIT"));
    let max_age: u64 = r
        .header("cache-control")
        .and_then(|v| v.strip_prefix("private, max-age="))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        max_age > 60,
        "lookups live [cache] lookup_ttl (5 min): {max_age}"
    );
    assert_eq!(
        h.get("/api/v1/tags", Some(&bob)).await.header("x-cache"),
        Some("MISS")
    );
    assert_eq!(h.sim.requests_to("GET", "/api/v1/tags"), 2);

    // POST /tags makes GET /tags stale for every user of the key, at once.
    let r = send(
        &h,
        Method::POST,
        "/api/v1/tags",
        &alice,
        Some(r#"{"label":"Gateway-made","association":"partner"}"#),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = h.get("/api/v1/tags", Some(&carol)).await;
    assert_eq!(r.header("x-cache"), Some("MISS"));
    assert!(r.text().contains("Gateway-made"));
    // ...but not another family of data.
    assert_eq!(
        h.get("/api/v1/tiers", Some(&alice)).await.header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        h.get("/api/v1/tiers", Some(&alice)).await.header("x-cache"),
        Some("HIT")
    );
}

#[tokio::test]
async fn updating_or_ending_a_partnership_invalidates_partnership_lists() {
    let h = Harness::start().await;
    let alice = h.token("alice@corp.test");
    let list = "/api/v1/partnerships?view=all";
    assert_eq!(
        h.get(list, Some(&alice)).await.header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        h.get(list, Some(&alice)).await.header("x-cache"),
        Some("HIT")
    );
    let pid = h.sim.partnership_ids()[0];
    let r = send(
        &h,
        Method::PATCH,
        &format!("/api/v1/partnerships/{pid}"),
        &alice,
        Some(r#"{"tierId":2}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        h.get(list, Some(&alice)).await.header("x-cache"),
        Some("MISS")
    );
    let r = send(
        &h,
        Method::DELETE,
        &format!("/api/v1/partnerships/{pid}"),
        &alice,
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        h.get(list, Some(&alice)).await.header("x-cache"),
        Some("MISS")
    );
}

#[tokio::test]
async fn a_keyed_update_is_sent_once_and_replayed() {
    let h = Harness::start().await;
    let alice = h.token("alice@corp.test");
    let pid = h.sim.partnership_ids()[0];
    let path = format!("/api/v1/partnerships/{pid}");
    let patch = |h: &Harness| {
        h.request(Method::PATCH, &path, Some(&alice))
            .header("content-type", "application/json")
            .header("idempotency-key", "upd-1")
            .body(Full::new(Bytes::from_static(br#"{"tierId":3}"#)))
            .unwrap()
    };
    let first = h.send(patch(&h)).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let again = h.send(patch(&h)).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text(), first.text());
    assert_eq!(h.sim.requests_to("PATCH", &path), 1);
}

#[tokio::test]
async fn unknown_references_are_refused_locally_with_every_problem() {
    let h = Harness::with(with_references()).await;
    let alice = h.token("alice@corp.test");
    let mut body: Value = serde_json::from_str(&create_body("refs-gw.com")).unwrap();
    body["tierId"] = json!(999);
    body["stageUuid"] = json!("00000000-0000-4000-8000-000000000000");
    body["tags"] = json!([10, 9999]);
    body["assignedUsers"] = json!([1]);
    let r = h
        .post_json("/api/v1/partnerships", Some(&alice), &body.to_string())
        .await;
    assert_eq!(
        r.assert_error(400),
        "Invalid field values or stage UUID not found"
    );
    let fields: Vec<String> = r.json()["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_string())
        .collect();
    for f in ["tierId", "stageUuid", "tags[1]", "assignedUsers[0]"] {
        assert!(fields.contains(&f.to_string()), "{f} in {fields:?}");
    }
    assert_eq!(h.sim.requests_to("POST", "/api/v1/partnerships"), 0);

    // The same body with the company's real references goes through, and the lookups were
    // fetched once per TTL per key: a second create reads them from the cache.
    let tier = h.sim.tiers()[0]["id"].as_u64().unwrap();
    body["tierId"] = json!(tier);
    body.as_object_mut().unwrap().remove("stageUuid");
    body["tags"] = json!([10]);
    body["assignedUsers"] = json!([h.alice_id]);
    let r = h
        .post_json("/api/v1/partnerships", Some(&alice), &body.to_string())
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    body["emails"][0]["email"] = json!("jane@refs2-gw.com");
    let r = h
        .post_json("/api/v1/partnerships", Some(&alice), &body.to_string())
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(h.sim.requests_to("GET", "/api/v1/tiers"), 1);
    assert_eq!(h.sim.requests_to("GET", "/api/v1/custom-fields"), 1);
    let m = h.admin_get("/metrics").await.text();
    assert!(
        m.contains("jbgw_reference_checks_total{result=\"refused\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("jbgw_reference_checks_total{result=\"passed\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn custom_fields_are_checked_against_their_definitions() {
    let h = Harness::with(with_references()).await;
    let alice = h.token("alice@corp.test");
    let defs = h.sim.custom_fields();
    let select = defs
        .iter()
        .find(|d| d["type"] == "select" && d["category"] == "partner")
        .expect("a partner select field");
    let other = defs
        .iter()
        .find(|d| d["category"] == "partner" && d["type"] != "text" && d["id"] != select["id"])
        .expect("another partner field");
    let lead_field = defs
        .iter()
        .find(|d| {
            d["category"] == "lead"
                && ["text", "textarea", "number"].contains(&d["type"].as_str().unwrap())
        })
        .expect("a lead text or number field");
    let lead_value = match lead_field["type"].as_str().unwrap() {
        "number" => json!({"number": 1}),
        _ => json!({"text": "x"}),
    };
    let mut body: Value = serde_json::from_str(&create_body("cf-gw.com")).unwrap();
    body["customFields"] = json!([
        {"customFieldId": select["id"], "type": "select", "value": {"select": 987654}},
        {"customFieldId": other["id"], "type": "text", "value": {"text": "x"}},
        {"customFieldId": lead_field["id"], "type": lead_field["type"], "value": lead_value},
        {"customFieldId": 424242, "type": "text", "value": {"text": "x"}},
    ]);
    let r = h
        .post_json("/api/v1/partnerships", Some(&alice), &body.to_string())
        .await;
    r.assert_error(400);
    let details = r.json()["details"].to_string();
    for needle in [
        "customFields[0].value.select",
        "customFields[1].type",
        "not a partner field",
        "no custom field 424242",
    ] {
        assert!(details.contains(needle), "{needle} in {details}");
    }
    assert_eq!(h.sim.requests_to("POST", "/api/v1/partnerships"), 0);
}

#[tokio::test]
async fn a_create_whose_lookups_cannot_be_read_is_checked_by_the_schema_alone() {
    let h = Harness::with(with_references()).await;
    let alice = h.token("alice@corp.test");
    // Upstream refuses every call (the lookups too); the create is still forwarded, never
    // refused for a lookup the gateway could not read.
    h.sim.set_fault(journeybee_sim::Fault::Status(500));
    let mut body: Value = serde_json::from_str(&create_body("down-gw.com")).unwrap();
    body["tierId"] = json!(999);
    let r = h
        .post_json("/api/v1/partnerships", Some(&alice), &body.to_string())
        .await;
    assert_eq!(
        r.status,
        500,
        "JourneyBee's answer, passed through: {}",
        r.text()
    );
    assert_eq!(h.sim.requests_to("POST", "/api/v1/partnerships"), 1);
    let m = h.admin_get("/metrics").await.text();
    assert!(
        m.contains("jbgw_reference_checks_total{result=\"skipped\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn routes_can_be_disabled_and_users_restricted() {
    let h = Harness::with(Opts {
        tail: r#"
[routes]
disabled = ["DELETE /api/v1/partnerships/{partnershipId}", "GET /api/v1/users"]
"#
        .into(),
        ..Opts::default()
    })
    .await;
    let alice = h.token("alice@corp.test");
    let pid = h.sim.partnership_ids()[0];
    let r = send(
        &h,
        Method::DELETE,
        &format!("/api/v1/partnerships/{pid}"),
        &alice,
        None,
    )
    .await;
    r.assert_error(405);
    assert_eq!(r.header("allow"), Some("PATCH"));
    h.get("/api/v1/users", Some(&alice)).await.assert_error(404);
    assert_eq!(h.upstream_count(), 0);
    // The document describes what is served.
    let doc = h.get("/openapi.json", None).await.json();
    assert!(doc["paths"]["/api/v1/users"].is_null());
    assert!(doc["paths"]["/api/v1/partnerships/{partnershipId}"]["delete"].is_null());
    assert!(!doc["paths"]["/api/v1/partnerships/{partnershipId}"]["patch"].is_null());
}

#[tokio::test]
async fn a_user_restricted_to_some_routes_gets_403_elsewhere() {
    // Appended after the [[users]] table: a fourth, restricted user.
    let opts = Opts {
        tail: r#"
[[users]]
subject = "dash@corp.test"
name = "dashboard"
upstream_key = "read"
user_id = 463
access = "read"
routes = ["GET /api/v1/partnerships", "GET /api/v1/tiers"]
"#
        .into(),
        ..Opts::default()
    };
    let h = Harness::with(opts).await;
    let dash = h.token("dash@corp.test");
    assert_eq!(h.get("/api/v1/tiers", Some(&dash)).await.status, 200);
    let r = h.get("/api/v1/tags", Some(&dash)).await;
    assert_eq!(
        r.assert_error(403),
        "This operation is not allowed for this user"
    );
    assert_eq!(h.sim.requests_to("GET", "/api/v1/tags"), 0);
}

#[tokio::test]
async fn the_openapi_document_is_served_without_a_token() {
    let h = Harness::start().await;
    let r = h.get("/openapi.json", None).await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/partnerships",
        "/api/v1/tiers",
        "/api/v1/leads/{leadId}/notes/{noteId}",
        "/api/v1/lead-deals",
    ] {
        assert!(!doc["paths"][path].is_null(), "{path}");
    }
    assert_eq!(h.upstream_count(), 0);
}
