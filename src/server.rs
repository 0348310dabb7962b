//! Listeners, the stack, the admin endpoints and graceful shutdown.

use crate::audit::AuditLayer;
use crate::auth::{AuthLayer, Verifier};
use crate::cache::{CacheLayer, ListCache};
use crate::config::Settings;
use crate::error::{json_error, Response};
use crate::guard::{GuardLayer, GuardState, Resilience};
use crate::identity::IdentityLayer;
use crate::limits::{Limits, LimitsLayer};
use crate::lock;
use crate::metrics::Metrics;
use crate::observe::ObserveLayer;
use crate::policy::PolicyLayer;
use crate::replay::ReplayLayer;
use crate::route::RouteLayer;
use crate::state::memory::MemoryStore;
use crate::state::redis::RedisStore;
use crate::state::SharedStore;
use crate::upstream::{build_client, Upstream};
use crate::validate::ValidateLayer;
use crate::validate::ValidationSettings;
use crate::BoxFuture;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder};

/// What outlives a config reload: the metrics registry, the in-flight counter the limits
/// layer sheds on, readiness, and the history.
pub struct Shared {
    /// Metrics registry and handles.
    pub metrics: Arc<Metrics>,
    /// Requests in progress across every generation of the stack.
    pub in_flight: Arc<AtomicUsize>,
    /// Set once both listeners accept; cleared on shutdown.
    pub ready: AtomicBool,
    /// State a reload keeps.
    pub history: History,
}

/// History: what a reload changes configuration around, never forgets. Each part is reused
/// by the next generation unless its own settings changed.
pub struct History {
    /// In-process budgets, idempotency records and generations: the memory backend itself,
    /// and the private budget shares beside a shared backend.
    local: Arc<MemoryStore>,
    /// The shared backend, with the settings it was built for.
    shared: std::sync::Mutex<Option<(crate::state::redis::RedisSettings, SharedStore)>>,
    /// The breaker and the retry budget.
    resilience: std::sync::Mutex<Option<Arc<Resilience>>>,
    /// The list cache.
    cache: std::sync::Mutex<Option<Arc<ListCache>>>,
    /// The upstream connection pool, with the settings it was built for.
    client: std::sync::Mutex<Option<(ClientKey, crate::upstream::HttpClient)>>,
    /// The last good JWKS document of each issuer and key source: a new generation starts
    /// from it, so a reload during an IdP outage keeps the keys that work.
    jwks: Arc<crate::auth::jwks::KeyMemory>,
}

/// What the upstream client is built from: a reload with the same keeps the pool.
#[derive(Debug, Clone, PartialEq)]
struct ClientKey {
    extra_ca_file: Option<std::path::PathBuf>,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    digest: [u8; 32],
}

impl ClientKey {
    fn of(up: &crate::config::UpstreamSettings) -> ClientKey {
        // The CA file's content counts: a renewed bundle at the same path must rebuild.
        let ca = up
            .extra_ca_file
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .unwrap_or_default();
        let digest = crate::state::Fingerprint::of(&ca).0;
        ClientKey {
            extra_ca_file: up.extra_ca_file.clone(),
            connect_timeout: up.connect_timeout,
            pool_idle_timeout: up.pool_idle_timeout,
            pool_max_idle_per_host: up.pool_max_idle_per_host,
            digest,
        }
    }
}

impl History {
    /// Empty history, for a process's first generation.
    pub fn new() -> History {
        History {
            local: Arc::new(MemoryStore::new(16 << 20)),
            shared: std::sync::Mutex::new(None),
            resilience: std::sync::Mutex::new(None),
            cache: std::sync::Mutex::new(None),
            client: std::sync::Mutex::new(None),
            jwks: Default::default(),
        }
    }

