//! Writes run to completion once accepted ([`detach`]): the request drives its write while
//! the client waits, and the write moves to a task of its own when the client hangs up or the
//! whole-request timeout answers it, so neither can cancel it between "sent to JourneyBee" and "outcome recorded" (audit event, idempotency
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// The writes in progress (driven by their request or in tasks of their own), across every generation of the stack: shutdown
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

/// A write not finished yet: the rest of its stack, what its access line records, its place in
/// [`Writes`].
struct Pending<F> {
    fut: std::pin::Pin<Box<F>>,
    record: Record,
    running: Running,
    gate: SendGate,
}

impl<F> Pending<F>
where
    F: Future<Output = Result<Reply, Infallible>> + Send + 'static,
{
    /// Runs the rest of the write in a task of its own (its client left, or was answered at
    /// the deadline): it finishes whatever the client does, and logs how it was delivered.
    fn continue_in_task(self, delivery: Delivery) {
        let Pending {
            mut fut,
            record,
            running,
            gate,
        } = self;
        let run = async move {
            let writes = running.0.clone();
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
                    let error = if gate.taken() {
                        GatewayError::CreateOutcomeUnknown("the gateway shut down first".into())
                    } else {
                        GatewayError::WriteTimedOutUnsent
                    };
                    error.into()
                }
            };
            let _ = record.finish(reply, delivery);
            // Only now, its lines logged, may shutdown count it done.
            drop(running);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(run)),
            // No runtime (the process is exiting): dropping the write logs its audit event
            // with what is known, and the record its access line.
            Err(_) => drop(run),
        }
    }
}

/// The write's future while its client waits: it drives the write itself, with no task of
/// its own (a spawn, a task allocation and a cross-task wake-up saved per write); if it is
/// dropped before the write finished (its client left), the write moves to a task.
struct Inline<F>
where
    F: Future<Output = Result<Reply, Infallible>> + Send + 'static,
{
    write: Option<Pending<F>>,
}

impl<F> Drop for Inline<F>
where
    F: Future<Output = Result<Reply, Infallible>> + Send + 'static,
{
    fn drop(&mut self) {
        if let Some(write) = self.write.take() {
            write.continue_in_task(Delivery::Gone);
        }
    }
}

/// Drives the write `fut` (the rest of the stack) to completion, counted in `writes`,
/// finishing its `record` when it ends. The returned future answers the client with the
/// write's reply, or at `deadline` with a 504 saying whether the write had been sent (`gate`
/// decides, once, between the send and this answer). The write runs inline while its client
/// waits; past the deadline, or once its client is gone, it goes on in a task of its own, so
/// neither can cancel it between "sent" and "outcome recorded".
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
    let mut inline = Inline {
        write: Some(Pending {
            fut: Box::pin(fut),
            record,
            running: writes.begin(),
            gate,
        }),
    };
    Box::pin(async move {
        let pending = inline.write.as_mut().expect("not finished yet");
        let done = tokio::time::timeout_at(deadline.at(), &mut pending.fut).await;
        let write = inline.write.take().expect("not finished yet");
        match done {
            Ok(Ok(reply)) => {
                let response = write.record.finish(reply, Delivery::Answered);
                drop(write.running);
                Ok(response)
            }
            Ok(Err(never)) => match never {},
            Err(_) => {
                // The write goes on in its task and logs its real outcome there; the client
                // hears whether it had been sent.
                let error = if write.gate.close() {
                    GatewayError::WriteTimedOutUnsent
                } else {
                    GatewayError::CreateOutcomeUnknown("whole-request timeout".into())
                };
                write.continue_in_task(Delivery::TimedOut);
                let mut resp = error.into_response();
                resp.headers_mut().insert(X_REQUEST_ID, id);
                Ok(resp)
            }
        }
    })
}
