//! `[upstream]`: where JourneyBee is, how to reach it, and its API keys.

use super::ceilings::{self, MAX_CONNECTIONS, MAX_RESPONSE_SIZE};
use super::names::valid_name;
use super::raw::{RawRequestsPerMinute, RawUpstream, RawUpstreamKey};
use super::{read_secret, Problems};
use http::HeaderValue;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    /// JourneyBee's per-key limit, mirrored by a local sliding log, or no local budget.
    pub requests_per_minute: RequestsPerMinute,
}

/// A key's `requests_per_minute`: JourneyBee's limit, mirrored locally, or `"unlimited"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestsPerMinute {
    /// At most this many admissions in any budget window (1 to
    /// [`ceilings::MAX_REQUESTS_PER_MINUTE`]), counted in a sliding log.
    Limited(u32),
    /// No local budget: requests on the key are never counted and no log is kept (fair shares
    /// do not apply either). An upstream 429 still pauses the key.
    Unlimited,
}

impl RequestsPerMinute {
    /// The limit, or `None` when unlimited.
    pub fn limit(self) -> Option<u32> {
        match self {
            RequestsPerMinute::Limited(n) => Some(n),
            RequestsPerMinute::Unlimited => None,
        }
    }

    /// Whether the key has no local budget.
    pub fn is_unlimited(self) -> bool {
        self == RequestsPerMinute::Unlimited
    }
}

impl std::fmt::Display for RequestsPerMinute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestsPerMinute::Limited(n) => write!(f, "{n}"),
            RequestsPerMinute::Unlimited => f.write_str("unlimited"),
        }
    }
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

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

pub(super) fn validate_upstream(
    raw: RawUpstream,
    base: &Path,
    p: &mut Problems,
) -> Option<UpstreamSettings> {
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
    let max_response = ceilings::size_at_most(
        p,
        "upstream.max_response_size",
        max_response,
        MAX_RESPONSE_SIZE,
        "a response is buffered whole",
    );
    let max_connections = p.positive("upstream.max_connections", raw.max_connections, 64);
    let max_connections = ceilings::count_at_most(
        p,
        "upstream.max_connections",
        max_connections,
        MAX_CONNECTIONS,
        "one TCP connection each, from a range of about 64K ports",
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
        max_connections,
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
        let requests_per_minute = match &k.requests_per_minute {
            None => RequestsPerMinute::Limited(100),
            Some(RawRequestsPerMinute::Count(n)) => match ceilings::requests_per_minute(*n) {
                Ok(n) => RequestsPerMinute::Limited(n),
                Err(e) => {
                    p.push(format!("{path}.requests_per_minute"), e);
                    RequestsPerMinute::Limited(1)
                }
            },
            Some(RawRequestsPerMinute::Word(w)) if w == "unlimited" => RequestsPerMinute::Unlimited,
            Some(RawRequestsPerMinute::Word(w)) => {
                p.push(
                    format!("{path}.requests_per_minute"),
                    format!("{w:?} is neither a positive integer nor \"unlimited\""),
                );
                RequestsPerMinute::Limited(1)
            }
        };
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
        keys.push(Arc::new(UpstreamKey {
            name: Arc::from(name.as_str()),
            index: keys.len(),
            authorization,
            read,
            write,
            requests_per_minute,
        }));
    }
    keys
}
