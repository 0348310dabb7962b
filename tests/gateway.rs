//! Forwarding, routing, identity mapping and local enforcement, end to end over real sockets.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::Full;
use journeybee_sim::{Fault, SIM_READ_KEY, SIM_WRITE_KEY};

#[tokio::test]
async fn list_is_forwarded_with_mapped_key_and_user_and_no_client_credentials() {
    let h = Harness::start().await;
    let token = h.token("bob@corp.test");
    let req = h
        .request(Method::GET, "/api/v1/partnerships?view=all", Some(&token))
        .header("cookie", "session=abc")
        .header("proxy-authorization", "Basic eDp5")
        .header("x-forwarded-for", "10.0.0.1")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=10.0.0.1")
        .header("connection", "x-secret-hop")
        .header("x-secret-hop", "hop")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("x-request-id", "client-id-123")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json().is_array());
    assert_eq!(r.header("x-request-id"), Some("client-id-123"));

    let seen = h.sim.requests();
    assert_eq!(seen.len(), 1);
    let up = &seen[0];
    assert_eq!(up.method, Method::GET);
    assert_eq!(up.path, "/api/v1/partnerships");
    assert_eq!(
        up.api_key.as_deref(),
        Some(SIM_READ_KEY),
        "bob is mapped to the read key"
    );
    let query = up.query.clone().unwrap();
    assert!(query.contains(&format!("userId={}", h.bob_id)), "{query}");
    for name in [
        "cookie",
        "proxy-authorization",
        "x-forwarded-for",
        "x-forwarded-host",
        "forwarded",
        "x-secret-hop",
        "keep-alive",
        "te",
    ] {
        assert!(
            up.headers.get(name).is_none(),
            "{name} must not be forwarded"
        );
    }
    let auth = up.headers.get("authorization").unwrap().to_str().unwrap();
    assert_eq!(auth, format!("Bearer {SIM_READ_KEY}"));
    assert!(
        !format!("{:?}", up.headers).contains(&token),
        "client token never forwarded"
    );
    assert_eq!(up.headers.get("x-request-id").unwrap(), "client-id-123");
    assert!(up
        .headers
        .get("user-agent")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("journeybee-gateway/"));
}

#[tokio::test]
async fn request_ids_are_generated_when_missing_or_insane() {
    let h = Harness::start().await;
    let token = h.token("bob@corp.test");
    let long = "x".repeat(129);
    for (i, bad) in [None, Some("has space"), Some(long.as_str())]
        .into_iter()
        .enumerate()
    {
        // A distinct query each time, so each one reaches upstream (no cache hit).
        let path = format!("/api/v1/partnerships?search=rid{i}");
        let mut b = h.request(Method::GET, &path, Some(&token));
        if let Some(v) = bad {
            b = b.header("x-request-id", v);
        }
        let r = h.send(b.body(Full::new(Bytes::new())).unwrap()).await;
        let id = r.header("x-request-id").unwrap().to_string();
        assert_eq!(id.len(), 32, "a fresh id: {id}");
        assert_ne!(Some(id.as_str()), bad);
        let up = h.sim.requests().pop().unwrap();
        assert_eq!(
            up.headers.get("x-request-id").unwrap().to_str().unwrap(),
            id
        );
    }
    // Rejections carry an id too.
    let r = h.get("/nope", None).await;
    assert!(r.header("x-request-id").is_some());
}

