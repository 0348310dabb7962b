//! The list cache: upstream list responses kept per (upstream key, generation, userId,
//! canonical query), bounded in bytes by moka's weigher, with coalesced misses, O(1)
//! invalidation on write, client `Cache-Control`, and stale copies served within bounds.
//!
//! Freshness and staleness (RFC 9111 §4.2, RFC 5861), per copy, local or in the shared L2:
//! - younger than the TTL: fresh, a `HIT`;
//! - older, within `stale_while_revalidate`: answered at once (`STALE`, detail
//!   `revalidating`) while one background fetch, across the fleet (the L2 lock), refreshes it,
//!   spending only the key's headroom above `[rate_limit] refresh_reserve`;
//! - older, within `max_stale`: refreshed in the foreground, and served (`STALE` with the
//!   reason: `budget`, `rate-limited`, `error`, `timeout`, `breaker`) when that cannot be done;
//! - beyond `max_stale`: gone (every copy, and every L2 key, has an end).
//!
//! Only copies of the current generation are ever served: a write bumps the generation,
//! which makes every older copy unreachable on every replica, stale or not.
//!
//! Concurrent misses for one key are coalesced by a small single-flight table in front of
//! moka (moka's `try_get_with` cannot refresh an entry that is present but expired, which
//! stale serving needs to keep): the first request fetches, the others wait for its answer,
//! errors included, and none of them is forwarded.

use crate::config::CacheSettings;
use crate::error::{Rejection, Throttle};
use crate::exchange::{BudgetClass, CacheResult, Facts, Outbound, Reply, UpstreamMeta};
use crate::ingress::route::{Caching, Group};
use crate::lock;
use crate::observe::metrics::{InvalidationCause, Metrics, StaleReason};
use crate::state::{L2Copy, L2Lookup, SharedStore};
use crate::validate::query::ListQuery;
use crate::validate::{Purpose, Read, Write};
use crate::BoxFuture;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::StatusCode;
use http_body_util::Full;
use moka::notification::RemovalCause;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::{Layer, Service};

/// What a cached read is stored under. Two requests share a key only if upstream must answer
/// them identically: same upstream key (and its generation of the route's data), same
/// forwarded path and canonical query (which carries the mapped `userId` on routes that take
/// one, never the client's).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The upstream key's name.
    pub upstream_key: Arc<str>,
    /// The family of data the read returns (its generation is per group).
    pub group: Group,
    /// Bumped by every accepted write to the route's data on that key, which orphans all
    /// older entries at once.
    pub generation: u64,
    /// The path and canonical query, exactly as forwarded.
    pub target: PathAndQuery,
}

impl CacheKey {
    /// The key of a read of `path` with `query`, forcing `user_id` where the route takes one:
    /// the same target the validation layer builds for the forward.
    pub fn new(
        upstream_key: Arc<str>,
        group: Group,
        generation: u64,
        path: &str,
        query: &ListQuery,
        user_id: Option<u64>,
    ) -> CacheKey {
        CacheKey {
            upstream_key,
            group,
            generation,
            target: query.target(path, user_id),
        }
    }

    fn weight(&self) -> usize {
        self.upstream_key.len() + self.target.as_str().len() + 64
    }
}

/// A response as it can be shared between waiters and stored: everything but the body is
/// small, and the body is a shared `Bytes`.
#[derive(Debug, Clone)]
struct Snapshot {
    status: StatusCode,
    headers: HeaderMap,
    body: Full<Bytes>,
    facts: Facts,
}

impl Snapshot {
    fn from_reply(reply: Reply) -> Snapshot {
        let (parts, body) = reply.response.into_parts();
        Snapshot {
            status: parts.status,
            headers: parts.headers,
            // A `Full` body is one shared chunk: keeping it copies nothing.
            body,
            facts: reply.facts,
        }
    }

    /// The reply, with room for `extra` more headers (the cache's own, the request id) so
    /// adding them does not grow the map again.
    fn to_reply(&self, extra: usize) -> Reply {
        let mut resp = http::Response::new(self.body.clone());
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        headers.reserve(self.headers.len() + extra);
        // Values are shared bytes: copying the map copies no header text.
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        Reply {
            response: resp,
            facts: self.facts.clone(),
        }
    }

