//! `auth::jwks` against a JWKS server on loopback whose document and status the tests switch at
//! run time and which counts requests; tokens are signed in the test with the fixture keys.

mod common;

use bytes::Bytes;
use common::eventually;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use journeybee_gateway::identity::auth::jwks::{
    discover_jwks_uri, parse_jwks, FetchFuture, Fetcher, JwksLocation, JwksOptions, JwksSource,
    KeyMemory, KeySet,
};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

const RSA_PRIVATE: &str = include_str!("fixtures/rsa_private.pem");
const EC_PRIVATE: &str = include_str!("fixtures/ec_private.pem");
const ED_PRIVATE: &str = include_str!("fixtures/ed_private.pem");
const ED_PUBLIC: &str = include_str!("fixtures/ed_public.pem");

// ---------------------------------------------------------------- test IdP

/// What the test IdP answers at run time.
struct Served {
    status: StatusCode,
    jwks: String,
    discovery: String,
    delay: Duration,
}

/// A loopback HTTP server serving `/jwks` and `/.well-known/openid-configuration`.
struct Idp {
    base: String,
    served: Arc<Mutex<Served>>,
    jwks_hits: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Idp {
    async fn start(jwks: Value) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(Mutex::new(Served {
            status: StatusCode::OK,
            jwks: jwks.to_string(),
            discovery: json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string(),
            delay: Duration::ZERO,
        }));
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let (s, h) = (served.clone(), jwks_hits.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, h) = (s.clone(), h.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (s, h) = (s.clone(), h.clone());
                        async move {
                            let (status, body, delay) = {
                                let s = s.lock().unwrap();
                                match req.uri().path() {
                                    "/jwks" => {
                                        h.fetch_add(1, Ordering::SeqCst);
                                        (s.status, s.jwks.clone(), s.delay)
                                    }
                                    "/.well-known/openid-configuration" => {
                                        (StatusCode::OK, s.discovery.clone(), Duration::ZERO)
                                    }
                                    _ => (StatusCode::NOT_FOUND, String::new(), Duration::ZERO),
                                }
                            };
                            tokio::time::sleep(delay).await;
                            let mut resp = Response::new(Full::new(Bytes::from(body)));
                            *resp.status_mut() = status;
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Idp {
            base,
            served,
            jwks_hits,
            accept,
        }
    }

    fn url(&self) -> Uri {
        format!("{}/jwks", self.base).parse().unwrap()
    }

    fn serve(&self, status: u16, body: impl Into<String>) {
        let mut s = self.served.lock().unwrap();
        s.status = StatusCode::from_u16(status).unwrap();
        s.jwks = body.into();
    }

    fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

/// The gateway's side: GET with a timeout, 2xx only, body bounded.
struct HttpFetcher(Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>);

impl HttpFetcher {
    fn new() -> Arc<HttpFetcher> {
        Arc::new(HttpFetcher(
            Client::builder(TokioExecutor::new()).build_http(),
        ))
    }
}

impl Fetcher for HttpFetcher {
    fn get(&self, url: &Uri) -> FetchFuture {
        let fut = self.0.get(url.clone());
        Box::pin(async move {
            let resp = tokio::time::timeout(Duration::from_secs(5), fut)
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("status {}", resp.status()));
            }
            let body = Limited::new(resp.into_body(), 64 << 10)
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok(body.to_bytes())
        })
    }
}

// ---------------------------------------------------------------- keys and tokens

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap()
}

fn ed_key() -> EncodingKey {
    EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap()
}

/// The public JWK of `key` as the IdP would publish it, with `alg` set.
fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut v = serde_json::to_value(Jwk::from_encoding_key(key, alg).unwrap()).unwrap();
    v["kid"] = json!(kid);
    v["use"] = json!("sig");
    v
}

/// The same without `alg`, as Okta and Entra publish theirs.
fn jwk_no_alg(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut v = jwk(key, alg, kid);
    v.as_object_mut().unwrap().remove("alg");
    v
}

/// The Ed25519 JWK, from the last 32 bytes of the SPKI (jsonwebtoken cannot derive it).
fn ed_jwk(kid: &str) -> Value {
    use base64::Engine;
    let b64: String = ED_PUBLIC
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&der[der.len() - 32..]);
    json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid})
}

fn set(keys: Vec<Value>) -> Value {
    json!({ "keys": keys })
}

