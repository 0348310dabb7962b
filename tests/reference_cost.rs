//! Reference checks never multiply a create's upstream cost: the company lookups they read
//! are kept whenever the checks are on (even with the list cache off), a lookup that fails
//! is not asked again by every following create, and lookups are their own budget class.

mod common;

use bytes::Bytes;
use common::proxy;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const LOOKUPS: [&str; 2] = ["/api/v1/tiers", "/api/v1/custom-fields"];

fn opts(cache: &str) -> Opts {
    Opts {
        check_references: true,
        tail: format!("[cache]\n{cache}\n"),
        ..Opts::default()
    }
}

/// A create naming a tier the company has, with every custom field the company requires.
fn create_with_tier(h: &Harness, domain: &str) -> String {
    let mut body: Value = serde_json::from_str(&create_body(domain)).unwrap();
    body["tierId"] = h.sim.tiers()[0]["id"].clone();
    let required: Vec<Value> = h
        .sim
        .custom_fields()
        .into_iter()
        .filter(|f| f["required"] == json!(true) && f["category"] == json!("partner"))
        .collect();
    if !required.is_empty() {
        body["customFields"] = Value::Array(
            required
                .iter()
                .map(|f| json!({"id": f["id"], "value": "x"}))
                .collect(),
        );
    }
    body.to_string()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn with_the_list_cache_off_three_creates_read_each_lookup_at_most_once() {
    let h = Harness::with(opts("enabled = false")).await;
    let alice = h.token("alice@corp.test");
    for i in 0..3 {
        let body = create_with_tier(&h, &format!("refcost{i}-{}.example", now()));
        let r = h
            .post_json("/api/v1/partnerships", Some(&alice), &body)
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    assert_eq!(h.sim.requests_to("POST", "/api/v1/partnerships"), 3);
    for lookup in LOOKUPS {
        assert!(
            h.sim.requests_to("GET", lookup) <= 1,
            "{lookup} read {} times",
            h.sim.requests_to("GET", lookup)
        );
    }
    let m = h.admin_get("/metrics").await.text();
    assert!(
        metric(
            &m,
            "jbgw_budget_decisions_total{class=\"lookup\",pool=\"shared\",result=\"admitted\"}"
        ) >= 1.0,
        "lookups are counted as their own class"
    );
    // A client's own list is still not cached.
    let bob = h.token("bob@corp.test");
    for _ in 0..2 {
        let r = h.get("/api/v1/partnerships?view=all", Some(&bob)).await;
        assert_eq!(r.header("x-cache"), Some("BYPASS"));
    }
}

/// A proxy in front of the simulator that answers 500 to every lookup read, counting them.
async fn failing_lookups(sim_base: String) -> (String, Arc<AtomicUsize>) {
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    let url = proxy::start(sim_base, move |upstream, req: Request<Incoming>| {
        let counted = counted.clone();
        async move {
            if !LOOKUPS.contains(&req.uri().path()) {
                return upstream.forward(req).await;
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let mut resp = Response::new(Full::new(Bytes::from_static(
                br#"{"error":"Internal server error"}"#,
            )));
            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            Ok(resp)
        }
    })
    .await;
    (url, reads)
}

#[tokio::test]
async fn a_failing_lookup_is_read_once_not_by_every_create() {
    let h = Harness::with(opts("")).await;
    let (proxy, reads) = failing_lookups(h.sim.base_url()).await;
    let sim = h.sim.base_url();
    assert!(h.reload(|text| text.replace(&sim, &proxy)).await);
    let alice = h.token("alice@corp.test");
    for i in 0..3 {
        let body = create_with_tier(&h, &format!("refneg{i}-{}.example", now()));
        let r = h
            .post_json("/api/v1/partnerships", Some(&alice), &body)
            .await;
        // The lookups could not be read: the schema alone is checked, the create goes on.
        assert_eq!(r.status, 201, "{}", r.text());
    }
    assert_eq!(h.sim.requests_to("POST", "/api/v1/partnerships"), 3);
    assert_eq!(
        reads.load(Ordering::SeqCst),
        LOOKUPS.len(),
        "one read of each lookup, not one per create"
    );
    let m = h.admin_get("/metrics").await.text();
    assert_eq!(
        metric(&m, "jbgw_reference_checks_total{result=\"skipped\"}"),
        3.0
    );
}
