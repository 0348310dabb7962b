//! Integration tests of the simulator's routes beyond the partnership list
//! and create (lookups, partnership updates, contacts, leads, notes, deals),
//! over real HTTP.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use journeybee_sim::{Fault, SimConfig, SimHandle, Simulator, SIM_READ_KEY, SIM_WRITE_KEY};
use serde_json::{json, Value};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

struct T {
    sim: SimHandle,
    c: HttpClient,
}

impl T {
    async fn start(config: SimConfig) -> Self {
        let sim = Simulator::start("127.0.0.1:0".parse().expect("addr"), config)
            .await
            .expect("simulator starts");
        T {
            sim,
            c: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn default() -> Self {
        Self::start(SimConfig::default()).await
    }

    async fn send(&self, method: Method, pq: &str, key: Option<&str>, body: Option<&str>) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{pq}", self.sim.base_url()));
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
            .expect("request");
        let resp = self.c.request(req).await.expect("request succeeds");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        Resp {
            status,
            headers,
            json,
        }
    }

    async fn get(&self, pq: &str) -> Resp {
        self.send(Method::GET, pq, Some(SIM_READ_KEY), None).await
    }

    async fn write(&self, method: Method, path: &str, body: &Value) -> Resp {
        self.send(method, path, Some(SIM_WRITE_KEY), Some(&body.to_string()))
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> Resp {
        self.write(Method::POST, path, body).await
    }

    async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.write(Method::PATCH, path, body).await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, Some(SIM_WRITE_KEY), None)
            .await
    }
}

fn items(r: &Resp) -> &Vec<Value> {
    r.json.as_array().expect("array body")
}

