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
    accept: tokio::task::JoinHandle<()>,
}

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
        let (s, h, b) = (served.clone(), hits.clone(), base.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, h, b) = (s.clone(), h.clone(), b.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (s, h, b) = (s.clone(), h.clone(), b.clone());
                        async move {
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
            accept,
        }
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    pub fn serve(&self, status: u16, body: impl Into<String>) {
        *self.served.lock().unwrap() = (StatusCode::from_u16(status).unwrap(), body.into());
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