fn token(key: &EncodingKey, alg: Algorithm, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    jsonwebtoken::encode(&header, &json!({"sub": "u1", "exp": exp}), key).unwrap()
}

/// Verifies as the gateway will: alg and kid from the header, keys from the set.
fn verifies(set: &KeySet, token: &str) -> bool {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.validate_aud = false;
    let ok = set
        .candidates(header.alg, header.kid.as_deref())
        .any(|key| jsonwebtoken::decode::<Value>(token, key.key(), &validation).is_ok());
    ok
}

fn options(cooldown: Duration) -> JwksOptions {
    JwksOptions {
        unknown_kid_cooldown: cooldown,
        allowed: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        ..JwksOptions::default()
    }
}

const ALL: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::HS256,
];

// ---------------------------------------------------------------- the source

#[tokio::test]
async fn not_ready_until_first_success_then_populated() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "rsa-1")])).await;
    idp.serve(503, "down");
    let source = JwksSource::new(idp.url(), HttpFetcher::new(), options(Duration::ZERO));
    assert!(!source.is_ready());
    assert!(source.current().is_none());
    assert!(source.refresh().await.is_err());
    assert!(!source.is_ready());
    assert_eq!(source.stats().fetch_failed, 1);
    assert_eq!(source.stats().last_success, None);

    idp.serve(
        200,
        set(vec![jwk(&rsa_key(), Algorithm::RS256, "rsa-1")]).to_string(),
    );
    source.refresh().await.unwrap();
    assert!(source.is_ready());
    let keys = source.current().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys.contains_kid("rsa-1"));
    assert!(keys.age() < Duration::from_secs(5));
    assert!(verifies(
        &keys,
        &token(&rsa_key(), Algorithm::RS256, Some("rsa-1"))
    ));
    let stats = source.stats();
    assert_eq!((stats.fetch_ok, stats.fetch_failed), (1, 1));
    assert!(stats.last_success.is_some());
}

