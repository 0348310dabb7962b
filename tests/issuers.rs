//! Identity at company scale, through the gateway: keys from the IdP's JWKS (rotation, the
//! unknown-kid cooldown, a failing IdP, keys bound to their algorithm, `jku`/`x5u` ignored,
//! readiness), several issuers, and users mapped by claim rules.

mod common;

use common::idp::{ec_key, jwk, rsa_key, set, Idp};
use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::Duration;

fn claims(iss: &str, sub: &str) -> Value {
    json!({"sub": sub, "iss": iss, "aud": AUDIENCE, "exp": now() + 600, "iat": now()})
}

fn sign_kid(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    encode(&h, claims, key).unwrap()
}

/// A gateway whose only issuer is `idp` (its `iss` is the IdP's base URL), keys from its JWKS.
async fn jwks_gateway(idp: &Idp, extra: &str) -> Harness {
    Harness::with(Opts {
        algorithms: Some("\"RS256\", \"PS256\", \"ES256\""),
        no_static_key: true,
        auth_extra: format!(
            "jwks_url = \"{}\"\njwks_cooldown = \"30s\"\n{extra}",
            idp.jwks_url()
        ),
        ..Opts::default()
    })
    .await
}

/// The base config pins `issuer` to the test issuer; these tokens use that value.
fn idp_claims(sub: &str) -> Value {
    claims(ISSUER, sub)
}

#[tokio::test]
async fn keys_come_from_the_jwks_and_rotation_is_picked_up_with_one_fetch() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "k1")])).await;
    let h = jwks_gateway(&idp, "").await;
    assert_eq!(idp.hits(), 1, "fetched at start");
    let t1 = sign_kid(
        &rsa_key(),
        Algorithm::RS256,
        Some("k1"),
        &idp_claims("bob@corp.test"),
    );
    assert_eq!(h.get("/api/v1/partnerships", Some(&t1)).await.status, 200);
    // The IdP rotates to an EC key: the first token naming it triggers exactly one fetch.
    idp.serve(
        200,
        set(vec![jwk(&ec_key(), Algorithm::ES256, "k2")]).to_string(),
    );
    let t2 = sign_kid(
        &ec_key(),
        Algorithm::ES256,
        Some("k2"),
        &idp_claims("bob@corp.test"),
    );
    for _ in 0..5 {
        let r = h.get("/api/v1/partnerships?view=all", Some(&t2)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(idp.hits(), 2);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_at_most_once_per_cooldown() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "k1")])).await;
    let h = jwks_gateway(&idp, "").await;
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let client = h.client.clone();
        let kid = format!("random-{i}-{}", fastrand::u64(..));
        let t = sign_kid(
            &rsa_key(),
            Algorithm::RS256,
            Some(&kid),
            &idp_claims("bob@corp.test"),
        );
        let req = h
            .request(http::Method::GET, "/api/v1/partnerships", Some(&t))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        tasks.push(tokio::spawn(async move {
            client.request(req).await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    assert!(
        idp.hits() <= 2,
        "{} fetches: one at start, at most one per cooldown",
        idp.hits()
    );
    assert_eq!(h.upstream_count(), 0);
}

#[tokio::test]
async fn a_failing_idp_keeps_the_last_good_keys() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "k1")])).await;
    let h = jwks_gateway(&idp, "jwks_refresh = \"1s\"").await;
    idp.serve(500, "oops");
    let t = sign_kid(
        &rsa_key(),
        Algorithm::RS256,
        Some("k1"),
        &idp_claims("bob@corp.test"),
    );
    common::eventually("the background refresh", Duration::from_secs(10), || {
        idp.hits() >= 2
    })
    .await;
    assert_eq!(h.get("/api/v1/partnerships", Some(&t)).await.status, 200);
    idp.serve(200, "<html>not json</html>");
    let unknown = sign_kid(
        &rsa_key(),
        Algorithm::RS256,
        Some("zzz"),
        &idp_claims("bob@corp.test"),
    );
    assert_eq!(
        h.get("/api/v1/partnerships", Some(&unknown)).await.status,
        401
    );
    assert_eq!(
        h.get("/api/v1/partnerships?view=all", Some(&t))
            .await
            .status,
        200
    );
    assert_eq!(h.admin_get("/readyz").await.status, 200);
}

#[tokio::test]
async fn a_key_is_never_used_for_an_algorithm_it_was_not_published_for() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "k1")])).await;
    let h = jwks_gateway(&idp, "").await;
    // PS256 is allowed by config and uses the same RSA key, but the key says RS256.
    let t = sign_kid(
        &rsa_key(),
        Algorithm::PS256,
        Some("k1"),
        &idp_claims("bob@corp.test"),
    );
    assert_eq!(h.get("/api/v1/partnerships", Some(&t)).await.status, 401);
    // HS256 with the public key's bytes as the secret: refused too.
    let n = jwk(&rsa_key(), Algorithm::RS256, "k1")["n"]
        .as_str()
        .unwrap()
        .to_string();
    let t = sign_kid(
        &EncodingKey::from_secret(n.as_bytes()),
        Algorithm::HS256,
        Some("k1"),
        &idp_claims("bob@corp.test"),
    );
    assert_eq!(h.get("/api/v1/partnerships", Some(&t)).await.status, 401);
    assert_eq!(h.upstream_count(), 0);
}

