//! The list cache, through real HTTP and the simulator's counters.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::Full;
use journeybee_sim::Fault;
use std::time::Duration;

fn opts(cache: &str) -> Opts {
    Opts {
        tail: format!("[cache]\n{cache}\n"),
        ..Opts::default()
    }
}

async fn get_with(h: &Harness, path: &str, token: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = h.request(Method::GET, path, Some(token));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    h.send(b.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test]
async fn a_repeated_list_is_one_upstream_call() {
    let h = Harness::start().await;
    let t = h.token("bob@corp.test");
    let first = h.get("/api/v1/partnerships?view=all", Some(&t)).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(first.header("cache-control"), Some("private, max-age=30"));
    let second = h.get("/api/v1/partnerships?view=all", Some(&t)).await;
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert!(second.header("age").is_some());
    assert!(second
        .header("cache-control")
        .unwrap()
        .starts_with("private, max-age="));
    assert_eq!(first.body, second.body);
    assert_eq!(h.upstream_count(), 1);
}

#[tokio::test]
async fn equivalent_queries_share_an_entry_and_the_normalized_query_is_forwarded() {
    let h = Harness::start().await;
    let t = h.token("bob@corp.test");
    let a = h
        .get("/api/v1/partnerships?view=all&tags=3,1,2", Some(&t))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let b = h
        .get(
            &format!(
                "/api/v1/partnerships?tags=2,1,3,1&userId={}&view=all",
                h.bob_id
            ),
            Some(&t),
        )
        .await;
    assert_eq!(b.header("x-cache"), Some("HIT"));
    assert_eq!(h.upstream_count(), 1);
    let q = h.sim.requests()[0].query.clone().unwrap();
    assert_eq!(q, format!("tags=1%2C2%2C3&userId={}&view=all", h.bob_id));
    // A different search is a different key.
    h.get(
        "/api/v1/partnerships?view=all&tags=1,2,3&search=a",
        Some(&t),
    )
    .await;
    assert_eq!(h.upstream_count(), 2);
}

#[tokio::test]
async fn one_users_answer_is_never_served_to_another() {
    let h = Harness::start().await;
    // alice and carol share the write key but are different JourneyBee users.
    let a = h
        .get(
            "/api/v1/partnerships?view=assigned",
            Some(&h.token("alice@corp.test")),
        )
        .await;
    let c = h
        .get(
            "/api/v1/partnerships?view=assigned",
            Some(&h.token("carol@corp.test")),
        )
        .await;
    assert_eq!(a.header("x-cache"), Some("MISS"));
    assert_eq!(c.header("x-cache"), Some("MISS"));
    assert_eq!(h.upstream_count(), 2);
    let seen = h.sim.requests();
    assert!(seen[0]
        .query
        .as_ref()
        .unwrap()
        .contains(&format!("userId={}", h.alice_id)));
    assert!(seen[1]
        .query
        .as_ref()
        .unwrap()
        .contains(&format!("userId={}", h.carol_id)));
}

/// The cache's entry count, as `/metrics` reports it (moka's pending work is run first).
async fn cache_entries(h: &Harness) -> String {
    let m = h.admin_get("/metrics").await.text();
    m.lines()
        .find(|l| l.starts_with("jbgw_cache_entries "))
        .unwrap_or_default()
        .to_string()
}

// The clock is paused (the sweep interval is timed with tokio's clock): the "within the
// interval" and "past the interval" steps hold however slow this machine is.
#[tokio::test(start_paused = true)]
async fn creates_in_a_burst_each_invalidate_while_sweeps_are_coalesced() {
    // Reference checks are off in the harness: a create reads no lookup into the cache.
    let h = Harness::start().await;
    let alice = h.token("alice@corp.test");
    let (a, b) = (
        "/api/v1/partnerships?search=a",
        "/api/v1/partnerships?search=b",
    );
    let list = "/api/v1/partnerships";
    for q in [a, b] {
        assert_eq!(h.get(q, Some(&alice)).await.header("x-cache"), Some("MISS"));
    }
    assert_eq!(cache_entries(&h).await, "jbgw_cache_entries 2");

    // The first create sweeps the older generation away.
    let swept_at = tokio::time::Instant::now();
    let r = h
        .post_json(list, Some(&alice), &create_body("burst1-gw.com"))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(cache_entries(&h).await, "jbgw_cache_entries 0");
    assert_eq!(h.get(a, Some(&alice)).await.header("x-cache"), Some("MISS"));
    assert_eq!(h.get(a, Some(&alice)).await.header("x-cache"), Some("HIT"));

    // A second create right after still invalidates (the generation moves on every create)...
    let r = h
        .post_json(list, Some(&alice), &create_body("burst2-gw.com"))
        .await;
    assert_eq!(r.status, 201);
    let after = h.get(a, Some(&alice)).await;
    assert_eq!(
        after.header("x-cache"),
        Some("MISS"),
        "never a list from before a create"
    );
    // ...but registers no second sweep within the interval (1 s): the unreachable entry
    // lingers.
    assert!(
        swept_at.elapsed() < Duration::from_secs(1),
        "the paused clock moved {:?}",
        swept_at.elapsed()
    );
    assert_eq!(cache_entries(&h).await, "jbgw_cache_entries 2");

    // Past the interval, the next create sweeps every older generation.
    tokio::time::advance(Duration::from_millis(1100)).await;
    let r = h
        .post_json(list, Some(&alice), &create_body("burst3-gw.com"))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(cache_entries(&h).await, "jbgw_cache_entries 0");
    let m = h.admin_get("/metrics").await.text();
    assert!(
        m.contains("jbgw_cache_invalidations_total{cause=\"create\"} 3"),
        "{m}"
    );
}

#[tokio::test]
async fn an_accepted_create_invalidates_and_a_refused_one_does_not() {
    let h = Harness::start().await;
    let alice = h.token("alice@corp.test");
    let bob = h.token("bob@corp.test");
    let list = "/api/v1/partnerships";
    assert_eq!(
        h.get(list, Some(&alice)).await.header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        h.get(list, Some(&bob)).await.header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        h.get(list, Some(&alice)).await.header("x-cache"),
        Some("HIT")
    );

    // Refused upstream (409 duplicate): nothing dropped.
    let r = h
        .post_json(list, Some(&alice), &create_body("cache-gw.com"))
        .await;
    assert_eq!(r.status, 201);
    let after = h.get(list, Some(&alice)).await;
    assert_eq!(
        after.header("x-cache"),
        Some("MISS"),
        "accepted create drops the key's lists"
    );
    assert!(
        after.text().contains("Globex Partners"),
        "the new partnership shows"
    );
    // bob uses the read key: his entry is untouched.
    assert_eq!(h.get(list, Some(&bob)).await.header("x-cache"), Some("HIT"));

    let r = h
        .post_json(list, Some(&alice), &create_body("cache-gw.com"))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        h.get(list, Some(&alice)).await.header("x-cache"),
        Some("HIT")
    );
    let m = h.admin_get("/metrics").await.text();
    assert!(
        m.contains("jbgw_cache_invalidations_total{cause=\"create\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn concurrent_identical_misses_make_one_upstream_call() {
    let h = Harness::start().await;
    let t = h.token("bob@corp.test");
    h.sim.set_fault(Fault::Slow(Duration::from_millis(400)));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let client = h.client.clone();
        let req = h
            .request(Method::GET, "/api/v1/partnerships?view=referral", Some(&t))
            .body(Full::new(Bytes::new()))
            .unwrap();
        tasks.push(tokio::spawn(async move {
            client.request(req).await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(h.upstream_count(), 1);
}

#[tokio::test]
async fn an_upstream_error_is_shared_with_waiters_and_not_cached() {
    let h = Harness::start().await;
    let t = h.token("bob@corp.test");
    h.sim.set_fault(Fault::BlackHole);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = h.client.clone();
        let req = h
            .request(Method::GET, "/api/v1/partnerships?view=reseller", Some(&t))
            .body(Full::new(Bytes::new()))
            .unwrap();
        tasks.push(tokio::spawn(async move {
            client.request(req).await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 504);
    }
    assert_eq!(h.upstream_count(), 1, "waiters got the leader's error");
    h.sim.set_fault(Fault::None);
    let r = h.get("/api/v1/partnerships?view=reseller", Some(&t)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-cache"),
        Some("MISS"),
        "the error was not cached"
    );
}

#[tokio::test]
async fn expired_entries_are_refetched_and_served_stale_when_upstream_fails() {
    // No stale-while-revalidate: past its TTL a copy is refetched in the foreground.
    let h = Harness::with(opts(
        "ttl = \"1s\"\nmax_stale = \"5m\"\nstale_while_revalidate = \"0s\"",
    ))
    .await;
    let t = h.token("bob@corp.test");
    let fresh = h.get("/api/v1/partnerships?view=all", Some(&t)).await;
    assert_eq!(fresh.header("x-cache"), Some("MISS"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        h.get("/api/v1/partnerships?view=all", Some(&t))
            .await
            .header("x-cache"),
        Some("MISS")
    );
    assert_eq!(h.upstream_count(), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for fault in [
        Fault::Status(500),
        Fault::Status(503),
        Fault::RateLimited {
            retry_after_secs: 3,
        },
    ] {
        let detail = match fault {
            Fault::RateLimited { .. } => "rate-limited",
            _ => "error",
        };
        h.sim.set_fault(fault);
        let stale = h.get("/api/v1/partnerships?view=all", Some(&t)).await;
        assert_eq!(stale.status, 200);
        assert_eq!(stale.header("x-cache"), Some("STALE"));
        assert_eq!(stale.body, fresh.body);
        // RFC 9211: served from the cache, stale (a negative ttl), and why.
        let status = stale.header("cache-status").unwrap();
        assert!(
            status.starts_with("journeybee-gateway; hit; ttl=-")
                && status.ends_with(&format!("; detail={detail}")),
            "{status}"
        );
        assert!(stale.header("age").unwrap().parse::<u64>().unwrap() >= 1);
    }
    // Nothing cached for this query: the error itself comes back.
    let r = h.get("/api/v1/partnerships?view=referral", Some(&t)).await;
    assert_eq!(r.status, 429);
    h.sim.shutdown();
    let stale = h.get("/api/v1/partnerships?view=all", Some(&t)).await;
    assert_eq!(
        stale.header("x-cache"),
        Some("STALE"),
        "connect errors are covered too"
    );
    // The upstream 429 above paused the key for its Retry-After: without a stale entry the
    // answer is the gateway's own 429, and the dead upstream is not even tried.
    let r = h.get("/api/v1/partnerships?view=referral", Some(&t)).await;
    assert_eq!(r.status, 429);
    assert!(r.header("ratelimit").is_some());
}

#[tokio::test]
async fn stale_serving_can_be_switched_off() {
    assert_no_stale_copy_with("ttl = \"1s\"\nmax_stale = \"0s\"").await;
}

/// With the `[cache]` lines `cache`, an expired list is not served when upstream fails.
async fn assert_no_stale_copy_with(cache: &str) {
    let h = Harness::with(opts(cache)).await;
    let t = h.token("bob@corp.test");
    h.get("/api/v1/partnerships", Some(&t)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.sim.set_fault(Fault::Status(500));
    assert_eq!(h.get("/api/v1/partnerships", Some(&t)).await.status, 500);
}

#[tokio::test]
async fn client_cache_control_is_honoured() {
    let h = Harness::start().await;
    let t = h.token("bob@corp.test");
    let p = "/api/v1/partnerships?view=all";
    assert_eq!(
        get_with(&h, p, &t, &[]).await.header("x-cache"),
        Some("MISS")
    );
    let r = get_with(&h, p, &t, &[("cache-control", "no-cache")]).await;
    assert_eq!(r.header("x-cache"), Some("MISS"), "no-cache refetches");
    assert_eq!(h.upstream_count(), 2);
    assert_eq!(
        get_with(&h, p, &t, &[]).await.header("x-cache"),
        Some("HIT")
    );
    let r = get_with(&h, p, &t, &[("cache-control", "no-store")]).await;
    assert_eq!(r.header("x-cache"), Some("BYPASS"));
    assert_eq!(h.upstream_count(), 3);
    // no-store does not write either.
    let q = "/api/v1/partnerships?view=referral";
    assert_eq!(
        get_with(&h, q, &t, &[("cache-control", "no-store")])
            .await
            .header("x-cache"),
        Some("BYPASS")
    );
    assert_eq!(
        get_with(&h, q, &t, &[]).await.header("x-cache"),
        Some("MISS")
    );
}

#[tokio::test]
async fn admin_purge_drops_all_or_one_keys_entries() {
    let h = Harness::start().await;
    let alice = h.token("alice@corp.test");
    let bob = h.token("bob@corp.test");
    let p = "/api/v1/partnerships";
    h.get(p, Some(&alice)).await;
    h.get(p, Some(&bob)).await;
    assert_eq!(
        h.admin_post("/admin/cache/purge?upstream_key=write")
            .await
            .status,
        200
    );
    assert_eq!(h.get(p, Some(&alice)).await.header("x-cache"), Some("MISS"));
    assert_eq!(h.get(p, Some(&bob)).await.header("x-cache"), Some("HIT"));
    assert_eq!(h.admin_post("/admin/cache/purge").await.status, 200);
    assert_eq!(h.get(p, Some(&alice)).await.header("x-cache"), Some("MISS"));
    assert_eq!(h.get(p, Some(&bob)).await.header("x-cache"), Some("MISS"));
    let r = h.admin_post("/admin/cache/purge?upstream_key=nope").await;
    r.assert_error(404);
    assert_eq!(h.admin_get("/admin/cache/purge").await.status, 405);
}

#[tokio::test]
async fn the_cache_stays_within_its_byte_capacity() {
    let h = Harness::with(opts("capacity = \"96KiB\"\nmax_entry_size = \"48KiB\"")).await;
    let t = h.token("bob@corp.test");
    for i in 0..40 {
        let r = h
            .get(&format!("/api/v1/partnerships?search={i}"), Some(&t))
            .await;
        assert_eq!(r.status, 200);
    }
    for i in 0..40 {
        h.get(
            &format!("/api/v1/partnerships?view=all&tags={}", i + 1),
            Some(&t),
        )
        .await;
    }
    let size = h.gw.as_ref().unwrap().state().cache.weighted_size().await;
    assert!(size <= 96 * 1024, "cache holds {size} bytes");
    assert!(size > 0);
}

#[tokio::test]
async fn responses_larger_than_the_entry_limit_pass_through_uncached() {
    let h = Harness::with(opts("max_entry_size = \"1KiB\"")).await;
    let t = h.token("bob@corp.test");
    for _ in 0..2 {
        let r = h.get("/api/v1/partnerships", Some(&t)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-cache"), Some("MISS"));
    }
    assert_eq!(h.upstream_count(), 2);
}

#[tokio::test]
async fn the_cache_can_be_disabled() {
    let h = Harness::with(opts("enabled = false")).await;
    let t = h.token("bob@corp.test");
    for _ in 0..2 {
        assert_eq!(
            h.get("/api/v1/partnerships", Some(&t))
                .await
                .header("x-cache"),
            Some("BYPASS")
        );
    }
    assert_eq!(h.upstream_count(), 2);
}

#[tokio::test]
async fn lookups_are_counted() {
    let h = Harness::start().await;
    let t = h.token("bob@corp.test");
    h.get("/api/v1/partnerships", Some(&t)).await;
    h.get("/api/v1/partnerships", Some(&t)).await;
    let m = h.admin_get("/metrics").await.text();
    assert!(
        m.contains("jbgw_cache_lookups_total{result=\"hit\"} 1"),
        "{m}"
    );
    assert!(m.contains("jbgw_cache_lookups_total{result=\"miss\"} 1"));
    assert!(m.contains("jbgw_cache_entries 1"));
}

#[tokio::test]
async fn the_older_name_stale_if_error_still_configures_max_stale() {
    assert_no_stale_copy_with("ttl = \"1s\"\nstale_if_error = \"0s\"").await;
}

#[tokio::test]
async fn every_cached_route_answer_carries_cache_status() {
    let h = Harness::start().await;
    let t = h.token("bob@corp.test");
    let p = "/api/v1/partnerships?view=all";
    let miss = h.get(p, Some(&t)).await;
    assert_eq!(
        miss.header("cache-status"),
        Some("journeybee-gateway; fwd=uri-miss; fwd-status=200; stored; ttl=30")
    );
    let hit = h.get(p, Some(&t)).await;
    let status = hit.header("cache-status").unwrap();
    assert!(
        status.starts_with("journeybee-gateway; hit; ttl="),
        "{status}"
    );
    let forced = get_with(&h, p, &t, &[("cache-control", "max-age=0")]).await;
    assert_eq!(forced.header("x-cache"), Some("MISS"));
    assert!(
        forced
            .header("cache-status")
            .unwrap()
            .starts_with("journeybee-gateway; fwd=request; fwd-status=200; stored"),
        "{:?}",
        forced.header("cache-status")
    );
    assert_eq!(h.upstream_count(), 2, "max-age=0 forced a real fetch");
    let bypass = get_with(&h, p, &t, &[("cache-control", "no-store")]).await;
    assert_eq!(
        bypass.header("cache-status"),
        Some("journeybee-gateway; fwd=bypass")
    );
    h.sim.set_fault(Fault::Status(503));
    let failed = h.get("/api/v1/partnerships?view=reseller", Some(&t)).await;
    assert_eq!(failed.status, 503);
    assert_eq!(
        failed.header("cache-status"),
        Some("journeybee-gateway; fwd=uri-miss; fwd-status=503")
    );
}

/// The value of one counter series in the admin listener's `/metrics`.
async fn counter(h: &Harness, series: &str) -> f64 {
    let text = h.admin_get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn an_expired_list_is_answered_at_once_and_refreshed_in_the_background() {
    let h = Harness::with(opts("ttl = \"1s\"\nstale_while_revalidate = \"1m\"")).await;
    let t = h.token("bob@corp.test");
    let p = "/api/v1/partnerships?view=all";
    let fresh = h.get(p, Some(&t)).await;
    assert_eq!(fresh.header("x-cache"), Some("MISS"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The upstream is slow now: the stale copy must not wait for it.
    h.sim.set_fault(Fault::Slow(Duration::from_millis(300)));
    let stale = h.get(p, Some(&t)).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.header("x-cache"), Some("STALE"));
    assert_eq!(stale.body, fresh.body);
    let status = stale.header("cache-status").unwrap();
    assert!(status.ends_with("; detail=revalidating"), "{status}");
    assert!(stale.header("age").unwrap().parse::<u64>().unwrap() >= 1);
    // One background refresh, spent as a refresh, stores a fresh copy.
    h.wait_for_upstream(2).await;
    until("the refresh to be stored", || async {
        h.get(p, Some(&t)).await.header("x-cache") == Some("HIT")
    })
    .await;
    assert_eq!(h.upstream_count(), 2, "refreshed once");
    assert_eq!(
        counter(
            &h,
            "jbgw_budget_decisions_total{class=\"refresh\",pool=\"shared\",result=\"admitted\"}"
        )
        .await,
        1.0
    );
    assert!(counter(&h, "jbgw_cache_stale_served_total{reason=\"revalidating\"}").await >= 1.0);
}

#[tokio::test]
async fn a_refresh_spends_only_the_headroom_above_the_reserve_and_a_cold_list_keeps_it() {
    // A limit of 4 with half in reserve: refreshes only while fewer than 2 are in the window.
    let h = Harness::with(Opts {
        read_key: "requests_per_minute = 4".into(),
        tail: "[cache]\nttl = \"1s\"\n[rate_limit]\nrefresh_reserve = 0.5\n".into(),
        ..Opts::default()
    })
    .await;
    let t = h.token("bob@corp.test");
    let a = "/api/v1/partnerships?view=all";
    let first = h.get(a, Some(&t)).await;
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(
        h.get("/api/v1/partnerships?view=reseller", Some(&t))
            .await
            .status,
        200
    );
    assert_eq!(h.upstream_count(), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Expired, and the key has 2 of 4 left: both in reserve. Served stale, no refresh spent.
    let stale = h.get(a, Some(&t)).await;
    assert_eq!(stale.header("x-cache"), Some("STALE"));
    until("the refresh to be refused", || async {
        counter(
            &h,
            "jbgw_budget_decisions_total{class=\"refresh\",pool=\"shared\",result=\"denied\"}",
        )
        .await
            >= 1.0
    })
    .await;
    assert_eq!(h.upstream_count(), 2, "no refresh reached upstream");
    // Past the revalidation window too (forced by the client), still a copy: never a 429.
    let forced = get_with(&h, a, &t, &[("cache-control", "no-cache")]).await;
    assert_eq!(forced.status, 200, "{}", forced.text());
    assert_eq!(forced.header("x-cache"), Some("STALE"));
    assert!(forced
        .header("cache-status")
        .unwrap()
        .ends_with("; detail=budget"));
    // A list nobody has a copy of still gets the reserve.
    let cold = h.get("/api/v1/partnerships?view=referral", Some(&t)).await;
    assert_eq!(cold.status, 200, "{}", cold.text());
    assert_eq!(cold.header("x-cache"), Some("MISS"));
    assert_eq!(h.upstream_count(), 3);
}

#[tokio::test]
async fn with_no_copy_the_answer_is_429_with_retry_after() {
    let h = Harness::with(Opts {
        read_key: "requests_per_minute = 1".into(),
        ..Opts::default()
    })
    .await;
    let t = h.token("bob@corp.test");
    assert_eq!(
        h.get("/api/v1/partnerships?view=all", Some(&t))
            .await
            .status,
        200
    );
    let r = h.get("/api/v1/partnerships?view=reseller", Some(&t)).await;
    r.assert_error(429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        r.header("cache-status"),
        Some("journeybee-gateway; fwd=uri-miss")
    );
}

/// Asks `check` every few milliseconds until it says yes, failing with `what` after ten
/// seconds: waiting for background work (a refresh, a refusal) instead of sleeping.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
