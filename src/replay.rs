//! `Idempotency-Key` for creates: a repeat of a create the gateway has seen gets the stored
//! outcome without a second upstream call (and so without a second invitation e-mail).
//!
//! Keys are scoped to the mapped user. The same key with a different body (or path) is 422; a
//! repeat while the first is still upstream waits for it, or gets 409 + `Retry-After` after
//! `idempotency.wait`. Only definitive outcomes are stored: a 2xx, or a 4xx other than
//! 408/425/429. An unknown outcome (timeout, reset, 5xx) or a local refusal stores nothing,
//! so the client's retry is a real retry.

use crate::config::{IdempotencySettings, Identity};
use crate::error::{GatewayError, Response};
use crate::metrics::Metrics;
use crate::resilience::idempotency::{Begin, IdempotencyStore, StoredOutcome};
use crate::resilience::valid_key;
use crate::route::Route;
use crate::upstream::UpstreamMeta;
use crate::BoxFuture;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::Request;
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Replays stored create outcomes for repeated `Idempotency-Key`s.
#[derive(Clone)]
pub struct ReplayLayer {
    store: IdempotencyStore,
    wait: Duration,
    metrics: Arc<Metrics>,
}

impl ReplayLayer {
    /// A layer with a store sized by `settings`.
    pub fn new(settings: &IdempotencySettings, metrics: Arc<Metrics>) -> Self {
        Self {
            store: IdempotencyStore::new(settings.capacity, settings.ttl),
            wait: settings.wait,
            metrics,
        }
    }
}

impl<S> Layer<S> for ReplayLayer {
    type Service = Replay<S>;
    fn layer(&self, inner: S) -> Replay<S> {
        Replay {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service produced by [`ReplayLayer`].
#[derive(Clone)]
pub struct Replay<S> {
    inner: S,
    layer: ReplayLayer,
}

/// Whether an upstream answer is final for this request, so a repeat must get it again.
fn definitive(status: u16) -> bool {
    (200..300).contains(&status)
        || ((400..500).contains(&status) && ![408, 425, 429].contains(&status))
}

fn replayed(out: &StoredOutcome) -> Response {
    let mut resp = http::Response::new(Full::new(out.body.clone()));
    *resp.status_mut() = http::StatusCode::from_u16(out.status).unwrap_or(http::StatusCode::OK);
    for (name, value) in &out.headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            resp.headers_mut().insert(n, v);
        }
    }
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    resp
}

impl<S> Service<Request<Bytes>> for Replay<S>
where
    S: Service<Request<Bytes>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> BoxFuture {
        let create = req
            .extensions()
            .get::<Route>()
            .is_some_and(|r| r.is_create());
        let key = req.headers().get(IDEMPOTENCY_KEY).cloned();
        let (true, Some(key)) = (create, key) else {
            return Box::pin(self.inner.call(req));
        };
        let layer = self.layer.clone();
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let key = match key.to_str() {
                Ok(k) if valid_key(k) => k.to_string(),
                _ => return Ok(GatewayError::InvalidIdempotencyKey.into_response()),
            };
            let Some(user) = req
                .extensions()
                .get::<Arc<Identity>>()
                .map(|i| i.name.clone())
            else {
                return Ok(
                    GatewayError::Internal("replay reached without identity".into())
                        .into_response(),
                );
            };
            // The path is part of what was asked: the same body to another company's route
            // is a different request.
            let mut material = req.uri().path().as_bytes().to_vec();
            material.push(0);
            material.extend_from_slice(req.body());
            let fingerprint = layer.store.fingerprint(&material);
            match layer.store.begin(user, key, fingerprint).await {
                Begin::Replay(out) => {
                    layer.metrics.idempotent_replay();
                    Ok(replayed(&out))
                }
                Begin::Mismatch => Ok(GatewayError::IdempotencyMismatch.into_response()),
                Begin::InFlight(waiter) => match waiter.wait(layer.wait).await {
                    Some(out) => {
                        layer.metrics.idempotent_replay();
                        Ok(replayed(&out))
                    }
                    None => Ok(GatewayError::IdempotencyInFlight.into_response()),
                },
                Begin::Proceed(guard) => {
                    let fut = inner.call(req);
                    // Run to completion even if this client goes away: the outcome must be
                    // recorded, or its retry would send the invitations again.
                    let task = tokio::spawn(async move {
                        let resp = match fut.await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        };
                        let upstream = resp
                            .extensions()
                            .get::<UpstreamMeta>()
                            .and_then(|m| m.status);
                        match upstream {
                            Some(status) if definitive(status) => {
                                let (parts, body) = resp.into_parts();
                                let body = match body.collect().await {
                                    Ok(c) => c.to_bytes(),
                                    Err(never) => match never {},
                                };
                                let headers = parts
                                    .headers
                                    .get(CONTENT_TYPE)
                                    .and_then(|v| v.to_str().ok())
                                    .map(|v| vec![("content-type".to_string(), v.to_string())])
                                    .unwrap_or_default();
                                guard
                                    .complete(StoredOutcome {
                                        status,
                                        headers,
                                        body: body.clone(),
                                    })
                                    .await;
                                http::Response::from_parts(parts, Full::new(body))
                            }
                            _ => {
                                guard.abandon();
                                resp
                            }
                        }
                    });
                    Ok(task.await.unwrap_or_else(|e| {
                        GatewayError::Internal(format!("create task: {e}")).into_response()
                    }))
                }
            }
        })
    }
}
