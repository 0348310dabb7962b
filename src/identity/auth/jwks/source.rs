//! [`JwksSource`]: the fetch, the single-flight, the unknown-kid cooldown and the timer.

use super::discovery::discover_jwks_uri;
use super::fetcher::{clip, Fetcher};
use super::keys::parse_jwks_fetched_at;
use super::keys::{parse_jwks, KeySet};
use super::memory::{KeyMemory, MemoryKey, Remembered};
use super::options::{JwksLocation, JwksOptions};
use jsonwebtoken::Algorithm;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The shortest refresh interval honoured: a zero interval would turn the background loop into
/// a busy loop against the IdP.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The first retry delay after a failed background refresh; it doubles up to the cap.
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// Counters for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksStats {
    /// Fetches that produced a usable key set.
    pub fetch_ok: u64,
    /// Fetches that failed (discovery, transport, status, timeout or unusable document).
    pub fetch_failed: u64,
    /// When the current key set was fetched.
    pub last_success: Option<Instant>,
    /// The same moment as seconds since the Unix epoch (for a metric and `/readyz`).
    pub last_success_unix: Option<u64>,
    /// Failed fetches since the last success (0 after a success).
    pub consecutive_failures: u64,
    /// Usable keys in the current set (0 before the first success).
    pub keys: usize,
}

/// The single-flight slot: held for the whole of a fetch.
struct Flight {
    /// The outcome of the last completed fetch, handed to callers that queued behind it.
    last: Result<(), String>,
}

/// Keeps the identity provider's current signing keys. See the module docs.
pub struct JwksSource {
    location: JwksLocation,
    /// The JWKS URL once known: the configured one, or the discovered one after a successful
    /// discovery (a new config generation discovers again).
    url: RwLock<Option<http::Uri>>,
    fetcher: Arc<dyn Fetcher>,
    options: JwksOptions,
    /// The last good set. A std lock held only to clone or swap an `Arc`, so the request path
    /// never waits on a fetch.
    current: RwLock<Option<Arc<KeySet>>>,
    /// Bumped (after `current` is swapped) whenever the set's keys change: the verified-token
    /// cache compares it to tell, with one atomic load, that a token's key may have left.
    version: AtomicU64,
    /// A tokio mutex because it is held across the fetch's await; waiters queue without
    /// blocking a thread and then share the outcome.
    flight: tokio::sync::Mutex<Flight>,
    /// Completed fetches; read before queuing on `flight` to tell whether a fetch finished
    /// while this caller waited, in which case it takes that outcome instead of fetching.
    completed: AtomicU64,
    /// Woken whenever a fetch completes (see [`first_attempt`](Self::first_attempt)).
    attempted: tokio::sync::Notify,
    /// Start of the last fetch caused by an unknown kid: the cooldown runs from here.
    last_attempt: Mutex<Option<Instant>>,
    fetch_ok: AtomicU64,
    fetch_failed: AtomicU64,
    consecutive_failures: AtomicU64,
    /// Unix seconds of the current set's fetch; 0 before any.
    last_success_unix: AtomicU64,
    /// Where the last good document is kept for the next config generation.
    memory: Option<(Arc<KeyMemory>, MemoryKey)>,
}

impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksSource")
            .field("location", &self.location)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

