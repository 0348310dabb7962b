//! Span recording and OTLP/HTTP export (protobuf), when `[tracing] otlp_endpoint` is set.
//!
//! A finished span goes into a bounded queue (`max_queue_size`) without waiting: when the
//! queue is full it is dropped and counted (`jbgw_trace_spans_dropped_total{reason=
//! "queue_full"}`), so a slow or dead collector never slows a request. One task per config
//! generation takes the spans off the queue, batches them (`max_export_batch_size`, or what
//! came within `export_interval`) and POSTs each batch to the endpoint with the gateway's own
//! pooled client (the IdP's: same TLS stack, same roots); a batch the collector does not take
//! is dropped and counted (`reason="export_failed"`), never retried (spans are telemetry, and
//! a retry would hold the queue). Shutdown flushes what is queued.
//!
//! Attribute values are `&'static str` or integers only: nothing a client sent (a header, a
//! token, a query) can become an attribute, so no secret can reach a collector.

use super::otlp;
use super::TraceContext;
use crate::config::TracingSettings;
use crate::observe::metrics::Metrics;
use crate::upstream::HttpClient;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
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
struct Finished {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    /// The parent is the caller's (another process).
    remote_parent: bool,
    name: &'static str,
    kind: Kind,
    start: SystemTime,
    end: SystemTime,
    attrs: Vec<(&'static str, Value)>,
    error: bool,
}

enum Msg {
    Span(Box<Finished>),
    Flush(oneshot::Sender<()>),
}

/// The span recorder and exporter of one config generation.
pub struct Tracer {
    ratio: f64,
    queue: mpsc::Sender<Msg>,
    metrics: Arc<Metrics>,
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

/// A request's handle on the tracer, carried in its [`TraceContext`] when it is sampled.
#[derive(Debug, Clone)]
pub struct Recorder(Arc<Tracer>);

impl PartialEq for Recorder {
    fn eq(&self, other: &Recorder) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Recorder {}

impl Tracer {
    /// Starts the export task (on the current runtime) for `settings`, posting with `client`.
    pub fn start(
        settings: &TracingSettings,
        client: HttpClient,
        metrics: Arc<Metrics>,
    ) -> Arc<Tracer> {
        let (queue, rx) = mpsc::channel(settings.max_queue_size);
        tokio::spawn(run(
            rx,
            Exporter {
                client,
                endpoint: settings.otlp_endpoint.clone(),
                timeout: settings.export_timeout,
                metrics: metrics.clone(),
            },
            settings.export_interval,
            settings.max_export_batch_size,
        ));
        Arc::new(Tracer {
            ratio: settings.sample_ratio,
            queue,
            metrics,
        })
    }

    /// Decides whether the request is recorded, parent-based: a caller's sampled flag is
    /// followed; a trace started here is sampled with `sample_ratio`. The decision goes
    /// upstream in the flags of `traceparent`.
    pub fn sample(self: &Arc<Self>, ctx: &mut TraceContext) {
        let sampled = match ctx.parent_id {
            Some(_) => ctx.flags & 1 == 1,
            None => self.ratio >= 1.0 || (self.ratio > 0.0 && fastrand::f64() < self.ratio),
        };
        ctx.flags = u8::from(sampled);
        ctx.recorder = sampled.then(|| Recorder(self.clone()));
    }