    /// The store for `settings`: the same one as before unless the backend changed.
    async fn store(
        &self,
        settings: &Settings,
        metrics: &Arc<Metrics>,
    ) -> Result<SharedStore, String> {
        self.local.set_capacity(settings.idempotency.capacity);
        match &settings.state.backend {
            crate::config::Backend::Memory => {
                metrics.state().set_up(true);
                Ok(self.local.clone())
            }
            crate::config::Backend::Redis(redis) => {
                if let Some((s, store)) = &*lock(&self.shared) {
                    if s == redis {
                        return Ok(store.clone());
                    }
                }
                let store = Arc::new(RedisStore::new(redis, metrics.clone())?);
                if !store.probe().await {
                    tracing::warn!(
                        "state backend unreachable at start: serving degraded until it answers"
                    );
                }
                let store: SharedStore = store;
                *lock(&self.shared) = Some((redis.clone(), store.clone()));
                Ok(store)
            }
        }
    }

    fn resilience(&self, settings: &Settings) -> Arc<Resilience> {
        let mut r = lock(&self.resilience);
        match &*r {
            Some(existing) if existing.fits(&settings.upstream) => existing.clone(),
            _ => {
                let fresh = Resilience::new(&settings.upstream);
                *r = Some(fresh.clone());
                fresh
            }
        }
    }

    fn cache(
        &self,
        settings: &Settings,
        store: &SharedStore,
        metrics: &Arc<Metrics>,
    ) -> Arc<ListCache> {
        let mut c = lock(&self.cache);
        let degraded = settings.state.degraded_max_age;
        match &*c {
            Some(existing) if existing.fits(&settings.cache, store, degraded) => existing.clone(),
            _ => {
                let fresh =
                    ListCache::new(&settings.cache, store.clone(), degraded, metrics.clone());
                *c = Some(fresh.clone());
                fresh
            }
        }
    }

