//! OpenID Connect discovery and the rule for which URLs keys may be fetched from.

use super::fetcher::{clip, Fetcher, MAX_DOCUMENT_BYTES};
use serde::Deserialize;
use std::net::IpAddr;
use std::time::Duration;

/// How long [`discover_jwks_uri`] waits for the discovery document, whatever the fetcher does.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `url` may be fetched for keys: `https`, or `http` to a loopback host (local IdPs in
/// development and tests); no credentials in the URL.
pub fn check_jwks_url(url: &http::Uri) -> Result<(), String> {
    let Some(authority) = url.authority() else {
        return Err(format!("{url} has no host"));
    };
    if authority.as_str().contains('@') {
        return Err("URL must not carry credentials".into());
    }
    match url.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(authority.host()) => Ok(()),
        Some("http") => Err(format!(
            "{url}: plain http is accepted only for a loopback host; use https"
        )),
        _ => Err(clip(&format!("{url}: scheme must be https"), 200)),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// OIDC discovery: GETs `{issuer}/.well-known/openid-configuration`, checks the document's
/// `issuer` is exactly the configured one (so a misconfigured or spoofed issuer is refused) and
/// returns its `jwks_uri`, which must pass [`check_jwks_url`].
pub async fn discover_jwks_uri(issuer: &str, fetcher: &dyn Fetcher) -> Result<http::Uri, String> {
    #[derive(Deserialize)]
    struct Discovery {
        issuer: String,
        jwks_uri: String,
    }
    if issuer.contains(['?', '#']) {
        return Err(format!(
            "issuer {issuer:?} must not have a query or fragment"
        ));
    }
    let url: http::Uri = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
    .parse()
    .map_err(|e| format!("issuer {issuer:?} is not a URL: {e}"))?;
    check_jwks_url(&url).map_err(|e| format!("issuer {issuer:?}: {e}"))?;
    let body = match tokio::time::timeout(DISCOVERY_TIMEOUT, fetcher.get(&url)).await {
        Err(_) => return Err(format!("{url}: timed out")),
        Ok(Err(e)) => return Err(clip(&format!("{url}: {e}"), 300)),
        Ok(Ok(body)) => body,
    };
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "{url}: document of {} bytes is too large",
            body.len()
        ));
    }
    let doc: Discovery = serde_json::from_slice(&body)
        .map_err(|e| clip(&format!("{url}: not an OpenID configuration: {e}"), 300))?;
    if doc.issuer != issuer {
        return Err(clip(
            &format!(
                "{url} names issuer {:?}, not the configured {issuer:?}",
                doc.issuer
            ),
            400,
        ));
    }
    let jwks: http::Uri = doc
        .jwks_uri
        .parse()
        .map_err(|_| clip(&format!("jwks_uri {:?} is not a URL", doc.jwks_uri), 300))?;
    check_jwks_url(&jwks).map_err(|e| format!("jwks_uri: {e}"))?;
    Ok(jwks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules() {
        let ok = |s: &str| check_jwks_url(&s.parse().unwrap()).is_ok();
        assert!(ok("https://idp.example.com/keys"));
        assert!(ok("http://127.0.0.1:8080/keys"));
        assert!(ok("http://[::1]:8080/keys"));
        assert!(ok("http://localhost/keys"));
        assert!(!ok("http://idp.example.com/keys"));
        assert!(!ok("http://127.0.0.1.evil.com/keys"));
        assert!(!ok("ftp://idp.example.com/keys"));
        assert!(!ok("https://user:pw@idp.example.com/keys"));
        assert!(!ok("/keys"));
    }
}
