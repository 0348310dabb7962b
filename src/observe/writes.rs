//! Writes run to completion once accepted: the rest of a write's stack runs in a task of its
//! own ([`detach`]), so neither a client that hangs up nor the whole-request timeout can
//! cancel it between "sent to JourneyBee" and "outcome recorded" (audit event, idempotency
//! record, cache invalidation, access-log line). The client that is still there gets the
//! answer; one that timed out gets a 504 saying whether the write had been sent, and the
//! access-log line written when the write finishes says what really happened.
//!
//! The writes' tasks are counted in [`Writes`], which the server owns: shutdown waits for
//! them within the grace (their clients may be long gone), and tells the ones still running
//! when the grace is over to give up, so each is logged (its audit event says `unknown`)
//! instead of vanishing with the process.

use crate::error::{GatewayError, Response};
use crate::exchange::{Reply, SendGate};
use crate::observe::access::{Delivery, Record};
use crate::observe::request_id::X_REQUEST_ID;
use crate::timeouts::Deadline;
use crate::BoxFuture;
use http::HeaderValue;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// The writes running in tasks of their own, across every generation of the stack: shutdown
/// waits for them ([`Writes::settle`]) and, when the grace is over, tells the rest to give
/// up (each then logs what is known of it).
#[derive(Debug)]
pub struct Writes {
    running: AtomicUsize,
    /// Woken when `running` drops to zero.
    idle: Notify,
    /// Set when the grace is over.
    abandon: watch::Sender<bool>,
}

impl Default for Writes {
    fn default() -> Self {
        Writes {
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            abandon: watch::Sender::new(false),
        }
    }
}

/// One write's place in [`Writes`], held by its task: released however the task ends.
struct Running(Arc<Writes>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Writes {
    fn begin(self: &Arc<Self>) -> Running {
        self.running.fetch_add(1, Ordering::AcqRel);
        Running(self.clone())
    }

    /// Writes whose task has not ended.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Resolves once no write is running.
    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a task ending in between is not missed.
            notified.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Resolves when the grace is over for the writes still running.
    async fn abandoned(&self) {
        let mut rx = self.abandon.subscribe();
        let _ = rx.wait_for(|over| *over).await;
    }

    /// Waits until `deadline` for every running write to end; those still running then are
    /// told to give up (each logs its audit event with the outcome `unknown`, or `not_sent`
    /// if it never left), and this returns once they have. Returns how many gave up.
    pub async fn settle(&self, deadline: Instant) -> usize {
        if tokio::time::timeout_at(deadline, self.idle()).await.is_ok() {
            return 0;
        }
        let left = self.running();
        tracing::error!(
            writes = left,
            "shutdown grace over with writes still waiting for JourneyBee: logged as unknown"
        );
        self.abandon.send_replace(true);
        // Giving up is immediate (each task drops its request and logs); bounded anyway, so
        // a wedged task cannot keep the process from exiting.
        let _ = tokio::time::timeout_at(crate::timeouts::abandoned_writes(), self.idle()).await;
        left
    }
}

/// Between a write's task and the request that waits for it: whoever moves it from WAITING
/// first decides how the client was answered.
const WAITING: u8 = 0;
const ANSWERED: u8 = 1;
const TIMED_OUT: u8 = 2;
const GONE: u8 = 3;

/// Marks the write's client gone if the waiting request is dropped before it answered.
struct Waiter(Arc<AtomicU8>);

impl Drop for Waiter {
    fn drop(&mut self) {
        let _ = self
            .0
            .compare_exchange(WAITING, GONE, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Runs the write `fut` (the rest of the stack) in a task of its own, counted in `writes`,
/// which finishes its `record` when it ends; the returned future answers the client: with the
/// write's reply, or at `deadline` with a 504 saying whether the write had been sent (`gate`
/// decides, once, between the send and this answer).
pub fn detach<F>(
    writes: &Arc<Writes>,
    fut: F,
    record: Record,
    gate: SendGate,
    deadline: Deadline,
    id: HeaderValue,
) -> BoxFuture<Response>
where
    F: Future<Output = Result<Reply, Infallible>> + Send + 'static,
{
    let state = Arc::new(AtomicU8::new(WAITING));
    let shared = state.clone();
    let running = writes.begin();
    let task_gate = gate.clone();
    let mut task = tokio::spawn(async move {
        let writes = running.0.clone();
        let mut fut = Box::pin(fut);
        let reply = tokio::select! {
            biased;
            done = &mut fut => match done {
                Ok(reply) => reply,
                Err(never) => match never {},
            },
            () = writes.abandoned() => {
                // Shutdown's grace is over: dropping the request logs its audit event
                // with what is known (sent or not), then the access line says the same.
                drop(fut);
                let error = if task_gate.taken() {
                    GatewayError::CreateOutcomeUnknown("the gateway shut down first".into())
                } else {
                    GatewayError::WriteTimedOutUnsent
                };
                error.into()
            }
        };
        let delivery =
            match shared.compare_exchange(WAITING, ANSWERED, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => Delivery::Answered,
                Err(TIMED_OUT) => Delivery::TimedOut,
                Err(_) => Delivery::Gone,
            };
        let response = record.finish(reply, delivery);
        // Only now, its lines logged, may shutdown count it done.
        drop(running);
        response
    });
    Box::pin(async move {
        let waiter = Waiter(state);
        let joined = match tokio::time::timeout_at(deadline.at(), &mut task).await {
            Ok(joined) => joined,
            Err(_) => {
                let gave_up = waiter
                    .0
                    .compare_exchange(WAITING, TIMED_OUT, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
                if gave_up {
                    // The write goes on in its task and logs its real outcome there; the
                    // client hears whether it had been sent.
                    let error = if gate.close() {
                        GatewayError::WriteTimedOutUnsent
                    } else {
                        GatewayError::CreateOutcomeUnknown("whole-request timeout".into())
                    };
                    let mut resp = error.into_response();
                    resp.headers_mut().insert(X_REQUEST_ID, id);
                    return Ok(resp);
                }
                // It answered just as the deadline passed: that answer is ready.
                task.await
            }
        };
        Ok(joined.unwrap_or_else(|e| {
            tracing::error!(error = %e, "a write's task failed");
            let mut resp = GatewayError::Internal("write task failed".into()).into_response();
            resp.headers_mut().insert(X_REQUEST_ID, id);
            resp
        }))
    })
}
