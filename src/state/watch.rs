//! Generations learned without asking: every replica subscribes to the channel on which the
//! bump script publishes each new generation, so a cache hit can trust the generation it
//! knows instead of reading it from Redis on every request.
//!
//! **Why a list from before a write is never served** (the ordering argument):
//! 1. A generation is known here only while the subscription is live, and only from (a) a
//!    read of the generation that started and ended within one live subscription, or (b) a
//!    message on the channel. Known values only ever grow (`max`): generations are counters
//!    that every bump increments.
//! 2. The bump script increments the counter and `PUBLISH`es the new value in one atomic
//!    script execution, and returns how many subscribers the message reached.
//! 3. Every replica that applies a bump to what it knows then acknowledges it on a second
//!    channel. The replica that bumped answers its write only once every subscriber counted
//!    in (2) has acknowledged (its own included), or once [`ACK_WAIT`] has passed.
//! 4. A subscription is trusted only while it was heard from (a message, or a `PING`'s pong,
//!    which Redis sends after every message published before it, and which is taken only
//!    after those messages are applied) within [`SILENCE`]. So a replica that has not
//!    applied a bump within `ACK_WAIT` > `SILENCE` of its publication has stopped trusting
//!    what it knows by then, and reads generations from Redis again.
//! 5. A read that overlaps a bump either sees the new value, or sees the old one while the
//!    message is in flight; with (1)'s `max`, either order ends at the new value. A
//!    subscription that drops clears everything known; nothing is trusted until a new one is
//!    confirmed (messages published meanwhile were lost).
//!
//! So when a client has a 201 from replica A, every replica either knows the new generation
//! or trusts nothing it knew: a list on B at once is never one from before the write
//! (`tests/replicas.rs`: 1,000 rounds of "create on A, list at once on B" under load; without
//! the acknowledgements, 8 of 1,000 lists on B were from before the create).
//!
//! A replayed answer keeps the same promise. An accepted keyed write settles its idempotency
//! record in the bump's own script (one round trip), so the stored outcome is visible to a
//! repeat on any replica before the writer has heard the acknowledgements; a replay of it
//! waits until [`ACK_WAIT`] after the bump's publication (the age the claim script reads on
//! the server's clock), the writer's own worst case, by when (4) holds everywhere.
//!
//! One window remains, and it is bounded: a subscription the *server* closes (`CLIENT KILL`,
//! a restart, its output-buffer limit) is no longer counted among the receivers at once,
//! while its replica trusts what it knows until it reads the close (the FIN, then one task
//! hop: microseconds on a live replica). A partition, which closes nothing, is covered by
//! (3) and (4): the server still counts the subscriber, which does not acknowledge.
//! The price is on writes only: the acknowledgements' round trip through Redis (well under a
//! millisecond on a LAN), and `ACK_WAIT` in the rare case of a replica too starved to
//! acknowledge. Hits ask Redis nothing.

use crate::lock;
use futures_util::{FutureExt as _, StreamExt as _};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How often the subscription is pinged.
pub const HEARTBEAT: Duration = Duration::from_millis(250);
/// A subscription not heard from for this long (no message, no pong) is not trusted.
pub const SILENCE: Duration = Duration::from_millis(1000);
/// Wait between subscription attempts.
const RETRY: Duration = Duration::from_millis(250);
/// How long a write waits for every replica's acknowledgement of its bump: past
/// [`SILENCE`] (with a margin for delivery), a replica that has not applied it has stopped
/// trusting what it knows anyway.
pub const ACK_WAIT: Duration = Duration::from_millis(1200);
/// Acknowledgements nobody waited for are forgotten after this...
const ACK_KEEP: Duration = Duration::from_secs(5);
/// ...once more than this many are held.
const ACK_SLOTS: usize = 1024;

/// One bump's acknowledgements.
#[derive(Debug)]
struct AckSlot {
    count: usize,
    /// When the first was seen (or the wait began).
    at: Instant,
    /// The write waiting for them, if any.
    waiter: Option<Arc<tokio::sync::Notify>>,
}