// On a paused clock (the cooldown is timed with tokio's): "right after" and "a cooldown later"
// are exact, however slow this machine is.
#[tokio::test(start_paused = true)]
async fn rotation_new_kid_causes_exactly_one_fetch_and_verifies() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "rsa-1")])).await;
    let cooldown = Duration::from_millis(300);
    let source = JwksSource::new(idp.url(), HttpFetcher::new(), options(cooldown));
    source.refresh().await.unwrap();
    assert_eq!(idp.hits(), 1);

    // The IdP publishes a new key alongside the old, then signs with it.
    idp.serve(
        200,
        set(vec![
            jwk(&rsa_key(), Algorithm::RS256, "rsa-1"),
            jwk(&ec_key(), Algorithm::ES256, "ec-1"),
        ])
        .to_string(),
    );
    // The start-up fetch started no cooldown: the first unknown kid fetches at once.
    let new_token = token(&ec_key(), Algorithm::ES256, Some("ec-1"));
    let stale = source.current().unwrap();
    assert!(!stale.contains_kid("ec-1"));
    assert!(!verifies(&stale, &new_token));

    let fresh = source.refresh_for_unknown_kid().await.unwrap();
    assert_eq!(idp.hits(), 2, "exactly one fetch for the new kid");
    assert!(fresh.contains_kid("ec-1"));
    assert!(verifies(&fresh, &new_token));
    assert!(verifies(
        &fresh,
        &token(&rsa_key(), Algorithm::RS256, Some("rsa-1"))
    ));
    // Another unknown kid right after, and until the cooldown has passed, is answered from
    // the set, not the IdP; after it, it fetches again.
    source.refresh_for_unknown_kid().await.unwrap();
    assert_eq!(idp.hits(), 2);
    tokio::time::advance(cooldown - Duration::from_millis(1)).await;
    source.refresh_for_unknown_kid().await.unwrap();
    assert_eq!(idp.hits(), 2, "within the cooldown");
    tokio::time::advance(Duration::from_millis(1)).await;
    source.refresh_for_unknown_kid().await.unwrap();
    assert_eq!(idp.hits(), 3, "after the cooldown");

    // The old key is retired: after the next refresh its tokens have no key.
    idp.serve(
        200,
        set(vec![jwk(&ec_key(), Algorithm::ES256, "ec-1")]).to_string(),
    );
    source.refresh().await.unwrap();
    let retired = source.current().unwrap();
    assert!(!retired.contains_kid("rsa-1"));
    assert!(!verifies(
        &retired,
        &token(&rsa_key(), Algorithm::RS256, Some("rsa-1"))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_kid_flood_fetches_at_most_once_per_cooldown() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "rsa-1")])).await;
    let cooldown = Duration::from_secs(1);
    let source = JwksSource::new(idp.url(), HttpFetcher::new(), options(cooldown));
    source.refresh().await.unwrap();
    tokio::time::sleep(cooldown).await;
    // A slow IdP keeps the fetch in flight while the flood arrives.
    idp.served.lock().unwrap().delay = Duration::from_millis(100);

    let before = idp.hits();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let s = source.clone();
            tokio::spawn(async move { s.refresh_for_unknown_kid().await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_some(), "every caller gets the set");
    }
    assert_eq!(idp.hits() - before, 1, "1,000 concurrent unknown kids");

    // Serial calls for a little over two cooldowns: at most one fetch per window.
    idp.served.lock().unwrap().delay = Duration::ZERO;
    let before = idp.hits();
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed() < Duration::from_millis(2200) {
        assert!(source.refresh_for_unknown_kid().await.is_some());
        calls += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let windows = start.elapsed().as_secs_f64() / cooldown.as_secs_f64();
    let fetched = idp.hits() - before;
    assert!(calls > 100, "{calls} calls");
    assert!(
        fetched as f64 <= windows.ceil(),
        "{fetched} fetches in {windows:.2} cooldown windows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_share_one_fetch() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "rsa-1")])).await;
    idp.served.lock().unwrap().delay = Duration::from_millis(200);
    let source = JwksSource::new(idp.url(), HttpFetcher::new(), options(Duration::ZERO));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let s = source.clone();
            tokio::spawn(async move { s.refresh().await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(idp.hits(), 1);
    assert_eq!(source.stats().fetch_ok, 1);
}

#[tokio::test]
async fn idp_failures_keep_the_last_good_set() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "rsa-1")])).await;
    let source = JwksSource::new(idp.url(), HttpFetcher::new(), options(Duration::ZERO));
    source.refresh().await.unwrap();
    let good = source.current().unwrap();
    let old_token = token(&rsa_key(), Algorithm::RS256, Some("rsa-1"));

    let enc_only = set(vec![{
        let mut k = jwk(&rsa_key(), Algorithm::RS256, "rsa-2");
        k["use"] = json!("enc");
        k
    }]);
    let bad: Vec<(u16, String)> = vec![
        (500, "internal error".into()),
        (200, "<html>maintenance</html>".into()),
        (200, "".into()),
        (200, "{\"keys\":[]}".into()),
        (
            200,
            "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%%%\",\"e\":\"AQAB\"}]}".into(),
        ),
        (200, enc_only.to_string()),
        (200, "[1,2,3]".into()),
    ];
    for (i, (status, body)) in bad.iter().enumerate() {
        idp.serve(*status, body.clone());
        assert!(source.refresh().await.is_err(), "case {i} must fail");
        // Also through the unknown-kid path, which must still hand back the old set.
        let kept = source.refresh_for_unknown_kid().await.unwrap();
        assert!(Arc::ptr_eq(&kept, &good), "case {i} replaced the set");
        assert!(verifies(&kept, &old_token));
    }
    assert_eq!(source.stats().fetch_failed, 2 * bad.len() as u64);
    assert!(source.is_ready());

    // The IdP unreachable altogether.
    let url = idp.url();
    drop(idp);
    let gone = JwksSource::new(url, HttpFetcher::new(), options(Duration::ZERO));
    assert!(gone.refresh().await.is_err());
    assert!(gone.refresh_for_unknown_kid().await.is_none());
    assert!(verifies(&source.current().unwrap(), &old_token));
}

// On a paused clock: the refresh interval, the retries and the waits below pass without
// sleeping.
#[tokio::test(start_paused = true)]
async fn background_refresh_follows_rotation_and_stops() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "rsa-1")])).await;
    let opts = JwksOptions {
        refresh_interval: Duration::from_secs(1),
        ..options(Duration::from_secs(60))
    };
    let source = JwksSource::new(idp.url(), HttpFetcher::new(), opts);
    let task = source.spawn_refresh();
    eventually("the first fetch", Duration::from_secs(3), || {
        source.is_ready()
    })
    .await;

    // A blip: the set survives, the loop retries.
    idp.serve(500, "oops");
    eventually("the refresh loop to retry", Duration::from_secs(10), || {
        source.stats().fetch_failed >= 1
    })
    .await;
    assert!(source.current().unwrap().contains_kid("rsa-1"));

    // Rotation without any token asking for it.
    idp.serve(
        200,
        set(vec![jwk(&ec_key(), Algorithm::ES256, "ec-1")]).to_string(),
    );
    eventually(
        "the rotation to be picked up",
        Duration::from_secs(4),
        || source.current().unwrap().contains_kid("ec-1"),
    )
    .await;

    // Dropping the handle stops the loop.
    drop(task);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let hits = idp.hits();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(idp.hits(), hits, "fetched after the task was dropped");

    // Dropping the source ends a running loop too.
    let task = source.spawn_refresh();
    drop(source);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(task.is_finished());
}

