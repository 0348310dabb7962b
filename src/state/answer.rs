//! What every store call returns: a future ([`StoreFuture`]) of an answer, or why the store
//! could not give one ([`StoreError`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// The future every store method returns.
pub struct StoreFuture<'a, T>(Answer<'a, T>);

enum Answer<'a, T> {
    /// Known at once (the memory store): no allocation.
    Ready(Option<Result<T, StoreError>>),
    /// A round trip (Redis).
    Pending(Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>),
}

impl<'a, T> StoreFuture<'a, T> {
    /// An answer known now.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        StoreFuture(Answer::Ready(Some(result)))
    }

    /// An answer that takes a round trip.
    pub fn pending(fut: impl Future<Output = Result<T, StoreError>> + Send + 'a) -> Self {
        StoreFuture(Answer::Pending(Box::pin(fut)))
    }
}

impl<T: Unpin> Future for StoreFuture<'_, T> {
    type Output = Result<T, StoreError>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut self.0 {
            Answer::Ready(r) => std::task::Poll::Ready(r.take().expect("polled after completion")),
            Answer::Pending(f) => f.as_mut().poll(cx),
        }
    }
}

/// Why a store could not answer.
///
/// Callers treat both alike for their request (the guard falls back to the private share, a
/// keyed create is refused with 503, a list is served from recent local entries only): either
/// way the shared state could not be read or written for it. They differ in what they say
/// about the backend, which the store itself accounts for: only `Unavailable` counts towards
/// its breaker and its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The backend is down, slow or not yet connected: the caller degrades.
    Unavailable,
    /// The backend answered this command with an error (a script's runtime error, a key of
    /// another type): a bug, logged and counted, that fails only this call. The backend is
    /// up, and stays so for every other call.
    Script,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreError::Unavailable => "state backend unavailable",
            StoreError::Script => "state backend refused the command (a bug)",
        })
    }
}
