//! The outermost layer: the request id, the request's one deadline, the in-flight gauge, the
//! request metrics and the access log ([`access`](crate::observe::access)). Being outermost,
//! it sees every answer, rejections included.
//!
//! A read is answered at its deadline at the latest, and cancelled with its client (nothing
//! it does needs recording). A write runs to completion once accepted: driven by its request
//! while the client waits, in a task of its own once the client leaves or the deadline
//! answers it ([`writes`](crate::observe::writes)).

use crate::error::{GatewayError, Response};
use crate::exchange::{Accepted, Reply, RequestId, SendGate};
use crate::observe::access::{Delivery, Record};
use crate::observe::metrics::RequestMetrics;
use crate::observe::request_id::{request_id, X_REQUEST_ID};
use crate::observe::trace::{TraceContext, Tracer};
use crate::observe::writes::{detach, Writes};
use crate::timeouts::Deadline;
use crate::BoxFuture;
use http::{Method, Request};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service};

/// Adds request ids, the deadline, metrics and access logging around the stack.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<RequestMetrics>,
    request_timeout: Duration,
    writes: Arc<Writes>,
    tracer: Option<Arc<Tracer>>,
}

impl ObserveLayer {
    /// A layer recording into `metrics`, giving each request `request_timeout`, and counting
    /// the writes it runs in tasks of their own in `writes`.
    pub fn new(
        metrics: Arc<RequestMetrics>,
        request_timeout: Duration,
        writes: Arc<Writes>,
    ) -> Self {
        Self {
            metrics,
            request_timeout,
            writes,
            tracer: None,
        }
    }

    /// Records each sampled request's span (the request, and the steps of the layers below)
    /// into `tracer`.
    pub fn with_tracer(mut self, tracer: Option<Arc<Tracer>>) -> Self {
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
    metrics: Arc<RequestMetrics>,
    request_timeout: Duration,
    writes: Arc<Writes>,
    tracer: Option<Arc<Tracer>>,
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
        let trace = req.extensions_mut().get_mut::<TraceContext>();
        if let (Some(tracer), Some(trace)) = (&self.tracer, trace) {
            trace.sample(tracer);
        }
        let trace = req.extensions().get::<TraceContext>();
        let deadline = Deadline::starting(started, self.request_timeout);
        let id = request_id(req.headers().get(X_REQUEST_ID));
        let method = req.method().clone();
        let read = is_read(&method);
        let record = Record::start(id.clone(), trace, method, started, self.metrics.clone());
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
        detach(&self.writes, fut, record, gate, deadline, id)
    }
}
