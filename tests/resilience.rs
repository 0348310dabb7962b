//! Resilience: at most one create upstream, idempotent replays, the upstream budget, upstream
//! 429 pauses, per-user fair share, list retries and the circuit breaker.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::Full;
use journeybee_sim::Fault;
use std::time::Duration;

fn opts(upstream: &str, tail: &str) -> Opts {
    Opts {
        upstream: upstream.into(),
        tail: tail.into(),
        ..Opts::default()
    }
}

async fn create_with_key(h: &Harness, token: &str, key: &str, body: &str) -> Resp {
    let req = h
        .request(Method::POST, "/api/v1/partnerships", Some(token))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    h.send(req).await
}

#[tokio::test]
async fn an_idempotent_repeat_makes_no_second_upstream_call() {
    let h = Harness::start().await;
    let t = h.token("alice@corp.test");
    let body = create_body("idem-gw.com");
    let first = create_with_key(&h, &t, "order-42", &body).await;
    assert_eq!(first.status, 201);
    let again = create_with_key(&h, &t, "order-42", &body).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(h.upstream_count(), 1, "the repeat never reached upstream");
    // Same key, different body.
    let other = create_with_key(&h, &t, "order-42", &create_body("idem2-gw.com")).await;
    other.assert_error(422);
    // The key is per user: carol may use the same one.
    let carol = h.token("carol@corp.test");
    let r = create_with_key(&h, &carol, "order-42", &create_body("idem3-gw.com")).await;
    assert_eq!(r.status, 201);
    // A definitive refusal is replayed too (409 duplicate).
    let dup = create_with_key(&h, &t, "order-43", &body).await;
    assert_eq!(dup.status, 409);
    let dup2 = create_with_key(&h, &t, "order-43", &body).await;
    assert_eq!(dup2.status, 409);
    assert_eq!(h.upstream_count(), 3);
    // Invalid keys are refused.
    let r = create_with_key(&h, &t, "has space", &body).await;
    r.assert_error(400);
    let m = h.admin_get("/metrics").await.text();
    assert!(m.contains("jbgw_idempotent_replays_total 2"), "{m}");
}

#[tokio::test]
async fn a_repeat_while_the_first_is_in_flight_waits_for_it() {
    let h = Harness::start().await;
    let t = h.token("alice@corp.test");
    h.sim.set_fault(Fault::Slow(Duration::from_millis(500)));
    let body = create_body("inflight-gw.com");
    let (a, b) = tokio::join!(create_with_key(&h, &t, "k-1", &body), async {
        // The repeat leaves once the first is upstream (held there for 500 ms).
        h.wait_for_upstream(1).await;
        create_with_key(&h, &t, "k-1", &body).await
    });
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(
        a.header("idempotent-replayed"),
        None,
        "the first is the original"
    );
    assert_eq!(b.status, 201, "{}", b.text());
    assert_eq!(
        b.header("idempotent-replayed"),
        Some("true"),
        "the repeat waited for the first and got its answer replayed"
    );
    assert_eq!(b.body, a.body);
    assert_eq!(h.upstream_count(), 1);
}

#[tokio::test]
async fn an_unknown_outcome_is_never_sent_again() {
    let h = Harness::start().await;
    let t = h.token("alice@corp.test");
    h.sim.set_fault(Fault::Slow(Duration::from_secs(4)));
    let body = create_body("unknown-gw.com");
    let r = create_with_key(&h, &t, "k-2", &body).await;
    assert!(r.assert_error(504).contains("may have been created"));
    assert_eq!(h.upstream_count(), 1, "sent once, never retried");
    h.sim.set_fault(Fault::None);
    // The record says "unknown": a repeat is answered, not sent (it could be a second
    // invitation e-mail).
    let r = create_with_key(&h, &t, "k-2", &body).await;
    assert!(r.assert_error(409).contains("may have been created"));
    assert_eq!(h.upstream_count(), 1);
    // A new key is a new request.
    let r = create_with_key(&h, &t, "k-3", &body).await;
    assert!(matches!(r.status.as_u16(), 201 | 409), "{}", r.text());
    assert_eq!(h.upstream_count(), 2);
}

