//! The outermost layer: request id, the request's one deadline, in-flight gauge, request
//! metrics and the access log. Being outermost, it sees every answer, rejections included.
//!
//! A write runs to completion once accepted: the rest of its stack runs in a task of its own,
//! so neither a client that hangs up nor the whole-request timeout can cancel it between
//! "sent to JourneyBee" and "outcome recorded" (audit event, idempotency record, cache
//! invalidation, access-log line). The client that is still there gets the answer; one that
//! timed out gets a 504 saying the write may have been applied, and the access-log line
//! written when the write finishes says what really happened. A read is cancelled with its
//! client (nothing it does needs recording).
//!
//! The writes' tasks are counted in [`Writes`], which the server owns: shutdown waits for
//! them within the grace (their clients may be long gone), and tells the ones still running
//! when the grace is over to give up, so each is logged (its audit event says `unknown`)
//! instead of vanishing with the process.

use crate::error::{GatewayError, Response};
use crate::exchange::{Accepted, Reply, RequestId, SendGate};
use crate::ingress::route::Route;
use crate::observe::metrics::Metrics;
use crate::timeouts::Deadline;
use crate::BoxFuture;
use http::{HeaderValue, Method, Request};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tower::{Layer, Service};

const X_REQUEST_ID: &str = "x-request-id";

/// A client id is kept when it is 1–128 visible ASCII characters, so it can go into logs and
/// upstream headers without escaping.
fn sane_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| (0x21..=0x7e).contains(c))
}

fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut out = [0u8; 32];
    for b in out.iter_mut().rev() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    HeaderValue::from_bytes(&out).expect("hex is a valid header value")
}

/// The writes running in tasks of their own, across every generation of the stack: shutdown
/// waits for them ([`Writes::settle`]) and, when the grace is over, tells the rest to give
/// up (each then logs what is known of it).
#[derive(Debug)]
pub struct Writes {
    running: AtomicUsize,
    /// Woken when `running` drops to zero.
    idle: Notify,
    /// Set when the grace is over.
    abandon: watch::Sender<bool>,
}

impl Default for Writes {
    fn default() -> Self {
        Writes {
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            abandon: watch::Sender::new(false),
        }
    }
}

/// One write's place in [`Writes`], held by its task: released however the task ends.
struct Running(Arc<Writes>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Writes {
    fn begin(self: &Arc<Self>) -> Running {
        self.running.fetch_add(1, Ordering::AcqRel);
        Running(self.clone())
    }

    /// Writes whose task has not ended.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Resolves once no write is running.
    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a task ending in between is not missed.
            notified.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Resolves when the grace is over for the writes still running.
    async fn abandoned(&self) {
        let mut rx = self.abandon.subscribe();
        let _ = rx.wait_for(|over| *over).await;
    }

    /// Waits until `deadline` for every running write to end; those still running then are
    /// told to give up (each logs its audit event with the outcome `unknown`, or `not_sent`
    /// if it never left), and this returns once they have. Returns how many gave up.
    pub async fn settle(&self, deadline: Instant) -> usize {
        if tokio::time::timeout_at(deadline, self.idle()).await.is_ok() {
            return 0;
        }
        let left = self.running();
        tracing::error!(
            writes = left,
            "shutdown grace over with writes still waiting for JourneyBee: logged as unknown"
        );
        self.abandon.send_replace(true);
        // Giving up is immediate (each task drops its request and logs); bounded anyway, so
        // a wedged task cannot keep the process from exiting.
        let _ = tokio::time::timeout_at(crate::timeouts::abandoned_writes(), self.idle()).await;
        left
    }
}

/// Adds request ids, the deadline, metrics and access logging around the stack.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
    request_timeout: Duration,
    writes: Arc<Writes>,
    tracer: Option<Arc<crate::observe::trace::Tracer>>,
}

impl ObserveLayer {
    /// A layer recording into `metrics`, giving each request `request_timeout`, and counting
    /// the writes it runs in tasks of their own in `writes`.
    pub fn new(metrics: Arc<Metrics>, request_timeout: Duration, writes: Arc<Writes>) -> Self {
        Self {
            metrics,
            request_timeout,
            writes,
            tracer: None,
        }
    }

