//! Tower's contract: every service of the stack polls the one below for readiness and calls
//! the service it polled, and the connection drives readiness with the request's waker. So a
//! standard tower layer works anywhere: here `ConcurrencyLimit` with a limit of 1, inside the
//! stack (around the upstream forward) and around the whole of it, in front of a slow
//! upstream. Requests wait their turn; none fails, and the upstream never has two at once.

mod common;

use common::*;
use http::Method;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use journeybee_gateway::server::{Gateway, StackBuilder};
use journeybee_gateway::stack::{build_stack, build_stack_with};
use journeybee_sim::{Fault, Simulator};
use std::sync::Arc;
use std::time::Duration;
use tower::limit::ConcurrencyLimitLayer;
use tower::util::BoxCloneSyncService;
use tower::Layer;

const LIST: &str = "/api/v1/partnerships";
const SLOW: Duration = Duration::from_millis(150);

async fn harness(build: StackBuilder) -> Harness {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let ids = sim.user_ids();
    let dir = TestDir::new();
    let path = write_config(&dir, &Opts::default(), &sim);
    let settings = journeybee_gateway::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let gw = Gateway::start_with(settings, build).await.unwrap();
    sim.set_fault(Fault::Slow(SLOW));
    Harness {
        base: format!("http://{}", gw.addr()),
        admin: format!("http://{}", gw.admin_addr()),
        sim,
        gw: Some(gw),
        client: Client::builder(TokioExecutor::new()).build_http(),
        dir,
        auth: AuthMode::Hs256,
        alice_id: ids[0],
        bob_id: ids[1],
        carol_id: ids[2],
    }
}

/// Reads (around the cache) and creates at once, each on a connection of its own; every one
/// succeeds, and the upstream saw them one at a time.
async fn concurrent_requests_wait_their_turn(h: &Harness) {
    let bob = h.token("bob@corp.test");
    let alice = h.token("alice@corp.test");
    let mut tasks = Vec::new();
    for n in 0..6 {
        let req = if n % 3 == 2 {
            h.request(Method::POST, LIST, Some(&alice))
                .header("content-type", "application/json")
                .body(Full::new(create_body(&format!("limit-{n}.example")).into()))
                .unwrap()
        } else {
            h.request(Method::GET, LIST, Some(&bob))
                .header("cache-control", "no-store")
                .body(Full::new(Default::default()))
                .unwrap()
        };
        // A client each: a connection each, so the limit is met across connections.
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
        tasks.push(tokio::spawn(async move {
            let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
                .await
                .expect("answered (not stuck waiting for readiness)")
                .expect("answered");
            (n, resp.status().as_u16())
        }));
    }
    for t in tasks {
        let (n, status) = t.await.unwrap();
        let want = if n % 3 == 2 { 201 } else { 200 };
        assert_eq!(status, want, "request {n}");
    }
    let mut arrivals: Vec<_> = h.sim.requests().iter().map(|r| r.received_at).collect();
    assert_eq!(arrivals.len(), 6);
    arrivals.sort();
    // Each waits SLOW upstream: one at a time means arrivals at least SLOW apart.
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap + Duration::from_millis(1) >= SLOW,
            "two requests upstream at once: {gap:?} apart"
        );
    }
}

#[tokio::test]
async fn a_concurrency_limit_around_the_upstream_forward_makes_requests_wait_not_fail() {
    let mut h = harness(Arc::new(|state| {
        BoxCloneSyncService::new(build_stack_with::<Incoming, _>(
            state,
            ConcurrencyLimitLayer::new(1),
        ))
    }))
    .await;
    concurrent_requests_wait_their_turn(&h).await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_concurrency_limit_around_the_whole_stack_makes_connections_wait_not_hang() {
    let mut h = harness(Arc::new(|state| {
        BoxCloneSyncService::new(
            ConcurrencyLimitLayer::new(1).layer(build_stack::<Incoming>(state)),
        )
    }))
    .await;
    concurrent_requests_wait_their_turn(&h).await;
    h.shutdown().await;
}

/// A read's retries go through the limit too: each attempt on a clone polled ready, so the
/// retries are sent (one try and two retries) and the upstream's answer comes back.
#[tokio::test]
async fn retries_wait_for_readiness_like_first_attempts() {
    let mut h = harness(Arc::new(|state| {
        BoxCloneSyncService::new(build_stack_with::<Incoming, _>(
            state,
            ConcurrencyLimitLayer::new(1),
        ))
    }))
    .await;
    h.sim.set_fault(Fault::Status(503));
    let r = h.get(LIST, Some(&h.token("bob@corp.test"))).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(h.upstream_count(), 3, "one try and two retries");
    h.shutdown().await;
}
