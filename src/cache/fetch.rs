//! Fetching a read: served from a copy, coalesced, shared through the L2, refreshed in the
//! background, or sent upstream in the budget class it deserves.

use super::entry::Entry;
use super::entry::Fetched;
use super::entry::Snapshot;
use super::flight::Role;
use super::headers::is_json;
use super::headers::upstream_forbids_storing;
use super::headers::Directive;
use super::headers::X_CACHE;
use super::l2::decode;
use super::l2::encode;
use super::l2::l2_id;
use super::l2::L2Lease;
use super::metrics::StaleReason;
use super::status::Status;
use super::status::CACHE_STATUS;
use super::CacheKey;
use super::ListCache;
use crate::exchange::{BudgetClass, CacheResult, Outbound, Reply};
use crate::state::{L2Copy, L2Lookup};
use crate::timeouts::{L2_POLL, L2_WAIT};
use crate::validate::{Purpose, Read};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::Service;

/// How a fetch is made.
#[derive(Debug, Clone, Copy)]
pub(super) struct How {
    /// The client forced a real fetch (`no-cache`, `max-age=0`): the L2 is not read.
    pub(super) forced: bool,
    /// The L2 is worth asking (a shared store whose generation was just read).
    pub(super) shared: bool,
    /// The route's freshness lifetime.
    pub(super) ttl: Duration,
    /// Who the read is for.
    pub(super) purpose: Purpose,
}

/// The budget class of a fetch for `purpose`: a reference check's lookup is always `lookup`;
/// a client's read is a `refresh` when a copy of it exists somewhere, else `cold`.
pub(super) fn budget_class(purpose: Purpose, copy_exists: bool) -> BudgetClass {
    match (purpose, copy_exists) {
        (Purpose::References, _) => BudgetClass::Lookup,
        (Purpose::Client, true) => BudgetClass::Refresh,
        (Purpose::Client, false) => BudgetClass::Cold,
    }
}

/// The younger of a copy and another.
pub(super) fn fresher(a: Option<Arc<Entry>>, b: Arc<Entry>) -> Option<Arc<Entry>> {
    match a {
        Some(a) if a.stored_at >= b.stored_at => Some(a),
        _ => Some(b),
    }
}

impl ListCache {
    /// Turns an upstream answer into what is shared and maybe stored. `epoch`: this
    /// replica's write epoch of the key's group when the fetch started; if a write was
    /// accepted since, the answer (maybe from before it) is passed on but not stored.
    pub(super) async fn settle(
        &self,
        key: &CacheKey,
        reply: Reply,
        ttl: Duration,
        epoch: u64,
    ) -> Fetched {
        let snap = Snapshot::from_reply(reply);
        let storable = snap.status == StatusCode::OK
            && snap.facts.upstream.is_some()
            && is_json(&snap.headers)
            && !upstream_forbids_storing(&snap.headers)
            && key.weight() + snap.weight() <= self.settings.max_entry_size
            && self.write_epoch(&key.upstream_key, key.group) == epoch;
        if !storable {
            return Fetched::Passed(Box::new(snap));
        }
        let mut snap = snap.detached();
        for h in [header::CACHE_CONTROL, header::AGE, header::EXPIRES] {
            snap.headers.remove(h);
        }
        let entry = Arc::new(Entry {
            snapshot: snap,
            stored_at: Instant::now(),
            ttl,
        });
        self.store.insert(key.clone(), entry.clone()).await;
        Fetched::Stored(entry)
    }

    /// A read that goes around the cache: not shared with anyone, the answer is passed on as
    /// it is. Its own (small) future: a bypassed read does not carry `serve`'s states.
    pub(super) async fn bypass<S>(&self, read: Read, mut inner: S) -> Reply
    where
        S: Service<Outbound, Response = Reply, Error = Infallible>,
    {
        self.metrics.cache_lookup(CacheResult::Bypass);
        let class = budget_class(read.purpose, false);
        let mut reply = call(&mut inner, outbound(read, class)).await;
        let h = reply.response.headers_mut();
        h.insert(
            X_CACHE,
            HeaderValue::from_static(CacheResult::Bypass.as_str()),
        );
        h.insert(CACHE_STATUS, Status::Bypass.header(None));
        reply.facts.cache = Some(CacheResult::Bypass);
        reply
    }

