//! HTTP side of the simulator: accept loop, auth, faults, routing.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Sleep;

use super::control;
use super::data::{Dataset, GenParams};
use super::filter::{list, parse_list_query, QueryError};
use super::validate::{validate_create, CreateError, DomainRules};
use super::{Fault, RateLimitMode, RecordedRequest, SimConfig, SimKey, DEFAULT_COMPANY_DOMAIN};

const MSG_BAD_KEY: &str = "Invalid API key or insufficient permissions";
const MSG_NEED_READ: &str = "Read access required for this operation";
const MSG_NEED_WRITE: &str = "Write access required for this operation";
const MSG_NOT_FOUND: &str = "Not found";
const MSG_NO_COMPANY: &str = "Company not found or user not authorized";
const MSG_NO_USER_ID: &str = "userId is required";
const MSG_BAD_QUERY: &str = "Invalid query parameters";
const MSG_BAD_BODY: &str = "Invalid email format or missing required fields";
const MSG_BAD_DOMAIN: &str = "Invalid email domains or attempting to partner with self";
const MSG_EXISTS: &str = "Partnership already exists with this company";
const MSG_TOO_MANY: &str = "Too many requests";
const MSG_SIMULATED: &str = "simulated failure";

const RATE_WINDOW: Duration = Duration::from_secs(60);

/// How long a truncated response pauses after its partial body, so that the
/// bytes are flushed to the client before the connection is dropped.
const RESET_PAUSE: Duration = Duration::from_millis(30);

/// State shared by the accept loop, the connections and the handles.
pub(crate) struct Shared {
    pub addr: SocketAddr,
    config: SimConfig,
    pub data: Mutex<Dataset>,
    pub fault: Mutex<Fault>,
    pub recorded: Mutex<Recorder>,
    /// key → (window start, requests in window)
    pub rate: Mutex<HashMap<String, (Instant, u32)>>,
    /// key → arrival instants of the requests served within the sliding window, oldest first
    pub sliding: Mutex<HashMap<String, VecDeque<Instant>>>,
    /// 429s answered by the rate limit.
    pub rate_limited: AtomicUsize,
    pub shutdown: watch::Sender<bool>,
    pub stopped: watch::Sender<bool>,
}

/// What the simulator received: an exact count and the requests themselves, the oldest
/// dropped past the limit.
pub(crate) struct Recorder {
    pub total: usize,
    pub kept: VecDeque<RecordedRequest>,
    limit: Option<usize>,
}

impl Recorder {
    fn new(limit: Option<usize>) -> Self {
        Recorder {
            total: 0,
            kept: VecDeque::new(),
            limit,
        }
    }