    fn record(&self, span: Finished) {
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

/// One span in progress; recorded when dropped (so a cancelled step is still a span). A
/// request that is not sampled gets an inert span that still has an id (the upstream call's
/// is propagated either way).
#[derive(Debug)]
pub struct Span {
    id: [u8; 8],
    open: Option<Box<Open>>,
}

#[derive(Debug)]
struct Open {
    recorder: Recorder,
    trace_id: [u8; 16],
    parent: Option<[u8; 8]>,
    remote_parent: bool,
    name: &'static str,
    kind: Kind,
    start: SystemTime,
    attrs: Vec<(&'static str, Value)>,
    error: bool,
}

impl Span {
    /// The request's own span (its id is the context's `span_id`, its parent the caller's).
    pub fn request(ctx: Option<&TraceContext>) -> Span {
        let Some(ctx) = ctx else {
            return Span::none();
        };
        Span::open(
            ctx,
            ctx.span_id,
            ctx.parent_id,
            true,
            "request",
            Kind::Server,
        )
    }

    /// A step of the request: a child of the request's span.
    pub fn child(ctx: Option<&TraceContext>, name: &'static str, kind: Kind) -> Span {
        let Some(ctx) = ctx else {
            return Span::none();
        };
        Span::open(
            ctx,
            super::nonzero_span(),
            Some(ctx.span_id),
            false,
            name,
            kind,
        )
    }

    fn none() -> Span {
        Span {
            id: [0; 8],
            open: None,
        }
    }

    fn open(
        ctx: &TraceContext,
        id: [u8; 8],
        parent: Option<[u8; 8]>,
        remote_parent: bool,
        name: &'static str,
        kind: Kind,
    ) -> Span {
        Span {
            id,
            open: ctx.recorder.as_ref().map(|recorder| {
                Box::new(Open {
                    recorder: recorder.clone(),
                    trace_id: ctx.trace_id.0,
                    parent,
                    remote_parent: remote_parent && parent.is_some(),
                    name,
                    kind,
                    start: SystemTime::now(),
                    attrs: Vec::with_capacity(6),
                    error: false,
                })
            }),
        }
    }

    /// The span's id (zero without a trace context).
    pub fn id(&self) -> [u8; 8] {
        self.id
    }

    /// Sets an attribute (only kept when the request is sampled).
    pub fn attr(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(open) = &mut self.open {
            open.attrs.push((key, value.into()));
        }
    }

    /// Marks the span failed.
    pub fn error(&mut self) {
        if let Some(open) = &mut self.open {
            open.error = true;
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            let Open {
                recorder,
                trace_id,
                parent,
                remote_parent,
                name,
                kind,
                start,
                attrs,
                error,
            } = *open;
            recorder.0.record(Finished {
                trace_id,
                span_id: self.id,
                parent,
                remote_parent,
                name,
                kind,
                start,
                end: SystemTime::now(),
                attrs,
                error,
            });
        }
    }
}

struct Exporter {
    client: HttpClient,
    endpoint: http::Uri,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

/// Batches the queue into exports until every sender is gone (the generation was replaced
/// and its last request ended), then exports the rest.
async fn run(
    mut rx: mpsc::Receiver<Msg>,
    exporter: Exporter,
    interval: Duration,
    max_batch: usize,
) {
    let mut batch: Vec<Finished> = Vec::with_capacity(max_batch);
    // The first tick one interval from now (tokio's would be at once).
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Span(span)) => {
                    batch.push(*span);
                    if batch.len() >= max_batch {
                        exporter.export(&mut batch).await;
                    }
                }
                Some(Msg::Flush(done)) => {
                    exporter.export(&mut batch).await;
                    let _ = done.send(());
                }
                None => {
                    exporter.export(&mut batch).await;
                    return;
                }
            },
            _ = tick.tick() => exporter.export(&mut batch).await,
        }
    }
}

impl Exporter {
    async fn export(&self, batch: &mut Vec<Finished>) {
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        let body = encode(batch.drain(..));
        let req = http::Request::post(self.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        let sent = tokio::time::timeout(self.timeout, async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            // Read to the end so the connection is reused.
            let _ = resp.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("collector answered {status}"))
            }
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        if let Err(e) = sent {
            self.metrics.trace_spans_dropped("export_failed", count);
            tracing::warn!(spans = count, error = %e, "span export failed; spans dropped");
        }
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn encode(spans: impl Iterator<Item = Finished>) -> Vec<u8> {
    let kv = |key: &str, value: Value| otlp::KeyValue {
        key: key.to_string(),
        value: Some(otlp::AnyValue {
            value: Some(match value {
                Value::Str(s) => otlp::Value::StringValue(s.to_string()),
                Value::Int(n) => otlp::Value::IntValue(n),
            }),
        }),
    };
    let spans = spans
        .map(|s| otlp::Span {
            trace_id: s.trace_id.to_vec(),
            span_id: s.span_id.to_vec(),
            parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: s.name.to_string(),
            kind: s.kind as i32,
            start_time_unix_nano: unix_nanos(s.start),
            end_time_unix_nano: unix_nanos(s.end),
            attributes: s.attrs.iter().map(|(k, v)| kv(k, *v)).collect(),
            status: Some(otlp::Status {
                code: if s.error { 2 } else { 0 },
            }),
            // Sampled (only sampled spans are recorded); whether the parent is remote is known.
            flags: 0x01 | 0x100 | if s.remote_parent { 0x200 } else { 0 },
        })
        .collect();
    otlp::ExportTraceServiceRequest {
        resource_spans: vec![otlp::ResourceSpans {
            resource: Some(otlp::Resource {
                attributes: vec![kv("service.name", Value::Str("journeybee-gateway"))],
            }),
            scope_spans: vec![otlp::ScopeSpans {
                scope: Some(otlp::InstrumentationScope {
                    name: "journeybee-gateway".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                }),
                spans,
            }],
        }],
    }
    .encode_to_vec()
}