    fn client(&self, settings: &Settings) -> Result<crate::upstream::HttpClient, String> {
        let key = ClientKey::of(&settings.upstream);
        let mut c = lock(&self.client);
        if let Some((k, client)) = &*c {
            if *k == key {
                return Ok(client.clone());
            }
        }
        let client = build_client(&settings.upstream)?;
        *c = Some((key, client.clone()));
        Ok(client)
    }
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

/// Everything one generation of the stack uses, built from one validated config.
pub struct AppState {
    /// The validated config.
    pub settings: Arc<Settings>,
    /// Metrics registry and handles (shared across generations).
    pub metrics: Arc<Metrics>,
    /// JWT verification.
    pub verifier: Arc<Verifier>,
    /// Validation rules.
    pub validation: Arc<ValidationSettings>,
    /// The list cache.
    pub cache: Arc<ListCache>,
    /// The pooled upstream client.
    pub client: crate::upstream::HttpClient,
    /// Budgets, breaker and retry state in front of upstream.
    pub guard: Arc<GuardState>,
    /// The state store (memory or shared).
    pub store: SharedStore,
    /// Stored create outcomes for Idempotency-Key.
    pub replay: ReplayLayer,
    /// State that outlives this generation.
    pub shared: Arc<Shared>,
}

impl AppState {
    /// Builds a generation's state from `settings`, reusing every part of the history whose
    /// settings did not change.
    pub async fn new(settings: Settings, shared: Arc<Shared>) -> Result<Arc<AppState>, String> {
        let metrics = shared.metrics.clone();
        let history = &shared.history;
        let client = history.client(&settings)?;
        let fetcher = Arc::new(crate::auth::fetch::HttpFetcher::for_auth(
            client.clone(),
            &settings.auth,
        ));
        let verifier = Arc::new(
            Verifier::build_remembering(&settings.auth, fetcher, history.jwks.clone()).await,
        );
        let validation = Arc::new(ValidationSettings {
            body: settings.body_rules.clone(),
            query: settings.query_limits,
            max_body_size: settings.server.max_body_size,
            body_read_timeout: settings.server.body_read_timeout,
        });
        let store = history.store(&settings, &metrics).await?;
        let cache = history.cache(&settings, &store, &metrics);
        let local = match settings.state.backend {
            crate::config::Backend::Memory => None,
            crate::config::Backend::Redis(_) => Some(history.local.clone()),
        };
        let guard = GuardState::new(
            &settings,
            metrics.clone(),
            history.resilience(&settings),
            store.clone(),
            local,
        );
        // A create in flight longer than this has a dead sender: its record becomes unknown.
        let lease = settings.server.request_timeout
            + settings.upstream.connect_timeout
            + settings.upstream.response_timeout;
        let replay = ReplayLayer::new(&settings.idempotency, store.clone(), lease, metrics.clone());
        // Only now that the generation is built: a refused reload keeps the old labels.
        if settings.per_user_metrics {
            metrics.set_users(&settings.users.values().cloned().collect::<Vec<_>>());
        } else {
            metrics.set_users(&[]);
        }
        Ok(Arc::new(AppState {
            guard,
            replay,
            store,
            settings: Arc::new(settings),
            metrics,
            verifier,
            validation,
            cache,
            client,
            shared,
        }))
    }
}

/// The request path, outermost layer first. Tests and `main` both build it here.
pub fn build_stack<B>(
    state: &AppState,
) -> impl Service<Request<B>, Response = Response, Error = Infallible, Future = BoxFuture>
       + Clone
       + Send
       + 'static
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    let s = &state.settings;
    // The read pipeline the validation layer fetches the company's lookups through: the same
    // cache, budget and upstream as every request, so a lookup is fetched once per TTL per
    // key and spends budget like any other call.
    let lookups = s.check_references.then(|| {
        crate::validate::references::Lookups::new(
            BoxCloneSyncService::new(
                ServiceBuilder::new()
                    .layer(CacheLayer::new(state.cache.clone()))
                    .layer(GuardLayer::new(state.guard.clone()))
                    .service(Upstream::new(
                        state.client.clone(),
                        &s.upstream,
                        state.metrics.clone(),
                    )),
            ),
            state.metrics.clone(),
        )
    });
    ServiceBuilder::new()
        // Request id, in-flight, whole-request timeout, request metrics, access log: outermost
        // so that every answer, rejections included, is counted and logged.
        .layer(ObserveLayer::new(
            state.metrics.clone(),
            s.server.request_timeout,
        ))
        // Limits: URI length (414), header size (431), global in-flight cap (503, shed at once).
        .layer(LimitsLayer::new(
            Limits {
                max_uri_length: s.server.max_uri_length,
                max_header_size: s.server.max_header_size,
                max_in_flight: s.server.max_in_flight,
            },
            state.shared.in_flight.clone(),
        ))
        // Routing: unknown paths 404 and unserved methods 405 before any credential is read.
        .layer(RouteLayer::new(s.routes))
        // Authentication: exactly one valid bearer JWT, else 401.
        .layer(AuthLayer::new(
            state.verifier.clone(),
            state.metrics.clone(),
        ))
        // Identity mapping: subject → upstream key, userId, access; unmapped → 403.
        .layer(IdentityLayer::new(
            state.settings.clone(),
            state.metrics.clone(),
        ))
        // Write policy: read users cannot write, users keep to their routes, nobody reads as
        // another user (403).
        .layer(PolicyLayer::new(state.metrics.clone()))
        // Validation: read queries canonicalised against the route's documented parameters,
        // write bodies read (bounded) and checked; a partnership's references checked
        // against the company's cached lookups.
        .layer(ValidateLayer::new(
            state.validation.clone(),
            lookups,
            state.metrics.clone(),
        ))
        // Idempotency-Key: a repeated write gets the stored outcome, never a second send.
        .layer(state.replay.clone())
        // Audit: one event per write sent upstream, with its outcome.
        .layer(AuditLayer)
        // Read cache: keyed by (upstream key, group generation, forwarded path and query);
        // accepted writes invalidate the groups they change.
        .layer(CacheLayer::new(state.cache.clone()))
        // Guard: fair share, circuit breaker, key budget, connection bound, read retries.
        .layer(GuardLayer::new(state.guard.clone()))
        // Upstream forward: the only place a request leaves the gateway.
        .service(Upstream::new(
            state.client.clone(),
            &s.upstream,
            state.metrics.clone(),
        ))
}

/// The public stack, type-erased so a reload can swap in a new one.
type Stack = BoxCloneSyncService<Request<Incoming>, Response, Infallible>;

/// One generation: a config's state and the stack built from it.
struct Generation {
    state: Arc<AppState>,
    stack: Stack,
}

