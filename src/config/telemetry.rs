//! `[tracing]`: OTLP/HTTP span export.

use super::problems::Problems;
use super::raw::RawTracing;
use std::time::Duration;

/// Validated `[tracing]`: present only when `otlp_endpoint` is set.
#[derive(Debug, Clone)]
pub struct TracingSettings {
    /// Where spans are POSTed (OTLP/HTTP, protobuf): the collector's `/v1/traces` URL.
    pub otlp_endpoint: http::Uri,
    /// The share of traces started here that are recorded (a caller's sampled flag is
    /// followed as it is).
    pub sample_ratio: f64,
    /// How long a span may wait in the queue before its batch is sent.
    pub export_interval: Duration,
    /// Spans waiting for export; more are dropped (and counted).
    pub max_queue_size: usize,
    /// Spans per export request.
    pub max_export_batch_size: usize,
    /// One export's limit.
    pub export_timeout: Duration,
}

/// Validates `[tracing]`: None when no endpoint is set (no span is recorded).
pub(super) fn validate_tracing(raw: &RawTracing, p: &mut Problems) -> Option<TracingSettings> {
    let sample_ratio = match raw.sample_ratio {
        None => 1.0,
        Some(r) if r.is_finite() && (0.0..=1.0).contains(&r) => r,
        Some(_) => {
            p.push("tracing.sample_ratio", "must be between 0 and 1");
            1.0
        }
    };
    let export_interval = p.duration(
        "tracing.export_interval",
        raw.export_interval.as_deref(),
        Duration::from_secs(5),
    );
    let export_timeout = p.duration(
        "tracing.export_timeout",
        raw.export_timeout.as_deref(),
        Duration::from_secs(10),
    );
    for (path, d) in [
        ("tracing.export_interval", export_interval),
        ("tracing.export_timeout", export_timeout),
    ] {
        if d.is_zero() {
            p.push(path, "must be greater than zero");
        }
    }
    let max_queue_size = p.positive("tracing.max_queue_size", raw.max_queue_size, 2048);
    let max_export_batch_size = p.positive(
        "tracing.max_export_batch_size",
        raw.max_export_batch_size,
        512,
    );
    if max_export_batch_size > max_queue_size {
        p.push(
            "tracing.max_export_batch_size",
            "must be at most max_queue_size",
        );
    }
    let endpoint = raw.otlp_endpoint.as_deref()?;
    match endpoint.parse::<http::Uri>() {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some() =>
        {
            if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                p.push(
                    "tracing.otlp_endpoint",
                    "must not carry credentials in the URL",
                );
                return None;
            }
            Some(TracingSettings {
                otlp_endpoint: uri,
                sample_ratio,
                export_interval,
                max_queue_size,
                max_export_batch_size,
                export_timeout,
            })
        }
        _ => {
            p.push(
                "tracing.otlp_endpoint",
                "must be an http:// or https:// URL (the collector's /v1/traces)",
            );
            None
        }
    }
}
