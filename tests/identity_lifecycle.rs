//! The identity provider's lifecycle, through the gateway: an IdP down at start (discovery
//! included) and back, a reload during an outage, a reload with a broken static key, key
//! rotation A → A+B → B against the verified-token cache, the `typ` policy, the unknown-kid
//! wait bounded by `jwks_timeout`, per-issuer readiness and gauges, `healthcheck --ready`, and
//! the `insufficient_scope` challenge.

mod common;

use bytes::Bytes;
use common::idp::{ec_key, jwk, rsa_key, set, Idp};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use journeybee_gateway::server::Gateway;
use journeybee_sim::{SimHandle, Simulator, SIM_READ_KEY, SIM_WRITE_KEY};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::future::Future;
use std::time::{Duration, Instant};

fn sign(key: &EncodingKey, alg: Algorithm, kid: &str, typ: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_string());
    h.typ = typ.map(str::to_string);
    encode(&h, claims, key).unwrap()
}

fn claims(iss: &str, sub: &str) -> Value {
    json!({"sub": sub, "iss": iss, "aud": AUDIENCE, "exp": now() + 600, "iat": now()})
}

/// Polls an async condition until it holds, failing with `what` after `within`: for waiting
/// on the gateway's background work through its HTTP interface.
async fn until<F, Fut>(what: &str, within: Duration, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !ready().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A gateway whose one issuer is `idp`, by its base URL, with `auth` lines (keys source,
/// timings) in `[auth]`; the config file stays in `dir` for reloads.
struct Gw {
    gw: Option<Gateway>,
    sim: SimHandle,
    dir: TestDir,
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    admin: String,
}

fn config(sim_url: &str, issuer: &str, auth: &str, server: &str, upstream: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
shutdown_grace = "2s"
{server}

[upstream]
base_url = "{sim_url}"
{upstream}

[upstream.keys.read]
secret_file = "read.key"
read = true
write = false

[upstream.keys.write]
secret_file = "write.key"
read = true
write = true

[auth]
algorithms = ["RS256", "ES256"]
issuer = "{issuer}"
audience = "{AUDIENCE}"
{auth}

[[users]]
subject = "bob@corp.test"
upstream_key = "read"
user_id = 457
access = "read"

[[users]]
subject = "alice@corp.test"
upstream_key = "write"
user_id = 456
access = "write"
"#
    )
}

impl Gw {
    async fn start(issuer: &str, auth: &str) -> Gw {
        Gw::start_with(issuer, auth, "", "").await
    }

    async fn start_with(issuer: &str, auth: &str, server: &str, upstream: &str) -> Gw {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), Default::default())
            .await
            .unwrap();
        let dir = TestDir::new();
        dir.write("read.key", SIM_READ_KEY);
        dir.write("write.key", SIM_WRITE_KEY);
        let path = dir.write(
            "gateway.toml",
            &config(&sim.base_url(), issuer, auth, server, upstream),
        );
        let settings = journeybee_gateway::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let gw = Gateway::start(settings).await.unwrap();
        Gw {
            base: format!("http://{}", gw.addr()),
            admin: format!("http://{}", gw.admin_addr()),
            gw: Some(gw),
            sim,
            dir,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    fn gateway(&self) -> &Gateway {
        self.gw.as_ref().unwrap()
    }

    async fn get(&self, url: String, token: Option<&str>) -> Resp {
        let mut b = http::Request::get(url);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let resp = self
            .client
            .request(b.body(Full::new(Bytes::new())).unwrap())
            .await
            .expect("gateway answers");
        let (parts, body) = resp.into_parts();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn list(&self, token: &str) -> Resp {
        self.get(format!("{}/api/v1/partnerships", self.base), Some(token))
            .await
    }

    async fn admin(&self, path: &str) -> Resp {
        self.get(format!("{}{path}", self.admin), None).await
    }

    async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.admin("/metrics").await.text();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// Reloads the config file (edited by `edit`) as SIGHUP would.
    async fn reload(&self, edit: impl FnOnce(String) -> String) -> bool {
        let path = self.dir.0.join("gateway.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(text)).unwrap();
        journeybee_gateway::server::reload::reload_from(self.gateway(), &path, "test").await
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        self.sim.shutdown();
    }
}

/// Runs the gateway binary's `healthcheck` with `args`; true when it exits 0.
async fn healthcheck(args: Vec<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_journeybee-gateway"))
            .arg("healthcheck")
            .args(args)
            .output()
            .expect("the binary runs")
            .status
            .success()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn an_idp_down_at_start_is_retried_until_the_issuer_is_ready_by_itself() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "k1")])).await;
    idp.set_down(true);
    // Discovery, so the discovery document itself is what fails first.
    let gw = Gw::start(&idp.base, "discovery = true\njwks_cooldown = \"1s\"").await;
    let token = sign(
        &rsa_key(),
        Algorithm::RS256,
        "k1",
        None,
        &claims(&idp.base, "bob@corp.test"),
    );

    // Alive, not ready, and the body and the gauges say which issuer and why.
    assert_eq!(gw.admin("/healthz").await.status, 200);
    let ready = gw.admin("/readyz").await;
    assert_eq!(ready.status, 503);
    let issuer = &ready.json()["issuers"]["default"];
    assert_eq!(issuer["ready"], false, "{}", ready.text());
    assert_eq!(issuer["source"], "jwks");
    assert_eq!(issuer["keys"], 0);
    assert_eq!(issuer["last_success_unix"], Value::Null);
    assert!(issuer["consecutive_failures"].as_u64().unwrap() >= 1);
    assert_eq!(
        gw.metric("jbgw_issuer_keys_loaded{issuer=\"default\"}")
            .await,
        Some(0.0)
    );
    assert_eq!(
        gw.metric("jbgw_issuer_keys_last_success_timestamp_seconds{issuer=\"default\"}")
            .await,
        Some(0.0)
    );
    assert!(
        gw.metric("jbgw_issuer_jwks_consecutive_failures{issuer=\"default\"}")
            .await
            .unwrap()
            >= 1.0
    );
    gw.list(&token).await.assert_error(401);
    let admin_healthz = format!("{}/healthz", gw.admin);
    assert!(healthcheck(vec!["--url".into(), admin_healthz.clone()]).await);
    assert!(
        !healthcheck(vec![
            "--url".into(),
            admin_healthz.clone(),
            "--ready".into()
        ])
        .await
    );

    // The IdP comes back: no restart, no reload, no request needed.
    idp.set_down(false);
    let back = Instant::now();
    until(
        "the issuer to become ready",
        Duration::from_secs(10),
        || async { gw.admin("/readyz").await.status == 200 },
    )
    .await;
    eprintln!(
        "measured: IdP recovery → ready in {:?} (jwks_cooldown 1s)",
        back.elapsed()
    );
    assert!(healthcheck(vec!["--url".into(), admin_healthz, "--ready".into()]).await);
    let ready = gw.admin("/readyz").await.json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["issuers"]["default"]["keys"], 1);
    assert_eq!(ready["issuers"]["default"]["consecutive_failures"], 0);
    assert!(
        ready["issuers"]["default"]["last_success_unix"]
            .as_u64()
            .unwrap()
            >= now() - 60
    );
    assert_eq!(gw.list(&token).await.status, 200);
    assert_eq!(
        gw.metric("jbgw_issuer_keys_loaded{issuer=\"default\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric("jbgw_issuer_jwks_consecutive_failures{issuer=\"default\"}")
            .await,
        Some(0.0)
    );
}

