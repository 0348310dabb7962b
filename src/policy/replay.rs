//! `Idempotency-Key` for creates: a repeat of a create the gateway has seen gets the stored
//! outcome without a second upstream call (and so without a second invitation e-mail).
//!
//! Records live in the state [`Store`](crate::state::Store) (in memory across reloads, or in Redis across replicas
//! and restarts), keyed by (upstream key, user, key) and claimed atomically with the request's
//! fingerprint. The same key with a different body (or path) is 422; a repeat while the first
//! is still upstream waits for it, or gets 409 + `Retry-After` after `idempotency.wait`.
//!
//! A record ends in one of three ways: a definitive upstream answer (a 2xx, or a 4xx other
//! than 408/425/429) is stored and replayed; a request refused before it left (budget, breaker,
//! no connection slot, no connection within `connect_timeout` with TLS included, its deadline
//! passed before it was handed to a connection, an upstream 408/425/429) frees the key;
//! anything else (timeout or reset after sending, a 5xx) is *unknown*, and a repeat gets the "may have been created" error
//! instead of a second send. A record whose sender died mid-create becomes unknown when its
//! lease runs out, never free. With the store unreachable, a keyed create is refused with 503:
//! answering it without the shared record could send the invitations twice.
//!
//! The record of a write upstream accepted is settled by the invalidation layer below, in the
//! same store call as the write's generation bump (one Redis round trip, not two): this layer
//! hands it a [`SettleTicket`] with the write, and the reply says whether it was used
//! (`Facts::settled`). Every other record (a write refused, not sent, or of unknown outcome,
//! and an accepted one whose combined call failed) is settled here, after the reply. Either
//! way the outcome stored is the reply's [`settlement`](crate::exchange::Reply::settlement).

use crate::config::IdempotencySettings;
use crate::error::GatewayError;
use crate::exchange::Reply;
use crate::policy::metrics::PolicyMetrics;
use crate::state::{Claim, Fingerprint, IdemId, SettleTicket, SharedStore, StoredOutcome};
use crate::timeouts::IDEMPOTENCY_POLL as POLL;
use crate::validate::Write;
use http::header::{HeaderValue, CONTENT_TYPE};
use http_body_util::Full;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

/// Whether `key` is an acceptable `Idempotency-Key`: 1 to 255 visible ASCII characters
/// (`!` through `~`; no spaces or control characters), so keys are safe to log and compare.
fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Replays stored create outcomes for repeated `Idempotency-Key`s.
#[derive(Clone)]
pub struct ReplayLayer {
    store: SharedStore,
    ttl: Duration,
    wait: Duration,
    /// How long an in-flight record is trusted to have a live sender.
    lease: Duration,
    metrics: Arc<PolicyMetrics>,
}

impl ReplayLayer {
    /// A layer keeping records in `store`. `lease` bounds one create end to end (a record in
    /// flight longer than that is taken to be unknown).
    pub fn new(
        settings: &IdempotencySettings,
        store: SharedStore,
        lease: Duration,
        metrics: Arc<PolicyMetrics>,
    ) -> Self {
        Self {
            store,
            ttl: settings.ttl,
            wait: settings.wait,
            lease,
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

fn replayed(out: &StoredOutcome) -> Reply {
    let mut resp = http::Response::new(Full::new(out.body.clone()));
    *resp.status_mut() = http::StatusCode::from_u16(out.status).unwrap_or(http::StatusCode::OK);
    if let Some(v) = out
        .content_type
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Reply::new(resp)
}

impl ReplayLayer {
    /// Claims the record, waiting (bounded by `wait`) while another request has it in flight.
    async fn claim(&self, id: &IdemId, fp: &Fingerprint) -> Result<Claim, Reply> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            match self.store.claim(id, fp, self.lease, self.ttl).await {
                Err(_) => {
                    return Err(GatewayError::StateUnavailable {
                        retry_after: crate::state::redis::PROBE_INTERVAL,
                    }
                    .into())
                }
                Ok(Claim::InFlight) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(POLL).await;
                }
                Ok(claim) => return Ok(claim),
            }
        }
    }
}

impl<S> Service<Write> for Replay<S>
where
    S: Service<Write, Response = Reply, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + Unpin + 'static,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = crate::step::Step<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Write) -> Self::Future {
        let Some(key) = req.headers.get(IDEMPOTENCY_KEY).cloned() else {
            // No key: nothing to record, nothing to await here.
            return crate::step::Step::next(self.inner.call(req));
        };
        let layer = self.layer.clone();
        // The service polled ready is the one called once the key is claimed.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        // This runs to completion whatever the client does (the observe layer runs a write in
        // its own task): the outcome is always recorded, or a retry would send the
        // invitations again.
        crate::step::Step::boxed(Box::pin(async move {
            let key = match key.to_str() {
                Ok(k) if valid_key(k) => k.to_string(),
                _ => return Ok(GatewayError::InvalidIdempotencyKey.into()),
            };
            let identity = &req.ctx.identity;
            let id = IdemId {
                key: identity.key.name.clone(),
                user: identity.name.clone(),
                idem: key,
            };
            // The path is part of what was asked: the same body to another company's route
            // is a different request.
            let mut material = req.target.path().as_bytes().to_vec();
            material.push(0);
            material.extend_from_slice(&req.body);
            let fingerprint = Fingerprint::of(&material);
            match layer.claim(&id, &fingerprint).await {
                Err(refused) => Ok(refused),
                Ok(Claim::Replay(out)) => {
                    layer.metrics.idempotent_replay();
                    Ok(replayed(&out))
                }
                Ok(Claim::Mismatch) => Ok(GatewayError::IdempotencyMismatch.into()),
                Ok(Claim::InFlight) => Ok(GatewayError::IdempotencyInFlight.into()),
                Ok(Claim::Unknown) => Ok(GatewayError::IdempotencyOutcomeUnknown.into()),
                Ok(Claim::Proceed) => {
                    // Handed down: an accepted write's record is settled with its generation
                    // bump, in one store call (see `cache::invalidate`).
                    req.settle = Some(SettleTicket {
                        id: id.clone(),
                        ttl: layer.ttl,
                    });
                    let reply = match inner.call(req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    if reply.facts.settled {
                        return Ok(reply);
                    }
                    // Not accepted, or the combined call failed (then the bump is pending and
                    // the record is settled here, as every record is when settled alone).
                    if layer
                        .store
                        .settle(&id, reply.settlement(), layer.ttl)
                        .await
                        .is_err()
                    {
                        // The record stays in flight; its lease turns it unknown, never
                        // free, so a repeat is still never sent twice.
                        tracing::warn!("could not record a write's outcome in the state backend");
                    }
                    Ok(reply)
                }
            }
        }))
    }
}
