//! Configuration in two steps: [`raw`] mirrors the TOML file strictly, then [`validate`] turns it
//! into typed [`Settings`], reporting every problem at once with its path.

pub mod auth;
pub mod raw;
pub mod state;
pub mod units;

pub use auth::{AuthSettings, ClaimRules, IssuerSettings, JwksSettings, VerifyKey};
pub use state::{Backend, StateSettings};

use crate::validate::body::{default_free_mail_domains, BodyRules};
use crate::validate::query::QueryLimits;
use http::HeaderValue;
use raw::*;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Every problem found in a config file, each with the path of the offending option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `(path, message)` pairs, in file order.
    pub problems: Vec<(String, String)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for (path, msg) in &self.problems {
            writeln!(f, "  {path}: {msg}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event.
    Json,
}

/// Access level of a mapped user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// May list.
    Read,
    /// May list and create.
    Write,
}

/// One JourneyBee API key, by name.
#[derive(Debug)]
pub struct UpstreamKey {
    /// The name used in config, logs and metric labels (never the secret).
    pub name: Arc<str>,
    /// Position in [`UpstreamSettings::keys`], for per-key state held in arrays.
    pub index: usize,
    /// `Bearer <secret>`, marked sensitive so hyper never indexes it in HPACK tables.
    pub authorization: HeaderValue,
    /// The key has read access upstream.
    pub read: bool,
    /// The key has write access upstream.
    pub write: bool,
    /// JourneyBee's per-key limit, mirrored by a local token bucket.
    pub requests_per_minute: u32,
}

/// A mapped user: who the verified token belongs to, as far as JourneyBee is concerned.
#[derive(Debug)]
pub struct Identity {
    /// The config's name for the user (log field and optional metric label).
    pub name: Arc<str>,
    /// Position in the user table, for per-user state held in arrays.
    pub index: usize,
    /// The JourneyBee `userId` put on list calls.
    pub user_id: u64,
    /// What the user may do through the gateway.
    pub access: Access,
    /// The upstream key the user's requests use.
    pub key: Arc<UpstreamKey>,
    /// The user's fair share of upstream requests per minute (None: no per-user limit).
    pub requests_per_minute: Option<u32>,
}

/// `[server]`, validated.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Public listener for proxied traffic.
    pub listen: SocketAddr,
    /// Admin listener: health, readiness, metrics, cache purge.
    pub admin_listen: SocketAddr,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Upper bound on one request, end to end.
    pub request_timeout: Duration,
    /// Largest accepted request body.
    pub max_body_size: usize,
    /// Largest accepted header section (431 above it).
    pub max_header_size: usize,
    /// Longest accepted request target (414 above it).
    pub max_uri_length: usize,
    /// Time a client has to send a request's headers (slowloris defence).
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's body (408 after it).
    pub body_read_timeout: Duration,
    /// An idle keep-alive connection is closed after this long.
    pub idle_timeout: Duration,
    /// Requests processed at once; more are shed with 503.
    pub max_in_flight: usize,
}

/// `[log]`, validated.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Text or JSON.
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `journeybee_gateway=debug`.
    pub level: String,
}

/// `[upstream]`, validated.
#[derive(Debug)]
pub struct UpstreamSettings {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// Host and port.
    pub authority: http::uri::Authority,
    /// Path prefix of the base URL, without a trailing slash (usually empty).
    pub path_prefix: String,
    /// Extra PEM CA bundle trusted beside the system roots.
    pub extra_ca_file: Option<PathBuf>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed for the upstream's whole response (headers and body).
    pub response_timeout: Duration,
    /// Largest upstream response the gateway buffers.
    pub max_response_size: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// The API keys, by position.
    pub keys: Vec<Arc<UpstreamKey>>,
    /// Upstream requests in progress at once (connection bound).
    pub max_connections: usize,
    /// Retries of a list on connect errors, resets and 502/503/504 (creates never retry).
    pub retries: u32,
    /// Base of the exponential backoff between retries (full jitter).
    pub retry_backoff: Duration,
    /// Cap of the backoff.
    pub retry_backoff_max: Duration,
    /// Retries allowed as a share of recent requests.
    pub retry_budget_ratio: f64,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before letting a probe through.
    pub breaker_cooldown: Duration,
}

