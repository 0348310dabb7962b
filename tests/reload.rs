//! Live reload: a valid change takes effect without dropping in-flight requests; an invalid
//! one is refused and the old config keeps serving.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::Full;
use journeybee_gateway::reload;
use journeybee_gateway::sim::Fault;
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
        journeybee_gateway::signals::Handler::hangup(),
    );
    tokio::pin!(watcher);
    // Let the watcher take its first fingerprint, then change the file.
    tokio::select! {
        _ = &mut watcher => unreachable!(),
        _ = tokio::time::sleep(Duration::from_millis(120)) => {}
    }
    // Make sure the modification time moves even on coarse-grained filesystems.
    tokio::time::sleep(Duration::from_millis(20)).await;
    rewrite(&h, |t| format!("{}\n# touched\n", promote_bob(t)));
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
