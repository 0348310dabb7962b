//! The listeners: accepting connections, per-connection protocol limits, graceful drain.

use crate::error::Response;
use crate::tls::{PeerCert, Tls};
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
/// hyper calls it from the connection's task, one call at a time, so an always-ready service
/// (every layer of the gateway's stack is: limits shed at once rather than queue) is borrowed
/// for the call instead of cloned per request, as `TowerToHyperService` does; a tower stack's
/// clone copies every layer. A service that is not ready is cloned and driven to readiness.
///
/// It also hands each request what the connection knows about its peer: the verified client
/// certificate of a TLS connection, as a request extension (the one way a connection can
/// attach data to the requests hyper parses; a client cannot set an extension).
struct Borrowed<S>(std::cell::RefCell<S>, Option<Arc<PeerCert>>);

impl<S> Borrowed<S> {
    fn new(svc: S, peer: Option<Arc<PeerCert>>) -> Self {
        Borrowed(std::cell::RefCell::new(svc), peer)
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for Borrowed<S>
where
    S: Service<Request<Incoming>> + Clone,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Call<S>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if let Some(peer) = &self.1 {
            req.extensions_mut().insert(peer.clone());
        }
        // The W3C trace context, before the stack sees the request: every answer, rejections
        // included, is logged with its trace id.
        let trace = crate::trace::TraceContext::from_headers(req.headers());
        req.extensions_mut().insert(trace);
        // Never held across an await: the borrow ends when `call` returns its future.
        let mut svc = self.0.borrow_mut();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match svc.poll_ready(&mut cx) {
            std::task::Poll::Ready(Ok(())) => Call::Now(svc.call(req)),
            _ => Call::Later(Box::pin(tower::util::Oneshot::new(svc.clone(), req))),
        }
    }
}

/// The future of a [`Borrowed`] call.
enum Call<S: Service<Request<Incoming>>> {
    /// The service was ready and called at once.
    Now(S::Future),
    /// A clone of it is being driven to readiness, then called (rare: boxed).
    Later(std::pin::Pin<Box<tower::util::Oneshot<S, Request<Incoming>>>>),
}

impl<S> std::future::Future for Call<S>
where
    S: Service<Request<Incoming>>,
    S::Future: Unpin,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Call::Now(f) => std::pin::Pin::new(f).poll(cx),
            Call::Later(f) => f.as_mut().poll(cx),
        }
    }
}

/// Per-connection protocol limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnSettings {
    /// Idle keep-alive and header-read timeouts, both timed by `idle::ConnTimeout`.
    timeouts: crate::idle::Timeouts,
    /// hyper's own hard cap on the header buffer; set above the JSON-answering limit so that
    /// only grossly oversized requests get hyper's bare 431.
    max_buf_size: usize,
}

/// Serves one connection (plain or TLS) until it ends or the drain closes it.
fn spawn_conn<I, S>(
    io: I,
    peer: Option<Arc<PeerCert>>,
    builder: &auto::Builder<TokioExecutor>,
    svc: S,
    watcher: hyper_util::server::graceful::Watcher,
    timeouts: crate::idle::Timeouts,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + Unpin + 'static,
{
    let activity = Arc::new(crate::idle::Activity::default());
    let io = crate::idle::ConnTimeout::new(io, timeouts, activity.clone());
    let svc = crate::idle::Busy::new(svc, activity);
    let conn = builder
        .serve_connection(TokioIo::new(io), Borrowed::new(svc, peer))
        .into_owned();
    let conn = watcher.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

impl From<&crate::config::ServerSettings> for ConnSettings {
    fn from(s: &crate::config::ServerSettings) -> Self {
        ConnSettings {
            timeouts: crate::idle::Timeouts {
                idle: s.idle_timeout,
                header_read: s.header_read_timeout,
            },
            max_buf_size: ((s.max_header_size + s.max_uri_length) * 2).max(16 << 10),
        }
    }
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
    S: Service<Request<Incoming>, Response = Response, Error = Infallible> + Clone + Send + 'static,
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
                                    crate::tls::accept(stream, acceptor, timeouts.header_read).await
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
