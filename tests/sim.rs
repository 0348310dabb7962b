//! Integration tests of the JourneyBee API simulator, over real HTTP.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use journeybee_sim::{
    Fault, RateLimitMode, SimConfig, SimHandle, SimKey, Simulator, SIM_READ_KEY, SIM_WRITE_KEY,
};
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn start(config: SimConfig) -> SimHandle {
    Simulator::start("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("simulator starts")
}

/// Sends one request and reads the whole body; any transport error (including
/// a body cut short) is returned as `Err`.
async fn send(
    c: &HttpClient,
    sim: &SimHandle,
    method: Method,
    path_and_query: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> Result<Resp, BoxError> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{}{path_and_query}", sim.base_url()));
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or("").to_string())))?;
    let resp = c.request(req).await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)?
    };
    Ok(Resp {
        status,
        headers,
        json,
    })
}

async fn get(c: &HttpClient, sim: &SimHandle, pq: &str) -> Resp {
    send(c, sim, Method::GET, pq, Some(SIM_READ_KEY), None)
        .await
        .expect("request succeeds")
}

async fn post(c: &HttpClient, sim: &SimHandle, path: &str, body: &Value) -> Resp {
    send(
        c,
        sim,
        Method::POST,
        path,
        Some(SIM_WRITE_KEY),
        Some(&body.to_string()),
    )
    .await
    .expect("request succeeds")
}

fn items(r: &Resp) -> &Vec<Value> {
    r.json.as_array().expect("array body")
}

fn total(r: &Resp) -> u64 {
    items(r)
        .first()
        .map_or(0, |i| i["total"].as_u64().expect("total"))
}

fn error_of(r: &Resp) -> &str {
    r.json["error"].as_str().expect("error message")
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn auth_and_routing() {
    let config = SimConfig {
        keys: vec![
            SimKey::new(SIM_READ_KEY, true, false),
            SimKey::new("write_only", false, true),
        ],
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let c = client();
    let list = "/api/v1/partnerships?userId=456";

    let r = send(&c, &sim, Method::GET, list, None, None).await.unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&r), "Invalid API key or insufficient permissions");
    assert_eq!(r.headers["content-type"], "application/json");

    let r = send(&c, &sim, Method::GET, list, Some("nope"), None)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = send(&c, &sim, Method::GET, list, Some("write_only"), None)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(error_of(&r), "Read access required for this operation");

    let body = r#"{"name":"X","emails":[{"email":"a@x.com"}],"partnerType":"referral"}"#;
    let r = send(
        &c,
        &sim,
        Method::POST,
        "/api/v1/partnerships",
        Some(SIM_READ_KEY),
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(error_of(&r), "Write access required for this operation");

    let r = get(&c, &sim, "/api/v1/other").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&r), "Not found");

    let r = send(
        &c,
        &sim,
        Method::POST,
        "/api/v1/companies/999/partnerships",
        Some("write_only"),
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&r), "Company not found or user not authorized");

    let r = get(&c, &sim, "/api/v1/partnerships").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&r), "userId is required");
    let r = get(&c, &sim, "/api/v1/partnerships?userId=1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&r), "Company not found or user not authorized");
    let r = get(&c, &sim, "/api/v1/partnerships?userId=456&stages=1,x").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&r), "Invalid query parameters");
}

#[tokio::test]
async fn list_pages_with_cursor() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    assert_eq!(sim.user_ids().len(), 8);
    assert!(sim.user_ids().contains(&456));

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut last_created: Option<String> = None;
    loop {
        let pq = match &cursor {
            None => "/api/v1/partnerships?userId=456".to_string(),
            Some(cur) => format!("/api/v1/partnerships?userId=456&cursor={}", enc(cur)),
        };
        let r = get(&c, &sim, &pq).await;
        assert_eq!(r.status, StatusCode::OK);
        let page = items(&r);
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 25);
        assert_eq!(total(&r), 300, "total ignores the cursor");
        for item in page {
            let created = item["partnership"]["created_at"]
                .as_str()
                .unwrap()
                .to_string();
            // Same-format ISO timestamps order lexicographically.
            if let Some(prev) = &last_created {
                assert!(created < *prev, "strictly decreasing: {created} !< {prev}");
            }
            last_created = Some(created);
            seen.push(item["id"].as_u64().unwrap());
        }
        cursor = last_created.clone();
    }
    assert_eq!(seen.len(), 300);
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 300);

    // The item shape of the documented example.
    let r = get(&c, &sim, "/api/v1/partnerships?userId=456").await;
    let item = &items(&r)[0];
    for key in [
        "total",
        "id",
        "stage_id",
        "stage_label",
        "stage_series",
        "partnership",
        "tier",
        "category",
        "partner",
        "assigned_users",
        "tags",
        "customFields",
    ] {
        assert!(item.get(key).is_some(), "missing {key}");
    }
    assert!(item["partner"]["fallback_data"].is_null());
    assert!(item["partner"]["logo"]["uuid"].is_string());
    assert!(item["partner"]["address"]["country_label"].is_string());

    // Same seed, same data.
    let other = start(SimConfig::default()).await;
    let r2 = get(&c, &other, "/api/v1/partnerships?userId=456").await;
    assert_eq!(r.json, r2.json);
}

