//! TLS on the public listener: the certificate and key (reloaded without dropping a
//! connection), client certificates (mTLS), and what a client certificate says about its
//! holder ([`PeerCert`]), which the connection hands to each of its requests.
//!
//! rustls on aws-lc-rs, the crate's one crypto backend; TLS 1.2 and 1.3 only; ALPN `h2` and
//! `http/1.1`. The certificate is served through a [`ResolvesServerCert`] holding an `Arc`
//! that a reload swaps: a handshake takes whichever certificate is current when it starts, and
//! open connections keep theirs. A new certificate that does not load (unreadable, not PEM,
//! key not matching, expired) is refused, with the reason logged, and the old one keeps
//! serving.

use crate::config::tls::{load_client_roots, load_material, not_after, provider, read, unix_now};
use crate::config::{ClientCertMode, TlsSettings};
use crate::metrics::Metrics;
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
    WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The ALPN protocols offered, preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// TLS 1.2 sessions remembered by one gateway for session-id resumption. TLS 1.3 resumes with
/// stateless tickets instead (encrypted by keys aws-lc-rs rotates every 6 hours), so a burst
/// of new clients cannot evict the sessions of the others. Both are shared by every server
/// config a reload builds: a reload does not make every client pay a full handshake again.
const SESSION_CACHE: usize = 1024;

/// What a verified client certificate says about its holder: the names a `[[users]]`
/// `certificate` is matched against. Only made from a certificate that chained to the
/// configured client CA during the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// URI SANs (`spiffe://corp/crm-sync`).
    pub uris: Vec<String>,
    /// DNS SANs, lower-cased.
    pub dns: Vec<String>,
    /// The leaf's notAfter, seconds since the Unix epoch. A resumed session skips the
    /// handshake's check, and a keep-alive connection may outlive the certificate, so each
    /// request checks it again.
    pub not_after: u64,
}

impl PeerCert {
    /// Reads the names and expiry of a (verified) leaf certificate.
    pub fn from_der(der: &CertificateDer<'_>) -> Option<PeerCert> {
        let cert = webpki::EndEntityCert::try_from(der).ok()?;
        Some(PeerCert {
            uris: cert.valid_uri_names().map(str::to_owned).collect(),
            dns: cert
                .valid_dns_names()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            not_after: not_after(der)?,
        })
    }

    /// Whether the certificate has expired by now.
    pub fn expired(&self) -> bool {
        unix_now() > self.not_after
    }

    /// Whether one of its SANs is `name` (a URI SAN exactly, a DNS SAN case-insensitively).
    pub fn names(&self, name: &str) -> bool {
        self.uris.iter().any(|u| u == name) || self.dns.iter().any(|d| d.eq_ignore_ascii_case(name))
    }

    /// Every SAN, for logs (they are names, not secrets).
    pub fn sans(&self) -> impl Iterator<Item = &str> {
        self.uris.iter().chain(self.dns.iter()).map(String::as_str)
    }
}

/// Serves the current certificate; a reload swaps it.
#[derive(Debug)]
struct Resolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// What the current server config was built from on the client-certificate side: a reload
/// rebuilds the config only when this changes (the certificate itself is swapped in the
/// resolver).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientSide(Option<(ClientCertMode, Vec<u8>)>);

