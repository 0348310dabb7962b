//! Reference checks never multiply a create's upstream cost: the company lookups they read
//! are kept whenever the checks are on (even with the list cache off), a lookup that fails
//! is not asked again by every following create, and lookups are their own budget class.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (client, counted, sim_base) = (client.clone(), counted.clone(), sim_base.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (client, counted, sim_base) =
                        (client.clone(), counted.clone(), sim_base.clone());
                    async move {
                        if LOOKUPS.contains(&req.uri().path()) {
                            counted.fetch_add(1, Ordering::SeqCst);
                            let mut resp = Response::new(Full::new(Bytes::from_static(
                                br#"{"error":"Internal server error"}"#,
                            )));
                            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                            return Ok::<_, hyper::Error>(resp);
                        }
                        let (mut parts, body) = req.into_parts();
                        let body = body.collect().await?.to_bytes();
                        parts.uri = format!(
                            "{sim_base}{}",
                            parts.uri.path_and_query().map_or("/", |p| p.as_str())
                        )
                        .parse()
                        .unwrap();
                        parts.headers.remove(http::header::HOST);
                        let resp = client
                            .request(Request::from_parts(parts, Full::new(body)))
                            .await
                            .unwrap();
                        let (parts, body) = resp.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        Ok(Response::from_parts(parts, Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), reads)
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