#[tokio::test]
async fn list_filters_and_sort() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let base = "/api/v1/partnerships?userId=456";
    let all = total(&get(&c, &sim, &format!("{base}&view=all")).await);
    assert_eq!(all, 300);

    let referral = get(&c, &sim, &format!("{base}&view=referral")).await;
    let reseller = get(&c, &sim, &format!("{base}&view=reseller")).await;
    assert!(items(&referral)
        .iter()
        .all(|i| i["partnership"]["partner_type"] == "referral"));
    assert_eq!(total(&referral) + total(&reseller), all);

    let assigned = total(&get(&c, &sim, &format!("{base}&assigned=1")).await);
    let unassigned = get(&c, &sim, &format!("{base}&unassigned=1&unknownParam=x")).await;
    assert!(items(&unassigned)
        .iter()
        .all(|i| i["assigned_users"].as_array().unwrap().is_empty()));
    assert_eq!(assigned + total(&unassigned), all);

    let mine = get(&c, &sim, "/api/v1/partnerships?userId=457&view=assigned").await;
    assert!(total(&mine) > 0);
    for i in items(&mine) {
        let ids: Vec<u64> = i["assigned_users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_u64().unwrap())
            .collect();
        assert!(ids.contains(&457));
    }

    let staged = get(&c, &sim, &format!("{base}&stages=1,2")).await;
    assert!(total(&staged) > 0 && total(&staged) < all);
    assert!(items(&staged)
        .iter()
        .all(|i| [1, 2].contains(&i["stage_id"].as_u64().unwrap())));

    let tagged = get(&c, &sim, &format!("{base}&tags=10")).await;
    assert!(items(&tagged).iter().all(|i| i["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == 10)));

    // Search by part of a partner's name, in another case.
    let page = get(&c, &sim, base).await;
    let first = &items(&page)[0];
    let name = first["partner"]["name"].as_str().unwrap();
    let needle = name.split(' ').next().unwrap().to_uppercase();
    let found = get(&c, &sim, &format!("{base}&search={}", enc(&needle))).await;
    assert!(items(&found).iter().any(|i| i["id"] == first["id"]));
    assert!(total(&found) < all);

    // Custom field number filter (field 5, "Revenue Potential").
    let (id, revenue) = items(&page)
        .iter()
        .find_map(|i| {
            i["customFields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["id"] == 5)
                .map(|f| (i["id"].clone(), f["value"]["number"].clone()))
        })
        .expect("some partnership has a revenue potential");
    let filter = json!([{ "id": 5, "value": { "number": revenue } }]).to_string();
    let r = get(&c, &sim, &format!("{base}&customFields={}", enc(&filter))).await;
    assert!(items(&r).iter().any(|i| i["id"] == id));
    assert!(total(&r) < all);
    let bad = get(
        &c,
        &sim,
        &format!("{base}&customFields={}", enc("[{\"id\":5}]")),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Sort by tier descending, then created_at descending.
    let sort = json!([{ "type": "tier", "asc": false }]).to_string();
    let r = get(&c, &sim, &format!("{base}&sort={}", enc(&sort))).await;
    let tiers: Vec<u64> = items(&r)
        .iter()
        .map(|i| i["tier"]["id"].as_u64().unwrap())
        .collect();
    assert!(tiers.windows(2).all(|w| w[0] >= w[1]), "{tiers:?}");
    assert_eq!(tiers[0], 4);
}

#[tokio::test]
async fn create_partnership() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let before = sim.partnership_count();
    // The documented example request, verbatim.
    let example = json!({
        "name": "TechCorp Solutions",
        "emails": [{ "email": "john@techcorp.com", "firstName": "John", "lastName": "Smith", "tags": [1, 2] }],
        "partnerType": "referral", "tierId": 2, "categoryId": 3, "countryId": 1,
        "assignedUsers": [456], "tags": [10, 11],
        "customFields": [
            { "customFieldId": 5, "type": "number", "value": { "number": 100000 } },
            { "customFieldId": 6, "type": "select", "value": { "select": 2 } }
        ]
    });
    let r = post(&c, &sim, "/api/v1/companies/123/partnerships", &example).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.json,
        json!({"status":"created","message":"Partnership created successfully"})
    );
    assert_eq!(sim.partnership_count(), before + 1);

    let list = get(&c, &sim, "/api/v1/partnerships?userId=456").await;
    let first = &items(&list)[0];
    assert_eq!(first["partner"]["name"], "TechCorp Solutions");
    assert_eq!(first["total"], 301);
    assert_eq!(first["tier"]["id"], 2);
    assert_eq!(first["assigned_users"][0]["id"], 456);
    let found = get(
        &c,
        &sim,
        "/api/v1/partnerships?userId=456&search=john%40techcorp",
    )
    .await;
    assert_eq!(total(&found), 1);

    // 409: same domain again (case-insensitively), via the short path.
    let dup = json!({"name": "TC", "emails": [{"email": "jane@TechCorp.com"}], "partnerType": "reseller"});
    let r = post(&c, &sim, "/api/v1/partnerships", &dup).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(error_of(&r), "Partnership already exists with this company");
    let taken = sim.partner_domains()[100].clone();
    let dup = json!({"name": "Old", "emails": [{"email": format!("x@{taken}")}], "partnerType": "referral"});
    assert_eq!(
        post(&c, &sim, "/api/v1/partnerships", &dup).await.status,
        StatusCode::CONFLICT
    );

    // 406: free mail, own domain, mixed domains, emailDomain mismatch.
    for body in [
        json!({"name": "G", "emails": [{"email": "a@gmail.com"}], "partnerType": "referral"}),
        json!({"name": "S", "emails": [{"email": "a@acme-partners.io"}], "partnerType": "referral"}),
        json!({"name": "M", "emails": [{"email": "a@m1.com"}, {"email": "b@m2.com"}], "partnerType": "referral"}),
        json!({"name": "D", "emails": [{"email": "a@m1.com"}], "partnerType": "referral", "emailDomain": "m2.com"}),
    ] {
        let r = post(&c, &sim, "/api/v1/partnerships", &body).await;
        assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE, "{body}");
        assert_eq!(
            error_of(&r),
            "Invalid email domains or attempting to partner with self"
        );
    }

    // 400: missing/invalid fields and wrong types.
    for body in [
        json!({"emails": [{"email": "a@n1.com"}], "partnerType": "referral"}),
        json!({"name": "N", "emails": [{"email": "not-an-email"}], "partnerType": "referral"}),
        json!({"name": "N", "emails": [{"email": "a@n1.com"}], "partnerType": "affiliate"}),
        json!({"name": "N", "emails": [{"email": "a@n1.com"}], "partnerType": "referral", "tierId": "2"}),
        json!({"name": "N", "emails": [{"email": "a@n1.com"}], "partnerType": "referral", "tags": [1.5]}),
        json!(["not", "an", "object"]),
    ] {
        let r = post(&c, &sim, "/api/v1/partnerships", &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            error_of(&r),
            "Invalid email format or missing required fields"
        );
    }
    let r = send(
        &c,
        &sim,
        Method::POST,
        "/api/v1/partnerships",
        Some(SIM_WRITE_KEY),
        Some("{not json"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(sim.partnership_count(), before + 1);
}

#[tokio::test]
async fn recorder() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    get(&c, &sim, "/api/v1/partnerships?userId=456&search=a%20b").await;
    send(&c, &sim, Method::GET, "/api/v1/partnerships", None, None)
        .await
        .unwrap();
    post(&c, &sim, "/api/v1/partnerships", &json!({"name": "R"})).await;
    assert_eq!(sim.request_count(), 3);
    let reqs = sim.requests();
    assert_eq!(reqs[0].method, Method::GET);
    assert_eq!(reqs[0].path, "/api/v1/partnerships");
    assert_eq!(reqs[0].query.as_deref(), Some("userId=456&search=a%20b"));
    assert_eq!(reqs[0].api_key.as_deref(), Some(SIM_READ_KEY));
    assert_eq!(reqs[1].api_key, None);
    assert_eq!(reqs[2].api_key.as_deref(), Some(SIM_WRITE_KEY));
    assert_eq!(&reqs[2].body[..], br#"{"name":"R"}"#);
    assert_eq!(reqs[2].headers["content-type"], "application/json");
    sim.reset_recorded();
    assert_eq!(sim.request_count(), 0);
}

#[tokio::test]
async fn faults() {
    let sim = start(SimConfig::default()).await;
    let list = "/api/v1/partnerships?userId=456";

    sim.set_fault(Fault::Status(503));
    let r = get(&client(), &sim, list).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_of(&r), "simulated failure");

    sim.set_fault(Fault::RateLimited {
        retry_after_secs: 7,
    });
    let r = get(&client(), &sim, list).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "7");
    assert_eq!(error_of(&r), "Too many requests");

    sim.set_fault(Fault::Slow(Duration::from_millis(200)));
    let t = Instant::now();
    let r = get(&client(), &sim, list).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(200));

    sim.set_fault(Fault::ResetMidResponse);
    let r = send(&client(), &sim, Method::GET, list, Some(SIM_READ_KEY), None).await;
    assert!(r.is_err(), "a cut response must be an error");
    // The request was processed: a create under reset still happens.
    let before = sim.partnership_count();
    let body =
        r#"{"name":"Reset","emails":[{"email":"a@reset-corp.com"}],"partnerType":"referral"}"#;
    let r = send(
        &client(),
        &sim,
        Method::POST,
        "/api/v1/partnerships",
        Some(SIM_WRITE_KEY),
        Some(body),
    )
    .await;
    assert!(r.is_err());
    assert_eq!(sim.partnership_count(), before + 1);

    sim.set_fault(Fault::BlackHole);
    sim.reset_recorded();
    let mut held = {
        let sim = sim.clone();
        tokio::spawn(async move {
            send(&client(), &sim, Method::GET, list, Some(SIM_READ_KEY), None).await
        })
    };
    wait_until("the black-holed request is recorded", || {
        sim.request_count() == 1
    })
    .await;
    // Recorded, and no answer comes (a "never" can only be sampled: 300 ms of it).
    let answer = tokio::time::timeout(Duration::from_millis(300), &mut held).await;
    assert!(answer.is_err(), "black hole never answers");
    held.abort();

    sim.set_fault(Fault::None);
    assert_eq!(get(&client(), &sim, list).await.status, StatusCode::OK);
    assert_eq!(sim.request_count(), 2);
}

#[tokio::test]
async fn black_hole_released_and_upstream_down_on_shutdown() {
    let sim = start(SimConfig::default()).await;
    let list = "/api/v1/partnerships?userId=456";
    sim.set_fault(Fault::BlackHole);
    let held = {
        let sim = sim.clone();
        tokio::spawn(async move {
            send(&client(), &sim, Method::GET, list, Some(SIM_READ_KEY), None).await
        })
    };
    // Shut down once the request is held, not after a guess at how long that takes.
    wait_until("the request is held", || sim.request_count() == 1).await;
    sim.shutdown();
    sim.stopped().await;
    let held = tokio::time::timeout(Duration::from_secs(2), held)
        .await
        .expect("shutdown closes held connections")
        .expect("task");
    assert!(held.is_err());
    sim.set_fault(Fault::None);
    let r = send(&client(), &sim, Method::GET, list, Some(SIM_READ_KEY), None).await;
    assert!(r.is_err(), "nothing listens after shutdown");
}

#[tokio::test]
async fn per_key_rate_limit() {
    let sim = start(SimConfig {
        rate_limit_per_minute: Some(2),
        partnerships: 10,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let list = "/api/v1/partnerships?userId=456";
    assert_eq!(get(&c, &sim, list).await.status, StatusCode::OK);
    assert_eq!(get(&c, &sim, list).await.status, StatusCode::OK);
    let r = get(&c, &sim, list).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs));
    // Another key has its own window.
    let r = send(&c, &sim, Method::GET, list, Some(SIM_WRITE_KEY), None)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    sim.reset_rate_limits();
    assert_eq!(get(&c, &sim, list).await.status, StatusCode::OK);
}

#[tokio::test]
async fn speaks_http2() {
    let sim = start(SimConfig {
        partnerships: 5,
        ..SimConfig::default()
    })
    .await;
    let c: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let r = get(&c, &sim, "/api/v1/partnerships?userId=456").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(items(&r).len(), 5);

    sim.set_fault(Fault::ResetMidResponse);
    let r = send(
        &c,
        &sim,
        Method::GET,
        "/api/v1/partnerships?userId=456",
        Some(SIM_READ_KEY),
        None,
    )
    .await;
    assert!(r.is_err());
}

#[tokio::test]
async fn reset_sends_head_and_part_of_the_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = start(SimConfig::default()).await;
    sim.set_fault(Fault::ResetMidResponse);
    let mut stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let req = format!(
        "GET /api/v1/partnerships?userId=456 HTTP/1.1\r\nHost: sim\r\nAuthorization: Bearer {SIM_READ_KEY}\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // Ends at the dropped connection (EOF or reset), well before the timeout.
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut raw))
        .await
        .expect("connection is dropped");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("headers were sent");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let announced: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .expect("content-length")
        .parse()
        .unwrap();
    assert!(!body.is_empty() && body.len() < announced);
}

