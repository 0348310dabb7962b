//! Shared test harness: the simulator and the gateway on 127.0.0.1:0, a config written to a
//! temp dir (secrets in files, as in production), and a real HTTP client.
#![allow(dead_code)]

pub mod binary;
pub mod idp;
pub mod proxy;
pub mod redis;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use journeybee_gateway::server::Gateway;
use journeybee_sim::{SimConfig, SimHandle, Simulator, SIM_READ_KEY, SIM_WRITE_KEY};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const JWT_SECRET: &str = "test-hmac-secret-0123456789abcdef-0123456789";
pub const ISSUER: &str = "https://idp.test.example";
pub const AUDIENCE: &str = "journeybee-gateway";
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A temp directory removed on drop.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new() -> TestDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "jbgw-test-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `ready` every few milliseconds until it holds, failing the test with `what` once
/// `within` has passed: for waiting on background work instead of sleeping "long enough".
pub async fn eventually(what: &str, within: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// How the gateway verifies tokens in a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    Hs256,
    Rs256,
    Es256,
    EdDsa,
}

/// Options for one harness.
#[derive(Clone)]
pub struct Opts {
    pub auth: AuthMode,
    /// Lines inserted in [server].
    pub server: String,
    /// Lines inserted in [upstream].
    pub upstream: String,
    /// Lines inserted in [auth].
    pub auth_extra: String,
    /// Whole sections appended at the end ([cache], [metrics], ...; not [validation]).
    pub tail: String,
    /// Lines inserted in [validation].
    pub validation: String,
    /// `[validation] check_references`: off unless a test is about it, so that upstream
    /// counts elsewhere count only the requests under test, not the lookups a create reads.
    pub check_references: bool,
    /// Overrides the algorithm list (TOML array contents).
    pub algorithms: Option<&'static str>,
    /// More `[[auth.keys]]` blocks.
    pub extra_keys: String,
    /// Lines inserted in [upstream.keys.read].
    pub read_key: String,
    /// Lines inserted in [upstream.keys.write] (alice's and carol's key).
    pub write_key: String,
    /// Leave out the static `[[auth.keys]]` (for JWKS-only setups).
    pub no_static_key: bool,
    pub sim: SimConfig,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            auth: AuthMode::Hs256,
            server: String::new(),
            upstream: String::new(),
            auth_extra: String::new(),
            tail: String::new(),
            validation: String::new(),
            check_references: false,
            algorithms: None,
            extra_keys: String::new(),
            read_key: String::new(),
            write_key: String::new(),
            no_static_key: false,
            sim: SimConfig::default(),
        }
    }
}

pub struct Harness {
    pub sim: SimHandle,
    pub gw: Option<Gateway>,
    pub client: Client<HttpConnector, Full<Bytes>>,
    pub dir: TestDir,
    pub base: String,
    pub admin: String,
    pub auth: AuthMode,
    /// JourneyBee user ids of alice (write), bob (read), carol (write).
    pub alice_id: u64,
    pub bob_id: u64,
    pub carol_id: u64,
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

/// A complete config for `sim_url` with three users.
pub fn config_text(opts: &Opts, sim_url: &str, ids: (u64, u64, u64)) -> String {
    let (algs, key) = match opts.auth {
        AuthMode::Hs256 => ("\"HS256\"", "hmac_secret_file = \"jwt.secret\""),
        AuthMode::Rs256 => (
            "\"RS256\", \"PS256\"",
            "public_key_file = \"rsa_public.pem\"",
        ),
        AuthMode::Es256 => ("\"ES256\"", "public_key_file = \"ec_public.pem\""),
        AuthMode::EdDsa => ("\"EdDSA\"", "public_key_file = \"ed_public.pem\""),
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
shutdown_grace = "5s"
{server}

[upstream]
base_url = "{sim_url}"
connect_timeout = "1s"
response_timeout = "2s"
{upstream}

[upstream.keys.read]
secret_file = "read.key"
read = true
write = false
{read_key}

[upstream.keys.write]
secret_file = "write.key"
read = true
write = true
{write_key}

[auth]
algorithms = [{algs}]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
{auth_extra}

{key}
{extra_keys}

[[users]]
subject = "alice@corp.test"
name = "alice"
upstream_key = "write"
user_id = {a}
access = "write"

[[users]]
subject = "bob@corp.test"
name = "bob"
upstream_key = "read"
user_id = {b}
access = "read"

[[users]]
subject = "carol@corp.test"
name = "carol"
upstream_key = "write"
user_id = {c}
access = "write"

[validation]
check_references = {check_references}
{validation}

{tail}
"#,
        server = opts.server,
        upstream = opts.upstream,
        auth_extra = opts.auth_extra,
        extra_keys = opts.extra_keys,
        read_key = opts.read_key,
        write_key = opts.write_key,
        algs = opts.algorithms.unwrap_or(algs),
        key = if opts.no_static_key {
            String::new()
        } else {
            format!("[[auth.keys]]\n{key}")
        },
        tail = opts.tail,
        validation = opts.validation,
        check_references = opts.check_references,
        a = ids.0,
        b = ids.1,
        c = ids.2,
    )
}

/// Writes the secrets, the key fixtures and `gateway.toml` (for `sim`) into `dir`, and returns
/// the config's path.
pub fn write_config(dir: &TestDir, opts: &Opts, sim: &SimHandle) -> PathBuf {
    let ids = sim.user_ids();
    dir.write("read.key", SIM_READ_KEY);
    dir.write("write.key", SIM_WRITE_KEY);
    dir.write("jwt.secret", JWT_SECRET);
    for f in ["rsa_public.pem", "ec_public.pem", "ed_public.pem"] {
        dir.write(f, &fixture(f));
    }
    let text = config_text(opts, &sim.base_url(), (ids[0], ids[1], ids[2]));
    dir.write("gateway.toml", &text)
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::with(Opts::default()).await
    }