#[tokio::test]
async fn a_reload_during_an_idp_outage_keeps_the_working_keys() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "k1")])).await;
    for source in [
        "discovery = true",
        &format!("jwks_url = \"{}\"", idp.jwks_url()),
    ] {
        idp.set_down(false);
        let gw = Gw::start(&idp.base, source).await;
        let token = sign(
            &rsa_key(),
            Algorithm::RS256,
            "k1",
            None,
            &claims(&idp.base, "bob@corp.test"),
        );
        assert_eq!(gw.list(&token).await.status, 200, "{source}");
        idp.set_down(true);
        // A reload that changes something else (bob becomes a writer), then one that changes
        // the issuer's own timings: both start from the last good key set.
        assert!(
            gw.reload(|t| t
                .replacen("access = \"read\"", "access = \"write\"", 1)
                .replacen("upstream_key = \"read\"", "upstream_key = \"write\"", 1))
                .await
        );
        assert!(
            gw.reload(|t| t.replace(source, &format!("{source}\njwks_refresh = \"2m\"")))
                .await
        );
        let r = gw.list(&token).await;
        assert_eq!(r.status, 200, "{source}: {}", r.text());
        // A token naming an unknown kid makes the new generation fetch: that fails, and the
        // remembered set stays.
        let unknown = sign(
            &rsa_key(),
            Algorithm::RS256,
            "k9",
            None,
            &claims(&idp.base, "bob@corp.test"),
        );
        gw.list(&unknown).await.assert_error(401);
        assert_eq!(gw.list(&token).await.status, 200, "{source}");
        let ready = gw.admin("/readyz").await;
        assert_eq!(ready.status, 200, "{source}: {}", ready.text());
        // The outage shows (failures counted) while the keys keep working.
        assert!(
            ready.json()["issuers"]["default"]["consecutive_failures"]
                .as_u64()
                .unwrap()
                >= 1,
            "{}",
            ready.text()
        );
        // The reloaded config is the one serving: bob may write now.
        let create = gw
            .client
            .request(
                http::Request::post(format!("{}/api/v1/partnerships", gw.base))
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(create_body(&format!(
                        "reload-{}.com",
                        fastrand::u32(..)
                    )))))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(create.status(), 201, "{source}");
    }
}

