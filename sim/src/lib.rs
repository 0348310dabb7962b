//! In-process simulator of the JourneyBee v1 API.
//!
//! A double of every documented v1 endpoint (the route table is in
//! `router.rs`: partnerships list/create/update/delete/users, the lookups
//! users, tags, tiers, categories, partner and lead-deal stages and custom
//! fields with their creates and bulk updates, contacts, leads with notes,
//! lead deals), over one consistent tenant: the generated partnerships,
//! leads and deals reference the generated lookups, and writes change what
//! later reads return. It has deterministic seeded data, bearer-key auth
//! with read/write flags (403 for a read-only key on any write), an
//! optional per-key rate limit, a request recorder and run-time switchable
//! faults. Tests start it on `127.0.0.1:0` and point the gateway at
//! [`SimHandle::base_url`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use journeybee_sim::{Fault, SimConfig, Simulator};
//! let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), SimConfig::default()).await?;
//! sim.set_fault(Fault::Status(503));
//! // ... exercise the gateway against sim.base_url() ...
//! sim.shutdown();
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod config;
mod contacts;
mod control;
mod data;
mod deals;
mod filter;
mod input;
mod leads;
mod lookups;
mod partnerships;
mod records;
mod reply;
mod router;
mod seed;
mod server;
mod state;
mod time;
mod validate;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{
    RateLimitMode, SimConfig, SimKey, DEFAULT_COMPANY_DOMAIN, DEFAULT_FREE_MAIL_DOMAINS,
    SIM_READ_KEY, SIM_WRITE_KEY,
};
pub use state::{Fault, RecordedRequest};

use state::lock;

/// Namespace for starting simulators.
pub struct Simulator;

impl Simulator {
    /// Binds `addr` (tests pass `127.0.0.1:0`), spawns the server on the
    /// current tokio runtime and returns at once.
    ///
    /// # Errors
    /// Binding the listener failed (address in use, no permission, ...).
    pub async fn start(addr: SocketAddr, config: SimConfig) -> std::io::Result<SimHandle> {
        let shared = server::start(addr, config).await?;
        Ok(SimHandle { shared })
    }
}

