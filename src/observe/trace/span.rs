//! Spans: the request's own, and one per step (authentication, the cache decision, the budget
//! decision, the upstream call), recorded when dropped.

use super::context::{nonzero_span, TraceContext};
use super::recorder::{Finished, Kind, Recorder, Value};
use std::time::SystemTime;

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
        Span::open(ctx, nonzero_span(), Some(ctx.span_id), false, name, kind)
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