    fn push(&mut self, r: RecordedRequest) {
        self.total += 1;
        self.kept.push_back(r);
        if self.limit.is_some_and(|l| self.kept.len() > l) {
            self.kept.pop_front();
        }
    }
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not turn
/// every later simulator call into a second panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Binds, generates the data and spawns the accept loop.
pub(crate) async fn start(addr: SocketAddr, config: SimConfig) -> std::io::Result<Arc<Shared>> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let data = Dataset::generate(&GenParams {
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

/// A reply before it is turned into a response.
struct Reply {
    status: StatusCode,
    /// Serialized JSON.
    body: Bytes,
    retry_after: Option<u64>,
}

impl Reply {
    fn new(status: StatusCode, body: &impl serde::Serialize) -> Self {
        Self {
            status,
            // Serializing plain structs and maps cannot fail.
            body: serde_json::to_vec(body).unwrap_or_default().into(),
            retry_after: None,
        }
    }

    fn error(status: StatusCode, message: &str) -> Self {
        Self::new(status, &json!({ "error": message }))
    }

    fn too_many(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::error(StatusCode::TOO_MANY_REQUESTS, MSG_TOO_MANY)
        }
    }

    fn into_response(self, truncate: Option<Arc<Notify>>) -> Response<SimBody> {
        let bytes = self.body;
        let len = bytes.len();
        let body = match truncate {
            None => SimBody::full(bytes),
            Some(kill) => SimBody::truncated(bytes.slice(..len / 2), len as u64, kill),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
        if let Some(secs) = self.retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
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
            return Reply::error(status, MSG_SIMULATED).into_response(None);
        }
        Fault::RateLimited { retry_after_secs } => {
            return Reply::too_many(retry_after_secs).into_response(None);
        }
        Fault::ResetMidResponse => {
            return route(&shared, &recorded).into_response(Some(kill));
        }
        Fault::BlackHole => {
            // Never answer, not even at shutdown: the connection task drops
            // the connection then, and a late answer would race with that.
            return std::future::pending().await;
        }
    }
    route(&shared, &recorded).into_response(None)
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

#[derive(Clone, Copy)]
enum Route {
    List,
    Create,
    /// `/api/v1/companies/{id}/partnerships` with a raw id segment.
    CreateForCompany(Option<u64>),
}

fn match_route(method: &Method, path: &str) -> Option<Route> {
    let segments: Vec<&str> = path
        .strip_prefix("/api/v1/")?
        .split('/')
        .collect::<Vec<_>>();
    match (method, segments.as_slice()) {
        (&Method::GET, ["partnerships"]) => Some(Route::List),
        (&Method::POST, ["partnerships"]) => Some(Route::Create),
        (&Method::POST, ["companies", id, "partnerships"]) => {
            let id = (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
                .then(|| id.parse().ok())
                .flatten();
            Some(Route::CreateForCompany(id))
        }
        _ => None,
    }
}

/// Auth, rate limit, routing and the endpoint logic.
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
        return Reply::error(StatusCode::NOT_FOUND, MSG_NOT_FOUND);
    };
    match route {
        Route::List if !key.read => Reply::error(StatusCode::FORBIDDEN, MSG_NEED_READ),
        Route::List => handle_list(shared, req),
        Route::Create | Route::CreateForCompany(_) if !key.write => {
            Reply::error(StatusCode::FORBIDDEN, MSG_NEED_WRITE)
        }
        Route::CreateForCompany(id) if id != Some(shared.config.company_id) => {
            Reply::error(StatusCode::NOT_FOUND, MSG_NO_COMPANY)
        }
        Route::Create | Route::CreateForCompany(_) => handle_create(shared, req),
    }
}

fn handle_list(shared: &Shared, req: &RecordedRequest) -> Reply {
    let query = match parse_list_query(req.query.as_deref()) {
        Ok(q) => q,
        Err(QueryError::MissingUserId) => {
            return Reply::error(StatusCode::BAD_REQUEST, MSG_NO_USER_ID)
        }
        Err(QueryError::Invalid) => return Reply::error(StatusCode::BAD_REQUEST, MSG_BAD_QUERY),
    };
    let data = lock(&shared.data);
    if data.user(query.user_id).is_none() {
        return Reply::error(StatusCode::NOT_FOUND, MSG_NO_COMPANY);
    }
    Reply::new(
        StatusCode::OK,
        &list(&data, &query, shared.config.page_size),
    )
}

/// `application/json`, optionally with parameters or a `+json` suffix type.
fn is_json_content_type(headers: &http::HeaderMap) -> bool {
    let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The documented 201 body (a struct keeps the documented key order).
#[derive(serde::Serialize)]
struct Created {
    status: &'static str,
    message: &'static str,
}

fn handle_create(shared: &Shared, req: &RecordedRequest) -> Reply {
    if !is_json_content_type(&req.headers) {
        return Reply::error(StatusCode::BAD_REQUEST, MSG_BAD_BODY);
    }
    let mut data = lock(&shared.data);
    let rules = DomainRules {
        free_mail: &shared.config.free_mail_domains,
        company_domains: &shared.config.company_domains,
    };
    match validate_create(&req.body, &data, &rules) {
        Ok(new) => {
            data.insert(new);
            Reply::new(
                StatusCode::CREATED,
                &Created {
                    status: "created",
                    message: "Partnership created successfully",
                },
            )
        }
        Err(CreateError::Invalid) => Reply::error(StatusCode::BAD_REQUEST, MSG_BAD_BODY),
        Err(CreateError::Domain) => Reply::error(StatusCode::NOT_ACCEPTABLE, MSG_BAD_DOMAIN),
        Err(CreateError::Exists) => Reply::error(StatusCode::CONFLICT, MSG_EXISTS),
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
