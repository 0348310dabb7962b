//! The Redis-backed store itself: connecting (lazily, never failing for an unreachable
//! server), and running one command under the health breaker and the command timeout.

use super::scripts::Scripts;
use crate::lock;
use crate::state::answer::StoreError;
use crate::state::metrics::{StateErrorKind, StateMetrics};
use crate::state::watch;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long a failed backend is left alone before one command probes it again.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Consecutive transport failures (no reply within `command_timeout`, a refused or dropped
/// connection) that open the breaker and mark the backend degraded; any answer resets the
/// count. One slow reply (a fork for a snapshot, a GC pause of a proxy, a lost packet) fails
/// only its own request; three in a row, at 50 ms each by default, is an outage that would
/// otherwise cost every request the command timeout. While the backend is really down this
/// costs at most three requests one `command_timeout` each (a refused connection costs
/// nothing), then the breaker answers at once.
pub const BREAKER_THRESHOLD: u32 = 3;

/// How to reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL (may carry credentials: never logged).
    pub url: String,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time one command may take.
    pub command_timeout: Duration,
    /// Prefix of every key.
    pub key_prefix: String,
}

/// The Redis-backed store.
pub struct RedisStore {
    /// Replaced by a fresh one when a probe finds the server back: a manager whose
    /// reconnection attempts ran out stays broken otherwise.
    conn: Mutex<ConnectionManager>,
    client: redis::Client,
    config: ConnectionManagerConfig,
    pub(super) prefix: String,
    command_timeout: Duration,
    connect_timeout: Duration,
    pub(super) scripts: Scripts,
    /// Unique per process, so admissions from several replicas never share a log member.
    pub(super) replica: String,
    pub(super) next_id: AtomicU64,
    /// Closed breaker: commands go through. Open: refused until `down_until`.
    down_until: Mutex<Option<Instant>>,
    /// Transport failures since the last answer: the breaker opens at [`BREAKER_THRESHOLD`].
    failures: AtomicU32,
    pub(super) up: AtomicBool,
    /// Per key: the budget epoch this replica last saw (see the admit script in
    /// [`scripts`](super::scripts)).
    pub(super) epochs: Mutex<std::collections::HashMap<String, String>>,
    /// Generations learned from the bump channel (see [`watch`]).
    pub(super) watch: Arc<watch::GenerationWatch>,
    /// The channel the bump script publishes new generations on.
    pub(super) channel: String,
    metrics: Arc<StateMetrics>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Whether a failed command says the backend is unreachable (`Transport`, `Timeout`: towards
/// the breaker) or that this command is wrong (`Script`: the server answered it with an error
/// of its own, such as a Lua runtime error or a key of the wrong type).
fn fault(e: &redis::RedisError) -> StateErrorKind {
    use redis::{ErrorKind, ServerErrorKind};
    if e.is_timeout() {
        return StateErrorKind::Timeout;
    }
    match e.kind() {
        // Errors that say the server cannot serve anything now, whatever the command: an
        // outage as far as this replica can tell.
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => StateErrorKind::Transport,
        ErrorKind::Extension
            if matches!(e.code(), Some("BUSY" | "OOM" | "MISCONF" | "NOREPLICAS")) =>
        {
            StateErrorKind::Transport
        }
        // The server's own answer to this command (ERR from a script, WRONGTYPE, NOSCRIPT
        // left after the reload, NOPERM), or a reply this code cannot read: a bug.
        ErrorKind::Server(_)
        | ErrorKind::Extension
        | ErrorKind::Parse
        | ErrorKind::UnexpectedReturnType => StateErrorKind::Script,
        // I/O, refused or dropped connections, authentication at connect, client-side
        // failures to reach the server.
        _ => StateErrorKind::Transport,
    }
}

impl RedisStore {
    /// A store for `settings`. Never fails for an unreachable server: it connects lazily and
    /// reports itself degraded until the server answers.
    pub fn new(settings: &RedisSettings, metrics: Arc<StateMetrics>) -> Result<RedisStore, String> {
        let client = redis::Client::open(settings.url.as_str())
            // The error text may quote the URL: keep only its kind.
            .map_err(|e| format!("state.url is not a usable Redis URL ({:?})", e.kind()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.command_timeout))
            // Reconnect quickly once the server is back (the default backoff waits seconds).
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(|e| format!("state backend: {:?}", e.kind()))?;
        let mut id = [0u8; 8];
        fastrand::fill(&mut id);
        let channels = watch::Channels {
            bumps: format!("{}:generations", settings.key_prefix),
            acks: format!("{}:generations:acks", settings.key_prefix),
        };
        let channel = channels.bumps.clone();
        let gauge = metrics.clone();
        let watch = watch::start(
            client.clone(),
            channels,
            settings.connect_timeout,
            settings.command_timeout,
            move |live| gauge.set_watch_up(live),
        );
        Ok(RedisStore {
            watch,
            channel,
            conn: Mutex::new(conn),
            client,
            config,
            prefix: settings.key_prefix.clone(),
            command_timeout: settings.command_timeout,
            connect_timeout: settings.connect_timeout,
            scripts: Scripts::load(),
            epochs: Mutex::new(std::collections::HashMap::new()),
            replica: hex::encode(id),
            next_id: AtomicU64::new(1),
            down_until: Mutex::new(None),
            failures: AtomicU32::new(0),
            up: AtomicBool::new(true),
            metrics,
        })
    }

    /// Asks the server once (at start), so health reflects reality before the first request.
    pub async fn probe(&self) -> bool {
        let mut conn = self.conn();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<Value>(&mut conn);
        let ok = matches!(
            tokio::time::timeout(self.connect_timeout + self.command_timeout, ping).await,
            Ok(Ok(_))
        );
        self.mark(ok);
        ok
    }

    /// Replaces the connection manager with a fresh, lazily connecting one.
    fn renew_connection(&self) {
        if let Ok(fresh) =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
        {
            *lock(&self.conn) = fresh;
        }
    }

    fn conn(&self) -> ConnectionManager {
        lock(&self.conn).clone()
    }

    /// Closes (`ok`) or opens the breaker, and sets the health to match.
    fn mark(&self, ok: bool) {
        if ok {
            self.failures.store(0, Ordering::Release);
        }
        let was = self.up.swap(ok, Ordering::AcqRel);
        let mut down = lock(&self.down_until);
        *down = if ok {
            None
        } else {
            Some(Instant::now() + PROBE_INTERVAL)
        };
        if was != ok {
            self.metrics.set_up(ok);
            if ok {
                tracing::info!("state backend answers again: shared state in use");
            } else {
                tracing::warn!("state backend unreachable: degraded mode (private budget, keyed creates refused, recent local lists only)");
            }
        }
    }

    /// Runs one command under the breaker and the timeout.
    pub(super) async fn run<T, F, Fut>(&self, op: &'static str, command: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let probing = {
            let mut down = lock(&self.down_until);
            match *down {
                Some(until) if Instant::now() < until => {
                    self.metrics
                        .command(op, Duration::ZERO, Some(StateErrorKind::Skipped));
                    return Err(StoreError::Unavailable);
                }
                Some(_) => {
                    // Let this command probe; the others keep failing fast meanwhile.
                    *down = Some(Instant::now() + PROBE_INTERVAL);
                    true
                }
                None => false,
            }
        };
        if probing {
            // A fresh manager: it connects on this command, whatever the old one went through.
            self.renew_connection();
        }
        let start = Instant::now();
        // A probe connects first: it may take the connect timeout too.
        let limit = if probing {
            self.connect_timeout + self.command_timeout
        } else {
            self.command_timeout
        };
        let mut out = tokio::time::timeout(limit, command(self.conn())).await;
        if let Ok(Err(e)) = &out {
            // Not after a timeout: a server that hangs would make the retry wait for the
            // connect timeout too.
            let broken = e.is_connection_dropped()
                || e.is_connection_refusal()
                || (e.is_io_error() && !e.is_timeout());
            if !probing && broken {
                // The connection broke since the last command (a server restart, a dropped
                // connection): one more try on a fresh one, so this request is not served
                // degraded for a failure that is already over.
                self.renew_connection();
                out = tokio::time::timeout(
                    self.connect_timeout + self.command_timeout,
                    command(self.conn()),
                )
                .await;
            }
        }
        let elapsed = start.elapsed();
        let kind = match out {
            Ok(Ok(v)) => {
                self.metrics.command(op, elapsed, None);
                self.answered();
                return Ok(v);
            }
            Ok(Err(e)) => match fault(&e) {
                StateErrorKind::Script => {
                    self.metrics
                        .command(op, elapsed, Some(StateErrorKind::Script));
                    // The server read the command and answered: it is up, whatever this
                    // command's bug (a probe that meets one has still found it back).
                    self.answered();
                    tracing::error!(
                        op,
                        code = e.code().unwrap_or(""),
                        error = %e,
                        "state command refused by the server: a bug, not an outage (only this request fails; the backend stays in use)"
                    );
                    return Err(StoreError::Script);
                }
                kind => {
                    tracing::debug!(op, kind = ?e.kind(), "state command failed");
                    kind
                }
            },
            Err(_) => {
                tracing::debug!(op, "state command timed out");
                StateErrorKind::Timeout
            }
        };
        self.metrics.command(op, elapsed, Some(kind));
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        // A failed probe reopens at once: the backend was already known down.
        if probing || failures >= BREAKER_THRESHOLD {
            self.mark(false);
        }
        Err(StoreError::Unavailable)
    }

    /// The server answered (a reply or an error of its own): the transport works.
    fn answered(&self) {
        self.failures.store(0, Ordering::Release);
        if !self.up.load(Ordering::Acquire) || self.down_until_set() {
            self.mark(true);
        }
    }

    fn down_until_set(&self) -> bool {
        lock(&self.down_until).is_some()
    }
}
