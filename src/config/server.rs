//! `[server]` (listeners and request-level limits) and `[log]`.

use super::ceilings::{self, MAX_BODY_SIZE, MAX_HEADER_SIZE, MAX_IN_FLIGHT};
use super::raw::{RawLog, RawServer, RawServerTls};
use super::Problems;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether the public listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertMode {
    /// A client may present one; without one it still connects (and needs a JWT).
    Optional,
    /// The handshake fails without a certificate that chains to the client CA.
    Required,
}

impl ClientCertMode {
    /// The config word.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientCertMode::Optional => "optional",
            ClientCertMode::Required => "required",
        }
    }
}

/// `[server.tls]`, validated: the files are loaded once here to report problems, and again
/// by the listener (and on every reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// The CA client certificates must chain to, and whether one is required.
    pub client_ca: Option<(PathBuf, ClientCertMode)>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event.
    Json,
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
    /// HTTPS on the public listener (the admin listener stays plain HTTP).
    pub tls: Option<TlsSettings>,
}

/// `[log]`, validated.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Text or JSON.
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `journeybee_gateway=debug`.
    pub level: String,
}

fn validate_tls(raw: &RawServerTls, base: &Path, p: &mut Problems) -> Option<TlsSettings> {
    let resolve = |f: &PathBuf| {
        if f.is_absolute() {
            f.clone()
        } else {
            base.join(f)
        }
    };
    let cert_file = raw.cert_file.as_ref().map(resolve);
    let key_file = raw.key_file.as_ref().map(resolve);
    if cert_file.is_none() {
        p.push("server.tls.cert_file", "missing (a PEM certificate chain)");
    }
    if key_file.is_none() {
        p.push("server.tls.key_file", "missing (a PEM private key)");
    }
    let mode = match raw.client_cert.as_deref() {
        None | Some("optional") => ClientCertMode::Optional,
        Some("required") => ClientCertMode::Required,
        Some(other) => {
            p.push(
                "server.tls.client_cert",
                format!("{other:?} is not one of \"optional\", \"required\""),
            );
            ClientCertMode::Optional
        }
    };
    if raw.client_cert.is_some() && raw.client_ca_file.is_none() {
        p.push(
            "server.tls.client_cert",
            "needs client_ca_file (the CA client certificates must chain to)",
        );
    }
    let client_ca = raw.client_ca_file.as_ref().map(|f| (resolve(f), mode));
    if let Some((path, _)) = &client_ca {
        if let Err(e) = super::tls::load_client_roots(path) {
            p.push("server.tls.client_ca_file", e);
        }
    }
    let (cert_file, key_file) = (cert_file?, key_file?);
    if let Err(e) = super::tls::load_material(&cert_file, &key_file) {
        p.push("server.tls.cert_file", e);
    }
    Some(TlsSettings {
        cert_file,
        key_file,
        client_ca,
    })
}

pub(super) fn validate_server(raw: &RawServer, base: &Path, p: &mut Problems) -> ServerSettings {
    let tls = raw.tls.as_ref().and_then(|t| validate_tls(t, base, p));
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
    let max_body = ceilings::size_at_most(
        p,
        "server.max_body_size",
        max_body,
        MAX_BODY_SIZE,
        "a create body is buffered whole and parsed in memory",
    );
    let mut header_limit = |path: &str, raw: Option<&str>, default: u64| {
        let n = p.size(path, raw, default);
        let n = ceilings::size_at_most(
            p,
            path,
            n,
            MAX_HEADER_SIZE,
            "each connection's read buffer may grow to twice max_header_size + max_uri_length",
        );
        usize::try_from(n).unwrap_or(usize::MAX)
    };
    let max_header_size = header_limit(
        "server.max_header_size",
        raw.max_header_size.as_deref(),
        16 << 10,
    );
    let max_uri_length = header_limit(
        "server.max_uri_length",
        raw.max_uri_length.as_deref(),
        8 << 10,
    );
    let max_in_flight = p.positive("server.max_in_flight", raw.max_in_flight, 1024);
    let max_in_flight = ceilings::count_at_most(
        p,
        "server.max_in_flight",
        max_in_flight,
        MAX_IN_FLIGHT,
        "each request in progress holds a client connection and its buffers",
    );
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
        max_header_size,
        max_uri_length,
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
        max_in_flight,
        tls,
    }
}

pub(super) fn validate_log(raw: &RawLog, p: &mut Problems) -> LogSettings {
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
