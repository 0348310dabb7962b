//! Observability: the outermost layer (request id, deadline, access log, request metrics,
//! writes run to completion), the log writer, the audit trail, the metrics registry and trace
//! context with its OTLP export.

pub mod audit;
pub mod layer;
pub mod logging;
pub mod metrics;
pub mod registry;
pub mod trace;
