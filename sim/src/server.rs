//! HTTP side of the simulator: accept loop, auth, faults, routing. Control requests are
//! dispatched to [`crate::control`]; the state both share is in [`crate::state`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Sleep;

use crate::config::{RateLimitMode, SimConfig, SimKey, DEFAULT_COMPANY_DOMAIN};
use crate::control;
use crate::reply::Reply;
use crate::router::{dispatch, match_route, Access};
use crate::seed::{self, GenParams};
use crate::state::{lock, Fault, RecordedRequest, Recorder, Shared};

const MSG_BAD_KEY: &str = "Invalid API key or insufficient permissions";
const MSG_NEED_READ: &str = "Read access required for this operation";
const MSG_NEED_WRITE: &str = "Write access required for this operation";
const MSG_NOT_FOUND: &str = "Not found";
const MSG_SIMULATED: &str = "simulated failure";

const RATE_WINDOW: Duration = Duration::from_secs(60);

/// How long a truncated response pauses after its partial body, so that the
/// bytes are flushed to the client before the connection is dropped.
const RESET_PAUSE: Duration = Duration::from_millis(30);

/// Binds, generates the data and spawns the accept loop.
pub(crate) async fn start(addr: SocketAddr, config: SimConfig) -> std::io::Result<Arc<Shared>> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let data = seed::generate(&GenParams {
        company_id: config.company_id,
        company_domain: config
            .company_domains
            .first()
            .map_or(DEFAULT_COMPANY_DOMAIN, String::as_str),
        partnerships: config.partnerships,
        seed: config.seed,
    });
    let record_limit = config.record_limit;
    let shared = Arc::new(Shared {
        addr,
        config,
        data: Mutex::new(data),
        fault: Mutex::new(Fault::None),
        recorded: Mutex::new(Recorder::new(record_limit)),
        rate: Mutex::new(HashMap::new()),
        sliding: Mutex::new(HashMap::new()),
        rate_limited: AtomicUsize::new(0),
        shutdown: watch::channel(false).0,
        stopped: watch::channel(false).0,
    });
    tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
    tracing::debug!(%addr, "journeybee simulator listening");
    Ok(shared)
}

