//! No response, on any path, ever contains an API key, the client's token or the JWT secret.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::Full;
use journeybee_sim::{Fault, SIM_READ_KEY, SIM_WRITE_KEY};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn no_secret_in_any_response() {
    let h = Harness::start().await;
    let alice = h.token("alice@corp.test");
    let bob = h.token("bob@corp.test");
    let expired = h.token_with("bob@corp.test", |c| c["exp"] = json!(now() - 600));
    let unmapped = h.token("mallory@corp.test");
    let mut seen: Vec<(String, Resp)> = Vec::new();
    let list = "/api/v1/partnerships";

    seen.push(("200 list".into(), h.get(list, Some(&bob)).await));
    seen.push((
        "201 create".into(),
        h.post_json(list, Some(&alice), &create_body("sec-gw.com"))
            .await,
    ));
    seen.push(("401 missing".into(), h.get(list, None).await));
    seen.push(("401 expired".into(), h.get(list, Some(&expired)).await));
    seen.push((
        "401 garbage".into(),
        h.get(list, Some("garbage.token.here")).await,
    ));
    seen.push(("403 unmapped".into(), h.get(list, Some(&unmapped)).await));
    seen.push((
        "403 write".into(),
        h.post_json(list, Some(&bob), &create_body("x-gw.com"))
            .await,
    ));
    seen.push((
        "403 foreign".into(),
        h.get(&format!("{list}?userId={}", h.alice_id), Some(&bob))
            .await,
    ));
    seen.push(("404".into(), h.get("/api/v1/secret", Some(&alice)).await));
    let r = h
        .send(
            h.request(Method::DELETE, list, Some(&alice))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    seen.push(("405".into(), r));
    let r = h
        .send(
            h.request(Method::POST, list, Some(&alice))
                .header("content-type", "text/plain")
                .body(Full::new(Bytes::from("{}")))
                .unwrap(),
        )
        .await;
    seen.push(("415".into(), r));
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(70_000));
    seen.push(("413".into(), h.post_json(list, Some(&alice), &big).await));
    seen.push((
        "400 json".into(),
        h.post_json(list, Some(&alice), "{nope").await,
    ));
    seen.push((
        "400 schema".into(),
        h.post_json(list, Some(&alice), "{}").await,
    ));
    seen.push((
        "406".into(),
        h.post_json(list, Some(&alice), &create_body("gmail.com"))
            .await,
    ));
    seen.push((
        "400 query".into(),
        h.get(&format!("{list}?bogus=1"), Some(&bob)).await,
    ));
    seen.push((
        "409 upstream".into(),
        h.post_json(list, Some(&alice), &create_body("sec-gw.com"))
            .await,
    ));
    h.sim.set_fault(Fault::Status(500));
    seen.push((
        "500 upstream".into(),
        h.get(&format!("{list}?view=all"), Some(&bob)).await,
    ));
    h.sim.set_fault(Fault::RateLimited {
        retry_after_secs: 5,
    });
    seen.push((
        "429 upstream".into(),
        h.get(&format!("{list}?view=referral"), Some(&bob)).await,
    ));
    h.sim.set_fault(Fault::Slow(Duration::from_secs(4)));
    // bob's key is now paused by that upstream 429: alice's key carries the rest.
    seen.push((
        "504 list".into(),
        h.get(&format!("{list}?view=reseller"), Some(&alice)).await,
    ));
    seen.push((
        "504 create".into(),
        h.post_json(list, Some(&alice), &create_body("slow2-gw.com"))
            .await,
    ));
    h.sim.set_fault(Fault::None);
    h.sim.shutdown();
    seen.push((
        "502".into(),
        h.get(&format!("{list}?view=assigned"), Some(&alice)).await,
    ));
    seen.push((
        "429 local".into(),
        h.get(&format!("{list}?view=assigned"), Some(&bob)).await,
    ));
    seen.push(("200 metrics".into(), h.admin_get("/metrics").await));
    seen.push(("200 health".into(), h.admin_get("/healthz").await));

    let secrets = [
        SIM_READ_KEY,
        SIM_WRITE_KEY,
        JWT_SECRET,
        &alice,
        &bob,
        &expired,
        &unmapped,
    ];
    for (what, resp) in &seen {
        // Each label starts with the status its path must answer, so each path is really
        // exercised: a gateway answering 500 everywhere would leak nothing, and must fail.
        let want: u16 = what
            .split(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("label {what:?} does not start with a status"));
        assert_eq!(resp.status.as_u16(), want, "{what}: {}", resp.text());
        let all = resp.everything();
        for s in &secrets {
            assert!(!all.contains(s), "{what} leaks a secret: {all}");
        }
    }
}