    /// Records each sampled request's span (the request, and the steps of the layers below)
    /// into `tracer`.
    pub fn with_tracer(mut self, tracer: Option<Arc<crate::observe::trace::Tracer>>) -> Self {
        self.tracer = tracer;
        self
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.metrics.clone(),
            request_timeout: self.request_timeout,
            writes: self.writes.clone(),
            tracer: self.tracer.clone(),
        }
    }
}

/// Service produced by [`ObserveLayer`].
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
    request_timeout: Duration,
    writes: Arc<Writes>,
    tracer: Option<Arc<crate::observe::trace::Tracer>>,
}

/// How the client was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// It got the reply.
    Answered,
    /// It got a 504 at the deadline; the reply came later.
    TimedOut,
    /// It hung up before the reply.
    Gone,
}

impl Delivery {
    fn as_str(self) -> &'static str {
        match self {
            Delivery::Answered => "answered",
            Delivery::TimedOut => "timed_out",
            Delivery::Gone => "client_gone",
        }
    }
}

/// One request's record: logged and counted exactly once, when it ends however it ends.
struct Record {
    id: HeaderValue,
    /// The W3C trace id (set by the listener).
    trace_id: Option<crate::observe::trace::TraceId>,
    method: Method,
    started: Instant,
    metrics: Arc<Metrics>,
    done: bool,
    /// The request's span (inert unless sampled), ended with the record.
    span: crate::observe::trace::Span,
}

impl Record {
    /// Logs and counts the reply, and returns the response (with its id) for the client.
    fn finish(mut self, reply: Reply, delivery: Delivery) -> Response {
        self.done = true;
        let Reply {
            mut response,
            facts,
        } = reply;
        response.headers_mut().insert(X_REQUEST_ID, self.id.clone());
        let elapsed = self.started.elapsed();
        let route = facts.route.unwrap_or(Route::Unmatched);
        let outcome = response.status().as_u16();
        // What the client saw: 504 at the deadline, nginx's 499 for a client that left.
        let status = match delivery {
            Delivery::Answered => outcome,
            Delivery::TimedOut => 504,
            Delivery::Gone => 499,
        };
        self.metrics.request(route, &self.method, status, elapsed);
        let rejection = facts.rejection;
        let span = &mut self.span;
        span.attr(
            "http.request.method",
            crate::observe::trace::method(&self.method),
        );
        span.attr(
            "http.route",
            route.spec().map_or("unmatched", |s| s.template),
        );
        span.attr("http.response.status_code", status);
        if let Some(c) = facts.cache {
            span.attr("jbgw.cache.result", c.as_str());
        }
        if let Some(s) = facts.upstream.and_then(|u| u.status) {
            span.attr("jbgw.upstream.status_code", s);
        }
        if let Some(r) = rejection {
            span.attr("jbgw.rejected", r.kind());
            span.attr("jbgw.reason", r.reason());
        }
        if status >= 500 {
            span.error();
        }
        tracing::info!(
            target: "access",
            request_id = self.id.to_str().unwrap_or("-"),
            trace_id = self.trace_id.map(tracing::field::display),
            method = self.method.as_str(),
            route = route.label(),
            status,
            outcome_status = (delivery != Delivery::Answered).then_some(outcome),
            delivery = (delivery != Delivery::Answered).then_some(delivery.as_str()),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            upstream_status = facts.upstream.and_then(|u| u.status),
            upstream_ms = facts.upstream.map(|u| u.duration.as_secs_f64() * 1000.0),
            cache = facts.cache.map(|c| c.as_str()),
            user = facts.user.as_deref(),
            rejected = rejection.map(|r| r.kind()),
            reason = rejection.map(|r| r.reason()),
            detail = facts.detail.as_deref(),
            "request"
        );
        response
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.metrics.in_flight().dec();
        if !self.done {
            self.span.attr(
                "http.request.method",
                crate::observe::trace::method(&self.method),
            );
            self.span.attr("http.response.status_code", 499u16);
            // A read whose client hung up: cancelled with it, logged as nginx logs it.
            tracing::info!(
                target: "access",
                request_id = self.id.to_str().unwrap_or("-"),
                trace_id = self.trace_id.map(tracing::field::display),
                method = self.method.as_str(),
                status = 499u16,
                delivery = Delivery::Gone.as_str(),
                duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
                "request"
            );
        }
    }
}

/// Between a write's task and the request that waits for it: whoever moves it from WAITING
/// first decides how the client was answered.
const WAITING: u8 = 0;
const ANSWERED: u8 = 1;
const TIMED_OUT: u8 = 2;
const GONE: u8 = 3;