#[tokio::test]
async fn a_new_source_starts_from_the_remembered_set_until_a_fetch_replaces_it() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "rsa-1")])).await;
    let memory = Arc::new(KeyMemory::new());
    let at = || JwksLocation::Url(idp.url());
    let first = JwksSource::remembered(
        at(),
        HttpFetcher::new(),
        options(Duration::ZERO),
        memory.clone(),
        "okta",
    );
    first.refresh().await.unwrap();
    assert_eq!(memory.len(), 1);
    let fetched_at = first.current().unwrap().fetched_at();

    // The IdP goes down; a new generation's source has the keys before any fetch, and a
    // failed fetch does not take them away.
    idp.serve(503, "down");
    let second = JwksSource::remembered(
        at(),
        HttpFetcher::new(),
        options(Duration::ZERO),
        memory.clone(),
        "okta",
    );
    assert!(second.is_ready());
    assert_eq!(
        second.current().unwrap().fetched_at(),
        fetched_at,
        "its age is kept"
    );
    assert!(second.refresh().await.is_err());
    let rsa_token = token(&rsa_key(), Algorithm::RS256, Some("rsa-1"));
    assert!(verifies(&second.current().unwrap(), &rsa_token));
    let stats = second.stats();
    assert_eq!((stats.consecutive_failures, stats.keys), (1, 1));
    assert!(stats.last_success_unix.is_some());

    // Another issuer name, another URL, or algorithms the remembered keys cannot serve: a
    // fresh start.
    for (location, name, allowed) in [
        (at(), "m2m", vec![Algorithm::RS256]),
        (
            JwksLocation::Url(format!("{}/other-jwks", idp.base).parse().unwrap()),
            "okta",
            vec![Algorithm::RS256],
        ),
        (at(), "okta", vec![Algorithm::ES256]),
    ] {
        let other = JwksSource::remembered(
            location,
            HttpFetcher::new(),
            JwksOptions {
                allowed,
                ..options(Duration::ZERO)
            },
            memory.clone(),
            name,
        );
        assert!(!other.is_ready());
    }

    // The IdP is back with a rotated key: the fetch replaces the set and the version moves,
    // while a refresh that finds the same keys leaves the version alone.
    idp.serve(
        200,
        set(vec![jwk(&ec_key(), Algorithm::ES256, "ec-1")]).to_string(),
    );
    let before = second.version();
    second.refresh().await.unwrap();
    assert!(second.current().unwrap().contains_kid("ec-1"));
    assert_ne!(second.version(), before);
    let after = second.version();
    second.refresh().await.unwrap();
    assert_eq!(second.version(), after);
    assert_eq!(second.stats().consecutive_failures, 0);
}

#[tokio::test]
async fn discovery_is_part_of_the_fetch_and_is_retried_with_it() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "rsa-1")])).await;
    let good = idp.served.lock().unwrap().discovery.clone();
    idp.served.lock().unwrap().discovery = "not json".into();
    let source = JwksSource::remembered(
        JwksLocation::Discover(idp.base.clone()),
        HttpFetcher::new(),
        options(Duration::ZERO),
        Arc::new(KeyMemory::new()),
        "okta",
    );
    let err = source.refresh().await.unwrap_err();
    assert!(err.contains("discovery"), "{err}");
    assert_eq!(source.url(), None);
    assert_eq!(idp.hits(), 0);
    idp.served.lock().unwrap().discovery = good;
    source.refresh().await.unwrap();
    assert_eq!(source.url(), Some(idp.url()));
    assert!(source.current().unwrap().contains_kid("rsa-1"));
}

