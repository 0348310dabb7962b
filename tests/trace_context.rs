//! W3C Trace Context: a client's `traceparent` is continued (the upstream call gets the same
//! trace id with the gateway's span as parent, and the caller's `tracestate`), a request
//! without one (or with a malformed one) starts a trace, a client's own trace headers are
//! never forwarded as they came, and the trace id is in the access and audit lines.

mod common;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn upstream_traceparent(h: &Harness) -> String {
    let last = h.sim.requests().pop().expect("an upstream request");
    let values: Vec<_> = last.headers.get_all("traceparent").iter().collect();
    assert_eq!(values.len(), 1, "exactly one traceparent upstream");
    values[0].to_str().unwrap().to_string()
}

#[tokio::test]
async fn trace_context_is_continued_upstream_and_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .init();
    let h = Harness::start().await;
    let bob = h.token("bob@corp.test");
    let alice = h.token("alice@corp.test");
    let parent = format!("00-{TRACE}-{CALLER_SPAN}-01");

    // A list continuing the caller's trace.
    let req = h
        .request(Method::GET, "/api/v1/partnerships?view=all", Some(&bob))
        .header("traceparent", &parent)
        .header("tracestate", "congo=t61rcWkgMzE")
        .header("x-request-id", "trace-list-1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::OK);
    let up = upstream_traceparent(&h);
    assert!(up.starts_with(&format!("00-{TRACE}-")), "{up}");
    assert!(up.ends_with("-01"), "{up}");
    assert_ne!(
        &up[36..52],
        CALLER_SPAN,
        "the gateway's span is the upstream call's parent"
    );
    let last = h.sim.requests().pop().unwrap();
    assert_eq!(last.headers["tracestate"], "congo=t61rcWkgMzE");

    // A create: the client's trace headers are not forwarded as they came; the gateway's are.
    let req = h
        .request(Method::POST, "/api/v1/partnerships", Some(&alice))
        .header("content-type", "application/json")
        .header("traceparent", &parent)
        .header("x-request-id", "trace-create-1")
        .body(Full::new(Bytes::from(create_body("trace-gw.com"))))
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::CREATED);
    let up = upstream_traceparent(&h);
    assert!(
        up.starts_with(&format!("00-{TRACE}-")) && &up[36..52] != CALLER_SPAN,
        "{up}"
    );

    // No traceparent (or a malformed one): a new trace, not sampled by the gateway.
    for header in [None, Some("00-not-a-trace-01")] {
        let mut req = h.request(
            Method::GET,
            "/api/v1/partnerships?view=all&search=x",
            Some(&bob),
        );
        if let Some(v) = header {
            req = req.header("traceparent", v);
        }
        let resp = h.send(req.body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(resp.status, StatusCode::OK);
        let up = upstream_traceparent(&h);
        assert_eq!(up.len(), 55, "{up}");
        assert!(!up.contains(TRACE) && up.ends_with("-00"), "{up}");
    }

    // A rejection is logged with its trace id too.
    let req = h
        .request(Method::GET, "/api/v1/partnerships", None)
        .header("traceparent", &parent)
        .header("x-request-id", "trace-rejected-1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::UNAUTHORIZED);

    let lines: Vec<Value> = {
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let access = |id: &str| {
        lines
            .iter()
            .find(|l| l["target"] == "access" && l["request_id"] == id)
            .unwrap_or_else(|| panic!("no access line for {id}"))
    };
    for id in ["trace-list-1", "trace-create-1", "trace-rejected-1"] {
        assert_eq!(access(id)["trace_id"], TRACE, "{id}");
    }
    let audit = lines
        .iter()
        .find(|l| l["target"] == "audit" && l["request_id"] == "trace-create-1")
        .expect("an audit line for the create");
    assert_eq!(audit["trace_id"], TRACE);
    // Every access line has a trace id.
    assert!(lines
        .iter()
        .filter(|l| l["target"] == "access")
        .all(|l| l["trace_id"].as_str().is_some_and(|t| t.len() == 32)));
}
