//! A connection's two timeouts, with one timer per connection:
//!
//! - **idle**: with no request in progress and no byte of a next request received, the
//!   connection is closed `idle_timeout` after its last activity (a byte read or written, a
//!   request starting or finishing). A fresh connection that sends nothing is idle too.
//! - **header read** (HTTP/1): once the first byte of a request has arrived, its headers must be
//!   complete (the service called) within `header_read_timeout` of that byte, however the bytes
//!   trickle in and whether `idle_timeout` is longer or shorter.
//! - While a request is in progress there is no deadline here: the request's own timeouts
//!   (body read, upstream response) govern it.
//!
//! The two deadlines are computed by [`ConnectionTimeouts`] (`crate::timeouts`); this module
//! decides which one is in force and times it.
//!
//! hyper's own header-read timer is turned off (`server::listen`): it starts whenever hyper
//! waits for a request, so it also ran while a keep-alive connection waited idle, and closed
//! it at `header_read_timeout` instead of `idle_timeout`.
//!
//! When the deadline passes, the next read (or a write the client does not accept) fails with
//! `TimedOut` and hyper closes the connection without an answer.
//!
//! HTTP/2, recognised by its connection preface, gets the idle deadline only: a client's PING,
//! SETTINGS and WINDOW_UPDATE frames arrive with no request and must not start a header timer,
//! and a request's headers arrive as whole frames, bounded by `max_header_list_size`.
//!
//! Known approximation: bytes read while a request is in progress belong to it (its body) as
//! far as this module knows, so a pipelined next request that arrived partially during the
//! previous one is bounded by `idle_timeout`, not `header_read_timeout`.

use crate::timeouts::ConnectionTimeouts;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The connection preface every HTTP/2 client sends first (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's requests do, shared by [`ConnTimeout`] (the IO) and the connection's
/// service, which marks each request in progress ([`Activity::request`]).
#[derive(Debug, Default)]
pub struct Activity {
    in_progress: AtomicUsize,
    /// Bumped when a request starts and when one finishes.
    changes: AtomicU64,
}

impl Activity {
    fn started(&self) {
        self.in_progress.fetch_add(1, Ordering::AcqRel);
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    fn finished(&self) {
        self.in_progress.fetch_sub(1, Ordering::AcqRel);
        self.changes.fetch_add(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// This many bytes of the HTTP/2 preface matched so far.
    Sniffing(usize),
    Http1,
    Http2,
}

/// Which timer a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Idle,
    HeaderRead,
}

/// Wraps a connection's IO; reads fail with `TimedOut` once the connection has been idle for
/// the idle timeout, or a request has started and not delivered its headers within the
/// header-read timeout.
pub struct ConnTimeout<T> {
    inner: T,
    timeouts: ConnectionTimeouts,
    activity: Arc<Activity>,
    /// `activity.changes` when last looked at.
    seen: u64,
    last_activity: Instant,
    /// Arrival of the first byte of a request that has not reached the service yet.
    request_started: Option<Instant>,
    protocol: Protocol,
    sleep: Pin<Box<Sleep>>,
}

impl<T> ConnTimeout<T> {
    /// Wraps `inner`, accepted just now; `activity` is shared with the connection's service.
    pub fn new(inner: T, timeouts: ConnectionTimeouts, activity: Arc<Activity>) -> Self {
        let now = Instant::now();
        ConnTimeout {
            inner,
            timeouts,
            seen: activity.changes.load(Ordering::Acquire),
            activity,
            last_activity: now,
            request_started: None,
            protocol: Protocol::Sniffing(0),
            sleep: Box::pin(tokio::time::sleep_until(timeouts.idle_until(now))),
        }
    }

    /// Takes in a request starting or finishing since the last look.
    fn sync(&mut self) {
        let changes = self.activity.changes.load(Ordering::Acquire);
        if changes != self.seen {
            self.seen = changes;
            self.last_activity = Instant::now();
            // The request whose first byte started the header timer reached the service (or
            // one finished: what follows is a new request).
            self.request_started = None;
        }
    }

    fn on_read(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.sync();
        let now = Instant::now();
        self.last_activity = now;
        if let Protocol::Sniffing(mut matched) = self.protocol {
            self.protocol = Protocol::Sniffing(matched);
            for &b in data {
                if b != H2_PREFACE[matched] {
                    self.protocol = Protocol::Http1;
                    break;
                }
                matched += 1;
                if matched == H2_PREFACE.len() {
                    self.protocol = Protocol::Http2;
                    break;
                }
                self.protocol = Protocol::Sniffing(matched);
            }
        }
        if self.protocol == Protocol::Http2 {
            self.request_started = None;
            return;
        }
        // Blank lines before a request line are ignored by HTTP/1 servers (RFC 9112, 2.2):
        // some clients send one after a body. They do not start a request.
        let request_bytes = data.iter().any(|b| !matches!(b, b'\r' | b'\n'));
        if self.request_started.is_none()
            && request_bytes
            && self.activity.in_progress.load(Ordering::Acquire) == 0
        {
            self.request_started = Some(now);
        }
    }

    /// After a write: the answer to the last request in progress may just have gone out, and
    /// hyper does not read again until the socket has data, so the timer is armed here (it
    /// wakes the connection, whose next read fails).
    fn on_write(&mut self, cx: &mut Context<'_>) {
        self.last_activity = Instant::now();
        if self.poll_timer(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
    }

    /// The deadline now in force, if any.
    fn deadline(&mut self) -> Option<(Instant, Timer)> {
        self.sync();
        if self.activity.in_progress.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(match self.request_started {
            Some(first_byte) => (self.timeouts.headers_until(first_byte), Timer::HeaderRead),
            None => (self.timeouts.idle_until(self.last_activity), Timer::Idle),
        })
    }

    /// Ready with the timer that fired once the deadline in force has passed.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<Timer> {
        let Some((deadline, timer)) = self.deadline() else {
            return Poll::Pending;
        };
        // Activity moves the deadline later on nearly every read and write; re-arming the
        // timer each time would cost a timer-wheel update per IO. It is moved only when the
        // deadline comes earlier, and otherwise re-armed once it fires early.
        if deadline < self.sleep.deadline() {
            self.sleep.as_mut().reset(deadline);
        }
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            if Instant::now() >= deadline {
                return Poll::Ready(timer);
            }
            self.sleep.as_mut().reset(deadline);
        }
    }

    /// Called when the IO would block: ready with the error once the deadline has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let what = match ready!(self.poll_timer(cx)) {
            Timer::Idle => "idle keep-alive timeout",
            Timer::HeaderRead => "request headers not received within header_read_timeout",
        };
        tracing::debug!(timeout = what, "closing connection");
        Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, what))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ConnTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.on_read(&buf.filled()[before..]);
                Poll::Ready(r)
            }
            Poll::Pending => this.poll_deadline(cx).map(Err),
        }
    }
}