#[tokio::test]
async fn a_reload_whose_static_key_cannot_be_loaded_is_refused() {
    let h = Harness::with(Opts {
        auth: AuthMode::Rs256,
        ..Opts::default()
    })
    .await;
    let bob = h.token("bob@corp.test");
    assert_eq!(h.get("/api/v1/partnerships", Some(&bob)).await.status, 200);
    h.dir
        .write("rsa_public.pem", "-----BEGIN PUBLIC KEY-----\ngarbage\n");
    let path = h.dir.0.join("gateway.toml");
    let gw = h.gw.as_ref().unwrap();
    assert!(!journeybee_gateway::server::reload::reload_from(gw, &path, "test").await);
    std::fs::remove_file(h.dir.0.join("rsa_public.pem")).unwrap();
    assert!(!journeybee_gateway::server::reload::reload_from(gw, &path, "test").await);
    assert_eq!(h.get("/api/v1/partnerships", Some(&bob)).await.status, 200);
    assert_eq!(h.admin_get("/readyz").await.status, 200);
}

#[tokio::test]
async fn a_key_withdrawn_by_the_idp_stops_verifying_cached_tokens() {
    // Rotation A → A+B → B. A zero cooldown lets every unknown kid refetch, so the test can
    // make the gateway see each step with a request instead of waiting for the timer.
    let a = || jwk(&rsa_key(), Algorithm::RS256, "A");
    let b = || jwk(&ec_key(), Algorithm::ES256, "B");
    let idp = Idp::start(set(vec![a()])).await;
    let gw = Gw::start(
        &idp.base,
        &format!("jwks_url = \"{}\"\njwks_cooldown = \"0s\"", idp.jwks_url()),
    )
    .await;
    let c = claims(&idp.base, "bob@corp.test");
    let token_a = sign(&rsa_key(), Algorithm::RS256, "A", None, &c);
    let token_b = sign(&ec_key(), Algorithm::ES256, "B", None, &c);
    assert_eq!(gw.list(&token_a).await.status, 200);
    assert_eq!(gw.list(&token_a).await.status, 200, "from the cache");

    // A+B: the first token naming B fetches the new set; A, cached, still verifies.
    idp.serve(200, set(vec![a(), b()]).to_string());
    let started = Instant::now();
    let first_b = gw.list(&token_b).await;
    eprintln!(
        "measured: first request with a rotated key (refetch included) {:?}",
        started.elapsed()
    );
    assert_eq!(first_b.status, 200);
    assert_eq!(gw.list(&token_a).await.status, 200);

    // B only: once the gateway has the new set (here through another unknown kid), the token
    // verified with A is verified again and refused, although it is cached and unexpired.
    idp.serve(200, set(vec![b()]).to_string());
    let hits = idp.hits();
    let unknown = sign(&rsa_key(), Algorithm::RS256, "C", None, &c);
    gw.list(&unknown).await.assert_error(401);
    assert_eq!(idp.hits(), hits + 1, "the unknown kid fetched the set");
    let r = gw.list(&token_a).await;
    r.assert_error(401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    assert_eq!(gw.list(&token_b).await.status, 200);
    assert!(
        gw.metric("jbgw_auth_failures_total{reason=\"unknown_key\"}")
            .await
            .unwrap()
            >= 2.0
    );
}

#[tokio::test]
async fn a_key_withdrawn_between_timer_refreshes_is_dropped_from_the_cache() {
    // The same through the background refresh alone, no request asking.
    let a = || jwk(&rsa_key(), Algorithm::RS256, "A");
    let b = || jwk(&ec_key(), Algorithm::ES256, "B");
    let idp = Idp::start(set(vec![a(), b()])).await;
    let gw = Gw::start(
        &idp.base,
        &format!("jwks_url = \"{}\"\njwks_refresh = \"1s\"", idp.jwks_url()),
    )
    .await;
    let c = claims(&idp.base, "bob@corp.test");
    let token_a = sign(&rsa_key(), Algorithm::RS256, "A", None, &c);
    assert_eq!(gw.list(&token_a).await.status, 200);
    idp.serve(200, set(vec![b()]).to_string());
    until(
        "the cached token to be refused",
        Duration::from_secs(10),
        || async { gw.list(&token_a).await.status == 401 },
    )
    .await;
}

#[tokio::test]
async fn token_types_enforce_rfc_9068_when_configured() {
    let typed = |_: &Harness, typ: Option<&str>| {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = typ.map(str::to_string);
        encode(
            &header,
            &default_claims("bob@corp.test"),
            &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    // The default accepts what IdPs issue today.
    let lenient = Harness::start().await;
    for typ in [
        Some("at+jwt"),
        Some("application/at+jwt"),
        Some("JWT"),
        None,
    ] {
        let r = lenient
            .get("/api/v1/partnerships", Some(&typed(&lenient, typ)))
            .await;
        assert_eq!(r.status, 200, "{typ:?}");
    }
    let r = lenient
        .get(
            "/api/v1/partnerships",
            Some(&typed(&lenient, Some("dpop+jwt"))),
        )
        .await;
    r.assert_error(401);

    // The RFC 9068 profile: access tokens only.
    let strict = Harness::with(Opts {
        auth_extra: "token_types = [\"at+jwt\", \"application/at+jwt\"]".into(),
        ..Opts::default()
    })
    .await;
    for typ in [Some("at+jwt"), Some("application/at+jwt"), Some("AT+JWT")] {
        let r = strict
            .get("/api/v1/partnerships", Some(&typed(&strict, typ)))
            .await;
        assert_eq!(r.status, 200, "{typ:?}");
    }
    for typ in [Some("JWT"), None] {
        let r = strict
            .get("/api/v1/partnerships", Some(&typed(&strict, typ)))
            .await;
        assert_eq!(r.assert_error(401), "Invalid bearer token", "{typ:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
    }
    let m = strict.admin_get("/metrics").await.text();
    assert!(
        m.contains("jbgw_auth_failures_total{reason=\"wrong_token_type\"} 2"),
        "{m}"
    );
}

#[test]
fn token_types_are_validated_with_their_path() {
    let text = |extra: &str| {
        format!(
            r#"
[upstream]
base_url = "http://127.0.0.1:1"
[upstream.keys.read]
secret_env = "PATH"
[auth]
algorithms = ["RS256"]
jwks_url = "http://127.0.0.1:1/jwks"
{extra}
[[users]]
subject = "bob"
upstream_key = "read"
user_id = 1
access = "read"
"#
        )
    };
    let load = |extra: &str| {
        journeybee_gateway::config::from_toml(&text(extra), std::path::Path::new("."))
    };
    assert!(load("token_types = [\"at+jwt\", \"\"]\njwks_timeout = \"2s\"").is_ok());
    for (extra, path) in [
        ("token_types = []", "auth.token_types"),
        (
            "token_types = [\"at+jwt\", \"at jwt\"]",
            "auth.token_types[1]",
        ),
        ("jwks_timeout = \"0s\"", "auth.jwks_timeout"),
        ("jwks_timeout = \"soon\"", "auth.jwks_timeout"),
    ] {
        let e = load(extra).expect_err(extra);
        assert!(e.problems.iter().any(|(p, _)| p == path), "{extra}: {e}");
    }
}

#[tokio::test]
async fn an_unknown_kid_never_waits_longer_than_jwks_timeout_on_a_hung_idp() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "k1")])).await;
    // The upstream's timeouts (and so the old fetch timeout) are far beyond the request
    // timeout; only jwks_timeout keeps the request from timing out.
    let gw = Gw::start_with(
        &idp.base,
        &format!(
            "jwks_url = \"{}\"\njwks_cooldown = \"0s\"\njwks_timeout = \"300ms\"",
            idp.jwks_url()
        ),
        "request_timeout = \"3s\"",
        "connect_timeout = \"10s\"\nresponse_timeout = \"20s\"",
    )
    .await;
    let c = claims(&idp.base, "bob@corp.test");
    let known = sign(&rsa_key(), Algorithm::RS256, "k1", None, &c);
    assert_eq!(gw.list(&known).await.status, 200);
    idp.set_hang(true);
    let unknown = sign(&rsa_key(), Algorithm::RS256, "rotated", None, &c);
    for _ in 0..3 {
        let started = Instant::now();
        let r = gw.list(&unknown).await;
        eprintln!(
            "measured: unknown kid on a hung IdP answered in {:?} (jwks_timeout 300ms)",
            started.elapsed()
        );
        assert_eq!(r.assert_error(401), "Invalid bearer token");
    }
    // Known keys are not held up by the hung IdP.
    assert_eq!(gw.list(&known).await.status, 200);
    assert!(
        gw.metric("jbgw_auth_failures_total{reason=\"unknown_key\"}")
            .await
            .unwrap()
            >= 3.0
    );
}

