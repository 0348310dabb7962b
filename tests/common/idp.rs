//! A test identity provider on loopback: serves a switchable JWKS (and an OIDC discovery
//! document) and counts JWKS fetches.
#![allow(dead_code)]

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

pub struct Idp {
    pub base: String,
    served: Arc<Mutex<(StatusCode, String)>>,
    hits: Arc<AtomicUsize>,
    /// 0 up, 1 down (503 on every path, discovery included), 2 hanging (never answers).
    mode: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

const UP: usize = 0;
const DOWN: usize = 1;
const HANG: usize = 2;

impl Drop for Idp {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Idp {
    pub async fn start(jwks: Value) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(Mutex::new((StatusCode::OK, jwks.to_string())));
        let hits = Arc::new(AtomicUsize::new(0));
        let mode = Arc::new(AtomicUsize::new(UP));
        let (s, h, b, m) = (served.clone(), hits.clone(), base.clone(), mode.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, h, b, m) = (s.clone(), h.clone(), b.clone(), m.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (s, h, b, m) = (s.clone(), h.clone(), b.clone(), m.clone());
                        async move {
                            match m.load(Ordering::SeqCst) {
                                DOWN => {
                                    let mut resp = Response::new(Full::new(Bytes::from("down")));
                                    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                                    return Ok::<_, Infallible>(resp);
                                }
                                HANG => std::future::pending::<()>().await,
                                _ => {}
                            }
                            let (status, body) = match req.uri().path() {
                                "/jwks" => {
                                    h.fetch_add(1, Ordering::SeqCst);
                                    s.lock().unwrap().clone()
                                }
                                "/.well-known/openid-configuration" => (
                                    StatusCode::OK,
                                    json!({"issuer": b, "jwks_uri": format!("{b}/jwks")})
                                        .to_string(),
                                ),
                                _ => (StatusCode::NOT_FOUND, String::new()),
                            };
                            let mut resp = Response::new(Full::new(Bytes::from(body)));
                            *resp.status_mut() = status;
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Idp {
            base,
            served,
            hits,
            mode,
            accept,
        }
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    pub fn serve(&self, status: u16, body: impl Into<String>) {
        *self.served.lock().unwrap() = (StatusCode::from_u16(status).unwrap(), body.into());
    }

    /// Every path, discovery included, answers 503 (`true`) or serves again (`false`).
    pub fn set_down(&self, down: bool) {
        self.mode
            .store(if down { DOWN } else { UP }, Ordering::SeqCst);
    }

    /// Every request hangs without an answer (`true`), or is served again (`false`).
    pub fn set_hang(&self, hang: bool) {
        self.mode
            .store(if hang { HANG } else { UP }, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

pub fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(super::fixture("rsa_private.pem").as_bytes()).unwrap()
}

pub fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(super::fixture("ec_private.pem").as_bytes()).unwrap()
}

/// The public JWK of `key`, published for `alg` under `kid`.
pub fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut v = serde_json::to_value(Jwk::from_encoding_key(key, alg).unwrap()).unwrap();
    v["kid"] = json!(kid);
    v["use"] = json!("sig");
    v
}

pub fn set(keys: Vec<Value>) -> Value {
    json!({ "keys": keys })
}
