//! The upstream's fault paths, over real sockets: an upstream that accepts TCP and never
//! finishes the TLS handshake is unreachable within `connect_timeout`, and a create sent to it
//! is answered "not sent, safe to retry", its budget refunded and its `Idempotency-Key` free,
//! so the same create after a reload to a healthy upstream is sent exactly once. And an
//! upstream 429 whose `Retry-After` is an HTTP-date pauses the key until that date.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::Full;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const CREATE: &str = "/api/v1/partnerships";

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

/// Waits for the write's audit event (request id `id`) and returns its `outcome`.
async fn audit_outcome(id: &str) -> String {
    let found = || -> Vec<serde_json::Value> {
        let text = String::from_utf8(logs().0.lock().unwrap().clone()).unwrap();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["target"] == "audit" && e["request_id"] == id)
            .collect()
    };
    eventually("the audit event", Duration::from_secs(10), || {
        !found().is_empty()
    })
    .await;
    let events = found();
    assert_eq!(events.len(), 1, "{events:?}");
    events[0]["outcome"].as_str().unwrap().to_string()
}

/// An upstream that accepts TCP connections and reads whatever comes (the TLS ClientHello)
/// without ever answering: the handshake never completes. Returns its `https://` URL and the
/// number of connections it accepted.
async fn silent_tls_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut sink = [0u8; 4096];
                while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    (url, accepted)
}

/// A keyed create; its request id is the key, so its audit event can be found.
async fn create_with_key(h: &Harness, token: &str, key: &str, body: &str) -> Resp {
    let req = h
        .request(Method::POST, CREATE, Some(token))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .header("x-request-id", key)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    h.send(req).await
}

/// `jbgw_upstream_budget_remaining` for the `write` key.
async fn write_budget_left(h: &Harness) -> u64 {
    let text = h.admin_get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix("jbgw_upstream_budget_remaining{upstream_key=\"write\"} "))
        .unwrap_or_else(|| panic!("no budget gauge for the write key:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Points the gateway at `from`'s replacement `to` (and any other edits), as SIGHUP would.
async fn reload_upstream(h: &Harness, from: &str, to: &str, edits: &[(&str, &str)]) {
    let edits: Vec<(String, String)> = edits
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let (from, to) = (from.to_string(), to.to_string());
    assert!(
        h.reload(move |mut text| {
            assert!(text.contains(&from), "{from} not in the config");
            text = text.replace(&from, &to);
            for (a, b) in edits {
                assert!(text.contains(&a), "{a} not in the config");
                text = text.replace(&a, &b);
            }
            text
        })
        .await,
        "the reload was refused"
    );
}

/// The same create and key again, healthy upstream: sent once, 201, then replayed.
async fn sent_exactly_once(h: &Harness, token: &str, key: &str, body: &str) {
    let r = create_with_key(h, token, key, body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("idempotent-replayed"), None, "it was really sent");
    let again = create_with_key(h, token, key, body).await;
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(h.sim.requests_to("POST", CREATE), 1, "sent exactly once");
}

#[tokio::test]
async fn a_create_to_an_upstream_that_never_finishes_tls_is_not_sent_and_its_key_stays_free() {
    // The create's own connection attempt: one connect_timeout.
    silent_tls_create(false, Duration::from_secs(3)).await;
}

/// The same with reference checks on (the default in production): the create's lookups
/// (reads, retried twice on connect errors) each end within connect_timeout too, so the
/// answer comes after about (1 + 2 retries) + 1 connect_timeouts (4 s), where before each
/// waited out response_timeout (the issue's 504 after 6 s, here it would be 40 s).
#[tokio::test]
async fn with_reference_lookups_the_create_is_still_bounded_by_connect_timeouts() {
    silent_tls_create(true, Duration::from_secs(6)).await;
}

/// A keyed create against an upstream that never finishes TLS (connect_timeout 1 s,
/// response_timeout 20 s): "not sent" within `max`, refunded, then sent once after a reload to
/// a healthy upstream.
async fn silent_tls_create(check_references: bool, max: Duration) {
    logs();
    let (silent, accepted) = silent_tls_upstream().await;
    let h = Harness::with(Opts {
        check_references,
        ..Opts::default()
    })
    .await;
    let sim = h.sim.base_url();
    // connect_timeout 1 s (the harness's), response_timeout far longer: the answer must come
    // from the first.
    reload_upstream(
        &h,
        &sim,
        &silent,
        &[("response_timeout = \"2s\"", "response_timeout = \"20s\"")],
    )
    .await;
    let alice = h.token("alice@corp.test");
    let body = create_body("tls-silent.test");
    let budget = write_budget_left(&h).await;

    let key = if check_references {
        "silent-refs"
    } else {
        "silent-1"
    };
    let started = Instant::now();
    let r = create_with_key(&h, &alice, key, &body).await;
    let took = started.elapsed();
    let message = r.assert_error(502);
    assert!(
        message.contains("not sent") && message.contains("safe to retry"),
        "{message}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < max,
        "answered after {took:?}: bounded by connect_timeout (1 s), not response_timeout (20 s)"
    );
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "TCP was accepted: the handshake is what never ended"
    );
    assert_eq!(
        write_budget_left(&h).await,
        budget,
        "the admission was refunded"
    );
    assert_eq!(audit_outcome(key).await, "not_sent");

    // A healthy upstream now: the same key is free, and the create goes out once.
    reload_upstream(&h, &silent, &sim, &[]).await;
    assert_eq!(h.sim.requests_to("POST", CREATE), 0);
    sent_exactly_once(&h, &alice, key, &body).await;
    if !check_references {
        assert_eq!(
            h.upstream_count(),
            1,
            "nothing else reached the healthy upstream"
        );
    }
}

/// The deadline passes while the connection is still being made: the client is told the
/// truth ("not sent"), the write is then never sent, and its key is released once the
/// connection attempt ends.
#[tokio::test]
async fn a_create_whose_deadline_passes_while_connecting_is_answered_not_sent() {
    logs();
    let (silent, _) = silent_tls_upstream().await;
    let h = Harness::with(Opts {
        server: "request_timeout = \"1s\"".into(),
        ..Opts::default()
    })
    .await;
    let sim = h.sim.base_url();
    reload_upstream(
        &h,
        &sim,
        &silent,
        &[
            ("connect_timeout = \"1s\"", "connect_timeout = \"3s\""),
            ("response_timeout = \"2s\"", "response_timeout = \"20s\""),
        ],
    )
    .await;
    let alice = h.token("alice@corp.test");
    let body = create_body("tls-deadline.test");
    let started = Instant::now();
    let r = create_with_key(&h, &alice, "deadline-1", &body).await;
    let message = r.assert_error(504);
    assert!(
        message.contains("before it was sent") && message.contains("safe to retry"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(2800),
        "answered at the 1 s deadline, not after the 3 s connect_timeout"
    );
    // Once its connection attempt ends, the write says it was never sent.
    assert_eq!(audit_outcome("deadline-1").await, "not_sent");

    reload_upstream(
        &h,
        &silent,
        &sim,
        &[("request_timeout = \"1s\"", "request_timeout = \"10s\"")],
    )
    .await;
    // The write's task is still connecting (until its 3 s connect_timeout): a repeat meanwhile
    // hears "in flight" (409 with Retry-After), never "outcome unknown" (409 without).
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let r = create_with_key(&h, &alice, "deadline-1", &body).await;
        if r.status == 409 {
            assert!(
                r.header("retry-after").is_some(),
                "the key was taken for an unknown outcome: {}",
                r.text()
            );
            assert!(Instant::now() < until, "the key was never released");
            continue;
        }
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.header("idempotent-replayed"), None);
        break;
    }
    assert_eq!(h.sim.requests_to("POST", CREATE), 1, "sent exactly once");
}

