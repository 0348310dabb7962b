//! What travels through the stack besides the HTTP message itself: the request's id and
//! deadline, the context every stage after identity mapping shares, the request that leaves
//! for upstream, and the reply with the facts the outermost layer logs and counts.
//!
//! This module is a leaf: it names data (the route table's specs, the config's identities)
//! and no layer, so every layer can depend on it without depending on another layer. Each
//! stage's own request type lives beside the layer that produces it (`route::Routed`,
//! `auth::Authenticated`, `identity::Identified`, `policy::Permitted`, `validate::Read` and
//! `validate::Write`): a layer takes the type of the stage before it, so it cannot be reached
//! without what that stage established.

use crate::config::Identity;
use crate::error::{GatewayError, Rejection, Response};
use crate::ingress::route::table::RouteSpec;
use crate::state::{Settle, StoredOutcome};
use crate::timeouts::Deadline;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The request's id: the client's `X-Request-Id` when sane, else a new one.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// A request as the outermost layer accepted it: its id and its one deadline. Every wait
/// after this (the body, a connection slot, a key set) ends at the deadline at the latest;
/// only a write already sent upstream outlives it, to learn its outcome.
#[derive(Debug)]
pub struct Accepted<B> {
    /// The request id (echoed to the client, forwarded upstream, logged).
    pub id: RequestId,
    /// When the whole request must be answered (`server.request_timeout` after arrival).
    pub deadline: Deadline,
    /// Whether a write may still be sent.
    pub gate: SendGate,
    /// The HTTP request.
    pub http: Request<B>,
}

/// Decides, once, between a write's send and its client's answer at the deadline: the
/// upstream pool takes the gate as it hands the request to a ready connection, the observe
/// layer closes it when it answers the client at the deadline. Whichever comes first wins, so
/// a client answered at its deadline is told the truth: "may have been applied" only if the
/// write had been handed to a connection, else "not sent" (while it waited for a slot, for a
/// connection, for a TLS handshake), and then it never is. Reads have no gate (a read is
/// cancelled with its client).
#[derive(Debug, Clone, Default)]
pub struct SendGate(Option<Arc<AtomicU8>>);

const GATE_OPEN: u8 = 0;
const GATE_SENT: u8 = 1;
const GATE_CLOSED: u8 = 2;

impl SendGate {
    /// An open gate, for a write.
    pub fn open() -> SendGate {
        SendGate(Some(Arc::new(AtomicU8::new(GATE_OPEN))))
    }

    /// The pool, about to hand the write to a connection: false when the client was already
    /// told it was not sent.
    pub fn take(&self) -> bool {
        self.0.as_ref().is_none_or(|g| {
            match g.compare_exchange(GATE_OPEN, GATE_SENT, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => true,
                Err(now) => now == GATE_SENT,
            }
        })
    }

