//! Request limits answered before any work: URI length (414), header size (431), and load
//! shedding at the global in-flight limit (503 + `Retry-After`, at once, never queued).

use crate::error::GatewayError;
use crate::exchange::{Accepted, Reply};
use crate::step::{Guarded, Step};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The limits, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest accepted request target (path and query), in bytes.
    pub max_uri_length: usize,
    /// Largest accepted header section (names, values and per-field overhead), in bytes.
    pub max_header_size: usize,
    /// Requests processed at once; beyond it new ones are shed.
    pub max_in_flight: usize,
}

/// Applies [`Limits`].
#[derive(Clone)]
pub struct LimitsLayer {
    limits: Limits,
    in_flight: Arc<AtomicUsize>,
}

impl LimitsLayer {
    /// A layer enforcing `limits` on `in_flight`, a counter shared by every generation of
    /// the stack (so a config reload does not reset the load it sheds on).
    pub fn new(limits: Limits, in_flight: Arc<AtomicUsize>) -> Self {
        Self { limits, in_flight }
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limited<S>;
    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            limits: self.limits,
            in_flight: self.in_flight.clone(),
        }
    }
}

/// Service produced by [`LimitsLayer`].
#[derive(Clone)]
pub struct Limited<S> {
    inner: S,
    limits: Limits,
    in_flight: Arc<AtomicUsize>,
}

/// Releases an in-flight slot however the request ends.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Header section size as HTTP/2's SETTINGS_MAX_HEADER_LIST_SIZE counts it (RFC 9113 §6.5.2):
/// name + value + 32 per field, so the limit means the same on HTTP/1.1 and HTTP/2.
fn header_size(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 32)
        .sum()
}

impl<S, B> Service<Accepted<B>> for Limited<S>
where
    S: Service<Accepted<B>, Response = Reply, Error = Infallible>,
    S::Future: Unpin,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = Step<Guarded<S::Future, Slot>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Accepted<B>) -> Self::Future {
        let http = &req.http;
        let uri_len = http
            .uri()
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len());
        let refused = if uri_len > self.limits.max_uri_length {
            Some(GatewayError::UriTooLong {
                limit: self.limits.max_uri_length,
            })
        } else if header_size(http.headers()) > self.limits.max_header_size {
            Some(GatewayError::HeadersTooLarge {
                limit: self.limits.max_header_size,
            })
        } else if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.limits.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            Some(GatewayError::Overloaded)
        } else {
            None
        };
        if let Some(e) = refused {
            return Step::boxed(crate::ingress::drain::reject(
                req.http.into_body(),
                e.into(),
            ));
        }
        let slot = Slot(self.in_flight.clone());
        Step::next(Guarded::new(self.inner.call(req), slot))
    }
}