#[tokio::test]
async fn without_keys_the_background_retries_at_least_once_per_cooldown() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "rsa-1")])).await;
    idp.serve(503, "down");
    // A long refresh interval: only the cooldown bounds the retries while there are no keys.
    let source = JwksSource::new(
        idp.url(),
        HttpFetcher::new(),
        JwksOptions {
            refresh_interval: Duration::from_secs(3600),
            ..options(Duration::from_secs(1))
        },
    );
    let _task = source.spawn_refresh();
    // Doubling without a cap, the seventh failure would come after at least 15 s.
    eventually("seven failed attempts", Duration::from_secs(10), || {
        source.stats().fetch_failed >= 7
    })
    .await;
    assert!(!source.is_ready());
    idp.serve(
        200,
        set(vec![jwk(&rsa_key(), Algorithm::RS256, "rsa-1")]).to_string(),
    );
    eventually(
        "the source to recover by itself",
        Duration::from_secs(3),
        || source.is_ready(),
    )
    .await;
    assert_eq!(source.stats().consecutive_failures, 0);
}

// ---------------------------------------------------------------- which key verifies what

#[test]
fn a_key_is_used_only_for_its_algorithm() {
    let doc = set(vec![
        jwk(&rsa_key(), Algorithm::RS256, "rsa-1"),
        jwk(&ec_key(), Algorithm::ES256, "ec-1"),
    ]);
    let keys = parse_jwks(doc.to_string().as_bytes(), ALL, 32).unwrap();
    assert_eq!(keys.len(), 2);
    let count = |alg, kid| keys.candidates(alg, kid).count();
    assert_eq!(count(Algorithm::RS256, Some("rsa-1")), 1);
    assert_eq!(count(Algorithm::RS256, None), 1);
    assert_eq!(count(Algorithm::PS256, Some("rsa-1")), 0);
    assert_eq!(count(Algorithm::RS384, Some("rsa-1")), 0);
    assert_eq!(count(Algorithm::HS256, Some("rsa-1")), 0);
    assert_eq!(count(Algorithm::HS256, None), 0);
    assert_eq!(count(Algorithm::RS256, Some("ec-1")), 0);
    assert_eq!(count(Algorithm::ES256, Some("ec-1")), 1);
    assert_eq!(count(Algorithm::ES384, Some("ec-1")), 0);
    assert_eq!(count(Algorithm::ES256, Some("nope")), 0);

    // The classic confusion: an HS256 token whose secret is the RSA public key.
    let rsa_pub = include_bytes!("fixtures/rsa_public.pem");
    let forged = token(
        &EncodingKey::from_secret(rsa_pub),
        Algorithm::HS256,
        Some("rsa-1"),
    );
    assert!(!verifies(&keys, &forged));
    // A PS256 token from the right private key is still refused: the key says RS256.
    assert!(!verifies(
        &keys,
        &token(&rsa_key(), Algorithm::PS256, Some("rsa-1"))
    ));
    assert!(verifies(
        &keys,
        &token(&rsa_key(), Algorithm::RS256, Some("rsa-1"))
    ));
    assert!(verifies(
        &keys,
        &token(&ec_key(), Algorithm::ES256, Some("ec-1"))
    ));
}

#[test]
fn keys_without_alg_get_their_family_allowed_algorithms() {
    let doc = set(vec![
        jwk_no_alg(&rsa_key(), Algorithm::RS256, "rsa-1"),
        jwk_no_alg(&ec_key(), Algorithm::ES256, "ec-1"),
        ed_jwk("ed-1"),
    ]);
    let allowed = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];
    let keys = parse_jwks(doc.to_string().as_bytes(), &allowed, 32).unwrap();
    // Ed25519 is not allowed here, so that key is skipped.
    assert_eq!(keys.len(), 2);
    let count = |alg, kid| keys.candidates(alg, kid).count();
    assert_eq!(count(Algorithm::RS256, Some("rsa-1")), 1);
    assert_eq!(count(Algorithm::PS256, Some("rsa-1")), 1);
    assert_eq!(count(Algorithm::RS512, Some("rsa-1")), 0);
    assert_eq!(count(Algorithm::ES256, Some("ec-1")), 1);
    assert_eq!(count(Algorithm::ES256, Some("rsa-1")), 0);
    assert!(verifies(
        &keys,
        &token(&rsa_key(), Algorithm::PS256, Some("rsa-1"))
    ));

    let keys = parse_jwks(doc.to_string().as_bytes(), ALL, 32).unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys.candidates(Algorithm::EdDSA, Some("ed-1")).count(), 1);
    assert!(verifies(
        &keys,
        &token(&ed_key(), Algorithm::EdDSA, Some("ed-1"))
    ));
    assert!(keys.keys().iter().all(|k| !k.algorithms().is_empty()));
}

