//! Every deadline and timeout of a request and of a connection, computed here and only here;
//! the layers ask this module when a wait ends instead of adding durations themselves.
//!
//! - **The request's [`Deadline`]**: `server.request_timeout` after arrival
//!   ([`Deadline::starting`]). The observe layer answers at it; auth bounds a key-set refetch
//!   by it ([`Deadline::at`]) and validate the body read, bounded by `body_read_timeout` too
//!   ([`Deadline::within`]).
//! - **A connection slot** (the upstream guard): until the deadline, or
//!   `upstream.response_timeout` from now if that is sooner ([`Deadline::slot_wait`]).
//! - **A retry's backoff** (the upstream guard): jittered, below
//!   `retry_backoff × 2^attempt` and `retry_backoff_max` ([`retry_backoff`]).
//! - **One upstream exchange** (the forward): `upstream.response_timeout` from now, not cut
//!   at the deadline ([`Deadline::upstream_attempt`]).
//! - **An unread body's drain** (`ingress::drain`): [`DRAIN_UNREAD_BODY`] from now
//!   ([`drain_unread_body`]).
//! - **A client connection's idle and header-read timers** (`server::idle`):
//!   [`ConnectionTimeouts`].
//! - **Shutdown** (the server): `server.shutdown_grace` from now ([`shutdown`]); the writes
//!   still running then are given [`ABANDONED_WRITES`] more to give up
//!   ([`abandoned_writes`], the observe layer's `Writes`).
//! - **Waits between replicas**: for another replica's fetch of the same list through the L2
//!   ([`L2_WAIT`], polled every [`L2_POLL`]), for a create in flight under the same
//!   `Idempotency-Key` ([`IDEMPOTENCY_POLL`]).
//!
//! Timeouts of calls to other systems are the config's and stay with their clients: the
//! state store's `command_timeout` (`state::redis`), the IdP's `jwks_timeout`
//! (`identity::auth`), the pool's `connect_timeout` (`upstream::pool`).
//!
//! A leaf: it knows tokio's clock and the durations the config gives, no layer and no config
//! type. Every instant is tokio's ([`tokio::time::Instant`]), so a test on a paused clock
//! drives all of them.

use std::time::Duration;
use tokio::time::Instant;

/// How long an unread request body is read (and discarded) to keep its connection.
pub const DRAIN_UNREAD_BODY: Duration = Duration::from_secs(2);

/// How long the writes still running when the shutdown grace is over have to give up (each
/// drops its request and logs): a wedged one cannot keep the process from exiting.
pub const ABANDONED_WRITES: Duration = Duration::from_secs(5);

/// `timeout` from now; a duration too large for the clock is a deadline that never comes
/// (as `tokio::time::timeout` treats it).
fn after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// When the whole request must be answered. Every wait after the outermost layer (the body,
/// a key set, a connection slot) ends at it at the latest; only a write already sent upstream
/// outlives it, to learn its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// The deadline of a request that arrived at `arrival`: `request_timeout`
    /// (`server.request_timeout`) later.
    pub fn starting(arrival: Instant, request_timeout: Duration) -> Deadline {
        Deadline(
            arrival
                .checked_add(request_timeout)
                .unwrap_or_else(|| arrival + Duration::from_secs(86_400 * 365 * 30)),
        )
    }

    /// The instant itself, for `tokio::time::timeout_at`.
    pub fn at(self) -> Instant {
        self.0
    }

    /// The time left (zero once it has passed).
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether it has passed.
    pub fn passed(self) -> bool {
        self.remaining().is_zero()
    }

    /// The end of a wait bounded by `timeout` from now and by the deadline, whichever is first.
    pub fn within(self, timeout: Duration) -> Instant {
        self.0.min(after(timeout))
    }

    /// The end of the wait for an upstream connection slot: at the deadline at the latest
    /// (past it nothing is sent, and a write's client has been told so), and never longer
    /// than one upstream exchange may take (`response_timeout`).
    pub fn slot_wait(self, response_timeout: Duration) -> Instant {
        self.within(response_timeout)
    }

    /// The end of one upstream exchange: `response_timeout` from now, deliberately not cut
    /// at the deadline. A write handed to a connection outlives the deadline to learn its
    /// outcome (its client was answered at the deadline), and a read is cancelled at the
    /// deadline by the outermost layer anyway.
    pub fn upstream_attempt(self, response_timeout: Duration) -> Instant {
        after(response_timeout)
    }
}

