//! Upstream connections: HTTP/1.1 keep-alive, each driven by the request that uses it.
//!
//! hyper-util's pooled client runs every connection in a task of its own: a request hands
//! its message to that task and is woken with the answer, a second task on the hot path of
//! every forward. Here the request's own future polls the connection while it waits (nginx's
//! upstream keep-alive works the same way, in the worker's one event loop), and leaves it in
//! the pool, idle and unpolled, once the answer is read whole. A connection the server closed
//! while idle is noticed when it is next polled, before anything is written (hyper reads a
//! keep-alive connection before it writes), and the request is sent on another one; idle ones
//! are closed after `pool_idle_timeout` (by a reaper task). HTTP/1.1 only, as nginx speaks to
//! its upstreams: ALPN offers nothing else.
//!
//! Connecting (TCP, then TLS, then the HTTP/1 handshake) is bounded as a whole by
//! `connect_timeout`, as nginx's `proxy_connect_timeout` bounds its upstream SSL handshake: a
//! server that accepts TCP and never finishes TLS is an unreachable one, and a write to it
//! was certainly not sent. A write goes out only on a connection idle less than
//! [`WRITE_IDLE_MAX`]; a write's [`SendGate`] is taken just before its request is handed to
//! the connection, so until then it is "not sent" for everyone who asks.

use crate::exchange::{read_whole, ReadError, SendGate};
use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Full;
use hyper::body::Body as _;
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::ServiceExt;

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

/// The longest a pooled connection may have been idle for a write to go out on it; reads may
/// use any connection within `pool_idle_timeout`.
///
/// A server closes a keep-alive connection when its own idle timer ends, and a request
/// written as that close is in flight is lost with no way to know whether it was processed:
/// for a create, an unknown outcome. The shortest common server defaults are 5 s (Node.js
/// `http.Server` `keepAliveTimeout`, Apache `KeepAliveTimeout`, uvicorn `timeout_keep_alive`);
/// load balancers keep far longer (AWS ALB 60 s, nginx `keepalive_timeout` 75 s, Go's and
/// hyper's servers have no idle close by default). 2 s stays under the 5 s ones with 3 s to
/// spare for the request to arrive (the server's timer started when it wrote its last answer,
/// a little before this side saw it end). A fresh connection costs a handshake, which only
/// writes pay (they are rare next to reads), and a handshake is bounded by `connect_timeout`
/// and sends nothing when it fails, so it is the safe side of the trade.
pub const WRITE_IDLE_MAX: Duration = Duration::from_secs(2);

/// One HTTP/1.1 connection: the sending half and the connection future that does its IO.
struct Conn {
    tx: http1::SendRequest<Full<Bytes>>,
    io: http1::Connection<Io, Full<Bytes>>,
    /// Set once the connection future has ended (closed or failed): never polled again.
    ended: bool,
}

/// An idle connection, with when it became idle. Boxed: a connection (hyper's dispatcher, its
/// buffers, a TLS session) is kilobytes, and every request's future would otherwise carry it
/// inline, moved with the future each time it is boxed.
struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum PoolError {
    /// No connection could be made (refused, timed out, TLS): nothing was sent.
    Connect(crate::BoxError),
    /// A write's gate was closed (its client was told it was not sent) before it was handed
    /// to a connection: nothing was sent, and it never will be.
    GateClosed,
    /// The connection failed after the request may have been written.
    Exchange(crate::BoxError),
    /// The response body could not be read whole.
    Body(ReadError),
}

/// Connections to one upstream origin.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`, what the connector connects to.
    origin: Uri,
    idle: Mutex<VecDeque<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    /// Bounds TCP connect, TLS handshake and HTTP/1 handshake together.
    connect_timeout: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("origin", &self.origin)
            .finish()
    }
}

/// Polls the connection, then `fut`, until `fut` is done: the request's task does the
/// connection's IO while it waits. `Err` when the connection ends with `fut` unanswered
/// (hyper answers a pending request with the connection's error as it ends, so this is
/// only a safety net).
async fn drive<F: Future>(
    io: &mut http1::Connection<Io, Full<Bytes>>,
    ended: &mut bool,
    fut: F,
) -> Result<F::Output, Option<hyper::Error>> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        let mut error = None;
        if !*ended {
            if let Poll::Ready(r) = Pin::new(&mut *io).poll(cx) {
                *ended = true;
                error = r.err();
            }
        }
        match fut.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Ok(out)),
            Poll::Pending if *ended => Poll::Ready(Err(error.take())),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// What a connection that ended under a request failed with.
fn ended_with(error: Option<hyper::Error>) -> crate::BoxError {
    match error {
        Some(e) => e.into(),
        None => "connection closed by upstream".into(),
    }
}

