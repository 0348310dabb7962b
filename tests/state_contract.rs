//! The state store's contract, run against both backends: the in-process store and the Redis
//! store on a real `redis-server`. The layers rely on exactly these behaviours, whichever
//! backend answers.

mod common;

use bytes::Bytes;
use common::redis::RedisServer;
use journeybee_gateway::metrics::Metrics;
use journeybee_gateway::state::memory::MemoryStore;
use journeybee_gateway::state::metrics::StateMetrics;
use journeybee_gateway::state::redis::{RedisSettings, RedisStore, BREAKER_THRESHOLD};
use journeybee_gateway::state::watch::ACK_WAIT;
use journeybee_gateway::state::{
    Admit, BudgetAsk, Claim, Fingerprint, Health, IdemId, L2Lookup, Settle, Store, StoreError,
    StoredOutcome,
};
use std::sync::Arc;
use std::time::Duration;

const WINDOW: Duration = Duration::from_secs(61);

fn ask<'a>(key: &'a str, limit: u32, user: Option<(&'a str, u32)>) -> BudgetAsk<'a> {
    BudgetAsk {
        key,
        limit,
        window: WINDOW,
        user,
    }
}

fn idem(key: &str, user: &str, idem: &str) -> IdemId {
    IdemId {
        key: Arc::from(key),
        user: Arc::from(user),
        idem: idem.to_string(),
    }
}

fn outcome(body: &str) -> StoredOutcome {
    StoredOutcome {
        status: 201,
        content_type: Some("application/json".into()),
        body: Bytes::from(body.to_string()),
    }
}

/// Every behaviour of the contract, against one store.
async fn contract(store: &dyn Store) {
    // Budget: exactly `limit` admissions, then the wait until the oldest leaves.
    let mut tickets = Vec::new();
    for _ in 0..3 {
        match store.admit(&ask("k1", 3, None)).await.unwrap() {
            Admit::Admitted(t) => tickets.push(t),
            other => panic!("expected an admission, got {other:?}"),
        }
    }
    match store.admit(&ask("k1", 3, None)).await.unwrap() {
        Admit::KeyFull { wait } => {
            assert!(wait > Duration::from_secs(55) && wait <= WINDOW, "{wait:?}")
        }
        other => panic!("expected a full key, got {other:?}"),
    }
    assert_eq!(store.remaining("k1", 3, WINDOW).await.unwrap(), 0);
    // Only admitted requests count: the refusals above took nothing.
    // A refund gives the slot back.
    store.refund(&tickets.pop().unwrap()).await.unwrap();
    assert_eq!(store.remaining("k1", 3, WINDOW).await.unwrap(), 1);
    assert!(matches!(
        store.admit(&ask("k1", 3, None)).await.unwrap(),
        Admit::Admitted(_)
    ));
    // Keys are independent.
    assert_eq!(store.remaining("k2", 3, WINDOW).await.unwrap(), 3);

    // The user's share is checked in the same step, and a refused share takes nothing from
    // the key.
    assert!(matches!(
        store.admit(&ask("k3", 10, Some(("ann", 1)))).await.unwrap(),
        Admit::Admitted(_)
    ));
    assert!(matches!(
        store.admit(&ask("k3", 10, Some(("ann", 1)))).await.unwrap(),
        Admit::UserFull { .. }
    ));
    assert_eq!(store.remaining("k3", 10, WINDOW).await.unwrap(), 9);
    assert!(matches!(
        store.admit(&ask("k3", 10, Some(("ben", 1)))).await.unwrap(),
        Admit::Admitted(_)
    ));

    // A pause refuses everything on the key until it ends, and only ever extends.
    store.pause("k4", Duration::from_secs(30)).await.unwrap();
    store.pause("k4", Duration::from_secs(1)).await.unwrap();
    match store.admit(&ask("k4", 10, None)).await.unwrap() {
        Admit::Paused { wait } => assert!(wait > Duration::from_secs(25), "{wait:?}"),
        other => panic!("expected a pause, got {other:?}"),
    }
    assert_eq!(store.remaining("k4", 10, WINDOW).await.unwrap(), 0);

    // Idempotency: claim, in flight, completed, replay, mismatch.
    let ttl = Duration::from_secs(3600);
    let lease = Duration::from_secs(60);
    let id = idem("k1", "ann", "key-1");
    let fp = Fingerprint::of(b"/api/v1/partnerships\0{}");
    let other = Fingerprint::of(b"/api/v1/partnerships\0{\"x\":1}");
    assert_eq!(
        store.claim(&id, &fp, lease, ttl).await.unwrap(),
        Claim::Proceed
    );
    assert_eq!(
        store.claim(&id, &fp, lease, ttl).await.unwrap(),
        Claim::InFlight
    );
    assert_eq!(
        store.claim(&id, &other, lease, ttl).await.unwrap(),
        Claim::Mismatch
    );
    store
        .settle(&id, Settle::Completed(outcome("{\"id\":7}")), ttl)
        .await
        .unwrap();
    assert_eq!(
        store.claim(&id, &fp, lease, ttl).await.unwrap(),
        Claim::Replay(outcome("{\"id\":7}"))
    );
    assert_eq!(
        store.claim(&id, &other, lease, ttl).await.unwrap(),
        Claim::Mismatch
    );
    // Scoped to (key, user): another user's same key is a new record.
    let bens = idem("k1", "ben", "key-1");
    assert_eq!(
        store.claim(&bens, &fp, lease, ttl).await.unwrap(),
        Claim::Proceed
    );
    // Released (never sent): free again.
    store.settle(&bens, Settle::Release, ttl).await.unwrap();
    assert_eq!(
        store.claim(&bens, &fp, lease, ttl).await.unwrap(),
        Claim::Proceed
    );
    // Unknown: never free again.
    store.settle(&bens, Settle::Unknown, ttl).await.unwrap();
    assert_eq!(
        store.claim(&bens, &fp, lease, ttl).await.unwrap(),
        Claim::Unknown
    );
    store.settle(&bens, Settle::Release, ttl).await.unwrap();
    assert_eq!(
        store.claim(&bens, &fp, lease, ttl).await.unwrap(),
        Claim::Unknown
    );
    // A sender that died: its lease runs out and the record reads unknown, never free.
    let dead = idem("k1", "cat", "key-2");
    let short = Duration::from_millis(30);
    assert_eq!(
        store.claim(&dead, &fp, short, ttl).await.unwrap(),
        Claim::Proceed
    );
    let mut claim = store.claim(&dead, &fp, short, ttl).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while claim == Claim::InFlight && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        claim = store.claim(&dead, &fp, short, ttl).await.unwrap();
    }
    assert_eq!(claim, Claim::Unknown);

    // Generations only go up, per key.
    let g0 = store.generation("k1", "partnerships").await.unwrap();
    let g1 = store.bump("k1", &["partnerships"]).await.unwrap()[0];
    assert!(g1 > g0);
    assert_eq!(store.generation("k1", "partnerships").await.unwrap(), g1);
    // Per scope and per key: another counter, stable until bumped. (Redis starts a missing
    // counter from its clock, so a counter lost with the server's data never repeats a value.)
    let tags = store.generation("k1", "tags").await.unwrap();
    assert_ne!(tags, g1);
    assert_eq!(store.generation("k1", "tags").await.unwrap(), tags);
    let other = store.generation("k9", "partnerships").await.unwrap();
    assert_eq!(store.generation("k9", "partnerships").await.unwrap(), other);
    assert!(store.bump("k9", &["partnerships"]).await.unwrap()[0] > other);
    // Several scopes of one key in one step, each moving on.
    let both = store.bump("k1", &["partnerships", "tags"]).await.unwrap();
    assert_eq!(both.len(), 2);
    assert!(both[0] > g1 && both[1] > tags);
    // Read together, the same values as one by one (a scope never seen included).
    let read = store
        .generations("k1", &["tags", "partnerships", "categories"])
        .await
        .unwrap();
    assert_eq!(read[..2], [both[1], both[0]]);
    assert_eq!(read[2], store.generation("k1", "categories").await.unwrap());

    // An accepted keyed write: its record settled and its generations bumped in one step,
    // each exactly as the two operations would.
    let keyed = idem("k1", "dan", "key-3");
    assert_eq!(
        store.claim(&keyed, &fp, lease, ttl).await.unwrap(),
        Claim::Proceed
    );
    let bumped = store
        .settle_and_bump(
            &keyed,
            Settle::Completed(outcome("{\"id\":8}")),
            ttl,
            "k1",
            &["partnerships", "tags"],
        )
        .await
        .unwrap();
    assert_eq!(bumped.len(), 2);
    assert!(bumped[0] > both[0] && bumped[1] > both[1], "{bumped:?}");
    assert_eq!(
        store
            .generations("k1", &["partnerships", "tags"])
            .await
            .unwrap(),
        bumped
    );
    assert_eq!(
        store.claim(&keyed, &fp, lease, ttl).await.unwrap(),
        Claim::Replay(outcome("{\"id\":8}"))
    );
    let elsewhere = Fingerprint::of(b"/api/v1/partnerships\0{\"x\":2}");
    assert_eq!(
        store.claim(&keyed, &elsewhere, lease, ttl).await.unwrap(),
        Claim::Mismatch
    );
    // Any settlement rides along: a release frees the key.
    let freed = idem("k1", "dan", "key-4");
    assert_eq!(
        store.claim(&freed, &fp, lease, ttl).await.unwrap(),
        Claim::Proceed
    );
    let again = store
        .settle_and_bump(&freed, Settle::Release, ttl, "k1", &["partnerships"])
        .await
        .unwrap();
    assert!(again[0] > bumped[0]);
    assert_eq!(
        store.claim(&freed, &fp, lease, ttl).await.unwrap(),
        Claim::Proceed
    );
}

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    let store = MemoryStore::new(1 << 20);
    assert_eq!(store.backend(), "memory");
    assert_eq!(store.health(), Health::Up);
    contract(&store).await;
    // One process: the local cache is the only level.
    assert_eq!(
        store
            .l2_lookup("k1", "e", Duration::from_secs(1), Duration::from_secs(1))
            .await
            .unwrap(),
        L2Lookup::Lead { stale: None }
    );
}