/// `[idempotency]`, validated.
#[derive(Debug, Clone)]
pub struct IdempotencySettings {
    /// How long an outcome is remembered.
    pub ttl: Duration,
    /// Bytes the remembered outcomes may hold.
    pub capacity: u64,
    /// How long a repeat waits for the first request still in flight (then 409).
    pub wait: Duration,
}

/// `[cache]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    /// Whether list responses are cached at all.
    pub enabled: bool,
    /// How long an entry is fresh.
    pub ttl: Duration,
    /// Total bytes the cache may hold (keys, headers and bodies).
    pub capacity: u64,
    /// Responses larger than this pass through uncached.
    pub max_entry_size: usize,
    /// How long past its TTL an entry may be served when upstream fails; zero disables.
    pub stale_if_error: Duration,
}

/// The whole validated configuration.
#[derive(Debug)]
pub struct Settings {
    /// Listeners and limits.
    pub server: ServerSettings,
    /// Logging.
    pub log: LogSettings,
    /// The upstream and its keys.
    pub upstream: UpstreamSettings,
    /// JWT verification.
    pub auth: AuthSettings,
    /// Subject → identity.
    pub users: HashMap<String, Arc<Identity>>,
    /// Create-body rules.
    pub body_rules: BodyRules,
    /// List-query limits.
    pub query_limits: QueryLimits,
    /// List cache.
    pub cache: CacheSettings,
    /// Count requests per mapped user (label bounded by the user table).
    pub per_user_metrics: bool,
    /// Idempotency-Key handling.
    pub idempotency: IdempotencySettings,
    /// Default fair share per user (also applied to users mapped by claim rules).
    pub default_user_rpm: Option<u32>,
    /// Each admission counts against the key's budget for 60 s plus this margin, because
    /// JourneyBee counts a request when it arrives, a little after the gateway admitted it.
    pub budget_margin: Duration,
    /// Where budgets, idempotency records and cache coherence live.
    pub state: StateSettings,
    /// SHA-256 of the config text and of every secret it loaded: equal digests mean a reload
    /// would change nothing.
    pub digest: [u8; 32],
}

impl Settings {
    /// The window each admission counts in: JourneyBee's minute plus the margin.
    pub fn budget_window(&self) -> Duration {
        Duration::from_secs(60) + self.budget_margin
    }
}

/// Collects problems with their paths while validating.
#[derive(Default)]
pub(crate) struct Problems(Vec<(String, String)>, Vec<u8>);

impl Problems {
    /// Feeds loaded secret material into the settings' digest.
    pub(crate) fn material(&mut self, bytes: &[u8]) {
        self.1
            .extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        self.1.extend_from_slice(bytes);
    }

    pub(crate) fn push(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.0.push((path.into(), msg.into()));
    }

    pub(crate) fn duration(
        &mut self,
        path: &str,
        raw: Option<&str>,
        default: Duration,
    ) -> Duration {
        match raw.map(units::parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.push(path, e);
                default
            }
        }
    }

    /// A count that must be at least one (the default stands in when it is not).
    pub(crate) fn positive<T: Copy + PartialEq + From<u8>>(
        &mut self,
        path: &str,
        raw: Option<T>,
        default: T,
    ) -> T {
        match raw {
            Some(v) if v == T::from(0) => {
                self.push(path, "must be greater than zero");
                default
            }
            Some(v) => v,
            None => default,
        }
    }

    pub(crate) fn size(&mut self, path: &str, raw: Option<&str>, default: u64) -> u64 {
        match raw.map(units::parse_size) {
            None => default,
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                self.push(path, e);
                default
            }
        }
    }

    fn addr(&mut self, path: &str, raw: Option<&str>, default: &str) -> SocketAddr {
        let text = raw.unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            self.push(
                path,
                format!("invalid socket address {text:?} (expected ip:port)"),
            );
            default.parse().expect("default address parses")
        })
    }
}