    /// Serves a read from the cache or through `inner` (a read the cache does not bypass).
    pub(super) async fn serve<S>(
        self: Arc<Self>,
        read: Read,
        directive: Directive,
        inner: S,
    ) -> Reply
    where
        S: Service<Outbound, Response = Reply, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let spec = read.ctx.spec;
        let purpose = read.purpose;
        let name = &read.ctx.identity.key.name;
        let (generation, coherent) = self.generation(name, spec.group).await;
        let key = CacheKey {
            upstream_key: name.clone(),
            group: spec.group,
            generation,
            target: read.target.clone(),
        };
        let (ttl, max_age) = self.max_age(spec, coherent);
        let forced = directive == Directive::Revalidate;
        let out = outbound(read, BudgetClass::Cold);
        // The service polled ready is the one the fetch calls (a clone would wait for
        // readiness of its own while this one holds what it reserved).
        let mut inner = Some(inner);
        loop {
            let now = Instant::now();
            let existing = self.store.get(&key).await;
            if let Some(entry) = existing.as_ref().filter(|_| !forced) {
                if entry.age(now) < max_age {
                    return self.respond(entry, Status::Hit, now);
                }
                if coherent && self.within_revalidate(entry, now) {
                    // RFC 5861 stale-while-revalidate: the copy now, the refresh behind it.
                    if let Some(inner) = inner.take() {
                        let urgency = self.urgency(entry, now);
                        self.revalidate(&key, &out, inner, ttl, purpose, urgency);
                    }
                    return self.respond(entry, Status::Stale(StaleReason::Revalidating), now);
                }
            }
            // A copy to serve if the fetch cannot be made: only while the generation is
            // known to be current (the store answered), so never one from before a write.
            let fallback = existing.filter(|e| coherent && self.within_max_stale(e, now));
            let (fetched, collapsed) = match self.inflight.join_or_lead(&key) {
                Role::Follower(mut rx) => match rx.wait_for(Option::is_some).await {
                    Ok(v) => (v.clone().expect("waited for Some"), true),
                    // The leader was cancelled (its client went away): try again, maybe as
                    // the new leader.
                    Err(_) => continue,
                },
                Role::Leader(flight) => {
                    // Leading spends the request; the loop comes back only for a follower.
                    let shared = coherent && self.state.is_shared();
                    let how = How {
                        forced,
                        shared,
                        ttl,
                        purpose,
                    };
                    // Boxed: the fetch (L2, upstream, store) is most of this future's size,
                    // and a hit, which never fetches, would move it whole when boxed.
                    let fetch = Box::pin(self.clone().fetch(
                        key.clone(),
                        out.clone(),
                        inner.take().expect("only the one leader fetch takes it"),
                        how,
                        fallback.clone(),
                    ));
                    let fetched = Arc::new(fetch.await);
                    flight.complete(fetched.clone());
                    (fetched, false)
                }
            };
            let now = Instant::now();
            return match &*fetched {
                Fetched::Stored(entry) => self.respond(
                    entry,
                    Status::Fetched {
                        forced,
                        refreshed: fallback.is_some(),
                        collapsed,
                    },
                    now,
                ),
                Fetched::Shared(entry) => self.respond(entry, Status::SharedHit, now),
                Fetched::Stale(entry, reason) => self.respond(entry, Status::Stale(*reason), now),
                Fetched::Elsewhere => continue,
                Fetched::Passed(snap) => match (snap.stale_reason(), fallback) {
                    // A follower's own copy, when the fetch it waited for failed.
                    (Some(reason), Some(old)) if self.within_max_stale(&old, now) => {
                        self.respond(&old, Status::Stale(reason), now)
                    }
                    _ => self.passed(
                        snap,
                        Status::Forwarded {
                            forced,
                            collapsed,
                            upstream: snap.facts.upstream.and_then(|u| u.status),
                        },
                    ),
                },
            };
        }
    }

    /// Refreshes `key` in the background, once in this process (the single-flight table)
    /// and once across the fleet (the L2 lock), spending only the budget above the reserve.
    /// Requests meanwhile get the stale copy; a refresh that cannot be made leaves it.
    pub(super) fn revalidate<S>(
        self: &Arc<Self>,
        key: &CacheKey,
        out: &Outbound,
        inner: S,
        ttl: Duration,
        purpose: Purpose,
        urgency: u8,
    ) where
        S: Service<Outbound, Response = Reply, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let Role::Leader(flight) = self.inflight.join_or_lead(key) else {
            return; // already being fetched here
        };
        let (cache, key, mut out) = (self.clone(), key.clone(), out.clone());
        out.urgency = urgency;
        let how = How {
            forced: false,
            shared: self.state.is_shared(),
            ttl,
            purpose,
        };
        tokio::spawn(async move {
            let fetched = cache.background(key, out, inner, how).await;
            flight.complete(Arc::new(fetched));
        });
    }

    /// A background refresh: the L2 first (another replica may have refreshed it, or be
    /// refreshing it), then upstream as a `refresh`.
    pub(super) async fn background<S>(
        self: Arc<Self>,
        key: CacheKey,
        out: Outbound,
        inner: S,
        how: How,
    ) -> Fetched
    where
        S: Service<Outbound, Response = Reply, Error = Infallible>,
    {
        let entry_id = l2_id(&key);
        let mut lease = None;
        if how.shared {
            match self
                .state
                .l2_lookup(&key.upstream_key, &entry_id, how.ttl, L2_WAIT * 2)
                .await
            {
                Ok(L2Lookup::Fresh(copy)) => {
                    if let Some(entry) = self.adopt(&key, copy, how.ttl).await {
                        return Fetched::Shared(entry);
                    }
                }
                Ok(L2Lookup::Lead { .. }) => lease = Some(self.lease(&key, &entry_id)),
                // Another replica is refreshing it: once across the fleet.
                Ok(L2Lookup::Busy { stale }) => {
                    return match stale {
                        Some(copy) => match self.adopt(&key, copy, how.ttl).await {
                            Some(e) => Fetched::Stale(e, StaleReason::Revalidating),
                            None => Fetched::Elsewhere,
                        },
                        None => Fetched::Elsewhere,
                    };
                }
                Err(_) => {}
            }
        }
        self.upstream(
            &key,
            out,
            inner,
            budget_class(how.purpose, true),
            how.ttl,
            lease,
        )
        .await
    }

    /// The fetch a request leads (no fresh copy here): the shared L2 first (when the store
    /// is shared and answering), so one replica's fetch is every replica's hit; else
    /// upstream, then into both levels. A stale copy, local or from the L2, is served when
    /// upstream cannot be asked or fails, or at once while another replica refreshes it.
    pub(super) async fn fetch<S>(
        self: Arc<Self>,
        key: CacheKey,
        out: Outbound,
        inner: S,
        how: How,
        mut fallback: Option<Arc<Entry>>,
    ) -> Fetched
    where
        S: Service<Outbound, Response = Reply, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let entry_id = l2_id(&key);
        let mut lease = None;
        if how.shared && !how.forced {
            let deadline = Instant::now() + L2_WAIT;
            loop {
                let lookup = self
                    .state
                    .l2_lookup(&key.upstream_key, &entry_id, how.ttl, L2_WAIT * 2)
                    .await;
                let (stale, busy) = match lookup {
                    Ok(L2Lookup::Fresh(copy)) => match self.adopt(&key, copy, how.ttl).await {
                        Some(entry) => return Fetched::Shared(entry),
                        None => break, // unreadable: fetch it
                    },
                    Ok(L2Lookup::Lead { stale }) => {
                        lease = Some(self.lease(&key, &entry_id));
                        (stale, false)
                    }
                    Ok(L2Lookup::Busy { stale }) => (stale, true),
                    // The store stopped answering: upstream is the only way.
                    Err(_) => break,
                };
                if let Some(copy) = stale {
                    if let Some(entry) = self.adopt(&key, copy, how.ttl).await {
                        fallback = fresher(fallback, entry);
                    }
                }
                let now = Instant::now();
                if let Some(copy) = fallback.as_ref().filter(|e| self.within_revalidate(e, now)) {
                    // Stale-while-revalidate on a copy another replica stored: the copy now;
                    // the refresh behind it is this replica's if it took the lock, else the
                    // lock holder's (once across the fleet).
                    if let Some(lease) = lease.take() {
                        let (cache, key, mut out, inner) =
                            (self.clone(), key.clone(), out.clone(), inner.clone());
                        out.urgency = self.urgency(copy, now);
                        tokio::spawn(async move {
                            let class = budget_class(how.purpose, true);
                            cache
                                .upstream(&key, out, inner, class, how.ttl, Some(lease))
                                .await;
                        });
                    }
                    return Fetched::Stale(copy.clone(), StaleReason::Revalidating);
                }
                if !busy || now >= deadline {
                    // This replica leads, or another replica's fetch is taking long: fetch.
                    break;
                }
                tokio::time::sleep(L2_POLL).await;
            }
        }
        let class = match (how.forced, &fallback) {
            (true, _) => BudgetClass::Forced,
            (false, fallback) => budget_class(how.purpose, fallback.is_some()),
        };
        let mut out = out;
        if let Some(old) = fallback.as_ref().filter(|_| !how.forced) {
            out.urgency = self.urgency(old, Instant::now());
        }
        let fetched = self.upstream(&key, out, inner, class, how.ttl, lease).await;
        match (fetched, fallback) {
            (Fetched::Passed(snap), Some(old)) => match snap.stale_reason() {
                Some(reason) if self.within_max_stale(&old, Instant::now()) => {
                    Fetched::Stale(old, reason)
                }
                _ => Fetched::Passed(snap),
            },
            (fetched, _) => fetched,
        }
    }

    /// One upstream call of `class` for `key`: stored in this replica and, when it holds
    /// the L2 lock (`lease`), in the L2 for its freshness plus `max_stale`.
    pub(super) async fn upstream<S>(
        &self,
        key: &CacheKey,
        mut out: Outbound,
        mut inner: S,
        class: BudgetClass,
        ttl: Duration,
        lease: Option<L2Lease>,
    ) -> Fetched
    where
        S: Service<Outbound, Response = Reply, Error = Infallible>,
    {
        out.class = class;
        let epoch = self.write_epoch(&key.upstream_key, key.group);
        let resp = call(&mut inner, out).await;
        let fetched = self.settle(key, resp, ttl, epoch).await;
        if let Some(mut lease) = lease {
            let value = match &fetched {
                Fetched::Stored(e) => Some(encode(&e.snapshot)),
                _ => None,
            };
            let _ = self
                .state
                .l2_put(
                    &key.upstream_key,
                    &lease.entry,
                    value,
                    ttl + self.settings.max_stale,
                )
                .await;
            // Stored and unlocked (or the store is down, and the lock expires by itself).
            lease.armed = false;
        }
        fetched
    }

    /// A copy read from the L2, as an entry of this replica (backdated by its age there),
    /// stored here too while it is still within `max_stale`.
    pub(super) async fn adopt(
        &self,
        key: &CacheKey,
        copy: L2Copy,
        ttl: Duration,
    ) -> Option<Arc<Entry>> {
        let snapshot = decode(&copy.value)?;
        let entry = Arc::new(Entry {
            ttl,
            snapshot,
            stored_at: Instant::now().checked_sub(copy.age)?,
        });
        let now = Instant::now();
        if !self.within_max_stale(&entry, now) && entry.age(now) >= ttl {
            return None;
        }
        self.store.insert(key.clone(), entry.clone()).await;
        Some(entry)
    }

    /// The L2 fetch lock this replica now holds for `key`.
    pub(super) fn lease(&self, key: &CacheKey, entry_id: &str) -> L2Lease {
        L2Lease {
            state: self.state.clone(),
            key: key.upstream_key.clone(),
            entry: entry_id.to_string(),
            armed: true,
        }
    }
}

/// Calls `inner` once it is ready (tower's contract: a service is called only after
/// `poll_ready` said so).
pub(super) async fn call<S>(inner: &mut S, req: Outbound) -> Reply
where
    S: Service<Outbound, Response = Reply, Error = Infallible>,
{
    use tower::ServiceExt as _;
    let ready = match inner.ready().await {
        Ok(ready) => ready,
        Err(never) => match never {},
    };
    match ready.call(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// A read as it leaves: no client header travels (headers are not part of the cache key).
pub(super) fn outbound(read: Read, class: BudgetClass) -> Outbound {
    Outbound {
        ctx: read.ctx,
        class,
        urgency: 100,
        method: http::Method::GET,
        target: read.target,
        headers: HeaderMap::new(),
        body: Bytes::new(),
    }
}
