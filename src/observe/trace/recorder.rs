//! The recording side of tracing: a finished span goes into a bounded queue (`max_queue_size`)
//! without waiting; when the queue is full it is dropped and counted
//! (`jbgw_trace_spans_dropped_total{reason="queue_full"}`), so a slow or dead collector never
//! slows a request. [`super::export`] takes the spans off the queue.
//!
//! Attribute values are `&'static str` or integers only: nothing a client sent (a header, a
//! token, a query) can become an attribute, so no secret can reach a collector.

use crate::observe::metrics::RequestMetrics;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot};

/// What a span is, in OTLP's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A step inside the gateway.
    Internal = 1,
    /// The request the gateway serves.
    Server = 2,
    /// The call to JourneyBee.
    Client = 3,
}

/// An attribute value: a static string or an integer, never request data.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    /// A label from a fixed set (route template, cache result, budget class...).
    Str(&'static str),
    /// A number (a status code).
    Int(i64),
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Value {
        Value::Str(s)
    }
}

impl From<u16> for Value {
    fn from(n: u16) -> Value {
        Value::Int(i64::from(n))
    }
}

/// The method as an attribute: the standard ones, else `_OTHER` (as OpenTelemetry's HTTP
/// conventions name it).
pub fn method(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "_OTHER",
    }
}

/// A finished span, waiting for export.
#[derive(Debug)]
pub(super) struct Finished {
    pub(super) trace_id: [u8; 16],
    pub(super) span_id: [u8; 8],
    pub(super) parent: Option<[u8; 8]>,
    /// The parent is the caller's (another process).
    pub(super) remote_parent: bool,
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) start: SystemTime,
    pub(super) end: SystemTime,
    pub(super) attrs: Vec<(&'static str, Value)>,
    pub(super) error: bool,
}

pub(super) enum Msg {
    Span(Box<Finished>),
    Flush(oneshot::Sender<()>),
}

/// The span recorder and exporter of one config generation.
pub struct Tracer {
    pub(super) ratio: f64,
    pub(super) queue: mpsc::Sender<Msg>,
    pub(super) metrics: Arc<RequestMetrics>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("ratio", &self.ratio)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

/// A request's handle on the tracer, carried in its [`TraceContext`](super::TraceContext) when it is sampled.
#[derive(Debug, Clone)]
pub struct Recorder(pub(super) Arc<Tracer>);

impl PartialEq for Recorder {
    fn eq(&self, other: &Recorder) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Recorder {}

impl Tracer {
    pub(super) fn record(&self, span: Finished) {
        if self.queue.try_send(Msg::Span(Box::new(span))).is_err() {
            self.metrics.trace_spans_dropped("queue_full", 1);
        }
    }

    /// Exports every span queued so far, and returns once the collector answered (or the
    /// export failed).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}