/// Reads and validates a config file. Relative secret and CA paths are resolved against the
/// file's directory.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![(path.display().to_string(), format!("cannot read: {e}"))],
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    from_toml(&text, base)
}

/// Parses and validates config text; `base` resolves relative paths.
pub fn from_toml(text: &str, base: &Path) -> Result<Settings, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let path = e
            .span()
            .map(|s| format!("line {}", text[..s.start].lines().count().max(1)))
            .unwrap_or_else(|| "config".into());
        ConfigError {
            problems: vec![(path, e.message().to_string())],
        }
    })?;
    let mut settings = validate(raw, base)?;
    // What the file says, not how: comments, blank lines and key order do not count.
    let canonical = toml::from_str::<toml::Value>(text)
        .ok()
        .and_then(|v| toml::to_string(&v).ok())
        .unwrap_or_else(|| text.to_string());
    settings.digest = sha256(&[canonical.as_bytes(), &settings.digest]);
    Ok(settings)
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Turns raw config into settings, collecting every problem.
pub fn validate(raw: RawConfig, base: &Path) -> Result<Settings, ConfigError> {
    let mut p = Problems::default();
    let server = validate_server(&raw.server, &mut p);
    let log = validate_log(&raw.log, &mut p);
    let upstream = match raw.upstream {
        Some(u) => validate_upstream(u, base, &mut p),
        None => {
            p.push(
                "upstream",
                "missing section (base_url and at least one key)",
            );
            None
        }
    };
    let auth = match raw.auth {
        Some(a) => auth::validate_auth(
            a,
            upstream.as_ref().map(|u| u.keys.as_slice()).unwrap_or(&[]),
            base,
            &mut p,
        ),
        None => {
            p.push("auth", "missing section (algorithms and keys)");
            None
        }
    };
    let users = validate_users(
        &raw.users,
        upstream.as_ref().map(|u| u.keys.as_slice()).unwrap_or(&[]),
        upstream.is_some(),
        raw.rate_limit.per_user_requests_per_minute,
        &mut p,
    );
    let body_rules = validate_body_rules(&raw.validation, &mut p);
    let cache = validate_cache(&raw.cache, &mut p);
    let idempotency = IdempotencySettings {
        ttl: p.duration(
            "idempotency.ttl",
            raw.idempotency.ttl.as_deref(),
            Duration::from_secs(86_400),
        ),
        capacity: p.size(
            "idempotency.capacity",
            raw.idempotency.capacity.as_deref(),
            16 << 20,
        ),
        wait: p.duration(
            "idempotency.wait",
            raw.idempotency.wait.as_deref(),
            Duration::from_secs(10),
        ),
    };
    if idempotency.ttl.is_zero() || idempotency.capacity == 0 {
        p.push("idempotency", "ttl and capacity must be greater than zero");
    }
    let budget_margin = p.duration(
        "rate_limit.budget_margin",
        raw.rate_limit.budget_margin.as_deref(),
        Duration::from_secs(1),
    );
    if budget_margin > Duration::from_secs(60) {
        p.push("rate_limit.budget_margin", "must be at most 60s");
    }
    let state = state::validate_state(&raw.state, base, &mut p);
    let digest = sha256(&[&p.1]);
    match (upstream, auth) {
        (Some(upstream), Some(auth)) if p.0.is_empty() => Ok(Settings {
            server,
            log,
            upstream,
            auth,
            users,
            body_rules,
            query_limits: QueryLimits::default(),
            cache,
            per_user_metrics: raw.metrics.per_user.unwrap_or(false),
            idempotency,
            default_user_rpm: raw
                .rate_limit
                .per_user_requests_per_minute
                .filter(|n| *n > 0),
            budget_margin,
            state,
            digest,
        }),
        _ => Err(ConfigError { problems: p.0 }),
    }
}