#[tokio::test]
async fn a_burst_beyond_the_budget_makes_at_most_the_budget_upstream() {
    let h = Harness::start().await;
    let t = h.token("bob@corp.test");
    let mut ok = 0;
    let mut throttled = 0;
    let mut tasks = Vec::new();
    for i in 0..500 {
        let client = h.client.clone();
        let req = h
            .request(
                Method::GET,
                &format!("/api/v1/partnerships?search=b{}", i % 250),
                Some(&t),
            )
            .body(Full::new(Bytes::new()))
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let resp = client.request(req).await.unwrap();
            let retry = resp.headers().get("retry-after").is_some();
            let rl = resp.headers().get("ratelimit").is_some();
            (resp.status().as_u16(), retry && rl)
        }));
    }
    for task in tasks {
        match task.await.unwrap() {
            (200, _) => ok += 1,
            (429, true) => throttled += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        h.upstream_count() <= 100,
        "{} upstream calls",
        h.upstream_count()
    );
    assert!(ok >= 100, "cache hits and the budget's worth: {ok}");
    assert_eq!(ok + throttled, 500);
    assert!(
        throttled > 0,
        "a burst of 500 on a 100/min key is throttled"
    );
    let m = h.admin_get("/metrics").await.text();
    assert_eq!(
        sample(&m, "jbgw_throttled_total{reason=\"upstream_budget\"}"),
        Some(f64::from(throttled)),
        "every 429 of the burst is counted as the budget's: {m}"
    );
}

