//! [`JwksSource`]: the fetch, the single-flight, the unknown-kid cooldown and the timer.

use super::{clip, parse_jwks, Fetcher, JwksOptions, KeySet};
use jsonwebtoken::Algorithm;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

/// The shortest refresh interval honoured: a zero interval would turn the background loop into
/// a busy loop against the IdP.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The first retry delay after a failed background refresh; it doubles up to the interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Counters for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksStats {
    /// Fetches that produced a usable key set.
    pub fetch_ok: u64,
    /// Fetches that failed (transport, status, timeout or unusable document).
    pub fetch_failed: u64,
    /// When the current key set was fetched.
    pub last_success: Option<Instant>,
}

/// The single-flight slot: held for the whole of a fetch.
struct Flight {
    /// The outcome of the last completed fetch, handed to callers that queued behind it.
    last: Result<(), String>,
}

/// Keeps the identity provider's current signing keys. See the module docs.
pub struct JwksSource {
    url: http::Uri,
    fetcher: Arc<dyn Fetcher>,
    options: JwksOptions,
    /// The last good set. A std lock held only to clone or swap an `Arc`, so the request path
    /// never waits on a fetch.
    current: RwLock<Option<Arc<KeySet>>>,
    /// A tokio mutex because it is held across the fetch's await; waiters queue without
    /// blocking a thread and then share the outcome.
    flight: tokio::sync::Mutex<Flight>,
    /// Completed fetches; read before queuing on `flight` to tell whether a fetch finished
    /// while this caller waited, in which case it takes that outcome instead of fetching.
    completed: AtomicU64,
    /// Start of the last fetch caused by an unknown kid: the cooldown runs from here.
    last_attempt: Mutex<Option<Instant>>,
    fetch_ok: AtomicU64,
    fetch_failed: AtomicU64,
}

impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksSource")
            .field("url", &self.url)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a plain assignment, so a poisoned lock's data is sound.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl JwksSource {
    /// A source for the JWKS at `url`. Fetches nothing yet: call [`refresh`](Self::refresh)
    /// and/or [`spawn_refresh`](Self::spawn_refresh). The URL is used as given; see
    /// [`check_jwks_url`](super::check_jwks_url) for the check discovery applies.
    pub fn new(url: http::Uri, fetcher: Arc<dyn Fetcher>, mut options: JwksOptions) -> Arc<Self> {
        options.refresh_interval = options.refresh_interval.max(MIN_REFRESH_INTERVAL);
        // HMAC keys are never taken from a JWKS, whatever the gateway allows for its own keys.
        options
            .allowed
            .retain(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
        Arc::new(JwksSource {
            url,
            fetcher,
            options,
            current: RwLock::new(None),
            flight: tokio::sync::Mutex::new(Flight {
                last: Err("not fetched yet".into()),
            }),
            completed: AtomicU64::new(0),
            last_attempt: Mutex::new(None),
            fetch_ok: AtomicU64::new(0),
            fetch_failed: AtomicU64::new(0),
        })
    }

    /// The JWKS URL.
    pub fn url(&self) -> &http::Uri {
        &self.url
    }

    /// The latest good key set; `None` until the first successful fetch.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether a key set has been fetched (for readiness probes).
    pub fn is_ready(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> JwksStats {
        JwksStats {
            fetch_ok: self.fetch_ok.load(Ordering::Relaxed),
            fetch_failed: self.fetch_failed.load(Ordering::Relaxed),
            last_success: self.current().map(|s| s.fetched_at()),
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
        outcome
    }

    /// For a token naming a `kid` the current set lacks: refreshes at once unless a fetch
    /// started less than `unknown_kid_cooldown` ago, so a flood of made-up kids causes at most
    /// one fetch per cooldown. When a fetch is already under way it waits for it (that costs the
    /// IdP nothing and lets a token signed with a just-rotated key through). Returns the
    /// possibly new current set.
    pub async fn refresh_for_unknown_kid(&self) -> Option<Arc<KeySet>> {
        if self.claim_on_demand_slot() {
            // Failures are counted and logged by the fetch; the caller only needs the set.
            let _ = self.refresh().await;
        } else if self.flight.try_lock().is_err() {
            drop(self.flight.lock().await);
        }
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

    async fn fetch_once(&self) -> Result<(), String> {
        let fetch = self.fetcher.get(&self.url);
        let outcome = match tokio::time::timeout(self.options.fetch_timeout, fetch).await {
            Err(_) => Err(format!(
                "fetch timed out after {:?}",
                self.options.fetch_timeout
            )),
            Ok(Err(e)) => Err(clip(&format!("fetch failed: {e}"), 300)),
            Ok(Ok(body)) => parse_jwks(&body, &self.options.allowed, self.options.max_keys),
        };
        match outcome {
            Ok(set) => {
                let set = Arc::new(set);
                let previous = self
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .replace(set.clone());
                self.fetch_ok.fetch_add(1, Ordering::Relaxed);
                let kids = |s: &KeySet| {
                    s.keys()
                        .iter()
                        .map(|k| k.kid().map(str::to_owned))
                        .collect::<Vec<_>>()
                };
                if previous.as_deref().map(kids) != Some(kids(&set)) {
                    tracing::info!(url = %self.url, kids = ?kids(&set), "JWKS signing keys loaded");
                } else {
                    tracing::debug!(url = %self.url, "JWKS refreshed, keys unchanged");
                }
                Ok(())
            }
            Err(e) => {
                self.fetch_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    url = %self.url,
                    error = %e,
                    have_keys = self.is_ready(),
                    "JWKS refresh failed; keeping the last good key set"
                );
                Err(e)
            }
        }
    }

    /// Starts the background refresh: fetches at once if there is no fresh set, then every
    /// `refresh_interval` (plus up to 10% jitter), retrying failures after 1 s, 2 s, 4 s, …
    /// capped at the interval. The task holds only a `Weak`, so it ends when the source is
    /// dropped, and it is aborted when the returned [`RefreshTask`] is dropped. Needs a tokio
    /// runtime.
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
        if failures == 0 {
            match self.current() {
                None => Duration::ZERO,
                Some(set) => interval
                    .saturating_sub(set.age())
                    .saturating_add(interval.mul_f64(fastrand::f64() / 10.0)),
            }
        } else {
            backoff(failures, interval)
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
            assert!(one >= Duration::from_millis(500) && one <= FIRST_RETRY);
            let three = backoff(3, cap);
            assert!(three >= Duration::from_secs(2) && three <= Duration::from_secs(4));
            assert!(backoff(u32::MAX, cap) <= cap);
        }
    }
}