    pub async fn with(opts: Opts) -> Harness {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), opts.sim.clone())
            .await
            .unwrap();
        let ids = sim.user_ids();
        let ids = (ids[0], ids[1], ids[2]);
        let dir = TestDir::new();
        let path = write_config(&dir, &opts, &sim);
        let settings = journeybee_gateway::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let gw = Gateway::start(settings).await.unwrap();
        Harness {
            base: format!("http://{}", gw.addr()),
            admin: format!("http://{}", gw.admin_addr()),
            sim,
            gw: Some(gw),
            client: Client::builder(TokioExecutor::new()).build_http(),
            dir,
            auth: opts.auth,
            alice_id: ids.0,
            bob_id: ids.1,
            carol_id: ids.2,
        }
    }

    /// A valid token for `subject` in the harness's algorithm.
    pub fn token(&self, subject: &str) -> String {
        self.token_with(subject, |_| {})
    }

    /// A token for `subject` whose claims `edit` may change.
    pub fn token_with(&self, subject: &str, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = default_claims(subject);
        edit(&mut claims);
        sign(self.auth, &claims)
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Resp {
        let resp = self.client.request(req).await.expect("gateway answers");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> http::request::Builder {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.send(
            self.request(Method::GET, path, token)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &str) -> Resp {
        self.send(
            self.request(Method::POST, path, token)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap(),
        )
        .await
    }

    pub async fn admin_get(&self, path: &str) -> Resp {
        let req = Request::get(format!("{}{}", self.admin, path))
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send(req).await
    }

    pub async fn admin_post(&self, path: &str) -> Resp {
        let req = Request::post(format!("{}{}", self.admin, path))
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send(req).await
    }

    /// Requests the simulator received so far.
    pub fn upstream_count(&self) -> usize {
        self.sim.request_count()
    }

    /// Waits (up to ten seconds) until the simulator has received `n` requests: how a test
    /// knows a request is in flight upstream, rather than sleeping and hoping.
    pub async fn wait_for_upstream(&self, n: usize) {
        eventually(
            &format!("upstream to see {n} request(s)"),
            std::time::Duration::from_secs(10),
            || self.upstream_count() >= n,
        )
        .await;
    }

    /// Edits the config file with `edit` and reloads it as SIGHUP would; true when the new
    /// config is serving.
    pub async fn reload(&self, edit: impl FnOnce(String) -> String) -> bool {
        let path = self.dir.0.join("gateway.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(text)).unwrap();
        let gw = self.gw.as_ref().expect("an in-process gateway");
        journeybee_gateway::server::reload::reload_from(gw, &path, "test").await
    }

    pub async fn shutdown(&mut self) {
        if let Some(gw) = self.gw.take() {
            gw.shutdown().await;
        }
        self.sim.shutdown();
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn default_claims(subject: &str) -> Value {
    json!({
        "sub": subject,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now(),
        "exp": now() + 600,
    })
}

/// Signs `claims` with the test key of `mode`.
pub fn sign(mode: AuthMode, claims: &Value) -> String {
    let (alg, key) = match mode {
        AuthMode::Hs256 => (
            Algorithm::HS256,
            EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        ),
        AuthMode::Rs256 => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(fixture("rsa_private.pem").as_bytes()).unwrap(),
        ),
        AuthMode::Es256 => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(fixture("ec_private.pem").as_bytes()).unwrap(),
        ),
        AuthMode::EdDsa => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(fixture("ed_private.pem").as_bytes()).unwrap(),
        ),
    };
    encode(&Header::new(alg), claims, &key).unwrap()
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(HeaderName::from_bytes(name.as_bytes()).unwrap())
            .and_then(|v| v.to_str().ok())
    }
    /// Every header and the body as one string, for "never contains" checks.
    pub fn everything(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.headers {
            s.push_str(k.as_str());
            s.push_str(": ");
            s.push_str(&String::from_utf8_lossy(v.as_bytes()));
            s.push('\n');
        }
        s.push_str(&self.text());
        s
    }
    /// Asserts the JourneyBee error shape with `status`.
    pub fn assert_error(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        assert!(
            self.header("content-type")
                .unwrap_or("")
                .starts_with("application/json"),
            "error responses are JSON"
        );
        let v = self.json();
        v["error"].as_str().expect("error is a string").to_string()
    }
}

pub fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap()
}

/// A valid create body with a fresh e-mail domain.
pub fn create_body(domain: &str) -> String {
    json!({
        "name": "Globex Partners",
        "emails": [{"email": format!("jane@{domain}"), "firstName": "Jane", "lastName": "Doe"}],
        "partnerType": "referral",
        "inactive": true
    })
    .to_string()
}
