//! The request's record: its metrics, its span and its access-log line, written exactly
//! once, when the request ends however it ends (answered, timed out, or its client gone).

use crate::error::Response;
use crate::exchange::Reply;
use crate::ingress::route::Route;
use crate::observe::metrics::RequestMetrics;
use crate::observe::request_id::X_REQUEST_ID;
use crate::observe::trace::{Span, TraceContext, TraceId};
use http::{HeaderValue, Method};
use std::sync::Arc;
use tokio::time::Instant;

/// How the client was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
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

/// One request's record: logged and counted exactly once, when it ends however it ends. It
/// holds the request's place in the in-flight gauge from [`Record::start`] until it is
/// dropped.
pub struct Record {
    id: HeaderValue,
    /// The W3C trace id (set by the listener).
    trace_id: Option<TraceId>,
    method: Method,
    started: Instant,
    metrics: Arc<RequestMetrics>,
    done: bool,
    /// The request's span (inert unless sampled), ended with the record.
    span: Span,
}

impl Record {
    /// The record of a request with id `id` that arrived at `started`, counted in flight.
    pub fn start(
        id: HeaderValue,
        trace: Option<&TraceContext>,
        method: Method,
        started: Instant,
        metrics: Arc<RequestMetrics>,
    ) -> Record {
        metrics.in_flight().inc();
        Record {
            id,
            trace_id: trace.map(|t| t.trace_id),
            span: Span::request(trace),
            method,
            started,
            metrics,
            done: false,
        }
    }

    /// Logs and counts the reply, and returns the response (with its id) for the client.
    pub fn finish(mut self, reply: Reply, delivery: Delivery) -> Response {
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