fn validate_server(raw: &RawServer, p: &mut Problems) -> ServerSettings {
    let listen = p.addr("server.listen", raw.listen.as_deref(), "127.0.0.1:8080");
    let admin_listen = p.addr(
        "server.admin_listen",
        raw.admin_listen.as_deref(),
        "127.0.0.1:9090",
    );
    if listen == admin_listen && listen.port() != 0 {
        p.push("server.admin_listen", "must differ from server.listen");
    }
    let max_body = p.size(
        "server.max_body_size",
        raw.max_body_size.as_deref(),
        64 << 10,
    );
    if max_body == 0 {
        p.push("server.max_body_size", "must be greater than zero");
    }
    ServerSettings {
        listen,
        admin_listen,
        shutdown_grace: p.duration(
            "server.shutdown_grace",
            raw.shutdown_grace.as_deref(),
            Duration::from_secs(30),
        ),
        request_timeout: p.duration(
            "server.request_timeout",
            raw.request_timeout.as_deref(),
            Duration::from_secs(60),
        ),
        max_body_size: usize::try_from(max_body).unwrap_or(usize::MAX),
        max_header_size: usize::try_from(p.size(
            "server.max_header_size",
            raw.max_header_size.as_deref(),
            16 << 10,
        ))
        .unwrap_or(usize::MAX),
        max_uri_length: usize::try_from(p.size(
            "server.max_uri_length",
            raw.max_uri_length.as_deref(),
            8 << 10,
        ))
        .unwrap_or(usize::MAX),
        header_read_timeout: p.duration(
            "server.header_read_timeout",
            raw.header_read_timeout.as_deref(),
            Duration::from_secs(10),
        ),
        body_read_timeout: p.duration(
            "server.body_read_timeout",
            raw.body_read_timeout.as_deref(),
            Duration::from_secs(30),
        ),
        idle_timeout: p.duration(
            "server.idle_timeout",
            raw.idle_timeout.as_deref(),
            Duration::from_secs(60),
        ),
        max_in_flight: p.positive("server.max_in_flight", raw.max_in_flight, 1024),
    }
}

fn validate_log(raw: &RawLog, p: &mut Problems) -> LogSettings {
    let format = match raw.format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            p.push(
                "log.format",
                format!("{other:?} is not one of \"text\", \"json\""),
            );
            LogFormat::Text
        }
    };
    let level = raw.level.clone().unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        p.push(
            "log.level",
            format!("{level:?} is not a valid filter directive"),
        );
    }
    LogSettings { format, level }
}

