//! Observability: the outermost layer ([`layer`]: request id, deadline, in-flight gauge,
//! request metrics), the request's access-log line ([`access`]), writes run to completion
//! ([`writes`]), the log writer, the audit trail, the metrics registry and trace context with
//! its OTLP export.

pub mod access;
pub mod audit;
pub mod layer;
pub mod logging;
pub mod metrics;
pub mod registry;
pub mod request_id;
pub mod trace;
pub mod writes;