impl Pool {
    /// A pool for `origin` (`scheme://authority`), connecting with `connector` within
    /// `connect_timeout` (TCP and TLS together).
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        origin: Uri,
        max_idle: usize,
        idle_timeout: Duration,
        connect_timeout: Duration,
    ) -> Pool {
        Pool {
            connector,
            origin,
            idle: Mutex::new(VecDeque::new()),
            max_idle,
            idle_timeout,
            connect_timeout,
        }
    }

    /// The most recently used idle connection still within its idle timeout; for a write,
    /// only one idle less than [`WRITE_IDLE_MAX`] (older ones stay for reads).
    fn checkout(&self, write: bool) -> Option<Box<Conn>> {
        let mut idle = crate::lock(&self.idle);
        let expired = self.take_expired(&mut idle);
        let conn = match idle.back() {
            Some(newest) if write && newest.since.elapsed() >= WRITE_IDLE_MAX => None,
            _ => idle.pop_back().map(|c| c.conn),
        };
        drop(idle);
        // Closed outside the lock.
        drop(expired);
        conn
    }

    /// The connections idle for `idle_timeout` or longer, taken out of `idle` (oldest first:
    /// they sit at the front).
    fn take_expired(&self, idle: &mut VecDeque<Idle>) -> Vec<Idle> {
        let now = Instant::now();
        let fresh = idle
            .iter()
            .position(|c| now.saturating_duration_since(c.since) < self.idle_timeout)
            .unwrap_or(idle.len());
        idle.drain(..fresh).collect()
    }

    /// Closes the connections idle for `idle_timeout` or longer.
    fn reap(&self) {
        let expired = self.take_expired(&mut crate::lock(&self.idle));
        // Closed outside the lock.
        drop(expired);
    }

    /// Reaps `pool`'s idle connections every half `idle_timeout` while the pool lives, so a
    /// connection nobody takes is closed on time rather than at the next request.
    pub fn start_reaper(pool: &std::sync::Arc<Pool>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let every = (pool.idle_timeout / 2).max(Duration::from_millis(10));
        let weak = std::sync::Arc::downgrade(pool);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(pool) => pool.reap(),
                    None => return,
                }
            }
        });
    }

    fn checkin(&self, conn: Box<Conn>) {
        if conn.ended || conn.tx.is_closed() {
            return;
        }
        let now = Instant::now();
        // Expired ones are the reaper's (and checkout's) to drop.
        let mut idle = crate::lock(&self.idle);
        if idle.len() >= self.max_idle {
            idle.pop_front();
        }
        if self.max_idle > 0 {
            idle.push_back(Idle { conn, since: now });
        }
    }

    /// A new connection, within `connect_timeout` from the first SYN to the end of the TLS
    /// handshake (the connector's own timeout covers TCP alone).
    async fn connect(&self) -> Result<Box<Conn>, PoolError> {
        let connecting = async {
            let io = self
                .connector
                .clone()
                .oneshot(self.origin.clone())
                .await
                .map_err(PoolError::Connect)?;
            let (tx, io) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(|e| PoolError::Connect(e.into()))?;
            Ok(Box::new(Conn {
                tx,
                io,
                ended: false,
            }))
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(connected) => connected,
            Err(_elapsed) => Err(PoolError::Connect(
                format!(
                    "no connection (TCP and TLS) within connect_timeout ({:?})",
                    self.connect_timeout
                )
                .into(),
            )),
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) and reads the answer whole, up to `limit`
    /// bytes. A request is written at most once: it moves to another connection only when
    /// the first gave it back unsent (closed by the server while idle).
    ///
    /// `write` is a write's gate: the write goes out only on a connection idle less than
    /// [`WRITE_IDLE_MAX`], and the gate is taken just before the request is handed to the
    /// connection (given back if the connection returns it unsent), so a write whose gate
    /// was closed first is never sent ([`PoolError::GateClosed`]).
    pub async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
        limit: usize,
        write: Option<&SendGate>,
    ) -> Result<(http::response::Parts, Bytes), PoolError> {
        // Each attempt that gives the request back unsent drops a dead connection; past this
        // many fresh ones doing the same, the upstream is taken to be unreachable.
        const FRESH_ATTEMPTS: u32 = 2;
        let mut fresh_attempts = 0;
        loop {
            let mut conn = match self.checkout(write.is_some()) {
                Some(c) => c,
                None => {
                    fresh_attempts += 1;
                    // Boxed: connecting (TCP, TLS) is a large future, and rare.
                    Box::pin(self.connect()).await?
                }
            };
            let Conn { tx, io, ended } = &mut *conn;
            // Ready first: a pooled connection the server has closed ends here, unused.
            let ready = drive(io, ended, std::future::poll_fn(|cx| tx.poll_ready(cx))).await;
            let unsent_error = match ready {
                // A connection that has ended writes nothing more, whatever its sender says.
                Ok(Ok(())) if *ended => Some(ended_with(None)),
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.into()),
                Err(e) => Some(ended_with(e)),
            };
            if let Some(e) = unsent_error {
                if fresh_attempts >= FRESH_ATTEMPTS {
                    return Err(PoolError::Connect(e));
                }
                continue;
            }
            if write.is_some_and(|gate| !gate.take()) {
                // The client was answered "not sent" while this connection was made ready.
                self.checkin(conn);
                return Err(PoolError::GateClosed);
            }
            let answer = match drive(io, ended, tx.try_send_request(req)).await {
                Ok(Ok(resp)) => resp,
                Ok(Err(mut e)) => match e.take_message() {
                    Some(back) => {
                        // Given back unwritten: still not sent, for the client too.
                        if let Some(gate) = write {
                            gate.untake();
                        }
                        if fresh_attempts < FRESH_ATTEMPTS {
                            req = back;
                            continue;
                        }
                        return Err(PoolError::Connect(e.into_error().into()));
                    }
                    None => return Err(PoolError::Exchange(e.into_error().into())),
                },
                Err(e) => return Err(PoolError::Exchange(ended_with(e))),
            };
            let (parts, body) = answer.into_parts();
            let hint = body.size_hint().exact();
            let bytes = match drive(io, ended, read_whole(body, limit, hint)).await {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => return Err(PoolError::Body(e)),
                Err(e) => return Err(PoolError::Exchange(ended_with(e))),
            };
            self.checkin(conn);
            return Ok((parts, bytes));
        }
    }
}
