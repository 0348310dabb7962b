//! A write runs to completion once sent: a client that hangs up mid-create, a create cut by
//! the whole-request timeout, and a create in flight across a config reload each produce
//! exactly one upstream call, one audit event with the real outcome, one access-log line
//! saying how the client was answered, and a fresh list afterwards (the write invalidated the
//! writer's cached lists). And a write not yet sent is never sent past its deadline: one
//! whose deadline passes while it waits for an upstream connection slot is refused.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use journeybee_sim::Fault;
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

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

/// A partnership create for the partner at `domain`, with the request id `id`.
fn create(h: &Harness, token: &str, id: &str, domain: &str) -> Request<Full<Bytes>> {
    h.request(http::Method::POST, LIST, Some(token))
        .header("content-type", "application/json")
        .header("x-request-id", id)
        .body(Full::new(Bytes::from(create_body(domain))))
        .unwrap()
}

/// Sends `req` from a task of its own (a client that waits for its answer), returning the
/// status it gets.
fn in_background(h: &Harness, req: Request<Full<Bytes>>) -> JoinHandle<StatusCode> {
    let client = h.client.clone();
    tokio::spawn(async move { client.request(req).await.expect("answered").status() })
}

/// Waits until the simulator has received `n` partnership creates.
async fn creates_upstream(h: &Harness, n: usize) {
    eventually(
        &format!("{n} create(s) upstream"),
        Duration::from_secs(10),
        || h.sim.requests_to("POST", LIST) >= n,
    )
    .await;
}