#[tokio::test]
async fn shutdown_fails_requests_on_kept_alive_connections() {
    let sim = start(SimConfig {
        partnerships: 5,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let list = "/api/v1/partnerships?userId=456";
    assert_eq!(get(&c, &sim, list).await.status, StatusCode::OK);
    // No await between shutdown and the next request: the pooled connection
    // must not serve it.
    sim.shutdown();
    let r = send(&c, &sim, Method::GET, list, Some(SIM_READ_KEY), None).await;
    assert!(r.is_err(), "upstream is down");
    assert_eq!(sim.request_count(), 1);
}

#[tokio::test]
async fn control_endpoint_switches_faults_and_reports_stats() {
    let sim = start(SimConfig {
        partnerships: 10,
        rate_limit_per_minute: Some(1),
        control: true,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let list = "/api/v1/partnerships?userId=456";
    let put = |body: &'static str| {
        let (c, sim) = (c.clone(), sim.clone());
        async move {
            send(&c, &sim, Method::PUT, "/__sim/fault", None, Some(body))
                .await
                .expect("control request succeeds")
        }
    };

    // No API key needed; 204 with an empty body.
    let r = put(r#"{"mode":"status","status":503}"#).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.json, Value::Null);
    assert_eq!(sim.fault(), Fault::Status(503));
    assert_eq!(
        get(&c, &sim, list).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Control requests bypass faults, even a black hole, and the rate limit.
    for (body, fault) in [
        (
            r#"{"mode":"slow","ms":5000}"#,
            Fault::Slow(Duration::from_secs(5)),
        ),
        (
            r#"{"mode":"rate_limited","retry_after_secs":2}"#,
            Fault::RateLimited {
                retry_after_secs: 2,
            },
        ),
        (r#"{"mode":"reset"}"#, Fault::ResetMidResponse),
        (r#"{"mode":"black_hole"}"#, Fault::BlackHole),
    ] {
        let t = Instant::now();
        assert_eq!(put(body).await.status, StatusCode::NO_CONTENT, "{body}");
        // Not slowed by the previous mode (slow is 5 s): a wide margin for a loaded machine.
        assert!(t.elapsed() < Duration::from_millis(2500), "{body}");
        assert_eq!(sim.fault(), fault);
        let r = send(&c, &sim, Method::GET, "/__sim/fault", None, None)
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json, serde_json::from_str::<Value>(body).unwrap());
    }
    assert_eq!(
        put(r#"{"mode":"none"}"#).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(sim.fault(), Fault::None);

    // Bad bodies are refused with a JSON error and change nothing.
    for body in [
        r#"{"mode":"explode"}"#,
        r#"{"mode":"slow"}"#,
        r#"{"mode":"status","status":42}"#,
        "not json",
    ] {
        let r = put(body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(!error_of(&r).is_empty());
    }
    assert_eq!(sim.fault(), Fault::None);
    let r = send(&c, &sim, Method::DELETE, "/__sim/fault", None, None)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers["allow"], "GET, PUT");
    let r = send(&c, &sim, Method::GET, "/__sim/nope", None, None)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Stats count API requests only (one so far, the 503); control requests are not recorded.
    let r = send(&c, &sim, Method::GET, "/__sim/stats", None, None)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json,
        json!({"requests": 1, "partnerships": 10, "rate_limited": 0,
               "peak_per_window": 1, "window_ms": 60000, "recorded": 1})
    );
    assert_eq!(sim.request_count(), 1);
    assert!(sim.requests().iter().all(|r| !r.path.starts_with("/__sim")));
    let body =
        r#"{"name":"Ctl","emails":[{"email":"a@control-corp.com"}],"partnerType":"referral"}"#;
    let r = send(
        &c,
        &sim,
        Method::POST,
        "/api/v1/partnerships",
        Some(SIM_WRITE_KEY),
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::CREATED);
    let r = send(&c, &sim, Method::GET, "/__sim/stats", None, None)
        .await
        .unwrap();
    assert_eq!(
        r.json,
        json!({"requests": 2, "partnerships": 11, "rate_limited": 0,
               "peak_per_window": 1, "window_ms": 60000, "recorded": 2})
    );
}

#[tokio::test]
async fn stats_report_the_rate_limits_429s_and_the_busiest_window_per_key() {
    let sim = start(SimConfig {
        partnerships: 5,
        rate_limit_per_minute: Some(2),
        rate_limit_mode: RateLimitMode::Sliding {
            limit: 2,
            window: Duration::from_secs(30),
        },
        control: true,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let list = "/api/v1/partnerships?userId=456";
    let statuses: Vec<StatusCode> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(get(&c, &sim, list).await.status);
        }
        v
    };
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Another key's request is its own window: the peak is per key.
    let r = send(&c, &sim, Method::GET, list, Some(SIM_WRITE_KEY), None)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let r = send(&c, &sim, Method::GET, "/__sim/stats", None, None)
        .await
        .unwrap();
    assert_eq!(
        r.json,
        json!({"requests": 4, "partnerships": 5, "rate_limited": 1,
               "peak_per_window": 3, "window_ms": 30000, "recorded": 4})
    );
}

#[tokio::test]
async fn control_endpoint_is_off_by_default() {
    let sim = start(SimConfig {
        partnerships: 5,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    sim.set_fault(Fault::Status(503));
    // Without `control`, /__sim/ is an ordinary API path: auth, faults, recorder.
    let r = send(
        &c,
        &sim,
        Method::PUT,
        "/__sim/fault",
        None,
        Some(r#"{"mode":"none"}"#),
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(sim.fault(), Fault::Status(503));
    sim.set_fault(Fault::None);
    let r = send(&c, &sim, Method::GET, "/__sim/stats", None, None)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(
        &c,
        &sim,
        Method::GET,
        "/__sim/stats",
        Some(SIM_READ_KEY),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(sim.request_count(), 3);
}

#[tokio::test]
async fn a_record_limit_keeps_recent_requests_and_an_exact_count() {
    let sim = start(SimConfig {
        record_limit: Some(3),
        partnerships: 10,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    for i in 0..5 {
        let path = format!("/api/v1/partnerships?userId=456&search=q{i}");
        assert_eq!(get(&c, &sim, &path).await.status, StatusCode::OK);
    }
    assert_eq!(sim.request_count(), 5, "the count is exact");
    let kept: Vec<String> = sim
        .requests()
        .iter()
        .map(|r| r.query.clone().unwrap_or_default())
        .collect();
    assert_eq!(kept.len(), 3, "only the most recent are kept");
    assert!(
        kept[0].contains("search=q2") && kept[2].contains("search=q4"),
        "{kept:?}"
    );
    sim.reset_recorded();
    assert_eq!(sim.request_count(), 0);
    assert!(sim.requests().is_empty());
}

/// Polls `ready` until it holds, failing after ten seconds: waiting for an event, not a
/// guessed delay.
async fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
