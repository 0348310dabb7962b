//! The Redis-protocol [`Store`] (Redis ≥ 6.2, Valkey ≥ 7.2, no modules), shared by every
//! replica that points at the same server and key prefix.
//!
//! - Every decision that must be atomic is one Lua script (sent by `EVALSHA`, reloaded on
//!   `NOSCRIPT` after a server restart) reading the server's own clock (`TIME`), so replicas'
//!   clocks never matter: one round trip per decision.
//! - All of one upstream key's state shares one hash slot (`{prefix:key}`), so a Redis
//!   Cluster works too.
//! - Nothing stored is a secret: upstream keys are referred to by their config name, users
//!   and `Idempotency-Key`s by a SHA-256, and every key carries a TTL.
//! - Nothing waits longer than `command_timeout`. After [`BREAKER_THRESHOLD`] consecutive
//!   transport failures (timeouts, refused or dropped connections) a local breaker answers
//!   [`StoreError::Unavailable`] at once for [`PROBE_INTERVAL`], then lets one command probe.
//! - An error the server answers for one command (a script's runtime error, a key of another
//!   type) is a bug, not an outage: logged as an error, counted with `kind="script"`, and
//!   [`StoreError::Script`] for that call only; the breaker and the health never see it.

use super::{
    Admit, BudgetAsk, Claim, Fingerprint, Health, IdemId, L2Copy, L2Lookup, Settle, Store,
    StoreError, StoreFuture, StoredOutcome, Ticket,
};
use crate::lock;
use crate::metrics::{Metrics, StateErrorKind};
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
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
/// A generation counter lives this long after its last bump (it restarts from the clock).
const GENERATION_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
/// A key's budget epoch lives this long after its last admission.
const EPOCH_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// Prune, count, check the pause and the user's share, add: one atomic step on the server's
/// clock. Returns {code, n, epoch}: code 0 admitted (n = remaining), 1 key full, 2 paused,
/// 3 user's share full (n = wait in ms). A limit of 0 is a full key, never a script error.
///
/// The key's *epoch* (KEYS[4]) tells a replica whether the history it saw is still there: a
/// server restarted without persistence has lost the log, and the upstream may still count up
/// to N admissions of the last window. A replica that saw another epoch (ARGV[5]) closes the
/// shared pool for one window (KEYS[5]); the private shares still serve meanwhile.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local ulimit = tonumber(ARGV[4])
-- When a slot of a full log of `n` frees: as the entry `n - lim` back leaves the window. A
-- limit of 0 (no pool at all) never frees: the whole window.
local function frees(key, n, lim)
  if lim < 1 then return window end
  local e = redis.call('ZRANGE', key, n - lim, n - lim, 'WITHSCORES')
  if not e[2] then return window end
  return math.max(1, tonumber(e[2]) + window - now)
end
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  epoch = t[1] .. t[2] .. ':' .. ARGV[3]
  redis.call('SET', KEYS[4], epoch, 'PX', ARGV[6])
else
  redis.call('PEXPIRE', KEYS[4], ARGV[6])
end
if ARGV[5] ~= '' and ARGV[5] ~= epoch then
  if redis.call('PTTL', KEYS[5]) < 0 then redis.call('SET', KEYS[5], '1', 'PX', window) end
end
local c = redis.call('PTTL', KEYS[5])
if c > 0 then return {1, c, epoch} end
local p = redis.call('PTTL', KEYS[2])
if p > 0 then return {2, p, epoch} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n >= limit then
  return {1, frees(KEYS[1], n, limit), epoch}
end
if ulimit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
  local un = redis.call('ZCARD', KEYS[3])
  if un >= ulimit then
    return {3, frees(KEYS[3], un, ulimit), epoch}
  end
  redis.call('ZADD', KEYS[3], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[3], window)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {0, limit - n - 1, epoch}
";

/// Remaining admissions: {remaining}.
const REMAINING: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('PTTL', KEYS[2]) > 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return math.max(0, tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1]))
";

/// A pause only ever extends.
const PAUSE: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
";