/// A raw upstream answering every request 429 with `Retry-After` as an HTTP-date `secs`
/// seconds after its own `Date`; returns its URL and the number of requests it saw.
async fn limited_upstream(secs: u64) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let s = s.clone();
            let service = hyper::service::service_fn(move |_req: http::Request<_>| {
                s.fetch_add(1, Ordering::SeqCst);
                let now = SystemTime::now();
                let resp = http::Response::builder()
                    .status(429)
                    .header("content-type", "application/json")
                    .header("date", httpdate::fmt_http_date(now))
                    .header(
                        "retry-after",
                        httpdate::fmt_http_date(now + Duration::from_secs(secs)),
                    )
                    .body(Full::new(Bytes::from_static(
                        br#"{"error":"Too many requests"}"#,
                    )))
                    .unwrap();
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_retry_after_date_pauses_the_key_until_that_date() {
    let (url, seen) = limited_upstream(20).await;
    let h = Harness::start().await;
    let sim = h.sim.base_url();
    reload_upstream(&h, &sim, &url, &[]).await;
    let alice = h.token("alice@corp.test");
    let first = h.get(CREATE, Some(&alice)).await;
    assert_eq!(first.status, 429, "{}", first.text());
    assert_eq!(seen.load(Ordering::SeqCst), 1);

    // The key is paused: the gateway answers the next one itself, with what is left of the
    // upstream's 20 s (whole seconds, rounded either way), not the 60 s default.
    let next = h.get(CREATE, Some(&alice)).await;
    next.assert_error(429);
    assert_eq!(seen.load(Ordering::SeqCst), 1, "refused before upstream");
    let retry_after: u64 = next
        .header("retry-after")
        .expect("a Retry-After")
        .parse()
        .unwrap();
    assert!(
        (17..=21).contains(&retry_after),
        "Retry-After {retry_after}: the upstream asked for 20 s"
    );
}