/// How long a read waits before its `attempt`-th retry (0 for the first): a full-jitter
/// backoff below `base × 2^attempt`, capped at `max` (`upstream.retry_backoff` and
/// `retry_backoff_max`).
///
/// Not cut at the request's deadline: only reads are retried, and the outermost layer
/// cancels a read at its deadline (answering its 504), so a backoff that would end past it
/// simply never ends, and nothing more is spent on the request.
pub fn retry_backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    crate::resilience::backoff(attempt, base, max)
}

/// The end of the drain of an unread request body ([`DRAIN_UNREAD_BODY`] from now).
pub fn drain_unread_body() -> Instant {
    after(DRAIN_UNREAD_BODY)
}

/// When shutdown stops waiting for requests and writes in flight: `grace`
/// (`server.shutdown_grace`) from now.
pub fn shutdown(grace: Duration) -> Instant {
    after(grace)
}

/// When shutdown stops waiting for the writes told to give up ([`ABANDONED_WRITES`] from now).
pub fn abandoned_writes() -> Instant {
    after(ABANDONED_WRITES)
}

/// A client connection's two timers (see `server::idle`): `server.idle_timeout` and
/// `server.header_read_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimeouts {
    /// No request in progress and none started: closed after this long without activity.
    pub idle: Duration,
    /// A started HTTP/1 request must deliver its headers within this time of its first byte.
    pub header_read: Duration,
}

impl ConnectionTimeouts {
    /// When a connection with no request in progress, last active at `last_activity`, is
    /// closed.
    pub fn idle_until(&self, last_activity: Instant) -> Instant {
        last_activity + self.idle
    }

    /// When a request whose first byte arrived at `first_byte` must have delivered its headers.
    pub fn headers_until(&self, first_byte: Instant) -> Instant {
        first_byte + self.header_read
    }
}

/// How long a replica waits for another one's fetch of the same list (shared L2) before
/// fetching itself; the fetch lock expires after twice that.
pub const L2_WAIT: Duration = Duration::from_secs(2);
/// How often a replica waiting for another one's fetch looks at the L2 again.
pub const L2_POLL: Duration = Duration::from_millis(20);
/// How often a repeated create looks again at an idempotency record still in flight.
pub const IDEMPOTENCY_POLL: Duration = Duration::from_millis(25);

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_request_deadline_counts_down_and_bounds_its_waits() {
        let arrival = Instant::now();
        let deadline = Deadline::starting(arrival, 10 * SEC);
        assert_eq!(deadline.at(), arrival + 10 * SEC);
        assert_eq!(deadline.remaining(), 10 * SEC);
        // A slot wait ends at the shorter of the response timeout and the deadline.
        assert_eq!(deadline.slot_wait(3 * SEC), arrival + 3 * SEC);
        assert_eq!(deadline.slot_wait(30 * SEC), deadline.at());
        tokio::time::advance(8 * SEC).await;
        assert_eq!(deadline.remaining(), 2 * SEC);
        assert_eq!(deadline.slot_wait(3 * SEC), deadline.at());
        // One upstream exchange is not cut at the deadline: a sent write outlives it.
        assert_eq!(deadline.upstream_attempt(3 * SEC), Instant::now() + 3 * SEC);
        assert!(!deadline.passed());
        tokio::time::advance(2 * SEC).await;
        assert!(deadline.passed());
        assert_eq!(deadline.remaining(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_duration_too_large_for_the_clock_never_ends() {
        let deadline = Deadline::starting(Instant::now(), Duration::MAX);
        assert!(deadline.remaining() > Duration::from_secs(86_400 * 365));
        assert!(deadline.upstream_attempt(Duration::MAX) > Instant::now());
    }

    #[test]
    fn retry_backoff_stays_below_its_cap() {
        for attempt in 0..8 {
            let wait = retry_backoff(attempt, Duration::from_millis(100), SEC);
            assert!(wait <= (Duration::from_millis(100) * (1 << attempt)).min(SEC));
        }
    }

    #[test]
    fn connection_timers_run_from_their_own_instants() {
        let t = ConnectionTimeouts {
            idle: 6 * SEC,
            header_read: 2 * SEC,
        };
        let at = Instant::now();
        assert_eq!(t.idle_until(at), at + 6 * SEC);
        assert_eq!(t.headers_until(at), at + 2 * SEC);
    }
}