/// Claims an idempotency record: {'proceed'}, {'mismatch'}, {'inflight'}, {'unknown'} or
/// {'done', status, content_type, body}. An in-flight record whose lease ran out belongs to a
/// sender that died: it becomes unknown, never free.
const CLAIM: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r = redis.call('HMGET', KEYS[1], 'state', 'fp', 'lease', 'status', 'ctype', 'body')
if not r[1] then
  redis.call('HSET', KEYS[1], 'state', 'inflight', 'fp', ARGV[1], 'lease', now + tonumber(ARGV[2]))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'proceed'}
end
if r[2] ~= ARGV[1] then return {'mismatch'} end
if r[1] == 'done' then return {'done', r[4], r[5] or '', r[6] or ''} end
if r[1] == 'inflight' then
  if tonumber(r[3]) > now then return {'inflight'} end
  redis.call('HSET', KEYS[1], 'state', 'unknown')
  return {'unknown'}
end
return {'unknown'}
";

/// Settles a record: ARGV[1] = done | unknown | release.
const SETTLE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == 'release' then
  if redis.call('HGET', KEYS[1], 'state') == 'inflight' then redis.call('DEL', KEYS[1]) end
  return 1
end
if ARGV[1] == 'unknown' then
  redis.call('HSET', KEYS[1], 'state', 'unknown')
  return 1
end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[3], 'ctype', ARGV[4], 'body', ARGV[5])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
";

/// A list in the L2 is a hash: `at` (when it was stored, the server's clock in ms) and `v`
/// (the list's raw bytes). {1, v, age} a fresh copy (younger than ARGV[3] ms); else the fetch
/// lock is tried: {2, v?, age?} this replica leads the fetch, {3, v?, age?} another replica
/// does, with the older copy when one is kept.
const L2_LOOKUP: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r = redis.call('HMGET', KEYS[1], 'at', 'v')
local age = -1
if r[1] and r[2] then
  age = math.max(0, now - tonumber(r[1]))
  if age < tonumber(ARGV[3]) then return {1, r[2], age} end
end
local got = 3
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[1]) then got = 2 end
if age >= 0 then return {got, r[2], age} end
return {got}
";

/// Stores (when ARGV[1], the time to keep it in ms, is non-empty) stamped with the server's
/// clock, and releases the lock if it is still ours.
const L2_PUT: &str = r"
if ARGV[1] ~= '' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], 'at', now, 'v', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
";

/// A generation that does not exist (first use, expiry, or a server that lost its data)
/// starts from the server's clock in microseconds, so it is never a value any replica cached
/// a read under before.
const BUMP: &str = r"
local t = redis.call('TIME')
local out = {}
local receivers = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then
    redis.call('SET', key, tonumber(t[1]) * 1000000 + tonumber(t[2]))
  end
  out[i] = redis.call('INCR', key)
  redis.call('PEXPIRE', key, ARGV[1])
  -- In the same atomic step: every replica's watch learns it (see `watch`), and the caller
  -- learns how many must acknowledge it. `%d`: concatenating the number would print it as a
  -- float past 14 digits.
  receivers[i] = redis.call('PUBLISH', ARGV[2], key .. ' ' .. string.format('%d', out[i]))
end
return {out, receivers}
";

const GENERATION: &str = r"
local g = redis.call('GET', KEYS[1])
if g then return g end
local t = redis.call('TIME')
redis.call('SET', KEYS[1], tonumber(t[1]) * 1000000 + tonumber(t[2]), 'NX', 'PX', ARGV[1])
return redis.call('GET', KEYS[1])
";

/// [`GENERATION`] for each of KEYS (one key's scopes: one hash slot).
const GENERATIONS: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local g = redis.call('GET', key)
  if not g then
    local t = redis.call('TIME')
    redis.call('SET', key, tonumber(t[1]) * 1000000 + tonumber(t[2]), 'NX', 'PX', ARGV[1])
    g = redis.call('GET', key)
  end
  out[i] = g
end
return out
";