    /// The same response in allocations of its own. hyper hands out the body and header
    /// values as slices of the connection's read buffer (8 KiB and up): a stored slice would
    /// keep that whole buffer alive, several times what the weigher counts for the entry.
    fn detached(self) -> Snapshot {
        let body = crate::exchange::body_bytes(&self.body);
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let mut copy =
                HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
            copy.set_sensitive(value.is_sensitive());
            headers.append(name.clone(), copy);
        }
        Snapshot {
            status: self.status,
            headers,
            body: Full::new(Bytes::copy_from_slice(&body)),
            facts: self.facts,
        }
    }

    fn body_len(&self) -> usize {
        use hyper::body::Body as _;
        self.body.size_hint().exact().unwrap_or(0) as usize
    }

    fn weight(&self) -> usize {
        self.body_len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 32)
                .sum::<usize>()
            + 96
    }

    /// Why this answer is a reason to serve a stale copy instead, if it is one: the budget
    /// or the breaker refused the fetch, or upstream answered 429 or 5xx, timed out or could
    /// not be reached. Anything else (a 4xx, a 200 that was not storable) is passed on.
    fn stale_reason(&self) -> Option<StaleReason> {
        match self.facts.rejection {
            Some(Rejection::Throttled(Throttle::CircuitOpen)) => Some(StaleReason::Breaker),
            Some(Rejection::Throttled(_)) => Some(StaleReason::Budget),
            Some(Rejection::UpstreamTimeout | Rejection::RequestTimeout) => {
                Some(StaleReason::Timeout)
            }
            Some(Rejection::UpstreamUnreachable | Rejection::UpstreamTooLarge) => {
                Some(StaleReason::Error)
            }
            _ if self.status == StatusCode::TOO_MANY_REQUESTS => Some(StaleReason::RateLimited),
            _ if self.status.is_server_error() => Some(StaleReason::Error),
            _ => None,
        }
    }
}

/// A stored read response.
#[derive(Debug)]
struct Entry {
    snapshot: Snapshot,
    /// When it was fetched from upstream (for a copy from the L2: backdated by its age there).
    stored_at: Instant,
    /// How long it is fresh (the route's TTL).
    ttl: Duration,
}

impl Entry {
    fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored_at)
    }
}

/// The outcome of one fetch, shared with everyone who waited for it.
#[derive(Debug)]
enum Fetched {
    /// Fetched from upstream, stored and fresh.
    Stored(Arc<Entry>),
    /// Answered but not storable (not 200 JSON, `no-store`, too large), or a failure with no
    /// copy to serve instead.
    Passed(Box<Snapshot>),
    /// Fetched by another replica (the shared L2), now stored here too.
    Shared(Arc<Entry>),
    /// A copy past its freshness, served for this reason.
    Stale(Arc<Entry>, StaleReason),
    /// A background refresh found another replica refreshing it and brought nothing back:
    /// whoever waited on it looks again.
    Elsewhere,
}

/// The L2 name of a cached read: its generation and a digest of the forwarded target, so the
/// user's id and the query never appear in the store in clear.
fn l2_id(key: &CacheKey) -> String {
    let fp = crate::state::Fingerprint::of(key.target.as_str().as_bytes());
    format!("{}:{}", key.generation, &fp.hex()[..32])
}

/// The L2's layout of a stored list: raw bytes, no text encoding of the body. `JBL1`, the
/// status (u16), the header count (u16), each header as a u16 length and name then a u16
/// length and value, then the body to the end. The server stamps when it was stored (see
/// `state::redis`), so its age is the server's, the same for every replica.
const WIRE_MAGIC: &[u8; 4] = b"JBL1";

