//! The JWKS fetcher on the gateway's own HTTP(S) client: GET, 2xx only, bounded in size and
//! time.

use super::jwks::{FetchFuture, Fetcher, MAX_DOCUMENT_BYTES};
use crate::upstream::HttpClient;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use std::time::Duration;

/// Fetches identity-provider documents with the gateway's client.
pub struct HttpFetcher {
    client: HttpClient,
    timeout: Duration,
}

impl HttpFetcher {
    /// A fetcher sharing `client`'s pool and TLS roots.
    pub fn new(client: HttpClient, timeout: Duration) -> Self {
        HttpFetcher { client, timeout }
    }
}

impl HttpFetcher {
    /// A fetcher for `auth`'s identity providers: its own bound is the longest issuer
    /// `jwks_timeout` (each source applies its own as well), never the upstream's timeouts.
    pub fn for_auth(client: HttpClient, auth: &crate::config::AuthSettings) -> Self {
        let timeout = auth
            .issuers
            .iter()
            .filter_map(|i| i.jwks.as_ref().map(|j| j.timeout))
            .max()
            .unwrap_or(Duration::from_secs(5));
        HttpFetcher::new(client, timeout)
    }
}

impl Fetcher for HttpFetcher {
    fn get(&self, url: &http::Uri) -> FetchFuture {
        let client = self.client.clone();
        let timeout = self.timeout;
        let req = http::Request::get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("journeybee-gateway/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()));
        Box::pin(async move {
            let req = req.map_err(|e| e.to_string())?;
            let work = async {
                let resp = client.request(req).await.map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("status {}", resp.status()));
                }
                Limited::new(resp.into_body(), MAX_DOCUMENT_BYTES)
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .map_err(|e| e.to_string())
            };
            tokio::time::timeout(timeout, work)
                .await
                .map_err(|_| "timed out".to_string())?
        })
    }
}