/// Marks the write's client gone if the waiting request is dropped before it answered.
struct Waiter(Arc<AtomicU8>);

impl Drop for Waiter {
    fn drop(&mut self) {
        let _ = self
            .0
            .compare_exchange(WAITING, GONE, Ordering::AcqRel, Ordering::Acquire);
    }
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl<S, B> Service<Request<B>> for Observe<S>
where
    S: Service<Accepted<B>, Response = Reply, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> BoxFuture<Response> {
        let started = Instant::now();
        // Sampled or not, decided once here for every span of the request (and upstream).
        let trace = req
            .extensions_mut()
            .get_mut::<crate::observe::trace::TraceContext>();
        if let (Some(tracer), Some(trace)) = (&self.tracer, trace) {
            trace.sample(tracer);
        }
        let trace = req
            .extensions()
            .get::<crate::observe::trace::TraceContext>();
        let deadline = Deadline::starting(started, self.request_timeout);
        let id = match req.headers().get(X_REQUEST_ID) {
            Some(v) if sane_request_id(v) => v.clone(),
            _ => new_request_id(),
        };
        let method = req.method().clone();
        self.metrics.in_flight().inc();
        let read = is_read(&method);
        let record = Record {
            id: id.clone(),
            trace_id: trace.map(|t| t.trace_id),
            span: crate::observe::trace::Span::request(trace),
            method,
            started,
            metrics: self.metrics.clone(),
            done: false,
        };
        let gate = if read {
            SendGate::default()
        } else {
            SendGate::open()
        };
        let fut = self.inner.call(Accepted {
            id: RequestId(id.clone()),
            deadline,
            gate: gate.clone(),
            http: req,
        });
        if read {
            return Box::pin(async move {
                let reply = match tokio::time::timeout_at(deadline.at(), fut).await {
                    Ok(Ok(reply)) => reply,
                    Ok(Err(never)) => match never {},
                    Err(_) => GatewayError::RequestTimeout.into(),
                };
                Ok(record.finish(reply, Delivery::Answered))
            });
        }
        let state = Arc::new(AtomicU8::new(WAITING));
        let shared = state.clone();
        let running = self.writes.begin();
        let task_gate = gate.clone();
        let mut task = tokio::spawn(async move {
            let writes = running.0.clone();
            let mut fut = Box::pin(fut);
            let reply = tokio::select! {
                biased;
                done = &mut fut => match done {
                    Ok(reply) => reply,
                    Err(never) => match never {},
                },
                () = writes.abandoned() => {
                    // Shutdown's grace is over: dropping the request logs its audit event
                    // with what is known (sent or not), then the access line says the same.
                    drop(fut);
                    let error = if task_gate.taken() {
                        GatewayError::CreateOutcomeUnknown("the gateway shut down first".into())
                    } else {
                        GatewayError::WriteTimedOutUnsent
                    };
                    error.into()
                }
            };
            let delivery = match shared.compare_exchange(
                WAITING,
                ANSWERED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => Delivery::Answered,
                Err(TIMED_OUT) => Delivery::TimedOut,
                Err(_) => Delivery::Gone,
            };
            let response = record.finish(reply, delivery);
            // Only now, its lines logged, may shutdown count it done.
            drop(running);
            response
        });
        Box::pin(async move {
            let waiter = Waiter(state);
            let joined = match tokio::time::timeout_at(deadline.at(), &mut task).await {
                Ok(joined) => joined,
                Err(_) => {
                    let gave_up = waiter
                        .0
                        .compare_exchange(WAITING, TIMED_OUT, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok();
                    if gave_up {
                        // The write goes on in its task and logs its real outcome there; the
                        // client hears whether it had been sent.
                        let error = if gate.close() {
                            GatewayError::WriteTimedOutUnsent
                        } else {
                            GatewayError::CreateOutcomeUnknown("whole-request timeout".into())
                        };
                        let mut resp = error.into_response();
                        resp.headers_mut().insert(X_REQUEST_ID, id);
                        return Ok(resp);
                    }
                    // It answered just as the deadline passed: that answer is ready.
                    task.await
                }
            };
            Ok(joined.unwrap_or_else(|e| {
                tracing::error!(error = %e, "a write's task failed");
                let mut resp = GatewayError::Internal("write task failed".into()).into_response();
                resp.headers_mut().insert(X_REQUEST_ID, id);
                resp
            }))
        })
    }
}