/// Reads a secret from exactly one of an environment variable or a file.
pub(crate) fn read_secret(
    path: &str,
    env: Option<&str>,
    file: Option<&Path>,
    base: &Path,
    what: &str,
    p: &mut Problems,
) -> Option<String> {
    match (env, file) {
        (Some(_), Some(_)) => {
            p.push(
                path,
                format!("set only one of the {what} env and file options"),
            );
            None
        }
        (None, None) => {
            p.push(path, format!("missing {what}: set the env or file option"));
            None
        }
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => {
                p.material(v.trim().as_bytes());
                Some(v.trim().to_string())
            }
            _ => {
                p.push(
                    path,
                    format!("environment variable {var} is not set or empty"),
                );
                None
            }
        },
        (None, Some(f)) => {
            let full = base.join(f);
            match std::fs::read_to_string(&full) {
                Ok(v) if !v.trim().is_empty() => {
                    p.material(v.trim().as_bytes());
                    Some(v.trim().to_string())
                }
                Ok(_) => {
                    p.push(path, format!("file {} is empty", full.display()));
                    None
                }
                Err(e) => {
                    p.push(path, format!("cannot read {}: {e}", full.display()));
                    None
                }
            }
        }
    }
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn validate_upstream(raw: RawUpstream, base: &Path, p: &mut Problems) -> Option<UpstreamSettings> {
    let url = raw
        .base_url
        .clone()
        .unwrap_or_else(|| "https://app.journeybee.io".into());
    let uri: Option<http::Uri> = match url.parse::<http::Uri>() {
        Ok(u) if u.scheme().is_some() && u.authority().is_some() && u.query().is_none() => Some(u),
        _ => {
            p.push(
                "upstream.base_url",
                format!("{url:?} is not an absolute http(s) URL without a query"),
            );
            None
        }
    };
    let keys = validate_keys(&raw.keys, base, p);
    let uri = uri?;
    let scheme = uri.scheme().cloned().expect("checked");
    let authority = uri.authority().cloned().expect("checked");
    if scheme == http::uri::Scheme::HTTP {
        if !raw.allow_plain_http.unwrap_or(false) && !is_loopback_host(authority.host()) {
            p.push(
                "upstream.base_url",
                "plain http would send the API key in clear text: use https, a loopback host, or set upstream.allow_plain_http = true",
            );
        }
    } else if scheme != http::uri::Scheme::HTTPS {
        p.push("upstream.base_url", "scheme must be http or https");
    }
    if let Some(ca) = &raw.extra_ca_file {
        if !base.join(ca).is_file() {
            p.push(
                "upstream.extra_ca_file",
                format!("{} is not a readable file", base.join(ca).display()),
            );
        }
    }
    let max_response = p.size(
        "upstream.max_response_size",
        raw.max_response_size.as_deref(),
        8 << 20,
    );
    Some(UpstreamSettings {
        scheme,
        authority,
        path_prefix: uri.path().trim_end_matches('/').to_string(),
        extra_ca_file: raw.extra_ca_file.map(|f| base.join(f)),
        connect_timeout: p.duration(
            "upstream.connect_timeout",
            raw.connect_timeout.as_deref(),
            Duration::from_secs(5),
        ),
        response_timeout: p.duration(
            "upstream.response_timeout",
            raw.response_timeout.as_deref(),
            Duration::from_secs(30),
        ),
        max_response_size: usize::try_from(max_response).unwrap_or(usize::MAX),
        pool_idle_timeout: p.duration(
            "upstream.pool_idle_timeout",
            raw.pool_idle_timeout.as_deref(),
            Duration::from_secs(90),
        ),
        pool_max_idle_per_host: raw.pool_max_idle_per_host.unwrap_or(64),
        max_connections: p.positive("upstream.max_connections", raw.max_connections, 64),
        retries: raw.retries.unwrap_or(2),
        retry_backoff: p.duration(
            "upstream.retry_backoff",
            raw.retry_backoff.as_deref(),
            Duration::from_millis(50),
        ),
        retry_backoff_max: p.duration(
            "upstream.retry_backoff_max",
            raw.retry_backoff_max.as_deref(),
            Duration::from_secs(1),
        ),
        retry_budget_ratio: match raw.retry_budget_ratio {
            Some(r) if !(0.0..=1.0).contains(&r) || !r.is_finite() => {
                p.push("upstream.retry_budget_ratio", "must be between 0 and 1");
                0.2
            }
            Some(r) => r,
            None => 0.2,
        },
        breaker_failures: p.positive("upstream.breaker_failures", raw.breaker_failures, 5),
        breaker_cooldown: {
            let d = p.duration(
                "upstream.breaker_cooldown",
                raw.breaker_cooldown.as_deref(),
                Duration::from_secs(10),
            );
            if d.is_zero() {
                p.push("upstream.breaker_cooldown", "must be greater than zero");
            }
            d.max(Duration::from_millis(1))
        },
        keys,
    })
}

