//! Create bodies and list queries refused locally: the right status, field-level details, and
//! nothing reaches upstream. What is accepted, the simulator accepts too.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::{Full, StreamBody};
use serde_json::json;

async fn post_raw(h: &Harness, token: &str, content_type: Option<&str>, body: Vec<u8>) -> Resp {
    let mut b = h.request(Method::POST, "/api/v1/partnerships", Some(token));
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    h.send(b.body(Full::new(Bytes::from(body))).unwrap()).await
}

#[tokio::test]
async fn content_type_must_be_json() {
    let h = Harness::start().await;
    let t = h.token("alice@corp.test");
    let body = create_body("ct-gw.com").into_bytes();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=latin1"),
        Some("application/jsonx"),
    ] {
        let r = post_raw(&h, &t, ct, body.clone()).await;
        assert_eq!(
            r.assert_error(415),
            "Content-Type must be application/json",
            "{ct:?}"
        );
    }
    assert_eq!(h.upstream_count(), 0);
    let r = post_raw(&h, &t, Some("Application/JSON; charset=\"UTF-8\""), body).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test]
async fn oversized_bodies_are_413_declared_or_streamed() {
    let h = Harness::start().await;
    let t = h.token("alice@corp.test");
    let mut big = create_body("big-gw.com");
    big.insert_str(1, &format!("\"pad\": \"{}\",", "x".repeat(70 * 1024)));
    let r = post_raw(&h, &t, Some("application/json"), big.clone().into_bytes()).await;
    r.assert_error(413);
    // Chunked, no Content-Length: cut off at the limit.
    let chunks: Vec<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> = big
        .into_bytes()
        .chunks(8192)
        .map(|c| Ok(hyper::body::Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<StreamBody<futures_stream::Iter>>();
    let req = http::Request::post(format!("{}/api/v1/partnerships", h.base))
        .header("authorization", format!("Bearer {t}"))
        .header("content-type", "application/json")
        .body(StreamBody::new(futures_stream::Iter::new(chunks)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(h.upstream_count(), 0);
}

/// A minimal `Stream` over a vector, so the test needs no extra crate.
mod futures_stream {
    use bytes::Bytes;
    use hyper::body::Frame;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct Iter(std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>);
    impl Iter {
        pub fn new(v: Vec<Result<Frame<Bytes>, std::convert::Infallible>>) -> Self {
            Iter(v.into_iter())
        }
    }
    impl futures_core::Stream for Iter {
        type Item = Result<Frame<Bytes>, std::convert::Infallible>;
        fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.0.next())
        }
    }
}

#[tokio::test]
async fn malformed_bodies_are_400_with_every_problem_listed() {
    let h = Harness::start().await;
    let t = h.token("alice@corp.test");
    let r = post_raw(&h, &t, Some("application/json"), b"{\"name\": ".to_vec()).await;
    assert_eq!(r.assert_error(400), "Request body is not valid JSON");
    let r = post_raw(&h, &t, Some("application/json"), b"[1,2]".to_vec()).await;
    assert_eq!(r.assert_error(400), "Request body must be a JSON object");
    let body = json!({
        "name": "  ",
        "emails": [{"email": "ok@fine-gw.com"}, {"email": "not-an-email"}],
        "partnerType": "partner",
        "tierId": 0,
        "stageUuid": "nope",
        "partner_type": "referral",
        "customFields": [{"customFieldId": 5, "type": "number", "value": {"text": "1"}}]
    });
    let r = post_raw(
        &h,
        &t,
        Some("application/json"),
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        r.assert_error(400),
        "Invalid email format or missing required fields"
    );
    let fields: Vec<String> = r.json()["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_string())
        .collect();
    for want in [
        "name",
        "emails[1].email",
        "partnerType",
        "tierId",
        "stageUuid",
        "partner_type",
    ] {
        assert!(
            fields.iter().any(|f| f == want),
            "{want} missing from {fields:?}"
        );
    }
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("customFields[0].value")),
        "{fields:?}"
    );
    let details = r.json()["details"].clone();
    let typo = &details
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["field"] == "partner_type")
        .unwrap()["message"];
    assert!(
        typo.as_str().unwrap().contains("partnerType"),
        "did-you-mean: {typo}"
    );
    assert_eq!(h.upstream_count(), 0);
}

