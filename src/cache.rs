//! The list cache: upstream list responses kept per (upstream key, generation, userId,
//! canonical query), bounded in bytes by moka's weigher, with coalesced misses, O(1)
//! invalidation on write, client `Cache-Control` and stale-if-error.
//!
//! Concurrent misses for one key are coalesced by a small single-flight table in front of
//! moka (moka's `try_get_with` cannot refresh an entry that is present but expired, which
//! stale-if-error needs to keep): the first request fetches, the others wait for its answer,
//! errors included, and none of them is forwarded.

use crate::config::CacheSettings;
use crate::exchange::{CacheResult, Facts, Outbound, Reply, UpstreamMeta};
use crate::lock;
use crate::metrics::{InvalidationCause, Metrics};
use crate::route::{Caching, Group};
use crate::state::{L2Lookup, SharedStore};
use crate::validate::query::ListQuery;
use crate::validate::{Read, Write};
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

    /// Whether upstream failed in a way stale-if-error covers (no answer, 5xx, 429).
    fn is_upstream_failure(&self) -> bool {
        self.status.is_server_error() || self.status == StatusCode::TOO_MANY_REQUESTS
    }
}

/// A stored read response.
#[derive(Debug)]
struct Entry {
    snapshot: Snapshot,
    stored_at: Instant,
    /// How long it is fresh (the route's TTL).
    ttl: Duration,
}

/// The outcome of one upstream fetch, shared with everyone who waited for it.
#[derive(Debug)]
enum Fetched {
    /// Stored and fresh.
    Stored(Arc<Entry>),
    /// Answered but not storable (not 200 JSON, `no-store`, too large), or a failure.
    Passed(Box<Snapshot>),
    /// Fetched by another replica (the shared L2), now stored here too.
    Shared(Arc<Entry>),
}

/// The L2 name of a cached read: its generation and a digest of the forwarded target, so the
/// user's id and the query never appear in the store in clear.
fn l2_id(key: &CacheKey) -> String {
    let fp = crate::state::Fingerprint::of(key.target.as_str().as_bytes());
    format!("{}:{}", key.generation, &fp.hex()[..32])
}

/// A stored list as the L2 holds it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn encode(snap: &Snapshot) -> Bytes {
    use base64::Engine;
    let wire = Wire {
        status: snap.status.as_u16(),
        headers: snap
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: base64::engine::general_purpose::STANDARD
            .encode(crate::exchange::body_bytes(&snap.body)),
    };
    Bytes::from(serde_json::to_vec(&wire).unwrap_or_default())
}

