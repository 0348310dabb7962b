//! OTLP/HTTP span export: a real collector endpoint (a hyper server on 127.0.0.1:0 taking
//! `POST /v1/traces`) decodes what the gateway sends with the official `opentelemetry-proto`
//! types and checks the spans: the caller's span → the request's span → authenticate, cache,
//! budget, upstream; the upstream call's span id is the parent JourneyBee received in its
//! `traceparent`; the attributes (route template, status, cache result, budget class and
//! result, upstream status); parent-based sampling; and that no secret (API key, JWT, HMAC
//! secret) is in any exported byte.

mod common;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use journeybee_sim::{SIM_READ_KEY, SIM_WRITE_KEY};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What the collector received.
#[derive(Default)]
struct Received {
    /// Every request body, as sent.
    bodies: Vec<Bytes>,
    /// Every span, decoded.
    spans: Vec<Span>,
    /// (path, content type) of each request.
    requests: Vec<(String, String)>,
    /// Resource attributes seen.
    resource: Vec<(String, String)>,
}

#[derive(Clone)]
struct Collector {
    addr: SocketAddr,
    got: Arc<Mutex<Received>>,
    /// While set, the collector holds each request until `release` is notified.
    hold: Arc<Mutex<bool>>,
    release: Arc<Notify>,
    /// The status it answers with.
    status: Arc<Mutex<StatusCode>>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = Collector {
            addr: listener.local_addr().unwrap(),
            got: Arc::default(),
            hold: Arc::default(),
            release: Arc::new(Notify::new()),
            status: Arc::new(Mutex::new(StatusCode::OK)),
        };
        let serving = c.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let c = serving.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let c = c.clone();
                        async move { Ok::<_, std::convert::Infallible>(c.take(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        c
    }

    async fn take(&self, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let ctype = req
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let method = req.method().clone();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let held = *self.hold.lock().unwrap();
        if held {
            self.release.notified().await;
        }
        assert_eq!(method, Method::POST);
        let decoded = ExportTraceServiceRequest::decode(body.clone()).expect("valid OTLP protobuf");
        {
            let mut got = self.got.lock().unwrap();
            got.requests.push((path, ctype));
            got.bodies.push(body);
            for rs in decoded.resource_spans {
                for kv in rs.resource.map(|r| r.attributes).unwrap_or_default() {
                    got.resource.push((kv.key.clone(), value_text(&kv.value)));
                }
                for ss in rs.scope_spans {
                    got.spans.extend(ss.spans);
                }
            }
        }
        let status = *self.status.lock().unwrap();
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    fn spans(&self) -> Vec<Span> {
        self.got.lock().unwrap().spans.clone()
    }
}

fn value_text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(n)) => n.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| (kv.key.clone(), value_text(&kv.value)))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn trace_id(n: u8) -> String {
    format!("4bf92f3577b34da6a3ce929d0e0e47{n:02x}")
}

/// One trace's spans by name (each name once), checked to be children of the request span.
struct Tree {
    request: Span,
    children: HashMap<String, Span>,
}

fn tree(spans: &[Span], trace: &str) -> Tree {
    let trace = unhex(trace);
    let mine: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace).collect();
    let requests: Vec<&&Span> = mine.iter().filter(|s| s.name == "request").collect();
    assert_eq!(requests.len(), 1, "one request span: {mine:#?}");
    let request = (*requests[0]).clone();
    assert_eq!(request.kind, SpanKind::Server as i32);
    let mut children = HashMap::new();
    for s in mine.iter().filter(|s| s.name != "request") {
        assert_eq!(
            s.parent_span_id, request.span_id,
            "{} is a child of the request span",
            s.name
        );
        assert!(s.start_time_unix_nano >= request.start_time_unix_nano);
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
        assert!(
            children.insert(s.name.clone(), (*s).clone()).is_none(),
            "one {} span",
            s.name
        );
    }
    Tree { request, children }
}

impl Tree {
    fn child(&self, name: &str) -> &Span {
        self.children
            .get(name)
            .unwrap_or_else(|| panic!("a {name} span among {:?}", self.children.keys()))
    }

    fn names(&self) -> Vec<&str> {
        let mut n: Vec<&str> = self.children.keys().map(String::as_str).collect();
        n.sort_unstable();
        n
    }
}

