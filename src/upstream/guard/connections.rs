//! The bound on upstream connections in use (`upstream.max_connections`): one slot per
//! request while it uses upstream, shared by every config generation, resized in place by a
//! reload.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// A request that waited this long for an upstream connection is counted again when it
/// leaves (well under the default 1 s budget margin).
pub(super) const REQUEUE_AFTER: Duration = Duration::from_millis(100);

/// The bound on upstream connections in use (`upstream.max_connections`), shared by every
/// generation: requests still running on the generation a reload replaced hold slots of the
/// same bound as the new generation's, so together they never use more than the limit. A
/// reload that changes the limit resizes it in place.
///
/// Invariant, kept under one mutex: permits in the semaphore (free plus held) minus `debt`
/// equal the configured size. A shrink forgets the free permits it can and owes the rest as
/// `debt`; a slot given back while there is debt pays one unit instead of returning its
/// permit; a grow cancels debt first and adds permits only for the remainder. So any
/// interleaving of shrinks, grows and releases ends, once every slot is back, with exactly
/// the configured number free, and never more in use than the largest size in force since.
#[derive(Debug)]
pub struct ConnectionLimit {
    slots: Arc<Semaphore>,
    sizing: std::sync::Mutex<Sizing>,
}

#[derive(Debug)]
struct Sizing {
    /// The configured bound.
    size: usize,
    /// Permits a shrink could not take at once (they were in use): taken as they come back.
    debt: usize,
}

/// One upstream connection slot, held while the request uses upstream; given back (or used to
/// pay a shrink's debt) on drop.
#[derive(Debug)]
pub struct Slot {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    limit: Arc<ConnectionLimit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        // Under the lock, so a resize sees either the permit back or the debt paid, never a
        // permit freed between its forgetting and its counting of the debt.
        let mut sizing = crate::lock(&self.limit.sizing);
        if sizing.debt > 0 {
            sizing.debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
    }
}

impl ConnectionLimit {
    /// A bound of `size` connections.
    pub fn new(size: usize) -> Arc<ConnectionLimit> {
        Arc::new(ConnectionLimit {
            slots: Arc::new(Semaphore::new(size)),
            sizing: std::sync::Mutex::new(Sizing { size, debt: 0 }),
        })
    }

    /// Waits for a slot (FIFO with the other waiters).
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        Slot {
            permit: Some(permit),
            limit: self.clone(),
        }
    }

    /// Makes the bound `size`: larger at once; smaller as slots in use are given back (the
    /// excess is taken as it frees, ahead of any waiting request, and never given out again).
    pub fn resize(&self, size: usize) {
        let mut sizing = crate::lock(&self.sizing);
        if size > sizing.size {
            let grow = size - sizing.size;
            // Owed permits are simply no longer owed: a grow right after a shrink gives back
            // what the shrink had not yet taken, not new permits on top of it.
            let cancelled = grow.min(sizing.debt);
            sizing.debt -= cancelled;
            self.slots.add_permits(grow - cancelled);
        } else if size < sizing.size {
            let shrink = sizing.size - size;
            let forgotten = self.slots.forget_permits(shrink);
            sizing.debt += shrink - forgotten;
        }
        sizing.size = size;
    }

    /// Free slots now (for tests and gauges).
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_connection_bound_resizes_in_place() {
        let limit = ConnectionLimit::new(2);
        let a = limit.acquire().await;
        let b = limit.acquire().await;
        // Smaller while both slots are in use: the excess is taken as they come back.
        limit.resize(1);
        drop(a);
        tokio::task::yield_now().await;
        assert_eq!(limit.available(), 0, "the freed slot was the excess");
        drop(b);
        assert_eq!(limit.available(), 1);
        // Larger: at once.
        limit.resize(3);
        assert_eq!(limit.available(), 3);
    }

    /// Lets anything the resize may have spawned run.
    async fn settle() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_grow_before_a_shrink_has_taken_its_slots_keeps_the_configured_bound() {
        let limit = ConnectionLimit::new(2);
        let a = limit.acquire().await;
        let b = limit.acquire().await;
        // Shrink while both are held, then grow back before either is given back: at no
        // moment may a third slot be free (the old spawned debt collector left one free
        // until it ran).
        limit.resize(1);
        limit.resize(2);
        assert_eq!(limit.available(), 0, "two in use under a bound of two");
        settle().await;
        assert_eq!(limit.available(), 0, "two in use under a bound of two");
        drop(a);
        settle().await;
        assert_eq!(limit.available(), 1);
        drop(b);
        settle().await;
        assert_eq!(limit.available(), 2, "exactly the configured bound");

        // Shrink by more than is free, pay part of it, grow past it, shrink again.
        let limit = ConnectionLimit::new(3);
        let held: Vec<_> = vec![
            limit.acquire().await,
            limit.acquire().await,
            limit.acquire().await,
        ];
        limit.resize(0);
        settle().await;
        let mut held = held.into_iter();
        drop(held.next());
        settle().await;
        assert_eq!(limit.available(), 0, "the freed slot paid the shrink");
        limit.resize(4);
        settle().await;
        assert_eq!(limit.available(), 2, "4 configured, 2 in use");
        limit.resize(1);
        settle().await;
        assert_eq!(limit.available(), 0);
        drop(held);
        settle().await;
        assert_eq!(limit.available(), 1, "exactly the configured bound");
    }

    #[tokio::test]
    async fn a_shrink_takes_a_freed_slot_ahead_of_a_waiting_request() {
        let limit = ConnectionLimit::new(1);
        let a = limit.acquire().await;
        // A request already queued for a slot when the bound drops to 0.
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        settle().await;
        limit.resize(0);
        drop(a);
        settle().await;
        assert!(!waiting.is_finished(), "a bound of 0 gave a slot out");
        limit.resize(1);
        let slot = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the grow gave the waiting request its slot")
            .unwrap();
        assert_eq!(limit.available(), 0);
        drop(slot);
        assert_eq!(limit.available(), 1, "exactly the configured bound");
    }

    /// Random interleavings of takes, gives back, shrinks and grows: after every step the
    /// free slots are exactly what the bound leaves (`size - in use`, or none while more are
    /// in use than the bound), and once everything is given back, exactly the bound.
    #[tokio::test]
    async fn resizes_interleaved_with_slots_in_use_leave_exactly_the_bound() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _round in 0..200 {
            let mut size = next(5) as usize;
            let limit = ConnectionLimit::new(size);
            let mut held = Vec::new();
            for _step in 0..40 {
                match next(4) {
                    0 if limit.available() > 0 => held.push(limit.acquire().await),
                    1 if !held.is_empty() => {
                        let i = next(held.len() as u64) as usize;
                        drop(held.swap_remove(i));
                    }
                    2 | 3 => {
                        size = next(6) as usize;
                        limit.resize(size);
                    }
                    _ => {}
                }
                // At every instant, not only once background work has run: a bound that
                // is exceeded for a while is exceeded.
                assert_eq!(
                    limit.available(),
                    size.saturating_sub(held.len()),
                    "bound {size}, {} in use",
                    held.len()
                );
            }
            held.clear();
            settle().await;
            assert_eq!(
                limit.available(),
                size,
                "everything back: exactly the bound"
            );
        }
    }
}