fn server_config(
    resolver: Arc<Resolver>,
    resumption: &Resumption,
    settings: &TlsSettings,
) -> Result<(ServerConfig, ClientSide), String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let (builder, side) = match &settings.client_ca {
        None => (builder.with_no_client_auth(), ClientSide(None)),
        Some((path, mode)) => {
            let text = read(path, "client CA file")?;
            let roots = load_client_roots(path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = match mode {
                ClientCertMode::Optional => verifier.allow_unauthenticated(),
                ClientCertMode::Required => verifier,
            }
            .build()
            .map_err(|e| format!("{}: {e}", path.display()))?;
            (
                builder.with_client_cert_verifier(verifier),
                ClientSide(Some((*mode, text))),
            )
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.session_storage = resumption.sessions.clone();
    config.ticketer = resumption.tickets.clone();
    Ok((config, side))
}

/// What lets a client resume: TLS 1.2 sessions and the TLS 1.3 ticket keys.
struct Resumption {
    sessions: Arc<dyn StoresServerSessions>,
    tickets: Arc<dyn rustls::server::ProducesTickets>,
}

/// The files a TLS config reads, as last seen (modification time and length), to notice a
/// renewed certificate without a SIGHUP.
pub type Fingerprint = Vec<Option<(SystemTime, u64)>>;

/// The public listener's TLS: the current server config and certificate, swapped by reloads.
pub struct Tls {
    resolver: Arc<Resolver>,
    config: RwLock<Arc<ServerConfig>>,
    resumption: Resumption,
    /// The settings and client side the current config was built from.
    current: Mutex<(TlsSettings, ClientSide)>,
    expiry: prometheus::Gauge,
    reloads: [prometheus::IntCounter; 2],
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the certificate, key and client CA, and registers the TLS metrics.
    pub fn new(settings: &TlsSettings, metrics: &Metrics) -> Result<Arc<Tls>, String> {
        let material = load_material(&settings.cert_file, &settings.key_file)?;
        let resolver = Arc::new(Resolver(RwLock::new(material.key.clone())));
        let resumption = Resumption {
            sessions: ServerSessionMemoryCache::new(SESSION_CACHE),
            tickets: rustls::crypto::aws_lc_rs::Ticketer::new()
                .map_err(|e| format!("TLS ticket keys: {e}"))?,
        };
        let (config, side) = server_config(resolver.clone(), &resumption, settings)?;
        let expiry = prometheus::Gauge::new(
            "jbgw_tls_cert_expiry_seconds",
            "When the public listener's certificate chain expires (the earliest notAfter in it), in seconds since the Unix epoch.",
        )
        .expect("valid metric");
        let reloads = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "jbgw_tls_cert_reloads_total",
                "Certificate reloads of the public listener, by result (success, failure: the previous certificate keeps serving).",
            ),
            &["result"],
        )
        .expect("valid metric");
        metrics.register(Box::new(expiry.clone()));
        metrics.register(Box::new(reloads.clone()));
        expiry.set(material.expires as f64);
        tracing::info!(
            cert_file = %settings.cert_file.display(),
            expires_unix = material.expires,
            client_cert = settings.client_ca.as_ref().map(|(_, m)| m.as_str()),
            "TLS certificate loaded"
        );
        Ok(Arc::new(Tls {
            resolver,
            config: RwLock::new(Arc::new(config)),
            resumption,
            current: Mutex::new((settings.clone(), side)),
            expiry,
            reloads: ["success", "failure"].map(|r| reloads.with_label_values(&[r])),
        }))
    }

    /// An acceptor for one new connection, on the current config.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.config
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// The current certificate chain's earliest notAfter (seconds since the Unix epoch).
    pub fn expires(&self) -> u64 {
        self.expiry.get() as u64
    }

    /// The files of the current settings, as they are now on disk.
    pub fn fingerprint(&self) -> Fingerprint {
        let current = crate::lock(&self.current);
        files(&current.0)
            .iter()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                Some((m.modified().ok()?, m.len()))
            })
            .collect()
    }

    /// Loads the certificate (and client CA) of `settings` again and swaps them in. A chain
    /// that does not load is refused, logged with why, and the previous one keeps serving.
    /// Connections already open keep the certificate they were made with.
    pub fn reload(&self, settings: &TlsSettings, trigger: &str) -> bool {
        let mut current = crate::lock(&self.current);
        let result = load_material(&settings.cert_file, &settings.key_file).and_then(|m| {
            // The client side is read again too (a renewed CA); the config is rebuilt only
            // when it changed.
            let rebuilt = server_config(self.resolver.clone(), &self.resumption, settings)?;
            Ok((m, rebuilt))
        });
        match result {
            Ok((material, (config, side))) => {
                *self.resolver.0.write().unwrap_or_else(|e| e.into_inner()) = material.key;
                if side != current.1 {
                    *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
                }
                *current = (settings.clone(), side);
                self.expiry.set(material.expires as f64);
                self.reloads[0].inc();
                tracing::info!(
                    trigger,
                    cert_file = %settings.cert_file.display(),
                    expires_unix = material.expires,
                    "TLS certificate reloaded"
                );
                true
            }
            Err(error) => {
                self.reloads[1].inc();
                tracing::error!(
                    trigger,
                    %error,
                    "TLS certificate refused; the previous one keeps serving"
                );
                false
            }
        }
    }
}

fn files(s: &TlsSettings) -> Vec<PathBuf> {
    let mut v = vec![s.cert_file.clone(), s.key_file.clone()];
    v.extend(s.client_ca.as_ref().map(|(p, _)| p.clone()));
    v
}

/// What a client sent first, seen before the handshake.
fn looks_like_http(first: u8) -> bool {
    // Every HTTP/1 method and the HTTP/2 preface start with an upper-case letter; a TLS
    // connection starts with a handshake record (22).
    first.is_ascii_uppercase()
}

/// The answer to plain HTTP on the TLS port, sent in clear before closing: the client learns
/// why instead of seeing a reset or TLS garbage.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: application/json\r\n\
content-length: 62\r\n\
connection: close\r\n\
\r\n\
{\"error\": \"this port speaks HTTPS: use https:// for this URL\"}";

/// Takes a new connection through the TLS handshake (bounded by `timeout`): the TLS stream
/// and the client's verified certificate, if it sent one. Plain HTTP gets a 400 in clear and
/// is closed; a failed handshake is closed (rustls sends the alert). `None`: nothing to serve.
pub async fn accept(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    timeout: Duration,
) -> Option<(TlsStream<TcpStream>, Option<Arc<PeerCert>>)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    if looks_like_http(first[0]) {
        let mut stream = stream;
        let _ = tokio::time::timeout_at(deadline, async {
            stream.write_all(PLAIN_HTTP_ANSWER).await?;
            stream.shutdown().await?;
            // Closing with the request still unread would send a reset, which can destroy
            // the answer before the client reads it: read what it sent first (bounded).
            let mut sink = [0u8; 4096];
            let mut left = 64usize << 10;
            while left > 0 {
                match stream.read(&mut sink).await? {
                    0 => break,
                    n => left = left.saturating_sub(n),
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        tracing::debug!("plain HTTP on the TLS port: answered 400 and closed");
        return None;
    }
    let tls = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            return None;
        }
    };
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(PeerCert::from_der)
        .map(Arc::new);
    Some((tls, peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_after_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["gw.test".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 9);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        // 2031-07-09T00:00:00Z
        assert_eq!(not_after(cert.der()), Some(1_941_321_600));
        assert_eq!(not_after(&cert.der()[..40]), None);
        let peer = PeerCert::from_der(cert.der()).unwrap();
        assert_eq!(peer.dns, vec!["gw.test".to_string()]);
        assert!(peer.names("GW.test"));
        assert!(!peer.names("other.test"));
    }
}