fn decode(bytes: &[u8]) -> Option<Snapshot> {
    use base64::Engine;
    let wire: Wire = serde_json::from_slice(bytes).ok()?;
    let mut headers = HeaderMap::new();
    for (n, v) in wire.headers {
        headers.append(
            http::HeaderName::from_bytes(n.as_bytes()).ok()?,
            HeaderValue::from_str(&v).ok()?,
        );
    }
    Some(Snapshot {
        status: StatusCode::from_u16(wire.status).ok()?,
        headers,
        body: Full::new(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(wire.body)
                .ok()?,
        )),
        facts: Facts {
            upstream: Some(UpstreamMeta {
                status: Some(wire.status),
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
    /// Per key: when the next background sweep of older generations may be registered. See
    /// [`SWEEP_INTERVAL`].
    next_sweep: Mutex<HashMap<(Arc<str>, Group), Instant>>,
    inflight: Mutex<HashMap<CacheKey, Flight>>,
    metrics: Arc<Metrics>,
}

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
    /// `no-cache` (or `Pragma: no-cache`): refetch, store the fresh answer.
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
        if t.eq_ignore_ascii_case("no-cache") {
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
    /// A cache for `settings` whose generations live in `state`.
    pub fn new(
        settings: &CacheSettings,
        state: SharedStore,
        degraded_max_age: Duration,
        metrics: Arc<Metrics>,
    ) -> Arc<ListCache> {
        let evictions = metrics.clone();
        let store = moka::future::Cache::builder()
            .max_capacity(settings.capacity)
            .weigher(|k: &CacheKey, v: &Arc<Entry>| {
                u32::try_from(k.weight() + v.snapshot.weight()).unwrap_or(u32::MAX)
            })
            // Entries outlive their freshness by the stale window, for stale-if-error.
            .time_to_live(settings.ttl.max(settings.lookup_ttl) + settings.stale_if_error)
            .support_invalidation_closures()
            .eviction_listener(move |_k, _v, cause| {
                if cause == RemovalCause::Size {
                    evictions.cache_eviction();
                }
            })
            .build();
        Arc::new(ListCache {
            settings: settings.clone(),
            store,
            state,
            degraded_max_age,
            last_generation: Mutex::new(HashMap::new()),
            pending_bumps: Mutex::new(HashSet::new()),
            next_sweep: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Whether this cache was built for `settings` and `state` (so a reload keeps it).
    pub fn fits(&self, settings: &CacheSettings, state: &SharedStore, degraded: Duration) -> bool {
        self.settings == *settings
            && Arc::ptr_eq(&self.state, state)
            && self.degraded_max_age == degraded
    }

    /// The key's current generation, and whether it came from the store (false: the store
    /// is down and this is the last one seen).
    async fn generation(&self, name: &Arc<str>, group: Group) -> (u64, bool) {
        self.bump_if_pending(name, group).await;
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
    fn max_age(&self, spec: &crate::route::RouteSpec, coherent: bool) -> (Duration, Duration) {
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

    /// Turns an upstream answer into what is shared and maybe stored.
    async fn settle(&self, key: &CacheKey, reply: Reply, ttl: Duration) -> Fetched {
        let snap = Snapshot::from_reply(reply);
        let storable = snap.status == StatusCode::OK
            && snap.facts.upstream.is_some()
            && is_json(&snap.headers)
            && !upstream_forbids_storing(&snap.headers)
            && key.weight() + snap.weight() <= self.settings.max_entry_size;
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

    fn usable_stale(&self, entry: &Entry, now: Instant) -> bool {
        !self.settings.stale_if_error.is_zero()
            && now.saturating_duration_since(entry.stored_at)
                < entry.ttl + self.settings.stale_if_error
    }

    fn respond(&self, entry: &Entry, result: CacheResult, now: Instant) -> Reply {
        let age = now.saturating_duration_since(entry.stored_at);
        let mut reply = entry.snapshot.to_reply(4);
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
        reply.facts.cache = Some(result);
        reply
    }

    fn passed(&self, snap: &Snapshot, result: CacheResult) -> Reply {
        let mut reply = snap.to_reply(2);
        reply
            .response
            .headers_mut()
            .insert(X_CACHE, HeaderValue::from_static(result.as_str()));
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
        specs: &[&'static crate::route::RouteSpec],
    ) -> Vec<Option<Bytes>> {
        if !self.settings.enabled || specs.is_empty() {
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
                Instant::now().saturating_duration_since(entry.stored_at) < max_age
                    && entry.snapshot.status.is_success()
            });
            out.push(body.map(|entry| {
                self.metrics.cache_lookup(CacheResult::Hit);
                crate::exchange::body_bytes(&entry.snapshot.body)
            }));
        }
        out
    }

    /// Whether a read goes around the cache (the cache is off, or the client said
    /// `no-store`).
    fn bypassed(&self, directive: Directive) -> bool {
        !self.settings.enabled || directive == Directive::Bypass
    }

    /// A read that goes around the cache: not shared with anyone, the answer is passed on as
    /// it is. Its own (small) future: a bypassed read does not carry `serve`'s states.
    async fn bypass<S>(&self, read: Read, mut inner: S) -> Reply
    where
        S: Service<Outbound, Response = Reply, Error = Infallible>,
    {
        self.metrics.cache_lookup(CacheResult::Bypass);
        let mut reply = call(&mut inner, outbound(read)).await;
        reply.response.headers_mut().insert(
            X_CACHE,
            HeaderValue::from_static(CacheResult::Bypass.as_str()),
        );
        reply.facts.cache = Some(CacheResult::Bypass);
        reply
    }

    /// Serves a read from the cache or through `inner` (a read the cache does not bypass).
    async fn serve<S>(self: Arc<Self>, read: Read, directive: Directive, mut inner: S) -> Reply
    where
        S: Service<Outbound, Response = Reply, Error = Infallible>,
    {
        let spec = read.ctx.spec;
        let name = &read.ctx.identity.key.name;
        let (generation, coherent) = self.generation(name, spec.group).await;
        let key = CacheKey {
            upstream_key: name.clone(),
            group: spec.group,
            generation,
            target: read.target.clone(),
        };
        let (ttl, max_age) = self.max_age(spec, coherent);
        let out = outbound(read);
        loop {
            let now = Instant::now();
            let existing = self.store.get(&key).await;
            if directive == Directive::Normal {
                if let Some(entry) = existing
                    .as_ref()
                    .filter(|e| now.saturating_duration_since(e.stored_at) < max_age)
                {
                    self.metrics.cache_lookup(CacheResult::Hit);
                    return self.respond(entry, CacheResult::Hit, now);
                }
            }
            let fetched = match self.join_or_lead(&key) {
                Role::Follower(mut rx) => match rx.wait_for(Option::is_some).await {
                    Ok(v) => v.clone().expect("waited for Some"),
                    // The leader was cancelled (its client went away): try again, maybe as
                    // the new leader.
                    Err(_) => continue,
                },
                Role::Leader(flight) => {
                    // Leading spends the request; the loop comes back only for a follower.
                    let shared = coherent && directive == Directive::Normal;
                    // Boxed: the fetch (L2, upstream, store) is most of this future's size,
                    // and a hit, which never fetches, would move it whole when boxed.
                    let fetch = Box::pin(self.fetch(&key, out, &mut inner, shared, ttl));
                    let fetched = Arc::new(fetch.await);
                    flight.complete(fetched.clone());
                    fetched
                }
            };
            let now = Instant::now();
            return match &*fetched {
                Fetched::Stored(entry) => {
                    self.metrics.cache_lookup(CacheResult::Miss);
                    self.respond(entry, CacheResult::Miss, now)
                }
                Fetched::Shared(entry) => {
                    self.metrics.cache_lookup(CacheResult::Hit);
                    self.respond(entry, CacheResult::Hit, now)
                }
                Fetched::Passed(snap) => match existing {
                    Some(old) if snap.is_upstream_failure() && self.usable_stale(&old, now) => {
                        self.metrics.cache_lookup(CacheResult::Stale);
                        self.respond(&old, CacheResult::Stale, now)
                    }
                    _ => {
                        self.metrics.cache_lookup(CacheResult::Miss);
                        self.passed(snap, CacheResult::Miss)
                    }
                },
            };
        }
    }

    /// A local miss: the shared L2 first (when the store is shared and answering), so one
    /// replica's fetch is every replica's hit; else upstream, then into both levels.
    async fn fetch<S>(
        &self,
        key: &CacheKey,
        req: Outbound,
        inner: &mut S,
        shared: bool,
        ttl: Duration,
    ) -> Fetched
    where
        S: Service<Outbound, Response = Reply, Error = Infallible>,
    {
        let entry_id = l2_id(key);
        let mut lead = false;
        let mut lease = None;
        if shared && self.state.is_shared() {
            let deadline = Instant::now() + L2_WAIT;
            loop {
                match self
                    .state
                    .l2_lookup(&key.upstream_key, &entry_id, L2_WAIT * 2)
                    .await
                {
                    Ok(L2Lookup::Hit { value, ttl_left }) => {
                        if let Some(snapshot) = decode(&value) {
                            let age = ttl.saturating_sub(ttl_left);
                            let entry = Arc::new(Entry {
                                ttl,
                                snapshot,
                                stored_at: Instant::now()
                                    .checked_sub(age)
                                    .unwrap_or_else(Instant::now),
                            });
                            self.store.insert(key.clone(), entry.clone()).await;
                            return Fetched::Shared(entry);
                        }
                        lead = true;
                        break;
                    }
                    Ok(L2Lookup::Lead) => {
                        lead = true;
                        lease = Some(L2Lease {
                            state: self.state.clone(),
                            key: key.upstream_key.clone(),
                            entry: entry_id.clone(),
                            armed: true,
                        });
                        break;
                    }
                    Ok(L2Lookup::Busy) if Instant::now() < deadline => {
                        tokio::time::sleep(L2_POLL).await;
                    }
                    // Another replica's fetch is taking long, or the store is down: fetch.
                    Ok(L2Lookup::Busy) | Err(_) => break,
                }
            }
        }
        let resp = call(inner, req).await;
        let fetched = self.settle(key, resp, ttl).await;
        if lead {
            let value = match &fetched {
                Fetched::Stored(e) => Some(encode(&e.snapshot)),
                _ => None,
            };
            let _ = self
                .state
                .l2_put(&key.upstream_key, &entry_id, value, ttl)
                .await;
        }
        // Stored and unlocked (or the store is down, and the lock expires by itself).
        if let Some(lease) = lease.as_mut() {
            lease.armed = false;
        }
        fetched
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

async fn call<S>(inner: &mut S, req: Outbound) -> Reply
where
    S: Service<Outbound, Response = Reply, Error = Infallible>,
{
    match inner.call(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// A read as it leaves: no client header travels (headers are not part of the cache key).
fn outbound(read: Read) -> Outbound {
    Outbound {
        ctx: read.ctx,
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
        if cache.bypassed(directive) {
            return Box::pin(async move { Ok(cache.bypass(read, inner).await) });
        }
        Box::pin(async move { Ok(cache.serve(read, directive, inner).await) })
    }
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