#[tokio::test]
async fn a_read_user_creating_gets_insufficient_scope() {
    let h = Harness::start().await;
    let bob = h.token("bob@corp.test");
    let r = h
        .post_json(
            "/api/v1/partnerships",
            Some(&bob),
            &create_body("scope-gw.com"),
        )
        .await;
    assert_eq!(
        r.assert_error(403),
        "Write access required for this operation"
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\"")
    );
    // Other denials are not about scope.
    let r = h
        .get("/api/v1/partnerships?userId=987654321", Some(&bob))
        .await;
    r.assert_error(403);
    assert_eq!(r.header("www-authenticate"), None);
    assert_eq!(h.upstream_count(), 0);
}

#[tokio::test]
async fn static_issuers_have_gauges_and_readiness_from_the_start() {
    let h = Harness::start().await;
    let ready = h.admin_get("/readyz").await;
    assert_eq!(ready.status, 200);
    let v = ready.json();
    assert_eq!(v["issuers"]["default"]["ready"], true);
    assert_eq!(v["issuers"]["default"]["source"], "static");
    assert_eq!(v["issuers"]["default"]["keys"], 1);
    let m = h.admin_get("/metrics").await.text();
    for series in [
        "jbgw_issuer_keys_loaded{issuer=\"default\"} 1",
        "jbgw_issuer_jwks_consecutive_failures{issuer=\"default\"} 0",
        "jbgw_issuer_keys_last_success_timestamp_seconds{issuer=\"default\"} ",
    ] {
        assert!(m.contains(series), "{series} in {m}");
    }
    // Nothing secret in the readiness body.
    assert!(!ready.text().contains(JWT_SECRET));
}

