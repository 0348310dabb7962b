//! Heap allocations per request on the gateway's request path: a counting global allocator,
//! the real stack (`stack::build_stack`, the function `main` uses) driven in-process, and a
//! static upstream on its own thread (its allocations are not counted). For a cache hit, a
//! miss (cache off) and a create, it prints the allocations and bytes per request, averaged
//! over many requests after a warm-up, with the access log on at `info` (JSON, written to a
//! sink) as in production.
//!
//! `cargo bench --bench allocations` (results: `bench/results/allocations.md`).

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use journeybee_gateway::generation::AppState;
use journeybee_gateway::history::{History, Shared};
use journeybee_gateway::stack::build_stack;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use tower::{Service, ServiceExt};

/// Counts allocations made on threads that opted in (the gateway's), not the upstream's.
struct Counting;

thread_local! {
    static COUNT: Cell<(bool, u64, u64)> = const { Cell::new((false, 0, 0)) };
}

/// Bytes allocated and not yet freed, on every thread.
static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    // `try_with`: thread-local storage may be gone while a thread exits.
    let _ = COUNT.try_with(|c| {
        let (on, n, bytes) = c.get();
        if on {
            c.set((on, n + 1, bytes + size as u64));
        }
    });
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn counting(on: bool) {
    COUNT.with(|c| c.set((on, 0, 0)));
}

fn counted() -> (u64, u64) {
    COUNT.with(|c| {
        let (_, n, b) = c.get();
        (n, b)
    })
}

const SECRET: &str = "bench-hmac-secret-0123456789abcdef-0123456789";
const LIST: &[u8] = include_bytes!("../bench/partnerships.json");
const CREATE: &str = r#"{"name":"Some Company Ltd","emails":[{"email":"jane.doe@some-company.com","firstName":"Jane","lastName":"Doe"}],"partnerType":"referral","tierId":2,"categoryId":3,"countryId":1,"tags":[10,11],"inactive":true}"#;

/// The static upstream: the list for a GET, 201 for a POST, on its own thread and runtime.
fn upstream() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let post = req.method() == Method::POST;
                        let _ = req.into_body().collect().await;
                        let (status, body) = if post {
                            (201, Bytes::from_static(br#"{"status":"created","id":1}"#))
                        } else {
                            (200, Bytes::from_static(LIST))
                        };
                        let mut resp = http::Response::new(Full::new(body));
                        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        resp.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(resp)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    addr
}

fn config(upstream: std::net::SocketAddr, cache: bool, dir: &std::path::Path) -> String {
    std::fs::write(dir.join("write.key"), "jb_bench_key").unwrap();
    std::fs::write(dir.join("jwt.secret"), SECRET).unwrap();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[upstream]
base_url = "http://{upstream}"

[upstream.keys.write]
secret_file = "write.key"
read = true
write = true
requests_per_minute = 1000000

[auth]
algorithms = ["HS256"]
issuer = "https://idp.bench"
audience = "journeybee-gateway"

[[auth.keys]]
hmac_secret_file = "jwt.secret"

[[users]]
subject = "bench@corp.test"
name = "bench"
upstream_key = "write"
user_id = 456
access = "write"

[validation]
own_domains = ["corp.test"]
check_references = false

[cache]
enabled = {cache}
"#
    )
}

