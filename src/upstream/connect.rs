//! How the gateway connects out: TCP (connect timeout, no Nagle, keep-alive probes) and TLS
//! (system roots plus the optional extra CA bundle) connectors, the pooled client for the IdP's
//! documents and the OTLP collector, and the pool of connections to JourneyBee.

use super::pool;
use crate::config::UpstreamSettings;
use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::time::Duration;

/// The pooled HTTP(S) client the gateway fetches its IdP's documents with (JWKS, OpenID
/// discovery); JourneyBee itself is reached through a [`pool::Pool`].
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// TCP (connect timeout, no Nagle, keep-alive probes) and TLS (system roots plus the optional
/// extra CA bundle), offering HTTP/2 through ALPN when `http2`.
fn connector(
    settings: &UpstreamSettings,
    http2: bool,
) -> Result<HttpsConnector<HttpConnector>, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(settings.connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));

    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are not fatal: an extra CA may be all that is needed.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &settings.extra_ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("upstream.extra_ca_file {}: {e}", path.display()))?;
        for cert in certs {
            let cert =
                cert.map_err(|e| format!("upstream.extra_ca_file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("upstream.extra_ca_file {}: {e}", path.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    Ok(if http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    })
}

/// Builds the IdP client: HTTP/1 keep-alive pool (HTTP/2 when ALPN offers it).
pub fn build_client(settings: &UpstreamSettings) -> Result<HttpClient, String> {
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(settings.pool_idle_timeout)
        .pool_max_idle_per_host(settings.pool_max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector(settings, true)?))
}

/// Builds the pool of HTTP/1.1 connections to JourneyBee.
pub fn build_pool(settings: &UpstreamSettings) -> Result<pool::Pool, String> {
    let origin = Uri::builder()
        .scheme(settings.scheme.clone())
        .authority(settings.authority.clone())
        .path_and_query("/")
        .build()
        .map_err(|e| format!("upstream.base_url: {e}"))?;
    Ok(pool::Pool::new(
        connector(settings, false)?,
        origin,
        settings.pool_max_idle_per_host,
        settings.pool_idle_timeout,
        settings.connect_timeout,
    ))
}
