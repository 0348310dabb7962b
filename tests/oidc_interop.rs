//! Interop with a real, certified OpenID provider: panva's `oidc-provider` from npm
//! (tests/oidc/idp.mjs, installed by `npm ci` in tests/oidc), on a free loopback port, issuing
//! client-credentials access tokens as JWTs (RFC 9068) for a resource indicator. Covers OIDC
//! discovery, scope → write access, a claim → userId, key rotation A → B+A → B, the IdP down
//! at start and then up, and a reload during an outage.
//!
//! In CI (`CI=true`) a missing `node_modules` fails the test: it is never skipped. Locally the
//! test runs `npm ci` itself when it is missing.

mod common;

use bytes::Bytes;
use common::{create_body, TestDir};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use journeybee_gateway::server::Gateway;
use journeybee_sim::{SimHandle, Simulator, SIM_READ_KEY, SIM_WRITE_KEY};
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RESOURCE: &str = "https://journeybee-gateway.test/api";
const CLIENT: &str = "crm-sync";
const CLIENT_SECRET: &str = "crm-sync-secret-0123456789abcdef0123456789";

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// Makes sure `oidc-provider` is installed: in CI its absence is a failure (`scripts/test.sh`
/// runs `npm ci` first), locally it is installed from the committed lockfile.
fn ensure_installed() {
    let dir = oidc_dir();
    if dir.join("node_modules/oidc-provider/package.json").exists() {
        return;
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "tests/oidc/node_modules is missing: run the tests with scripts/test.sh (it runs `npm ci` in tests/oidc)"
    );
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if dir.join("node_modules/oidc-provider/package.json").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("npm runs (node and npm are needed for this test)");
    assert!(status.success(), "npm ci in tests/oidc failed");
}