/// Resolves once shutdown has been requested. Returns `()` rather than the
/// watch guard so that it can sit in `select!` across other awaits.
async fn until_shutdown(rx: &mut watch::Receiver<bool>) {
    // The sender lives in `Shared`, which every caller keeps alive.
    let _ = rx.wait_for(|s| *s).await;
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            // Shutdown first, so a connection waiting in the backlog is not
            // accepted after `shutdown()` returned.
            biased;
            () = until_shutdown(&mut shutdown) => break,
            res = listener.accept() => match res {
                Ok((stream, _peer)) => {
                    tokio::spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                Err(e) => {
                    // Typically EMFILE; back off instead of spinning.
                    tracing::warn!(error = %e, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    // Dropping the listener is what makes new connections fail.
    drop(listener);
    shared.stopped.send_replace(true);
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    if *shutdown.borrow() {
        return;
    }
    // Fired by a truncated response body to drop this whole connection
    // (for HTTP/2 a body error alone would only reset the stream).
    let kill = Arc::new(Notify::new());
    let svc_shared = Arc::clone(&shared);
    let svc_kill = Arc::clone(&kill);
    let service = service_fn(move |req| {
        let shared = Arc::clone(&svc_shared);
        let kill = Arc::clone(&svc_kill);
        async move { Ok::<_, Infallible>(handle(shared, kill, req).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        // Shutdown and kill win over serving: after `shutdown()` even a
        // request on a kept-alive connection must fail, like a dead upstream.
        biased;
        () = until_shutdown(&mut shutdown) => {}
        () = kill.notified() => {}
        res = conn => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "simulator connection ended with an error");
            }
        }
    }
    // Leaving drops `conn`, which closes the socket abruptly: the point.
}

/// Turns a reply into a response; with `truncate`, only half of the body is
/// sent before the connection is dropped ([`Fault::ResetMidResponse`]).
fn into_response(reply: Reply, truncate: Option<Arc<Notify>>) -> Response<SimBody> {
    let bytes = reply.body;
    let len = bytes.len();
    let has_body = !bytes.is_empty();
    let body = match truncate {
        None => SimBody::full(bytes),
        Some(kill) => SimBody::truncated(bytes.slice(..len / 2), len as u64, kill),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = reply.status;
    let h = resp.headers_mut();
    // A 204 has neither a body nor a content type.
    if has_body {
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Some(secs) = reply.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// The Bearer value of `Authorization` (scheme case-insensitive).
fn bearer(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

async fn handle(
    shared: Arc<Shared>,
    kill: Arc<Notify>,
    req: Request<Incoming>,
) -> Response<SimBody> {
    let received_at = Instant::now();
    if *shared.shutdown.borrow() {
        // HTTP/2 streams run on their own tasks and can get here after
        // shutdown; never answer them, the connection is being dropped.
        return std::future::pending().await;
    }
    let (parts, body) = req.into_parts();
    // A body that fails to arrive means the client is gone; whatever we
    // answer will not be read, but the attempt is still recorded.
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    if shared.config.control && control::is_control_path(parts.uri.path()) {
        // Before auth, faults and the recorder: this is how faults are switched off.
        return control_response(control::handle(
            &shared,
            &parts.method,
            parts.uri.path(),
            &body,
        ));
    }
    let api_key = bearer(&parts.headers);
    let recorded = RecordedRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers.clone(),
        body,
        api_key,
        received_at,
    };
    lock(&shared.recorded).push(recorded.clone());
    tracing::debug!(method = %recorded.method, path = %recorded.path, "simulator request");

    let fault = lock(&shared.fault).clone();
    match fault {
        Fault::None => {}
        Fault::Slow(d) => tokio::time::sleep(d).await,
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return into_response(Reply::error(status, MSG_SIMULATED), None);
        }
        Fault::RateLimited { retry_after_secs } => {
            return into_response(Reply::too_many(retry_after_secs), None);
        }
        Fault::ResetMidResponse => {
            let reply = route(&shared, &recorded);
            if reply.body.is_empty() {
                // A 204 has no body to cut short: the write happened, the
                // connection goes without an answer.
                kill.notify_one();
                return std::future::pending().await;
            }
            return into_response(reply, Some(kill));
        }
        Fault::BlackHole => {
            // Never answer, not even at shutdown: the connection task drops
            // the connection then, and a late answer would race with that.
            return std::future::pending().await;
        }
    }
    into_response(route(&shared, &recorded), None)
}

fn control_response(reply: control::ControlReply) -> Response<SimBody> {
    let body = reply
        .body
        .map(|v| Bytes::from(serde_json::to_vec(&v).unwrap_or_default()));
    let mut resp = Response::new(SimBody::full(body.clone().unwrap_or_default()));
    *resp.status_mut() = reply.status;
    let h = resp.headers_mut();
    if let Some(body) = body {
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    if let Some(allow) = reply.allow {
        h.insert(ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

/// Counts a request against the key's fixed window; `Err(retry_after_secs)`
/// when over the limit.
fn take_rate_token(shared: &Shared, key: &str, limit: u32) -> Result<(), u64> {
    let mut windows = lock(&shared.rate);
    let now = Instant::now();
    let window = windows.entry(key.to_string()).or_insert((now, 0));
    let elapsed = now.duration_since(window.0);
    if elapsed >= RATE_WINDOW {
        *window = (now, 0);
    }
    if window.1 >= limit {
        let left = RATE_WINDOW.saturating_sub(now.duration_since(window.0));
        // Round up so a client that waits exactly Retry-After is let in.
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        return Err(secs.max(1));
    }
    window.1 += 1;
    Ok(())
}

/// Counts a request that arrived at `arrival` against the key's exact sliding window;
/// `Err(retry_after_secs)` when `limit` requests were already served within `window`.
fn take_sliding_token(
    shared: &Shared,
    key: &str,
    limit: u32,
    window: Duration,
    arrival: Instant,
) -> Result<(), u64> {
    let mut logs = lock(&shared.sliding);
    let log = logs.entry(key.to_string()).or_default();
    // Requests are checked in arrival order up to scheduling noise; an entry is out of the
    // window once `window` has fully passed since it arrived.
    while log
        .front()
        .is_some_and(|t| arrival.saturating_duration_since(*t) >= window)
    {
        log.pop_front();
    }
    if log.len() >= limit as usize {
        let oldest = log.front().copied().unwrap_or(arrival);
        let left = window.saturating_sub(arrival.saturating_duration_since(oldest));
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        return Err(secs.max(1));
    }
    // Keep the log sorted even if a request checked later arrived a little earlier.
    let at = log.partition_point(|t| *t <= arrival);
    log.insert(at, arrival);
    Ok(())
}

/// Auth, rate limit, routing, access and the endpoint logic.
fn route(shared: &Shared, req: &RecordedRequest) -> Reply {
    let key: Option<&SimKey> = req
        .api_key
        .as_deref()
        .and_then(|k| shared.config.keys.iter().find(|s| s.secret == k));
    let Some(key) = key else {
        return Reply::error(StatusCode::UNAUTHORIZED, MSG_BAD_KEY);
    };
    let limited = match shared.config.rate_limit_mode {
        RateLimitMode::FixedMinute => shared
            .config
            .rate_limit_per_minute
            .map(|limit| take_rate_token(shared, &key.secret, limit)),
        RateLimitMode::Sliding { limit, window } => Some(take_sliding_token(
            shared,
            &key.secret,
            limit,
            window,
            req.received_at,
        )),
    };
    if let Some(Err(secs)) = limited {
        shared.rate_limited.fetch_add(1, Ordering::SeqCst);
        return Reply::too_many(secs);
    }
    let Some(route) = match_route(&req.method, &req.path) else {
        return Reply::not_found(MSG_NOT_FOUND);
    };
    match route.access() {
        Access::Read if !key.read => Reply::error(StatusCode::FORBIDDEN, MSG_NEED_READ),
        Access::Write if !key.write => Reply::error(StatusCode::FORBIDDEN, MSG_NEED_WRITE),
        _ => dispatch(route, &mut lock(&shared.data), &shared.config, req),
    }
}

/// Error a truncated body ends with; makes hyper abort the response.
#[derive(Debug)]
pub(crate) struct SimulatedReset;

impl std::fmt::Display for SimulatedReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated connection reset")
    }
}

impl std::error::Error for SimulatedReset {}

/// Response body: either complete, or a prefix followed by a connection drop.
pub(crate) struct SimBody {
    state: BodyState,
}

enum BodyState {
    Full(Option<Bytes>),
    Truncated {
        part: Option<Bytes>,
        announced_len: u64,
        pause: Option<Pin<Box<Sleep>>>,
        kill: Arc<Notify>,
    },
    Done,
}

impl SimBody {
    fn full(bytes: Bytes) -> Self {
        Self {
            state: BodyState::Full(Some(bytes)),
        }
    }

    fn truncated(part: Bytes, announced_len: u64, kill: Arc<Notify>) -> Self {
        Self {
            state: BodyState::Truncated {
                part: Some(part),
                announced_len,
                pause: None,
                kill,
            },
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = SimulatedReset;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match &mut this.state {
            BodyState::Full(bytes) => {
                let frame = bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b)));
                this.state = BodyState::Done;
                Poll::Ready(frame)
            }
            BodyState::Truncated {
                part, pause, kill, ..
            } => {
                if let Some(bytes) = part.take().filter(|b| !b.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                let sleep = pause.get_or_insert_with(|| Box::pin(tokio::time::sleep(RESET_PAUSE)));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                kill.notify_one();
                this.state = BodyState::Done;
                Poll::Ready(Some(Err(SimulatedReset)))
            }
            BodyState::Done => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            BodyState::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            BodyState::Truncated { .. } => false,
            BodyState::Done => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            BodyState::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            BodyState::Truncated { announced_len, .. } => SizeHint::with_exact(*announced_len),
            BodyState::Done => SizeHint::with_exact(0),
        }
    }
}
