//! Generation bookkeeping: each (upstream key, group) has a generation in the state store; a
//! write bumps it, which makes every older copy unreachable on every replica. While the store
//! cannot be asked, remembered generations, write epochs and pending bumps keep
//! read-your-writes on this replica.

use super::metrics::InvalidationCause;
use super::ListCache;
use crate::ingress::route::{Caching, Group};
use crate::lock;
use crate::state::{Settle, SettleTicket};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
/// How often pending generation bumps (writes accepted while the store was down) are
/// retried in the background, until the store takes them.
pub const PENDING_RETRY: Duration = Duration::from_millis(250);

/// At most one background sweep per upstream key per interval. The generation bump already
/// makes older entries unreachable; the sweep (a moka invalidation predicate, evaluated in
/// moka's housekeeping, each with a random id that costs a `getrandom` call) only returns their
/// memory sooner. One per create would be wasted work under a burst of creates; entries of
/// generations no sweep covered expire with their TTL or are evicted by the capacity bound.
pub(super) const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl ListCache {
    /// Retries the bumps the store could not take, in the background, as soon as it answers
    /// again: read-your-writes for the other replicas must not wait until this one next
    /// reads the group. The task holds the cache weakly and ends with it.
    pub(super) fn retry_pending_bumps(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cache = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(PENDING_RETRY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(cache) = cache.upgrade() else { return };
                cache.flush_pending_bumps().await;
            }
        });
    }

    /// Sends every pending generation bump to the store (in the background, and at
    /// shutdown); true when none is left.
    pub async fn flush_pending_bumps(&self) -> bool {
        let pending: Vec<(Arc<str>, Group)> = lock(&self.pending_bumps).iter().cloned().collect();
        for (name, group) in pending {
            self.bump_if_pending(&name, group).await;
        }
        lock(&self.pending_bumps).is_empty()
    }

    /// How many generation bumps wait for the store.
    pub fn pending_bumps(&self) -> usize {
        lock(&self.pending_bumps).len()
    }

    /// Moves the generation bumps `old` could not send yet into this cache, which retries
    /// them (a reload that rebuilt the cache must not forget them).
    pub fn take_pending_bumps(&self, old: &ListCache) {
        let pending = std::mem::take(&mut *lock(&old.pending_bumps));
        lock(&self.pending_bumps).extend(pending);
    }

    /// How many writes to `group` on `name` this replica has had accepted.
    pub(super) fn write_epoch(&self, name: &Arc<str>, group: Group) -> u64 {
        let purges = self.purges.load(std::sync::atomic::Ordering::Acquire);
        lock(&self.write_epochs)
            .get(&(name.clone(), group))
            .copied()
            .unwrap_or(0)
            .wrapping_add(purges)
    }

    /// The key's current generation, and whether it came from the store (false: the store
    /// is down and this is the last one seen).
    pub(super) async fn generation(&self, name: &Arc<str>, group: Group) -> (u64, bool) {
        self.bump_if_pending(name, group).await;
        // Known current without asking (the store's change notifications), unless a bump of
        // this replica's is still waiting to reach the store.
        if let Some(g) = self.state.known_generation(name, group.as_str()) {
            if !lock(&self.pending_bumps).contains(&(name.clone(), group)) {
                self.remember(name, group, g);
                return (g, true);
            }
        }
        match self.state.generation(name, group.as_str()).await {
            Ok(g) => {
                self.remember(name, group, g);
                (g, true)
            }
            Err(_) => (self.last_seen(name, group), false),
        }
    }

    /// The key's current generations of `groups`, in one store call, and whether they came
    /// from the store (as [`ListCache::generation`], for several groups at once).
    pub(super) async fn generations(&self, name: &Arc<str>, groups: &[Group]) -> (Vec<u64>, bool) {
        for group in groups {
            self.bump_if_pending(name, *group).await;
        }
        // All known current without asking (see `generation`): no round trip.
        let known: Option<Vec<u64>> = {
            let pending = lock(&self.pending_bumps);
            groups
                .iter()
                .map(|g| {
                    self.state
                        .known_generation(name, g.as_str())
                        .filter(|_| !pending.contains(&(name.clone(), *g)))
                })
                .collect()
        };
        if let Some(values) = known {
            for (group, g) in groups.iter().zip(&values) {
                self.remember(name, *group, *g);
            }
            return (values, true);
        }
        let mut buf = [""; Group::ALL.len()];
        match self
            .state
            .generations(name, scope_names(groups, &mut buf))
            .await
        {
            Ok(values) => {
                for (group, g) in groups.iter().zip(&values) {
                    self.remember(name, *group, *g);
                }
                (values, true)
            }
            Err(_) => {
                let values = groups.iter().map(|g| self.last_seen(name, *g)).collect();
                (values, false)
            }
        }
    }

    /// A bump the store could not take when its write was accepted, retried before the
    /// generation is read again.
    pub(super) async fn bump_if_pending(&self, name: &Arc<str>, group: Group) {
        let slot = (name.clone(), group);
        let pending = lock(&self.pending_bumps).contains(&slot);
        if pending && self.state.bump(name, &[group.as_str()]).await.is_ok() {
            lock(&self.pending_bumps).remove(&slot);
        }
    }

    /// Records the key's generation of `group` as read from the store, for when it is down.
    pub(super) fn remember(&self, name: &Arc<str>, group: Group, generation: u64) {
        let mut last = lock(&self.last_generation);
        let slot = (name.clone(), group);
        if last.get(&slot) != Some(&generation) {
            last.insert(slot, generation);
        }
    }

    /// The last generation of `group` read from the store (0 if none).
    pub(super) fn last_seen(&self, name: &Arc<str>, group: Group) -> u64 {
        lock(&self.last_generation)
            .get(&(name.clone(), group))
            .copied()
            .unwrap_or(0)
    }

    /// The TTL of `spec`'s entries, and how old one may be when served: its TTL, but without
    /// the store (`coherent` false) at most `degraded_max_age`, since a local entry may then be
    /// older than a write on another replica.
    pub(super) fn max_age(
        &self,
        spec: &crate::ingress::route::RouteSpec,
        coherent: bool,
    ) -> (Duration, Duration) {
        let ttl = match spec.caching {
            Caching::Lookup => self.settings.lookup_ttl,
            Caching::Read | Caching::None => self.settings.ttl,
        };
        let max_age = if coherent {
            ttl
        } else {
            ttl.min(self.degraded_max_age)
        };
        (ttl, max_age)
    }

    /// Makes every cached list of the key `name` unusable, on every replica sharing the
    /// state, before returning (O(1): a generation bump; the memory is reclaimed in the
    /// background).
    pub async fn invalidate(&self, name: &Arc<str>, groups: &[Group], cause: InvalidationCause) {
        self.invalidate_settling(name, groups, cause, None).await;
    }

    /// [`ListCache::invalidate`], for an accepted keyed write: its idempotency record (the
    /// ticket, and how it ends) is settled in the same store call as the bump. True when it
    /// was; false (no ticket, or the store failed: the bump is then pending, and the caller
    /// settles the record on its own) when the caller still has to.
    pub async fn invalidate_settling(
        &self,
        name: &Arc<str>,
        groups: &[Group],
        cause: InvalidationCause,
        settle: Option<(SettleTicket, Settle)>,
    ) -> bool {
        self.metrics.cache_invalidation(cause);
        {
            // First, whatever the store says: a fetch in flight now must not store its
            // (pre-write) answer as fresh after this write.
            let mut epochs = lock(&self.write_epochs);
            for group in groups {
                *epochs.entry((name.clone(), *group)).or_insert(0) += 1;
            }
        }
        let mut buf = [""; Group::ALL.len()];
        let scopes = scope_names(groups, &mut buf);
        let settling = settle.is_some();
        let bumped = match settle {
            Some((ticket, how)) => {
                self.state
                    .settle_and_bump(&ticket.id, how, ticket.ttl, name, scopes)
                    .await
            }
            None => self.state.bump(name, scopes).await,
        };
        match bumped {
            Ok(values) => {
                for (group, new) in groups.iter().zip(values) {
                    self.remember(name, *group, new);
                    self.sweep(name.clone(), *group, new);
                }
                settling
            }
            Err(_) => {
                // The shared counters cannot be bumped now: drop this replica's entries at
                // once, and bump them as soon as the store answers again.
                for group in groups {
                    lock(&self.pending_bumps).insert((name.clone(), *group));
                }
                let (n, gs) = (name.clone(), groups.to_vec());
                let _ = self.store.invalidate_entries_if(move |k, _| {
                    k.upstream_key == n && gs.contains(&k.group)
                });
                false
            }
        }
    }

    /// Registers a background sweep of the key's older generations of `group`, at most once
    /// per [`SWEEP_INTERVAL`].
    pub(super) fn sweep(&self, name: Arc<str>, group: Group, below: u64) {
        let now = Instant::now();
        {
            let mut next = lock(&self.next_sweep);
            if next
                .get(&(name.clone(), group))
                .is_some_and(|due| now < *due)
            {
                return;
            }
            next.insert((name.clone(), group), now + SWEEP_INTERVAL);
        }
        let _ = self.store.invalidate_entries_if(move |k, _| {
            k.upstream_key == name && k.group == group && k.generation < below
        });
    }

    /// Purges all entries of the keys in `names`, or only the one named `key`, on every
    /// replica sharing the state.
    pub async fn purge(&self, key: Option<&str>, names: &[Arc<str>]) -> Result<(), String> {
        match key {
            None => {
                let scopes: Vec<&str> = Group::ALL.iter().map(|g| g.as_str()).collect();
                for n in names {
                    if self.state.bump(n, &scopes).await.is_err() {
                        for group in Group::ALL {
                            lock(&self.pending_bumps).insert((n.clone(), *group));
                        }
                    }
                }
                self.purges
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                self.store.invalidate_all();
                self.metrics.cache_invalidation(InvalidationCause::Admin);
                Ok(())
            }
            Some(name) => {
                let n = names
                    .iter()
                    .find(|n| &***n == name)
                    .ok_or_else(|| format!("No upstream key named {name:?}"))?;
                self.invalidate(n, Group::ALL, InvalidationCause::Admin)
                    .await;
                Ok(())
            }
        }
    }
}

/// The store's scope names of `groups`, written into `buf` (on the stack: a write's or a
/// create's groups are distinct, so at most all of them).
pub(super) fn scope_names<'a>(
    groups: &[Group],
    buf: &'a mut [&'static str; Group::ALL.len()],
) -> &'a [&'static str] {
    for (slot, group) in buf.iter_mut().zip(groups) {
        *slot = group.as_str();
    }
    &buf[..groups.len().min(Group::ALL.len())]
}
