//! The listeners: accepting connections, per-connection protocol limits, graceful drain.

use crate::error::Response;
use crate::server::tls::{PeerCert, Tls};
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Service;

/// hyper's service interface (`call(&self)`) for a tower service owned by one connection.
///
/// hyper calls `call` with no task context, so readiness cannot be polled there: each call's
/// future takes the connection's service, polls it ready with the request's own waker (a
/// limit that is full wakes that request when it has room), calls it, and puts it back for
/// the next request. On HTTP/1 requests come one at a time, so the one service serves them
/// all and a request costs no copy of the stack (a tower stack's clone copies every layer); a
/// request that finds it taken (HTTP/2 streams at once, or one still waiting for readiness)
/// works on a fresh clone. A request dropped while waiting for readiness drops the service it
/// polled, and with it whatever that service had reserved.
///
/// It also hands each request what the connection knows about its peer: the verified client
/// certificate of a TLS connection, as a request extension (the one way a connection can
/// attach data to the requests hyper parses; a client cannot set an extension).
struct Borrowed<S>(Arc<Conn<S>>);

struct Conn<S> {
    /// The connection's service, unpolled, and a template to clone when it is in use.
    services: std::sync::Mutex<(Option<S>, S)>,
    /// Marks each request in progress for the connection's timeouts.
    activity: Arc<crate::server::idle::Activity>,
    /// The verified client certificate, on a TLS connection that presented one.
    peer: Option<Arc<PeerCert>>,
}

impl<S: Clone> Borrowed<S> {
    fn new(
        svc: S,
        activity: Arc<crate::server::idle::Activity>,
        peer: Option<Arc<PeerCert>>,
    ) -> Self {
        Borrowed(Arc::new(Conn {
            services: std::sync::Mutex::new((Some(svc.clone()), svc)),
            activity,
            peer,
        }))
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for Borrowed<S>
where
    S: Service<Request<Incoming>> + Clone + Unpin,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Call<S>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if let Some(peer) = &self.0.peer {
            req.extensions_mut().insert(peer.clone());
        }
        // The W3C trace context, before the stack sees the request: every answer, rejections
        // included, is logged with its trace id.
        let trace = crate::observe::trace::TraceContext::from_headers(req.headers());
        req.extensions_mut().insert(trace);
        Call {
            conn: self.0.clone(),
            state: CallState::Waiting(None, Some(req)),
            // From here the request is in progress, waiting for readiness included.
            _done: self.0.activity.request(),
        }
    }
}

/// The future of a [`Borrowed`] call.
struct Call<S: Service<Request<Incoming>>> {
    conn: Arc<Conn<S>>,
    state: CallState<S>,
    _done: crate::server::idle::Done,
}

// Not boxed: the request waits here by value, as it would in hyper's own future; a box would
// be an allocation per request.
#[allow(clippy::large_enum_variant)]
enum CallState<S: Service<Request<Incoming>>> {
    /// The service (once taken) is being polled ready for the request.
    Waiting(Option<S>, Option<Request<Incoming>>),
    /// Called.
    Called(S::Future),
}

impl<S> std::future::Future for Call<S>
where
    S: Service<Request<Incoming>> + Clone + Unpin,
    S::Future: Unpin,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        if let CallState::Waiting(svc, req) = &mut this.state {
            let svc = svc.get_or_insert_with(|| {
                let mut services = crate::lock(&this.conn.services);
                let (idle, template) = &mut *services;
                idle.take().unwrap_or_else(|| template.clone())
            });
            std::task::ready!(svc.poll_ready(cx))?;
            let fut = svc.call(req.take().expect("called once"));
            let CallState::Waiting(svc, _) =
                std::mem::replace(&mut this.state, CallState::Called(fut))
            else {
                unreachable!("waiting")
            };
            // Called: back for the next request, unless another took its place meanwhile.
            let mut services = crate::lock(&this.conn.services);
            if services.0.is_none() {
                services.0 = svc;
            }
        }
        match &mut this.state {
            CallState::Called(f) => std::pin::Pin::new(f).poll(cx),
            CallState::Waiting(..) => unreachable!("called above"),
        }
    }
}

/// Per-connection protocol limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnSettings {
    /// Idle keep-alive and header-read timeouts, both timed by `idle::ConnTimeout`.
    timeouts: crate::timeouts::ConnectionTimeouts,
    /// hyper's own hard cap on the header buffer; set above the JSON-answering limit so that
    /// only grossly oversized requests get hyper's bare 431.
    max_buf_size: usize,
}

impl From<&crate::config::ServerSettings> for ConnSettings {
    fn from(s: &crate::config::ServerSettings) -> Self {
        ConnSettings {
            timeouts: crate::timeouts::ConnectionTimeouts {
                idle: s.idle_timeout,
                header_read: s.header_read_timeout,
            },
            max_buf_size: ((s.max_header_size + s.max_uri_length) * 2).max(16 << 10),
        }
    }
}

/// Serves one connection (plain or TLS) until it ends or the drain closes it.
fn spawn_conn<I, S>(
    io: I,
    peer: Option<Arc<PeerCert>>,
    builder: &auto::Builder<TokioExecutor>,
    svc: S,
    watcher: hyper_util::server::graceful::Watcher,
    timeouts: crate::timeouts::ConnectionTimeouts,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Unpin
        + 'static,
    S::Future: Send + Unpin + 'static,
{
    let activity = Arc::new(crate::server::idle::Activity::default());
    let io = crate::server::idle::ConnTimeout::new(io, timeouts, activity.clone());
    let conn = builder
        .serve_connection(TokioIo::new(io), Borrowed::new(svc, activity, peer))
        .into_owned();
    let conn = watcher.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

/// Accepts connections until shutdown, then drains them for at most `grace`. With `tls`,
/// each connection is taken through the handshake first, in its own task (bounded by the
/// header-read timeout), so a slow handshake never holds up the accept loop.
pub(super) async fn serve<S>(
    listener: TcpListener,
    svc: S,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    conn_settings: ConnSettings,
    tls: Option<Arc<Tls>>,
) where
    S: Service<Request<Incoming>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Unpin
        + 'static,
    S::Future: Send + Unpin + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(conn_settings.max_buf_size)
        // Off: hyper's timer also runs while a keep-alive connection waits for its next
        // request, closing it at the shorter of the two timeouts. `idle::ConnTimeout` times
        // both: idle connections and started requests (slowloris).
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(conn_settings.max_buf_size).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let (svc, watcher, timeouts) = (svc.clone(), graceful.watcher(), conn_settings.timeouts);
                    match &tls {
                        None => spawn_conn(stream, None, &builder, svc, watcher, timeouts),
                        Some(tls) => {
                            let (acceptor, builder) = (tls.acceptor(), builder.clone());
                            tokio::spawn(async move {
                                if let Some((stream, peer)) =
                                    crate::server::tls::accept(stream, acceptor, timeouts.header_read).await
                                {
                                    spawn_conn(stream, peer, &builder, svc, watcher, timeouts);
                                }
                            });
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "grace period over; closing remaining connections"
        );
    }
}
