//! Read-your-writes on one replica while the shared store is down: a list fetched before a
//! create is never stored (and served) as fresh after it, whatever the store's state.

mod common;

use bytes::Bytes;
use common::redis::RedisServer;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (hold, held, release) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Notify::new()),
        );
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let shared = (hold.clone(), held.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, sim_base, shared) = (client.clone(), sim_base.clone(), shared.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (client, sim_base, (hold, held, release)) =
                            (client.clone(), sim_base.clone(), shared.clone());
                        async move {
                            let is_get = req.method() == http::Method::GET;
                            let (mut parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            parts.uri = format!(
                                "{sim_base}{}",
                                parts.uri.path_and_query().map_or("/", |p| p.as_str())
                            )
                            .parse()
                            .unwrap();
                            parts.headers.remove(http::header::HOST);
                            let resp = client
                                .request(Request::from_parts(parts, Full::new(body)))
                                .await
                                .unwrap();
                            let (parts, body) = resp.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            if is_get && hold.load(Ordering::SeqCst) {
                                let released = release.notified();
                                held.fetch_add(1, Ordering::SeqCst);
                                released.await;
                            }
                            Ok::<_, hyper::Error>(Response::from_parts(parts, Full::new(body)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
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