#[tokio::test]
async fn domain_rules_are_406_like_upstream() {
    let h = Harness::with(Opts {
        validation: "own_domains = [\"corp.test\"]\n".into(),
        ..Opts::default()
    })
    .await;
    let t = h.token("alice@corp.test");
    let cases = [
        json!({"name": "G", "emails": [{"email": "a@gmail.com"}], "partnerType": "referral"}),
        json!({"name": "G", "emails": [{"email": "a@corp.test"}], "partnerType": "referral"}),
        json!({"name": "G", "emails": [{"email": "a@eu.corp.test"}], "partnerType": "referral"}),
        json!({"name": "G", "emails": [{"email": "a@one-gw.com"}, {"email": "b@two-gw.com"}], "partnerType": "referral"}),
        json!({"name": "G", "emails": [{"email": "a@one-gw.com"}], "emailDomain": "other-gw.com", "partnerType": "referral"}),
    ];
    for body in cases {
        let r = post_raw(
            &h,
            &t,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(
            r.assert_error(406),
            "Invalid email domains or attempting to partner with self",
            "{body}"
        );
        assert!(!r.json()["details"].as_array().unwrap().is_empty());
    }
    assert_eq!(h.upstream_count(), 0);
    // Case-insensitive: the same domain in two spellings is one domain.
    let ok = json!({"name": "G", "emails": [{"email": "a@Mixed-GW.com"}, {"email": "b@mixed-gw.COM"}], "emailDomain": "MIXED-gw.com", "partnerType": "referral", "inactive": true});
    let r = post_raw(
        &h,
        &t,
        Some("application/json"),
        ok.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test]
async fn unknown_fields_can_be_allowed_by_config() {
    let h = Harness::with(Opts {
        validation: "allow_unknown_fields = true\n".into(),
        ..Opts::default()
    })
    .await;
    let t = h.token("alice@corp.test");
    let body = json!({"name": "G", "emails": [{"email": "a@future-gw.com"}], "partnerType": "referral", "futureField": 1, "inactive": true});
    let r = post_raw(
        &h,
        &t,
        Some("application/json"),
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Percent-encodes what a URI cannot carry raw, keeping `=`, `&` and `,` as separators.
fn encode_query(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"=&,-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn invalid_list_queries_are_400_and_never_forwarded() {
    let h = Harness::start().await;
    let t = h.token("bob@corp.test");
    for q in [
        "bogus=1",
        "tags=1,a",
        "stages=1,,2",
        "view=everything",
        "assigned=2",
        "assigned=1&unassigned=1",
        "sort=notjson",
        "sort=[{\"type\":\"name\",\"asc\":true}]",
        "customFields={}",
        "tags=1&tags=2",
        "userId=abc",
    ] {
        let r = h
            .get(
                &format!("/api/v1/partnerships?{}", encode_query(q)),
                Some(&t),
            )
            .await;
        assert_eq!(r.assert_error(400), "Invalid query parameters", "{q}");
        assert!(!r.json()["details"].as_array().unwrap().is_empty(), "{q}");
    }
    let long = format!("search={}", "a".repeat(5000));
    h.get(&format!("/api/v1/partnerships?{long}"), Some(&t))
        .await
        .assert_error(400);
    assert_eq!(h.upstream_count(), 0);
}

#[tokio::test]
async fn accepted_bodies_are_accepted_by_the_simulator() {
    let h = Harness::start().await;
    let t = h.token("alice@corp.test");
    let bodies = [
        json!({"name": "A", "emails": [{"email": "x@acc1-gw.com"}], "partnerType": "referral", "inactive": true}),
        json!({"name": "B", "emails": [{"email": "x@acc2-gw.com", "firstName": "X", "lastName": "Y", "tags": [1, 2]}], "partnerType": "reseller", "reseller": "partner", "inactive": true}),
        json!({"name": "C", "emails": [{"email": "x@acc3-gw.com"}, {"email": "y@ACC3-gw.com"}], "partnerType": "referral", "tierId": 2, "categoryId": 3, "countryId": 1, "assignedUsers": [h.alice_id], "tags": [10, 11], "emailDomain": "acc3-gw.com", "stageUuid": h.sim.stage_uuids()[0], "inactive": true}),
        json!({"name": "D", "emails": [{"email": "x@acc4-gw.com"}], "partnerType": "referral", "inactive": true, "customFields": [
            {"customFieldId": 5, "type": "number", "value": {"number": 100000}},
            {"customFieldId": 6, "type": "select", "value": {"select": 2}},
            {"customFieldId": 7, "type": "text", "value": {"text": "hi"}},
            {"customFieldId": 8, "type": "multi_select", "value": {"multi_select": [1, 2]}},
            {"customFieldId": 9, "type": "boolean", "value": {"boolean": true}},
            {"customFieldId": 10, "type": "date", "value": {"date": "2026-01-31"}},
            {"customFieldId": 11, "type": "textarea", "value": {"text": "long"}}
        ]}),
    ];
    for body in bodies {
        let r = post_raw(
            &h,
            &t,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(r.status, 201, "{body}: {}", r.text());
    }
    assert_eq!(h.upstream_count(), 4);
}

#[tokio::test]
async fn rejections_are_counted_by_route_and_reason() {
    let h = Harness::start().await;
    let t = h.token("alice@corp.test");
    post_raw(&h, &t, Some("text/plain"), b"{}".to_vec()).await;
    post_raw(&h, &t, Some("application/json"), b"{}".to_vec()).await;
    h.get("/api/v1/partnerships?bogus=1", Some(&t)).await;
    let m = h.admin_get("/metrics").await.text();
    assert!(m.contains("jbgw_validation_rejections_total{reason=\"unsupported_media_type\",route=\"create\"} 1"), "{m}");
    assert!(m.contains("jbgw_validation_rejections_total{reason=\"schema\",route=\"create\"} 1"));
    assert!(m.contains("jbgw_validation_rejections_total{reason=\"query\",route=\"list\"} 1"));
}