fn token() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "sub": "bench@corp.test", "iss": "https://idp.bench",
        "aud": "journeybee-gateway", "iat": now, "exp": now + 3600,
    });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn state(upstream: std::net::SocketAddr, cache: bool) -> Arc<AppState> {
    let dir = std::env::temp_dir().join(format!("jbgw-alloc-{}-{cache}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = config(upstream, cache, &dir);
    let settings = journeybee_gateway::config::from_toml(&text, &dir).unwrap();
    let shared = Arc::new(Shared {
        metrics: journeybee_gateway::metrics::Metrics::new(),
        in_flight: Arc::new(AtomicUsize::new(0)),
        ready: AtomicBool::new(true),
        history: History::new(),
    });
    let state = AppState::new(settings, shared).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    state
}

fn request(method: Method, token: &str) -> Request<Full<Bytes>> {
    request_to(
        method,
        token,
        http::Uri::from_static("/api/v1/partnerships"),
    )
}

fn request_to(method: Method, token: &str, uri: http::Uri) -> Request<Full<Bytes>> {
    let body = if method == Method::POST {
        Bytes::from_static(CREATE.as_bytes())
    } else {
        Bytes::new()
    };
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    h.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    h.insert(http::header::HOST, http::HeaderValue::from_static("gw"));
    req
}

/// Allocations and bytes per request for `n` requests after `warm` uncounted ones.
async fn measure(
    state: &AppState,
    method: Method,
    token: &str,
    warm: usize,
    n: usize,
) -> (f64, f64) {
    let mut stack = build_stack::<Full<Bytes>>(state);
    for _ in 0..warm {
        let resp = stack
            .ready()
            .await
            .unwrap()
            .call(request(method.clone(), token))
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    let reqs: Vec<_> = (0..n).map(|_| request(method.clone(), token)).collect();
    counting(true);
    for req in reqs {
        let resp = stack.ready().await.unwrap().call(req).await.unwrap();
        assert!(resp.status().is_success());
        drop(resp);
    }
    let (allocs, bytes) = counted();
    counting(false);
    (allocs as f64 / n as f64, bytes as f64 / n as f64)
}

/// Lists `from..to` of distinct searches, each a miss the cache stores.
async fn fill<S>(stack: &mut S, token: &str, from: usize, to: usize)
where
    S: Service<Request<Full<Bytes>>, Response = journeybee_gateway::error::Response>,
    S::Error: std::fmt::Debug,
{
    for i in from..to {
        let uri = http::Uri::try_from(format!("/api/v1/partnerships?search=q{i}")).unwrap();
        let resp = stack
            .ready()
            .await
            .unwrap()
            .call(request_to(Method::GET, token, uri))
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-cache"], "MISS");
    }
}

/// What `n` distinct cached lists keep alive, per entry, against what the cache's weigher
/// counts for them (the figure `[cache] capacity` bounds).
async fn retained(state: &AppState, token: &str, n: usize) -> (f64, f64) {
    let mut stack = build_stack::<Full<Bytes>>(state);
    // The first entries pay for what is made once (connections, maps' first growth).
    fill(&mut stack, token, 0, 50).await;
    let (live, weight) = (
        LIVE.load(Ordering::Relaxed),
        state.cache.weighted_size().await,
    );
    fill(&mut stack, token, 50, 50 + n).await;
    let live = LIVE.load(Ordering::Relaxed) - live;
    let weight = state.cache.weighted_size().await as i64 - weight as i64;
    (live as f64 / n as f64, weight as f64 / n as f64)
}

fn main() {
    // `cargo test --benches` runs this too: keep that quick.
    let quick = std::env::args().any(|a| a == "--test" || a == "--list");
    let (warm, n) = if quick { (5, 20) } else { (200, 5000) };
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::sink)
        .init();
    let upstream = upstream();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = token();
    rt.block_on(async {
        let cached = state(upstream, true).await;
        let uncached = state(upstream, false).await;
        let hit = measure(&cached, Method::GET, &token, warm, n).await;
        let miss = measure(&uncached, Method::GET, &token, warm, n).await;
        let create = measure(&cached, Method::POST, &token, warm, n).await;
        // The part of a create that is the body's own validation (JSON parse included).
        let rules = journeybee_gateway::validate::body::BodyRules::default();
        counting(true);
        for _ in 0..n {
            let v = journeybee_gateway::validate::body::validate_create_value(
                CREATE.as_bytes(),
                &rules,
            );
            assert!(v.is_ok());
        }
        let (va, vb) = counted();
        counting(false);
        let validation = (va as f64 / n as f64, vb as f64 / n as f64);
        let entries = if quick { 50 } else { 2000 };
        let (kept, weighed) = retained(&*state(upstream, true).await, &token, entries).await;
        println!("| path | allocations / request | bytes allocated / request |");
        println!("|---|--:|--:|");
        for (name, (a, b)) in [
            ("hit", hit),
            ("miss (cache off)", miss),
            ("create", create),
            ("(of which: create body validation)", validation),
        ] {
            println!("| {name} | {a:.1} | {b:.0} |");
        }
        println!();
        println!(
            "{entries} cached lists (1911-byte body each): {kept:.0} bytes kept alive per entry, {weighed:.0} counted by the cache's weigher"
        );
    });
}
