//! Write bodies of the routes beyond the partnership create, over real HTTP: a body that breaks
//! its documented schema is a local 400 listing every problem in `details`, and the simulator
//! receives nothing; a valid one is forwarded byte for byte. Both documented bulk shapes (the
//! object and the docs' bare array) pass.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::Full;
use serde_json::{json, Value};

const UUID: &str = "123e4567-e89b-12d3-a456-426614174000";

async fn send_json(h: &Harness, method: Method, path: &str, body: &str) -> Resp {
    let token = h.token("alice@corp.test");
    h.send(
        h.request(method, path, Some(&token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await
}

/// The `field` of every entry of `details`, in order.
fn detail_fields(r: &Resp) -> Vec<String> {
    r.json()["details"]
        .as_array()
        .unwrap_or_else(|| panic!("no details: {}", r.text()))
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_bad_tag_is_refused_locally_with_every_problem() {
    let h = Harness::start().await;
    let before = h.upstream_count();
    let r = send_json(
        &h,
        Method::POST,
        "/api/v1/tags",
        r##"{"label": " ", "association": "deal", "background_color": "red", "colour": "#000000"}"##,
    )
    .await;
    r.assert_error(400);
    assert_eq!(
        detail_fields(&r),
        ["label", "association", "background_color", "colour"]
    );
    let details = r.json()["details"].clone();
    assert_eq!(
        details[1]["message"],
        "must be one of lead, lead_deal, partner, card"
    );
    assert_eq!(details[3]["message"], "unknown field");
    assert_eq!(h.upstream_count(), before, "nothing reaches the simulator");
    assert_eq!(h.sim.requests_to("POST", "/api/v1/tags"), 0);
}

#[tokio::test]
async fn every_checked_write_route_refuses_before_the_upstream() {
    let h = Harness::start().await;
    let before = h.upstream_count();
    let cases: Vec<(Method, &str, Value, &[&str])> = vec![
        (
            Method::POST,
            "/api/v1/tiers",
            json!({"text_color": "#FFF"}),
            &["label", "text_color"],
        ),
        (
            Method::POST,
            "/api/v1/categories",
            json!({"label": "x", "partner_type": "agency"}),
            &["partner_type"],
        ),
        (
            Method::PATCH,
            "/api/v1/categories",
            json!([{"id": 1, "label": "ok"}, {"id": 1, "label": ""}]),
            &["[1].id", "[1].label"],
        ),
        (
            Method::PATCH,
            "/api/v1/categories",
            json!({"categories": []}),
            &["categories"],
        ),
        (
            Method::POST,
            "/api/v1/stages/partner-stages",
            json!({"label": "Onboarding", "phase": "won", "series": -1}),
            &["partner_type", "phase", "series"],
        ),
        (
            Method::PATCH,
            "/api/v1/stages/partner-stages",
            json!({"stages": [{"label": "x"}, {"id": 2, "phase": "closed_won"}]}),
            &["stages[0].id", "stages[1].phase"],
        ),
        (
            Method::POST,
            "/api/v1/stages/lead-deal-stages",
            json!({"label": "Won"}),
            &["phase"],
        ),
        (
            Method::POST,
            "/api/v1/custom-fields",
            json!({"label": "Region", "type": "select", "category": "card"}),
            &["category", "options"],
        ),
        (
            Method::POST,
            "/api/v1/leads",
            json!({"email": "not-an-address", "source": "web"}),
            &["associationType", "email", "source"],
        ),
        (
            Method::PATCH,
            "/api/v1/leads/7001",
            json!({"status": "won", "customFields": [{"customFieldId": 1, "type": "number", "value": {"number": "1"}}]}),
            &["status", "customFields[0].value.number"],
        ),
        (
            Method::POST,
            "/api/v1/lead-deals",
            json!({"deal_value": -5, "stage_uuid": "won"}),
            &["lead_id", "deal_value", "stage_uuid"],
        ),
        (Method::PATCH, "/api/v1/lead-deals/5", json!({}), &[""]),
        (
            Method::PATCH,
            "/api/v1/contacts/3",
            json!({"email": "a@b", "firstName": "A"}),
            &["email", "firstName"],
        ),
        (
            Method::PATCH,
            "/api/v1/partnerships/1",
            json!({"tierId": 0, "stageUuid": UUID, "fallbackData": {"logo": "x"}, "partnerType": "referral"}),
            &["tierId", "fallbackData.logo", "partnerType"],
        ),
    ];
    for (method, path, body, fields) in cases {
        let r = send_json(&h, method.clone(), path, &body.to_string()).await;
        assert_eq!(r.status.as_u16(), 400, "{method} {path}: {}", r.text());
        assert_eq!(detail_fields(&r), fields, "{method} {path}");
    }
    assert_eq!(h.upstream_count(), before, "nothing reaches the simulator");
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_refused() {
    let h = Harness::start().await;
    let before = h.upstream_count();
    let r = send_json(&h, Method::POST, "/api/v1/tags", "label=VIP").await;
    assert_eq!(r.assert_error(400), "Request body is not valid JSON");
    // Only the bulk PATCH routes take a top-level array.
    let r = send_json(&h, Method::POST, "/api/v1/tags", r#"[{"label": "VIP"}]"#).await;
    assert_eq!(r.assert_error(400), "Request body must be a JSON object");
    let r = send_json(&h, Method::PATCH, "/api/v1/categories", r#""Tech""#).await;
    r.assert_error(400);
    // An undocumented body (contact create) must still be a JSON object or array.
    let r = send_json(&h, Method::POST, "/api/v1/contacts", "3").await;
    r.assert_error(400);
    assert_eq!(h.upstream_count(), before, "nothing reaches the simulator");
}

#[tokio::test]
async fn a_valid_tag_is_forwarded_byte_for_byte() {
    let h = Harness::start().await;
    let body =
        r##"{ "label" : "Gateway VIP",  "association":"partner", "background_color": "#112233" }"##;
    let r = send_json(&h, Method::POST, "/api/v1/tags", body).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    assert!(r.json()["id"].as_u64().is_some(), "{}", r.text());
    assert_eq!(h.sim.requests_to("POST", "/api/v1/tags"), 1);
    let sent = h
        .sim
        .requests()
        .into_iter()
        .rfind(|q| q.method == Method::POST && q.path == "/api/v1/tags")
        .unwrap();
    assert_eq!(sent.body, body.as_bytes());
    assert!(h.sim.tags().iter().any(|t| t["label"] == "Gateway VIP"));
}

#[tokio::test]
async fn both_bulk_shapes_reach_the_simulator() {
    let h = Harness::start().await;
    let ids: Vec<u64> = h
        .sim
        .categories()
        .iter()
        .filter_map(|c| c["id"].as_u64())
        .collect();
    assert!(ids.len() >= 2, "the simulator has categories");
    // The docs' curl example: a bare array.
    let bare = json!([{"id": ids[0], "label": "Renamed bare"}]).to_string();
    let r = send_json(&h, Method::PATCH, "/api/v1/categories", &bare).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    // The documented object.
    let object = json!({"categories": [{"id": ids[1], "label": "Renamed object"}]}).to_string();
    let r = send_json(&h, Method::PATCH, "/api/v1/categories", &object).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(h.sim.requests_to("PATCH", "/api/v1/categories"), 2);
    let labels: Vec<Value> = h
        .sim
        .categories()
        .iter()
        .map(|c| c["label"].clone())
        .collect();
    assert!(labels.contains(&json!("Renamed bare")), "{labels:?}");
    assert!(labels.contains(&json!("Renamed object")), "{labels:?}");
}
