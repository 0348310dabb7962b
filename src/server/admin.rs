//! The admin listener: health, readiness, metrics and cache purge; and the healthcheck probe.

use super::current::Current;
use crate::error::{json_error, Response};
use crate::generation::AppState;
use crate::BoxFuture;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tower::Service;

/// The admin listener: health, readiness, metrics and cache purge.
#[derive(Clone)]
pub(super) struct AdminService {
    pub(super) current: Current,
}

impl Service<Request<Incoming>> for AdminService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Response>;

    /// Always ready: health, readiness and metrics must answer whatever the public stack's
    /// state, and nothing here is bounded.
    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> BoxFuture<Response> {
        let state = self.current.get().state.clone();
        Box::pin(async move { Ok(admin(&state, req).await) })
    }
}

fn json_ok(status: StatusCode, body: serde_json::Value) -> Response {
    let mut resp = http::Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn admin(state: &AppState, req: Request<Incoming>) -> Response {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET, "/healthz") => json_ok(StatusCode::OK, serde_json::json!({"status": "ok"})),
        (&Method::GET, "/readyz") => {
            // Ready once listening and every issuer can verify (static keys or a loaded JWKS);
            // the body says which issuer is not. The state backend's health is reported, not
            // required: a replica on its private share still serves, and taking every replica
            // out when Redis dies would be an outage of its own.
            let listening = state.shared.ready.load(Ordering::Acquire);
            let issuers = crate::identity::auth::readiness_json(&state.verifier);
            let backend = serde_json::json!({
                "backend": state.store.backend(),
                "status": state.store.health().as_str(),
            });
            if listening && state.verifier.is_ready() {
                json_ok(
                    StatusCode::OK,
                    serde_json::json!({"status": "ready", "state": backend, "issuers": issuers}),
                )
            } else {
                json_ok(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({
                        "status": "not ready",
                        "listening": listening,
                        "state": backend,
                        "issuers": issuers,
                    }),
                )
            }
        }
        (&Method::GET, "/metrics") => {
            state.cache.refresh_gauges().await;
            state.guard.refresh_gauges().await;
            for (issuer, source) in state.verifier.jwks_sources() {
                let stats = source.stats();
                let age = source.current().map(|set| set.age());
                state
                    .metrics
                    .auth
                    .set_jwks(issuer, stats.fetch_ok, stats.fetch_failed, age);
            }
            state
                .metrics
                .auth
                .set_issuers(&state.verifier.issuer_status());
            let mut resp = http::Response::new(Full::new(Bytes::from(state.metrics.render())));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        (&Method::POST, "/admin/cache/purge") => {
            let key = req.uri().query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "upstream_key")
                    .map(|(_, v)| v.into_owned())
            });
            let names: Vec<Arc<str>> = state
                .settings
                .upstream
                .keys
                .iter()
                .map(|k| k.name.clone())
                .collect();
            match state.cache.purge(key.as_deref(), &names).await {
                Ok(()) => json_ok(
                    StatusCode::OK,
                    serde_json::json!({"purged": key.unwrap_or_else(|| "all".into())}),
                ),
                Err(msg) => json_error(StatusCode::NOT_FOUND, &msg, &[]),
            }
        }
        (_, "/healthz" | "/readyz" | "/metrics") => {
            let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", &[]);
            r.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
            r
        }
        (_, "/admin/cache/purge") => {
            let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", &[]);
            r.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
            r
        }
        _ => json_error(StatusCode::NOT_FOUND, "Not found", &[]),
    }
}

/// The readiness URL on the same admin listener as `url`: its path replaced by `/readyz`.
pub fn readiness_url(url: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!("{url}: not an absolute URL"));
    };
    Ok(format!("{scheme}://{authority}/readyz"))
}

/// GETs `url` (plain http) and succeeds on a 2xx within five seconds.
pub async fn probe(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let req = Request::get(uri)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
        Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
        Ok(Ok(resp)) => Err(format!("status {}", resp.status())),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}
