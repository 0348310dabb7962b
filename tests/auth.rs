//! Authentication: every way a credential can be wrong is a 401 that never reaches upstream.

mod common;

use base64::Engine;
use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::Full;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// Asserts a 401 with the invalid_token challenge, and that upstream saw nothing.
async fn refused(h: &Harness, token: &str) {
    let before = h.upstream_count();
    let r = h.get("/api/v1/partnerships", Some(token)).await;
    let msg = r.assert_error(401);
    assert_eq!(msg, "Invalid bearer token");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    assert!(!r.everything().contains(token), "the token is never echoed");
    assert_eq!(
        h.upstream_count(),
        before,
        "a refused request never reaches upstream"
    );
}

#[tokio::test]
async fn missing_credential_gets_a_bare_challenge() {
    let h = Harness::start().await;
    let r = h.get("/api/v1/partnerships", None).await;
    assert_eq!(r.assert_error(401), "Missing bearer token");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = h
        .post_json("/api/v1/partnerships", None, &create_body("globex-a.com"))
        .await;
    r.assert_error(401);
    assert_eq!(h.upstream_count(), 0);
}

#[tokio::test]
async fn valid_tokens_of_every_key_type_are_accepted() {
    for mode in [
        AuthMode::Hs256,
        AuthMode::Rs256,
        AuthMode::Es256,
        AuthMode::EdDsa,
    ] {
        let h = Harness::with(Opts {
            auth: mode,
            ..Opts::default()
        })
        .await;
        let r = h
            .get("/api/v1/partnerships", Some(&h.token("bob@corp.test")))
            .await;
        assert_eq!(r.status, 200, "{mode:?}: {}", r.text());
        assert_eq!(h.upstream_count(), 1);
    }
}

#[tokio::test]
async fn alg_none_is_refused() {
    let h = Harness::start().await;
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64(default_claims("bob@corp.test").to_string().as_bytes());
    refused(&h, &format!("{header}.{claims}.")).await;
    refused(&h, &format!("{header}.{claims}.c2ln")).await;
    let header = b64(br#"{"alg":"None"}"#);
    refused(&h, &format!("{header}.{claims}.")).await;
}

#[tokio::test]
async fn algorithm_not_allowed_is_refused() {
    let h = Harness::start().await;
    // HS512 with the right secret: the key matches but the algorithm is not configured.
    let t = encode(
        &Header::new(Algorithm::HS512),
        &default_claims("bob@corp.test"),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    refused(&h, &t).await;
}

#[tokio::test]
async fn rs_hs_key_confusion_is_refused() {
    // The gateway trusts an RSA public key; the attacker signs HS256 with that public key's
    // PEM text as the HMAC secret.
    let h = Harness::with(Opts {
        auth: AuthMode::Rs256,
        ..Opts::default()
    })
    .await;
    let pem = fixture("rsa_public.pem");
    for secret in [pem.as_bytes(), pem.trim().as_bytes()] {
        let t = encode(
            &Header::new(Algorithm::HS256),
            &default_claims("alice@corp.test"),
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        refused(&h, &t).await;
    }
}

#[tokio::test]
async fn rs_hs_confusion_with_both_families_configured_is_refused() {
    // Even with HS256 allowed (with its own secret) the RSA PEM never becomes an HMAC key.
    let h = Harness::with(Opts {
        auth: AuthMode::Rs256,
        algorithms: Some("\"RS256\", \"HS256\""),
        extra_keys: "[[auth.keys]]\nhmac_secret_file = \"jwt.secret\"\n".into(),
        ..Opts::default()
    })
    .await;
    // Both keys work for their own algorithm.
    assert_eq!(
        h.get("/api/v1/partnerships", Some(&h.token("bob@corp.test")))
            .await
            .status,
        200
    );
    let hs = encode(
        &Header::new(Algorithm::HS256),
        &default_claims("bob@corp.test"),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        h.get("/api/v1/partnerships?view=all", Some(&hs))
            .await
            .status,
        200
    );
    let pem = fixture("rsa_public.pem");
    let t = encode(
        &Header::new(Algorithm::HS256),
        &default_claims("alice@corp.test"),
        &EncodingKey::from_secret(pem.as_bytes()),
    )
    .unwrap();
    refused(&h, &t).await;
}

#[tokio::test]
async fn expired_not_yet_valid_wrong_issuer_and_audience_are_refused() {
    let h = Harness::start().await;
    let bob = "bob@corp.test";
    // Expired well beyond the 30 s leeway.
    refused(&h, &h.token_with(bob, |c| c["exp"] = json!(now() - 120))).await;
    // nbf in the future beyond the leeway.
    refused(&h, &h.token_with(bob, |c| c["nbf"] = json!(now() + 600))).await;
    refused(
        &h,
        &h.token_with(bob, |c| c["iss"] = json!("https://evil.example")),
    )
    .await;
    refused(
        &h,
        &h.token_with(bob, |c| c["aud"] = json!("another-service")),
    )
    .await;
    // Required claims missing.
    refused(
        &h,
        &h.token_with(bob, |c| {
            c.as_object_mut().unwrap().remove("exp");
        }),
    )
    .await;
    refused(
        &h,
        &h.token_with(bob, |c| {
            c.as_object_mut().unwrap().remove("aud");
        }),
    )
    .await;
    refused(
        &h,
        &h.token_with(bob, |c| {
            c.as_object_mut().unwrap().remove("iss");
        }),
    )
    .await;
    refused(
        &h,
        &h.token_with(bob, |c| {
            c.as_object_mut().unwrap().remove("sub");
        }),
    )
    .await;
    // Within the leeway is accepted.
    let t = h.token_with(bob, |c| c["exp"] = json!(now() - 5));
    assert_eq!(h.get("/api/v1/partnerships", Some(&t)).await.status, 200);
    let t = h.token_with(bob, |c| c["nbf"] = json!(now() + 5));
    assert_eq!(h.get("/api/v1/partnerships", Some(&t)).await.status, 200);
    // An audience list containing ours is accepted.
    let t = h.token_with(bob, |c| c["aud"] = json!(["x", AUDIENCE]));
    assert_eq!(h.get("/api/v1/partnerships", Some(&t)).await.status, 200);
}

#[tokio::test]
async fn forged_and_tampered_signatures_are_refused() {
    let h = Harness::start().await;
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &default_claims("alice@corp.test"),
        &EncodingKey::from_secret(b"another-secret-another-secret-another-secret"),
    )
    .unwrap();
    refused(&h, &forged).await;
    // Bob's genuine token with the subject swapped for alice's.
    let genuine = h.token("bob@corp.test");
    let parts: Vec<&str> = genuine.split('.').collect();
    let claims = b64(default_claims("alice@corp.test").to_string().as_bytes());
    refused(&h, &format!("{}.{}.{}", parts[0], claims, parts[2])).await;
    // Signature stripped.
    refused(&h, &format!("{}.{}.", parts[0], parts[1])).await;
    // ES256 signature on an RS256-configured gateway.
    let h = Harness::with(Opts {
        auth: AuthMode::Rs256,
        ..Opts::default()
    })
    .await;
    refused(&h, &sign(AuthMode::Es256, &default_claims("bob@corp.test"))).await;
}

#[tokio::test]
async fn malformed_and_oversized_tokens_are_refused() {
    let h = Harness::start().await;
    for t in [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "!!!.???.***",
        "eyJhbGciOiJIUzI1NiJ9.not-base64!.sig",
        &b64(b"[]"),
    ] {
        refused(&h, t).await;
    }
    let big = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"HS256"}"#),
        "A".repeat(9000),
        "sig"
    );
    refused(&h, &big).await;
}

