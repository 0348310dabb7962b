//! Single flight: concurrent misses for one key wait for the first one's fetch, errors
//! included, and none of them is forwarded. A small table in front of moka, because moka's
//! `try_get_with` cannot refresh an entry that is present but expired, which stale serving
//! needs to keep.

use super::entry::Fetched;
use super::key::CacheKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// A fetch in progress, as its followers see it.
pub(super) type Flight = watch::Receiver<Option<Arc<Fetched>>>;

/// The fetches in progress, by key.
#[derive(Default)]
pub(super) struct Flights(Mutex<HashMap<CacheKey, Flight>>);

/// What a request for a missing key does: fetch it, or wait for the fetch in progress.
pub(super) enum Role {
    Leader(FlightGuard),
    Follower(Flight),
}

impl Flights {
    /// Joins the fetch of `key` in progress, or leads a new one.
    pub(super) fn join_or_lead(self: &Arc<Self>, key: &CacheKey) -> Role {
        let mut table = crate::lock(&self.0);
        if let Some(rx) = table.get(key) {
            if rx.has_changed().is_ok() {
                return Role::Follower(rx.clone());
            }
        }
        let (tx, rx) = watch::channel(None);
        table.insert(key.clone(), rx);
        Role::Leader(FlightGuard {
            flights: self.clone(),
            key: key.clone(),
            tx,
        })
    }
}

/// Owned by the request that fetches; removes the flight however that request ends, so a
/// cancelled leader never leaves waiters hanging (they see the channel close and retry).
pub(super) struct FlightGuard {
    flights: Arc<Flights>,
    key: CacheKey,
    tx: watch::Sender<Option<Arc<Fetched>>>,
}

impl FlightGuard {
    /// Hands the outcome to every follower.
    pub(super) fn complete(self, fetched: Arc<Fetched>) {
        let _ = self.tx.send(Some(fetched));
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        crate::lock(&self.flights.0).remove(&self.key);
    }
}
