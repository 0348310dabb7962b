//! Live reload: a valid change takes effect without dropping in-flight requests; an invalid
//! one is refused and the old config keeps serving.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::Full;
use journeybee_gateway::server::reload;
use journeybee_sim::Fault;
use std::time::Duration;

fn config_path(h: &Harness) -> std::path::PathBuf {
    h.dir.0.join("gateway.toml")
}

fn rewrite(h: &Harness, edit: impl FnOnce(String) -> String) {
    let path = config_path(h);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

/// Makes bob a writer on the write key.
fn promote_bob(text: String) -> String {
    text.replace(
        "upstream_key = \"read\"\nuser_id",
        "upstream_key = \"write\"\nuser_id",
    )
    .replacen("access = \"read\"", "access = \"write\"", 1)
}

#[tokio::test]
async fn a_valid_change_takes_effect_without_dropping_in_flight_requests() {
    let h = Harness::start().await;
    let bob = h.token("bob@corp.test");
    let r = h
        .post_json(
            "/api/v1/partnerships",
            Some(&bob),
            &create_body("rl1-gw.com"),
        )
        .await;
    r.assert_error(403);

    // A slow request in flight across the reload.
    h.sim.set_fault(Fault::Slow(Duration::from_millis(600)));
    let client = h.client.clone();
    let req = h
        .request(
            Method::GET,
            "/api/v1/partnerships?search=inflight",
            Some(&bob),
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let before = h.upstream_count();
    let pending = tokio::spawn(async move { client.request(req).await.map(|r| r.status()) });
    h.wait_for_upstream(before + 1).await;

    rewrite(&h, promote_bob);
    let gw = h.gw.as_ref().unwrap();
    assert!(reload::reload_from(gw, &config_path(&h), "test").await);
    assert_eq!(pending.await.unwrap().expect("not dropped"), 200);
    h.sim.set_fault(Fault::None);

    let r = h
        .post_json(
            "/api/v1/partnerships",
            Some(&bob),
            &create_body("rl2-gw.com"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let m = h.admin_get("/metrics").await.text();
    assert!(
        m.contains("jbgw_config_reloads_total{result=\"success\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn an_invalid_change_is_refused_and_the_old_config_keeps_serving() {
    let h = Harness::start().await;
    let bob = h.token("bob@corp.test");
    // Bob promoted to write but still on the read-only key: refused as a whole.
    rewrite(&h, |t| {
        t.replacen("access = \"read\"", "access = \"write\"", 1)
    });
    let gw = h.gw.as_ref().unwrap();
    assert!(!reload::reload_from(gw, &config_path(&h), "test").await);
    rewrite(&h, |t| t.replace("[server]", "[server]\nbogus_option = 1"));
    assert!(!reload::reload_from(gw, &config_path(&h), "test").await);
    assert_eq!(h.get("/api/v1/partnerships", Some(&bob)).await.status, 200);
    let r = h
        .post_json(
            "/api/v1/partnerships",
            Some(&bob),
            &create_body("rl3-gw.com"),
        )
        .await;
    r.assert_error(403);
    let m = h.admin_get("/metrics").await.text();
    assert!(
        m.contains("jbgw_config_reloads_total{result=\"failure\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn a_file_change_is_picked_up_by_the_watcher() {
    let h = Harness::start().await;
    let bob = h.token("bob@corp.test");
    let gw = h.gw.as_ref().unwrap();
    let path = config_path(&h);
    let watcher = reload::watch(
        gw,
        &path,
        Duration::from_millis(50),
        journeybee_gateway::server::signals::Handler::hangup(),
    );
    tokio::pin!(watcher);
    // The watcher fingerprints the file when first polled, before it waits for anything:
    // poll it once (biased: before the ready branch), then change the file.
    tokio::select! {
        biased;
        _ = &mut watcher => unreachable!(),
        _ = std::future::ready(()) => {}
    }
    // The fingerprint is (modification time, length): the new text is longer, so the change
    // is seen even where the modification time has a coarse grain.
    let before = std::fs::metadata(config_path(&h)).unwrap().len();
    rewrite(&h, |t| format!("{}\n# touched\n", promote_bob(t)));
    assert_ne!(std::fs::metadata(config_path(&h)).unwrap().len(), before);
    let became_writer = async {
        for i in 0..100 {
            let r = h
                .post_json(
                    "/api/v1/partnerships",
                    Some(&bob),
                    &create_body(&format!("rlw{i}-gw.com")),
                )
                .await;
            if r.status == 201 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    tokio::select! {
        _ = &mut watcher => unreachable!(),
        ok = became_writer => assert!(ok, "the watcher did not reload"),
    }
}

// Issue 11 §1: a reload changes configuration, not history (memory backend).

/// A real but harmless change: carol's display name (not the user any test request uses).
fn rename_carol(text: String) -> String {
    let out = text.replace("name = \"carol\"", "name = \"caroline\"");
    assert_ne!(out, text, "the template names carol");
    out
}

async fn keyed_create(h: &Harness, token: &str, body: &str, key: &str) -> Resp {
    h.send(
        h.request(Method::POST, "/api/v1/partnerships", Some(token))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_keyed_create_repeated_after_a_reload_is_replayed() {
    let h = Harness::start().await;
    let alice = h.token("alice@corp.test");
    let body = create_body("rl-idem-gw.com");
    let first = keyed_create(&h, &alice, &body, "reload-invite-1").await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(h.upstream_count(), 1);

    rewrite(&h, rename_carol);
    let gw = h.gw.as_ref().unwrap();
    let before = gw.state();
    assert!(reload::reload_from(gw, &config_path(&h), "test").await);
    assert!(
        !std::sync::Arc::ptr_eq(&before, &gw.state()),
        "a changed file is a new generation"
    );

    let again = keyed_create(&h, &alice, &body, "reload-invite-1").await;
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    assert_eq!(
        h.upstream_count(),
        1,
        "the create was not sent a second time"
    );
}

#[tokio::test]
async fn a_key_at_its_limit_stays_throttled_across_a_reload() {
    let h = Harness::with(Opts {
        read_key: "requests_per_minute = 5".into(),
        ..Opts::default()
    })
    .await;
    let bob = h.token("bob@corp.test");
    for i in 0..5 {
        let r = h
            .get(&format!("/api/v1/partnerships?search=lim{i}"), Some(&bob))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(h.upstream_count(), 5);

    rewrite(&h, rename_carol);
    let gw = h.gw.as_ref().unwrap();
    assert!(reload::reload_from(gw, &config_path(&h), "test").await);

    for i in 5..8 {
        let r = h
            .get(&format!("/api/v1/partnerships?search=lim{i}"), Some(&bob))
            .await;
        r.assert_error(429);
        assert!(r.header("retry-after").is_some());
    }
    assert_eq!(h.upstream_count(), 5, "5 per minute, reload or not");
}

#[tokio::test]
async fn an_upstream_429_pause_survives_a_reload() {
    let h = Harness::start().await;
    let bob = h.token("bob@corp.test");
    h.sim.set_fault(Fault::RateLimited {
        retry_after_secs: 30,
    });
    h.get("/api/v1/partnerships?search=pause1", Some(&bob))
        .await
        .assert_error(429);
    h.sim.set_fault(Fault::None);
    assert_eq!(h.upstream_count(), 1);

    rewrite(&h, rename_carol);
    let gw = h.gw.as_ref().unwrap();
    assert!(reload::reload_from(gw, &config_path(&h), "test").await);

    h.get("/api/v1/partnerships?search=pause2", Some(&bob))
        .await
        .assert_error(429);
    assert_eq!(h.upstream_count(), 1, "the paused key still sends nothing");
}

#[tokio::test]
async fn the_list_cache_survives_a_reload_that_leaves_its_settings_alone() {
    let h = Harness::start().await;
    let bob = h.token("bob@corp.test");
    let list = "/api/v1/partnerships?view=all&search=kept";
    assert_eq!(
        h.get(list, Some(&bob)).await.header("x-cache"),
        Some("MISS")
    );

    rewrite(&h, rename_carol);
    let gw = h.gw.as_ref().unwrap();
    assert!(reload::reload_from(gw, &config_path(&h), "test").await);

    let r = h.get(list, Some(&bob)).await;
    assert_eq!(r.header("x-cache"), Some("HIT"));
    assert_eq!(h.upstream_count(), 1);
}

#[tokio::test]
async fn a_touch_of_the_config_changes_nothing() {
    let h = Harness::start().await;
    let bob = h.token("bob@corp.test");
    let list = "/api/v1/partnerships?search=touched";
    assert_eq!(h.get(list, Some(&bob)).await.status, 200);
    let gw = h.gw.as_ref().unwrap();
    let before = gw.state();

    // A touch: the same bytes written again (a new modification time).
    rewrite(&h, |t| t);
    reload::reload_from(gw, &config_path(&h), "test").await;
    assert!(
        std::sync::Arc::ptr_eq(&before, &gw.state()),
        "an unchanged file must leave the generation in place"
    );
    // A comment or a reordering that parses to the same settings is no reload either.
    rewrite(&h, |t| format!("# a comment\n{t}\n# another\n"));
    reload::reload_from(gw, &config_path(&h), "test").await;
    assert!(std::sync::Arc::ptr_eq(&before, &gw.state()));

    assert_eq!(h.get(list, Some(&bob)).await.header("x-cache"), Some("HIT"));
    assert_eq!(h.upstream_count(), 1);
    let m = h.admin_get("/metrics").await.text();
    assert!(
        m.contains("jbgw_config_reloads_total{result=\"unchanged\"} 2"),
        "{m}"
    );
    let successes = m
        .lines()
        .find_map(|l| l.strip_prefix("jbgw_config_reloads_total{result=\"success\"} "))
        .map_or(0.0, |v| v.trim().parse::<f64>().unwrap());
    assert_eq!(successes, 0.0, "a touch reloaded the config: {m}");
}