/// The command timeout of the stores these tests make.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(200);

fn redis_store(server: &RedisServer, prefix: &str) -> RedisStore {
    redis_store_with(server, prefix, Metrics::new().state.clone())
}

fn redis_store_with(server: &RedisServer, prefix: &str, metrics: Arc<StateMetrics>) -> RedisStore {
    RedisStore::new(
        &RedisSettings {
            url: server.url(),
            connect_timeout: Duration::from_millis(500),
            command_timeout: COMMAND_TIMEOUT,
            key_prefix: prefix.into(),
        },
        metrics,
    )
    .unwrap()
}

/// `jbgw_state_errors_total{op, kind}` as rendered now.
fn state_errors(metrics: &Metrics, op: &str, kind: &str) -> u64 {
    let text = String::from_utf8(metrics.render()).unwrap();
    let (op, kind) = (format!("op=\"{op}\""), format!("kind=\"{kind}\""));
    let mut found = text.lines().filter(|l| {
        l.starts_with("jbgw_state_errors_total{") && l.contains(&op) && l.contains(&kind)
    });
    let line = found
        .next()
        .unwrap_or_else(|| panic!("no jbgw_state_errors_total{{{op},{kind}}} in\n{text}"));
    assert!(found.next().is_none(), "one series per op and kind");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_redis_store_keeps_the_contract() {
    let server = RedisServer::start().await;
    let store = redis_store(&server, "contract");
    assert!(store.probe().await);
    assert_eq!(store.backend(), "redis");
    contract(&store).await;

    // The shared L2: the first asker leads, the next sees it busy, then a hit.
    let ttl = Duration::from_secs(30);
    let lock = Duration::from_secs(4);
    assert_eq!(
        store.l2_lookup("k1", "e1", ttl, lock).await.unwrap(),
        L2Lookup::Lead { stale: None }
    );
    assert_eq!(
        store.l2_lookup("k1", "e1", ttl, lock).await.unwrap(),
        L2Lookup::Busy { stale: None }
    );
    store
        .l2_put("k1", "e1", Some(Bytes::from_static(b"list")), ttl * 2)
        .await
        .unwrap();
    match store.l2_lookup("k1", "e1", ttl, lock).await.unwrap() {
        L2Lookup::Fresh(copy) => {
            assert_eq!(&copy.value[..], b"list");
            assert!(copy.age < Duration::from_secs(5), "{:?}", copy.age);
        }
        other => panic!("expected a fresh copy, got {other:?}"),
    }
    // Past its freshness the copy is kept (for the stale window) and comes with the lock:
    // the first asker refreshes it, the next is told another replica does, both with the copy.
    match store
        .l2_lookup("k1", "e1", Duration::ZERO, lock)
        .await
        .unwrap()
    {
        L2Lookup::Lead { stale: Some(copy) } => assert_eq!(&copy.value[..], b"list"),
        other => panic!("expected the lead with the stale copy, got {other:?}"),
    }
    match store
        .l2_lookup("k1", "e1", Duration::ZERO, lock)
        .await
        .unwrap()
    {
        L2Lookup::Busy { stale: Some(copy) } => assert_eq!(&copy.value[..], b"list"),
        other => panic!("expected busy with the stale copy, got {other:?}"),
    }
    // Every L2 key has a TTL: the copy for what it was kept for, the lock for its lease.
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("contract*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(keys.iter().any(|k| k.contains(":l2v2:")), "{keys:?}");
    for k in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(k)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(ttl > 0, "{k} has no TTL ({ttl})");
    }
    // A fetch that stored nothing releases the lock for the next asker.
    assert_eq!(
        store.l2_lookup("k1", "e2", ttl, lock).await.unwrap(),
        L2Lookup::Lead { stale: None }
    );
    store.l2_put("k1", "e2", None, ttl).await.unwrap();
    assert_eq!(
        store.l2_lookup("k1", "e2", ttl, lock).await.unwrap(),
        L2Lookup::Lead { stale: None }
    );

    // Two stores on one server and prefix are one budget (two replicas).
    let other = redis_store(&server, "contract");
    assert_eq!(other.remaining("k1", 3, WINDOW).await.unwrap(), 0);
    // Another prefix is another budget.
    let elsewhere = redis_store(&server, "contract-other");
    assert_eq!(elsewhere.remaining("k1", 3, WINDOW).await.unwrap(), 3);

    // Every key has a TTL.
    for key in server.keys("contract*").await {
        assert!(server.pttl(&key).await > 0, "{key} has no TTL");
    }
}

#[tokio::test]
async fn a_replay_right_after_a_settle_with_its_bump_waits_out_the_acknowledgements() {
    // A record settled in its bump's own script is visible before the writer has heard every
    // replica acknowledge the bump: a replay that early waits until `ACK_WAIT` after the
    // bump's publication, as the writer's own answer would at worst. Later ones do not wait,
    // nor does a replay of a record settled on its own (after its bump was acknowledged).
    let server = RedisServer::start().await;
    let store = redis_store(&server, "early");
    assert!(store.probe().await);
    let (ttl, lease) = (Duration::from_secs(3600), Duration::from_secs(60));
    let fp = Fingerprint::of(b"/api/v1/partnerships\0{}");
    let id = idem("k1", "ann", "early-1");
    assert_eq!(
        store.claim(&id, &fp, lease, ttl).await.unwrap(),
        Claim::Proceed
    );
    let start = std::time::Instant::now();
    store
        .settle_and_bump(
            &id,
            Settle::Completed(outcome("{}")),
            ttl,
            "k1",
            &["partnerships"],
        )
        .await
        .unwrap();
    assert_eq!(
        store.claim(&id, &fp, lease, ttl).await.unwrap(),
        Claim::Replay(outcome("{}"))
    );
    let waited = start.elapsed();
    assert!(
        waited + Duration::from_millis(10) >= ACK_WAIT,
        "replayed {waited:?} after the settle"
    );
    let later = std::time::Instant::now();
    assert_eq!(
        store.claim(&id, &fp, lease, ttl).await.unwrap(),
        Claim::Replay(outcome("{}"))
    );
    assert!(later.elapsed() < ACK_WAIT / 2, "{:?}", later.elapsed());

    let alone = idem("k1", "ann", "early-2");
    assert_eq!(
        store.claim(&alone, &fp, lease, ttl).await.unwrap(),
        Claim::Proceed
    );
    store
        .settle(&alone, Settle::Completed(outcome("{}")), ttl)
        .await
        .unwrap();
    let at_once = std::time::Instant::now();
    assert_eq!(
        store.claim(&alone, &fp, lease, ttl).await.unwrap(),
        Claim::Replay(outcome("{}"))
    );
    assert!(at_once.elapsed() < ACK_WAIT / 2, "{:?}", at_once.elapsed());
}

#[tokio::test]
async fn a_dead_redis_fails_fast_and_the_store_recovers_when_it_returns() {
    let mut server = RedisServer::start().await;
    let store = redis_store(&server, "dead");
    assert!(store.probe().await);
    assert!(matches!(
        store.admit(&ask("k", 5, None)).await.unwrap(),
        Admit::Admitted(_)
    ));
    // Frozen (SIGSTOP), not killed: a refused connection fails at once with or without a
    // breaker, a server that does not answer costs the whole command timeout on every call
    // unless the breaker stops asking it.
    server.freeze();
    let mut slow = 0;
    for i in 0..20 {
        let started = std::time::Instant::now();
        assert_eq!(
            store.admit(&ask("k", 5, None)).await,
            Err(StoreError::Unavailable)
        );
        let took = started.elapsed();
        if i < BREAKER_THRESHOLD {
            // Until the breaker opens, each call waits for its reply up to the timeout.
            assert!(took >= COMMAND_TIMEOUT, "call {i} failed in {took:?}");
            slow += 1;
        } else {
            assert!(
                took < COMMAND_TIMEOUT,
                "call {i} waited {took:?} for a server known down: no breaker?"
            );
        }
    }
    assert_eq!(slow, BREAKER_THRESHOLD);
    assert_eq!(store.health(), Health::Degraded);
    // Killed while frozen; a new, empty server on the same port.
    server.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if store.generation("k", "partnerships").await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.health(), Health::Up);
    // Scripts are loaded again after the restart (NOSCRIPT is handled). The restarted server
    // lost the key's log (no persistence), and this replica had seen it: the shared budget
    // stays closed for one window rather than reopen a window the upstream still counts.
    assert!(matches!(
        store.admit(&ask("k", 5, None)).await.unwrap(),
        Admit::KeyFull { .. }
    ));
    // A replica that never saw the key before has nothing to compare: it is told the same.
    let fresh = redis_store(&server, "dead");
    assert!(matches!(
        fresh.admit(&ask("k", 5, None)).await.unwrap(),
        Admit::KeyFull { .. }
    ));
}