#[tokio::test]
async fn two_credentials_and_other_schemes_are_refused() {
    let h = Harness::start().await;
    let t = h.token("bob@corp.test");
    let req = h
        .request(Method::GET, "/api/v1/partnerships", Some(&t))
        .header("authorization", format!("Bearer {t}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = h.send(req).await;
    r.assert_error(401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    // Header plus access_token in the query.
    let r = h
        .get(&format!("/api/v1/partnerships?access_token={t}"), Some(&t))
        .await;
    r.assert_error(401);
    // Token only in the query: not accepted either.
    let r = h
        .get(&format!("/api/v1/partnerships?access_token={t}"), None)
        .await;
    r.assert_error(401);
    // Basic auth, and "Bearer" with nothing after it.
    for value in ["Basic Ym9iOnB3", "Bearer", "Bearer ", "Token abc"] {
        let req = http::Request::get(format!("{}/api/v1/partnerships", h.base))
            .header("authorization", value)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = h.send(req).await;
        r.assert_error(401);
    }
    assert_eq!(h.upstream_count(), 0);
}

#[tokio::test]
async fn unknown_kid_with_kid_bound_key_is_refused() {
    let h = Harness::with(Opts {
        auth: AuthMode::Hs256,
        ..Opts::default()
    })
    .await;
    // Keys without a kid accept any kid; a token naming one is still verified by signature.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("whatever".into());
    let t = encode(
        &header,
        &default_claims("bob@corp.test"),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(h.get("/api/v1/partnerships", Some(&t)).await.status, 200);
}

#[tokio::test]
async fn auth_failures_are_counted_by_reason() {
    let h = Harness::start().await;
    h.get("/api/v1/partnerships", None).await;
    refused(
        &h,
        &h.token_with("bob@corp.test", |c| c["exp"] = json!(now() - 120)),
    )
    .await;
    let m = h.admin_get("/metrics").await.text();
    assert!(
        m.contains("jbgw_auth_failures_total{reason=\"missing\"} 1"),
        "{m}"
    );
    assert!(m.contains("jbgw_auth_failures_total{reason=\"expired\"} 1"));
}

#[tokio::test]
async fn a_cached_verification_still_honours_exp() {
    let h = Harness::with(Opts {
        auth_extra: "leeway = \"0s\"".into(),
        ..Opts::default()
    })
    .await;
    // Valid for 2 to 3 s (whole seconds): room for a slow machine before the first request.
    let t = h.token_with("bob@corp.test", |c| c["exp"] = json!(now() + 2));
    assert_eq!(h.get("/api/v1/partnerships", Some(&t)).await.status, 200);
    assert_eq!(h.get("/api/v1/partnerships", Some(&t)).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    refused(&h, &t).await;
}