#[tokio::test]
async fn create_is_forwarded_byte_for_byte_with_the_write_key() {
    let h = Harness::start().await;
    let token = h.token("alice@corp.test");
    // Odd spacing, key order and a big number: all must arrive unchanged.
    let body = "{ \"partnerType\":\"referral\",  \"name\" : \"Initech\",\n \"emails\":[{\"email\":\"peter@initech-gw.com\"}], \"inactive\": true, \"tierId\": 2 }";
    let r = h
        .post_json("/api/v1/partnerships", Some(&token), body)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let up = h.sim.requests().pop().unwrap();
    assert_eq!(up.method, Method::POST);
    assert_eq!(&up.body[..], body.as_bytes());
    assert_eq!(up.api_key.as_deref(), Some(SIM_WRITE_KEY));
    assert_eq!(up.query, None, "creates carry no userId");

    let r = h
        .post_json(
            "/api/v1/companies/123/partnerships",
            Some(&token),
            &create_body("hooli-gw.com"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        h.sim.requests().pop().unwrap().path,
        "/api/v1/companies/123/partnerships"
    );
}

#[tokio::test]
async fn read_user_cannot_create() {
    let h = Harness::start().await;
    let token = h.token("bob@corp.test");
    for path in ["/api/v1/partnerships", "/api/v1/companies/123/partnerships"] {
        let r = h
            .post_json(path, Some(&token), &create_body("nope-gw.com"))
            .await;
        assert_eq!(
            r.assert_error(403),
            "Write access required for this operation"
        );
    }
    assert_eq!(h.upstream_count(), 0);
}

#[tokio::test]
async fn unmapped_user_is_forbidden() {
    let h = Harness::start().await;
    let r = h
        .get("/api/v1/partnerships", Some(&h.token("mallory@corp.test")))
        .await;
    r.assert_error(403);
    assert_eq!(h.upstream_count(), 0);
}

#[tokio::test]
async fn foreign_user_id_is_forbidden_and_own_is_accepted() {
    let h = Harness::start().await;
    let token = h.token("bob@corp.test");
    let r = h
        .get(
            &format!("/api/v1/partnerships?userId={}", h.alice_id),
            Some(&token),
        )
        .await;
    assert_eq!(
        r.assert_error(403),
        "userId does not match the authenticated user"
    );
    assert_eq!(h.upstream_count(), 0);
    let r = h
        .get(
            &format!("/api/v1/partnerships?userId={}", h.bob_id),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let q = h.sim.requests().pop().unwrap().query.unwrap();
    assert_eq!(q.matches("userId=").count(), 1, "userId sent once: {q}");
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_without_reaching_upstream() {
    let h = Harness::start().await;
    let token = h.token("alice@corp.test");
    for path in [
        "/",
        "/api/v1/countries",
        "/api/v1/tags/1",
        "/api/v1/partnerships/",
        "/api/v1/companies/1/partnerships/extra",
        "/api/v1/../v1/partnerships",
        "/API/V1/PARTNERSHIPS",
    ] {
        let r = h.get(path, Some(&token)).await;
        assert_eq!(r.assert_error(404), "Not found", "{path}");
    }
    // A documented route with an id that is not a positive integer: 400, naming the id.
    for path in [
        "/api/v1/companies/abc/partnerships",
        "/api/v1/companies/0/partnerships",
    ] {
        let r = h.post_json(path, Some(&token), "{}").await;
        assert_eq!(r.assert_error(400), "Invalid path parameter", "{path}");
        assert_eq!(r.json()["details"][0]["field"], "companyId");
    }
    for (method, path, allow) in [
        (Method::DELETE, "/api/v1/partnerships", "GET, POST"),
        (Method::PUT, "/api/v1/partnerships", "GET, POST"),
        (Method::PATCH, "/api/v1/partnerships", "GET, POST"),
        (Method::GET, "/api/v1/companies/123/partnerships", "POST"),
        (Method::GET, "/api/v1/partnerships/12", "PATCH, DELETE"),
        (Method::DELETE, "/api/v1/tags", "GET, POST"),
    ] {
        let r = h
            .send(
                h.request(method.clone(), path, Some(&token))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await;
        r.assert_error(405);
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
    assert_eq!(h.upstream_count(), 0);
}

#[tokio::test]
async fn upstream_errors_pass_through_with_status_and_body() {
    let h = Harness::start().await;
    let token = h.token("alice@corp.test");
    let r = h
        .post_json(
            "/api/v1/partnerships",
            Some(&token),
            &create_body("dup-gw.com"),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = h
        .post_json(
            "/api/v1/partnerships",
            Some(&token),
            &create_body("dup-gw.com"),
        )
        .await;
    assert_eq!(
        r.assert_error(409),
        "Partnership already exists with this company"
    );
    // A company id the upstream does not know: its 404 passes through.
    let r = h
        .post_json(
            "/api/v1/companies/999/partnerships",
            Some(&token),
            &create_body("other-gw.com"),
        )
        .await;
    r.assert_error(404);
    h.sim.set_fault(Fault::Status(503));
    let r = h.get("/api/v1/partnerships", Some(&token)).await;
    assert_eq!(r.assert_error(503), "simulated failure");
    h.sim.set_fault(Fault::RateLimited {
        retry_after_secs: 7,
    });
    let r = h
        .get("/api/v1/partnerships?view=referral", Some(&token))
        .await;
    r.assert_error(429);
    assert_eq!(r.header("retry-after"), Some("7"));
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let h = Harness::start().await;
    let token = h.token("bob@corp.test");
    h.sim
        .set_fault(Fault::Slow(std::time::Duration::from_secs(4)));
    let r = h.get("/api/v1/partnerships", Some(&token)).await;
    assert_eq!(r.assert_error(504), "JourneyBee API did not answer in time");
    h.sim.set_fault(Fault::None);
    h.sim.shutdown();
    let r = h.get("/api/v1/partnerships?view=all", Some(&token)).await;
    assert_eq!(r.assert_error(502), "JourneyBee API is unreachable");
}

#[tokio::test]
async fn a_create_that_times_out_was_sent_once_and_says_it_may_exist() {
    let h = Harness::start().await;
    let token = h.token("alice@corp.test");
    h.sim
        .set_fault(Fault::Slow(std::time::Duration::from_secs(4)));
    let r = h
        .post_json(
            "/api/v1/partnerships",
            Some(&token),
            &create_body("slow-gw.com"),
        )
        .await;
    let msg = r.assert_error(504);
    assert!(msg.contains("may have been created"), "{msg}");
    assert_eq!(h.upstream_count(), 1, "a create is sent at most once");
    h.sim.set_fault(Fault::ResetMidResponse);
    let r = h
        .post_json(
            "/api/v1/partnerships",
            Some(&token),
            &create_body("reset-gw.com"),
        )
        .await;
    assert!(r.assert_error(504).contains("may have been created"));
    assert_eq!(h.upstream_count(), 2);
}

#[tokio::test]
async fn health_readiness_and_metrics_live_on_the_admin_listener() {
    let h = Harness::start().await;
    assert_eq!(h.admin_get("/healthz").await.status, 200);
    assert_eq!(h.admin_get("/readyz").await.status, 200);
    let m = h.admin_get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.text().contains("jbgw_build_info"));
    // Not on the public listener.
    let r = h.get("/healthz", None).await;
    r.assert_error(404);
    let r = h.get("/metrics", None).await;
    r.assert_error(404);
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let mut h = Harness::start().await;
    let token = h.token("bob@corp.test");
    h.sim
        .set_fault(Fault::Slow(std::time::Duration::from_millis(700)));
    let client = h.client.clone();
    let req = h
        .request(Method::GET, "/api/v1/partnerships", Some(&token))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let before = h.upstream_count();
    let pending = tokio::spawn(async move { client.request(req).await });
    h.wait_for_upstream(before + 1).await;
    let gw = h.gw.take().unwrap();
    #[cfg(target_os = "linux")]
    let (addr, listener) = {
        let addr = gw.addr();
        let sockets = listening_sockets(addr);
        assert_eq!(
            sockets.len(),
            1,
            "the gateway listens on {addr}: {sockets:?}"
        );
        (addr, sockets[0])
    };
    gw.shutdown().await;
    let resp = pending.await.unwrap().expect("in-flight request completes");
    assert_eq!(resp.status(), 200);
    // And the listener is closed afterwards. Not by connecting to its port, which a parallel
    // test may have bound again by now: that socket itself no longer listens.
    #[cfg(target_os = "linux")]
    assert!(
        !listening_sockets(addr).contains(&listener),
        "the listener on {addr} is still open"
    );
}

/// The inodes (identities) of the IPv4 TCP sockets listening on `addr`, from Linux's
/// /proc/net/tcp. A socket bound later to the same port has another inode.
#[cfg(target_os = "linux")]
fn listening_sockets(addr: std::net::SocketAddr) -> Vec<u64> {
    let std::net::SocketAddr::V4(v4) = addr else {
        panic!("an IPv4 listener expected: {addr}");
    };
    // The address as the kernel prints it: the network-order word in native hex, then the port.
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    );
    const LISTEN: &str = "0A";
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&LISTEN))
                .then(|| fields[9].parse().unwrap())
        })
        .collect()
}