/// A metric sample's value from a `/metrics` text, if the line exists.
fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[tokio::test]
async fn an_exhausted_budget_serves_stale_lists() {
    // A budget of 5 a minute refills one request every 12 s: nothing refills during the test.
    // The budget is the write key's, so that one user both lists and creates on it.
    let h = Harness::with(Opts {
        tail: "[cache]\nttl = \"1s\"\n".into(),
        write_key: "requests_per_minute = 5".into(),
        ..Opts::default()
    })
    .await;
    let t = h.token("alice@corp.test");
    assert_eq!(
        h.get("/api/v1/partnerships?view=all", Some(&t))
            .await
            .status,
        200
    );
    // Spend the rest of the key's budget on distinct queries.
    for i in 0..4 {
        h.get(&format!("/api/v1/partnerships?search=s{i}"), Some(&t))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = h.get("/api/v1/partnerships?view=all", Some(&t)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cache"), Some("STALE"));
    let r = h.get("/api/v1/partnerships?view=referral", Some(&t)).await;
    assert_eq!(
        r.assert_error(429),
        "JourneyBee rate limit reached, retry later"
    );
    assert!(r.header("retry-after").is_some());
    // A create on that key is throttled as well, and never sent.
    let before = h.upstream_count();
    let r = h
        .post_json(
            "/api/v1/partnerships",
            Some(&t),
            &create_body("budget-gw.com"),
        )
        .await;
    assert_eq!(
        r.assert_error(429),
        "JourneyBee rate limit reached, retry later"
    );
    assert!(r.header("retry-after").is_some());
    assert_eq!(h.upstream_count(), before, "a throttled create is not sent");
}

#[tokio::test]
async fn an_upstream_429_pauses_the_key_until_retry_after() {
    let h = Harness::start().await;
    let t = h.token("bob@corp.test");
    h.sim.set_fault(Fault::RateLimited {
        retry_after_secs: 1,
    });
    let r = h.get("/api/v1/partnerships?search=p1", Some(&t)).await;
    r.assert_error(429);
    h.sim.set_fault(Fault::None);
    let r = h.get("/api/v1/partnerships?search=p2", Some(&t)).await;
    r.assert_error(429);
    assert!(r.header("ratelimit-policy").is_some());
    assert_eq!(h.upstream_count(), 1, "the paused key sends nothing");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        h.get("/api/v1/partnerships?search=p3", Some(&t))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn per_user_fair_share() {
    let h = Harness::with(opts("", "[rate_limit]\nper_user_requests_per_minute = 3\n")).await;
    let bob = h.token("bob@corp.test");
    for i in 0..3 {
        assert_eq!(
            h.get(&format!("/api/v1/partnerships?search=f{i}"), Some(&bob))
                .await
                .status,
            200
        );
    }
    // Cache hits cost nothing.
    assert_eq!(
        h.get("/api/v1/partnerships?search=f0", Some(&bob))
            .await
            .status,
        200
    );
    let r = h.get("/api/v1/partnerships?search=f9", Some(&bob)).await;
    assert_eq!(
        r.assert_error(429),
        "Rate limit exceeded for this user, retry later"
    );
    assert!(r.header("retry-after").is_some());
    assert!(r.header("ratelimit").unwrap().contains("r=0"));
    assert!(r.header("ratelimit-policy").unwrap().contains("q=3"));
    // Another user is unaffected.
    let carol = h.token("carol@corp.test");
    assert_eq!(
        h.get("/api/v1/partnerships?search=f9", Some(&carol))
            .await
            .status,
        200
    );
    assert_eq!(h.upstream_count(), 4);
}

#[tokio::test]
async fn lists_are_retried_and_creates_never() {
    let h = Harness::with(opts("retries = 2\nretry_backoff = \"10ms\"", "")).await;
    h.sim.set_fault(Fault::Status(503));
    let r = h
        .get("/api/v1/partnerships", Some(&h.token("bob@corp.test")))
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(h.upstream_count(), 3, "one try and two retries");
    let r = h
        .post_json(
            "/api/v1/partnerships",
            Some(&h.token("alice@corp.test")),
            &create_body("r-gw.com"),
        )
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(h.upstream_count(), 4, "a create is sent once");
    // A reset mid-response on a create: once, and the client hears it may exist.
    h.sim.set_fault(Fault::ResetMidResponse);
    let r = h
        .post_json(
            "/api/v1/partnerships",
            Some(&h.token("alice@corp.test")),
            &create_body("r2-gw.com"),
        )
        .await;
    assert!(r.assert_error(504).contains("may have been created"));
    assert_eq!(h.upstream_count(), 5);
    let m = h.admin_get("/metrics").await.text();
    assert!(
        m.contains("jbgw_upstream_retries_total{route=\"list\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn the_circuit_breaker_opens_and_recovers() {
    let h = Harness::with(opts("breaker_failures = 3\nbreaker_cooldown = \"1s\"", "")).await;
    let bob = h.token("bob@corp.test");
    h.sim.set_fault(Fault::Status(500));
    for i in 0..3 {
        assert_eq!(
            h.get(&format!("/api/v1/partnerships?search=c{i}"), Some(&bob))
                .await
                .status,
            500
        );
    }
    let r = h.get("/api/v1/partnerships?search=c9", Some(&bob)).await;
    r.assert_error(503);
    assert!(r.header("retry-after").is_some());
    let r = h
        .post_json(
            "/api/v1/partnerships",
            Some(&h.token("alice@corp.test")),
            &create_body("cb-gw.com"),
        )
        .await;
    r.assert_error(503);
    assert_eq!(h.upstream_count(), 3, "open: nothing sent");
    let m = h.admin_get("/metrics").await.text();
    assert!(m.contains("jbgw_circuit_breaker_state 2"), "{m}");
    h.sim.set_fault(Fault::None);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        h.get("/api/v1/partnerships?search=probe", Some(&bob))
            .await
            .status,
        200
    );
    assert_eq!(
        h.get("/api/v1/partnerships?search=after", Some(&bob))
            .await
            .status,
        200
    );
    let m = h.admin_get("/metrics").await.text();
    assert!(m.contains("jbgw_circuit_breaker_state 0"), "{m}");
}