struct Scripts {
    admit: Script,
    remaining: Script,
    pause: Script,
    claim: Script,
    settle: Script,
    l2_lookup: Script,
    l2_put: Script,
    bump: Script,
    generation: Script,
    generations: Script,
}

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
    prefix: String,
    command_timeout: Duration,
    connect_timeout: Duration,
    scripts: Scripts,
    /// Unique per process, so admissions from several replicas never share a log member.
    replica: String,
    next_id: AtomicU64,
    /// Closed breaker: commands go through. Open: refused until `down_until`.
    down_until: Mutex<Option<Instant>>,
    /// Transport failures since the last answer: the breaker opens at [`BREAKER_THRESHOLD`].
    failures: AtomicU32,
    up: AtomicBool,
    /// Per key: the budget epoch this replica last saw (see [`ADMIT`]).
    epochs: Mutex<std::collections::HashMap<String, String>>,
    /// Generations learned from the bump channel (see [`super::watch`]).
    watch: Arc<super::watch::GenerationWatch>,
    /// The channel the bump script publishes new generations on.
    channel: String,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn sha_hex(parts: &[&[u8]]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(p);
        ctx.update(&[0]);
    }
    hex::encode(&ctx.finish().as_ref()[..16])
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
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

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        other => vec![other],
    }
}