fn validate_keys(
    raw: &std::collections::BTreeMap<String, RawUpstreamKey>,
    base: &Path,
    p: &mut Problems,
) -> Vec<Arc<UpstreamKey>> {
    if raw.is_empty() {
        p.push(
            "upstream.keys",
            "declare at least one key ([upstream.keys.<name>])",
        );
    }
    let mut keys = Vec::new();
    for (name, k) in raw {
        let path = format!("upstream.keys.{name}");
        if !valid_name(name) {
            p.push(&path, "key names use letters, digits, '-' and '_' only");
        }
        let (read, write) = (k.read.unwrap_or(true), k.write.unwrap_or(false));
        if !read && !write {
            p.push(&path, "a key with neither read nor write access is useless");
        }
        let secret = read_secret(
            &path,
            k.secret_env.as_deref(),
            k.secret_file.as_deref(),
            base,
            "secret",
            p,
        );
        let Some(secret) = secret else { continue };
        let authorization = match HeaderValue::from_str(&format!("Bearer {secret}")) {
            Ok(mut v) => {
                v.set_sensitive(true);
                v
            }
            Err(_) => {
                p.push(
                    &path,
                    "the secret contains characters not allowed in a header",
                );
                continue;
            }
        };
        let requests_per_minute = k.requests_per_minute.unwrap_or(100);
        if requests_per_minute == 0 {
            p.push(
                format!("{path}.requests_per_minute"),
                "must be greater than zero",
            );
        }
        keys.push(Arc::new(UpstreamKey {
            name: Arc::from(name.as_str()),
            index: keys.len(),
            authorization,
            read,
            write,
            requests_per_minute: requests_per_minute.max(1),
        }));
    }
    keys
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b'@')
}

fn validate_users(
    raw: &[RawUser],
    keys: &[Arc<UpstreamKey>],
    keys_known: bool,
    default_rpm: Option<u32>,
    p: &mut Problems,
) -> HashMap<String, Arc<Identity>> {
    if default_rpm == Some(0) {
        p.push(
            "rate_limit.per_user_requests_per_minute",
            "must be greater than zero",
        );
    }
    let mut users = HashMap::new();
    let mut names = HashSet::new();
    for (i, u) in raw.iter().enumerate() {
        let path = format!("users[{i}]");
        let Some(subject) = u.subject.clone().filter(|s| !s.is_empty()) else {
            p.push(format!("{path}.subject"), "missing");
            continue;
        };
        let name = u.name.clone().unwrap_or_else(|| subject.clone());
        if !valid_name(&name) {
            p.push(
                format!("{path}.name"),
                "use letters, digits, '-', '_', '.', '@' (it becomes a log field and metric label)",
            );
        }
        if !names.insert(name.clone()) {
            p.push(format!("{path}.name"), format!("{name:?} is used twice"));
        }
        let access = match u.access.as_deref() {
            Some("read") => Access::Read,
            Some("write") => Access::Write,
            Some(other) => {
                p.push(
                    format!("{path}.access"),
                    format!("{other:?} is not \"read\" or \"write\""),
                );
                continue;
            }
            None => {
                p.push(format!("{path}.access"), "missing (\"read\" or \"write\")");
                continue;
            }
        };
        let user_id = match u.user_id {
            Some(id) if id > 0 => id as u64,
            Some(_) => {
                p.push(format!("{path}.user_id"), "must be a positive integer");
                continue;
            }
            None => {
                p.push(format!("{path}.user_id"), "missing (the JourneyBee userId)");
                continue;
            }
        };
        let Some(key_name) = u.upstream_key.as_deref() else {
            p.push(format!("{path}.upstream_key"), "missing");
            continue;
        };
        let Some(key) = keys.iter().find(|k| &*k.name == key_name) else {
            if keys_known {
                p.push(
                    format!("{path}.upstream_key"),
                    format!("no key named {key_name:?} in upstream.keys"),
                );
            }
            continue;
        };
        if !key.read {
            p.push(
                format!("{path}.upstream_key"),
                format!("key {key_name:?} is declared without read access"),
            );
        }
        if access == Access::Write && !key.write {
            p.push(
                format!("{path}.upstream_key"),
                format!("write user mapped to key {key_name:?}, which is declared read-only"),
            );
        }
        let identity = Arc::new(Identity {
            name: Arc::from(name.as_str()),
            index: users.len(),
            user_id,
            access,
            key: key.clone(),
            requests_per_minute: match u.requests_per_minute.or(default_rpm) {
                Some(0) => {
                    p.push(
                        format!("{path}.requests_per_minute"),
                        "must be greater than zero",
                    );
                    None
                }
                other => other,
            },
        });
        if users.insert(subject.clone(), identity).is_some() {
            p.push(
                format!("{path}.subject"),
                format!("{subject:?} is mapped twice"),
            );
        }
    }
    users
}