#[tokio::test]
async fn a_limit_of_zero_is_a_full_key_on_both_backends_not_an_error() {
    // Issue 20 §3: `max_replicas = 2, private_share = 0.5` asked the shared store with a limit
    // of 0, and the admit script failed (arithmetic on nil) on every call. Validation now
    // refuses that split, and a store asked for 0 anyway answers "full for the window".
    let memory = MemoryStore::new(1 << 20);
    let server = RedisServer::start().await;
    let metrics = Metrics::new();
    let redis = redis_store_with(&server, "zero", metrics.state.clone());
    assert!(redis.probe().await);
    for store in [&memory as &dyn Store, &redis] {
        for user in [None, Some(("ann", 5))] {
            match store.admit(&ask("z", 0, user)).await {
                Ok(Admit::KeyFull { wait }) => assert_eq!(wait, WINDOW, "{}", store.backend()),
                other => panic!("{}: {other:?}", store.backend()),
            }
        }
        // A key with admissions in its log, asked with 0: the same.
        assert!(matches!(
            store.admit(&ask("z1", 2, None)).await,
            Ok(Admit::Admitted(_))
        ));
        assert!(matches!(
            store.admit(&ask("z1", 0, None)).await,
            Ok(Admit::KeyFull { .. })
        ));
        assert_eq!(store.health(), Health::Up);
    }
    assert_eq!(state_errors(&metrics, "admit", "script"), 0);
}

