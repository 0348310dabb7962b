//! The Lua scripts: every decision that must be atomic is one script, reading the server's
//! own clock (`TIME`), so replicas' clocks never matter.

use redis::Script;

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
/// {'done', status, content_type, body[, age]}. An in-flight record whose lease ran out belongs
/// to a sender that died: it becomes unknown, never free. `age` (ms) comes with a record that
/// was settled in the same step as its write's generation bump ([`SETTLE_BUMP`]): how long
/// ago that bump was published.
const CLAIM: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r = redis.call('HMGET', KEYS[1], 'state', 'fp', 'lease', 'status', 'ctype', 'body', 'at')
if not r[1] then
  redis.call('HSET', KEYS[1], 'state', 'inflight', 'fp', ARGV[1], 'lease', now + tonumber(ARGV[2]))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'proceed'}
end
if r[2] ~= ARGV[1] then return {'mismatch'} end
if r[1] == 'done' then
  if r[7] then return {'done', r[4], r[5] or '', r[6] or '', now - tonumber(r[7])} end
  return {'done', r[4], r[5] or '', r[6] or ''}
end
if r[1] == 'inflight' then
  if tonumber(r[3]) > now then return {'inflight'} end
  redis.call('HSET', KEYS[1], 'state', 'unknown')
  return {'unknown'}
end
return {'unknown'}
";

/// `settle(key, how, ttl, status, ctype, body, at)`: ends a record; `how` = done | unknown |
/// release. `at` (the server's clock in ms, or nil) stamps a completed record settled with its
/// generation bump (see [`CLAIM`]). A Lua function, shared by [`SETTLE`] and [`SETTLE_BUMP`].
const SETTLE_FN: &str = r"
local function settle(key, how, ttl, status, ctype, body, at)
  if redis.call('EXISTS', key) == 0 then return 0 end
  if how == 'release' then
    if redis.call('HGET', key, 'state') == 'inflight' then redis.call('DEL', key) end
    return 1
  end
  if how == 'unknown' then
    redis.call('HSET', key, 'state', 'unknown')
    return 1
  end
  if at then
    redis.call('HSET', key, 'state', 'done', 'status', status, 'ctype', ctype, 'body', body, 'at', at)
  else
    redis.call('HSET', key, 'state', 'done', 'status', status, 'ctype', ctype, 'body', body)
  end
  if redis.call('PTTL', key) < tonumber(ttl) then redis.call('PEXPIRE', key, ttl) end
  return 1
end
";

/// Settles a record: ARGV = how, ttl, status, content type, body (the last four for `done`).
const SETTLE: &str = r"
return settle(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], nil)
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

/// `bump(keys, ttl, channel, t)`: increments each generation key, returns {values, receivers};
/// `t` is the server's `TIME` if the caller read it already (else nil).
/// A generation that does not exist (first use, expiry, or a server that lost its data)
/// starts from the server's clock in microseconds, so it is never a value any replica cached
/// a read under before. A Lua function, shared by [`BUMP`] and [`SETTLE_BUMP`].
const BUMP_FN: &str = r"
local function bump(keys, ttl, channel, t)
  t = t or redis.call('TIME')
  local out = {}
  local receivers = {}
  for i, key in ipairs(keys) do
    if redis.call('EXISTS', key) == 0 then
      redis.call('SET', key, tonumber(t[1]) * 1000000 + tonumber(t[2]))
    end
    out[i] = redis.call('INCR', key)
    redis.call('PEXPIRE', key, ttl)
    -- In the same atomic step: every replica's watch learns it (see `watch`), and the caller
    -- learns how many must acknowledge it. `%d`: concatenating the number would print it as
    -- a float past 14 digits.
    receivers[i] = redis.call('PUBLISH', channel, key .. ' ' .. string.format('%d', out[i]))
  end
  return {out, receivers}
end
";

/// Bumps the generations KEYS: ARGV = their TTL, the bump channel.
const BUMP: &str = r"
return bump(KEYS, ARGV[1], ARGV[2], nil)
";

/// An accepted keyed write's two steps in one: settles the record KEYS[1] (as [`SETTLE`],
/// stamped with the server's clock) and bumps the generations KEYS[2..] (as [`BUMP`]).
/// ARGV = the bump's TTL and channel, then the settle's how, ttl, status, content type, body.
/// The record and the generations are one upstream key's: one hash slot.
const SETTLE_BUMP: &str = r"
local gens = {}
for i = 2, #KEYS do gens[i - 1] = KEYS[i] end
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
settle(KEYS[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], at)
return bump(gens, ARGV[1], ARGV[2], t)
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

/// The scripts, each loaded once per process (`EVALSHA`, reloaded on `NOSCRIPT`).
pub(super) struct Scripts {
    pub(super) admit: Script,
    pub(super) remaining: Script,
    pub(super) pause: Script,
    pub(super) claim: Script,
    pub(super) settle: Script,
    pub(super) l2_lookup: Script,
    pub(super) l2_put: Script,
    pub(super) bump: Script,
    pub(super) settle_bump: Script,
    pub(super) generation: Script,
    pub(super) generations: Script,
}

impl Scripts {
    /// Every script, ready to be sent (by `EVALSHA`, loaded on first use).
    pub(super) fn load() -> Scripts {
        Scripts {
            admit: Script::new(ADMIT),
            remaining: Script::new(REMAINING),
            pause: Script::new(PAUSE),
            claim: Script::new(CLAIM),
            settle: Script::new(&format!("{SETTLE_FN}{SETTLE}")),
            l2_lookup: Script::new(L2_LOOKUP),
            l2_put: Script::new(L2_PUT),
            bump: Script::new(&format!("{BUMP_FN}{BUMP}")),
            settle_bump: Script::new(&format!("{SETTLE_FN}{BUMP_FN}{SETTLE_BUMP}")),
            generation: Script::new(GENERATION),
            generations: Script::new(GENERATIONS),
        }
    }
}
