//! One generation's state, built from one validated config and the history.

use crate::cache::ListCache;
use crate::config::Settings;
use crate::history::Shared;
use crate::identity::auth::Verifier;
use crate::metrics::Metrics;
use crate::policy::replay::ReplayLayer;
use crate::state::SharedStore;
use crate::upstream::guard::GuardState;
use crate::validate::ValidationSettings;
use std::sync::Arc;

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
    /// JourneyBee's connections.
    pub pool: Arc<crate::upstream::pool::Pool>,
    /// Budgets, breaker and retry state in front of upstream.
    pub guard: Arc<GuardState>,
    /// The state store (memory or shared).
    pub store: SharedStore,
    /// Stored create outcomes for Idempotency-Key.
    pub replay: ReplayLayer,
    /// State that outlives this generation.
    pub shared: Arc<Shared>,
    /// Span export (None: `[tracing]` has no endpoint).
    pub tracer: Option<Arc<crate::observe::trace::Tracer>>,
}

impl AppState {
    /// Builds a generation's state from `settings`, reusing every part of the history whose
    /// settings did not change.
    pub async fn new(settings: Settings, shared: Arc<Shared>) -> Result<Arc<AppState>, String> {
        let metrics = shared.metrics.clone();
        let history = &shared.history;
        let clients = history.clients(&settings)?;
        // Spans go out through the IdP's pooled client (same TLS stack and roots).
        let tracer = settings.tracing.as_ref().map(|t| {
            crate::observe::trace::export::start(t, clients.idp.clone(), metrics.requests.clone())
        });
        let fetcher = Arc::new(crate::identity::auth::fetch::HttpFetcher::for_auth(
            clients.idp,
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
            metrics.upstream.clone(),
            history.resilience(&settings),
            history.connections(&settings),
            store.clone(),
            local,
        );
        // A create in flight longer than this has a dead sender: its record becomes unknown.
        let lease = settings.server.request_timeout
            + settings.upstream.connect_timeout
            + settings.upstream.response_timeout;
        let replay = ReplayLayer::new(
            &settings.idempotency,
            store.clone(),
            lease,
            metrics.policy.clone(),
        );
        // Only now that the generation is built: a refused reload keeps the old labels.
        if settings.per_user_metrics {
            metrics.requests.set_users(&settings.identities());
        } else {
            metrics.requests.set_users(&[]);
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
            pool: clients.upstream,
            shared,
            tracer,
        }))
    }
}