/// The provider process; killed (by its own id) when dropped.
struct Provider {
    child: Child,
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
    /// Holds the provider's stderr (its start-up warnings), shown if it fails to start.
    _logs: TestDir,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    /// Starts the provider on a free port (`--down`: resetting every connection at first),
    /// its tokens carrying `user_id` in the `journeybee_user_id` claim.
    async fn start(down: bool, user_id: u64) -> Provider {
        ensure_installed();
        let logs = TestDir::new();
        let stderr_path = logs.0.join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut cmd = Command::new("node");
        cmd.arg("idp.mjs")
            .current_dir(oidc_dir())
            .env("JB_RESOURCE", RESOURCE)
            .env("JB_USER_ID", user_id.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if down {
            cmd.arg("--down");
        }
        let mut child = cmd.spawn().expect("node runs");
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
        })
        .await
        .unwrap()
        .expect("the provider prints its port");
        let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "the provider's first line is not JSON ({e}): {line:?}; stderr: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            )
        });
        Provider {
            child,
            base: info["issuer"].as_str().expect("issuer").to_string(),
            http: Client::builder(TokioExecutor::new()).build_http(),
            _logs: logs,
        }
    }

    async fn control(&self, what: &str) {
        let resp = self
            .http
            .request(
                http::Request::post(format!("{}/__test/{what}", self.base))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "control {what}");
    }

    /// A client-credentials access token for `scope`, for the gateway's resource.
    async fn token(&self, scope: &str) -> String {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", scope)
            .append_pair("resource", RESOURCE)
            .finish();
        use base64::Engine;
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:{CLIENT_SECRET}"));
        let resp = self
            .http
            .request(
                http::Request::post(format!("{}/token", self.base))
                    .header("authorization", format!("Basic {basic}"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            status,
            200,
            "token endpoint: {}",
            String::from_utf8_lossy(&body)
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }
}

/// The kid in a token's header.
fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

struct Gw {
    gw: Gateway,
    sim: SimHandle,
    dir: TestDir,
    client: Client<HttpConnector, Full<Bytes>>,
    user_id: u64,
}

impl Drop for Gw {
    fn drop(&mut self) {
        self.sim.shutdown();
    }
}

impl Gw {
    async fn start(sim: SimHandle, issuer: &str, user_id: u64) -> Gw {
        let dir = TestDir::new();
        dir.write("read.key", SIM_READ_KEY);
        dir.write("write.key", SIM_WRITE_KEY);
        // Users are mapped by claim rules only: the IdP's client is in no table.
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
shutdown_grace = "2s"

[upstream]
base_url = "{sim}"

[upstream.keys.read]
secret_file = "read.key"
read = true
write = false

[upstream.keys.write]
secret_file = "write.key"
read = true
write = true

[auth]
algorithms = ["RS256"]
issuer = "{issuer}"
audience = "{RESOURCE}"
discovery = true
jwks_refresh = "1s"
jwks_cooldown = "1s"
jwks_timeout = "2s"
token_types = ["at+jwt", "application/at+jwt"]

[auth.rules]
user_id_claim = "journeybee_user_id"
read_key = "read"
write_key = "write"
write_scopes = ["partnerships:write"]

[[users]]
subject = "someone-else@corp.test"
upstream_key = "read"
user_id = {user_id}
access = "read"
"#,
            sim = sim.base_url()
        );
        let path = dir.write("gateway.toml", &text);
        let settings = journeybee_gateway::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        Gw {
            gw: Gateway::start(settings).await.unwrap(),
            sim,
            dir,
            client: Client::builder(TokioExecutor::new()).build_http(),
            user_id,
        }
    }

    async fn send(
        &self,
        req: http::request::Builder,
        body: Bytes,
    ) -> (u16, Value, http::HeaderMap) {
        let resp = self
            .client
            .request(req.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (parts.status.as_u16(), json, parts.headers)
    }

    async fn list(&self, token: &str, query: &str) -> u16 {
        let req = http::Request::get(format!(
            "http://{}/api/v1/partnerships{query}",
            self.gw.addr()
        ))
        .header("authorization", format!("Bearer {token}"));
        self.send(req, Bytes::new()).await.0
    }

    async fn create(&self, token: &str) -> (u16, Value, http::HeaderMap) {
        let req = http::Request::post(format!("http://{}/api/v1/partnerships", self.gw.addr()))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json");
        let body = create_body(&format!("oidc-{}.com", fastrand::u64(..)));
        self.send(req, Bytes::from(body)).await
    }

    async fn ready(&self) -> (u16, Value) {
        let req = http::Request::get(format!("http://{}/readyz", self.gw.admin_addr()));
        let (status, body, _) = self.send(req, Bytes::new()).await;
        (status, body)
    }

    async fn until_ready(&self, within: Duration) -> Duration {
        let started = Instant::now();
        while self.ready().await.0 != 200 {
            assert!(
                started.elapsed() < within,
                "not ready after {within:?}: {}",
                self.ready().await.1
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        started.elapsed()
    }
}

async fn sim() -> (SimHandle, u64) {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let id = sim.user_ids()[1];
    (sim, id)
}

#[tokio::test]
async fn discovery_scopes_claims_and_key_rotation_with_a_real_provider() {
    let (sim, user_id) = sim().await;
    let idp = Provider::start(false, user_id).await;
    let gw = Gw::start(sim, &idp.base, user_id).await;
    // Discovery and the first fetch happened during start.
    assert_eq!(gw.ready().await.0, 200, "{}", gw.ready().await.1);

    // Scope → access: partnerships:read lists but may not create.
    let read = idp.token("partnerships:read").await;
    assert_eq!(kid(&read), "key-A");
    assert_eq!(gw.list(&read, "").await, 200);
    let (status, body, headers) = gw.create(&read).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        headers.get("www-authenticate").unwrap(),
        "Bearer error=\"insufficient_scope\""
    );
    assert!(body["error"].is_string());
    let write = idp.token("partnerships:read partnerships:write").await;
    let (status, body, _) = gw.create(&write).await;
    assert_eq!(status, 201, "{body}");

    // Claim → userId: the token's journeybee_user_id is the only userId it may list as.
    assert_eq!(
        gw.list(&read, &format!("?userId={}", gw.user_id)).await,
        200
    );
    assert_eq!(
        gw.list(&read, &format!("?userId={}", gw.user_id + 1)).await,
        403
    );

    // Rotation A → B+A: a token signed with the new key B works at once (one refetch), and
    // the old one still does.
    idp.control("keys?set=BA").await;
    let new = idp.token("partnerships:read").await;
    assert_eq!(kid(&new), "key-B");
    let started = Instant::now();
    assert_eq!(gw.list(&new, "").await, 200);
    eprintln!(
        "measured: first request with the rotated key (discovery-found JWKS refetched) {:?}",
        started.elapsed()
    );
    assert_eq!(gw.list(&read, "").await, 200);

    // B only: A is withdrawn; the cached token signed with it is refused once the gateway
    // has refreshed (jwks_refresh 1s), B keeps working.
    idp.control("keys?set=B").await;
    let started = Instant::now();
    while gw.list(&read, "").await != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the withdrawn key is still accepted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "measured: withdrawn key refused {:?} after the IdP stopped publishing it (jwks_refresh 1s)",
        started.elapsed()
    );
    assert_eq!(gw.list(&new, "").await, 200);
}

#[tokio::test]
async fn provider_down_at_start_then_up_and_a_reload_during_an_outage() {
    let (sim, user_id) = sim().await;
    let idp = Provider::start(true, user_id).await;
    let gw = Gw::start(sim, &idp.base, user_id).await;
    let (status, body) = gw.ready().await;
    assert_eq!(status, 503);
    assert_eq!(body["issuers"]["default"]["ready"], false, "{body}");

    idp.control("up").await;
    let took = gw.until_ready(Duration::from_secs(10)).await;
    eprintln!("measured: provider recovery → ready {took:?} (jwks_cooldown 1s)");
    let token = idp.token("partnerships:read").await;
    assert_eq!(gw.list(&token, "").await, 200);

    // An outage, and a reload in the middle of it (a changed jwks_timeout: same issuer, same
    // source, so the new generation starts from the last good keys).
    idp.control("down").await;
    let path = gw.dir.0.join("gateway.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("jwks_timeout = \"2s\"", "jwks_timeout = \"1s\""),
    )
    .unwrap();
    assert!(journeybee_gateway::server::reload::reload_from(&gw.gw, &path, "test").await);
    assert_eq!(gw.list(&token, "").await, 200);
    assert_eq!(gw.ready().await.0, 200, "{}", gw.ready().await.1);
    // The new generation's background refresh fails against the down provider and keeps the
    // keys; a fresh token from the provider once it is back works too.
    let started = Instant::now();
    loop {
        let (_, body) = gw.ready().await;
        if body["issuers"]["default"]["consecutive_failures"]
            .as_u64()
            .unwrap_or(0)
            >= 1
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gw.list(&token, "").await, 200);
    assert_eq!(gw.ready().await.0, 200);
    idp.control("up").await;
    let again = idp.token("partnerships:read").await;
    assert_eq!(gw.list(&again, "").await, 200);
}
