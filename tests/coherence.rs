//! Read-your-writes on one replica while the shared store is down: a list fetched before a
//! create is never stored (and served) as fresh after it, whatever the store's state.

mod common;

use bytes::Bytes;
use common::proxy;
use common::redis::RedisServer;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// An HTTP proxy in front of the simulator that, while `hold` is set, keeps each list's
/// answer (already produced upstream) until `release`: a list that left before a create
/// and arrives after it.
struct HoldProxy {
    url: String,
    hold: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
    release: Arc<Notify>,
}

impl HoldProxy {
    async fn start(sim_base: String) -> HoldProxy {
        let (hold, held, release) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Notify::new()),
        );
        let shared = (hold.clone(), held.clone(), release.clone());
        let url = proxy::start(sim_base, move |upstream, req: Request<Incoming>| {
            let (hold, held, release) = shared.clone();
            async move {
                let is_get = req.method() == http::Method::GET;
                let answer = upstream.forward(req).await?;
                if is_get && hold.load(Ordering::SeqCst) {
                    let released = release.notified();
                    held.fetch_add(1, Ordering::SeqCst);
                    released.await;
                }
                Ok(answer)
            }
        })
        .await;
        HoldProxy {
            url,
            hold,
            held,
            release,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_fetched_before_a_create_is_not_stored_after_it_while_redis_is_down() {
    let mut redis = RedisServer::start().await;
    let h = Harness::with(Opts {
        tail: format!(
            "[state]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"coherence-{}\"\ncommand_timeout = \"500ms\"\n",
            redis.url(),
            std::process::id()
        ),
        ..Opts::default()
    })
    .await;
    let proxy = HoldProxy::start(h.sim.base_url()).await;
    let sim = h.sim.base_url();
    assert!(h.reload(|text| text.replace(&sim, &proxy.url)).await);
    let alice = h.token("alice@corp.test");
    let domain = format!("epoch-{}.example", now());
    let list = format!("/api/v1/partnerships?view=all&search={domain}");

    // A list fetch whose answer (from before the create) is held on its way back...
    proxy.hold.store(true, Ordering::SeqCst);
    let pending = {
        let (client, req) = (
            h.client.clone(),
            h.request(http::Method::GET, &list, Some(&alice))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        );
        tokio::spawn(async move { client.request(req).await.unwrap().status() })
    };
    eventually(
        "the list's answer to be held",
        std::time::Duration::from_secs(10),
        || proxy.held.load(Ordering::SeqCst) == 1,
    )
    .await;
    proxy.hold.store(false, Ordering::SeqCst);
    // ...Redis goes away, and a create is accepted on this replica meanwhile.
    redis.kill().await;
    let created = h
        .post_json("/api/v1/partnerships", Some(&alice), &create_body(&domain))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    proxy.release.notify_waiters();
    assert_eq!(pending.await.unwrap(), 200);
    // The answer fetched before the create was not stored as fresh after it.
    let after = h.get(&list, Some(&alice)).await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert_ne!(
        after.header("x-cache"),
        Some("HIT"),
        "{}",
        after.everything()
    );
    assert!(after.text().contains(&domain), "{}", after.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bump_redis_missed_is_flushed_before_shutdown_ends() {
    use common::binary::GatewayProcess;
    let redis = RedisServer::start().await;
    let sim = journeybee_sim::Simulator::start("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let dir = TestDir::new();
    let opts = Opts {
        tail: format!(
            "[log]\nformat = \"json\"\n[state]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"flush-{}\"\ncommand_timeout = \"200ms\"\n",
            redis.url(),
            std::process::id()
        ),
        ..Opts::default()
    };
    let path = write_config(&dir, &opts, &sim);
    let (a, b) = (GatewayProcess::start(&path), GatewayProcess::start(&path));
    let ((a_base, _), (b_base, _)) = (a.listening().await, b.listening().await);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let alice = sign(AuthMode::Hs256, &default_claims("alice@corp.test"));
    let domain = format!("flush-{}.example", now());
    let list = format!("/api/v1/partnerships?view=all&search={domain}");
    let get = |base: &str| {
        let req = Request::get(format!("{base}{list}"))
            .header("authorization", format!("Bearer {alice}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let client = client.clone();
        async move {
            let resp = client.request(req).await.unwrap();
            let cache = resp.headers().get("x-cache").cloned();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (cache, String::from_utf8_lossy(&body).into_owned())
        }
    };
    // B holds the list from before the create.
    get(&b_base).await;
    let (cache, body) = get(&b_base).await;
    assert_eq!(cache.as_ref().map(|v| v.to_str().unwrap()), Some("HIT"));
    assert!(!body.contains(&domain));
    // Redis stops answering; A accepts a create on its private share, its bump pending.
    redis.freeze();
    let create = Request::post(format!("{a_base}/api/v1/partnerships"))
        .header("authorization", format!("Bearer {alice}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(create_body(&domain))))
        .unwrap();
    assert_eq!(client.request(create).await.unwrap().status(), 201);
    // A rolling deploy stops A before Redis is back: A must not leave with the bump.
    a.terminate();
    a.wait_for("the shutdown to wait for the pending bump", |lines| {
        lines.iter().any(|l| {
            l["fields"]["message"]
                .as_str()
                .or(l["message"].as_str())
                .is_some_and(|m| m.contains("pending cache invalidations"))
        })
    })
    .await;
    redis.thaw();
    let (out, _) = a.wait();
    assert!(
        !out.iter()
            .any(|l| l.contains("never reached the other replicas")),
        "{out:?}"
    );
    // B, asked nothing meanwhile, no longer serves the list from before the create.
    let (cache, body) = get(&b_base).await;
    assert_ne!(cache.as_ref().map(|v| v.to_str().unwrap()), Some("HIT"));
    assert!(body.contains(&domain), "{body}");
    b.stop();
}
