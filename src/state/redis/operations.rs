//! The store's operations on Redis: each one script (or one pipeline), one round trip, and
//! its reply read back.

use super::connection::RedisStore;
use super::keys::sha_hex;
use crate::lock;
use crate::state::answer::{StoreError, StoreFuture};
use crate::state::budget::{Admit, BudgetAsk, Ticket};
use crate::state::idempotency::{Claim, Fingerprint, IdemId, Settle, StoredOutcome};
use crate::state::l2::{L2Copy, L2Lookup};
use crate::state::store::{Health, Store};
use crate::state::watch::ACK_WAIT;
use bytes::Bytes;
use redis::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A generation counter lives this long after its last bump (it restarts from the clock).
const GENERATION_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
/// A key's budget epoch lives this long after its last admission.
const EPOCH_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

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

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        other => vec![other],
    }
}

/// A settle's arguments (see the `settle` Lua function): how, then for a completed record its
/// TTL and outcome.
fn settle_args(inv: &mut redis::ScriptInvocation<'_>, how: &Settle, ttl: Duration) {
    match how {
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
}

impl RedisStore {
    /// What a bump script answered ({values, receivers} for `gen_keys`, run in `epoch`):
    /// learned, marked as this replica's own, and returned once every replica that got it
    /// has acknowledged it (the ordering argument in `watch`).
    async fn bumped(&self, epoch: Option<u64>, gen_keys: &[String], v: Value) -> Vec<u64> {
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
        // The write is answered once every replica that got the bump has applied it.
        futures_util::future::join_all(
            gen_keys
                .iter()
                .zip(&out)
                .zip(&receivers)
                .map(|((gen_key, g), n)| self.watch.wait_for_acks(gen_key, *g, *n as usize)),
        )
        .await;
        out
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
                    // A record settled in the same step as its write's generation bump is
                    // visible before the write's replica has heard every acknowledgement of
                    // that bump (see `watch`). Its replay waits until `ACK_WAIT` after the
                    // bump's publication (`age`, on the server's clock), as that replica's
                    // answer would at worst: by then every replica has applied the bump or
                    // stopped trusting what it knew, so a list after the replayed answer is
                    // never one from before the write, on any replica. Only a repeat within
                    // that window waits; a later one is replayed at once.
                    if let Some(age) = a.get(4).and_then(int) {
                        let age = Duration::from_millis(age.max(0) as u64);
                        if let Some(left) = ACK_WAIT.checked_sub(age) {
                            tokio::time::sleep(left).await;
                        }
                    }
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
            settle_args(&mut inv, &how, ttl);
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
            Ok(self.bumped(epoch, &gen_keys, v).await)
        })
    }

    fn settle_and_bump<'a>(
        &'a self,
        id: &'a IdemId,
        how: Settle,
        ttl: Duration,
        key: &'a str,
        scopes: &'a [&'a str],
    ) -> StoreFuture<'a, Vec<u64>> {
        StoreFuture::pending(async move {
            let gen_keys: Vec<String> = scopes.iter().map(|s| self.gen_key(key, s)).collect();
            let mut inv = self.scripts.settle_bump.prepare_invoke();
            // The record and the generations are all the upstream key's (`id.key` is `key`):
            // one hash slot, one script, one round trip.
            inv.key(self.idem_key(id));
            for gen_key in &gen_keys {
                inv.key(gen_key);
            }
            inv.arg(GENERATION_TTL_MS).arg(&self.channel);
            settle_args(&mut inv, &how, ttl);
            let epoch = self.watch.read_started();
            let v: Value = self
                .run("settle_bump", |mut c| {
                    let inv = &inv;
                    async move { inv.invoke_async(&mut c).await }
                })
                .await?;
            Ok(self.bumped(epoch, &gen_keys, v).await)
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