impl AckSlot {
    fn new() -> AckSlot {
        AckSlot {
            count: 0,
            at: Instant::now(),
            waiter: None,
        }
    }
}

/// The generations this replica knows from the channel.
#[derive(Debug)]
pub struct GenerationWatch {
    live: AtomicBool,
    /// Bumped whenever the subscription starts or ends: a read that saw it change learns
    /// nothing.
    epoch: AtomicU64,
    /// When the subscription was last heard from (a message or a pong), in ms since `start`.
    heard: AtomicU64,
    start: Instant,
    /// Generation key → value.
    known: Mutex<HashMap<String, u64>>,
    /// Acknowledgements received, and the write waiting for them, per (generation key,
    /// value).
    acks: Mutex<HashMap<(String, u64), AckSlot>>,
    /// Acknowledgements to send, in order (the subscriber task only queues them).
    outbox: tokio::sync::mpsc::UnboundedSender<String>,
    /// Bumps this replica made (and when), whose messages acknowledge themselves here.
    own: Mutex<HashMap<(String, u64), Instant>>,
    /// When `acks` and `own` were last pruned (ms since `start`): at most once per
    /// [`PRUNE_EVERY`], since a prune walks the whole map (every call would be quadratic
    /// under a burst of creates).
    acks_pruned: AtomicU64,
    own_pruned: AtomicU64,
}

/// The least time between two prunes of one map.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

impl GenerationWatch {
    fn new(outbox: tokio::sync::mpsc::UnboundedSender<String>) -> GenerationWatch {
        GenerationWatch {
            live: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            heard: AtomicU64::new(0),
            start: Instant::now(),
            known: Mutex::new(HashMap::new()),
            acks: Mutex::new(HashMap::new()),
            outbox,
            own: Mutex::new(HashMap::new()),
            acks_pruned: AtomicU64::new(0),
            own_pruned: AtomicU64::new(0),
        }
    }

    /// Waits until `receivers` replicas have acknowledged `value` for `gen_key`, or
    /// [`ACK_WAIT`]: see the module's ordering argument. True if all did.
    pub async fn wait_for_acks(&self, gen_key: &str, value: u64, receivers: usize) -> bool {
        let deadline = Instant::now() + ACK_WAIT;
        let slot = (gen_key.to_string(), value);
        loop {
            // One waiter per bump, woken only by that bump's acknowledgements (a permit is
            // kept if one comes before the wait starts).
            let waiter = {
                let mut acks = lock(&self.acks);
                let entry = acks.entry(slot.clone()).or_insert_with(AckSlot::new);
                if entry.count >= receivers {
                    acks.remove(&slot);
                    return true;
                }
                entry
                    .waiter
                    .get_or_insert_with(|| Arc::new(tokio::sync::Notify::new()))
                    .clone()
            };
            if tokio::time::timeout_at(deadline, waiter.notified())
                .await
                .is_err()
            {
                lock(&self.acks).remove(&slot);
                return false;
            }
        }
    }

    /// An acknowledgement: `<generation key> <value>`.
    fn acknowledged(&self, payload: &[u8]) {
        let Some((key, value)) = parse(payload) else {
            return;
        };
        self.count_ack(key, value);
    }

    fn count_ack(&self, key: &str, value: u64) {
        let mut acks = lock(&self.acks);
        if acks.len() > ACK_SLOTS && self.prune_due(&self.acks_pruned) {
            // Acknowledgements nobody waited for (another replica's bumps seen here too).
            let now = Instant::now();
            acks.retain(|_, slot| now.saturating_duration_since(slot.at) < ACK_KEEP);
        }
        let slot = acks
            .entry((key.to_string(), value))
            .or_insert_with(AckSlot::new);
        slot.count += 1;
        if let Some(waiter) = &slot.waiter {
            waiter.notify_one();
        }
    }

