//! No response, on any path, ever contains an API key, the client's token or the JWT secret;
//! nor does any line the gateway binary logs in its JSON format.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::Full;
use journeybee_sim::{Fault, SIM_READ_KEY, SIM_WRITE_KEY};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::Duration;

/// Each label starts with the status its path must answer, so each path is really exercised:
/// a gateway answering 500 everywhere would leak nothing, and must fail.
fn assert_labelled_status(what: &str, resp: &Resp) {
    let want: u16 = what
        .split(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("label {what:?} does not start with a status"));
    assert_eq!(resp.status.as_u16(), want, "{what}: {}", resp.text());
}

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
        assert_labelled_status(what, resp);
        let all = resp.everything();
        for s in &secrets {
            assert!(!all.contains(s), "{what} leaks a secret: {all}");
        }
    }
}

/// What a log must never show of a client's JWT: the token, and its signature on its own.
fn token_secrets(token: &str) -> [String; 2] {
    let signature = token.rsplit('.').next().unwrap();
    assert!(signature.len() > 20, "a signed token: {token}");
    [token.to_string(), signature.to_string()]
}

/// Asserts that no line contains any of `secrets`, naming the first line that does.
fn assert_no_secret_in(stream: &str, lines: &[String], secrets: &[String]) {
    for line in lines {
        for s in secrets {
            assert!(
                !line.contains(s.as_str()),
                "a secret reached the gateway's {stream}: {line}"
            );
        }
    }
}

/// The access events among the gateway's JSON lines.
fn access_events(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|e| e["target"] == "access").collect()
}

#[tokio::test]
async fn no_secret_in_the_json_logs_of_the_gateway_binary() {
    // The binary, so that `logging::init` picks the format from `[log]`: the JsonLines layer,
    // at the most talkative level.
    let (h, gw) = Harness::with_binary(Opts {
        tail: "[log]\nformat = \"json\"\nlevel = \"trace\"\n".into(),
        ..Opts::default()
    })
    .await;
    let alice = h.token("alice@corp.test");
    let bob = h.token("bob@corp.test");
    let expired = h.token_with("bob@corp.test", |c| c["exp"] = json!(now() - 600));
    let unmapped = h.token("mallory@corp.test");
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &default_claims("alice@corp.test"),
        &EncodingKey::from_secret(b"not-the-gateway-secret-0123456789abcdef"),
    )
    .unwrap();
    let list = "/api/v1/partnerships";
    let mut seen: Vec<(&str, Resp)> = Vec::new();

    // Successful requests.
    seen.push(("200 list", h.get(list, Some(&bob)).await));
    seen.push(("200 cached list", h.get(list, Some(&bob)).await));
    let created = h
        .post_json(list, Some(&alice), &create_body("json-log-gw.com"))
        .await;
    seen.push(("201 create", created));
    // Rejected by the gateway.
    seen.push(("401 missing", h.get(list, None).await));
    seen.push(("401 expired", h.get(list, Some(&expired)).await));
    seen.push(("401 forged", h.get(list, Some(&forged)).await));
    let garbage = "garbage.token.here-0123456789abcdef";
    seen.push(("401 garbage", h.get(list, Some(garbage)).await));
    let in_query = format!("{list}?access_token={bob}");
    seen.push(("401 query token", h.get(&in_query, None).await));
    seen.push(("403 unmapped", h.get(list, Some(&unmapped)).await));
    let denied = h
        .post_json(list, Some(&bob), &create_body("json-log2-gw.com"))
        .await;
    seen.push(("403 read user creates", denied));
    seen.push(("400 schema", h.post_json(list, Some(&alice), "{}").await));
    // Refused by upstream, or upstream failing.
    let duplicate = h
        .post_json(list, Some(&alice), &create_body("json-log-gw.com"))
        .await;
    seen.push(("409 upstream", duplicate));
    h.sim.set_fault(Fault::Status(500));
    let failed = h.get(&format!("{list}?view=all"), Some(&bob)).await;
    seen.push(("500 upstream", failed));
    h.sim.set_fault(Fault::ResetMidResponse);
    let reset = h
        .post_json(list, Some(&alice), &create_body("json-log3-gw.com"))
        .await;
    seen.push(("504 create reset", reset));
    h.sim.set_fault(Fault::RateLimited {
        retry_after_secs: 5,
    });
    let limited = h.get(&format!("{list}?view=referral"), Some(&bob)).await;
    seen.push(("429 upstream", limited));
    h.sim.set_fault(Fault::None);
    h.sim.shutdown();
    let unreachable = h.get(&format!("{list}?view=assigned"), Some(&alice)).await;
    seen.push(("502 unreachable", unreachable));
    for (what, resp) in &seen {
        assert_labelled_status(what, resp);
    }

    // Every request's access line is out before the process stops (and SIGTERM writes out
    // whatever is still pending).
    gw.wait_for("one access event per request", |lines| {
        access_events(lines).len() >= seen.len()
    })
    .await;
    let (stdout, stderr) = gw.stop();

    // The JSON format really was in use: every line is one JsonLines object.
    let events: Vec<Value> = stdout
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            for field in ["timestamp", "level", "target"] {
                assert!(v[field].is_string(), "{field} missing in {l}");
            }
            v
        })
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["level"] == "DEBUG" || e["level"] == "TRACE"),
        "the configured level (trace) was applied"
    );
    // The lines checked below are those of these requests: one access event each, with the
    // statuses the clients saw, and the audit events of the creates that reached upstream.
    let mut logged: Vec<u64> = access_events(&events)
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    let mut answered: Vec<u64> = seen.iter().map(|(_, r)| r.status.as_u16().into()).collect();
    logged.sort_unstable();
    answered.sort_unstable();
    assert_eq!(logged, answered);
    let mut outcomes: Vec<&str> = events
        .iter()
        .filter(|e| e["target"] == "audit")
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    outcomes.sort_unstable();
    assert_eq!(
        outcomes,
        ["created", "outcome_unknown", "refused_upstream"],
        "{events:?}"
    );

    let mut secrets: Vec<String> = vec![
        SIM_READ_KEY.into(),
        SIM_WRITE_KEY.into(),
        JWT_SECRET.into(),
        garbage.into(),
    ];
    for token in [&alice, &bob, &expired, &unmapped, &forged] {
        secrets.extend(token_secrets(token));
    }
    assert_no_secret_in("stdout", &stdout, &secrets);
    assert_no_secret_in("stderr", &stderr, &secrets);
}