use crate::lock;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JwksSource {
    /// A source for the JWKS at `url`. Fetches nothing yet: call [`refresh`](Self::refresh)
    /// and/or [`spawn_refresh`](Self::spawn_refresh). The URL is used as given; see
    /// [`check_jwks_url`](super::discovery::check_jwks_url) for the check discovery applies.
    pub fn new(url: http::Uri, fetcher: Arc<dyn Fetcher>, options: JwksOptions) -> Arc<Self> {
        JwksSource::build(JwksLocation::Url(url), fetcher, options, None)
    }

    /// A source for `location` whose last good document is kept in `memory` under
    /// `issuer`'s name, and which starts from the document remembered there (re-read with
    /// these options) when there is one: a new config generation keeps the keys the last one
    /// had until a fetch replaces them.
    pub fn remembered(
        location: JwksLocation,
        fetcher: Arc<dyn Fetcher>,
        options: JwksOptions,
        memory: Arc<KeyMemory>,
        issuer: &str,
    ) -> Arc<Self> {
        let key = MemoryKey::new(issuer, &location);
        JwksSource::build(location, fetcher, options, Some((memory, key)))
    }

    fn build(
        location: JwksLocation,
        fetcher: Arc<dyn Fetcher>,
        mut options: JwksOptions,
        memory: Option<(Arc<KeyMemory>, MemoryKey)>,
    ) -> Arc<Self> {
        options.refresh_interval = options.refresh_interval.max(MIN_REFRESH_INTERVAL);
        // HMAC keys are never taken from a JWKS, whatever the gateway allows for its own keys.
        options
            .allowed
            .retain(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
        let url = match &location {
            JwksLocation::Url(u) => Some(u.clone()),
            JwksLocation::Discover(_) => None,
        };
        let mut seed = None;
        let mut seed_unix = 0;
        if let Some((mem, key)) = &memory {
            if let Some(doc) = mem.get(key) {
                match parse_jwks_fetched_at(
                    &doc.body,
                    &options.allowed,
                    options.max_keys,
                    doc.fetched_at,
                ) {
                    Ok(set) => {
                        tracing::debug!(%location, keys = set.len(), "starting from the last good key set");
                        seed = Some(Arc::new(set));
                        seed_unix = doc.fetched_unix;
                    }
                    Err(e) => {
                        tracing::warn!(%location, error = %e, "the last good key set has no key usable with this config; fetching afresh");
                    }
                }
            }
        }
        Arc::new(JwksSource {
            location,
            url: RwLock::new(url),
            fetcher,
            options,
            current: RwLock::new(seed),
            version: AtomicU64::new(0),
            flight: tokio::sync::Mutex::new(Flight {
                last: Err("not fetched yet".into()),
            }),
            completed: AtomicU64::new(0),
            attempted: tokio::sync::Notify::new(),
            last_attempt: Mutex::new(None),
            fetch_ok: AtomicU64::new(0),
            fetch_failed: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
            last_success_unix: AtomicU64::new(seed_unix),
            memory,
        })
    }

    /// The JWKS URL: the configured one, or the discovered one once discovery succeeded.
    pub fn url(&self) -> Option<http::Uri> {
        self.url
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Where the keys come from.
    pub fn location(&self) -> &JwksLocation {
        &self.location
    }

    /// The latest good key set; `None` until the first successful fetch.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes whenever the current set's keys change (not on a refresh that found the same
    /// keys). Read before [`current`](Self::current): a reader that sees a new version then
    /// sees the set it belongs to.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The [`version`](Self::version) and the current set, read in that order: a token
    /// verified with a key of this set may be bound to this version (if the set changes just
    /// after, the version differs and the binding is checked against the new set).
    pub fn versioned(&self) -> (u64, Option<Arc<KeySet>>) {
        let version = self.version();
        (version, self.current())
    }

    /// Whether a key set has been fetched (for readiness probes).
    pub fn is_ready(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The longest one fetch (discovery included) may take.
    pub fn fetch_timeout(&self) -> Duration {
        self.options.fetch_timeout
    }

    /// Counters for metrics.
    pub fn stats(&self) -> JwksStats {
        let current = self.current();
        let unix = self.last_success_unix.load(Ordering::Relaxed);
        JwksStats {
            fetch_ok: self.fetch_ok.load(Ordering::Relaxed),
            fetch_failed: self.fetch_failed.load(Ordering::Relaxed),
            last_success: current.as_ref().map(|s| s.fetched_at()),
            last_success_unix: (unix > 0).then_some(unix),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            keys: current.map_or(0, |s| s.len()),
        }
    }

    /// Fetches the set now. Single-flight: a caller arriving while a fetch is under way waits
    /// for it and gets its outcome rather than starting another. A failure or unusable document
    /// keeps the last good set and returns `Err`.
    pub async fn refresh(&self) -> Result<(), String> {
        let seen = self.completed.load(Ordering::Acquire);
        let mut flight = self.flight.lock().await;
        if self.completed.load(Ordering::Acquire) != seen {
            return flight.last.clone();
        }
        // If this future is dropped mid-fetch the guard is released without bumping
        // `completed`, so the next waiter fetches itself instead of taking a stale outcome.
        // Scheduled and start-up fetches do not start the unknown-kid cooldown: a key rotated
        // just after one of them must still be picked up by the first token that names it.
        let outcome = self.fetch_once().await;
        flight.last = outcome.clone();
        self.completed.fetch_add(1, Ordering::Release);
        self.attempted.notify_waiters();
        outcome
    }

    /// Waits until at least one fetch has completed (succeeded or failed): how a new config
    /// generation lets its first fetches run before it starts serving, without waiting for
    /// the retries.
    pub async fn first_attempt(&self) {
        let notified = self.attempted.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.completed.load(Ordering::Acquire) > 0 {
            return;
        }
        notified.await;
    }

    /// For a token naming a `kid` the current set lacks: refreshes at once unless a fetch
    /// started less than `unknown_kid_cooldown` ago, so a flood of made-up kids causes at most
    /// one fetch per cooldown. When a fetch is already under way it waits for it (that costs the
    /// IdP nothing and lets a token signed with a just-rotated key through). Returns the
    /// possibly new current set. Never waits longer than the fetch timeout.
    pub async fn refresh_for_unknown_kid(&self) -> Option<Arc<KeySet>> {
        let wait = async {
            if self.claim_on_demand_slot() {
                // Failures are counted and logged by the fetch; the caller only needs the set.
                let _ = self.refresh().await;
            } else if self.flight.try_lock().is_err() {
                drop(self.flight.lock().await);
            }
        };
        // Queued behind a fetch that started earlier, the wait is still bounded by the
        // timeout: a hung IdP costs a request at most `fetch_timeout`.
        let _ = tokio::time::timeout(self.options.fetch_timeout, wait).await;
        self.current()
    }

    /// Takes the on-demand slot if the cooldown has passed, atomically with the check so
    /// concurrent callers cannot both take it.
    fn claim_on_demand_slot(&self) -> bool {
        let mut last = lock(&self.last_attempt);
        let now = Instant::now();
        if let Some(t) = *last {
            if now.saturating_duration_since(t) < self.options.unknown_kid_cooldown {
                return false;
            }
        }
        *last = Some(now);
        true
    }

    /// The JWKS URL, discovering it first when that has not succeeded yet.
    async fn resolve(&self) -> Result<http::Uri, String> {
        if let Some(url) = self.url() {
            return Ok(url);
        }
        let JwksLocation::Discover(issuer) = &self.location else {
            return Err("no JWKS URL".into());
        };
        let url = discover_jwks_uri(issuer, &*self.fetcher)
            .await
            .map_err(|e| format!("OIDC discovery failed: {e}"))?;
        tracing::info!(issuer = %issuer, jwks_uri = %url, "OIDC discovery found the JWKS");
        *self.url.write().unwrap_or_else(PoisonError::into_inner) = Some(url.clone());
        Ok(url)
    }

    async fn fetch_once(&self) -> Result<(), String> {
        let work = async {
            let url = self.resolve().await?;
            let body = self
                .fetcher
                .get(&url)
                .await
                .map_err(|e| clip(&format!("fetch failed: {e}"), 300))?;
            let set = parse_jwks(&body, &self.options.allowed, self.options.max_keys)?;
            Ok::<_, String>((set, body))
        };
        // One bound on discovery and fetch together: this is what a request waiting on an
        // unknown-kid refetch may wait.
        let outcome = match tokio::time::timeout(self.options.fetch_timeout, work).await {
            Err(_) => Err(format!(
                "fetch timed out after {:?}",
                self.options.fetch_timeout
            )),
            Ok(r) => r,
        };
        match outcome {
            Ok((set, body)) => {
                let set = Arc::new(set);
                let now_unix = unix_now();
                let previous = self
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .replace(set.clone());
                let changed = !previous.as_deref().is_some_and(|p| p.same_keys(&set));
                if changed {
                    self.version.fetch_add(1, Ordering::Release);
                }
                self.last_success_unix.store(now_unix, Ordering::Relaxed);
                self.consecutive_failures.store(0, Ordering::Relaxed);
                self.fetch_ok.fetch_add(1, Ordering::Relaxed);
                if let Some((memory, key)) = &self.memory {
                    memory.put(
                        key,
                        Remembered {
                            body,
                            fetched_at: set.fetched_at(),
                            fetched_unix: now_unix,
                        },
                    );
                }
                let kids = |s: &KeySet| {
                    s.keys()
                        .iter()
                        .map(|k| k.kid().map(str::to_owned))
                        .collect::<Vec<_>>()
                };
                if changed {
                    tracing::info!(location = %self.location, kids = ?kids(&set), "JWKS signing keys loaded");
                } else {
                    tracing::debug!(location = %self.location, "JWKS refreshed, keys unchanged");
                }
                Ok(())
            }
            Err(e) => {
                self.fetch_failed.fetch_add(1, Ordering::Relaxed);
                let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                let have_keys = self.is_ready();
                if have_keys {
                    tracing::warn!(location = %self.location, error = %e, failures, "JWKS refresh failed; keeping the last good key set");
                } else {
                    tracing::warn!(location = %self.location, error = %e, failures, "JWKS fetch failed and this issuer has no keys yet: its tokens are refused until a retry succeeds");
                }
                Err(e)
            }
        }
    }

    /// Starts the background refresh: fetches at once if there is no fresh set, then every
    /// `refresh_interval` (plus up to 10% jitter). Failures are retried after 0.5 s, 1 s, 2 s,
    /// … (with jitter), capped at `unknown_kid_cooldown` while there are no keys at all (so
    /// an issuer is ready within about one cooldown of its IdP's return) and at the interval
    /// once there are. The task holds only a `Weak`, so it ends when the source is dropped,
    /// and it is aborted when the returned [`RefreshTask`] is dropped. Needs a tokio runtime.
    pub fn spawn_refresh(self: &Arc<Self>) -> RefreshTask {
        RefreshTask(tokio::spawn(refresh_loop(Arc::downgrade(self))))
    }

    /// Whether the current set is younger than the refresh interval.
    fn is_fresh(&self) -> bool {
        self.current()
            .is_some_and(|s| s.age() < self.options.refresh_interval)
    }

    /// How long the background loop sleeps before its next look, after `failures`
    /// consecutive failed refreshes.
    fn next_delay(&self, failures: u32) -> Duration {
        let interval = self.options.refresh_interval;
        match (failures, self.current()) {
            (0, None) => Duration::ZERO,
            (0, Some(set)) => interval
                .saturating_sub(set.age())
                .saturating_add(interval.mul_f64(fastrand::f64() / 10.0)),
            // No keys: every second without them refuses tokens, so retry at least once per
            // cooldown (but never in a busy loop when the cooldown is zero).
            (_, None) => backoff(
                failures,
                self.options
                    .unknown_kid_cooldown
                    .clamp(FIRST_RETRY, interval),
            ),
            (_, Some(_)) => backoff(failures, interval),
        }
    }
}

/// Retry delay after `failures` (≥ 1) consecutive failures: doubling from [`FIRST_RETRY`],
/// capped at `cap`, then scaled by a random 50–100% so replicas do not retry in step.
fn backoff(failures: u32, cap: Duration) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    doubled.min(cap).mul_f64(0.5 + fastrand::f64() / 2.0)
}

async fn refresh_loop(source: Weak<JwksSource>) {
    let mut failures = 0u32;
    loop {
        let delay = match source.upgrade() {
            Some(src) => src.next_delay(failures),
            None => return,
        };
        // The strong reference is not held while sleeping, so dropping the source ends the loop.
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let Some(src) = source.upgrade() else {
            return;
        };
        // An on-demand refresh may have fetched meanwhile; then the timer restarts from it.
        if src.is_fresh() {
            failures = 0;
            continue;
        }
        match src.refresh().await {
            Ok(()) => failures = 0,
            Err(_) => failures = failures.saturating_add(1),
        }
    }
}

/// The background refresh task; aborted when dropped.
#[derive(Debug)]
pub struct RefreshTask(tokio::task::JoinHandle<()>);

impl RefreshTask {
    /// Stops the task.
    pub fn abort(&self) {
        self.0.abort();
    }

    /// Whether the task has ended (aborted, or its source dropped).
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for RefreshTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cap = Duration::from_secs(10);
        for _ in 0..50 {
            let one = backoff(1, cap);
            assert!(one >= FIRST_RETRY / 2 && one <= FIRST_RETRY);
            let three = backoff(3, cap);
            assert!(three >= FIRST_RETRY * 2 && three <= FIRST_RETRY * 4);
            assert!(backoff(u32::MAX, cap) <= cap);
        }
    }
}