    /// Whether the subscription is live and was heard from recently.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire) && {
            let heard = Duration::from_millis(self.heard.load(Ordering::Acquire));
            self.start.elapsed().saturating_sub(heard) < SILENCE
        }
    }

    /// The generation of `gen_key`, if known while live.
    pub fn known(&self, gen_key: &str) -> Option<u64> {
        if !self.is_live() {
            return None;
        }
        lock(&self.known).get(gen_key).copied()
    }

    /// The epoch a read starts in, if the subscription is live (else the read learns
    /// nothing).
    pub fn read_started(&self) -> Option<u64> {
        self.live
            .load(Ordering::Acquire)
            .then(|| self.epoch.load(Ordering::Acquire))
    }

    /// Learns `value` for `gen_key`, read in `epoch`, if the subscription lasted the whole
    /// read.
    pub fn learn(&self, epoch: Option<u64>, gen_key: &str, value: u64) {
        let Some(epoch) = epoch else { return };
        let mut known = lock(&self.known);
        // Checked under the lock `down` clears under: nothing learned survives a gap.
        if self.live.load(Ordering::Acquire) && self.epoch.load(Ordering::Acquire) == epoch {
            raise(&mut known, gen_key, value);
        }
    }

    /// Whether a prune of the map whose last prune `last` records is due (and claims it).
    fn prune_due(&self, last: &AtomicU64) -> bool {
        let now = self.start.elapsed().as_millis() as u64;
        let then = last.load(Ordering::Acquire);
        now.saturating_sub(then) >= PRUNE_EVERY.as_millis() as u64
            && last
                .compare_exchange(then, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    fn heard_now(&self) {
        self.heard
            .store(self.start.elapsed().as_millis() as u64, Ordering::Release);
    }

    fn up(&self) {
        let mut known = lock(&self.known);
        known.clear();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.heard_now();
        self.live.store(true, Ordering::Release);
    }

    fn down(&self) {
        let mut known = lock(&self.known);
        self.live.store(false, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        known.clear();
    }

    /// A bump: `<generation key> <value>`. Applied, then acknowledged.
    fn apply(&self, payload: &[u8]) {
        self.heard_now();
        let Some((key, value)) = parse(payload) else {
            return;
        };
        {
            let mut known = lock(&self.known);
            if self.live.load(Ordering::Acquire) {
                // Known or not: a bump is news for every replica holding that key's lists.
                raise(&mut known, key, value);
            }
        }
        // This replica's own bump: the message reaching it is its acknowledgement, and
        // nobody else waits for one.
        let own = lock(&self.own).remove(&(key.to_string(), value)).is_some();
        if own {
            self.count_ack(key, value);
        } else {
            let _ = self.outbox.send(format!("{key} {value}"));
        }
    }

    /// Marks `value` of `gen_key` as bumped by this replica (before waiting for its acks).
    pub fn bumped_here(&self, gen_key: &str, value: u64) {
        let now = Instant::now();
        let mut own = lock(&self.own);
        if own.len() > ACK_SLOTS && self.prune_due(&self.own_pruned) {
            // Bumps whose message came before this mark (acknowledged through Redis).
            own.retain(|_, at| now.saturating_duration_since(*at) < ACK_KEEP);
        }
        own.insert((gen_key.to_string(), value), now);
    }
}

/// Records `value` for `gen_key` unless a higher one is known: generations only grow.
fn raise(known: &mut HashMap<String, u64>, gen_key: &str, value: u64) {
    let slot = known.entry(gen_key.to_string()).or_insert(value);
    *slot = (*slot).max(value);
}

fn parse(payload: &[u8]) -> Option<(&str, u64)> {
    let (key, value) = std::str::from_utf8(payload).ok()?.rsplit_once(' ')?;
    Some((key, value.parse().ok()?))
}

/// The two channels of a key prefix.
#[derive(Debug, Clone)]
pub struct Channels {
    /// New generations, published by the bump script.
    pub bumps: String,
    /// Acknowledgements of applied bumps.
    pub acks: String,
}

/// Starts watching `channels` on `client` in the background (for as long as the returned
/// watch is held), with `connect_timeout` to connect and `command_timeout` for a ping;
/// acknowledgements go out on a connection of their own.
pub fn start(
    client: redis::Client,
    channels: Channels,
    connect_timeout: Duration,
    command_timeout: Duration,
    on_change: impl Fn(bool) + Send + 'static,
) -> Arc<GenerationWatch> {
    let (outbox, mut pending) = tokio::sync::mpsc::unbounded_channel::<String>();
    let watch = Arc::new(GenerationWatch::new(outbox));
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let weak = Arc::downgrade(&watch);
        let acks = channels.acks.clone();
        let publisher_client = client.clone();
        runtime.spawn(async move {
            // Ends when the watch (which holds the sender) is dropped. A connection that
            // failed is replaced on the next acknowledgement, never kept broken.
            let mut conn: Option<redis::aio::MultiplexedConnection> = None;
            let mut batch = Vec::new();
            while pending.recv_many(&mut batch, 256).await > 0 {
                if conn.is_none() {
                    let connect = publisher_client.get_multiplexed_async_connection();
                    conn = tokio::time::timeout(connect_timeout, connect)
                        .await
                        .ok()
                        .and_then(Result::ok);
                }
                let Some(c) = conn.as_mut() else {
                    batch.clear();
                    continue;
                };
                // Whatever queued meanwhile goes out in one pipeline: one round trip.
                let mut pipe = redis::pipe();
                for ack in batch.drain(..) {
                    pipe.cmd("PUBLISH").arg(&acks).arg(ack).ignore();
                }
                let sent = pipe.query_async::<()>(c);
                if !matches!(tokio::time::timeout(ACK_WAIT, sent).await, Ok(Ok(()))) {
                    conn = None;
                }
            }
        });
        runtime.spawn(run(
            client,
            channels,
            weak,
            connect_timeout,
            command_timeout.max(Duration::from_millis(100)),
            on_change,
        ));
    }
    watch
}

async fn run(
    client: redis::Client,
    channels: Channels,
    weak: Weak<GenerationWatch>,
    connect_timeout: Duration,
    ping_timeout: Duration,
    on_change: impl Fn(bool),
) {
    loop {
        if weak.strong_count() == 0 {
            return;
        }
        if let Ok(Ok(pubsub)) =
            tokio::time::timeout(connect_timeout, client.get_async_pubsub()).await
        {
            let (mut sink, mut stream) = pubsub.split();
            let subscribed = tokio::time::timeout(
                connect_timeout + ping_timeout,
                sink.subscribe(&[&channels.bumps, &channels.acks]),
            )
            .await;
            if let (Ok(Ok(())), Some(watch)) = (subscribed, weak.upgrade()) {
                watch.up();
                on_change(true);
                drop(watch);
                let mut tick = tokio::time::interval(HEARTBEAT);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        message = stream.next() => {
                            let (Some(message), Some(watch)) = (message, weak.upgrade()) else {
                                break;
                            };
                            dispatch(&watch, &channels, &message);
                        }
                        _ = tick.tick() => {
                            let pong = tokio::time::timeout(
                                ping_timeout,
                                sink.ping::<redis::Value>(),
                            )
                            .await;
                            let (Ok(Ok(_)), Some(watch)) = (pong, weak.upgrade()) else {
                                break;
                            };
                            // Every message published before the pong came before it: apply
                            // those first, or the pong would vouch for bumps not yet known.
                            while let Some(Some(message)) = stream.next().now_or_never() {
                                dispatch(&watch, &channels, &message);
                            }
                            watch.heard_now();
                        }
                    }
                }
                if let Some(watch) = weak.upgrade() {
                    watch.down();
                    on_change(false);
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

fn dispatch(watch: &GenerationWatch, channels: &Channels, message: &redis::Msg) {
    if message.get_channel_name() == channels.acks {
        watch.acknowledged(message.get_payload_bytes());
    } else {
        watch.apply(message.get_payload_bytes());
    }
}
