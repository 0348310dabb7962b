//! Tracing: W3C Trace Context on every request ([`context`]), spans for the request and its
//! steps ([`span`]), recorded into a bounded queue ([`recorder`]) and exported with OTLP/HTTP
//! ([`export`], messages in `otlp`).

pub mod context;
pub mod export;
mod otlp;
pub mod recorder;
pub mod span;

pub use context::*;
pub use recorder::{method, Kind, Recorder, Tracer};
pub use span::Span;
