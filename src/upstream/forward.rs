//! The upstream forward: the last service of the stack, the only place a request leaves.
//!
//! It swaps the client's credentials for the mapped API key, filters headers both ways,
//! buffers the response within a size and time limit, and answers 502/504 itself when
//! JourneyBee cannot be reached. A create is sent at most once: nothing here retries (the
//! pool moves a request to another connection only when the first gave it back unsent).

use super::pool::{self, PoolError};
use crate::config::UpstreamSettings;
use crate::error::GatewayError;
use crate::exchange::{Outbound, Reply, UpstreamMeta};
use crate::ingress::route::Route;
use crate::upstream::metrics::{UpstreamErrorKind, UpstreamMetrics};
use crate::BoxFuture;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri};
use http_body_util::Full;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::Service;

/// Headers never forwarded upstream, beyond the hop-by-hop set: the client's credentials,
/// proxy and forwarding headers, and headers the gateway sets or consumes itself.
fn is_dropped_request_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    is_hop_by_hop(name)
        || n.starts_with("proxy-")
        || n.starts_with("x-forwarded-")
        || matches!(
            n,
            "authorization"
                | "cookie"
                | "forwarded"
                | "x-real-ip"
                | "host"
                | "content-length"
                | "expect"
                | "user-agent"
                | "x-request-id"
                | "accept-encoding"
                | "cache-control"
                | "pragma"
                | "idempotency-key"
                | "traceparent"
                | "tracestate"
        )
}

/// RFC 9110 §7.6.1 connection-specific fields (plus the legacy ones proxies still see).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Field names listed in `Connection` headers are hop-by-hop too (RFC 9110 §7.6.1).
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// Copies the end-to-end headers of `src` that may travel upstream.
fn filter_request_headers(src: &HeaderMap, dst: &mut HeaderMap) {
    let named = connection_named(src);
    for (name, value) in src {
        if !is_dropped_request_header(name) && !named.contains(name) {
            dst.append(name.clone(), value.clone());
        }
    }
}

/// Removes hop-by-hop headers (and cookies: the upstream session belongs to the company key,
/// not to the app) from an upstream response before it goes to the client.
pub fn filter_response_headers(headers: &mut HeaderMap) {
    let named = connection_named(headers);
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::HeaderName::from_static("keep-alive"),
        header::HeaderName::from_static("proxy-connection"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::SET_COOKIE,
        header::CONTENT_LENGTH,
    ] {
        headers.remove(name);
    }
}

/// Where requests go and what they carry.
struct Target {
    /// The `Host` header: the upstream's authority.
    host: HeaderValue,
    path_prefix: String,
    response_timeout: Duration,
    max_response_size: usize,
    user_agent: HeaderValue,
}

/// The forwarding service.
#[derive(Clone)]
pub struct Upstream {
    /// Shared by every generation whose upstream settings are the same.
    pool: Arc<pool::Pool>,
    target: Arc<Target>,
    metrics: Arc<UpstreamMetrics>,
}

impl Upstream {
    /// A forwarder for `settings`, through `pool`.
    pub fn new(
        pool: Arc<pool::Pool>,
        settings: &UpstreamSettings,
        metrics: Arc<UpstreamMetrics>,
    ) -> Self {
        let user_agent =
            HeaderValue::from_static(concat!("journeybee-gateway/", env!("CARGO_PKG_VERSION")));
        Upstream {
            pool,
            target: Arc::new(Target {
                host: HeaderValue::from_str(settings.authority.as_str())
                    .expect("an authority is a valid header value"),
                path_prefix: settings.path_prefix.clone(),
                response_timeout: settings.response_timeout,
                max_response_size: settings.max_response_size,
                user_agent,
            }),
            metrics,
        }
    }

    /// Builds the upstream request.
    fn build(
        &self,
        out: Outbound,
        span_id: [u8; 8],
    ) -> Result<(Route, Request<Full<Bytes>>), GatewayError> {
        let Outbound {
            ctx,
            method,
            target,
            headers: client_headers,
            body,
            class: _,
            urgency: _,
        } = out;
        let t = &self.target;
        let route = ctx.spec.route;
        // The path was matched exactly by the router, and a read's query is the canonical
        // one: safe to forward as is.
        let path_and_query = if t.path_prefix.is_empty() {
            target
        } else {
            http::uri::PathAndQuery::try_from(format!("{}{}", t.path_prefix, target))
                .map_err(|e| GatewayError::Internal(format!("upstream uri: {e}")))?
        };
        // Origin-form, as a client sends to the server it is connected to (RFC 9112 §3.2.1).
        let uri = Uri::from(path_and_query);
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        // Sized once: the forwarded headers and the five set below.
        headers.reserve(client_headers.len() + 5);
        headers.insert(header::HOST, t.host.clone());
        if route.is_write() {
            filter_request_headers(&client_headers, headers);
        }
        // A read forwards no client header: every input that reaches upstream is part of the
        // cache key, and headers are not.
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            header::AUTHORIZATION,
            ctx.identity.key.authorization.clone(),
        );
        headers.insert(header::USER_AGENT, t.user_agent.clone());
        headers.insert(HeaderName::from_static("x-request-id"), ctx.id.0);
        // The trace continues upstream with the gateway's span for this call as parent; the
        // client's own trace headers were dropped above.
        if let Some(trace) = &ctx.trace {
            headers.insert(
                HeaderName::from_static(crate::observe::trace::TRACEPARENT),
                trace.traceparent_for(span_id),
            );
            if let Some(state) = &trace.state {
                headers.insert(
                    HeaderName::from_static(crate::observe::trace::TRACESTATE),
                    state.clone(),
                );
            }
        }
        Ok((route, req))
    }
}

