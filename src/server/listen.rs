//! The listeners: accepting connections, per-connection protocol limits, graceful drain.

use crate::error::Response;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Service;

/// Per-connection protocol limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnSettings {
    /// Idle keep-alive and header-read timeouts, both timed by `idle::ConnTimeout`.
    timeouts: crate::idle::Timeouts,
    /// hyper's own hard cap on the header buffer; set above the JSON-answering limit so that
    /// only grossly oversized requests get hyper's bare 431.
    max_buf_size: usize,
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

/// Accepts connections until shutdown, then drains them for at most `grace`.
pub(super) async fn serve<S>(
    listener: TcpListener,
    svc: S,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    conn_settings: ConnSettings,
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
                    let activity = Arc::new(crate::idle::Activity::default());
                    let io = crate::idle::ConnTimeout::new(stream, conn_settings.timeouts, activity.clone());
                    let svc = crate::idle::Busy::new(svc.clone(), activity);
                    let conn = builder
                        .serve_connection(TokioIo::new(io), TowerToHyperService::new(svc))
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
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