#[tokio::test]
async fn jku_and_x5u_headers_are_never_followed() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "k1")])).await;
    let attacker = Idp::start(set(vec![jwk(&ec_key(), Algorithm::ES256, "evil")])).await;
    let h = jwks_gateway(&idp, "").await;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("evil".into());
    header.jku = Some(attacker.jwks_url());
    header.x5u = Some(attacker.jwks_url());
    let t = encode(&header, &idp_claims("alice@corp.test"), &ec_key()).unwrap();
    assert_eq!(h.get("/api/v1/partnerships", Some(&t)).await.status, 401);
    assert_eq!(attacker.hits(), 0, "the attacker's JWKS was never fetched");
}

#[tokio::test]
async fn not_ready_until_the_first_key_set_is_loaded() {
    let idp = Idp::start(json!({"keys": []})).await;
    idp.serve(503, "down");
    let h = jwks_gateway(&idp, "jwks_refresh = \"1s\"").await;
    assert_eq!(h.admin_get("/readyz").await.status, 503);
    idp.serve(
        200,
        set(vec![jwk(&rsa_key(), Algorithm::RS256, "k1")]).to_string(),
    );
    let mut ready = false;
    for _ in 0..60 {
        if h.admin_get("/readyz").await.status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "became ready once the IdP answered");
}

