//! The current generation: a config's state and the stack built from it, swapped atomically by
//! a reload, and each connection's copy of its stack.

use crate::error::Response;
use crate::generation::AppState;
use crate::stack::build_stack;
use http::Request;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tower::util::BoxCloneSyncService;
use tower::Service;

/// The public stack, type-erased so a reload can swap in a new one.
pub type Stack = BoxCloneSyncService<Request<Incoming>, Response, Infallible>;

/// Builds a generation's public stack from its state: [`build_stack`], unless a test wraps
/// standard tower middleware around it or inside it (see [`Gateway::start_with`](super::Gateway::start_with)).
pub type StackBuilder = Arc<dyn Fn(&AppState) -> Stack + Send + Sync>;

pub(super) fn default_builder() -> StackBuilder {
    Arc::new(|state| BoxCloneSyncService::new(build_stack::<Incoming>(state)))
}

/// One generation: a config's state and the stack built from it.
pub(super) struct Generation {
    pub(super) state: Arc<AppState>,
    stack: Stack,
}

/// The current generation, swapped atomically by a reload, and a count of the swaps (so a
/// connection can tell, with one atomic load, whether its copy of the stack is current).
#[derive(Clone)]
pub(super) struct Current(Arc<(RwLock<Arc<Generation>>, AtomicU64)>);

impl Current {
    pub(super) fn new(generation: Arc<Generation>) -> Current {
        Current(Arc::new((RwLock::new(generation), AtomicU64::new(0))))
    }

    pub(super) fn get(&self) -> Arc<Generation> {
        self.0 .0.read().expect("generation lock").clone()
    }

    /// Bumped by every swap.
    pub(super) fn epoch(&self) -> u64 {
        self.0 .1.load(Ordering::Acquire)
    }

    pub(super) fn swap(&self, generation: Arc<Generation>) {
        *self.0 .0.write().expect("generation lock") = generation;
        self.0 .1.fetch_add(1, Ordering::AcqRel);
    }

    /// A connection's copy of the current stack.
    pub(super) fn stack(&self) -> Swap {
        // The epoch is read first: a swap between the two reads makes the copy look older
        // than it is, and the next request takes a new one.
        let epoch = self.epoch();
        Swap {
            current: self.clone(),
            epoch,
            stack: self.get().stack.clone(),
        }
    }
}

/// The public listener's service, one per connection: its own copy of the current
/// generation's stack, taken again when a reload has swapped the generation. A request costs
/// one atomic load instead of a copy of every layer; a request in flight keeps the
/// generation it started on (its future owns what it uses), so nothing is dropped by a swap.
pub(super) struct Swap {
    current: Current,
    epoch: u64,
    stack: Stack,
}

impl Clone for Swap {
    /// A new connection starts from the current generation.
    fn clone(&self) -> Swap {
        self.current.stack()
    }
}

impl Service<Request<Incoming>> for Swap {
    type Response = Response;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Infallible>> + Send>>;

    /// The current generation's stack, ready: taken again first when a reload has swapped
    /// the generation (a reservation the old one held is dropped with it).
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        if self.current.epoch() != self.epoch {
            *self = self.current.stack();
        }
        self.stack.poll_ready(cx)
    }

    /// Calls the stack polled ready, even if a reload swapped the generation since: the
    /// request runs on that one.
    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        self.stack.call(req)
    }
}

pub(super) fn generation(state: Arc<AppState>, build: &StackBuilder) -> Arc<Generation> {
    let stack = build(&state);
    Arc::new(Generation { state, stack })
}