#[tokio::test]
async fn a_script_error_fails_only_its_call_is_counted_and_leaves_the_store_up() {
    let server = RedisServer::start().await;
    let metrics = Metrics::new();
    let store = redis_store_with(&server, "script", metrics.state.clone());
    assert!(store.probe().await);
    // Something else wrote a string where the key's sliding log (a sorted set) lives: the
    // script's ZREMRANGEBYSCORE fails with WRONGTYPE on every admission for that key.
    assert_eq!(
        server
            .cmd(&["SET", "script:{broken}:log", "x"])
            .await
            .text(),
        Some("OK".into())
    );
    let calls = 3 * BREAKER_THRESHOLD;
    for _ in 0..calls {
        assert_eq!(
            store.admit(&ask("broken", 5, None)).await,
            Err(StoreError::Script)
        );
        // Never taken for an outage: every other call still goes to the server.
        assert_eq!(store.health(), Health::Up);
        assert!(matches!(
            store.admit(&ask("fine", 1000, None)).await,
            Ok(Admit::Admitted(_))
        ));
    }
    // Nor when they come in a row.
    for _ in 0..calls {
        assert_eq!(
            store.admit(&ask("broken", 5, None)).await,
            Err(StoreError::Script)
        );
    }
    assert_eq!(store.health(), Health::Up);
    assert_eq!(
        store.remaining("fine", 1000, WINDOW).await,
        Ok(1000 - calls)
    );
    assert_eq!(
        state_errors(&metrics, "admit", "script"),
        u64::from(2 * calls)
    );
    for kind in ["timeout", "transport", "skipped"] {
        assert_eq!(state_errors(&metrics, "admit", kind), 0, "{kind}");
    }
    let text = String::from_utf8(metrics.render()).unwrap();
    assert!(text.contains("jbgw_state_backend_up 1"), "{text}");
}