#[tokio::test]
async fn oidc_discovery_finds_the_jwks() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "k1")])).await;
    let h = Harness::with(Opts {
        algorithms: Some("\"RS256\""),
        no_static_key: true,
        // The IdP's discovery document names its base URL as the issuer.
        auth_extra: "discovery = true".into(),
        ..Opts::default()
    })
    .await;
    // The base config's issuer is not the IdP's, so discovery fails and nothing is ready.
    assert_eq!(h.admin_get("/readyz").await.status, 503);
    drop(h);
    let dir = TestDir::new();
    let key_file = dir.write("read.key", journeybee_sim::SIM_READ_KEY);
    let sim = journeybee_sim::Simulator::start("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[upstream]
base_url = "{}"
[upstream.keys.read]
secret_file = "{}"
[auth]
algorithms = ["RS256"]
issuer = "{}"
audience = "{AUDIENCE}"
discovery = true
[[users]]
subject = "bob@corp.test"
upstream_key = "read"
user_id = 457
access = "read"
"#,
        sim.base_url(),
        key_file.display(),
        idp.base
    );
    let settings = journeybee_gateway::config::from_toml(&text, std::path::Path::new(".")).unwrap();
    let gw = journeybee_gateway::server::Gateway::start(settings)
        .await
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let t = sign_kid(
        &rsa_key(),
        Algorithm::RS256,
        Some("k1"),
        &claims(&idp.base, "bob@corp.test"),
    );
    let req = http::Request::get(format!("http://{}/api/v1/partnerships", gw.addr()))
        .header("authorization", format!("Bearer {t}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(idp.hits() >= 1);
}

#[tokio::test]
async fn several_issuers_and_claim_rules() {
    let m2m_secret = "m2m-hmac-secret-0123456789abcdef-0123456789";
    let dir_extra = format!(
        r#"
[auth.rules]
user_id_lookup_claim = "email"
user_ids = {{ "dora@corp.test" = 460 }}
read_key = "read"
write_key = "write"
write_groups = ["sales-ops"]

[[auth.issuers]]
name = "m2m"
issuer = "https://m2m.test.example"
audience = "{AUDIENCE}"
algorithms = ["HS512"]
[[auth.issuers.keys]]
hmac_secret_file = "m2m.secret"
[auth.issuers.rules]
user_id_claim = "jb_user_id"
read_key = "read"
write_key = "write"
write_scopes = ["partnerships:write"]
"#
    );
    let secrets = TestDir::new();
    let secret_path = secrets.write("m2m.secret", m2m_secret);
    let h = Harness::with(Opts {
        tail: dir_extra.replace("m2m.secret", &secret_path.display().to_string()),
        ..Opts::default()
    })
    .await;
    let m2m = |extra: Value| {
        let mut c = claims("https://m2m.test.example", "svc-crm");
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        encode(
            &Header::new(Algorithm::HS512),
            &c,
            &EncodingKey::from_secret(m2m_secret.as_bytes()),
        )
        .unwrap()
    };
    // A machine token with the write scope creates through the write key, as its claimed user.
    let writer = m2m(json!({"jb_user_id": 461, "scope": "partnerships:read partnerships:write"}));
    let r = h
        .post_json(
            "/api/v1/partnerships",
            Some(&writer),
            &create_body("m2m-gw.com"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        h.sim.requests().pop().unwrap().api_key.as_deref(),
        Some(journeybee_sim::SIM_WRITE_KEY)
    );
    // Without the scope it is a reader: lists as user 461 on the read key, cannot create.
    let reader = m2m(json!({"jb_user_id": "461"}));
    let r = h.get("/api/v1/partnerships", Some(&reader)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let up = h.sim.requests().pop().unwrap();
    assert!(up.query.unwrap().contains("userId=461"));
    assert_eq!(up.api_key.as_deref(), Some(journeybee_sim::SIM_READ_KEY));
    h.post_json(
        "/api/v1/partnerships",
        Some(&reader),
        &create_body("m2m2-gw.com"),
    )
    .await
    .assert_error(403);
    // No userId claim: matches nothing → 403.
    h.get("/api/v1/partnerships", Some(&m2m(json!({}))))
        .await
        .assert_error(403);
    // The default issuer's rules: a group grants write, a lookup table gives the userId.
    let dora = h.token_with("dora-sub", |c| {
        c["email"] = json!("dora@corp.test");
        c["groups"] = json!(["staff", "sales-ops"]);
    });
    let r = h
        .post_json(
            "/api/v1/partnerships",
            Some(&dora),
            &create_body("dora-gw.com"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // The explicit table wins over rules: bob stays a reader even in sales-ops.
    let bob = h.token_with("bob@corp.test", |c| c["groups"] = json!(["sales-ops"]));
    h.post_json(
        "/api/v1/partnerships",
        Some(&bob),
        &create_body("bob-gw.com"),
    )
    .await
    .assert_error(403);
    // A token from an issuer nobody trusts, and an m2m token signed with the default key.
    let stranger = encode(
        &Header::new(Algorithm::HS512),
        &claims("https://evil.example", "x"),
        &EncodingKey::from_secret(m2m_secret.as_bytes()),
    )
    .unwrap();
    h.get("/api/v1/partnerships", Some(&stranger))
        .await
        .assert_error(401);
    let crossed = encode(
        &Header::new(Algorithm::HS256),
        &claims("https://m2m.test.example", "x"),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    h.get("/api/v1/partnerships", Some(&crossed))
        .await
        .assert_error(401);
}

#[test]
fn rules_naming_an_unknown_key_are_a_config_error() {
    let dir = TestDir::new();
    dir.write("read.key", "r");
    dir.write("write.key", "w");
    dir.write("jwt.secret", JWT_SECRET);
    let text = config_text(&Opts::default(), "http://127.0.0.1:9", (1, 2, 3))
        + "\n[auth.rules]\nuser_id_claim = \"uid\"\nread_key = \"nope\"\n";
    let e = journeybee_gateway::config::from_toml(&text, &dir.0).unwrap_err();
    assert!(
        e.problems
            .iter()
            .any(|(p, m)| p == "auth.rules.read_key" && m.contains("nope")),
        "{e}"
    );
}

#[tokio::test]
async fn jwks_fetches_and_key_age_are_exported() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "k1")])).await;
    let h = jwks_gateway(&idp, "").await;
    idp.serve(500, "down");
    let t = sign_kid(
        &rsa_key(),
        Algorithm::RS256,
        Some("unknown"),
        &idp_claims("bob@corp.test"),
    );
    h.get("/api/v1/partnerships", Some(&t)).await;
    let m = h.admin_get("/metrics").await.text();
    assert!(
        m.contains("jbgw_jwks_fetches_total{issuer=\"default\",result=\"success\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("jbgw_jwks_fetches_total{issuer=\"default\",result=\"failure\"} 1"),
        "{m}"
    );
    assert!(m.contains("jbgw_jwks_key_set_age_seconds{issuer=\"default\"}"));
}

#[tokio::test]
async fn users_mapped_by_rules_get_the_default_fair_share() {
    let h = Harness::with(Opts {
        tail: "[auth.rules]\nuser_id_claim = \"uid\"\nread_key = \"read\"\n\n[rate_limit]\nper_user_requests_per_minute = 2\n".into(),
        ..Opts::default()
    })
    .await;
    let erin = h.token_with("erin-sub", |c| c["uid"] = json!(460));
    let frank = h.token_with("frank-sub", |c| c["uid"] = json!(461));
    for i in 0..2 {
        let r = h
            .get(&format!("/api/v1/partnerships?search=r{i}"), Some(&erin))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = h.get("/api/v1/partnerships?search=r9", Some(&erin)).await;
    assert_eq!(
        r.assert_error(429),
        "Rate limit exceeded for this user, retry later"
    );
    // Another rule-mapped user has a share of their own.
    assert_eq!(
        h.get("/api/v1/partnerships?search=r9", Some(&frank))
            .await
            .status,
        200
    );
    assert!(h
        .sim
        .requests()
        .last()
        .unwrap()
        .query
        .as_ref()
        .unwrap()
        .contains("userId=461"));
}