impl Service<Outbound> for Upstream {
    type Response = Reply;
    type Error = Infallible;
    type Future = BoxFuture;

    /// Always ready: what bounds a forward (the connection slots, the key's budget, the
    /// breaker) depends on the request (its key, its deadline), so the guard in front waits
    /// for it in the request's future, where the deadline applies; the pool behind opens a
    /// connection when none is idle.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, out: Outbound) -> BoxFuture {
        // A write's gate goes to the pool, which takes it as it hands the request over; a
        // read (a create's lookups included, which carry the create's context) has none.
        let gate = out.ctx.spec.route.is_write().then(|| out.ctx.gate.clone());
        let deadline = out.ctx.deadline;
        // The upstream call's span (client): its id is the parent JourneyBee sees.
        let mut span = crate::observe::trace::Span::child(
            out.ctx.trace.as_ref(),
            "upstream",
            crate::observe::trace::Kind::Client,
        );
        span.attr(
            "http.request.method",
            crate::observe::trace::method(&out.method),
        );
        span.attr("http.route", out.ctx.spec.template);
        let built = self.build(out, span.id());
        let pool = self.pool.clone();
        let target = self.target.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let (route, out) = match built {
                Ok(b) => b,
                Err(e) => return Ok(e.into()),
            };
            let started = Instant::now();
            let exchange = pool.send(out, target.max_response_size, gate.as_ref());
            let until = deadline.upstream_attempt(target.response_timeout);
            let outcome = tokio::time::timeout_at(until, exchange).await;
            let duration = started.elapsed();
            // Any write may have been applied once handed to a connection: its outcome is
            // then unknown, never retried. Before that, it certainly was not sent.
            let create = route.is_write();
            let unsent = gate.as_ref().is_some_and(|g| !g.taken());
            let mut maybe_sent = true;
            let result = match outcome {
                Ok(Ok((mut parts, bytes))) => {
                    filter_response_headers(&mut parts.headers);
                    metrics.upstream_response(route, parts.status.as_u16(), duration);
                    let status = parts.status.as_u16();
                    span.attr("http.response.status_code", status);
                    if status >= 500 {
                        span.error();
                    }
                    let mut reply = Reply::new(http::Response::from_parts(parts, Full::new(bytes)));
                    reply.facts.upstream = Some(UpstreamMeta {
                        status: Some(status),
                        duration,
                        maybe_sent: true,
                    });
                    return Ok(reply);
                }
                Err(_elapsed) => {
                    metrics.upstream_error(route, UpstreamErrorKind::Timeout);
                    if unsent {
                        // No connection was ready in time (a `connect_timeout` longer than
                        // `response_timeout`): the write never left.
                        maybe_sent = false;
                        GatewayError::WriteNotSent("no connection within response_timeout".into())
                    } else if create {
                        GatewayError::CreateOutcomeUnknown("upstream response timed out".into())
                    } else {
                        GatewayError::UpstreamTimeout
                    }
                }
                Ok(Err(PoolError::Connect(e))) => {
                    metrics.upstream_error(route, UpstreamErrorKind::Connect);
                    // Never written: the request cannot have been sent, whatever the route.
                    maybe_sent = false;
                    if create {
                        GatewayError::WriteNotSent(error_chain(&*e))
                    } else {
                        GatewayError::UpstreamUnreachable(error_chain(&*e))
                    }
                }
                Ok(Err(PoolError::GateClosed)) => {
                    // Its client was answered "not sent" at the deadline: it never is.
                    maybe_sent = false;
                    GatewayError::WriteTimedOutUnsent
                }
                Ok(Err(PoolError::Exchange(e))) => {
                    metrics.upstream_error(route, UpstreamErrorKind::Other);
                    if create {
                        GatewayError::CreateOutcomeUnknown(error_chain(&*e))
                    } else {
                        GatewayError::UpstreamUnreachable(error_chain(&*e))
                    }
                }
                Ok(Err(PoolError::Body(crate::exchange::ReadError::TooLarge))) => {
                    metrics.upstream_error(route, UpstreamErrorKind::Other);
                    GatewayError::UpstreamTooLarge {
                        limit: target.max_response_size,
                    }
                }
                Ok(Err(PoolError::Body(crate::exchange::ReadError::Failed(e)))) => {
                    metrics.upstream_error(route, UpstreamErrorKind::Other);
                    if create {
                        GatewayError::CreateOutcomeUnknown(e.to_string())
                    } else {
                        GatewayError::UpstreamUnreachable(e.to_string())
                    }
                }
            };
            span.error();
            span.attr(
                "jbgw.upstream.error",
                if maybe_sent { "failed" } else { "not_sent" },
            );
            let mut reply = Reply::from(result);
            reply.facts.upstream = Some(UpstreamMeta {
                status: None,
                duration,
                maybe_sent,
            });
            Ok(reply)
        })
    }
}

/// The error and its sources on one line, for the log.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