impl RedisStore {
    /// A store for `settings`. Never fails for an unreachable server: it connects lazily and
    /// reports itself degraded until the server answers.
    pub fn new(settings: &RedisSettings, metrics: Arc<Metrics>) -> Result<RedisStore, String> {
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
        let channels = super::watch::Channels {
            bumps: format!("{}:generations", settings.key_prefix),
            acks: format!("{}:generations:acks", settings.key_prefix),
        };
        let channel = channels.bumps.clone();
        let gauge = metrics.clone();
        let watch = super::watch::start(
            client.clone(),
            channels,
            settings.connect_timeout,
            settings.command_timeout,
            move |live| gauge.state().set_watch_up(live),
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
            scripts: Scripts {
                admit: Script::new(ADMIT),
                remaining: Script::new(REMAINING),
                pause: Script::new(PAUSE),
                claim: Script::new(CLAIM),
                settle: Script::new(SETTLE),
                l2_lookup: Script::new(L2_LOOKUP),
                l2_put: Script::new(L2_PUT),
                bump: Script::new(BUMP),
                generation: Script::new(GENERATION),
                generations: Script::new(GENERATIONS),
            },
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

    /// `prefix:{name}` with the key name as the hash tag (braces in a name would break the
    /// tag, so they are replaced).
    /// The Redis key of `key`'s generation of `scope` (also what the bump channel names).
    fn gen_key(&self, key: &str, scope: &str) -> String {
        format!("{}:gen:{scope}", self.tag(key))
    }

    fn tag(&self, key: &str) -> String {
        let clean: String = key
            .chars()
            .map(|c| if c == '{' || c == '}' { '_' } else { c })
            .collect();
        format!("{}:{{{clean}}}", self.prefix)
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
            self.metrics.state().set_up(ok);
            if ok {
                tracing::info!("state backend answers again: shared state in use");
            } else {
                tracing::warn!("state backend unreachable: degraded mode (private budget, keyed creates refused, recent local lists only)");
            }
        }
    }

    /// Runs one command under the breaker and the timeout.
    async fn run<T, F, Fut>(&self, op: &'static str, command: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let probing = {
            let mut down = lock(&self.down_until);
            match *down {
                Some(until) if Instant::now() < until => {
                    self.metrics
                        .state()
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
                self.metrics.state().command(op, elapsed, None);
                self.answered();
                return Ok(v);
            }
            Ok(Err(e)) => match fault(&e) {
                StateErrorKind::Script => {
                    self.metrics
                        .state()
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
        self.metrics.state().command(op, elapsed, Some(kind));
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

    fn idem_key(&self, id: &IdemId) -> String {
        format!(
            "{}:idem:{}",
            self.tag(&id.key),
            sha_hex(&[id.user.as_bytes(), id.idem.as_bytes()])
        )
    }
}

impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn health(&self) -> Health {
        if self.up.load(Ordering::Acquire) {
            Health::Up
        } else {
            Health::Degraded
        }
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn known_generation(&self, key: &str, scope: &str) -> Option<u64> {
        if !self.watch.is_live() {
            return None;
        }
        self.watch.known(&self.gen_key(key, scope))
    }

    fn admit<'a>(&'a self, ask: &'a BudgetAsk<'a>) -> StoreFuture<'a, Admit> {
        StoreFuture::pending(async move {
            let tag = self.tag(ask.key);
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let member = format!("{}:{id}", self.replica);
            let (user_key, ulimit) = match ask.user {
                Some((user, limit)) => (format!("{tag}:u:{}", sha_hex(&[user.as_bytes()])), limit),
                None => (format!("{tag}:u:-"), 0),
            };
            let seen = lock(&self.epochs).get(ask.key).cloned().unwrap_or_default();
            let mut inv = self.scripts.admit.prepare_invoke();
            inv.key(format!("{tag}:log"))
                .key(format!("{tag}:pause"))
                .key(&user_key)
                .key(format!("{tag}:epoch"))
                .key(format!("{tag}:closed"))
                .arg(ask.limit)
                .arg(ms(ask.window))
                .arg(&member)
                .arg(ulimit)
                .arg(&seen)
                .arg(EPOCH_TTL_MS);
            let v: Value = self
                .run("admit", |mut c| {
                    let inv = &inv;
                    async move { inv.invoke_async(&mut c).await }
                })
                .await?;
            let a = array(v);
            let epoch = a
                .get(2)
                .and_then(bytes)
                .and_then(|b| String::from_utf8(b).ok());
            if let Some(epoch) = epoch.filter(|e| *e != seen) {
                if !seen.is_empty() {
                    tracing::warn!(
                        upstream_key = ask.key,
                        "the state backend lost this key's budget history (restarted without persistence?): the shared budget stays closed for one window"
                    );
                }
                lock(&self.epochs).insert(ask.key.to_string(), epoch);
            }
            let code = a.first().and_then(int).unwrap_or(-1);
            let n = a.get(1).and_then(int).unwrap_or(0).max(0) as u64;
            let wait = Duration::from_millis(n.max(1));
            Ok(match code {
                0 => Admit::Admitted(Ticket {
                    key: Arc::from(ask.key),
                    user: ask.user.map(|(u, _)| Arc::from(u)),
                    id,
                }),
                1 => Admit::KeyFull { wait },
                2 => Admit::Paused { wait },
                3 => Admit::UserFull { wait },
                _ => return Err(StoreError::Unavailable),
            })
        })
    }

    fn refund<'a>(&'a self, ticket: &'a Ticket) -> StoreFuture<'a, ()> {
        StoreFuture::pending(async move {
            let tag = self.tag(&ticket.key);
            let member = format!("{}:{}", self.replica, ticket.id);
            let mut pipe = redis::pipe();
            pipe.cmd("ZREM").arg(format!("{tag}:log")).arg(&member);
            if let Some(user) = &ticket.user {
                pipe.cmd("ZREM")
                    .arg(format!("{tag}:u:{}", sha_hex(&[user.as_bytes()])))
                    .arg(&member);
            }
            let _: Value = self
                .run("refund", |mut c| {
                    let pipe = &pipe;
                    async move { pipe.query_async(&mut c).await }
                })
                .await?;
            Ok(())
        })
    }

    fn pause<'a>(&'a self, key: &'a str, pause: Duration) -> StoreFuture<'a, ()> {
        StoreFuture::pending(async move {
            let mut inv = self.scripts.pause.prepare_invoke();
            inv.key(format!("{}:pause", self.tag(key))).arg(ms(pause));
            let _: Value = self
                .run("pause", |mut c| {
                    let inv = &inv;
                    async move { inv.invoke_async(&mut c).await }
                })
                .await?;
            Ok(())
        })
    }

    fn remaining<'a>(&'a self, key: &'a str, limit: u32, window: Duration) -> StoreFuture<'a, u32> {
        StoreFuture::pending(async move {
            let tag = self.tag(key);
            let mut inv = self.scripts.remaining.prepare_invoke();
            inv.key(format!("{tag}:log"))
                .key(format!("{tag}:pause"))
                .arg(limit)
                .arg(ms(window));
            let v: Value = self
                .run("remaining", |mut c| {
                    let inv = &inv;
                    async move { inv.invoke_async(&mut c).await }
                })
                .await?;
            Ok(int(&v).unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32)
        })
    }

    fn claim<'a>(
        &'a self,
        id: &'a IdemId,
        fingerprint: &'a Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> StoreFuture<'a, Claim> {
        StoreFuture::pending(async move {
            let mut inv = self.scripts.claim.prepare_invoke();
            inv.key(self.idem_key(id))
                .arg(fingerprint.hex())
                .arg(ms(lease))
                .arg(ms(ttl));
            let v: Value = self
                .run("claim", |mut c| {
                    let inv = &inv;
                    async move { inv.invoke_async(&mut c).await }
                })
                .await?;
            let a = array(v);
            let tag = a.first().and_then(bytes).unwrap_or_default();
            Ok(match tag.as_slice() {
                b"proceed" => Claim::Proceed,
                b"mismatch" => Claim::Mismatch,
                b"inflight" => Claim::InFlight,
                b"done" => {
                    let status = a.get(1).and_then(int).unwrap_or(200);
                    let ctype = a
                        .get(2)
                        .and_then(bytes)
                        .and_then(|b| String::from_utf8(b).ok())
                        .filter(|s| !s.is_empty());
                    let body = a.get(3).and_then(bytes).unwrap_or_default();
                    Claim::Replay(StoredOutcome {
                        status: u16::try_from(status).unwrap_or(200),
                        content_type: ctype,
                        body: Bytes::from(body),
                    })
                }
                _ => Claim::Unknown,
            })
        })
    }

    fn settle<'a>(&'a self, id: &'a IdemId, how: Settle, ttl: Duration) -> StoreFuture<'a, ()> {
        StoreFuture::pending(async move {
            let mut inv = self.scripts.settle.prepare_invoke();
            inv.key(self.idem_key(id));
            match &how {
                Settle::Release => {
                    inv.arg("release");
                }
                Settle::Unknown => {
                    inv.arg("unknown");
                }
                Settle::Completed(o) => {
                    inv.arg("done")
                        .arg(ms(ttl))
                        .arg(o.status)
                        .arg(o.content_type.as_deref().unwrap_or(""))
                        .arg(o.body.as_ref());
                }
            }
            let _: Value = self
                .run("settle", |mut c| {
                    let inv = &inv;
                    async move { inv.invoke_async(&mut c).await }
                })
                .await?;
            Ok(())
        })
    }

    fn generation<'a>(&'a self, key: &'a str, scope: &'a str) -> StoreFuture<'a, u64> {
        StoreFuture::pending(async move {
            let gen_key = self.gen_key(key, scope);
            let mut inv = self.scripts.generation.prepare_invoke();
            inv.key(&gen_key).arg(GENERATION_TTL_MS);
            let epoch = self.watch.read_started();
            let v: Value = self
                .run("generation", |mut c| {
                    let inv = &inv;
                    async move { inv.invoke_async(&mut c).await }
                })
                .await?;
            let g = int(&v).unwrap_or(0).max(0) as u64;
            self.watch.learn(epoch, &gen_key, g);
            Ok(g)
        })
    }

    fn generations<'a>(&'a self, key: &'a str, scopes: &'a [&'a str]) -> StoreFuture<'a, Vec<u64>> {
        StoreFuture::pending(async move {
            let gen_keys: Vec<String> = scopes.iter().map(|s| self.gen_key(key, s)).collect();
            let mut inv = self.scripts.generations.prepare_invoke();
            for gen_key in &gen_keys {
                inv.key(gen_key);
            }
            inv.arg(GENERATION_TTL_MS);
            let epoch = self.watch.read_started();
            let v: Value = self
                .run("generations", |mut c| {
                    let inv = &inv;
                    async move { inv.invoke_async(&mut c).await }
                })
                .await?;
            let mut out: Vec<u64> = array(v)
                .iter()
                .map(|g| int(g).unwrap_or(0).max(0) as u64)
                .collect();
            out.resize(scopes.len(), 0);
            for (gen_key, g) in gen_keys.iter().zip(&out) {
                self.watch.learn(epoch, gen_key, *g);
            }
            Ok(out)
        })
    }

    fn bump<'a>(&'a self, key: &'a str, scopes: &'a [&'a str]) -> StoreFuture<'a, Vec<u64>> {
        StoreFuture::pending(async move {
            let gen_keys: Vec<String> = scopes.iter().map(|s| self.gen_key(key, s)).collect();
            let mut inv = self.scripts.bump.prepare_invoke();
            // Every scope of one key shares the key's hash slot: one script, one round trip.
            for gen_key in &gen_keys {
                inv.key(gen_key);
            }
            inv.arg(GENERATION_TTL_MS).arg(&self.channel);
            let epoch = self.watch.read_started();
            let v: Value = self
                .run("bump", |mut c| {
                    let inv = &inv;
                    async move { inv.invoke_async(&mut c).await }
                })
                .await?;
            let mut parts = array(v).into_iter();
            let numbers = |v: Option<Value>| -> Vec<u64> {
                v.map(array)
                    .unwrap_or_default()
                    .iter()
                    .map(|g| int(g).unwrap_or(0).max(0) as u64)
                    .collect()
            };
            let (out, receivers) = (numbers(parts.next()), numbers(parts.next()));
            for (gen_key, g) in gen_keys.iter().zip(&out) {
                self.watch.learn(epoch, gen_key, *g);
                self.watch.bumped_here(gen_key, *g);
            }
            // The write is answered once every replica that got the bump has applied it (the
            // ordering argument in `watch`).
            futures_util::future::join_all(
                gen_keys
                    .iter()
                    .zip(&out)
                    .zip(&receivers)
                    .map(|((gen_key, g), n)| self.watch.wait_for_acks(gen_key, *g, *n as usize)),
            )
            .await;
            Ok(out)
        })
    }

    fn l2_lookup<'a>(
        &'a self,
        key: &'a str,
        entry: &'a str,
        fresh_for: Duration,
        lock: Duration,
    ) -> StoreFuture<'a, L2Lookup> {
        StoreFuture::pending(async move {
            let tag = self.tag(key);
            let mut inv = self.scripts.l2_lookup.prepare_invoke();
            // `l2v2`: hashes of raw bytes. The earlier layout (`l2`, JSON strings) is never
            // read, so replicas of both versions side by side during a rolling deploy each see
            // only their own copies (and the older ones expire with their TTL).
            inv.key(format!("{tag}:l2v2:{entry}"))
                .key(format!("{tag}:lock:{entry}"))
                .arg(ms(lock))
                .arg(&self.replica)
                // Not `ms`: a freshness of zero (nothing is fresh) must stay zero.
                .arg(u64::try_from(fresh_for.as_millis()).unwrap_or(u64::MAX));
            let v: Value = self
                .run("l2_lookup", |mut c| {
                    let inv = &inv;
                    async move { inv.invoke_async(&mut c).await }
                })
                .await?;
            let a = array(v);
            let copy = match (a.get(1).and_then(bytes), a.get(2).and_then(int)) {
                (Some(value), Some(age)) => Some(L2Copy {
                    value: Bytes::from(value),
                    age: Duration::from_millis(age.max(0) as u64),
                }),
                _ => None,
            };
            Ok(match (a.first().and_then(int), copy) {
                (Some(1), Some(copy)) => L2Lookup::Fresh(copy),
                (Some(2), stale) => L2Lookup::Lead { stale },
                (_, stale) => L2Lookup::Busy { stale },
            })
        })
    }

    fn l2_put<'a>(
        &'a self,
        key: &'a str,
        entry: &'a str,
        value: Option<Bytes>,
        keep: Duration,
    ) -> StoreFuture<'a, ()> {
        StoreFuture::pending(async move {
            let tag = self.tag(key);
            let mut inv = self.scripts.l2_put.prepare_invoke();
            inv.key(format!("{tag}:l2v2:{entry}"))
                .key(format!("{tag}:lock:{entry}"));
            match &value {
                Some(v) => inv.arg(ms(keep).max(1)).arg(v.as_ref()),
                None => inv.arg("").arg(""),
            };
            inv.arg(&self.replica);
            let _: Value = self
                .run("l2_put", |mut c| {
                    let inv = &inv;
                    async move { inv.invoke_async(&mut c).await }
                })
                .await?;
            Ok(())
        })
    }
}
