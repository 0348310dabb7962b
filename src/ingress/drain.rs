//! Early answers to requests whose body was never read.
//!
//! When a create is refused before its body is read (401, 403, 404, 405, 414, 415, 431, 503),
//! HTTP/1.1 cannot reuse the connection until the body has been consumed: hyper would close
//! it, and closing a socket with unread data makes the kernel send a reset that can destroy
//! the answer in flight and break the client's next request on that keep-alive connection.
//! So a small body is read and discarded first (what nginx's lingering close does); a large
//! or slow one gets `Connection: close` instead of being read.

use crate::exchange::Reply;
use crate::{BoxError, BoxFuture};
use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;

/// At most this much of an unread body is read to keep the connection (and for at most
/// [`crate::timeouts::DRAIN_UNREAD_BODY`]).
const DRAIN_LIMIT: usize = 64 * 1024;

/// Reads and discards `body` (bounded); true when it was consumed to its end.
pub async fn drain<B>(body: B) -> bool
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<BoxError>,
{
    if body.is_end_stream() {
        return true;
    }
    if body.size_hint().lower().gt(&(DRAIN_LIMIT as u64)) {
        return false;
    }
    matches!(
        tokio::time::timeout_at(
            crate::timeouts::drain_unread_body(),
            Limited::new(body, DRAIN_LIMIT).collect()
        )
        .await,
        Ok(Ok(_))
    )
}

/// Answers `reply` to a request whose body is `body`, after draining the body, or with
/// `Connection: close` when the body cannot be drained cheaply.
pub fn reject<B>(body: B, reply: Reply) -> BoxFuture
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if body.is_end_stream() {
        return Box::pin(std::future::ready(Ok(reply)));
    }
    Box::pin(async move { Ok(finish(drain(body).await, reply)) })
}

/// Marks `reply` as closing the connection unless the request body was consumed.
pub fn finish(consumed: bool, mut reply: Reply) -> Reply {
    if !consumed {
        reply
            .response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    reply
}