/// The current generation, swapped atomically by a reload. Each request takes a clone of the
/// current stack, so requests in flight finish on the generation they started with.
#[derive(Clone)]
struct Current(Arc<RwLock<Arc<Generation>>>);

impl Current {
    fn get(&self) -> Arc<Generation> {
        self.0.read().expect("generation lock").clone()
    }
}

/// The public listener's service: dispatches to the current generation's stack.
#[derive(Clone)]
struct Swap(Current);

impl Service<Request<Incoming>> for Swap {
    type Response = Response;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let mut stack = self.0.get().stack.clone();
        stack.call(req)
    }
}

fn generation(state: Arc<AppState>) -> Arc<Generation> {
    let stack = BoxCloneSyncService::new(build_stack::<Incoming>(&state));
    Arc::new(Generation { state, stack })
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// A new generation serves.
    Swapped,
    /// The file parsed to the same settings (and secrets): nothing was rebuilt.
    Unchanged,
}

/// A running gateway: both listeners bound and serving.
pub struct Gateway {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    current: Current,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Binds both listeners and starts serving on the current runtime.
    pub async fn start(settings: Settings) -> Result<Gateway, String> {
        let listen = settings.server.listen;
        let admin_listen = settings.server.admin_listen;
        let grace = settings.server.shutdown_grace;
        let conn = ConnSettings::from(&settings.server);
        let shared = Arc::new(Shared {
            metrics: Metrics::new(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            ready: AtomicBool::new(false),
            history: History::new(),
        });
        let state = AppState::new(settings, shared.clone()).await?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let admin = TcpListener::bind(admin_listen)
            .await
            .map_err(|e| format!("cannot listen on {admin_listen} (admin): {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let admin_addr = admin.local_addr().map_err(|e| e.to_string())?;
        let (tx, rx) = watch::channel(false);
        let current = Current(Arc::new(RwLock::new(generation(state))));
        let admin_svc = AdminService {
            current: current.clone(),
        };
        let tasks = vec![
            tokio::spawn(serve(
                listener,
                Swap(current.clone()),
                rx.clone(),
                grace,
                conn,
            )),
            tokio::spawn(serve(admin, admin_svc, rx, grace, conn)),
        ];
        shared.ready.store(true, Ordering::Release);
        tracing::info!(%addr, %admin_addr, "gateway listening");
        Ok(Gateway {
            addr,
            admin_addr,
            current,
            shared,
            shutdown: tx,
            tasks,
        })
    }

    /// Swaps in a new validated config: a new generation of state and stack. Requests in
    /// flight finish on the old one; nothing is dropped. Listener addresses and connection
    /// limits are bound at start and need a restart (logged when they differ).
    pub async fn reload(&self, settings: Settings) -> Result<Reloaded, String> {
        let old = self.current.get();
        if old.state.settings.digest == settings.digest {
            return Ok(Reloaded::Unchanged);
        }
        let (o, n) = (&old.state.settings.server, &settings.server);
        if o.listen != n.listen || o.admin_listen != n.admin_listen {
            tracing::warn!(
                "listen addresses changed in the config; they take effect after a restart"
            );
        }
        let state = AppState::new(settings, self.shared.clone()).await?;
        *self.current.0.write().expect("generation lock") = generation(state);
        Ok(Reloaded::Swapped)
    }

    /// The public listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The current generation's state (metrics, cache), for tests and the demo.
    pub fn state(&self) -> Arc<AppState> {
        self.current.get().state.clone()
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, and returns.
    pub async fn shutdown(self) {
        self.shared.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Per-connection protocol limits.
#[derive(Debug, Clone, Copy)]
struct ConnSettings {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// hyper's own hard cap on the header buffer; set above the JSON-answering limit so that
    /// only grossly oversized requests get hyper's bare 431.
    max_buf_size: usize,
}

impl From<&crate::config::ServerSettings> for ConnSettings {
    fn from(s: &crate::config::ServerSettings) -> Self {
        ConnSettings {
            header_read_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
            max_buf_size: ((s.max_header_size + s.max_uri_length) * 2).max(16 << 10),
        }
    }
}

/// Accepts connections until shutdown, then drains them for at most `grace`.
async fn serve<S>(
    listener: TcpListener,
    svc: S,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    conn_settings: ConnSettings,
) where
    S: Service<Request<Incoming>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(conn_settings.max_buf_size)
        // Slowloris: a client must send its headers within this time.
        .header_read_timeout(conn_settings.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(conn_settings.max_buf_size).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                    let io = crate::idle::IdleTimeout::new(stream, conn_settings.idle_timeout, busy.clone());
                    let svc = crate::idle::Busy::new(svc.clone(), busy);
                    let conn = builder
                        .serve_connection(TokioIo::new(io), TowerToHyperService::new(svc))
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "grace period over; closing remaining connections"
        );
    }
}

/// The admin listener: health, readiness, metrics and cache purge.
#[derive(Clone)]
struct AdminService {
    current: Current,
}

impl Service<Request<Incoming>> for AdminService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> BoxFuture {
        let state = self.current.get().state.clone();
        Box::pin(async move { Ok(admin(&state, req).await) })
    }
}

fn json_ok(status: StatusCode, body: serde_json::Value) -> Response {
    let mut resp = http::Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn admin(state: &AppState, req: Request<Incoming>) -> Response {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET, "/healthz") => json_ok(StatusCode::OK, serde_json::json!({"status": "ok"})),
        (&Method::GET, "/readyz") => {
            // Ready once listening and every issuer can verify (static keys or a loaded JWKS);
            // the body says which issuer is not. The state backend's health is reported, not
            // required: a replica on its private share still serves, and taking every replica
            // out when Redis dies would be an outage of its own.
            let listening = state.shared.ready.load(Ordering::Acquire);
            let issuers = crate::auth::readiness_json(&state.verifier);
            let backend = serde_json::json!({
                "backend": state.store.backend(),
                "status": state.store.health().as_str(),
            });
            if listening && state.verifier.is_ready() {
                json_ok(
                    StatusCode::OK,
                    serde_json::json!({"status": "ready", "state": backend, "issuers": issuers}),
                )
            } else {
                json_ok(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({
                        "status": "not ready",
                        "listening": listening,
                        "state": backend,
                        "issuers": issuers,
                    }),
                )
            }
        }
        (&Method::GET, "/metrics") => {
            state.cache.refresh_gauges().await;
            state.guard.refresh_gauges().await;
            for (issuer, source) in state.verifier.jwks_sources() {
                let stats = source.stats();
                let age = source.current().map(|set| set.age());
                state
                    .metrics
                    .set_jwks(issuer, stats.fetch_ok, stats.fetch_failed, age);
            }
            state.metrics.set_issuers(&state.verifier.issuer_status());
            let mut resp = http::Response::new(Full::new(Bytes::from(state.metrics.render())));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        (&Method::POST, "/admin/cache/purge") => {
            let key = req.uri().query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "upstream_key")
                    .map(|(_, v)| v.into_owned())
            });
            let names: Vec<Arc<str>> = state
                .settings
                .upstream
                .keys
                .iter()
                .map(|k| k.name.clone())
                .collect();
            match state.cache.purge(key.as_deref(), &names).await {
                Ok(()) => json_ok(
                    StatusCode::OK,
                    serde_json::json!({"purged": key.unwrap_or_else(|| "all".into())}),
                ),
                Err(msg) => json_error(StatusCode::NOT_FOUND, &msg, &[]),
            }
        }
        (_, "/healthz" | "/readyz" | "/metrics") => {
            let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", &[]);
            r.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
            r
        }
        (_, "/admin/cache/purge") => {
            let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", &[]);
            r.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
            r
        }
        _ => json_error(StatusCode::NOT_FOUND, "Not found", &[]),
    }
}

/// The readiness URL on the same admin listener as `url`: its path replaced by `/readyz`.
pub fn readiness_url(url: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!("{url}: not an absolute URL"));
    };
    Ok(format!("{scheme}://{authority}/readyz"))
}

/// GETs `url` (plain http) and succeeds on a 2xx within five seconds.
pub async fn probe(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let req = Request::get(uri)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
        Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
        Ok(Ok(resp)) => Err(format!("status {}", resp.status())),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}
