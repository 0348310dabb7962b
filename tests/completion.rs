//! A write runs to completion once sent: a client that hangs up mid-create, and a create cut
//! by the whole-request timeout, each produce exactly one upstream call, one audit event with
//! the real outcome, one access-log line saying how the client was answered, and a fresh list
//! afterwards (the write invalidated the writer's cached lists).

mod common;

use common::*;
use journeybee_sim::Fault;
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Every log event of this test binary, as JSON lines (one global subscriber per process).
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

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

/// The events with `request_id` on `target`.
fn events(target: &str, request_id: &str) -> Vec<Value> {
    let text = String::from_utf8(logs().0.lock().unwrap().clone()).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["target"] == target && e["request_id"] == request_id)
        .collect()
}

const LIST: &str = "/api/v1/partnerships";

/// Lists as alice and returns the response (priming or reading her cache).
async fn list(h: &Harness, token: &str) -> Resp {
    let r = h.get(LIST, Some(token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

/// Waits for the one event with `request_id` on `target` and returns it; fails if there are
/// more.
async fn the_event(target: &str, request_id: &str) -> Value {
    eventually(
        &format!("the {target} event"),
        Duration::from_secs(10),
        || !events(target, request_id).is_empty(),
    )
    .await;
    let found = events(target, request_id);
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

/// Primes alice's cached list (a list from before the write) and returns her token.
async fn cached_list(h: &Harness) -> String {
    let alice = h.token("alice@corp.test");
    list(h, &alice).await;
    assert_eq!(list(h, &alice).await.header("x-cache"), Some("HIT"));
    alice
}

/// The writer's cached list was invalidated: the next one is fetched and shows the partner
/// created at `domain`.
async fn fresh_list_shows(h: &Harness, token: &str, domain: &str) {
    h.sim.set_fault(Fault::None);
    let after = list(h, token).await;
    assert_eq!(after.header("x-cache"), Some("MISS"));
    assert!(after.text().contains(domain), "{}", after.text());
}

#[tokio::test]
async fn a_create_whose_client_hangs_up_completes_once_and_is_recorded() {
    logs();
    let h = Harness::start().await;
    let alice = cached_list(&h).await;

    h.sim.set_fault(Fault::Slow(Duration::from_millis(400)));
    let body = create_body("hangup-gw.com");
    let id = "hangup-create-1";
    let mut socket = tokio::net::TcpStream::connect(h.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!(
        "POST {LIST} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {alice}\r\n\
         content-type: application/json\r\nx-request-id: {id}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    // Once the create is upstream, the client goes away without reading the answer.
    eventually(
        "the create to reach upstream",
        Duration::from_secs(10),
        || h.sim.requests_to("POST", LIST) == 1,
    )
    .await;
    drop(socket);

    // The write finishes anyway, and says so once.
    let audit = the_event("audit", id).await;
    assert_eq!(audit["outcome"], "created", "{audit:?}");
    assert_eq!(audit["upstream_status"], 201, "{audit:?}");
    let access = the_event("access", id).await;
    assert_eq!(access["delivery"], "client_gone", "{access:?}");
    assert_eq!(access["status"], 499, "{access:?}");
    assert_eq!(access["outcome_status"], 201, "{access:?}");
    assert_eq!(h.sim.requests_to("POST", LIST), 1);

    fresh_list_shows(&h, &alice, "hangup-gw.com").await;
}

#[tokio::test]
async fn a_create_cut_by_the_request_timeout_completes_once_and_is_recorded() {
    logs();
    let h = Harness::with(Opts {
        server: "request_timeout = \"300ms\"".into(),
        ..Opts::default()
    })
    .await;
    let alice = cached_list(&h).await;

    // Upstream answers after the request's deadline (but within its response timeout).
    h.sim.set_fault(Fault::Slow(Duration::from_millis(900)));
    let id = "timeout-create-1";
    let resp = h
        .send(
            h.request(http::Method::POST, LIST, Some(&alice))
                .header("content-type", "application/json")
                .header("x-request-id", id)
                .body(http_body_util::Full::new(bytes::Bytes::from(create_body(
                    "timeout-gw.com",
                ))))
                .unwrap(),
        )
        .await;
    // The client is told the truth it has: the create may have happened.
    let msg = resp.assert_error(504);
    assert!(msg.contains("may have been"), "{msg}");
    assert_eq!(resp.header("x-request-id"), Some(id));
    // No audit event yet: the create is still upstream.
    assert!(events("audit", id).is_empty());

    let audit = the_event("audit", id).await;
    assert_eq!(audit["outcome"], "created", "{audit:?}");
    let access = the_event("access", id).await;
    assert_eq!(access["delivery"], "timed_out", "{access:?}");
    assert_eq!(access["status"], 504, "{access:?}");
    assert_eq!(access["outcome_status"], 201, "{access:?}");
    assert_eq!(h.sim.requests_to("POST", LIST), 1);

    fresh_list_shows(&h, &alice, "timeout-gw.com").await;
}

#[tokio::test]
async fn a_read_is_cancelled_with_its_client() {
    logs();
    let h = Harness::start().await;
    let bob = h.token("bob@corp.test");
    h.sim.set_fault(Fault::Slow(Duration::from_millis(400)));
    let id = "hangup-read-1";
    let mut socket = tokio::net::TcpStream::connect(h.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!(
        "GET {LIST} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {bob}\r\nx-request-id: {id}\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    h.wait_for_upstream(1).await;
    drop(socket);
    // Logged as nginx logs a client that left: 499.
    let access = the_event("access", id).await;
    assert_eq!(access["status"], 499, "{access:?}");
}
