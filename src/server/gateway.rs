//! A running gateway: both listeners bound and serving, reloads, graceful shutdown.

use super::admin::AdminService;
use super::current::*;
use super::listen::{serve, ConnSettings};
use crate::config::Settings;
use crate::generation::AppState;
use crate::history::{History, Shared};
use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
    build: StackBuilder,
    /// The public listener's TLS, when `[server.tls]` was set at start.
    tls: Option<Arc<crate::server::tls::Tls>>,
}

impl Gateway {
    /// Binds both listeners and starts serving on the current runtime.
    pub async fn start(settings: Settings) -> Result<Gateway, String> {
        Gateway::start_with(settings, default_builder()).await
    }

    /// [`Gateway::start`] with each generation's public stack built by `build` (for tests:
    /// [`build_stack`](crate::stack::build_stack) with tower middleware around or inside it).
    pub async fn start_with(settings: Settings, build: StackBuilder) -> Result<Gateway, String> {
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
        let tls = match &settings.server.tls {
            Some(t) => Some(crate::server::tls::Tls::new(t, &shared.metrics)?),
            None => None,
        };
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
        let current = Current::new(generation(state, &build));
        let admin_svc = AdminService {
            current: current.clone(),
        };
        let tasks = vec![
            tokio::spawn(serve(
                listener,
                current.stack(),
                rx.clone(),
                grace,
                conn,
                tls.clone(),
            )),
            tokio::spawn(serve(admin, admin_svc, rx, grace, conn, None)),
        ];
        shared.ready.store(true, Ordering::Release);
        tracing::info!(%addr, %admin_addr, tls = tls.is_some(), "gateway listening");
        Ok(Gateway {
            addr,
            admin_addr,
            current,
            shared,
            shutdown: tx,
            tasks,
            build,
            tls,
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
        self.current.swap(generation(state, &self.build));
        Ok(Reloaded::Swapped)
    }

    /// The public listener's TLS (None: plain HTTP).
    pub fn tls(&self) -> Option<&Arc<crate::server::tls::Tls>> {
        self.tls.as_ref()
    }

    /// Loads the current config's certificate (and client CA) again, on SIGHUP or when their
    /// files change; a certificate that does not load is refused and the old one kept. None
    /// when there is no TLS to reload (TLS turned on or off needs a restart: logged).
    pub fn reload_tls(&self, trigger: &str) -> Option<bool> {
        let settings = self.current.get();
        match (&self.tls, &settings.state.settings.server.tls) {
            (Some(tls), Some(s)) => Some(tls.reload(s, trigger)),
            (None, None) => None,
            _ => {
                tracing::warn!("server.tls added or removed in the config; that takes a restart");
                None
            }
        }
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
    ///
    /// "In flight" includes the writes whose clients have gone: once accepted, a write runs
    /// on in a task of its own, and its audit event and invalidation come when it ends. Each
    /// is waited for within the same grace; one still running when the grace is over is told
    /// to give up, which logs it (outcome `unknown`) rather than losing it with the process.
    pub async fn shutdown(self) {
        let grace = self.current.get().state.settings.server.shutdown_grace;
        let deadline = crate::timeouts::shutdown(grace);
        self.shared.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let writes = self.shared.history.writes();
        let running = writes.running();
        if running > 0 {
            tracing::info!(writes = running, "waiting for accepted writes to complete");
        }
        writes.settle(deadline).await;
        // The spans of everything that ended, the writes above included: sent before exit
        // (bounded by the export's own timeout).
        let current = self.current.get();
        if let (Some(tracer), Some(t)) = (&current.state.tracer, &current.state.settings.tracing) {
            // An export in progress and the flush's own: each bounded by export_timeout.
            let _ = tokio::time::timeout(2 * t.export_timeout, tracer.flush()).await;
        }
        // Generation bumps the store could not take when their writes were accepted: retried
        // within the grace, so the other replicas see those writes before this one is gone.
        if let Some(cache) = self.shared.history.current_cache() {
            let pending = cache.pending_bumps();
            if pending > 0 {
                tracing::info!(
                    pending,
                    "waiting for pending cache invalidations to reach the state backend"
                );
                let flushed = tokio::time::timeout_at(deadline, async {
                    while !cache.flush_pending_bumps().await {
                        tokio::time::sleep(crate::cache::PENDING_RETRY).await;
                    }
                })
                .await;
                if flushed.is_err() {
                    tracing::warn!(
                        pending = cache.pending_bumps(),
                        "state backend unreachable at shutdown: some writes' cache \
                         invalidations never reached the other replicas (their lists expire \
                         with their TTL)"
                    );
                }
            }
        }
    }
}