/// The `traceparent` JourneyBee received with the request whose id is `id`.
fn upstream_traceparent(h: &Harness, id: &str) -> String {
    let got: Vec<String> = h
        .sim
        .requests()
        .iter()
        .filter(|r| r.headers.get("x-request-id").is_some_and(|v| v == id))
        .map(|r| r.headers["traceparent"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(got.len(), 1, "one upstream request for {id}");
    got[0].clone()
}

async fn send(
    h: &Harness,
    method: Method,
    path: &str,
    token: Option<&str>,
    id: &str,
    traceparent: Option<String>,
    body: Option<String>,
) -> StatusCode {
    let mut b = h.request(method, path, token).header("x-request-id", id);
    if let Some(tp) = traceparent {
        b = b.header("traceparent", tp);
    }
    let body = match body {
        Some(json) => {
            b = b.header("content-type", "application/json");
            Bytes::from(json)
        }
        None => Bytes::new(),
    };
    h.send(b.body(Full::new(body)).unwrap()).await.status
}

async fn harness(collector: &Collector, tracing: &str) -> Harness {
    Harness::with(Opts {
        tail: format!(
            "[tracing]\notlp_endpoint = \"{}\"\n{tracing}\n",
            collector.endpoint()
        ),
        ..Opts::default()
    })
    .await
}

async fn flush(h: &Harness) {
    let tracer = h.gw.as_ref().unwrap().state().tracer.clone();
    tracer.expect("tracing on").flush().await;
}

#[tokio::test]
async fn spans_are_exported_linked_and_labelled_and_carry_no_secret() {
    let collector = Collector::start().await;
    let h = harness(&collector, "").await;
    let bob = h.token("bob@corp.test");
    let alice = h.token("alice@corp.test");
    let expired = h.token_with("bob@corp.test", |c| c["exp"] = json!(now() - 600));
    let list = "/api/v1/partnerships?view=all";
    let sampled = |n: u8| Some(format!("00-{}-{CALLER_SPAN}-01", trace_id(n)));

    // 1: a list continuing a sampled trace: a miss, fetched upstream.
    assert_eq!(
        send(
            &h,
            Method::GET,
            list,
            Some(&bob),
            "otlp-1",
            sampled(1),
            None
        )
        .await,
        StatusCode::OK
    );
    // 2: the same list again: a hit, nothing upstream.
    assert_eq!(
        send(
            &h,
            Method::GET,
            list,
            Some(&bob),
            "otlp-2",
            sampled(2),
            None
        )
        .await,
        StatusCode::OK
    );
    // 3: a create.
    assert_eq!(
        send(
            &h,
            Method::POST,
            "/api/v1/partnerships",
            Some(&alice),
            "otlp-3",
            sampled(3),
            Some(create_body("otlp-gw.com"))
        )
        .await,
        StatusCode::CREATED
    );
    // 4: the caller did not sample its trace: nothing is recorded, and upstream hears so.
    let unsampled = format!("00-{}-{CALLER_SPAN}-00", trace_id(4));
    assert_eq!(
        send(
            &h,
            Method::GET,
            "/api/v1/partnerships?view=all&search=n5",
            Some(&bob),
            "otlp-4",
            Some(unsampled),
            None
        )
        .await,
        StatusCode::OK
    );
    // 5: an expired token: refused in authentication.
    assert_eq!(
        send(
            &h,
            Method::GET,
            list,
            Some(&expired),
            "otlp-5",
            sampled(5),
            None
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    // 6: no traceparent: a trace started here, sampled (sample_ratio defaults to 1).
    assert_eq!(
        send(
            &h,
            Method::GET,
            "/api/v1/partnerships?view=all&search=n7",
            Some(&bob),
            "otlp-6",
            None,
            None
        )
        .await,
        StatusCode::OK
    );
    // 7: the token in the query instead of the header (refused: it must not leak either).
    let r = h
        .get(
            &format!("/api/v1/partnerships?view=all&search=n3&access_token={bob}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());

    flush(&h).await;
    let spans = collector.spans();

    // 1: the whole tree.
    let t = tree(&spans, &trace_id(1));
    assert_eq!(
        hex(&t.request.parent_span_id),
        CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(t.names(), ["authenticate", "budget", "cache", "upstream"]);
    let a = attrs(&t.request);
    assert_eq!(a["http.route"], "/api/v1/partnerships");
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(a["jbgw.cache.result"], "MISS");
    assert_eq!(a["jbgw.upstream.status_code"], "200");
    assert_eq!(
        t.request.flags & 0x301,
        0x301,
        "sampled, with a remote parent"
    );
    assert_eq!(attrs(t.child("authenticate"))["jbgw.auth.result"], "ok");
    assert_eq!(attrs(t.child("authenticate"))["jbgw.auth.method"], "jwt");
    assert_eq!(attrs(t.child("cache"))["jbgw.cache.result"], "MISS");
    let b = attrs(t.child("budget"));
    assert_eq!(
        (
            b["jbgw.budget.class"].as_str(),
            b["jbgw.budget.result"].as_str()
        ),
        ("cold", "admitted")
    );
    let up = t.child("upstream");
    assert_eq!(up.kind, SpanKind::Client as i32);
    assert_eq!(attrs(up)["http.response.status_code"], "200");
    assert_eq!(attrs(up)["http.route"], "/api/v1/partnerships");
    let seen = upstream_traceparent(&h, "otlp-1");
    assert_eq!(
        seen,
        format!("00-{}-{}-01", trace_id(1), hex(&up.span_id)),
        "JourneyBee's parent is the upstream call's span"
    );
    assert_ne!(up.span_id, t.request.span_id);

    // 2: a hit: no budget spent, nothing upstream.
    let t = tree(&spans, &trace_id(2));
    assert_eq!(t.names(), ["authenticate", "cache"]);
    assert_eq!(attrs(&t.request)["jbgw.cache.result"], "HIT");
    assert_eq!(attrs(t.child("cache"))["jbgw.cache.result"], "HIT");

    // 3: a create: no cache, the write budget, 201 upstream.
    let t = tree(&spans, &trace_id(3));
    assert_eq!(t.names(), ["authenticate", "budget", "upstream"]);
    assert_eq!(attrs(&t.request)["http.response.status_code"], "201");
    assert_eq!(attrs(&t.request)["http.request.method"], "POST");
    assert_eq!(attrs(t.child("budget"))["jbgw.budget.class"], "write");
    assert_eq!(
        attrs(t.child("upstream"))["http.response.status_code"],
        "201"
    );
    let seen = upstream_traceparent(&h, "otlp-3");
    assert_eq!(&seen[36..52], hex(&t.child("upstream").span_id));

    // 4: not sampled: no span, and the upstream call says so.
    assert!(!spans.iter().any(|s| s.trace_id == unhex(&trace_id(4))));
    assert!(upstream_traceparent(&h, "otlp-4").ends_with("-00"));

    // 5: refused in authentication, and why.
    let t = tree(&spans, &trace_id(5));
    assert_eq!(t.names(), ["authenticate"]);
    assert_eq!(attrs(&t.request)["http.response.status_code"], "401");
    let a = attrs(t.child("authenticate"));
    assert_eq!(
        (
            a["jbgw.auth.result"].as_str(),
            a["jbgw.auth.failure"].as_str()
        ),
        ("rejected", "expired")
    );

    // 6: a trace started here: a root span, sampled upstream too.
    let seen = upstream_traceparent(&h, "otlp-6");
    assert!(seen.ends_with("-01"), "{seen}");
    let t = tree(&spans, &seen[3..35]);
    assert!(t.request.parent_span_id.is_empty(), "a root span");
    assert_eq!(
        t.request.flags & 0x301,
        0x101,
        "sampled, parent known not remote"
    );
    assert_eq!(&seen[36..52], hex(&t.child("upstream").span_id));

    // The collector got protobuf on its OTLP path, with the service named.
    let got = collector.got.lock().unwrap();
    assert!(got
        .requests
        .iter()
        .all(|(p, c)| p == "/v1/traces" && c == "application/x-protobuf"));
    assert!(got
        .resource
        .contains(&("service.name".into(), "journeybee-gateway".into())));

    // No secret in any byte the collector received: not the API keys, not the tokens (in a
    // header or the query), not the HMAC secret the tokens are signed with.
    let secrets = [
        SIM_READ_KEY,
        SIM_WRITE_KEY,
        JWT_SECRET,
        &bob,
        &alice,
        &expired,
        "Bearer",
    ];
    let signatures: Vec<&str> = [&bob, &alice, &expired]
        .iter()
        .map(|t| t.rsplit('.').next().unwrap())
        .collect();
    for body in &got.bodies {
        for s in secrets.iter().copied().chain(signatures.iter().copied()) {
            assert!(!contains(body, s.as_bytes()), "a secret in an export: {s}");
        }
    }
    for span in &got.spans {
        for (k, v) in attrs(span) {
            for s in secrets.iter().copied().chain(signatures.iter().copied()) {
                assert!(
                    !k.contains(s) && !v.contains(s),
                    "a secret in {}: {k}={v}",
                    span.name
                );
            }
            assert_ne!(k, "http.request.header.authorization");
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn sampling_is_parent_based_and_a_full_queue_drops_and_counts() {
    let collector = Collector::start().await;
    let h = harness(
        &collector,
        "sample_ratio = 0.0\nmax_queue_size = 1\nmax_export_batch_size = 1",
    )
    .await;
    let bob = h.token("bob@corp.test");

    // A new trace with sample_ratio 0: not recorded, not sampled upstream.
    assert_eq!(
        send(
            &h,
            Method::GET,
            "/api/v1/partnerships?view=all",
            Some(&bob),
            "ratio-0",
            None,
            None
        )
        .await,
        StatusCode::OK
    );
    flush(&h).await;
    assert!(collector.spans().is_empty(), "{:#?}", collector.spans());
    assert!(upstream_traceparent(&h, "ratio-0").ends_with("-00"));

    // The collector stalls: the request is answered anyway, and of its five spans at most
    // two fit (one being exported, one queued); the rest are dropped and counted.
    *collector.hold.lock().unwrap() = true;
    let tp = format!("00-{}-{CALLER_SPAN}-01", trace_id(9));
    assert_eq!(
        send(
            &h,
            Method::GET,
            "/api/v1/partnerships?view=all&search=n9",
            Some(&bob),
            "stalled",
            Some(tp),
            None
        )
        .await,
        StatusCode::OK,
        "a caller's sampled flag is followed whatever the ratio"
    );
    let dropped = |text: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with("jbgw_trace_spans_dropped_total{reason=\"queue_full\"}"))
            .map_or(0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
    };
    let metrics = h.admin_get("/metrics").await.text();
    assert!(
        dropped(&metrics) >= 3,
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("trace_spans"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    *collector.hold.lock().unwrap() = false;
    collector.release.notify_waiters();
    collector.release.notify_one();
    flush(&h).await;
    let spans = collector.spans();
    assert!(
        !spans.is_empty() && spans.len() <= 2,
        "{} spans",
        spans.len()
    );
    assert!(spans.iter().all(|s| s.trace_id == unhex(&trace_id(9))));
}

#[tokio::test]
async fn a_collector_refusing_a_batch_is_counted() {
    let collector = Collector::start().await;
    *collector.status.lock().unwrap() = StatusCode::SERVICE_UNAVAILABLE;
    let h = harness(&collector, "").await;
    let bob = h.token("bob@corp.test");
    assert_eq!(
        send(
            &h,
            Method::GET,
            "/api/v1/partnerships?view=all",
            Some(&bob),
            "refused",
            None,
            None
        )
        .await,
        StatusCode::OK
    );
    flush(&h).await;
    let metrics = h.admin_get("/metrics").await.text();
    assert!(
        metrics.contains("jbgw_trace_spans_dropped_total{reason=\"export_failed\"} 5"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("trace_spans"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn shutdown_sends_what_is_queued() {
    let collector = Collector::start().await;
    // Nothing would be sent for an hour but for the shutdown.
    let mut h = harness(&collector, "export_interval = \"1h\"").await;
    let bob = h.token("bob@corp.test");
    let tp = format!("00-{}-{CALLER_SPAN}-01", trace_id(7));
    assert_eq!(
        send(
            &h,
            Method::GET,
            "/api/v1/partnerships?view=all",
            Some(&bob),
            "bye",
            Some(tp),
            None
        )
        .await,
        StatusCode::OK
    );
    assert!(
        collector.spans().is_empty(),
        "nothing sent before the interval"
    );
    h.shutdown().await;
    let t = tree(&collector.spans(), &trace_id(7));
    assert_eq!(t.names(), ["authenticate", "budget", "cache", "upstream"]);
}