#[test]
fn unusable_keys_are_skipped_and_the_rest_kept() {
    let good = jwk(&rsa_key(), Algorithm::RS256, "good");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut k = jwk(&rsa_key(), Algorithm::RS256, "bad");
        f(&mut k);
        k
    };
    let bad = vec![
        with(&|k| k["use"] = json!("enc")),
        with(&|k| k["key_ops"] = json!(["encrypt"])),
        with(&|k| k["alg"] = json!("ES256")),
        with(&|k| k["alg"] = json!("HS256")),
        with(&|k| k["alg"] = json!("RSA-OAEP")),
        with(&|k| k["alg"] = json!("RS384")), // not allowed below
        with(&|k| k["n"] = json!("not base64!")),
        with(&|k| k["n"] = json!("AQAB")), // a 17-bit modulus
        with(&|k| k["e"] = json!(12)),
        with(&|k| k["d"] = json!("AQAB")),
        with(&|k| k["kid"] = json!(["array"])),
        json!({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "bad"}),
        json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "bad"}),
        json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "kid": "bad"}),
        json!({"kty": "OKP", "crv": "X25519", "x": "AAAA", "kid": "bad"}),
        json!({"kty": "RSA", "kid": "bad"}),
        json!("a string"),
        json!(null),
    ];
    let allowed = [Algorithm::RS256, Algorithm::ES256, Algorithm::HS256];
    for (i, b) in bad.iter().enumerate() {
        let alone = set(vec![b.clone()]).to_string();
        assert!(
            parse_jwks(alone.as_bytes(), &allowed, 32).is_err(),
            "bad key {i} was accepted"
        );
        let mixed = set(vec![b.clone(), good.clone()]).to_string();
        let keys = parse_jwks(mixed.as_bytes(), &allowed, 32).unwrap();
        assert_eq!(keys.len(), 1, "case {i}");
        assert!(keys.contains_kid("good") && !keys.contains_kid("bad"));
    }
}

#[test]
fn max_keys_bounds_the_set() {
    let doc = set((0..50)
        .map(|i| jwk(&rsa_key(), Algorithm::RS256, &format!("k{i}")))
        .collect());
    let keys = parse_jwks(doc.to_string().as_bytes(), ALL, 32).unwrap();
    assert_eq!(keys.len(), 32);
    assert!(keys.contains_kid("k0") && !keys.contains_kid("k40"));
}

// ---------------------------------------------------------------- discovery

#[tokio::test]
async fn discovery_reads_jwks_uri_and_checks_the_issuer() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "rsa-1")])).await;
    let fetcher = HttpFetcher::new();
    let uri = discover_jwks_uri(&idp.base, fetcher.as_ref())
        .await
        .unwrap();
    assert_eq!(uri, idp.url());
    // A trailing slash in the configured issuer is not the issuer the document names.
    assert!(
        discover_jwks_uri(&format!("{}/", idp.base), fetcher.as_ref())
            .await
            .is_err()
    );

    let set_discovery = |v: Value| idp.served.lock().unwrap().discovery = v.to_string();
    set_discovery(
        json!({"issuer": "https://evil.example", "jwks_uri": format!("{}/jwks", idp.base)}),
    );
    let err = discover_jwks_uri(&idp.base, fetcher.as_ref())
        .await
        .unwrap_err();
    assert!(err.contains("evil.example"), "{err}");

    set_discovery(json!({"issuer": idp.base, "jwks_uri": "http://idp.example.com/keys"}));
    assert!(discover_jwks_uri(&idp.base, fetcher.as_ref())
        .await
        .is_err());
    set_discovery(json!({"issuer": idp.base}));
    assert!(discover_jwks_uri(&idp.base, fetcher.as_ref())
        .await
        .is_err());
    set_discovery(json!("garbage"));
    assert!(discover_jwks_uri(&idp.base, fetcher.as_ref())
        .await
        .is_err());

    // Issuers that are not https (or loopback http) are refused before any fetch.
    assert!(
        discover_jwks_uri("http://idp.example.com", fetcher.as_ref())
            .await
            .is_err()
    );
    assert!(discover_jwks_uri("not a url", fetcher.as_ref())
        .await
        .is_err());
}