#[tokio::test]
async fn one_slow_reply_fails_its_call_only_and_consecutive_ones_open_the_breaker() {
    let mut server = RedisServer::start().await;
    let metrics = Metrics::new();
    let store = redis_store_with(&server, "slow", metrics.state.clone());
    assert!(store.probe().await);
    let big = ask("k", 1000, None);
    let admit = || store.admit(&big);
    assert!(matches!(admit().await, Ok(Admit::Admitted(_))));

    // One reply later than the command timeout (a frozen server, thawed once the call gave
    // up), then a prompt one, several times over: every slow call fails alone, and the store
    // never stops asking the server or says it is degraded.
    for round in 0..BREAKER_THRESHOLD + 1 {
        server.freeze();
        let started = std::time::Instant::now();
        assert_eq!(admit().await, Err(StoreError::Unavailable), "round {round}");
        assert!(started.elapsed() >= COMMAND_TIMEOUT);
        server.thaw();
        assert_eq!(store.health(), Health::Up, "round {round}");
        let answered = admit().await;
        assert!(
            matches!(answered, Ok(Admit::Admitted(_))),
            "round {round}: {answered:?}"
        );
    }
    let rounds = u64::from(BREAKER_THRESHOLD + 1);
    assert_eq!(state_errors(&metrics, "admit", "timeout"), rounds);
    assert_eq!(state_errors(&metrics, "admit", "skipped"), 0);

    // Consecutive failures: the breaker opens on the last of them, and the next call is
    // answered at once without asking.
    server.freeze();
    for i in 0..BREAKER_THRESHOLD {
        assert_eq!(store.health(), Health::Up, "degraded after {i} failure(s)");
        assert_eq!(admit().await, Err(StoreError::Unavailable));
    }
    assert_eq!(store.health(), Health::Degraded);
    let started = std::time::Instant::now();
    assert_eq!(admit().await, Err(StoreError::Unavailable));
    assert!(
        started.elapsed() < COMMAND_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        state_errors(&metrics, "admit", "timeout"),
        rounds + u64::from(BREAKER_THRESHOLD)
    );
    assert_eq!(state_errors(&metrics, "admit", "skipped"), 1);

    // Back: a probe finds it and the store is up again.
    server.thaw();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while admit().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.health(), Health::Up);
    server.kill().await;
}