fn error_of(r: &Resp) -> &str {
    r.json["error"].as_str().expect("error message")
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn sorted(ks: &[&'static str]) -> Vec<&'static str> {
    ks.iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn ids(list: &[Value]) -> HashSet<u64> {
    list.iter().map(|v| v["id"].as_u64().expect("id")).collect()
}

#[tokio::test]
async fn lookups_have_the_documented_shapes() {
    let t = T::default().await;
    let cases: &[(&str, &[&'static str])] = &[
        (
            "/api/v1/users",
            &[
                "id",
                "created_at",
                "email",
                "first_name",
                "last_name",
                "role",
                "position",
                "email_verified",
                "disabled_at",
                "color",
                "profile_image_id",
                "profile_image_uuid",
                "country_id",
                "country_label",
                "country_code",
            ],
        ),
        (
            "/api/v1/tags",
            &[
                "id",
                "uuid",
                "label",
                "background_color",
                "text_color",
                "association",
                "partner_type",
                "company_id",
            ],
        ),
        (
            "/api/v1/tiers",
            &[
                "id",
                "uuid",
                "label",
                "background_color",
                "text_color",
                "partner_type",
                "company_id",
            ],
        ),
        (
            "/api/v1/categories",
            &[
                "id",
                "uuid",
                "label",
                "partner_type",
                "company_id",
                "created_at",
                "updated_at",
            ],
        ),
        (
            "/api/v1/stages/partner-stages",
            &[
                "id",
                "uuid",
                "label",
                "series",
                "phase",
                "partner_type",
                "company_id",
            ],
        ),
        (
            "/api/v1/stages/lead-deal-stages",
            &["id", "uuid", "label", "series", "phase", "partner_type"],
        ),
        (
            "/api/v1/custom-fields",
            &[
                "id",
                "uuid",
                "label",
                "type",
                "category",
                "partner_type",
                "required",
                "shared",
                "options",
            ],
        ),
    ];
    for (path, want) in cases {
        let r = t.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.headers["content-type"], "application/json");
        assert!(!items(&r).is_empty(), "{path}");
        for item in items(&r) {
            assert_eq!(keys(item), sorted(want), "{path}: {item}");
        }
    }
    // The accessors give what the routes serve.
    assert_eq!(items(&t.get("/api/v1/tiers").await), &t.sim.tiers());
    assert_eq!(items(&t.get("/api/v1/tags").await), &t.sim.tags());
    assert_eq!(
        items(&t.get("/api/v1/custom-fields").await),
        &t.sim.custom_fields()
    );
    assert_eq!(
        items(&t.get("/api/v1/categories").await),
        &t.sim.categories()
    );
    assert_eq!(
        items(&t.get("/api/v1/stages/partner-stages").await),
        &t.sim.partner_stages()
    );
    assert_eq!(
        items(&t.get("/api/v1/stages/lead-deal-stages").await),
        &t.sim.deal_stages()
    );

    // Enums and option shapes.
    for f in t.sim.custom_fields() {
        let ty = f["type"].as_str().unwrap();
        assert!([
            "text",
            "textarea",
            "number",
            "date",
            "boolean",
            "select",
            "multi_select"
        ]
        .contains(&ty));
        assert!(["lead", "lead_deal", "partner"].contains(&f["category"].as_str().unwrap()));
        assert!(f["required"].is_boolean());
        if ty == "select" || ty == "multi_select" {
            let opts = f["options"].as_array().expect("options");
            assert!(!opts.is_empty());
            for o in opts {
                assert_eq!(keys(o), vec!["id", "label"]);
            }
        } else {
            assert!(f["options"].is_null(), "{f}");
        }
    }
    for s in t.sim.partner_stages() {
        assert!(["discovery", "evaluation", "active", "inactive"]
            .contains(&s["phase"].as_str().unwrap()));
        assert_eq!(s["company_id"], 123);
    }
    for s in t.sim.deal_stages() {
        assert!(["discovery", "negotiation", "closed_won", "closed_lost"]
            .contains(&s["phase"].as_str().unwrap()));
    }
    let stage_uuids: Vec<String> = t
        .sim
        .partner_stages()
        .iter()
        .map(|s| s["uuid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stage_uuids, t.sim.stage_uuids());
}

#[tokio::test]
async fn generated_partnerships_reference_existing_lookups() {
    let t = T::start(SimConfig {
        page_size: 10_000,
        ..SimConfig::default()
    })
    .await;
    let list = t.get("/api/v1/partnerships?userId=456&view=all").await;
    assert_eq!(items(&list).len(), 300);
    let tiers = ids(&t.sim.tiers());
    let categories = ids(&t.sim.categories());
    let stages = ids(&t.sim.partner_stages());
    let users = ids(items(&t.get("/api/v1/users").await));
    let partner_tags: HashSet<u64> = ids(items(&t.get("/api/v1/tags?association=partner").await));
    let partner_fields = ids(items(
        &t.get("/api/v1/custom-fields?category=partner").await,
    ));
    assert_eq!(users, t.sim.user_ids().into_iter().collect());
    let mut seen_fields = HashSet::new();
    for p in items(&list) {
        assert!(tiers.contains(&p["tier"]["id"].as_u64().unwrap()));
        assert!(categories.contains(&p["category"]["id"].as_u64().unwrap()));
        assert!(stages.contains(&p["stage_id"].as_u64().unwrap()));
        for u in p["assigned_users"].as_array().unwrap() {
            assert!(users.contains(&u["id"].as_u64().unwrap()));
        }
        for tag in p["tags"].as_array().unwrap() {
            assert!(partner_tags.contains(&tag["id"].as_u64().unwrap()));
        }
        for f in p["customFields"].as_array().unwrap() {
            let id = f["id"].as_u64().unwrap();
            assert!(partner_fields.contains(&id));
            seen_fields.insert(id);
        }
    }
    assert_eq!(seen_fields, partner_fields, "every partner field is used");
    assert_eq!(
        t.sim.partnership_ids(),
        items(&list)
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect::<Vec<_>>()
    );
    // The docs' example references exist: tier 2, category 3, user 456,
    // tags 10 and 11, contact tags 1 and 2, fields 5 (number) and 6 (select, option 2).
    let tags = ids(&t.sim.tags());
    for id in [1, 2, 10, 11] {
        assert!(tags.contains(&id), "tag {id}");
    }
    let fields = t.sim.custom_fields();
    let f5 = fields.iter().find(|f| f["id"] == 5).unwrap();
    assert_eq!(f5["type"], "number");
    let f6 = fields.iter().find(|f| f["id"] == 6).unwrap();
    assert_eq!(f6["type"], "select");
    assert!(f6["options"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["id"] == 2));
}

#[tokio::test]
async fn lookup_filters() {
    let t = T::default().await;
    for association in ["lead", "lead_deal", "partner", "card"] {
        let r = t
            .get(&format!("/api/v1/tags?association={association}"))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(!items(&r).is_empty());
        assert!(items(&r).iter().all(|i| i["association"] == association));
    }
    let r = t
        .get("/api/v1/tags?association=lead&partner_type=referral")
        .await;
    assert!(items(&r)
        .iter()
        .all(|i| i["partner_type"].is_null() || i["partner_type"] == "referral"));
    assert!(items(&r).iter().any(|i| i["partner_type"] == "referral"));
    assert!(!items(&r).iter().any(|i| i["partner_type"] == "reseller"));
    for bad in [
        "/api/v1/tags?association=company",
        "/api/v1/tags?partner_type=agency",
        "/api/v1/custom-fields?category=card",
    ] {
        let r = t.get(bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.json["error"].is_string());
    }
    for category in ["lead", "lead_deal", "partner"] {
        let r = t
            .get(&format!("/api/v1/custom-fields?category={category}"))
            .await;
        assert!(!items(&r).is_empty());
        assert!(items(&r).iter().all(|i| i["category"] == category));
    }
    let active = t.get("/api/v1/users").await;
    let all = t.get("/api/v1/users?indirect=1").await;
    assert_eq!(items(&active).len(), 8);
    assert!(items(&all).len() > items(&active).len());
    assert!(items(&all).iter().any(|u| u["role"] == "indirect"));
    assert!(items(&all).iter().any(|u| !u["disabled_at"].is_null()));
    assert!(items(&active).iter().all(|u| u["disabled_at"].is_null()));
    assert_eq!(t.sim.users(true).len(), items(&all).len());
}

#[tokio::test]
async fn lookup_creates_validate_and_change_the_lookups() {
    let t = T::default().await;
    // A read-only key may not write, whatever the route.
    for (method, path) in [
        (Method::POST, "/api/v1/tags"),
        (Method::POST, "/api/v1/tiers"),
        (Method::PATCH, "/api/v1/categories"),
        (Method::DELETE, "/api/v1/partnerships/1000"),
        (Method::PATCH, "/api/v1/leads/7000"),
    ] {
        let r = t
            .send(method, path, Some(SIM_READ_KEY), Some(r#"{"label":"x"}"#))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(error_of(&r), "Write access required for this operation");
    }

    // Tags.
    for bad in [
        json!({"association": "lead"}),
        json!({"label": "  ", "association": "lead"}),
        json!({"label": "X"}),
        json!({"label": "X", "association": "company"}),
        json!({"label": "X", "association": "lead", "background_color": "red"}),
        json!({"label": "X", "association": "lead", "partner_type": "agency"}),
        json!(["label"]),
    ] {
        let r = t.post("/api/v1/tags", &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.json["error"].is_string());
    }
    let before = t.sim.tags().len();
    let r = t
        .post(
            "/api/v1/tags",
            &json!({"label": "Webinar", "association": "lead", "partner_type": "reseller"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(keys(&r.json), vec!["id", "uuid"]);
    let tag_id = r.json["id"].as_u64().unwrap();
    assert_eq!(t.sim.tags().len(), before + 1);
    let listed = t.get("/api/v1/tags?association=lead").await;
    let created = items(&listed).iter().find(|x| x["id"] == tag_id).unwrap();
    assert_eq!(created["background_color"], "#6B7280");
    assert_eq!(created["text_color"], "#FFFFFF");
    assert_eq!(created["uuid"], r.json["uuid"]);

    // Tiers and categories.
    let r = t
        .post("/api/v1/tiers", &json!({"background_color": "#000000"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = t
        .post(
            "/api/v1/tiers",
            &json!({"label": "Diamond", "background_color": "#b9f2ff"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let tier_id = r.json["id"].as_u64().unwrap();
    assert_eq!(tier_id, 5);
    assert!(ids(&t.sim.tiers()).contains(&5));
    let r = t
        .post("/api/v1/categories", &json!({"label": "Marketplace"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let cat_id = r.json["id"].as_u64().unwrap();

    // The new tier and category are usable at once by a create.
    let r = t
        .post(
            "/api/v1/partnerships",
            &json!({"name": "N", "emails": [{"email": "a@new-tier.com"}], "partnerType": "referral",
                    "tierId": tier_id, "categoryId": cat_id, "tags": [10]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    // A lead tag is not a partner tag.
    let r = t
        .post(
            "/api/v1/partnerships",
            &json!({"name": "N", "emails": [{"email": "a@lead-tag.com"}], "partnerType": "referral",
                    "tags": [tag_id]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Bulk rename: the documented object and the docs' bare array.
    let r = t
        .patch(
            "/api/v1/categories",
            &json!({"categories": [{"id": 1, "label": "Agencies"}, {"id": 2, "label": "Consultancies"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json, json!({"updated": [1, 2]}));
    let r = t
        .patch("/api/v1/categories", &json!([{"id": 3, "label": "Tech"}]))
        .await;
    assert_eq!(r.json, json!({"updated": [3]}));
    let cats = t.sim.categories();
    assert_eq!(cats[0]["label"], "Agencies");
    assert_eq!(cats[2]["label"], "Tech");
    for bad in [
        json!({"categories": [{"id": 999, "label": "X"}]}),
        json!({"categories": [{"id": 1}]}),
        json!({"categories": []}),
        json!({"items": [{"id": 1, "label": "X"}]}),
        json!([{"label": "X"}]),
    ] {
        let r = t.patch("/api/v1/categories", &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // All or nothing: the known id of a refused request keeps its label.
    let r = t
        .patch(
            "/api/v1/categories",
            &json!([{"id": 4, "label": "Changed"}, {"id": 999, "label": "X"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(t.sim.categories()[3]["label"], "Systems Integrator");

    // Partner stages.
    let r = t
        .post(
            "/api/v1/stages/partner-stages",
            &json!({"label": "Churned"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "partner_type is required"
    );
    let r = t
        .post(
            "/api/v1/stages/partner-stages",
            &json!({"label": "Churned", "partner_type": "referral", "phase": "dormant"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "phase enum");
    let r = t
        .post(
            "/api/v1/stages/partner-stages",
            &json!({"label": "Churned", "partner_type": "referral", "phase": "inactive"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let new_uuid = r.json["uuid"].as_str().unwrap().to_string();
    assert!(t.sim.stage_uuids().contains(&new_uuid));
    let stage = t
        .sim
        .partner_stages()
        .into_iter()
        .find(|s| s["uuid"] == new_uuid.as_str())
        .unwrap();
    assert_eq!(stage["series"], 6);
    assert_eq!(stage["partner_type"], "referral");
    let r = t
        .patch(
            "/api/v1/stages/partner-stages",
            &json!({"stages": [{"id": 1, "label": "Prospect", "phase": "discovery", "series": 1}]}),
        )
        .await;
    assert_eq!(r.json, json!({"updated": [1]}));
    let r = t
        .patch(
            "/api/v1/stages/partner-stages",
            &json!([{"id": 2, "series": 9}]),
        )
        .await;
    assert_eq!(r.json, json!({"updated": [2]}));
    for bad in [
        json!([{"label": "no id"}]),
        json!([{"id": 1, "phase": "won"}]),
        json!([{"id": 77, "label": "X"}]),
    ] {
        let r = t.patch("/api/v1/stages/partner-stages", &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let stages = t.get("/api/v1/stages/partner-stages").await;
    assert_eq!(items(&stages)[0]["label"], "Prospect");
    assert_eq!(
        items(&stages).last().unwrap()["id"],
        2,
        "listed in series order"
    );

    // Deal stages.
    let r = t
        .post(
            "/api/v1/stages/lead-deal-stages",
            &json!({"label": "Signed"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "phase is required");
    let r = t
        .post(
            "/api/v1/stages/lead-deal-stages",
            &json!({"label": "Signed", "phase": "closed_won"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(t.sim.deal_stages().len(), 7);

    // Custom fields.
    for bad in [
        json!({"label": "X", "type": "select", "category": "lead"}),
        json!({"label": "X", "type": "text", "category": "lead", "options": [{"label": "a"}]}),
        json!({"label": "X", "type": "colour", "category": "lead"}),
        json!({"label": "X", "type": "text", "category": "company"}),
        json!({"label": "X", "type": "text"}),
        json!({"label": "X", "type": "text", "category": "lead", "required": "yes"}),
        json!({"label": "X", "type": "select", "category": "lead", "options": [{"name": "a"}]}),
    ] {
        let r = t.post("/api/v1/custom-fields", &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = t
        .post(
            "/api/v1/custom-fields",
            &json!({"label": "Tier Goal", "type": "multi_select", "category": "partner",
                    "options": [{"label": "Grow"}, {"label": "Keep"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let field_id = r.json["id"].as_u64().unwrap();
    let def = t
        .sim
        .custom_fields()
        .into_iter()
        .find(|f| f["id"] == field_id)
        .unwrap();
    assert_eq!(
        def["options"],
        json!([{"id": 1, "label": "Grow"}, {"id": 2, "label": "Keep"}])
    );
    assert_eq!(def["required"], false);
    assert_eq!(def["shared"], false);
}

#[tokio::test]
async fn a_required_partner_field_is_enforced_on_create() {
    let t = T::default().await;
    let base =
        |email: &str| json!({"name": "R", "emails": [{"email": email}], "partnerType": "referral"});
    assert_eq!(
        t.post("/api/v1/partnerships", &base("a@before-required.com"))
            .await
            .status,
        StatusCode::CREATED
    );
    let r = t
        .post(
            "/api/v1/custom-fields",
            &json!({"label": "Partner Since", "type": "date", "category": "partner", "required": true}),
        )
        .await;
    let id = r.json["id"].as_u64().unwrap();
    let r = t.post("/api/v1/partnerships", &base("a@no-date.com")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut body = base("a@with-date.com");
    body["customFields"] =
        json!([{"customFieldId": id, "type": "date", "value": {"date": "2025-01-31"}}]);
    let r = t.post("/api/v1/partnerships", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    // A lead field is not a partner field.
    body["emails"] = json!([{"email": "a@lead-field.com"}]);
    body["customFields"] = json!([
        {"customFieldId": id, "type": "date", "value": {"date": "2025-01-31"}},
        {"customFieldId": 12, "type": "number", "value": {"number": 5}}
    ]);
    let r = t.post("/api/v1/partnerships", &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn partnership_update_delete_and_users() {
    let t = T::default().await;
    let id = t.sim.partnership_ids()[0];
    let path = format!("/api/v1/partnerships/{id}");
    let stage = t.sim.stage_uuids()[3].clone();
    let r = t
        .patch(
            &path,
            &json!({"tierId": 4, "categoryId": null, "stageUuid": stage, "assignedUsers": [457, 458],
                    "tags": [12], "customFields": [{"customFieldId": 9, "type": "boolean", "value": {"boolean": true}}],
                    "fallbackData": {"name": "Renamed Ltd", "website_url": "https://renamed.example"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(keys(&r.json), vec!["id", "updated_at", "uuid"]);
    assert_eq!(r.json["id"], id);
    let p = t.sim.partnership(id).expect("still there");
    assert_eq!(p["tier"]["id"], 4);
    assert!(p["category"].is_null());
    assert_eq!(p["stage_id"], 4);
    assert_eq!(
        p["assigned_users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![457, 458]
    );
    assert_eq!(p["tags"][0]["id"], 12);
    assert!(p["customFields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["id"] == 9 && f["value"] == json!({"boolean": true})));
    assert_eq!(p["partner"]["fallback_data"]["name"], "Renamed Ltd");
    // The list shows the update.
    let list = t
        .get("/api/v1/partnerships?userId=456&view=all&tiers=4&users=457")
        .await;
    assert!(items(&list).iter().any(|i| i["id"] == id));

    for bad in [
        json!({"stageUuid": "00000000-0000-4000-8000-000000000000"}),
        json!({"tierId": 99}),
        json!({"categoryId": 99}),
        json!({"tags": [30]}),
        json!({"tags": [999]}),
        json!({"assignedUsers": [1]}),
        json!({"customFields": [{"customFieldId": 5, "type": "text", "value": {"text": "x"}}]}),
        json!({"customFields": [{"customFieldId": 99, "type": "text", "value": {"text": "x"}}]}),
        json!({"tierId": "2"}),
        json!({"fallbackData": {"colour": "red"}}),
    ] {
        let r = t.patch(&path, &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_of(&r), "Invalid field values or stage UUID not found");
    }
    let r = t
        .patch("/api/v1/partnerships/999999", &json!({"tierId": 1}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&r), "Partnership not found or not accessible");

    // The partner's users.
    let r = t.get(&format!("{path}/users")).await;
    assert_eq!(r.status, StatusCode::OK);
    let users = items(&r);
    assert!(!users.is_empty());
    for u in users {
        assert_eq!(
            keys(u),
            sorted(&[
                "total",
                "id",
                "email",
                "first_name",
                "last_name",
                "color",
                "position",
                "phone_number",
                "profile_image_id",
                "profile_image_uuid",
                "company_id",
                "meeting_link",
                "company_name",
                "country_label",
                "city_label"
            ])
        );
        assert_eq!(u["total"], users.len());
    }
    let r = t.get("/api/v1/partnerships/999999/users").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Delete.
    let count = t.sim.partnership_count();
    let r = t.delete(&path).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.json.is_null());
    assert!(r.headers.get("content-type").is_none());
    assert_eq!(t.sim.partnership_count(), count - 1);
    assert!(!t.sim.partnership_ids().contains(&id));
    let r = t.delete(&path).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&r), "Partnership not found or already deleted");
    let r = t.patch(&path, &json!({"tierId": 1})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Its id is never reused.
    let r = t
        .post(
            "/api/v1/partnerships",
            &json!({"name": "After", "emails": [{"email": "a@after-delete.com"}], "partnerType": "referral"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(t.sim.partnership_ids()[0] > id);

    // A partnership with an open lead cannot be deleted.
    let open = t
        .sim
        .lead_ids()
        .into_iter()
        .filter_map(|l| t.sim.lead(l))
        .find(|l| {
            !l["partnership_id"].is_null()
                && !["converted", "lost"].contains(&l["status"].as_str().unwrap())
        })
        .expect("an open lead through a partnership");
    let busy = open["partnership_id"].as_u64().unwrap();
    let r = t.delete(&format!("/api/v1/partnerships/{busy}")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        error_of(&r),
        "Cannot delete partnership with active leads or deals"
    );
}

#[tokio::test]
async fn contacts() {
    let t = T::default().await;
    let pid = t.sim.partnership_ids()[2];
    let r = t
        .get(&format!("/api/v1/contacts?partnership_id={pid}"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let before = items(&r).len();
    assert!(before >= 1);
    assert!(items(&r).iter().all(|c| c["partnership_id"] == pid));
    let all = t.get("/api/v1/contacts").await;
    assert_eq!(ids(items(&all)), t.sim.contact_ids().into_iter().collect());
    assert_eq!(
        t.get("/api/v1/contacts?partnership_id=abc").await.status,
        StatusCode::BAD_REQUEST
    );

    for bad in [
        json!({"email": "x@y.com"}),
        json!({"partnership_id": pid}),
        json!({"partnership_id": pid, "email": "not-an-email"}),
        json!({"partnership_id": pid, "email": "x@y.com", "tags": [999]}),
    ] {
        let r = t.post("/api/v1/contacts", &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = t
        .post(
            "/api/v1/contacts",
            &json!({"partnership_id": 999_999, "email": "x@y.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = t
        .post(
            "/api/v1/contacts",
            &json!({"partnership_id": pid, "email": "new.person@gmail.com", "first_name": "New", "tags": [1]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let cid = r.json["id"].as_u64().unwrap();
    assert!(t.sim.contact_ids().contains(&cid));
    let r = t
        .get(&format!("/api/v1/contacts?partnership_id={pid}"))
        .await;
    assert_eq!(items(&r).len(), before + 1);

    let r = t
        .patch(
            &format!("/api/v1/contacts/{cid}"),
            &json!({"last_name": "Person", "tags": [2], "position": "CTO"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(keys(&r.json), vec!["id", "updated_at"]);
    let r = t
        .get(&format!("/api/v1/contacts?partnership_id={pid}"))
        .await;
    let c = items(&r).iter().find(|c| c["id"] == cid).unwrap();
    assert_eq!(c["last_name"], "Person");
    assert_eq!(c["position"], "CTO");
    assert_eq!(c["tags"][0]["id"], 2);
    let r = t
        .patch("/api/v1/contacts/999999", &json!({"last_name": "X"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = t
        .patch(
            &format!("/api/v1/contacts/{cid}"),
            &json!({"email": "nope"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The partnership list searches the new contact.
    let r = t
        .get("/api/v1/partnerships?userId=456&view=all&search=new.person")
        .await;
    assert!(items(&r).iter().any(|p| p["id"] == pid));
}

#[tokio::test]
async fn leads_list_with_the_documented_filters() {
    let t = T::start(SimConfig {
        page_size: 1000,
        ..SimConfig::default()
    })
    .await;
    let r = t.get("/api/v1/leads").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&r), "userId is required");
    let r = t.get("/api/v1/leads?userId=1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&r), "Company not found or user not authorized");

    let all = t.get("/api/v1/leads?userId=456").await;
    assert_eq!(all.status, StatusCode::OK);
    let leads = items(&all);
    assert_eq!(leads.len(), t.sim.lead_ids().len());
    assert!(leads.iter().all(|l| l["total"] == leads.len()));
    let created: Vec<&str> = leads
        .iter()
        .map(|l| l["created_at"].as_str().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] > w[1]), "newest first");
    let tags = ids(items(&t.get("/api/v1/tags?association=lead").await));
    let users: HashSet<u64> = t.sim.user_ids().into_iter().collect();
    for l in leads {
        for tag in l["tags"].as_array().unwrap() {
            assert!(tags.contains(&tag["id"].as_u64().unwrap()));
        }
        for u in l["assigned_users"].as_array().unwrap() {
            assert!(users.contains(&u["id"].as_u64().unwrap()));
        }
        if let Some(p) = l["partnership_id"].as_u64() {
            assert!(t.sim.partnership_ids().contains(&p));
        }
    }

    let r = t.get("/api/v1/leads?userId=456&status=new,lost").await;
    assert!(!items(&r).is_empty());
    assert!(items(&r)
        .iter()
        .all(|l| l["status"] == "new" || l["status"] == "lost"));
    for (view, check) in [
        ("reseller", json!({"association_type": "reseller"})),
        ("campaigns", json!({"association_type": "campaigns"})),
        (
            "received",
            json!({"association_type": "referral", "direction": "received"}),
        ),
        (
            "sent",
            json!({"association_type": "referral", "direction": "sent"}),
        ),
    ] {
        let r = t
            .get(&format!("/api/v1/leads?userId=456&view={view}"))
            .await;
        assert!(!items(&r).is_empty(), "{view}");
        for l in items(&r) {
            for (k, v) in check.as_object().unwrap() {
                assert_eq!(&l[k], v, "{view}");
            }
        }
    }
    let r = t.get("/api/v1/leads?userId=456&unassigned=1").await;
    assert!(items(&r)
        .iter()
        .all(|l| l["assigned_users"].as_array().unwrap().is_empty()));
    let r = t.get("/api/v1/leads?userId=456&users=457").await;
    assert!(items(&r).iter().all(|l| l["assigned_users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["id"] == 457)));
    let r = t.get("/api/v1/leads?userId=456&tags=30").await;
    assert!(items(&r)
        .iter()
        .all(|l| l["tags"].as_array().unwrap().iter().any(|t| t["id"] == 30)));
    let name = leads[5]["company_name"].as_str().unwrap().to_string();
    let r = t
        .get(&format!(
            "/api/v1/leads?userId=456&search={}",
            name.to_uppercase().replace(' ', "%20")
        ))
        .await;
    assert!(items(&r).iter().any(|l| l["company_name"] == name.as_str()));
    let cursor = leads[9]["created_at"].as_str().unwrap();
    let r = t
        .get(&format!("/api/v1/leads?userId=456&cursor={cursor}"))
        .await;
    assert_eq!(items(&r)[0]["id"], leads[10]["id"]);
    assert_eq!(
        items(&r)[0]["total"],
        leads.len(),
        "total ignores the cursor"
    );
    let r = t
        .get("/api/v1/leads?userId=456&sort=%5B%7B%22type%22%3A%22status%22%2C%22asc%22%3Atrue%7D%5D")
        .await;
    let order = ["new", "contacted", "qualified", "converted", "lost"];
    let ranks: Vec<usize> = items(&r)
        .iter()
        .map(|l| order.iter().position(|s| l["status"] == *s).unwrap())
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]));
    for bad in [
        "status=open",
        "view=mine",
        "cursor=yesterday",
        "tags=x",
        "assigned=yes",
        "sort=%5B%7B%22type%22%3A%22stage%22%7D%5D",
        "customFields=notjson",
    ] {
        let r = t.get(&format!("/api/v1/leads?userId=456&{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // Default page size of a default simulator.
    let small = T::default().await;
    let r = small.get("/api/v1/leads?userId=456").await;
    assert_eq!(items(&r).len(), 25);
}

#[tokio::test]
async fn lead_writes_and_notes() {
    let t = T::default().await;
    for bad in [
        json!({}),
        json!({"associationType": "partner"}),
        json!({"associationType": "referral", "source": "fax"}),
        json!({"associationType": "referral", "email": "nope"}),
        json!({"associationType": "referral", "tags": [10]}),
        json!({"associationType": "referral", "assignedUsers": [1]}),
        json!({"associationType": "referral", "partnershipLead": {"partnershipId": 999_999}}),
        json!({"associationType": "referral", "partnershipLead": 5}),
        json!({"associationType": "referral", "customFields": [{"customFieldId": 5, "type": "number", "value": {"number": 1}}]}),
    ] {
        let r = t.post("/api/v1/leads", &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let pid = *t.sim.partnership_ids().last().unwrap();
    let r = t
        .post(
            "/api/v1/leads",
            &json!({"associationType": "referral", "company_name": "Brand New Co", "email": "buyer@brandnew.com",
                    "first_name": "Bea", "tags": [30], "assignedUsers": [456], "source": "manual",
                    "partnershipLead": {"partnershipId": pid},
                    "customFields": [{"customFieldId": 14, "type": "select", "value": {"select": 2}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(keys(&r.json), vec!["id", "partnershipLeadId", "uuid"]);
    assert!(r.json["partnershipLeadId"].is_u64());
    let lead_id = r.json["id"].as_u64().unwrap();
    assert_eq!(t.sim.lead_ids()[0], lead_id);
    let r = t
        .post("/api/v1/leads", &json!({"associationType": "campaigns"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.json["partnershipLeadId"].is_null());

    let one = t
        .get(&format!("/api/v1/companies/123/leads/{lead_id}"))
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json["company_name"], "Brand New Co");
    assert_eq!(one.json["status"], "new");
    assert_eq!(one.json["partnership_id"], pid);
    assert_eq!(one.json["customFields"][0]["value"], json!({"select": 2}));
    assert_eq!(
        t.get(&format!("/api/v1/companies/999/leads/{lead_id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get("/api/v1/companies/123/leads/1").await.status,
        StatusCode::NOT_FOUND
    );

    let path = format!("/api/v1/leads/{lead_id}");
    for bad in [
        json!({"status": "won"}),
        json!({"tags": [40]}),
        json!({"assignedUsers": "456"}),
        json!({"email": 5}),
    ] {
        let r = t.patch(&path, &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = t
        .patch(
            &path,
            &json!({"status": "qualified", "tags": [31], "phone_number": "+1 555 0100"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(keys(&r.json), vec!["id", "updated_at", "uuid"]);
    let l = t.sim.lead(lead_id).unwrap();
    assert_eq!(l["status"], "qualified");
    assert_eq!(l["tags"][0]["id"], 31);
    assert_eq!(l["phone_number"], "+1 555 0100");
    assert_eq!(
        t.patch("/api/v1/leads/1", &json!({"status": "new"}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Notes.
    let notes = format!("{path}/notes");
    assert!(items(&t.get(&notes).await).is_empty());
    for bad in [
        json!({}),
        json!({"document": "plain text"}),
        json!({"document": {"type": "doc"}, "mentions": [1]}),
    ] {
        let r = t.post(&notes, &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let doc = json!({"type": "doc", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "hi"}]}]});
    let r = t
        .post(&notes, &json!({"document": doc, "mentions": [457]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(keys(&r.json), vec!["id"]);
    let note_id = r.json["id"].as_u64().unwrap();
    assert_eq!(t.sim.note_ids(lead_id), vec![note_id]);
    let listed = t.get(&notes).await;
    assert_eq!(items(&listed)[0]["document"], doc);
    let r = t
        .patch(
            &format!("{notes}/{note_id}"),
            &json!({"document": {"type": "doc", "content": []}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(keys(&r.json), vec!["id", "updated_at"]);
    let other_lead = t.sim.lead_ids()[5];
    assert_eq!(
        t.patch(
            &format!("/api/v1/leads/{other_lead}/notes/{note_id}"),
            &json!({"document": {"type": "doc"}})
        )
        .await
        .status,
        StatusCode::NOT_FOUND,
        "a note belongs to its lead"
    );
    assert_eq!(
        t.post("/api/v1/leads/1/notes", &json!({"document": doc}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Delete.
    let r = t.delete(&path).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!t.sim.lead_ids().contains(&lead_id));
    assert!(t.sim.note_ids(lead_id).is_empty());
    let r = t.delete(&path).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn lead_deals() {
    let t = T::start(SimConfig {
        page_size: 1000,
        ..SimConfig::default()
    })
    .await;
    let r = t.get("/api/v1/lead-deals").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "no userId is documented for deals"
    );
    let deals = items(&r).clone();
    assert!(!deals.is_empty());
    assert_eq!(ids(&deals), t.sim.deal_ids().into_iter().collect());
    let stage_ids = ids(&t.sim.deal_stages());
    for d in &deals {
        assert!(stage_ids.contains(&d["stage"]["id"].as_u64().unwrap()));
        assert!(t.sim.lead_ids().contains(&d["lead_id"].as_u64().unwrap()));
    }
    let r = t
        .get("/api/v1/lead-deals?phases=closed_won,closed_lost")
        .await;
    assert!(items(&r)
        .iter()
        .all(|d| d["stage"]["phase"].as_str().unwrap().starts_with("closed")));
    assert_eq!(
        t.get("/api/v1/lead-deals?phases=won").await.status,
        StatusCode::BAD_REQUEST
    );
    let r = t
        .get("/api/v1/lead-deals?stages=1&someUndocumented=1")
        .await;
    assert!(items(&r).iter().all(|d| d["stage"]["id"] == 1));

    let lead = t.sim.lead_ids()[0];
    let stage_uuid = t.sim.deal_stages()[2]["uuid"].as_str().unwrap().to_string();
    for bad in [
        json!({"deal_value": 10}),
        json!({"lead_id": 1}),
        json!({"lead_id": lead, "stage_uuid": "nope"}),
        json!({"lead_id": lead, "deal_value": "big"}),
        json!({"lead_id": lead, "tags": [30]}),
        json!({"lead_id": lead, "partnership_id": 999_999}),
        json!({"lead_id": lead, "customFields": [{"customFieldId": 12, "type": "number", "value": {"number": 1}}]}),
    ] {
        let r = t.post("/api/v1/lead-deals", &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = t
        .post(
            "/api/v1/lead-deals",
            &json!({"lead_id": lead, "label": "Pilot", "deal_value": 25000, "stage_uuid": stage_uuid,
                    "tags": [40], "customFields": [{"customFieldId": 16, "type": "multi_select", "value": {"multi_select": [1, 4]}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(keys(&r.json), vec!["id", "uuid"]);
    let deal_id = r.json["id"].as_u64().unwrap();
    assert_eq!(t.sim.deal_ids()[0], deal_id);
    let one = t
        .get(&format!("/api/v1/companies/123/lead-deals/{deal_id}"))
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json["label"], "Pilot");
    assert_eq!(one.json["stage"]["uuid"], stage_uuid.as_str());
    assert_eq!(one.json["deal_value"], 25000);
    assert_eq!(
        t.get(&format!("/api/v1/companies/124/lead-deals/{deal_id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let path = format!("/api/v1/lead-deals/{deal_id}");
    let won = t.sim.deal_stages()[4]["uuid"].as_str().unwrap().to_string();
    let r = t
        .patch(
            &path,
            &json!({"label": "Pilot (won)", "stage_uuid": won, "deal_value": 30000.5, "payment_stage_uuid": "pay-1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(keys(&r.json), vec!["id", "updated_at", "uuid"]);
    let one = t
        .get(&format!("/api/v1/companies/123/lead-deals/{deal_id}"))
        .await;
    assert_eq!(one.json["stage"]["phase"], "closed_won");
    assert_eq!(one.json["payment_stage_uuid"], "pay-1");
    assert_eq!(t.sim.deal(deal_id).unwrap(), one.json);
    for bad in [
        json!({"stage_uuid": "nope"}),
        json!({"tags": [10]}),
        json!({"deal_value": -1}),
    ] {
        let r = t.patch(&path, &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(
        t.patch("/api/v1/lead-deals/1", &json!({"label": "x"}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn unknown_routes_ids_and_keys() {
    let t = T::default().await;
    for (method, path) in [
        (Method::GET, "/api/v1/countries"),
        (Method::GET, "/api/v1/partnerships/1000"),
        (Method::PUT, "/api/v1/tiers"),
        (Method::DELETE, "/api/v1/tags"),
        (Method::PATCH, "/api/v1/partnerships/abc"),
        (Method::GET, "/api/v1/partnerships/-1/users"),
        (Method::PATCH, "/api/v1/leads/1e3"),
        (Method::GET, "/api/v1/companies/123/leads/x"),
        (Method::GET, "/api/v1/tiers/1"),
        (Method::GET, "/api/v2/tiers"),
    ] {
        let r = t
            .send(method.clone(), path, Some(SIM_WRITE_KEY), Some("{}"))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(error_of(&r), "Not found");
        assert_eq!(r.headers["content-type"], "application/json");
    }
    for path in [
        "/api/v1/tiers",
        "/api/v1/leads?userId=456",
        "/api/v1/lead-deals",
    ] {
        let r = t.send(Method::GET, path, Some("wrong"), None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        let r = t.send(Method::GET, path, None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let r = t
        .send(Method::POST, "/api/v1/tags", Some("wrong"), Some("{}"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A write-only key cannot read the lookups.
    let w = T::start(SimConfig {
        keys: vec![journeybee_sim::SimKey::new("w", false, true)],
        ..SimConfig::default()
    })
    .await;
    let r = w.send(Method::GET, "/api/v1/tiers", Some("w"), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(error_of(&r), "Read access required for this operation");
}

#[tokio::test]
async fn rate_limit_faults_and_recorder_cover_every_route() {
    let t = T::start(SimConfig {
        rate_limit_per_minute: Some(4),
        ..SimConfig::default()
    })
    .await;
    // One key for everything: the limit is per key.
    let get = |path: &'static str| t.send(Method::GET, path, Some(SIM_WRITE_KEY), None);
    assert_eq!(get("/api/v1/tiers").await.status, StatusCode::OK);
    assert_eq!(get("/api/v1/tags").await.status, StatusCode::OK);
    let r = t
        .post(
            "/api/v1/tags",
            &json!({"label": "L", "association": "lead"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(get("/api/v1/users").await.status, StatusCode::OK);
    let r = get("/api/v1/lead-deals").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key("retry-after"));
    // A 429 changes nothing.
    let r = t.post("/api/v1/tiers", &json!({"label": "Never"})).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(t.sim.tiers().len(), 4);
    assert_eq!(t.sim.rate_limited_count(), 2);
    t.sim.reset_rate_limits();

    t.sim.set_fault(Fault::Status(503));
    let r = t.get("/api/v1/custom-fields").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let r = t.post("/api/v1/tiers", &json!({"label": "Faulted"})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(t.sim.tiers().len(), 4, "a failed write changes nothing");
    t.sim.set_fault(Fault::Slow(Duration::from_millis(50)));
    assert_eq!(t.get("/api/v1/tiers").await.status, StatusCode::OK);
    t.sim.set_fault(Fault::None);

    assert_eq!(t.sim.requests_to("GET", "/api/v1/tiers"), 2);
    assert_eq!(t.sim.requests_to("POST", "/api/v1/tiers"), 2);
    assert_eq!(t.sim.requests_to("POST", "/api/v1/tags"), 1);
    assert_eq!(t.sim.requests_to("GET", "/api/v1/custom-fields"), 1);
    assert_eq!(t.sim.request_count(), 9);
}

#[tokio::test]
async fn reset_mid_response_still_applies_a_write() {
    let t = T::default().await;
    t.sim.set_fault(Fault::ResetMidResponse);
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/api/v1/tiers", t.sim.base_url()))
        .header("authorization", format!("Bearer {SIM_WRITE_KEY}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(r#"{"label":"Cut"}"#)))
        .unwrap();
    // The body is cut short; whatever the client makes of that, the write
    // happened (the "did my POST go through?" case).
    if let Ok(resp) = t.c.request(req).await {
        let _ = resp.into_body().collect().await;
    }
    t.sim.set_fault(Fault::None);
    assert!(t.sim.tiers().iter().any(|x| x["label"] == "Cut"));

    // A DELETE has no body to cut: the connection drops without an answer,
    // after the delete happened.
    t.sim.set_fault(Fault::ResetMidResponse);
    let id = t.sim.partnership_ids()[0];
    let req = Request::builder()
        .method(Method::DELETE)
        .uri(format!("{}/api/v1/partnerships/{id}", t.sim.base_url()))
        .header("authorization", format!("Bearer {SIM_WRITE_KEY}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(5), t.c.request(req))
        .await
        .expect("the connection is dropped, not held");
    assert!(answered.is_err(), "no answer: {answered:?}");
    t.sim.set_fault(Fault::None);
    assert!(!t.sim.partnership_ids().contains(&id));
}

#[tokio::test]
async fn a_tenant_without_partnerships_still_serves_every_lookup() {
    let t = T::start(SimConfig {
        partnerships: 0,
        seed: 7,
        ..SimConfig::default()
    })
    .await;
    for path in [
        "/api/v1/users",
        "/api/v1/tags",
        "/api/v1/tiers",
        "/api/v1/categories",
        "/api/v1/stages/partner-stages",
        "/api/v1/stages/lead-deal-stages",
        "/api/v1/custom-fields",
        "/api/v1/contacts",
        "/api/v1/leads?userId=456",
        "/api/v1/lead-deals",
    ] {
        let r = t.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
    }
    assert!(t.sim.partnership_ids().is_empty());
    assert!(t.sim.contact_ids().is_empty());
    assert!(!t.sim.lead_ids().is_empty());
    // Leads need no partnership: none references one here.
    for id in t.sim.lead_ids() {
        assert!(t.sim.lead(id).unwrap()["partnership_id"].is_null());
    }
}
