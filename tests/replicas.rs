//! Several gateway replicas sharing one Redis (a real `redis-server` on a free port) and one
//! simulator: the budget, idempotency and cache promises hold across replicas, while Redis is
//! down (private shares, fail-closed keyed creates, bounded local lists), and after it returns.

mod common;

use bytes::Bytes;
use common::redis::RedisServer;
use common::*;
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use journeybee_gateway::server::Gateway;
use journeybee_sim::{
    Fault, RateLimitMode, SimConfig, SimHandle, Simulator, SIM_READ_KEY, SIM_WRITE_KEY,
};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

/// One gateway of the cluster.
struct Replica {
    gw: Option<Gateway>,
    base: String,
    admin: String,
}

/// Replicas with one simulator, all configured from the same template.
struct Cluster {
    sim: SimHandle,
    dir: TestDir,
    replicas: Vec<Replica>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// The config every replica runs.
    config: String,
    gate: Option<Gate>,
}

/// A replica on its own thread and runtime. `kill` drops that runtime with every task where
/// it stands: requests in flight are neither finished nor cleaned up, as when a process dies.
struct Mortal {
    base: String,
    die: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Mortal {
    fn start(config: PathBuf) -> Mortal {
        let (base_tx, base_rx) = std::sync::mpsc::channel();
        let (die, die_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let replica = rt.block_on(start_replica(config));
            base_tx.send(replica.base.clone()).unwrap();
            let _ = die_rx.recv();
            // No graceful shutdown, no destructors of the gateway's state.
            std::mem::forget(replica);
            rt.shutdown_background();
        });
        let base = base_rx.recv().expect("the mortal replica started");
        Mortal {
            base,
            die: Some(die),
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        drop(self.die.take());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Mortal {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a cluster is configured.
struct Setup {
    replicas: usize,
    /// `requests_per_minute` of the read key (bob's); `None` keeps the default (100).
    read_rpm: Option<u32>,
    /// `requests_per_minute` of the write key (alice's), as TOML; `None` keeps the default.
    write_rpm: Option<&'static str>,
    /// The whole `[state]` section (empty: the memory backend).
    state: String,
    /// Lines for `[upstream]`.
    upstream: String,
    /// Lines for `[server]`.
    server: String,
    /// The replicas reach the simulator through a [`Gate`].
    gated: bool,
    /// Lines for `[cache]`.
    cache: String,
    sim: SimConfig,
}

impl Setup {
    fn new(replicas: usize) -> Setup {
        Setup {
            replicas,
            read_rpm: None,
            write_rpm: None,
            state: String::new(),
            upstream: String::new(),
            server: String::new(),
            gated: false,
            cache: String::new(),
            sim: SimConfig::default(),
        }
    }

    fn cache(mut self, lines: &str) -> Setup {
        self.cache = lines.to_string();
        self
    }

    /// The Redis backend on `redis` with a prefix of its own, plus `extra` lines.
    fn redis(mut self, redis_url: &str, extra: &str) -> Setup {
        self.state = state_section(redis_url, extra);
        self
    }

    fn write_rpm(mut self, rpm: &'static str) -> Setup {
        self.write_rpm = Some(rpm);
        self
    }

    fn read_rpm(mut self, n: u32) -> Setup {
        self.read_rpm = Some(n);
        self
    }

    /// The simulator enforces exactly `limit` per key in any 60 s, like JourneyBee.
    fn exact_upstream_limit(mut self, limit: u32) -> Setup {
        self.sim.rate_limit_mode = RateLimitMode::Sliding {
            limit,
            window: WINDOW,
        };
        self
    }
}

/// A key prefix no other test (or earlier run) uses.
fn unique_prefix() -> String {
    format!("jbgw-test-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

/// A `[state]` section for the Redis at `url`, with `extra` lines. The command timeout is
/// generous unless `extra` sets one: a debug build under a 300-request burst on two cores
/// must not look like a slow Redis.
fn state_section(url: &str, extra: &str) -> String {
    let timeout = if extra.contains("command_timeout") {
        ""
    } else {
        "command_timeout = \"500ms\"\n"
    };
    format!(
        "[state]\nbackend = \"redis\"\nurl = \"{url}\"\nkey_prefix = \"{}\"\nconnect_timeout = \"500ms\"\n{timeout}{extra}\n",
        unique_prefix()
    )
}

impl Cluster {
    async fn start(setup: Setup) -> Cluster {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), setup.sim.clone())
            .await
            .unwrap();
        let ids = sim.user_ids();
        let ids = (ids[0], ids[1], ids[2]);
        let dir = TestDir::new();
        dir.write("read.key", SIM_READ_KEY);
        dir.write("write.key", SIM_WRITE_KEY);
        dir.write("jwt.secret", JWT_SECRET);
        let mut cluster = Cluster {
            sim,
            dir,
            replicas: Vec::new(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            config: String::new(),
            gate: None,
        };
        if setup.gated {
            cluster.gate = Some(Gate::start(cluster.sim.addr()).await);
        }
        let upstream_url = match &cluster.gate {
            Some(g) => format!("http://{}", g.addr),
            None => cluster.sim.base_url(),
        };
        let opts = Opts {
            read_key: setup
                .read_rpm
                .map(|n| format!("requests_per_minute = {n}"))
                .unwrap_or_default(),
            write_key: setup
                .write_rpm
                .map(|n| format!("requests_per_minute = {n}"))
                .unwrap_or_default(),
            tail: format!("{}\n[cache]\n{}\n", setup.state, setup.cache),
            upstream: setup.upstream.clone(),
            server: setup.server.clone(),
            ..Opts::default()
        };
        cluster.config = config_text(&opts, &upstream_url, ids);
        for i in 0..setup.replicas {
            let config = cluster
                .dir
                .write(&format!("gateway-{i}.toml"), &cluster.config);
            cluster.replicas.push(start_replica(config).await);
        }
        cluster
    }

    /// One more replica, on a runtime of its own so that it can die abruptly.
    fn start_mortal(&self) -> Mortal {
        let config = self.dir.write("gateway-mortal.toml", &self.config);
        Mortal::start(config)
    }

    fn token(&self, subject: &str) -> String {
        sign(AuthMode::Hs256, &default_claims(subject))
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Resp {
        send(&self.client, req).await
    }

    async fn get(&self, replica: usize, path: &str, token: &str) -> Resp {
        self.send(get_request(&self.replicas[replica].base, path, token))
            .await
    }

    async fn create(&self, replica: usize, token: &str, body: &str, key: Option<&str>) -> Resp {
        self.send(create_request(
            &self.replicas[replica].base,
            token,
            body,
            key,
        ))
        .await
    }

    async fn admin_get(&self, replica: usize, path: &str) -> Resp {
        let req = Request::get(format!("{}{}", self.replicas[replica].admin, path))
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send(req).await
    }

    /// `jbgw_budget_decisions_total{pool="private"}` (admitted, denied), summed over replicas.
    async fn private_decisions(&self) -> (f64, f64) {
        let (mut admitted, mut denied) = (0.0, 0.0);
        for i in 0..self.replicas.len() {
            let m = self.admin_get(i, "/metrics").await.text();
            admitted += decisions(&m, "private", "admitted");
            denied += decisions(&m, "private", "denied");
        }
        (admitted, denied)
    }

    /// The `state` object of `/readyz`, which must answer 200 whatever the backend's status.
    async fn ready_state(&self, replica: usize) -> Value {
        let r = self.admin_get(replica, "/readyz").await;
        assert_eq!(r.status, 200, "readiness stays 200: {}", r.text());
        r.json()["state"].clone()
    }

    /// Waits (up to `within`) until every replica's `/readyz` reports `status`. Each poll
    /// also sends one list (the same one, so mostly a cache hit), as a load balancer's
    /// traffic would: a design that re-checks Redis only when it is used passes too.
    async fn wait_for_state(&self, status: &str, within: Duration) -> Duration {
        let started = Instant::now();
        let bob = self.token("bob@corp.test");
        for i in 0..self.replicas.len() {
            loop {
                let state = self.ready_state(i).await;
                if state["status"] == status {
                    break;
                }
                assert!(
                    started.elapsed() < within,
                    "replica {i} still reports {state} after {within:?} (waiting for {status})"
                );
                let _ = self.get(i, "/api/v1/partnerships?search=nudge", &bob).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        started.elapsed()
    }

    /// List requests the simulator received.
    fn upstream_lists(&self) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.method == Method::GET)
            .count()
    }

    /// Create requests the simulator received.
    fn upstream_creates(&self) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.method == Method::POST)
            .count()
    }

    async fn shutdown(mut self) {
        for r in &mut self.replicas {
            if let Some(gw) = r.gw.take() {
                gw.shutdown().await;
            }
        }
        self.sim.shutdown();
    }
}

async fn start_replica(config: PathBuf) -> Replica {
    let settings = journeybee_gateway::config::load(&config).unwrap_or_else(|e| panic!("{e}"));
    // Start-up must not hang on an unreachable Redis.
    let gw = tokio::time::timeout(Duration::from_secs(10), Gateway::start(settings))
        .await
        .expect("the gateway starts within 10 s")
        .expect("the gateway starts");
    Replica {
        base: format!("http://{}", gw.addr()),
        admin: format!("http://{}", gw.admin_addr()),
        gw: Some(gw),
    }
}

async fn send(client: &Client<HttpConnector, Full<Bytes>>, req: Request<Full<Bytes>>) -> Resp {
    use http_body_util::BodyExt;
    let resp = client.request(req).await.expect("gateway answers");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

fn get_request(base: &str, path: &str, token: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::GET)
        .uri(format!("{base}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn create_request(base: &str, token: &str, body: &str, key: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}/api/v1/partnerships"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    if let Some(k) = key {
        b = b.header("idempotency-key", k);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

/// The most requests that arrived within any `window`-long interval.
fn max_in_any_window(arrivals: &[Instant], window: Duration) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort_unstable();
    let mut best = 0;
    let mut first = 0;
    for last in 0..sorted.len() {
        while sorted[last].duration_since(sorted[first]) >= window {
            first += 1;
        }
        best = best.max(last - first + 1);
    }
    best
}

/// A gateway-made 429: the JSON error shape and a usable `Retry-After`.
fn assert_local_429(r: &Resp) {
    r.assert_error(429);
    let secs: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("a 429 carries Retry-After: {:?}", r.headers))
        .parse()
        .expect("Retry-After in seconds");
    assert!(secs >= 1, "Retry-After {secs}");
}

/// A domain no other test uses (free of the simulator's seeded ones).
fn fresh_domain(tag: &str) -> String {
    format!("{tag}-{:08x}-partners.com", fastrand::u32(..))
}

/// `jbgw_budget_decisions_total{pool, result}` from a `/metrics` text, summed over its
/// other labels (the budget class).
fn decisions(metrics: &str, pool: &str, result: &str) -> f64 {
    let (pool, result) = (format!("pool=\"{pool}\""), format!("result=\"{result}\""));
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("jbgw_budget_decisions_total{")
                && l.contains(&pool)
                && l.contains(&result)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_concurrent_lists_on_three_replicas_stay_within_the_key_limit() {
    let redis = RedisServer::start().await;
    let c = Cluster::start(
        Setup::new(3)
            .redis(
                &redis.url(),
                "max_replicas = 3\nprivate_share = 0.1\ncommand_timeout = \"2s\"",
            )
            .read_rpm(10)
            .exact_upstream_limit(10),
    )
    .await;
    let bob = c.token("bob@corp.test");
    let mut tasks = Vec::new();
    for i in 0..300 {
        let client = c.client.clone();
        let req = get_request(
            &c.replicas[i % 3].base,
            &format!("/api/v1/partnerships?search=burst{i}"),
            &bob,
        );
        tasks.push(tokio::spawn(async move { send(&client, req).await }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 200 {
            ok += 1;
        } else {
            assert_local_429(&r);
        }
    }
    let arrivals = c.sim.arrivals(SIM_READ_KEY);
    assert!(
        max_in_any_window(&arrivals, WINDOW) <= 10,
        "{} lists reached the simulator within 60 s on a 10/min key",
        max_in_any_window(&arrivals, WINDOW)
    );
    assert_eq!(c.sim.rate_limited_count(), 0, "no upstream 429");
    assert_eq!(ok, c.upstream_lists(), "every 200 is one upstream call");
    // Normally the capacity is the whole N: the shared pool plus every replica's private
    // share (10 = 7 shared + 3 x 1 private).
    if ok != 10 {
        let mut diag = String::new();
        for i in 0..3 {
            let m = c.admin_get(i, "/metrics").await.text();
            for l in m.lines().filter(|l| {
                l.starts_with("jbgw_budget_decisions_total")
                    || l.starts_with("jbgw_state_errors_total")
                    || l.starts_with("jbgw_state_backend_up")
            }) {
                diag.push_str(&format!("replica {i}: {l}\n"));
            }
        }
        panic!("with Redis up the three replicas together admitted {ok}, not N = 10\n{diag}");
    }
    // And the decisions say where each came from: 7 from the shared pool, one private on
    // each replica (the shared pool was full when each replica spent its own).
    let (mut shared, mut private) = (0.0, 0.0);
    for i in 0..3 {
        let m = c.admin_get(i, "/metrics").await.text();
        shared += decisions(&m, "shared", "admitted");
        let mine = decisions(&m, "private", "admitted");
        assert_eq!(mine, 1.0, "replica {i}'s private share: {m}");
        private += mine;
        assert!(m.contains("jbgw_state_backend_up 1"), "{m}");
    }
    assert_eq!((shared, private), (7.0, 3.0));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_keyed_create_on_two_replicas_at_once_reaches_upstream_once() {
    let redis = RedisServer::start().await;
    let c = Cluster::start(Setup::new(3).redis(&redis.url(), "")).await;
    let alice = c.token("alice@corp.test");
    let body = create_body(&fresh_domain("twice"));
    // The first create is still upstream when the second arrives.
    c.sim.set_fault(Fault::Slow(Duration::from_millis(500)));
    let (a, b) = tokio::join!(
        c.create(0, &alice, &body, Some("invite-jane-1")),
        c.create(1, &alice, &body, Some("invite-jane-1")),
    );
    c.sim.set_fault(Fault::None);
    assert_eq!(c.upstream_creates(), 1, "a: {a:?}\nb: {b:?}");
    let (first, second) = if a.header("idempotent-replayed").is_some() || a.status == 409 {
        (b, a)
    } else {
        (a, b)
    };
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.header("idempotent-replayed"), None);
    match second.status.as_u16() {
        409 => {
            second.assert_error(409);
        }
        _ => {
            assert_eq!(second.status, first.status, "{}", second.text());
            assert_eq!(second.header("idempotent-replayed"), Some("true"));
            assert_eq!(second.body, first.body);
        }
    }
    // Later, on the third replica: the stored outcome, still one upstream create.
    let third = c.create(2, &alice, &body, Some("invite-jane-1")).await;
    assert_eq!(third.status, 201, "{}", third.text());
    assert_eq!(third.header("idempotent-replayed"), Some("true"));
    assert_eq!(third.body, first.body);
    // The same key with another body is 422 on any replica.
    let other = c
        .create(
            1,
            &alice,
            &create_body(&fresh_domain("other")),
            Some("invite-jane-1"),
        )
        .await;
    other.assert_error(422);
    assert_eq!(c.upstream_creates(), 1);
    c.shutdown().await;
}

#[tokio::test]
async fn a_list_on_b_right_after_a_create_on_a_is_fresh() {
    let redis = RedisServer::start().await;
    let c = Cluster::start(Setup::new(3).redis(&redis.url(), "")).await;
    let alice = c.token("alice@corp.test");
    let domain = fresh_domain("fresh");
    let list = format!("/api/v1/partnerships?view=all&search={domain}");

    let before = c.get(1, &list, &alice).await;
    assert_eq!(before.status, 200, "{}", before.text());
    assert!(!before.text().contains(&domain));
    let cached = c.get(1, &list, &alice).await;
    assert_eq!(cached.header("x-cache"), Some("HIT"), "B caches the list");
    assert_eq!(c.upstream_lists(), 1);

    let created = c.create(0, &alice, &create_body(&domain), None).await;
    assert_eq!(created.status, 201, "{}", created.text());

    let after = c.get(1, &list, &alice).await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(
        after.header("x-cache"),
        Some("MISS"),
        "B's list from before A's create is unusable"
    );
    assert_eq!(c.upstream_lists(), 2);
    assert!(after.text().contains(&domain), "{}", after.text());
    // The third replica never saw the list; whatever it serves (shared copy or upstream)
    // is from after the create.
    let third = c.get(2, &list, &alice).await;
    assert_eq!(third.status, 200);
    assert!(third.text().contains(&domain), "{}", third.text());
    c.shutdown().await;
}

#[tokio::test]
async fn the_same_list_on_a_then_on_b_is_one_upstream_call() {
    let redis = RedisServer::start().await;
    let c = Cluster::start(Setup::new(3).redis(&redis.url(), "")).await;
    let bob = c.token("bob@corp.test");
    let list = "/api/v1/partnerships?view=all&tags=1,2";
    let a = c.get(0, list, &bob).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-cache"), Some("MISS"));
    let b = c.get(1, list, &bob).await;
    assert_eq!(b.status, 200);
    assert_eq!(
        b.header("x-cache"),
        Some("HIT"),
        "served from the shared L2"
    );
    assert_eq!(b.body, a.body);
    let c3 = c.get(2, list, &bob).await;
    assert_eq!(c3.header("x-cache"), Some("HIT"));
    assert_eq!(c3.body, a.body);
    assert_eq!(c.upstream_lists(), 1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_for_one_list_on_three_replicas_make_one_upstream_call() {
    let redis = RedisServer::start().await;
    let c = Cluster::start(Setup::new(3).redis(&redis.url(), "")).await;
    let bob = c.token("bob@corp.test");
    let list = "/api/v1/partnerships?view=all&search=together";
    c.sim.set_fault(Fault::Slow(Duration::from_millis(150)));
    let (a, b, d) = tokio::join!(
        c.get(0, list, &bob),
        c.get(1, list, &bob),
        c.get(2, list, &bob)
    );
    c.sim.set_fault(Fault::None);
    for r in [&a, &b, &d] {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, a.body);
    }
    assert_eq!(
        c.upstream_lists(),
        1,
        "a short shared lock coalesces the misses"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_test_private_shares_fail_closed_creates_and_recovery() {
    let mut redis = RedisServer::start().await;
    let c = Cluster::start(
        Setup::new(3)
            .redis(
                &redis.url(),
                "max_replicas = 3\nprivate_share = 0.1\ndegraded_max_age = \"20s\"",
            )
            .read_rpm(10),
    )
    .await;
    let bob = c.token("bob@corp.test");
    let alice = c.token("alice@corp.test");
    for i in 0..3 {
        assert_eq!(
            c.ready_state(i).await,
            serde_json::json!({"backend": "redis", "status": "up"})
        );
    }
    // A list cached on A and a keyed create, while Redis is up.
    let warm = "/api/v1/partnerships?search=warm";
    assert_eq!(c.get(0, warm, &bob).await.status, 200);
    let ok = c
        .create(
            0,
            &alice,
            &create_body(&fresh_domain("up")),
            Some("before-kill"),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text());

    redis.kill().await;

    // Lists still served from A's local cache, without upstream.
    let lists_before = c.upstream_lists();
    let cached = c.get(0, warm, &bob).await;
    assert_eq!(cached.status, 200, "{}", cached.text());
    assert!(
        matches!(cached.header("x-cache"), Some("HIT" | "STALE")),
        "{:?}",
        cached.header("x-cache")
    );
    assert_eq!(c.upstream_lists(), lists_before);

    // Budget: each replica spends only its private share (floor(10 x 0.1) = 1).
    let (admitted_before, denied_before) = c.private_decisions().await;
    let mut admitted = 0;
    let mut throttled = 0;
    for i in 0..30 {
        let r = c
            .get(i % 3, &format!("/api/v1/partnerships?search=down{i}"), &bob)
            .await;
        if r.status == 200 {
            admitted += 1;
        } else {
            assert!(
                matches!(r.status.as_u16(), 429 | 503),
                "{} {}",
                r.status,
                r.text()
            );
            r.assert_error(r.status.as_u16());
            assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
            if r.status == 429 {
                throttled += 1;
            }
        }
    }
    // Every one of those decisions was the private pool's, and is counted as such.
    let (admitted_after, denied_after) = c.private_decisions().await;
    assert_eq!(
        (
            admitted_after - admitted_before,
            denied_after - denied_before
        ),
        (admitted as f64, f64::from(throttled)),
        "private-pool decisions (admitted, denied) during the outage"
    );
    // Exactly: one private admission per replica (not fewer: the private shares are what
    // keeps lists flowing while Redis is down).
    assert_eq!(admitted, 3, "lists admitted with Redis down");
    assert_eq!(c.upstream_lists(), lists_before + admitted);
    assert!(
        max_in_any_window(&c.sim.arrivals(SIM_READ_KEY), WINDOW) <= 10,
        "the key's limit holds across the outage"
    );

    // Keyed creates fail closed: 503 + Retry-After, nothing sent.
    let creates_before = c.upstream_creates();
    let body = create_body(&fresh_domain("down"));
    for i in 0..3 {
        let r = c.create(i, &alice, &body, Some("during-outage")).await;
        r.assert_error(503);
        assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    }
    assert_eq!(c.upstream_creates(), creates_before, "nothing sent");
    // A create without a key is allowed within the private share (write key: 100/min, so
    // floor(100 x 0.1) = 10 per replica).
    let r = c
        .create(2, &alice, &create_body(&fresh_domain("unkeyed")), None)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(c.upstream_creates(), creates_before + 1);
    c.wait_for_state("degraded", Duration::from_secs(5)).await;
    for i in 0..3 {
        assert_eq!(
            c.ready_state(i).await,
            serde_json::json!({"backend": "redis", "status": "degraded"})
        );
        let m = c.admin_get(i, "/metrics").await.text();
        assert!(m.contains("jbgw_state_backend_up 0"), "{m}");
    }

    // Redis returns (empty): every replica recovers by itself within a few seconds.
    redis.restart().await;
    let took = c.wait_for_state("up", Duration::from_secs(10)).await;
    eprintln!("recovered in {took:?}");
    let started = Instant::now();
    for i in 0..3 {
        loop {
            let r = c
                .create(
                    i,
                    &alice,
                    &create_body(&fresh_domain("back")),
                    Some(&format!("after-{i}")),
                )
                .await;
            if r.status == 201 {
                break;
            }
            assert_eq!(r.status, 503, "{}", r.text());
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "replica {i} still refuses keyed creates"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // The create refused during the outage was never sent, so its retry is a first send.
    let retried = c.create(1, &alice, &body, Some("during-outage")).await;
    assert_eq!(retried.status, 201, "{}", retried.text());
    assert_eq!(retried.header("idempotent-replayed"), None);
    let m = c.admin_get(0, "/metrics").await.text();
    assert!(m.contains("jbgw_state_backend_up 1"), "{m}");
    c.shutdown().await;
}

#[tokio::test]
async fn a_gateway_started_while_redis_is_down_serves_degraded_and_recovers() {
    let mut redis = RedisServer::start().await;
    redis.kill().await;
    let c = Cluster::start(Setup::new(1).redis(&redis.url(), "")).await;
    let bob = c.token("bob@corp.test");
    let alice = c.token("alice@corp.test");
    // Lists within the private share (default 0.3 / 3 of 100 = 10).
    let r = c.get(0, "/api/v1/partnerships?search=cold", &bob).await;
    assert_eq!(r.status, 200, "{}", r.text());
    c.wait_for_state("degraded", Duration::from_secs(5)).await;
    assert_eq!(
        c.ready_state(0).await,
        serde_json::json!({"backend": "redis", "status": "degraded"})
    );
    let body = create_body(&fresh_domain("cold"));
    let r = c.create(0, &alice, &body, Some("cold-start")).await;
    r.assert_error(503);
    assert!(r.header("retry-after").is_some());
    assert_eq!(c.upstream_creates(), 0);
    let m = c.admin_get(0, "/metrics").await.text();
    assert!(m.contains("jbgw_state_backend_up 0"), "{m}");

    redis.restart().await;
    c.wait_for_state("up", Duration::from_secs(10)).await;
    let r = c.create(0, &alice, &body, Some("cold-start")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(c.upstream_creates(), 1);
    let m = c.admin_get(0, "/metrics").await.text();
    assert!(m.contains("jbgw_state_backend_up 1"), "{m}");
    c.shutdown().await;
}

#[tokio::test]
async fn the_memory_backend_reports_itself_in_readyz() {
    let c = Cluster::start(Setup::new(1)).await;
    assert_eq!(
        c.ready_state(0).await,
        serde_json::json!({"backend": "memory", "status": "up"})
    );
    c.shutdown().await;
}

#[tokio::test]
async fn an_upstream_429_on_one_replica_pauses_the_key_on_all() {
    let redis = RedisServer::start().await;
    let c = Cluster::start(Setup::new(3).redis(&redis.url(), "")).await;
    let bob = c.token("bob@corp.test");
    c.sim.set_fault(Fault::RateLimited {
        retry_after_secs: 30,
    });
    c.get(0, "/api/v1/partnerships?search=p0", &bob)
        .await
        .assert_error(429);
    c.sim.set_fault(Fault::None);
    assert_eq!(c.upstream_lists(), 1);
    for i in 1..3 {
        let r = c
            .get(i, &format!("/api/v1/partnerships?search=p{i}"), &bob)
            .await;
        assert_local_429(&r);
        let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!(secs > 20, "paused until the upstream's Retry-After: {secs}");
    }
    assert_eq!(c.upstream_lists(), 1, "no replica sends for a paused key");
    c.shutdown().await;
}

#[tokio::test]
async fn a_users_fair_share_is_shared_by_the_replicas() {
    let redis = RedisServer::start().await;
    let mut setup = Setup::new(3).redis(&redis.url(), "");
    setup
        .state
        .push_str("\n[rate_limit]\nper_user_requests_per_minute = 3\n");
    let c = Cluster::start(setup).await;
    let bob = c.token("bob@corp.test");
    let mut ok = 0;
    for i in 0..9 {
        let r = c
            .get(
                i % 3,
                &format!("/api/v1/partnerships?search=share{i}"),
                &bob,
            )
            .await;
        if r.status == 200 {
            ok += 1;
        } else {
            assert_local_429(&r);
        }
    }
    assert_eq!(ok, 3, "3 per minute for bob, however many replicas");
    assert_eq!(c.upstream_lists(), 3);
    // Another user on the same key is unaffected.
    let r = c
        .get(
            1,
            "/api/v1/partnerships?search=share0",
            &c.token("carol@corp.test"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    c.shutdown().await;
}

#[tokio::test]
async fn a_list_after_a_create_is_fresh_even_after_redis_restarted_empty() {
    let mut redis = RedisServer::start().await;
    let c = Cluster::start(Setup::new(2).redis(&redis.url(), "")).await;
    let alice = c.token("alice@corp.test");
    let tag = format!("genreset{:08x}", fastrand::u32(..));
    let list = format!("/api/v1/partnerships?view=all&search={tag}");
    let d1 = format!("one-{tag}.com");
    let d2 = format!("two-{tag}.com");

    // B caches the list after one create (the key's generation has moved once).
    assert_eq!(c.get(1, &list, &alice).await.status, 200);
    assert_eq!(
        c.create(0, &alice, &create_body(&d1), None).await.status,
        201
    );
    let r = c.get(1, &list, &alice).await;
    assert!(r.text().contains(&d1), "{}", r.text());
    assert_eq!(c.get(1, &list, &alice).await.header("x-cache"), Some("HIT"));

    // Redis comes back empty: whatever counted generations starts again.
    redis.restart().await;
    c.wait_for_state("up", Duration::from_secs(10)).await;

    // One create on A after the restart; B's entry from before it must not be served.
    let created = c.create(0, &alice, &create_body(&d2), None).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let r = c.get(1, &list, &alice).await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains(&d2),
        "B served a list from before A's create (x-cache {:?}): {}",
        r.header("x-cache"),
        r.text()
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_that_lost_the_budget_log_does_not_reopen_the_window() {
    let mut redis = RedisServer::start().await;
    let c = Cluster::start(
        Setup::new(3)
            .redis(&redis.url(), "max_replicas = 3\nprivate_share = 0.1")
            .read_rpm(10)
            .exact_upstream_limit(10),
    )
    .await;
    let bob = c.token("bob@corp.test");
    for i in 0..30 {
        let r = c
            .get(
                i % 3,
                &format!("/api/v1/partnerships?search=before{i}"),
                &bob,
            )
            .await;
        if r.status != 200 {
            assert_local_429(&r);
        }
    }
    assert_eq!(c.upstream_lists(), 10, "the window is full");

    // Redis comes back without its data (no persistence, or a failover that lost it).
    redis.restart().await;
    c.wait_for_state("up", Duration::from_secs(10)).await;
    // Every replica uses the recovered Redis again (a keyed create needs it; the write key's
    // budget is its own).
    let alice = c.token("alice@corp.test");
    let started = Instant::now();
    for i in 0..3 {
        loop {
            let r = c
                .create(
                    i,
                    &alice,
                    &create_body(&fresh_domain("relearn")),
                    Some(&format!("relearn-{i}")),
                )
                .await;
            if r.status == 201 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{}", r.text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for i in 0..30 {
        let r = c
            .get(
                i % 3,
                &format!("/api/v1/partnerships?search=after{i}"),
                &bob,
            )
            .await;
        // The shared pool stays closed for the window the restarted Redis forgot, and every
        // private share was spent before it: a local 429, never sent.
        assert_local_429(&r);
    }
    assert_eq!(c.upstream_lists(), 10, "no list was sent after the restart");
    let arrivals = c.sim.arrivals(SIM_READ_KEY);
    assert!(
        max_in_any_window(&arrivals, WINDOW) <= 10 && c.sim.rate_limited_count() == 0,
        "{} lists reached the upstream within 60 s on a 10/min key ({} answered 429): \
         the shared log was lost with Redis' data and the window opened again",
        max_in_any_window(&arrivals, WINDOW),
        c.sim.rate_limited_count()
    );
    c.shutdown().await;
}

/// A TCP forwarder in front of the simulator that can refuse connections (its listener
/// closed, every forwarded connection dropped) and accept again on the same port.
struct Gate {
    addr: std::net::SocketAddr,
    target: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Gate {
    async fn start(target: std::net::SocketAddr) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut gate = Gate {
            addr: listener.local_addr().unwrap(),
            target,
            task: None,
        };
        gate.serve(listener);
        gate
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            // Dropped with the task: aborts every forwarded connection.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// From now on connections are refused.
    async fn close(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        assert!(tokio::net::TcpStream::connect(self.addr).await.is_err());
    }

    async fn reopen(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

/// Admissions whose request never left (the upstream refused the connection) are given back,
/// with either backend.
async fn refunded_admissions(redis_url: Option<&str>) {
    let mut setup = Setup::new(1).read_rpm(3);
    if let Some(url) = redis_url {
        setup = setup.redis(url, "");
    }
    // Keep the breaker out of it.
    setup.upstream = "breaker_failures = 1000".into();
    setup.gated = true;
    let mut c = Cluster::start(setup).await;
    let bob = c.token("bob@corp.test");
    c.gate.as_mut().unwrap().close().await;
    for i in 0..5 {
        let r = c
            .get(0, &format!("/api/v1/partnerships?search=refused{i}"), &bob)
            .await;
        assert!(
            matches!(r.status.as_u16(), 502 | 503),
            "{:?}: {} {}",
            redis_url,
            r.status,
            r.text()
        );
    }
    assert_eq!(c.upstream_lists(), 0);
    c.gate.as_mut().unwrap().reopen().await;
    // The whole minute's budget is still there.
    for i in 0..3 {
        let r = c
            .get(0, &format!("/api/v1/partnerships?search=after{i}"), &bob)
            .await;
        assert_eq!(
            r.status,
            200,
            "{:?}: admission {i} after refused connections: {}",
            redis_url,
            r.text()
        );
    }
    c.get(0, "/api/v1/partnerships?search=after3", &bob)
        .await
        .assert_error(429);
    assert_eq!(c.upstream_lists(), 3);
    c.shutdown().await;
}

#[tokio::test]
async fn an_admission_that_never_reached_upstream_is_refunded() {
    refunded_admissions(None).await;
    let redis = RedisServer::start().await;
    refunded_admissions(Some(&redis.url())).await;
}

/// The sum of a counter's samples over all its label sets.
fn counter_total(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_costs_at_most_the_command_timeout_and_is_not_asked_on_every_request() {
    let redis = RedisServer::start().await;
    let c = Cluster::start(Setup::new(1).redis(
        &redis.url(),
        "command_timeout = \"100ms\"\ndegraded_max_age = \"30s\"",
    ))
    .await;
    let bob = c.token("bob@corp.test");
    let alice = c.token("alice@corp.test");
    let warm = "/api/v1/partnerships?search=frozen-warm";
    assert_eq!(c.get(0, warm, &bob).await.status, 200);
    let r = c
        .create(
            0,
            &alice,
            &create_body(&fresh_domain("prefreeze")),
            Some("pre-freeze"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());

    redis.freeze();
    let slow = Duration::from_millis(100 + 400);
    let started = Instant::now();
    let r = c.get(0, warm, &bob).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        started.elapsed() < slow,
        "a cached list took {:?}",
        started.elapsed()
    );
    let lists_before = c.upstream_lists();
    let started = Instant::now();
    for i in 0..10 {
        let one = Instant::now();
        let r = c
            .get(0, &format!("/api/v1/partnerships?search=frozen{i}"), &bob)
            .await;
        assert!(
            matches!(r.status.as_u16(), 200 | 429),
            "{} {}",
            r.status,
            r.text()
        );
        assert!(one.elapsed() < slow, "list {i} took {:?}", one.elapsed());
    }
    eprintln!("ten lists with Redis frozen: {:?}", started.elapsed());
    // Ten requests, each asking a dead Redis for several things, would take seconds.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "ten lists took {:?} with Redis frozen: is a local breaker in front of it?",
        started.elapsed()
    );
    assert!(
        c.upstream_lists() > lists_before,
        "lists are served within the private share"
    );
    let started = Instant::now();
    let r = c
        .create(
            0,
            &alice,
            &create_body(&fresh_domain("frozen")),
            Some("frozen-1"),
        )
        .await;
    r.assert_error(503);
    assert!(r.header("retry-after").is_some());
    assert!(
        started.elapsed() < slow,
        "the keyed create took {:?}",
        started.elapsed()
    );
    c.wait_for_state("degraded", Duration::from_secs(5)).await;
    let m = c.admin_get(0, "/metrics").await.text();
    assert!(counter_total(&m, "jbgw_state_errors_total") >= 1.0, "{m}");

    redis.thaw();
    c.wait_for_state("up", Duration::from_secs(10)).await;
    let r = c
        .create(
            0,
            &alice,
            &create_body(&fresh_domain("thawed")),
            Some("frozen-1"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_dies_mid_create_leaves_the_record_unknown_never_free() {
    let redis = RedisServer::start().await;
    let mut setup = Setup::new(1).redis(&redis.url(), "");
    // The lease of an in-flight record is request_timeout + connect + response timeouts
    // (3 + 1 + 2 s here).
    setup.server = "request_timeout = \"3s\"".into();
    setup.state.push_str("\n[idempotency]\nwait = \"300ms\"\n");
    let c = Cluster::start(setup).await;
    let mut a = c.start_mortal();
    let alice = c.token("alice@corp.test");
    let body = create_body(&fresh_domain("mortal"));

    c.sim.set_fault(Fault::Slow(Duration::from_millis(1500)));
    let client = c.client.clone();
    let req = create_request(&a.base, &alice, &body, Some("mortal-1"));
    let in_flight = tokio::spawn(async move { client.request(req).await.map(|r| r.status()) });
    eventually(
        "the create to reach upstream",
        Duration::from_secs(10),
        || c.upstream_creates() == 1,
    )
    .await;
    a.kill();
    c.sim.set_fault(Fault::None);
    // The orphaned in-flight record must not simply expire (its expiry would free the key
    // for a second send): nothing this test stored in Redis expires within the lease.
    let keys = redis.keys("*").await;
    assert!(!keys.is_empty());
    for k in &keys {
        let ttl = redis.pttl(k).await;
        assert!(
            ttl > 6_000,
            "{k} expires in {ttl} ms, before the dead sender's lease ends"
        );
    }
    assert!(
        in_flight.await.unwrap().is_err(),
        "the dead replica answered"
    );

    // The client retries on a live replica: never a second send. While the dead sender's
    // lease runs, the record is in flight (409); then it is unknown (the "may have been
    // created" error), and stays so.
    let started = Instant::now();
    let lease = Duration::from_secs(6);
    loop {
        let r = c.create(0, &alice, &body, Some("mortal-1")).await;
        let error = r.assert_error(409);
        assert_eq!(c.upstream_creates(), 1, "the create was sent twice");
        if error.contains("may have been created") {
            eprintln!("unknown after {:?} of retries", started.elapsed());
            break;
        }
        assert!(
            started.elapsed() < lease + Duration::from_secs(5),
            "still {error:?} long after the dead sender's lease"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = c.create(0, &alice, &body, Some("mortal-1")).await;
    assert!(again.assert_error(409).contains("may have been created"));
    assert_eq!(c.upstream_creates(), 1);
    c.shutdown().await;
}

#[tokio::test]
async fn redis_holds_no_secret_and_every_key_expires() {
    let redis = RedisServer::start().await;
    let setup = Setup::new(2).redis(&redis.url(), "");
    let prefix = setup
        .state
        .lines()
        .find_map(|l| l.strip_prefix("key_prefix = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let c = Cluster::start(setup).await;
    let alice = c.token("alice@corp.test");
    let bob = c.token("bob@corp.test");
    assert_eq!(
        c.get(0, "/api/v1/partnerships?search=x", &bob).await.status,
        200
    );
    assert_eq!(
        c.get(1, "/api/v1/partnerships?search=x", &bob).await.status,
        200
    );
    let r = c
        .create(
            1,
            &alice,
            &create_body(&fresh_domain("contents")),
            Some("contents-1"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        c.get(0, "/api/v1/partnerships?view=all", &alice)
            .await
            .status,
        200
    );

    let keys = redis.keys("*").await;
    assert!(!keys.is_empty(), "the Redis backend stored nothing");
    let secrets = [SIM_READ_KEY, SIM_WRITE_KEY, JWT_SECRET];
    for k in &keys {
        assert!(
            k.starts_with(&prefix),
            "{k} is outside the key prefix {prefix}"
        );
        assert!(
            k.contains('{') && k.contains('}'),
            "{k} has no hash tag (one API key's state must share a cluster slot)"
        );
        let ttl = redis.pttl(k).await;
        assert!(ttl > 0, "{k} has no expiry (PTTL {ttl})");
        let kind = redis.cmd(&["TYPE", k]).await.text().unwrap();
        let content = match kind.as_str() {
            "string" => redis.cmd(&["GET", k]).await.text().unwrap_or_default(),
            "hash" => redis.cmd(&["HGETALL", k]).await.strings().join("\n"),
            "zset" => redis
                .cmd(&["ZRANGE", k, "0", "-1"])
                .await
                .strings()
                .join("\n"),
            "list" => redis
                .cmd(&["LRANGE", k, "0", "-1"])
                .await
                .strings()
                .join("\n"),
            "set" => redis.cmd(&["SMEMBERS", k]).await.strings().join("\n"),
            other => format!("<{other}>"),
        };
        for s in secrets {
            assert!(!k.contains(s), "{k} names a secret");
            assert!(!content.contains(s), "{k} holds a secret");
        }
    }
    c.shutdown().await;
}

#[tokio::test]
async fn the_simulator_enforces_an_exact_sliding_limit() {
    let window = Duration::from_millis(400);
    let sim = Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            rate_limit_mode: RateLimitMode::Sliding { limit: 3, window },
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let user = sim.user_ids()[0];
    let list_as = |key: &str| {
        Request::get(format!(
            "{}/api/v1/partnerships?userId={user}",
            sim.base_url()
        ))
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(send(&client, list_as(SIM_READ_KEY)).await.status, 200);
    }
    let first = sim.arrivals(SIM_READ_KEY)[0];
    let r = send(&client, list_as(SIM_READ_KEY)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    // Another key has its own log.
    assert_eq!(send(&client, list_as(SIM_WRITE_KEY)).await.status, 200);
    assert_eq!(sim.rate_limited_count(), 1);
    // Refused requests do not count: the first slot frees exactly one window after the
    // first request arrived.
    loop {
        let r = send(&client, list_as(SIM_READ_KEY)).await;
        if r.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let admitted = *sim.arrivals(SIM_READ_KEY).last().unwrap();
    assert!(admitted.duration_since(first) >= window);
    assert!(
        admitted.duration_since(first) < window + Duration::from_millis(300),
        "{:?}",
        admitted.duration_since(first)
    );
    sim.shutdown();
}

/// How a window-edge scenario is run.
#[derive(Clone, Copy, Debug)]
enum Edge {
    Memory,
    Redis { replicas: usize },
}

/// Sends `reqs` all at once and collects the answers.
async fn all_at_once(
    client: &Client<HttpConnector, Full<Bytes>>,
    reqs: Vec<Request<Full<Bytes>>>,
) -> Vec<Resp> {
    let tasks: Vec<_> = reqs
        .into_iter()
        .map(|r| {
            let client = client.clone();
            tokio::spawn(async move { send(&client, r).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// A burst of 2N, then requests until the gateway admits again, then another burst of 2N
/// right at that moment: the gateway admits at its window's edge, and the upstream, which
/// counts each request from its ARRIVAL, must never answer 429.
///
/// The gateway counts a request when it admits it, before it waits for an upstream
/// connection; with one connection and an upstream taking `slow` per request during the
/// first burst, the k-th admitted request arrives about k x `slow` after its admission. A
/// gateway that frees a slot exactly 60 s after admitting it lets the second burst reach the
/// upstream before the upstream has freed the matching slots (a certain 429);
/// `budget_margin` (1 s by default) covers delays up to the margin.
async fn bursts_at_the_window_edge(edge: Edge, n: u32, slow: Duration) {
    let redis = match edge {
        Edge::Memory => None,
        Edge::Redis { .. } => Some(RedisServer::start().await),
    };
    let mut setup = match edge {
        Edge::Memory => Setup::new(1),
        Edge::Redis { replicas } => {
            Setup::new(replicas).redis(&redis.as_ref().unwrap().url(), "max_replicas = 3")
        }
    };
    setup = setup.read_rpm(n).exact_upstream_limit(n);
    setup.upstream = "max_connections = 1".into();
    let c = Cluster::start(setup).await;
    let bob = c.token("bob@corp.test");
    let replicas = c.replicas.len();
    let burst = |tag: &str| -> Vec<Request<Full<Bytes>>> {
        (0..2 * n as usize)
            .map(|i| {
                get_request(
                    &c.replicas[i % replicas].base,
                    &format!("/api/v1/partnerships?search={tag}{i}"),
                    &bob,
                )
            })
            .collect()
    };
    c.sim.set_fault(Fault::Slow(slow));
    let first = all_at_once(&c.client, burst("edge-a")).await;
    c.sim.set_fault(Fault::None);
    let admitted = first.iter().filter(|r| r.status == 200).count();
    for r in first.iter().filter(|r| r.status != 200) {
        assert_local_429(r);
    }
    assert!(admitted >= 1, "{edge:?}: the first burst admitted nothing");
    let t0 = c.sim.arrivals(SIM_READ_KEY)[0];

    // Event-based: poll until the gateway admits again; every 50 ms, then as fast as the
    // gateway answers from 59 s on, so the request takes the slot the moment it frees.
    let mut i = 0;
    loop {
        let r = c
            .get(
                i % replicas,
                &format!("/api/v1/partnerships?search=edge-poll{i}"),
                &bob,
            )
            .await;
        if r.status == 200 {
            break;
        }
        assert_local_429(&r);
        assert!(
            t0.elapsed() < Duration::from_secs(75),
            "{edge:?}: the gateway did not admit again within 75 s"
        );
        i += 1;
        let pause = if t0.elapsed() < Duration::from_secs(59) {
            50
        } else {
            1
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let second = all_at_once(&c.client, burst("edge-b")).await;
    let reopened = c.sim.arrivals(SIM_READ_KEY)[admitted];
    assert!(
        reopened.duration_since(t0) >= WINDOW,
        "{edge:?}: admitted again {:?} after the first burst",
        reopened.duration_since(t0)
    );
    for r in second.iter().filter(|r| r.status != 200) {
        assert_local_429(r);
    }
    assert_eq!(
        c.sim.rate_limited_count(),
        0,
        "{edge:?}: the upstream answered 429 at the window's edge"
    );
    let arrivals = c.sim.arrivals(SIM_READ_KEY);
    assert!(max_in_any_window(&arrivals, WINDOW) <= n as usize);
    eprintln!(
        "{edge:?}: first burst {admitted}/{}, reopened after {:?}, second burst {}/{}",
        2 * n,
        reopened.duration_since(t0),
        second.iter().filter(|r| r.status == 200).count(),
        2 * n
    );
    c.shutdown().await;
    drop(redis);
}

/// Takes about 62 s: the three scenarios run side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_at_the_window_edge_earn_no_upstream_429() {
    tokio::join!(
        bursts_at_the_window_edge(Edge::Memory, 10, Duration::from_millis(20)),
        bursts_at_the_window_edge(Edge::Redis { replicas: 1 }, 10, Duration::from_millis(20)),
        bursts_at_the_window_edge(Edge::Redis { replicas: 3 }, 10, Duration::from_millis(20)),
    );
}

/// Admitted requests that queue for the upstream connection longer than `budget_margin`
/// (five admitted at once, one connection, 400 ms each: the last arrives ~1.6 s after its
/// admission) must not earn an upstream 429 at the window's edge either: the gateway may not
/// count an admission from before the request can leave. Takes about 62 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_for_a_connection_earn_no_upstream_429_at_the_window_edge() {
    bursts_at_the_window_edge(Edge::Memory, 5, Duration::from_millis(400)).await;
}

#[tokio::test]
async fn the_test_redis_starts_answers_dies_and_comes_back_on_its_port() {
    let mut redis = RedisServer::start().await;
    assert!(redis.ping().await);
    assert_eq!(
        redis.cmd(&["SET", "k", "v", "PX", "60000"]).await.text(),
        Some("OK".into())
    );
    assert_eq!(redis.cmd(&["GET", "k"]).await.text(), Some("v".into()));
    assert!(redis.pttl("k").await > 0);
    assert_eq!(redis.keys("*").await, vec!["k".to_string()]);
    let port = redis.port();
    redis.kill().await;
    assert!(!redis.ping().await);
    assert!(tokio::net::TcpStream::connect(redis.addr()).await.is_err());
    redis.restart().await;
    assert_eq!(redis.port(), port);
    assert!(redis.ping().await);
    assert!(redis.keys("*").await.is_empty(), "no persistence");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_abandoned_by_its_client_releases_the_shared_lock() {
    let redis = RedisServer::start().await;
    let c = Cluster::start(Setup::new(1).redis(&redis.url(), "")).await;
    let bob = c.token("bob@corp.test");
    let list = "/api/v1/partnerships?view=all&search=abandoned";
    // The upstream answers after 10 s: the client gives up long before, while the replica
    // holds the L2 fetch lock (which would otherwise only expire after 4 s).
    c.sim.set_fault(Fault::Slow(Duration::from_secs(10)));
    let before = c.upstream_lists();
    let pending = {
        let c = &c;
        let bob = bob.clone();
        async move { c.get(0, list, &bob).await }
    };
    let locked = async {
        loop {
            if c.upstream_lists() > before && !redis.keys("*:lock:*").await.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        _ = pending => panic!("the slow list answered"),
        _ = locked => {}
    }
    // The client is gone (its request future dropped): the lock goes with it.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !redis.keys("*:lock:*").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the abandoned fetch's lock is still held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.sim.set_fault(Fault::None);
    c.shutdown().await;
}

/// The `Cache-Status` of `r`, which must say it was served stale for `detail`.
fn assert_stale(r: &Resp, detail: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-cache"), Some("STALE"), "{}", r.everything());
    let status = r.header("cache-status").unwrap_or_default();
    assert!(
        status.starts_with("journeybee-gateway; hit; ttl=-")
            && status.ends_with(&format!("; detail={detail}")),
        "{status}"
    );
    assert!(r.header("age").unwrap().parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn a_replica_out_of_budget_answers_from_the_stale_copy_another_replica_fetched() {
    let redis = RedisServer::start().await;
    // 3 a minute, none private (3 x floor(0.3) = 0): all shared; 1 in reserve for cold lists.
    let c = Cluster::start(
        Setup::new(3)
            .redis(&redis.url(), "")
            .read_rpm(3)
            .cache("ttl = \"1s\"\nstale_while_revalidate = \"0s\""),
    )
    .await;
    let bob = c.token("bob@corp.test");
    let list = "/api/v1/partnerships?view=all";
    let fetched = c.get(0, list, &bob).await;
    assert_eq!(fetched.header("x-cache"), Some("MISS"));
    for other in ["?view=reseller", "?view=referral"] {
        let r = c
            .get(0, &format!("/api/v1/partnerships{other}"), &bob)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(c.upstream_lists(), 3, "the key's budget is spent");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Replica 1 never had the list: the L2 keeps the expired copy, and with no budget
    // left to refresh it, that copy is the answer, with its honest age.
    let stale = c.get(1, list, &bob).await;
    assert_stale(&stale, "budget");
    assert_eq!(stale.body, fetched.body);
    assert_eq!(c.upstream_lists(), 3, "nothing was sent");
    // No copy anywhere: the honest 429, with Retry-After.
    let cold = c.get(2, "/api/v1/partnerships?view=assigned", &bob).await;
    cold.assert_error(429);
    assert!(cold.header("retry-after").is_some());
    assert_eq!(
        cold.header("cache-status"),
        Some("journeybee-gateway; fwd=uri-miss")
    );
    assert_eq!(c.upstream_lists(), 3);
    c.shutdown().await;
}

#[tokio::test]
async fn after_a_create_on_a_no_replica_serves_a_stale_copy_from_before_it() {
    let redis = RedisServer::start().await;
    let c = Cluster::start(
        Setup::new(3)
            .redis(&redis.url(), "")
            .cache("ttl = \"1s\"\nstale_while_revalidate = \"1m\""),
    )
    .await;
    let alice = c.token("alice@corp.test");
    let domain = fresh_domain("stalegen");
    let list = format!("/api/v1/partnerships?view=all&search={domain}");
    let before = c.get(1, &list, &alice).await;
    assert_eq!(before.header("x-cache"), Some("MISS"));
    assert!(!before.text().contains(&domain));
    assert_eq!(
        c.get(2, &list, &alice).await.header("x-cache"),
        Some("HIT"),
        "replica 2 holds the copy too"
    );
    let created = c.create(0, &alice, &create_body(&domain), None).await;
    assert_eq!(created.status, 201, "{}", created.text());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Upstream fails now: the copies from before the create are of an older generation, so
    // neither is served, stale or not. The failure is the answer.
    c.sim.set_fault(Fault::Status(503));
    for replica in [1, 2] {
        let r = c.get(replica, &list, &alice).await;
        assert_eq!(r.status, 503, "replica {replica}: {}", r.everything());
        assert!(!r.text().contains("partnerships"));
    }
    c.sim.set_fault(Fault::None);
    let after = c.get(1, &list, &alice).await;
    assert_eq!(after.header("x-cache"), Some("MISS"));
    assert!(after.text().contains(&domain), "{}", after.text());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_list_is_refreshed_once_across_replicas() {
    let redis = RedisServer::start().await;
    let c = Cluster::start(
        Setup::new(3)
            .redis(&redis.url(), "")
            .cache("ttl = \"1s\"\nstale_while_revalidate = \"1m\""),
    )
    .await;
    let bob = c.token("bob@corp.test");
    let list = "/api/v1/partnerships?view=all&tags=2";
    let first = c.get(0, list, &bob).await;
    assert_eq!(first.header("x-cache"), Some("MISS"));
    for replica in [1, 2] {
        assert_eq!(
            c.get(replica, list, &bob).await.header("x-cache"),
            Some("HIT")
        );
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // A slow upstream keeps the one refresh in flight while every replica is asked.
    c.sim.set_fault(Fault::Slow(Duration::from_millis(400)));
    let answers =
        futures_util::future::join_all((0..3).map(|replica| c.get(replica, list, &bob))).await;
    for r in &answers {
        assert_stale(r, "revalidating");
        assert_eq!(r.body, first.body);
    }
    // Every replica ends with the refreshed copy, and upstream saw one refresh.
    for replica in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = c.get(replica, list, &bob).await;
            if r.header("x-cache") == Some("HIT") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica {replica}: {}",
                r.everything()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(
        c.upstream_lists(),
        2,
        "one fetch, one refresh for three replicas"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bump_redis_missed_reaches_the_other_replicas_once_it_answers() {
    let redis = RedisServer::start().await;
    let c = Cluster::start(Setup::new(2).redis(&redis.url(), "")).await;
    let alice = c.token("alice@corp.test");
    let domain = fresh_domain("pending");
    let list = format!("/api/v1/partnerships?view=all&search={domain}");
    let before = c.get(1, &list, &alice).await;
    assert_eq!(before.header("x-cache"), Some("MISS"));
    assert_eq!(c.get(1, &list, &alice).await.header("x-cache"), Some("HIT"));
    // Redis stops answering (its data kept); replica 0 accepts a create on its private
    // share, and cannot bump the shared generation.
    redis.freeze();
    let created = c.create(0, &alice, &create_body(&domain), None).await;
    redis.thaw();
    assert_eq!(created.status, 201, "{}", created.text());
    // Nobody asks replica 0 anything: its pending bump goes out by itself, and replica 1's
    // copy from before the create stops being served.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = c.get(1, &list, &alice).await;
        assert_eq!(r.status, 200, "{}", r.text());
        if r.text().contains(&domain) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica 1 still serves the list from before the create: {}",
            r.everything()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.shutdown().await;
}

/// `jbgw_state_errors_total{op, kind}` from a `/metrics` text (0 when absent).
fn state_errors(metrics: &str, op: &str, kind: &str) -> f64 {
    let (op, kind) = (format!("op=\"{op}\""), format!("kind=\"{kind}\""));
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("jbgw_state_errors_total{") && l.contains(&op) && l.contains(&kind)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_error_fails_one_decision_and_never_marks_the_store_degraded() {
    // Issue 20 §3: a Lua error on every admission (there: a split that left no shared pool)
    // marked Redis degraded though it was up, and keyed creates got 503. Here the error is
    // made by storing a string where the read key's sliding log (a sorted set) lives.
    let redis = RedisServer::start().await;
    let c = Cluster::start(Setup::new(1).redis(&redis.url(), "")).await;
    let bob = c.token("bob@corp.test");
    let alice = c.token("alice@corp.test");
    assert_eq!(
        c.get(0, "/api/v1/partnerships?search=s0", &bob)
            .await
            .status,
        200
    );
    let logs = redis.keys("*:{read}:log").await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    redis.cmd(&["DEL", &logs[0]]).await;
    redis.cmd(&["SET", &logs[0], "not a sorted set"]).await;

    // Every list on the read key now meets the script error. Each is served from the
    // replica's private share (10 of 100 by default) or refused with a local 429, as with
    // the shared pool unavailable: never failed open, never 5xx.
    for i in 1..=5 {
        let r = c
            .get(0, &format!("/api/v1/partnerships?search=s{i}"), &bob)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The store is not taken for down: readiness says up, and a keyed create (which needs
    // the shared idempotency record) goes through.
    assert_eq!(
        c.ready_state(0).await,
        serde_json::json!({"backend": "redis", "status": "up"})
    );
    let r = c
        .create(
            0,
            &alice,
            &create_body(&fresh_domain("script")),
            Some("script-1"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let m = c.admin_get(0, "/metrics").await.text();
    assert_eq!(state_errors(&m, "admit", "script"), 5.0, "{m}");
    for kind in ["timeout", "transport", "skipped"] {
        assert_eq!(state_errors(&m, "admit", kind), 0.0, "{kind}: {m}");
    }
    assert!(m.contains("jbgw_state_backend_up 1"), "{m}");
    c.shutdown().await;
}

/// The value of one series in a metrics text.
fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// The replica's count of state commands `op` (a round trip each).
async fn state_commands(c: &Cluster, replica: usize, op: &str) -> f64 {
    let m = c.admin_get(replica, "/metrics").await.text();
    sample(
        &m,
        &format!("jbgw_state_command_duration_seconds_count{{op=\"{op}\"}}"),
    )
    .unwrap_or(0.0)
}

async fn wait_for_watch(c: &Cluster, replica: usize, up: bool) {
    let want = format!("jbgw_state_generation_watch_up {}", u8::from(up));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c
        .admin_get(replica, "/metrics")
        .await
        .text()
        .contains(&want)
    {
        assert!(Instant::now() < deadline, "replica {replica}: no {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `rounds` times: B caches a list, A creates what that list should then show, B lists at
/// once. Returns how many of B's lists were from before the create.
async fn create_on_a_list_on_b(c: &Cluster, rounds: usize, tag: &str) -> usize {
    let alice = c.token("alice@corp.test");
    let mut stale = 0;
    for i in 0..rounds {
        let domain = fresh_domain(&format!("{tag}{i}"));
        let list = format!("/api/v1/partnerships?view=all&search={domain}");
        let before = c.get(1, &list, &alice).await;
        assert_eq!(before.status, 200, "{}", before.text());
        let created = c.create(0, &alice, &create_body(&domain), None).await;
        assert_eq!(created.status, 201, "{}", created.text());
        let after = c.get(1, &list, &alice).await;
        assert_eq!(after.status, 200, "{}", after.text());
        if !after.text().contains(&domain) {
            stale += 1;
        }
    }
    stale
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_asks_redis_nothing_and_a_thousand_creates_on_a_are_seen_at_once_on_b() {
    let redis = RedisServer::start().await;
    let c = Arc::new(
        Cluster::start(
            Setup::new(2)
                .redis(&redis.url(), "")
                .write_rpm("\"unlimited\""),
        )
        .await,
    );
    for replica in 0..2 {
        wait_for_watch(&c, replica, true).await;
    }
    // A hit costs no round trip: the generation is known from the bump channel.
    let bob = c.token("bob@corp.test");
    let list = "/api/v1/partnerships?view=reseller";
    assert_eq!(c.get(1, list, &bob).await.header("x-cache"), Some("MISS"));
    // 50 hits in a row with no read (a few tries: a missed heartbeat on a busy machine makes
    // the replica resubscribe, which costs reads, never a stale list).
    let mut clean = false;
    for _ in 0..10 {
        let reads = state_commands(&c, 1, "generation").await;
        for _ in 0..50 {
            assert_eq!(c.get(1, list, &bob).await.header("x-cache"), Some("HIT"));
        }
        if state_commands(&c, 1, "generation").await == reads {
            clean = true;
            break;
        }
    }
    assert!(clean, "hits kept reading the generation from Redis");
    // Under load on B (other users' lists, hits and misses), 1,000 rounds of "create on A,
    // list at once on B": never a list from before the create.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (c, stop) = (c.clone(), stop.clone());
        tokio::spawn(async move {
            let bob = c.token("bob@corp.test");
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let list = format!("/api/v1/partnerships?view=all&tags={}", n % 7 + 1);
                let r = c.get(1, &list, &bob).await;
                assert_eq!(r.status, 200);
                n += 1;
            }
            n
        })
    };
    let stale = create_on_a_list_on_b(&c, 1000, "watch").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let background = load.await.unwrap();
    eprintln!("1,000 rounds with {background} background lists on B");
    assert_eq!(stale, 0, "lists from before the create served on B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bump_channel_killed_mid_run_falls_back_to_reads_and_recovers() {
    let redis = RedisServer::start().await;
    let c = Cluster::start(
        Setup::new(2)
            .redis(&redis.url(), "")
            .write_rpm("\"unlimited\""),
    )
    .await;
    for replica in 0..2 {
        wait_for_watch(&c, replica, true).await;
    }
    assert_eq!(create_on_a_list_on_b(&c, 20, "before").await, 0);
    // Every subscriber connection dropped by the server: the replicas stop trusting what
    // they know, read generations again (no stale list meanwhile), then resubscribe.
    let killed = redis.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    assert!(killed.int() >= 2, "{killed:?}");
    for replica in 0..2 {
        wait_for_watch(&c, replica, false).await;
    }
    let reads = state_commands(&c, 1, "generation").await;
    assert_eq!(create_on_a_list_on_b(&c, 20, "during").await, 0);
    for replica in 0..2 {
        wait_for_watch(&c, replica, true).await;
    }
    assert_eq!(create_on_a_list_on_b(&c, 20, "after").await, 0);
    assert!(
        state_commands(&c, 1, "generation").await > reads,
        "B read generations while the channel was down"
    );
    // Back to hits without a round trip.
    let bob = c.token("bob@corp.test");
    let list = "/api/v1/partnerships?view=referral";
    // Back to hits that read nothing: 20 in a row (a busy machine may make the subscription
    // miss a heartbeat and resubscribe, which only costs reads, so a few tries are allowed).
    let mut clean = false;
    for _ in 0..20 {
        c.get(1, list, &bob).await;
        let reads = state_commands(&c, 1, "generation").await;
        for _ in 0..20 {
            assert_eq!(c.get(1, list, &bob).await.header("x-cache"), Some("HIT"));
        }
        if state_commands(&c, 1, "generation").await == reads {
            clean = true;
            break;
        }
    }
    assert!(
        clean,
        "hits kept reading generations after the channel came back"
    );
    c.shutdown().await;
}

/// `calls` of `cmdstat_<command>` in the server's `INFO commandstats` (0 when absent).
async fn redis_calls(redis: &RedisServer, command: &str) -> u64 {
    let info = redis
        .cmd(&["INFO", "commandstats"])
        .await
        .text()
        .unwrap_or_default();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_create_costs_three_redis_round_trips_its_settle_riding_with_the_bump() {
    // Issue 21 §2: claim, admit, and the settle and the bump as one script (four before).
    let redis = RedisServer::start().await;
    let c = Cluster::start(Setup::new(2).redis(&redis.url(), "")).await;
    wait_for_watch(&c, 0, true).await;
    wait_for_watch(&c, 1, true).await;
    let alice = c.token("alice@corp.test");
    // Warm-up: every script loaded, the company's lookups cached.
    let warm = c
        .create(0, &alice, &create_body(&fresh_domain("rt0")), Some("rt-0"))
        .await;
    assert_eq!(warm.status, 201, "{}", warm.text());
    const OPS: [&str; 5] = ["claim", "admit", "settle", "bump", "settle_bump"];
    let mut before = [0.0; OPS.len()];
    for (n, op) in before.iter_mut().zip(OPS) {
        *n = state_commands(&c, 0, op).await;
    }
    // Counted on the server: every EVALSHA is one round trip (nothing else runs a script
    // meanwhile; the replicas' pings and acknowledgements are not scripts).
    let evalsha = redis_calls(&redis, "evalsha").await;
    let domain = fresh_domain("rt1");
    let created = c
        .create(0, &alice, &create_body(&domain), Some("rt-1"))
        .await;
    let evalsha = redis_calls(&redis, "evalsha").await - evalsha;
    assert_eq!(created.status, 201, "{}", created.text());
    let mut sent = [0.0; OPS.len()];
    for (n, (op, was)) in sent.iter_mut().zip(OPS.iter().zip(before)) {
        *n = state_commands(&c, 0, op).await - was;
    }
    assert_eq!(
        sent,
        [1.0, 1.0, 0.0, 0.0, 1.0],
        "round trips by op {OPS:?} (evalsha on the server: {evalsha})"
    );
    assert_eq!(evalsha, 3, "claim, admit, settle + bump");

    // The record holds the real outcome: a repeat, on either replica, is its replay.
    for replica in [1, 0] {
        let again = c
            .create(replica, &alice, &create_body(&domain), Some("rt-1"))
            .await;
        assert_eq!(again.status, 201, "{}", again.text());
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.body, created.body);
    }
    assert_eq!(c.upstream_creates(), 2);
    // And the bump was seen before the answer: the other replica lists the new partner.
    let list = format!("/api/v1/partnerships?view=all&search={domain}");
    let after = c.get(1, &list, &alice).await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert!(after.text().contains(&domain), "{}", after.text());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_settle_with_bump_leaves_a_pending_bump_and_settles_the_record_on_its_own() {
    // The combined call fails (here a script error: the generation is made a hash, so the
    // script's INCR is refused). The fallbacks are those of the two calls it replaced: the
    // bump becomes a pending one, retried until the store takes it, and the record is settled
    // by a call of its own, with the real outcome.
    let redis = RedisServer::start().await;
    let c = Cluster::start(Setup::new(1).redis(&redis.url(), "")).await;
    wait_for_watch(&c, 0, true).await;
    let alice = c.token("alice@corp.test");
    let warm = c
        .create(0, &alice, &create_body(&fresh_domain("fb0")), Some("fb-0"))
        .await;
    assert_eq!(warm.status, 201, "{}", warm.text());
    let gens = redis.keys("*:gen:partnerships").await;
    assert_eq!(gens.len(), 1, "{gens:?}");
    let generation: i64 = redis
        .cmd(&["GET", &gens[0]])
        .await
        .text()
        .unwrap()
        .parse()
        .unwrap();
    redis.cmd(&["DEL", &gens[0]]).await;
    redis.cmd(&["HSET", &gens[0], "not", "a counter"]).await;

    let settles = state_commands(&c, 0, "settle").await;
    let domain = fresh_domain("fb1");
    let created = c
        .create(0, &alice, &create_body(&domain), Some("fb-1"))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let m = c.admin_get(0, "/metrics").await.text();
    assert_eq!(state_errors(&m, "settle_bump", "script"), 1.0, "{m}");
    assert_eq!(state_commands(&c, 0, "settle").await - settles, 1.0);
    let again = c
        .create(0, &alice, &create_body(&domain), Some("fb-1"))
        .await;
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, created.body);
    assert_eq!(c.upstream_creates(), 2);

    // Once the store can take it, the pending bump goes out by itself.
    redis.cmd(&["DEL", &gens[0]]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(now) = redis.cmd(&["GET", &gens[0]]).await.text() {
            assert_ne!(now.parse::<i64>().unwrap(), generation);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pending bump never reached Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.shutdown().await;
}