impl<T> ConnTimeout<T> {
    /// What a write to the inner IO returned, as seen by the connection's timer: bytes
    /// written are activity, and a client that stops reading our answer is idle too.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.on_write(cx);
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_deadline(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ConnTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(cx, r)
    }

    // Vectored writes pass through: without them hyper copies every response body into its
    // header buffer to send both in one write, instead of one `writev` of the two.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Activity {
    /// A request of this connection has reached the service (its headers are complete): no
    /// deadline here until the returned guard is dropped, however the request ends.
    pub fn request(self: &Arc<Self>) -> Done {
        self.started();
        Done(self.clone())
    }
}

/// Marks a connection's request finished however it ends.
pub struct Done(Arc<Activity>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.finished();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const IDLE: Duration = Duration::from_secs(6);
    const HEADER: Duration = Duration::from_secs(2);

    fn conn(
        idle: Duration,
        header_read: Duration,
    ) -> (ConnTimeout<DuplexStream>, DuplexStream, Arc<Activity>) {
        let (server, client) = tokio::io::duplex(1024);
        let activity = Arc::new(Activity::default());
        let io = ConnTimeout::new(
            server,
            ConnectionTimeouts { idle, header_read },
            activity.clone(),
        );
        (io, client, activity)
    }

    /// Reads from `io` until it fails; how long that took (paused clock), and the error.
    async fn read_until_error(io: &mut ConnTimeout<DuplexStream>) -> (Duration, io::Error) {
        let start = Instant::now();
        let mut buf = [0u8; 64];
        loop {
            match io.read(&mut buf).await {
                Ok(0) => panic!("unexpected EOF"),
                Ok(_) => continue,
                Err(e) => return (start.elapsed(), e),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_lives_the_idle_timeout_even_when_longer_than_header_read() {
        let (mut io, _client, _) = conn(IDLE, HEADER);
        let (took, e) = read_until_error(&mut io).await;
        assert_eq!(took, IDLE);
        assert!(e.to_string().contains("idle"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_started_request_has_header_read_timeout_from_its_first_byte() {
        for (idle, header) in [(IDLE, HEADER), (HEADER, IDLE)] {
            let (mut io, mut client, _) = conn(idle, header);
            tokio::time::advance(Duration::from_millis(500)).await;
            client.write_all(b"GET / HT").await.unwrap();
            let start = Instant::now();
            // More bytes keep coming, but the deadline counts from the first.
            let mut buf = [0u8; 64];
            assert_eq!(io.read(&mut buf).await.unwrap(), 8);
            tokio::time::advance(Duration::from_millis(300)).await;
            client.write_all(b"TP/1.1\r\n").await.unwrap();
            let (_, e) = read_until_error(&mut io).await;
            assert_eq!(start.elapsed(), header, "idle {idle:?}, header {header:?}");
            assert!(e.to_string().contains("header_read_timeout"), "{e}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_while_a_request_is_in_progress_then_idle_from_its_end() {
        let (mut io, mut client, activity) = conn(IDLE, HEADER);
        let request = b"GET / HTTP/1.1\r\n\r\n";
        client.write_all(request).await.unwrap();
        let mut buf = [0u8; 64];
        io.read_exact(&mut buf[..request.len()]).await.unwrap();
        activity.started();
        // A slow upstream: far beyond both timeouts, nothing happens.
        let read = tokio::time::timeout(IDLE * 10, io.read(&mut buf)).await;
        assert!(read.is_err(), "the connection timed out mid-request");
        activity.finished();
        let (took, e) = read_until_error(&mut io).await;
        assert_eq!(took, IDLE);
        assert!(e.to_string().contains("idle"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn blank_lines_and_http2_frames_do_not_start_a_header_timer() {
        let (mut io, mut client, _) = conn(IDLE, HEADER);
        client.write_all(b"\r\n").await.unwrap();
        let (took, e) = read_until_error(&mut io).await;
        assert_eq!(took, IDLE, "{e}");

        let (mut io, mut client, _) = conn(IDLE, HEADER);
        client.write_all(H2_PREFACE).await.unwrap();
        client.write_all(b"\0\0\0\x04\0\0\0\0\0").await.unwrap(); // empty SETTINGS
        let (took, e) = read_until_error(&mut io).await;
        assert_eq!(took, IDLE, "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_the_answer_is_idle() {
        let (mut io, _client, _) = conn(IDLE, HEADER);
        let start = Instant::now();
        let chunk = [0u8; 512];
        let e = loop {
            if let Err(e) = io.write(&chunk).await {
                break e;
            }
        };
        assert_eq!(start.elapsed(), IDLE);
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