#[tokio::test]
async fn readyz_names_the_issuer_without_keys_while_the_others_serve() {
    let idp = Idp::start(set(vec![jwk(&rsa_key(), Algorithm::RS256, "k1")])).await;
    idp.set_down(true);
    let h = Harness::with(Opts {
        extra_keys: format!(
            "[[auth.issuers]]\nname = \"m2m\"\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n\
             algorithms = [\"RS256\"]\njwks_url = \"{}\"\njwks_cooldown = \"1s\"\n",
            idp.base,
            idp.jwks_url()
        ),
        ..Opts::default()
    })
    .await;
    let ready = h.admin_get("/readyz").await;
    assert_eq!(ready.status, 503);
    let v = ready.json();
    assert_eq!(v["status"], "not ready");
    assert_eq!(v["issuers"]["default"]["ready"], true, "{v}");
    assert_eq!(v["issuers"]["m2m"]["ready"], false, "{v}");
    let m = h.admin_get("/metrics").await.text();
    assert!(
        m.contains("jbgw_issuer_keys_loaded{issuer=\"default\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("jbgw_issuer_keys_loaded{issuer=\"m2m\"} 0"),
        "{m}"
    );
    // The static issuer serves; the m2m one refuses until its IdP is back.
    let bob = h.token("bob@corp.test");
    assert_eq!(h.get("/api/v1/partnerships", Some(&bob)).await.status, 200);
    let m2m = sign(
        &rsa_key(),
        Algorithm::RS256,
        "k1",
        None,
        &claims(&idp.base, "bob@corp.test"),
    );
    h.get("/api/v1/partnerships", Some(&m2m))
        .await
        .assert_error(401);
    idp.set_down(false);
    until(
        "the m2m issuer to be ready",
        Duration::from_secs(10),
        || async { h.admin_get("/readyz").await.status == 200 },
    )
    .await;
    assert_eq!(h.get("/api/v1/partnerships", Some(&m2m)).await.status, 200);
}