    /// The pool, given the request back unwritten by a connection that ended: not sent
    /// after all, so a deadline that comes now answers "not sent" (unless the retry on
    /// another connection takes the gate first).
    pub fn untake(&self) {
        if let Some(g) = &self.0 {
            let _ = g.compare_exchange(GATE_SENT, GATE_OPEN, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Whether the write may have been handed to upstream: the gate was taken (always true
    /// without a gate, as a read's outcome is never claimed to be unsent).
    pub fn taken(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|g| g.load(Ordering::Acquire) == GATE_SENT)
    }

    /// Whether the client was already told the write was not sent (so it must not be).
    pub fn is_closed(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|g| g.load(Ordering::Acquire) == GATE_CLOSED)
    }

    /// The observe layer, answering at the deadline: true when the write had not been sent
    /// (and now will not be).
    pub fn close(&self) -> bool {
        self.0.as_ref().is_some_and(|g| {
            g.compare_exchange(GATE_OPEN, GATE_CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }
}

/// What every stage after identity mapping knows.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The request id.
    pub id: RequestId,
    /// The request's deadline.
    pub deadline: Deadline,
    /// Whether a write may still be sent.
    pub gate: SendGate,
    /// The matched route.
    pub spec: &'static RouteSpec,
    /// Who is asking, as which upstream key and JourneyBee user.
    pub identity: Arc<Identity>,
    /// The W3C trace context (None: a request that did not come through the listener).
    pub trace: Option<crate::observe::trace::TraceContext>,
}

/// What an upstream call is spent on, deciding how much of a key's budget it may use: a
/// saturated key spends first on what nobody can be answered without (`Write`, `Cold`,
/// `Lookup`), and refreshes copies people already have (`Refresh`, `Forced`) only from the
/// headroom above `[rate_limit] refresh_reserve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetClass {
    /// A create, update or delete.
    Write,
    /// A read with no copy anywhere (neither local nor in the shared L2).
    Cold,
    /// A read refreshing a copy that exists (stale, or refreshed in the background).
    Refresh,
    /// A read the client forced past the cache (`Cache-Control: no-cache`, `max-age=0`).
    Forced,
    /// A company lookup fetched for a write's reference checks.
    Lookup,
}

impl BudgetClass {
    /// Every class, for pre-resolving metric label sets.
    pub const ALL: [BudgetClass; 5] = [
        BudgetClass::Write,
        BudgetClass::Cold,
        BudgetClass::Refresh,
        BudgetClass::Forced,
        BudgetClass::Lookup,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetClass::Write => "write",
            BudgetClass::Cold => "cold",
            BudgetClass::Refresh => "refresh",
            BudgetClass::Forced => "forced",
            BudgetClass::Lookup => "lookup",
        }
    }

    /// Whether it may spend the reserve (else only the headroom above it).
    pub fn has_reserve(self) -> bool {
        match self {
            BudgetClass::Write | BudgetClass::Cold | BudgetClass::Lookup => true,
            BudgetClass::Refresh | BudgetClass::Forced => false,
        }
    }
}

/// A request ready to leave: the last two layers (the guard and the forward) take only this.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The request's context.
    pub ctx: Ctx,
    /// What the budget is spent on (set by the cache for reads, `Write` for writes).
    pub class: BudgetClass,
    /// For a refresh: how far into its stale window the copy it would replace is, 0 to 100
    /// (100: at its end, or no copy). A copy just past its freshness is refreshed only with
    /// more headroom than one about to leave the window: a saturated key refreshes what is
    /// oldest first (see the guard).
    pub urgency: u8,
    /// Method.
    pub method: Method,
    /// The path and query to forward: for a read the canonical query (with the forced
    /// `userId`), exactly what the cache keyed on; for a write the path alone.
    pub target: http::uri::PathAndQuery,
    /// End-to-end headers to forward (writes only; a read forwards none, since headers are
    /// not part of the cache key).
    pub headers: HeaderMap,
    /// The body, byte for byte as the client sent it (empty for reads and deletes).
    pub body: Bytes,
}

/// Facts about the upstream exchange.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamMeta {
    /// The upstream's status, if it answered.
    pub status: Option<u16>,
    /// Time from sending to the whole body received (or the failure).
    pub duration: Duration,
    /// Whether the request may have reached upstream: false when it was never handed to a
    /// connection (none could be made in time, or the write's gate was closed first), so
    /// the budget admission it spent is refunded and a write's idempotency key released.
    pub maybe_sent: bool,
}

/// The result of a cache lookup (the `result` label and the `X-Cache` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Served from a fresh entry.
    Hit,
    /// Fetched from upstream.
    Miss,
    /// Served from an expired copy: being refreshed, or it could not be refreshed.
    Stale,
    /// The cache was not used (client `no-store`, cache off).
    Bypass,
}

impl CacheResult {
    /// The header value and label.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss => "MISS",
            CacheResult::Stale => "STALE",
            CacheResult::Bypass => "BYPASS",
        }
    }
}

/// What the layers learned while answering, for the access log and metrics. Plain fields,
/// set on the way out: nothing here is looked up by type at run time.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The matched route (None: refused before routing).
    pub route: Option<crate::ingress::route::Route>,
    /// The mapped user's name.
    pub user: Option<Arc<str>>,
    /// The upstream exchange, if there was one.
    pub upstream: Option<UpstreamMeta>,
    /// Why the gateway answered itself.
    pub rejection: Option<Rejection>,
    /// The full error text for the log (never sent to the client).
    pub detail: Option<Box<str>>,
    /// The cache's part.
    pub cache: Option<CacheResult>,
    /// A keyed write's idempotency record was settled below the replay layer, in the same
    /// store call as the write's generation bump: replay does not settle it again.
    pub settled: bool,
}