fn encode(snap: &Snapshot) -> Bytes {
    let body = crate::exchange::body_bytes(&snap.body);
    let mut out = Vec::with_capacity(snap.weight() + 16);
    out.extend_from_slice(WIRE_MAGIC);
    out.extend_from_slice(&snap.status.as_u16().to_be_bytes());
    let headers: Vec<_> = snap
        .headers
        .iter()
        .filter(|(n, v)| n.as_str().len() <= 0xffff && v.len() <= 0xffff)
        .collect();
    out.extend_from_slice(&(headers.len().min(0xffff) as u16).to_be_bytes());
    for (name, value) in headers.into_iter().take(0xffff) {
        out.extend_from_slice(&(name.as_str().len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(&body);
    Bytes::from(out)
}

fn decode(bytes: &Bytes) -> Option<Snapshot> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (rest.len() >= n).then(|| rest.split_at(n))?;
        *rest = tail;
        Some(head)
    }
    fn u16_at(rest: &mut &[u8]) -> Option<u16> {
        take(rest, 2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    let mut rest: &[u8] = bytes;
    if take(&mut rest, 4)? != WIRE_MAGIC {
        return None;
    }
    let status = StatusCode::from_u16(u16_at(&mut rest)?).ok()?;
    let count = u16_at(&mut rest)? as usize;
    let mut headers = HeaderMap::with_capacity(count);
    for _ in 0..count {
        let len = u16_at(&mut rest)? as usize;
        let name = http::HeaderName::from_bytes(take(&mut rest, len)?).ok()?;
        let len = u16_at(&mut rest)? as usize;
        let value = HeaderValue::from_bytes(take(&mut rest, len)?).ok()?;
        headers.append(name, value);
    }
    let body = bytes.slice(bytes.len() - rest.len()..);
    Some(Snapshot {
        status,
        headers,
        body: Full::new(body),
        facts: Facts {
            upstream: Some(UpstreamMeta {
                status: Some(status.as_u16()),
                duration: std::time::Duration::ZERO,
                maybe_sent: true,
            }),
            ..Facts::default()
        },
    })
}

type Flight = watch::Receiver<Option<Arc<Fetched>>>;

/// The cache. Each key's generation lives in the state store (shared by replicas with
/// Redis), so a create accepted anywhere makes every older list unreachable everywhere.
pub struct ListCache {
    settings: CacheSettings,
    store: moka::future::Cache<CacheKey, Arc<Entry>>,
    state: SharedStore,
    /// While the state store is down, local entries are served only this young.
    degraded_max_age: Duration,
    /// Per key and group: the last generation the store gave, used (with
    /// `degraded_max_age`) while it cannot be asked.
    last_generation: Mutex<HashMap<(Arc<str>, Group), u64>>,
    /// Generations to bump once the store answers again (a write was accepted while it was
    /// down).
    pending_bumps: Mutex<HashSet<(Arc<str>, Group)>>,
    /// Per key and group: how many writes this replica has had accepted. A fetch that
    /// started before a write is not stored after it, whatever the store's state: with the
    /// store down the generation cannot move, and this is what tells them apart.
    write_epochs: Mutex<HashMap<(Arc<str>, Group), u64>>,
    /// Admin purges of everything: part of every write epoch.
    purges: std::sync::atomic::AtomicU64,
    /// Per key: when the next background sweep of older generations may be registered. See
    /// [`SWEEP_INTERVAL`].
    next_sweep: Mutex<HashMap<(Arc<str>, Group), Instant>>,
    inflight: Mutex<HashMap<CacheKey, Flight>>,
    /// Company lookups read for reference checks are kept even with `[cache] enabled =
    /// false` (they would otherwise multiply every create's upstream cost).
    keep_lookups: bool,
    metrics: Arc<Metrics>,
}

/// How often pending generation bumps (writes accepted while the store was down) are
/// retried in the background, until the store takes them.
pub(crate) const PENDING_RETRY: Duration = Duration::from_millis(250);

/// How long a replica waits for another one's fetch of the same list (shared L2) before
/// fetching itself; the fetch lock expires after twice that.
const L2_WAIT: Duration = Duration::from_secs(2);
/// How often a waiting replica looks at the L2 again.
const L2_POLL: Duration = Duration::from_millis(20);

/// At most one background sweep per upstream key per interval. The generation bump already
/// makes older entries unreachable; the sweep (a moka invalidation predicate, evaluated in
/// moka's housekeeping, each with a random id that costs a `getrandom` call) only returns their
/// memory sooner. One per create would be wasted work under a burst of creates; entries of
/// generations no sweep covered expire with their TTL or are evicted by the capacity bound.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

const X_CACHE: header::HeaderName = header::HeaderName::from_static("x-cache");

/// Header values for a number of seconds, made once each: a hit answers `Cache-Control:
/// private, max-age=N` and `Age: N` without formatting them again. Beyond the table (an hour)
/// they are formatted per response.
const SECONDS_CACHED: usize = 3601;
static MAX_AGE: [OnceLock<HeaderValue>; SECONDS_CACHED] =
    [const { OnceLock::new() }; SECONDS_CACHED];
static AGE: [OnceLock<HeaderValue>; SECONDS_CACHED] = [const { OnceLock::new() }; SECONDS_CACHED];

fn seconds_value(
    table: &'static [OnceLock<HeaderValue>; SECONDS_CACHED],
    secs: u64,
    prefix: &str,
) -> HeaderValue {
    let make = || HeaderValue::from_str(&format!("{prefix}{secs}")).expect("ASCII header");
    match table.get(secs as usize) {
        Some(slot) => slot.get_or_init(make).clone(),
        None => make(),
    }
}

/// The client's cache directives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directive {
    Normal,
    /// `no-cache`, `max-age=0` (or `Pragma: no-cache`): refetch, store the fresh answer.
    Revalidate,
    /// `no-store`: neither read nor write the cache.
    Bypass,
}

fn client_directive(headers: &HeaderMap) -> Directive {
    let tokens = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .chain(headers.get_all(header::PRAGMA).iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    let mut d = Directive::Normal;
    for t in tokens {
        if t.eq_ignore_ascii_case("no-store") {
            return Directive::Bypass;
        }
        // `max-age=0` asks for nothing older than now: a real fetch, like `no-cache`.
        if t.eq_ignore_ascii_case("no-cache")
            || t.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("max-age") && v.trim().trim_matches('"') == "0"
            })
        {
            d = Directive::Revalidate;
        }
    }
    d
}

fn upstream_forbids_storing(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| {
            t.eq_ignore_ascii_case("no-store")
                || t.eq_ignore_ascii_case("no-cache")
                || t.eq_ignore_ascii_case("private")
        })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

impl ListCache {
    /// A cache for `settings` whose generations live in `state`; `keep_lookups` when reference
    /// checks read the company's lookups through it.
    pub fn new(
        settings: &CacheSettings,
        state: SharedStore,
        degraded_max_age: Duration,
        keep_lookups: bool,
        metrics: Arc<Metrics>,
    ) -> Arc<ListCache> {
        let evictions = metrics.clone();
        let store = moka::future::Cache::builder()
            .max_capacity(settings.capacity)
            .weigher(|k: &CacheKey, v: &Arc<Entry>| {
                u32::try_from(k.weight() + v.snapshot.weight()).unwrap_or(u32::MAX)
            })
            // Entries outlive their freshness by the stale window (`max_stale`), and no longer.
            .time_to_live(settings.ttl.max(settings.lookup_ttl) + settings.max_stale)
            .support_invalidation_closures()
            .eviction_listener(move |_k, _v, cause| {
                if cause == RemovalCause::Size {
                    evictions.cache_eviction();
                }
            })
            .build();
        let cache = Arc::new(ListCache {
            settings: settings.clone(),
            store,
            state,
            degraded_max_age,
            last_generation: Mutex::new(HashMap::new()),
            pending_bumps: Mutex::new(HashSet::new()),
            write_epochs: Mutex::new(HashMap::new()),
            purges: std::sync::atomic::AtomicU64::new(0),
            next_sweep: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            keep_lookups,
            metrics,
        });
        cache.retry_pending_bumps();
        cache
    }

    /// Whether this cache was built for `settings` and `state` (so a reload keeps it).
    pub fn fits(
        &self,
        settings: &CacheSettings,
        state: &SharedStore,
        degraded: Duration,
        keep_lookups: bool,
    ) -> bool {
        self.settings == *settings
            && Arc::ptr_eq(&self.state, state)
            && self.degraded_max_age == degraded
            && self.keep_lookups == keep_lookups
    }

    /// Retries the bumps the store could not take, in the background, as soon as it answers
    /// again: read-your-writes for the other replicas must not wait until this one next
    /// reads the group. The task holds the cache weakly and ends with it.
    fn retry_pending_bumps(self: &Arc<Self>) {
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
    fn write_epoch(&self, name: &Arc<str>, group: Group) -> u64 {
        let purges = self.purges.load(std::sync::atomic::Ordering::Acquire);
        lock(&self.write_epochs)
            .get(&(name.clone(), group))
            .copied()
            .unwrap_or(0)
            .wrapping_add(purges)
    }

    /// The key's current generation, and whether it came from the store (false: the store
    /// is down and this is the last one seen).
    async fn generation(&self, name: &Arc<str>, group: Group) -> (u64, bool) {
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
    async fn generations(&self, name: &Arc<str>, groups: &[Group]) -> (Vec<u64>, bool) {
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
    async fn bump_if_pending(&self, name: &Arc<str>, group: Group) {
        let slot = (name.clone(), group);
        let pending = lock(&self.pending_bumps).contains(&slot);
        if pending && self.state.bump(name, &[group.as_str()]).await.is_ok() {
            lock(&self.pending_bumps).remove(&slot);
        }
    }

    /// Records the key's generation of `group` as read from the store, for when it is down.
    fn remember(&self, name: &Arc<str>, group: Group, generation: u64) {
        let mut last = lock(&self.last_generation);
        let slot = (name.clone(), group);
        if last.get(&slot) != Some(&generation) {
            last.insert(slot, generation);
        }
    }

    /// The last generation of `group` read from the store (0 if none).
    fn last_seen(&self, name: &Arc<str>, group: Group) -> u64 {
        lock(&self.last_generation)
            .get(&(name.clone(), group))
            .copied()
            .unwrap_or(0)
    }

    /// The TTL of `spec`'s entries, and how old one may be when served: its TTL, but without
    /// the store (`coherent` false) at most `degraded_max_age`, since a local entry may then be
    /// older than a write on another replica.
    fn max_age(
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
        match self.state.bump(name, scope_names(groups, &mut buf)).await {
            Ok(values) => {
                for (group, new) in groups.iter().zip(values) {
                    self.remember(name, *group, new);
                    self.sweep(name.clone(), *group, new);
                }
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
            }
        }
    }

    /// Registers a background sweep of the key's older generations of `group`, at most once
    /// per [`SWEEP_INTERVAL`].
    fn sweep(&self, name: Arc<str>, group: Group, below: u64) {
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

    /// Updates the entry and byte gauges (moka's counts settle after pending tasks run).
    pub async fn refresh_gauges(&self) {
        self.store.run_pending_tasks().await;
        self.metrics
            .set_cache_size(self.store.entry_count(), self.store.weighted_size());
    }

    /// Bytes currently held, after pending maintenance (for tests and the admin view).
    pub async fn weighted_size(&self) -> u64 {
        self.store.run_pending_tasks().await;
        self.store.weighted_size()
    }

    /// Turns an upstream answer into what is shared and maybe stored. `epoch`: this
    /// replica's write epoch of the key's group when the fetch started; if a write was
    /// accepted since, the answer (maybe from before it) is passed on but not stored.
    async fn settle(&self, key: &CacheKey, reply: Reply, ttl: Duration, epoch: u64) -> Fetched {
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

    /// Whether a copy may still be served stale: within its TTL plus `max_stale`.
    fn within_max_stale(&self, entry: &Entry, now: Instant) -> bool {
        !self.settings.max_stale.is_zero() && entry.age(now) < entry.ttl + self.settings.max_stale
    }

    /// How far into its stale-while-revalidate window a copy is, 0 to 100 (100 past it).
    fn urgency(&self, entry: &Entry, now: Instant) -> u8 {
        let stale = entry.age(now).saturating_sub(entry.ttl);
        let window = self.settings.stale_while_revalidate;
        if window.is_zero() || stale >= window {
            return 100;
        }
        (stale.as_secs_f64() / window.as_secs_f64() * 100.0) as u8
    }

    /// Whether a copy past its freshness is still inside `stale_while_revalidate`.
    fn within_revalidate(&self, entry: &Entry, now: Instant) -> bool {
        entry.age(now) < entry.ttl + self.settings.stale_while_revalidate
    }

    /// The answer from a stored copy, with `X-Cache`, `Age` (RFC 9111 §5.1), the freshness
    /// left, and `Cache-Status` (RFC 9211).
    fn respond(&self, entry: &Entry, status: Status, now: Instant) -> Reply {
        let age = entry.age(now);
        let result = status.result();
        let mut reply = entry.snapshot.to_reply(5);
        let resp = &mut reply.response;
        // Rounded up, so a response fetched just now says the full TTL.
        let remaining = entry.ttl.saturating_sub(age).as_secs_f64().ceil() as u64;
        let h = resp.headers_mut();
        h.insert(X_CACHE, HeaderValue::from_static(result.as_str()));
        h.insert(
            header::CACHE_CONTROL,
            seconds_value(&MAX_AGE, remaining, "private, max-age="),
        );
        if result != CacheResult::Miss {
            h.insert(header::AGE, seconds_value(&AGE, age.as_secs(), ""));
        }
        let ttl = if remaining > 0 {
            remaining as i64
        } else {
            // Negative: stale by that many seconds, rounded up (RFC 9211 §2.5).
            -(age.saturating_sub(entry.ttl).as_secs_f64().ceil() as i64).max(1)
        };
        h.insert(CACHE_STATUS, status.header(Some(ttl)));
        self.metrics.cache_lookup(result);
        self.metrics.economy().served_age(result, age.as_secs_f64());
        if let Status::Stale(reason) = status {
            self.metrics.economy().stale_served(reason);
        }
        reply.facts.cache = Some(result);
        reply
    }

    /// An answer that was not stored (a failure with no copy to serve, or not storable).
    fn passed(&self, snap: &Snapshot, status: Status) -> Reply {
        let mut reply = snap.to_reply(3);
        let result = status.result();
        let h = reply.response.headers_mut();
        h.insert(X_CACHE, HeaderValue::from_static(result.as_str()));
        h.insert(CACHE_STATUS, status.header(None));
        self.metrics.cache_lookup(result);
        reply.facts.cache = Some(result);
        reply
    }

    /// The bodies of fresh, successful cached reads of several whole-path routes (lookups)
    /// on the key `name`, in order, `None` where there is none: what [`ListCache::serve`]
    /// would answer as a HIT, without building a response, and with every generation read in
    /// one store call. The reference checks read the company's lookups this way; where it
    /// says no, they go through the whole read pipeline (which coalesces, spends budget and
    /// stores).
    pub async fn peek(
        &self,
        name: &Arc<str>,
        specs: &[&'static crate::ingress::route::RouteSpec],
    ) -> Vec<Option<Bytes>> {
        if !(self.settings.enabled || self.keep_lookups) || specs.is_empty() {
            return vec![None; specs.len()];
        }
        let groups: Vec<Group> = specs.iter().map(|s| s.group).collect();
        let (generations, coherent) = self.generations(name, &groups).await;
        let mut out = Vec::with_capacity(specs.len());
        for (spec, generation) in specs.iter().zip(generations) {
            let (_, max_age) = self.max_age(spec, coherent);
            let key = CacheKey {
                upstream_key: name.clone(),
                group: spec.group,
                generation,
                // A lookup takes no query: its path is its whole target.
                target: PathAndQuery::from_static(spec.template),
            };
            let body = self.store.get(&key).await.filter(|entry| {
                entry.age(Instant::now()) < max_age && entry.snapshot.status.is_success()
            });
            out.push(body.map(|entry| {
                self.metrics.cache_lookup(CacheResult::Hit);
                crate::exchange::body_bytes(&entry.snapshot.body)
            }));
        }
        out
    }

    /// Whether a read goes around the cache: the client said `no-store`, or the cache is off
    /// (but for the lookups reference checks read, kept whenever those checks are on).
    fn bypassed(&self, directive: Directive, purpose: Purpose) -> bool {
        directive == Directive::Bypass
            || !(self.settings.enabled || (self.keep_lookups && purpose == Purpose::References))
    }

    /// A read that goes around the cache: not shared with anyone, the answer is passed on as
    /// it is. Its own (small) future: a bypassed read does not carry `serve`'s states.
    async fn bypass<S>(&self, read: Read, mut inner: S) -> Reply
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
    async fn serve<S>(self: Arc<Self>, read: Read, directive: Directive, inner: S) -> Reply
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
            let (fetched, collapsed) = match self.join_or_lead(&key) {
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
    fn revalidate<S>(
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
        let Role::Leader(flight) = self.join_or_lead(key) else {
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
    async fn background<S>(
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
    async fn fetch<S>(
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
    async fn upstream<S>(
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
    async fn adopt(&self, key: &CacheKey, copy: L2Copy, ttl: Duration) -> Option<Arc<Entry>> {
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
    fn lease(&self, key: &CacheKey, entry_id: &str) -> L2Lease {
        L2Lease {
            state: self.state.clone(),
            key: key.upstream_key.clone(),
            entry: entry_id.to_string(),
            armed: true,
        }
    }

    fn join_or_lead(self: &Arc<Self>, key: &CacheKey) -> Role {
        let mut table = self.inflight.lock().expect("inflight lock");
        if let Some(rx) = table.get(key) {
            if rx.has_changed().is_ok() {
                return Role::Follower(rx.clone());
            }
        }
        let (tx, rx) = watch::channel(None);
        table.insert(key.clone(), rx);
        Role::Leader(FlightGuard {
            cache: self.clone(),
            key: key.clone(),
            tx,
        })
    }
}

/// How a fetch is made.
#[derive(Debug, Clone, Copy)]
struct How {
    /// The client forced a real fetch (`no-cache`, `max-age=0`): the L2 is not read.
    forced: bool,
    /// The L2 is worth asking (a shared store whose generation was just read).
    shared: bool,
    /// The route's freshness lifetime.
    ttl: Duration,
    /// Who the read is for.
    purpose: Purpose,
}

/// The budget class of a fetch for `purpose`: a reference check's lookup is always `lookup`;
/// a client's read is a `refresh` when a copy of it exists somewhere, else `cold`.
fn budget_class(purpose: Purpose, copy_exists: bool) -> BudgetClass {
    match (purpose, copy_exists) {
        (Purpose::References, _) => BudgetClass::Lookup,
        (Purpose::Client, true) => BudgetClass::Refresh,
        (Purpose::Client, false) => BudgetClass::Cold,
    }
}

/// The younger of a copy and another.
fn fresher(a: Option<Arc<Entry>>, b: Arc<Entry>) -> Option<Arc<Entry>> {
    match a {
        Some(a) if a.stored_at >= b.stored_at => Some(a),
        _ => Some(b),
    }
}

/// What the cache did, for `X-Cache` and `Cache-Status` (RFC 9211).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// A fresh copy of this replica's.
    Hit,
    /// A fresh copy another replica stored in the L2.
    SharedHit,
    /// Fetched and stored.
    Fetched {
        forced: bool,
        refreshed: bool,
        collapsed: bool,
    },
    /// Forwarded, not stored (a failure with no copy, or not storable).
    Forwarded {
        forced: bool,
        collapsed: bool,
        upstream: Option<u16>,
    },
    /// A copy past its freshness.
    Stale(StaleReason),
    /// The cache was not used.
    Bypass,
}

/// This cache's name in `Cache-Status`.
const CACHE_NAME: &str = "journeybee-gateway";
const CACHE_STATUS: header::HeaderName = header::HeaderName::from_static("cache-status");

impl Status {
    fn result(self) -> CacheResult {
        match self {
            Status::Hit | Status::SharedHit => CacheResult::Hit,
            Status::Fetched { .. } | Status::Forwarded { .. } => CacheResult::Miss,
            Status::Stale(_) => CacheResult::Stale,
            Status::Bypass => CacheResult::Bypass,
        }
    }

    /// The `Cache-Status` member, with `ttl` (negative: stale) when a copy is served.
    fn header(self, ttl: Option<i64>) -> HeaderValue {
        use std::fmt::Write as _;
        let mut v = String::with_capacity(64);
        v.push_str(CACHE_NAME);
        let fwd = |forced: bool, refreshed: bool| match (forced, refreshed) {
            (true, _) => "request",
            (false, true) => "stale",
            (false, false) => "uri-miss",
        };
        match self {
            Status::Hit => v.push_str("; hit"),
            Status::SharedHit => v.push_str("; hit; detail=shared"),
            Status::Stale(_) => v.push_str("; hit"),
            Status::Fetched {
                forced,
                refreshed,
                collapsed,
            } => {
                let _ = write!(
                    v,
                    "; fwd={}; fwd-status=200; stored",
                    fwd(forced, refreshed)
                );
                if collapsed {
                    v.push_str("; collapsed");
                }
            }
            Status::Forwarded {
                forced,
                collapsed,
                upstream,
            } => {
                let _ = write!(v, "; fwd={}", fwd(forced, false));
                if let Some(status) = upstream {
                    let _ = write!(v, "; fwd-status={status}");
                }
                if collapsed {
                    v.push_str("; collapsed");
                }
            }
            Status::Bypass => v.push_str("; fwd=bypass"),
        }
        if let Some(ttl) = ttl {
            let _ = write!(v, "; ttl={ttl}");
        }
        if let Status::Stale(reason) = self {
            let _ = write!(v, "; detail={}", reason.as_str());
        }
        HeaderValue::from_str(&v).expect("ASCII header")
    }
}

/// The L2 fetch lock this replica holds while it fetches a read. If that fetch is dropped
/// before it stores (its client hung up, the request timed out), the lock is released at once
/// instead of making every replica wait on it until it expires.
struct L2Lease {
    state: SharedStore,
    key: Arc<str>,
    entry: String,
    /// Cleared once the fetch has stored and unlocked.
    armed: bool,
}

impl Drop for L2Lease {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (state, key, entry) = (
            self.state.clone(),
            self.key.clone(),
            std::mem::take(&mut self.entry),
        );
        runtime.spawn(async move {
            let _ = state.l2_put(&key, &entry, None, Duration::ZERO).await;
        });
    }
}

enum Role {
    Leader(FlightGuard),
    Follower(Flight),
}

/// Owned by the request that fetches; removes the flight however that request ends, so a
/// cancelled leader never leaves waiters hanging (they see the channel close and retry).
struct FlightGuard {
    cache: Arc<ListCache>,
    key: CacheKey,
    tx: watch::Sender<Option<Arc<Fetched>>>,
}

impl FlightGuard {
    fn complete(self, fetched: Arc<Fetched>) {
        let _ = self.tx.send(Some(fetched));
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut table = self.cache.inflight.lock().expect("inflight lock");
        table.remove(&self.key);
    }
}

/// The store's scope names of `groups`, written into `buf` (on the stack: a write's or a
/// create's groups are distinct, so at most all of them).
fn scope_names<'a>(
    groups: &[Group],
    buf: &'a mut [&'static str; Group::ALL.len()],
) -> &'a [&'static str] {
    for (slot, group) in buf.iter_mut().zip(groups) {
        *slot = group.as_str();
    }
    &buf[..groups.len().min(Group::ALL.len())]
}

/// Calls `inner` once it is ready (tower's contract: a service is called only after
/// `poll_ready` said so).
async fn call<S>(inner: &mut S, req: Outbound) -> Reply
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
fn outbound(read: Read, class: BudgetClass) -> Outbound {
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

/// Serves reads through the cache.
#[derive(Clone)]
pub struct CacheLayer {
    cache: Arc<ListCache>,
}

impl CacheLayer {
    /// A layer using `cache`.
    pub fn new(cache: Arc<ListCache>) -> Self {
        Self { cache }
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = Cached<S>;
    fn layer(&self, inner: S) -> Cached<S> {
        Cached {
            inner,
            cache: self.cache.clone(),
        }
    }
}

/// Service produced by [`CacheLayer`].
#[derive(Clone)]
pub struct Cached<S> {
    inner: S,
    cache: Arc<ListCache>,
}

impl<S> Service<Read> for Cached<S>
where
    S: Service<Outbound, Response = Reply, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, read: Read) -> BoxFuture {
        // The service polled ready is the one a miss calls; a hit drops it unused.
        let fresh = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, fresh);
        let cache = self.cache.clone();
        let directive = client_directive(&read.headers);
        // The cache decision's span: HIT, MISS, STALE or BYPASS (a miss's upstream call is
        // its sibling, under the request's span).
        let span = crate::observe::trace::Span::child(
            read.ctx.trace.as_ref(),
            "cache",
            crate::observe::trace::Kind::Internal,
        );
        if cache.bypassed(directive, read.purpose) {
            return Box::pin(async move { Ok(cache_span(span, cache.bypass(read, inner).await)) });
        }
        Box::pin(async move { Ok(cache_span(span, cache.serve(read, directive, inner).await)) })
    }
}

/// Ends the cache span with the result the reply carries.
fn cache_span(mut span: crate::observe::trace::Span, reply: Reply) -> Reply {
    if let Some(c) = reply.facts.cache {
        span.attr("jbgw.cache.result", c.as_str());
    }
    reply
}

/// Invalidates the groups a write changes once upstream accepted it, before its answer is
/// returned: no replica serves an older read once the client has seen the write.
#[derive(Clone)]
pub struct InvalidateLayer {
    cache: Arc<ListCache>,
}

impl InvalidateLayer {
    /// A layer invalidating `cache`.
    pub fn new(cache: Arc<ListCache>) -> Self {
        Self { cache }
    }
}

impl<S> Layer<S> for InvalidateLayer {
    type Service = Invalidate<S>;
    fn layer(&self, inner: S) -> Invalidate<S> {
        Invalidate {
            inner,
            cache: self.cache.clone(),
        }
    }
}

/// Service produced by [`InvalidateLayer`].
#[derive(Clone)]
pub struct Invalidate<S> {
    inner: S,
    cache: Arc<ListCache>,
}

impl<S> Service<Write> for Invalidate<S>
where
    S: Service<Outbound, Response = Reply, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, write: Write) -> BoxFuture {
        let cache = self.cache.clone();
        let spec = write.ctx.spec;
        let name = write.ctx.identity.key.name.clone();
        let fut = self.inner.call(Outbound {
            ctx: write.ctx,
            class: BudgetClass::Write,
            urgency: 100,
            method: write.method,
            target: write.target,
            headers: write.headers,
            body: write.body,
        });
        Box::pin(async move {
            let reply = fut.await?;
            // Only a write upstream accepted changes what reads return.
            if reply.status().is_success() && reply.upstream_status().is_some() {
                let cause = if spec.route.is_create() {
                    InvalidationCause::Create
                } else {
                    InvalidationCause::Write
                };
                cache.invalidate(&name, spec.invalidates, cause).await;
            }
            Ok(reply)
        })
    }
}