/// Control handle of a running simulator; cheap to clone.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<state::Shared>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// The bound address (with the real port when started on port 0).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://IP:PORT`, with an unspecified bind address replaced by
    /// loopback so that the URL is connectable.
    #[must_use]
    pub fn base_url(&self) -> String {
        let mut addr = self.shared.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}")
    }

    /// Every API request received, in order (the most recent
    /// [`SimConfig::record_limit`] of them when that is set). Recorded before
    /// fault handling, so slowed, failed and black-holed requests are
    /// included; control requests (see [`SimConfig::control`]) are not.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.recorded).kept.iter().cloned().collect()
    }

    /// Number of requests received (see [`SimHandle::requests`]); exact even
    /// when the recorder keeps only the most recent ones.
    #[must_use]
    pub fn request_count(&self) -> usize {
        lock(&self.shared.recorded).total
    }

    /// Forgets the recorded requests and resets the count.
    pub fn reset_recorded(&self) {
        let mut r = lock(&self.shared.recorded);
        r.kept.clear();
        r.total = 0;
    }

    /// Switches the fault mode for requests that arrive afterwards.
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.shared.fault) = fault;
    }

    /// The current fault mode.
    #[must_use]
    pub fn fault(&self) -> Fault {
        lock(&self.shared.fault).clone()
    }

    /// Clears the per-key rate-limit windows (the limit itself stays).
    pub fn reset_rate_limits(&self) {
        lock(&self.shared.rate).clear();
        lock(&self.shared.sliding).clear();
    }

    /// Number of 429s the simulator's own rate limit answered (those of
    /// [`Fault::RateLimited`] are not counted).
    #[must_use]
    pub fn rate_limited_count(&self) -> usize {
        self.shared
            .rate_limited
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Arrival instants of the recorded requests made with the API key `secret`, in arrival
    /// order (see [`RecordedRequest::received_at`]).
    #[must_use]
    pub fn arrivals(&self, secret: &str) -> Vec<std::time::Instant> {
        let mut v: Vec<_> = lock(&self.shared.recorded)
            .kept
            .iter()
            .filter(|r| r.api_key.as_deref() == Some(secret))
            .map(|r| r.received_at)
            .collect();
        v.sort_unstable();
        v
    }

    /// Valid JourneyBee user ids of the company (usable as `userId`).
    #[must_use]
    pub fn user_ids(&self) -> Vec<u64> {
        lock(&self.shared.data).users.iter().map(|u| u.id).collect()
    }

    /// Current number of partnerships (generated plus created).
    #[must_use]
    pub fn partnership_count(&self) -> usize {
        lock(&self.shared.data).partnerships.len()
    }

    /// E-mail domains already taken by partnerships; creating another
    /// partnership on one of them answers 409.
    #[must_use]
    pub fn partner_domains(&self) -> Vec<String> {
        lock(&self.shared.data)
            .partnerships
            .iter()
            .map(|p| p.domain.clone())
            .collect()
    }

    /// UUIDs of the pipeline stages, in series order (valid `stageUuid`s).
    #[must_use]
    pub fn stage_uuids(&self) -> Vec<String> {
        lock(&self.shared.data)
            .stages
            .iter()
            .map(|s| s.uuid.clone())
            .collect()
    }

    /// The tiers as `GET /api/v1/tiers` lists them (generated ones: ids 1-4).
    #[must_use]
    pub fn tiers(&self) -> Vec<serde_json::Value> {
        lookups::snapshot::tiers(&lock(&self.shared.data))
    }

    /// The categories as `GET /api/v1/categories` lists them (ids 1-6).
    #[must_use]
    pub fn categories(&self) -> Vec<serde_json::Value> {
        lookups::snapshot::categories(&lock(&self.shared.data))
    }

    /// The partner stages as `GET /api/v1/stages/partner-stages` lists them
    /// (their `uuid`s are [`SimHandle::stage_uuids`]).
    #[must_use]
    pub fn partner_stages(&self) -> Vec<serde_json::Value> {
        lookups::snapshot::partner_stages(&lock(&self.shared.data))
    }

    /// The lead-deal stages as `GET /api/v1/stages/lead-deal-stages` lists them.
    #[must_use]
    pub fn deal_stages(&self) -> Vec<serde_json::Value> {
        lookups::snapshot::deal_stages(&lock(&self.shared.data))
    }

    /// Every tag as `GET /api/v1/tags` lists them: contact-card tags 1-4,
    /// partner tags 10-21, lead tags 30-33, lead-deal tags 40-42, then any
    /// created ones.
    #[must_use]
    pub fn tags(&self) -> Vec<serde_json::Value> {
        lookups::snapshot::tags(&lock(&self.shared.data))
    }

    /// Every custom field definition as `GET /api/v1/custom-fields` lists
    /// them: partner fields 5-11, lead fields 12-14, lead-deal fields 15-16.
    #[must_use]
    pub fn custom_fields(&self) -> Vec<serde_json::Value> {
        lookups::snapshot::custom_fields(&lock(&self.shared.data))
    }

    /// `GET /api/v1/users` items; with `indirect`, also the disabled and
    /// indirect users (which are not in [`SimHandle::user_ids`]).
    #[must_use]
    pub fn users(&self, indirect: bool) -> Vec<serde_json::Value> {
        lookups::snapshot::users(&lock(&self.shared.data), indirect)
    }

    /// Ids usable in `/partnerships/{id}` (the list items' top-level `id`),
    /// newest first. Leads and deals only go through the older half, so the
    /// first ones can be deleted (`DELETE` refuses a partnership with open
    /// leads or deals).
    #[must_use]
    pub fn partnership_ids(&self) -> Vec<u64> {
        lock(&self.shared.data)
            .partnerships
            .iter()
            .map(|p| p.id)
            .collect()
    }

    /// One partnership in the list item shape (with `total: 1`), to check
    /// what a write did.
    #[must_use]
    pub fn partnership(&self, id: u64) -> Option<serde_json::Value> {
        let data = lock(&self.shared.data);
        let p = data.partnership(id)?;
        serde_json::to_value(data.item(p, 1)).ok()
    }

    /// Contact ids, ascending.
    #[must_use]
    pub fn contact_ids(&self) -> Vec<u64> {
        let data = lock(&self.shared.data);
        let mut ids: Vec<u64> = data
            .partnerships
            .iter()
            .flat_map(|p| p.contacts.iter().map(|c| c.id))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Lead ids, newest first.
    #[must_use]
    pub fn lead_ids(&self) -> Vec<u64> {
        lock(&self.shared.data).leads.iter().map(|l| l.id).collect()
    }

    /// One lead as `GET /companies/{cid}/leads/{id}` answers it.
    #[must_use]
    pub fn lead(&self, id: u64) -> Option<serde_json::Value> {
        let data = lock(&self.shared.data);
        let l = data.lead(id)?;
        serde_json::to_value(leads::lead_out(&data, l, None)).ok()
    }

    /// Note ids of a lead, oldest first.
    #[must_use]
    pub fn note_ids(&self, lead_id: u64) -> Vec<u64> {
        lock(&self.shared.data)
            .notes
            .iter()
            .filter(|n| n.lead_id == lead_id)
            .map(|n| n.id)
            .collect()
    }

    /// Deal ids, newest first.
    #[must_use]
    pub fn deal_ids(&self) -> Vec<u64> {
        lock(&self.shared.data).deals.iter().map(|d| d.id).collect()
    }

    /// One deal as `GET /companies/{cid}/lead-deals/{id}` answers it.
    #[must_use]
    pub fn deal(&self, id: u64) -> Option<serde_json::Value> {
        let data = lock(&self.shared.data);
        let d = data.deal(id)?;
        serde_json::to_value(deals::deal_out(&data, d, None)).ok()
    }

    /// Number of recorded requests with this method whose path is `path`
    /// (exact, without the query): how a test proves what reached upstream.
    #[must_use]
    pub fn requests_to(&self, method: &str, path: &str) -> usize {
        lock(&self.shared.recorded)
            .kept
            .iter()
            .filter(|r| r.method.as_str() == method && r.path == path)
            .count()
    }

    /// Stops accepting and closes every open connection (simulates
    /// "upstream down"). Idempotent. The listener is closed asynchronously;
    /// await [`SimHandle::stopped`] to be sure new connections are refused.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// Resolves once the listener has been closed after
    /// [`SimHandle::shutdown`].
    pub async fn stopped(&self) {
        let mut rx = self.shared.stopped.subscribe();
        // The sender lives in `shared`, which `self` keeps alive, so the
        // channel cannot close while waiting.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}