/// A response and the facts behind it.
#[derive(Debug)]
pub struct Reply {
    /// What the client gets.
    pub response: Response,
    /// What the log gets.
    pub facts: Facts,
}

impl Reply {
    /// A reply with no facts yet.
    pub fn new(response: Response) -> Reply {
        Reply {
            response,
            facts: Facts::default(),
        }
    }

    /// The response's status.
    pub fn status(&self) -> http::StatusCode {
        self.response.status()
    }

    /// The upstream's status, if upstream answered.
    pub fn upstream_status(&self) -> Option<u16> {
        self.facts.upstream.and_then(|u| u.status)
    }

    /// How a keyed write's idempotency record ends with this reply (see `policy::replay`):
    /// a definitive upstream answer (a 2xx, or a 4xx other than 408/425/429) is stored and
    /// replayed; a refusal upstream did not process (408, 425, 429), or a request that never
    /// left, frees the key; anything else is unknown. Here, beside the reply, because two
    /// layers settle: replay, and the invalidation that settles an accepted write's record
    /// with its generation bump.
    pub fn settlement(&self) -> Settle {
        let sent = self.facts.upstream.is_some_and(|m| m.maybe_sent);
        match self.upstream_status() {
            Some(status) if definitive(status) => {
                let content_type = self
                    .response
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                // A `Full` body is one shared chunk: cloning it copies nothing.
                let body = body_bytes(self.response.body());
                Settle::Completed(StoredOutcome {
                    status,
                    content_type,
                    body,
                })
            }
            // Refused upstream without being processed: free to retry.
            Some(408 | 425 | 429) => Settle::Release,
            // Refused here, or never connected: nothing left the gateway.
            _ if !sent => Settle::Release,
            _ => Settle::Unknown,
        }
    }
}

/// Whether an upstream answer is final for this request, so a repeat must get it again.
fn definitive(status: u16) -> bool {
    (200..300).contains(&status)
        || ((400..500).contains(&status) && ![408, 425, 429].contains(&status))
}

impl From<GatewayError> for Reply {
    /// The reply for a failure: [`GatewayError::into_response`] (the one mapping to HTTP),
    /// and the facts the log records.
    fn from(e: GatewayError) -> Reply {
        let rejection = e.rejection();
        let detail = e.to_string().into_boxed_str();
        Reply {
            response: e.into_response(),
            facts: Facts {
                rejection: Some(rejection),
                detail: Some(detail),
                ..Facts::default()
            },
        }
    }
}

/// The bytes of a buffered body, without consuming it: a `Full` body is one shared chunk,
/// yielded at once, so polling a clone of it never waits and copies nothing.
pub fn body_bytes(body: &http_body_util::Full<Bytes>) -> Bytes {
    use hyper::body::Body as _;
    let mut body = body.clone();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
        std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum ReadError {
    /// It is longer than the limit.
    TooLarge,
    /// The stream failed (the peer went away, malformed chunking).
    Failed(crate::BoxError),
}

/// Reads a whole body of at most `limit` bytes. A body that arrives in one frame (the usual
/// case) is kept as that frame's own bytes, with no copy and no allocation; only a body in
/// several frames is gathered into one buffer, sized by `hint` (a declared length).
pub async fn read_whole<B>(body: B, limit: usize, hint: Option<u64>) -> Result<Bytes, ReadError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<crate::BoxError>,
{
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(body);
    let mut one: Option<Bytes> = None;
    let mut many: Option<Vec<u8>> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Failed(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing the gateway forwards
        };
        total += data.len();
        if total > limit {
            return Err(ReadError::TooLarge);
        }
        match (&mut many, one.take()) {
            (Some(buf), _) => buf.extend_from_slice(&data),
            (None, None) => one = Some(data),
            (None, Some(first)) => {
                let want = hint.map_or(0, |n| n as usize).max(first.len() + data.len());
                let mut buf = Vec::with_capacity(want.min(limit));
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&data);
                many = Some(buf);
            }
        }
    }
    Ok(match many {
        Some(buf) => Bytes::from(buf),
        None => one.unwrap_or_default(),
    })
}
