//! OTLP/HTTP export (protobuf) of recorded spans, when `[tracing] otlp_endpoint` is set.
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
use super::recorder::{Finished, Msg, Tracer, Value};
use crate::config::TracingSettings;
use crate::observe::metrics::RequestMetrics;
use crate::upstream::connect::HttpClient;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// Starts the export task (on the current runtime) for `settings`, posting with `client`.
pub fn start(
    settings: &TracingSettings,
    client: HttpClient,
    metrics: Arc<RequestMetrics>,
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

struct Exporter {
    client: HttpClient,
    endpoint: http::Uri,
    timeout: Duration,
    metrics: Arc<RequestMetrics>,
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
