//! Idle keep-alive timeout: a connection with no request in progress and no bytes moving for
//! `idle_timeout` is closed. hyper's `header_read_timeout` only runs once a request has
//! started, so an idle keep-alive connection would otherwise be held forever.

use http::Request;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tower::Service;

/// Wraps a connection's IO; reads fail with `TimedOut` once the connection has been idle (no
/// request in progress, no bytes either way) for the timeout.
pub struct IdleTimeout<T> {
    inner: T,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    busy: Arc<AtomicUsize>,
}

impl<T> IdleTimeout<T> {
    /// Wraps `inner`; `busy` counts the connection's requests in progress (see [`Busy`]).
    pub fn new(inner: T, timeout: Duration, busy: Arc<AtomicUsize>) -> Self {
        IdleTimeout {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            busy,
        }
    }

    fn touch(&mut self) {
        self.sleep.as_mut().reset(Instant::now() + self.timeout);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.busy.load(Ordering::Acquire) > 0 {
                    // A request is being processed (maybe waiting on upstream): not idle.
                    self.touch();
                    return Poll::Pending;
                }
                if self.sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle keep-alive timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a connection's requests in progress for [`IdleTimeout`].
#[derive(Clone)]
pub struct Busy<S> {
    inner: S,
    busy: Arc<AtomicUsize>,
}

impl<S> Busy<S> {
    /// Wraps the connection's service.
    pub fn new(inner: S, busy: Arc<AtomicUsize>) -> Self {
        Busy { inner, busy }
    }
}

struct Done(Arc<AtomicUsize>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, B> Service<Request<B>> for Busy<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.busy.fetch_add(1, Ordering::AcqRel);
        let done = Done(self.busy.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let _done = done;
            fut.await
        })
    }
}
