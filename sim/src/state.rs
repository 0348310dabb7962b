//! The state of a running simulator, shared by the accept loop, the connections, the control
//! endpoints and the [`crate::SimHandle`]s: the data, the current [`Fault`], the request
//! recorder and the rate-limit windows. A leaf for `server` and `control`: both use it, it
//! uses neither.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::SimConfig;
use crate::data::Dataset;

/// Fault modes switchable at run time from tests.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Sleep this long before answering normally.
    Slow(Duration),
    /// Answer every request with this status and
    /// `{"error":"simulated failure"}` (an invalid code becomes 500).
    Status(u16),
    /// 429 with a `Retry-After` header and `{"error":"Too many requests"}`.
    RateLimited {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// Process the request normally (a create **does** happen), send the
    /// status line, the headers (with the full `Content-Length`) and part of
    /// the body, then drop the connection. This is the "did my POST go
    /// through?" case a gateway must not retry blindly. A reply without a
    /// body (the 204 of a DELETE) is not sent at all: the connection is
    /// dropped after the delete happened.
    ResetMidResponse,
    /// Read the request and never answer; the connection is held until
    /// [`crate::SimHandle::shutdown`].
    BlackHole,
}

/// One request as received by the simulator.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Request method.
    pub method: http::Method,
    /// Path without the query.
    pub path: String,
    /// Raw query string as received (still percent-encoded).
    pub query: Option<String>,
    /// All request headers.
    pub headers: http::HeaderMap,
    /// The complete request body.
    pub body: bytes::Bytes,
    /// The Bearer value of `Authorization`, if any (valid or not).
    pub api_key: Option<String>,
    /// When the request's head arrived at the simulator (its clock for the rate limit).
    pub received_at: std::time::Instant,
}

/// State shared by the accept loop, the connections and the handles.
pub(crate) struct Shared {
    pub addr: SocketAddr,
    pub config: SimConfig,
    pub data: Mutex<Dataset>,
    pub fault: Mutex<Fault>,
    pub recorded: Mutex<Recorder>,
    /// key → (window start, requests in window)
    pub rate: Mutex<HashMap<String, (Instant, u32)>>,
    /// key → arrival instants of the requests served within the sliding window, oldest first
    pub sliding: Mutex<HashMap<String, VecDeque<Instant>>>,
    /// 429s answered by the rate limit.
    pub rate_limited: AtomicUsize,
    pub shutdown: watch::Sender<bool>,
    pub stopped: watch::Sender<bool>,
}

/// What the simulator received: an exact count and the requests themselves, the oldest
/// dropped past the limit.
pub(crate) struct Recorder {
    pub total: usize,
    pub kept: VecDeque<RecordedRequest>,
    limit: Option<usize>,
}

impl Recorder {
    pub(crate) fn new(limit: Option<usize>) -> Self {
        Recorder {
            total: 0,
            kept: VecDeque::new(),
            limit,
        }
    }

    pub(crate) fn push(&mut self, r: RecordedRequest) {
        self.total += 1;
        self.kept.push_back(r);
        if self.limit.is_some_and(|l| self.kept.len() > l) {
            self.kept.pop_front();
        }
    }
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not turn
/// every later simulator call into a second panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
