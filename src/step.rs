//! The future a synchronous layer returns: an answer it has now, or the next layer's future,
//! with what this layer knows about the request written into the reply's facts on the way
//! out. No allocation: layers that decide without awaiting (limits, routing, the cached-token
//! fast path, identity, policy, a read's validation) pass the inner future through instead of
//! boxing one of their own.

use crate::exchange::Reply;
use crate::ingress::route::Route;
use crate::BoxFuture;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// See the module documentation.
pub struct Step<F> {
    state: State<F>,
    route: Option<Route>,
    user: Option<Arc<str>>,
}

enum State<F> {
    /// Answered here (taken once).
    Now(Option<Reply>),
    /// The next layer answers.
    Next(F),
    /// Answered here after some work (draining an unread body, a slow verification).
    Boxed(BoxFuture),
}

impl<F> Step<F> {
    /// An answer this layer has now.
    pub fn now(reply: Reply) -> Step<F> {
        Step::of(State::Now(Some(reply)))
    }

    /// The next layer's answer.
    pub fn next(fut: F) -> Step<F> {
        Step::of(State::Next(fut))
    }

    /// An answer that takes some awaiting.
    pub fn boxed(fut: BoxFuture) -> Step<F> {
        Step::of(State::Boxed(fut))
    }

    fn of(state: State<F>) -> Step<F> {
        Step {
            state,
            route: None,
            user: None,
        }
    }

    /// Records the matched route in the reply.
    pub fn route(mut self, route: Route) -> Step<F> {
        self.route = Some(route);
        self
    }

    /// Records the mapped user in the reply.
    pub fn user(mut self, user: Arc<str>) -> Step<F> {
        self.user = Some(user);
        self
    }
}

impl<F> Future for Step<F>
where
    F: Future<Output = Result<Reply, Infallible>> + Unpin,
{
    type Output = Result<Reply, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut reply = match &mut this.state {
            State::Now(reply) => reply.take().expect("Step polled after completion"),
            State::Next(fut) => match ready!(Pin::new(fut).poll(cx)) {
                Ok(r) => r,
                Err(never) => match never {},
            },
            State::Boxed(fut) => match ready!(fut.as_mut().poll(cx)) {
                Ok(r) => r,
                Err(never) => match never {},
            },
        };
        if let Some(route) = this.route {
            reply.facts.route.get_or_insert(route);
        }
        if let Some(user) = this.user.take() {
            reply.facts.user.get_or_insert(user);
        }
        Poll::Ready(Ok(reply))
    }
}

/// A future that holds `G` (a slot, a counter) until it completes or is dropped: the inner
/// future is passed through without boxing.
pub struct Guarded<F, G> {
    fut: F,
    _guard: G,
}

impl<F, G> Guarded<F, G> {
    /// `fut`, holding `guard` for as long as it lives.
    pub fn new(fut: F, guard: G) -> Self {
        Guarded { fut, _guard: guard }
    }
}

impl<F: Future + Unpin, G: Unpin> Future for Guarded<F, G> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.get_mut().fut).poll(cx)
    }
}