/// Upstream received exactly one create, the one for `sent`, and none for `not_sent`.
fn upstream_has_only(h: &Harness, sent: &str, not_sent: &str) {
    assert_eq!(h.sim.requests_to("POST", LIST), 1);
    let domains = h.sim.partner_domains();
    assert!(domains.iter().any(|d| d == sent), "{sent} not created");
    assert!(!domains.iter().any(|d| d == not_sent), "{not_sent} created");
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
    let resp = h.send(create(&h, &alice, id, "timeout-gw.com")).await;
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

/// How long upstream takes to answer the create that holds the only connection slot.
const SLOT_HELD: Duration = Duration::from_millis(1500);

/// A gateway with one upstream connection slot and a 400 ms request timeout, the slot held by
/// a create (`holder_id`) that upstream answers after [`SLOT_HELD`]: once sent, a write
/// outlives its own deadline, so it holds the slot past the next one's deadline. The harness,
/// alice's token and the holder's status.
async fn one_slot_held(holder_id: &str, domain: &str) -> (Harness, String, JoinHandle<StatusCode>) {
    let h = Harness::with(Opts {
        server: "request_timeout = \"400ms\"".into(),
        upstream: "max_connections = 1".into(),
        ..Opts::default()
    })
    .await;
    let alice = h.token("alice@corp.test");
    h.sim.set_fault(Fault::Slow(SLOT_HELD));
    let holder = in_background(&h, create(&h, &alice, holder_id, domain));
    creates_upstream(&h, 1).await;
    (h, alice, holder)
}

#[tokio::test]
async fn a_create_whose_deadline_passes_waiting_for_a_connection_slot_is_never_sent() {
    logs();
    let holder_id = "slot-holder-1";
    let (h, alice, holder) = one_slot_held(holder_id, "slot-holder-gw.com").await;

    // The next create waits for that slot until its deadline, and is refused there.
    let id = "slot-waiter-1";
    let sent_at = Instant::now();
    let resp = h.send(create(&h, &alice, id, "slot-waiter-gw.com")).await;
    let waited = sent_at.elapsed();
    let message = resp.assert_error(504);
    // It is told the truth: nothing was sent, safe to retry (not "may have been applied").
    assert!(message.contains("before it was sent"), "{message}");
    assert_eq!(resp.header("x-request-id"), Some(id));
    assert!(
        waited < SLOT_HELD,
        "answered at its deadline, not when the slot freed: {waited:?}"
    );
    // Audit and access log say it never left.
    let audit = the_event("audit", id).await;
    assert_eq!(audit["outcome"], "not_sent", "{audit:?}");
    assert!(audit["upstream_status"].is_null(), "{audit:?}");
    let access = the_event("access", id).await;
    assert_eq!(access["status"], 504, "{access:?}");
    assert_eq!(access["reason"], "request_timeout", "{access:?}");
    // The gateway's own refusal is the outcome, however the deadline race between the
    // client's answer and the guard's went (`delivery=timed_out` when the client's won).
    let outcome = access.get("outcome_status").unwrap_or(&access["status"]);
    assert_eq!(outcome, 504, "{access:?}");
    assert!(access["upstream_status"].is_null(), "{access:?}");
    assert!(access["upstream_ms"].is_null(), "{access:?}");

    // The holder completes (its client was told 504 at its own deadline); the slot it frees
    // comes too late for the refused create, which upstream never sees.
    assert_eq!(the_event("audit", holder_id).await["outcome"], "created");
    assert_eq!(holder.await.unwrap(), 504);
    upstream_has_only(&h, "slot-holder-gw.com", "slot-waiter-gw.com");
}

#[tokio::test]
async fn a_create_in_flight_across_a_reload_completes_once_and_invalidates_the_new_cache() {
    logs();
    let h = Harness::start().await;
    let alice = h.token("alice@corp.test");

    // A create upstream answers late, in flight on the first generation.
    h.sim.set_fault(Fault::Slow(Duration::from_millis(1500)));
    let id = "reload-create-1";
    let pending = in_background(&h, create(&h, &alice, id, "reload-gw.com"));
    creates_upstream(&h, 1).await;
    h.sim.set_fault(Fault::None);

    // A reload that changes the cache settings: the new generation gets a cache of its own.
    let gw = h.gw.as_ref().unwrap();
    let old_cache = gw.state().cache.clone();
    assert!(h.reload(|t| format!("{t}\n[cache]\nttl = \"45s\"\n")).await);
    assert!(
        !Arc::ptr_eq(&old_cache, &gw.state().cache),
        "a [cache] change builds a new cache"
    );

    // The new generation caches alice's list from before the create finished.
    let before = list(&h, &alice).await;
    assert_eq!(before.header("x-cache"), Some("MISS"));
    assert!(
        !before.text().contains("reload-gw.com") && events("audit", id).is_empty(),
        "the create finished before the list was cached: the test proves nothing"
    );
    assert_eq!(list(&h, &alice).await.header("x-cache"), Some("HIT"));

    // The create finishes on the generation it started with, once, recorded once ...
    assert_eq!(pending.await.unwrap(), 201);
    let audit = the_event("audit", id).await;
    assert_eq!(audit["outcome"], "created", "{audit:?}");
    let access = the_event("access", id).await;
    assert_eq!(access["status"], 201, "{access:?}");
    assert!(access["delivery"].is_null(), "{access:?}");
    assert_eq!(h.sim.requests_to("POST", LIST), 1);
    // ... and its invalidation reached the new generation's cache.
    fresh_list_shows(&h, &alice, "reload-gw.com").await;
}

#[tokio::test]
async fn the_connection_bound_holds_across_a_reload() {
    logs();
    // The one slot is taken by a create in flight on the first generation.
    let holder_id = "reload-slot-holder-1";
    let (h, alice, holder) = one_slot_held(holder_id, "reload-holder-gw.com").await;

    // A reload (same bound): the new generation's requests wait for the same slot, and a
    // create whose deadline passes there is never sent.
    assert!(h.reload(|t| format!("{t}\n[cache]\nttl = \"45s\"\n")).await);
    let id = "reload-slot-waiter-1";
    let resp = h.send(create(&h, &alice, id, "reload-waiter-gw.com")).await;
    let message = resp.assert_error(504);
    assert!(message.contains("before it was sent"), "{message}");
    assert_eq!(the_event("audit", id).await["outcome"], "not_sent");

    assert_eq!(the_event("audit", holder_id).await["outcome"], "created");
    assert_eq!(holder.await.unwrap(), 504);
    upstream_has_only(&h, "reload-holder-gw.com", "reload-waiter-gw.com");
}