fn validate_body_rules(raw: &RawValidation, p: &mut Problems) -> BodyRules {
    let mut rules = BodyRules::default();
    let lower = |v: &[String]| -> HashSet<String> {
        v.iter().map(|d| d.trim().to_ascii_lowercase()).collect()
    };
    if let Some(v) = raw.allow_unknown_fields {
        rules.allow_unknown_fields = v;
    }
    if let Some(list) = &raw.free_mail_domains {
        rules.free_mail_domains = lower(list);
    } else {
        rules.free_mail_domains = default_free_mail_domains()
            .into_iter()
            .map(str::to_string)
            .collect();
    }
    if let Some(extra) = &raw.extra_free_mail_domains {
        rules.free_mail_domains.extend(lower(extra));
    }
    if let Some(own) = &raw.own_domains {
        rules.own_domains = lower(own);
    }
    for (path, list) in [
        ("validation.free_mail_domains", &raw.free_mail_domains),
        (
            "validation.extra_free_mail_domains",
            &raw.extra_free_mail_domains,
        ),
        ("validation.own_domains", &raw.own_domains),
    ] {
        for (i, d) in list.iter().flatten().enumerate() {
            if d.trim().is_empty() || d.contains('@') || !d.contains('.') {
                p.push(
                    format!("{path}[{i}]"),
                    format!("{d:?} is not a domain name"),
                );
            }
        }
    }
    if let Some(n) = raw.max_name_length {
        if n == 0 {
            p.push("validation.max_name_length", "must be greater than zero");
        }
        rules.max_name_len = n;
    }
    if let Some(n) = raw.max_emails {
        if n == 0 {
            p.push("validation.max_emails", "must be greater than zero");
        }
        rules.max_emails = n;
    }
    rules
}

fn validate_cache(raw: &RawCache, p: &mut Problems) -> CacheSettings {
    let ttl = p.duration("cache.ttl", raw.ttl.as_deref(), Duration::from_secs(30));
    let enabled = raw.enabled.unwrap_or(true);
    if enabled && ttl.is_zero() {
        p.push(
            "cache.ttl",
            "must be greater than zero (set cache.enabled = false to disable)",
        );
    }
    let capacity = p.size("cache.capacity", raw.capacity.as_deref(), 64 << 20);
    let max_entry = p.size(
        "cache.max_entry_size",
        raw.max_entry_size.as_deref(),
        1 << 20,
    );
    if max_entry > capacity {
        p.push("cache.max_entry_size", "must not exceed cache.capacity");
    }
    CacheSettings {
        enabled,
        ttl,
        capacity,
        max_entry_size: usize::try_from(max_entry).unwrap_or(usize::MAX),
        stale_if_error: p.duration(
            "cache.stale_if_error",
            raw.stale_if_error.as_deref(),
            Duration::from_secs(300),
        ),
    }
}
