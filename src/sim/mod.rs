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
//! use journeybee_gateway::sim::{Fault, SimConfig, Simulator};
//! let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), SimConfig::default()).await?;
//! sim.set_fault(Fault::Status(503));
//! // ... exercise the gateway against sim.base_url() ...
//! sim.shutdown();
//! # Ok(()) }
//! ```

mod contacts;
mod control;
mod data;
mod deals;
mod filter;
mod input;
mod leads;
mod lookups;
mod partnerships;
mod reply;
mod router;
mod server;
mod time;
mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Secret of the default read-only key.
pub const SIM_READ_KEY: &str = "jb_sim_read_0123456789abcdef";
/// Secret of the default read + write key.
pub const SIM_WRITE_KEY: &str = "jb_sim_write_0123456789abcdef";

/// Free-mail domains refused as partner domains by default.
pub const DEFAULT_FREE_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "gmx.com",
    "gmx.de",
    "mail.com",
    "yandex.com",
    "live.com",
    "msn.com",
    "zoho.com",
];

/// Default own domain of the simulated company.
pub const DEFAULT_COMPANY_DOMAIN: &str = "acme-partners.io";

/// An API key the simulator accepts, with its permission flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimKey {
    /// The bearer token value.
    pub secret: String,
    /// Grants GET.
    pub read: bool,
    /// Grants POST (and the other write methods upstream has).
    pub write: bool,
}

impl SimKey {
    /// Convenience constructor.
    #[must_use]
    pub fn new(secret: impl Into<String>, read: bool, write: bool) -> Self {
        Self {
            secret: secret.into(),
            read,
            write,
        }
    }
}

/// Configuration of one simulator instance.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Accepted API keys.
    pub keys: Vec<SimKey>,
    /// The company id; the only valid `{id}` of
    /// `/api/v1/companies/{id}/partnerships` (and of the `companies/{id}`
    /// lead and deal reads), and the lookups' `company_id`.
    pub company_id: u64,
    /// The company's own e-mail domains; partnering with one of them → 406.
    /// The first one is also used for the company users' e-mails.
    pub company_domains: Vec<String>,
    /// Domains that are not business domains (→ 406), compared
    /// case-insensitively.
    pub free_mail_domains: Vec<String>,
    /// Number of partnerships to generate.
    pub partnerships: usize,
    /// Seed of the deterministic data generator.
    pub seed: u64,
    /// Fixed page size of the list endpoint.
    pub page_size: usize,
    /// Per-key limit in a fixed one-minute window; `None` = unlimited. Used when
    /// [`SimConfig::rate_limit_mode`] is [`RateLimitMode::FixedMinute`] (the default).
    pub rate_limit_per_minute: Option<u32>,
    /// How the per-key limit is enforced: the fixed one-minute window of
    /// [`SimConfig::rate_limit_per_minute`] (the default), or an exact sliding window.
    pub rate_limit_mode: RateLimitMode,
    /// Serves the control endpoints under `/__sim/` on the simulator's own
    /// listener, so that a script can switch faults from outside the
    /// process: `PUT /__sim/fault` with `{"mode":"none"}`,
    /// `{"mode":"slow","ms":300}`, `{"mode":"status","status":503}`,
    /// `{"mode":"rate_limited","retry_after_secs":2}`, `{"mode":"reset"}` or
    /// `{"mode":"black_hole"}` (→ 204), `GET /__sim/fault` (the current mode
    /// in the same JSON form) and `GET /__sim/stats` (→
    /// `{"requests":N,"partnerships":M}`). Control requests need no API key,
    /// are never subject to faults or the rate limit and are not recorded.
    /// Off by default: without it, `/__sim/` paths are ordinary (unknown) API
    /// paths.
    pub control: bool,
    /// Keep only the most recent this-many requests in the recorder (the count stays exact);
    /// `None` keeps all, which tests want. A long-running simulator (the demo) sets a bound,
    /// or every request it ever received would stay in memory.
    pub record_limit: Option<usize>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            keys: vec![
                SimKey::new(SIM_READ_KEY, true, false),
                SimKey::new(SIM_WRITE_KEY, true, true),
            ],
            company_id: 123,
            company_domains: vec![DEFAULT_COMPANY_DOMAIN.to_string()],
            free_mail_domains: DEFAULT_FREE_MAIL_DOMAINS
                .iter()
                .map(|d| (*d).to_string())
                .collect(),
            partnerships: 300,
            seed: 42,
            page_size: 25,
            rate_limit_per_minute: None,
            rate_limit_mode: RateLimitMode::FixedMinute,
            control: false,
            record_limit: None,
        }
    }
}

/// How the simulator enforces its per-key rate limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RateLimitMode {
    /// [`SimConfig::rate_limit_per_minute`] requests per key in fixed one-minute windows
    /// (each window starts at the first request after the previous one ended).
    #[default]
    FixedMinute,
    /// Exact: a key is answered 429 (with `Retry-After`) when the request would be the
    /// `limit + 1`-th one it was served within any `window`, each request counted from its
    /// arrival at the simulator, like the real JourneyBee. Only served (not 429) requests
    /// count. [`SimConfig::rate_limit_per_minute`] is ignored in this mode.
    Sliding {
        /// Requests allowed per key in any `window`.
        limit: u32,
        /// Length of the sliding window.
        window: Duration,
    },
}

/// Fault modes switchable at run time from tests.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Sleep this long before answering normally.
    Slow(Duration),
    /// Answer every request with this status and
    /// `{"error":"simulated failure"}` (an invalid code becomes 500).
    Status(u16),
    /// 429 with a `Retry-After` header and `{"error":"Too many requests"}`.
    RateLimited {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// Process the request normally (a create **does** happen), send the
    /// status line, the headers (with the full `Content-Length`) and part of
    /// the body, then drop the connection. This is the "did my POST go
    /// through?" case a gateway must not retry blindly. A reply without a
    /// body (the 204 of a DELETE) is not sent at all: the connection is
    /// dropped after the delete happened.
    ResetMidResponse,
    /// Read the request and never answer; the connection is held until
    /// [`SimHandle::shutdown`].
    BlackHole,
}

/// One request as received by the simulator.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Request method.
    pub method: http::Method,
    /// Path without the query.
    pub path: String,
    /// Raw query string as received (still percent-encoded).
    pub query: Option<String>,
    /// All request headers.
    pub headers: http::HeaderMap,
    /// The complete request body.
    pub body: bytes::Bytes,
    /// The Bearer value of `Authorization`, if any (valid or not).
    pub api_key: Option<String>,
    /// When the request's head arrived at the simulator (its clock for the rate limit).
    pub received_at: std::time::Instant,
}

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
    shared: Arc<server::Shared>,
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
        server::lock(&self.shared.recorded)
            .kept
            .iter()
            .cloned()
            .collect()
    }

    /// Number of requests received (see [`SimHandle::requests`]); exact even
    /// when the recorder keeps only the most recent ones.
    #[must_use]
    pub fn request_count(&self) -> usize {
        server::lock(&self.shared.recorded).total
    }

    /// Forgets the recorded requests and resets the count.
    pub fn reset_recorded(&self) {
        let mut r = server::lock(&self.shared.recorded);
        r.kept.clear();
        r.total = 0;
    }

    /// Switches the fault mode for requests that arrive afterwards.
    pub fn set_fault(&self, fault: Fault) {
        *server::lock(&self.shared.fault) = fault;
    }

    /// The current fault mode.
    #[must_use]
    pub fn fault(&self) -> Fault {
        server::lock(&self.shared.fault).clone()
    }

    /// Clears the per-key rate-limit windows (the limit itself stays).
    pub fn reset_rate_limits(&self) {
        server::lock(&self.shared.rate).clear();
        server::lock(&self.shared.sliding).clear();
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
        let mut v: Vec<_> = server::lock(&self.shared.recorded)
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
        server::lock(&self.shared.data)
            .users
            .iter()
            .map(|u| u.id)
            .collect()
    }

    /// Current number of partnerships (generated plus created).
    #[must_use]
    pub fn partnership_count(&self) -> usize {
        server::lock(&self.shared.data).partnerships.len()
    }

    /// E-mail domains already taken by partnerships; creating another
    /// partnership on one of them answers 409.
    #[must_use]
    pub fn partner_domains(&self) -> Vec<String> {
        server::lock(&self.shared.data)
            .partnerships
            .iter()
            .map(|p| p.domain.clone())
            .collect()
    }

    /// UUIDs of the pipeline stages, in series order (valid `stageUuid`s).
    #[must_use]
    pub fn stage_uuids(&self) -> Vec<String> {
        server::lock(&self.shared.data)
            .stages
            .iter()
            .map(|s| s.uuid.clone())
            .collect()
    }

    /// The tiers as `GET /api/v1/tiers` lists them (generated ones: ids 1-4).
    #[must_use]
    pub fn tiers(&self) -> Vec<serde_json::Value> {
        lookups::snapshot::tiers(&server::lock(&self.shared.data))
    }

    /// The categories as `GET /api/v1/categories` lists them (ids 1-6).
    #[must_use]
    pub fn categories(&self) -> Vec<serde_json::Value> {
        lookups::snapshot::categories(&server::lock(&self.shared.data))
    }

    /// The partner stages as `GET /api/v1/stages/partner-stages` lists them
    /// (their `uuid`s are [`SimHandle::stage_uuids`]).
    #[must_use]
    pub fn partner_stages(&self) -> Vec<serde_json::Value> {
        lookups::snapshot::partner_stages(&server::lock(&self.shared.data))
    }

    /// The lead-deal stages as `GET /api/v1/stages/lead-deal-stages` lists them.
    #[must_use]
    pub fn deal_stages(&self) -> Vec<serde_json::Value> {
        lookups::snapshot::deal_stages(&server::lock(&self.shared.data))
    }

    /// Every tag as `GET /api/v1/tags` lists them: contact-card tags 1-4,
    /// partner tags 10-21, lead tags 30-33, lead-deal tags 40-42, then any
    /// created ones.
    #[must_use]
    pub fn tags(&self) -> Vec<serde_json::Value> {
        lookups::snapshot::tags(&server::lock(&self.shared.data))
    }

    /// Every custom field definition as `GET /api/v1/custom-fields` lists
    /// them: partner fields 5-11, lead fields 12-14, lead-deal fields 15-16.
    #[must_use]
    pub fn custom_fields(&self) -> Vec<serde_json::Value> {
        lookups::snapshot::custom_fields(&server::lock(&self.shared.data))
    }

    /// `GET /api/v1/users` items; with `indirect`, also the disabled and
    /// indirect users (which are not in [`SimHandle::user_ids`]).
    #[must_use]
    pub fn users(&self, indirect: bool) -> Vec<serde_json::Value> {
        lookups::snapshot::users(&server::lock(&self.shared.data), indirect)
    }

    /// Ids usable in `/partnerships/{id}` (the list items' top-level `id`),
    /// newest first. Leads and deals only go through the older half, so the
    /// first ones can be deleted (`DELETE` refuses a partnership with open
    /// leads or deals).
    #[must_use]
    pub fn partnership_ids(&self) -> Vec<u64> {
        server::lock(&self.shared.data)
            .partnerships
            .iter()
            .map(|p| p.id)
            .collect()
    }

    /// One partnership in the list item shape (with `total: 1`), to check
    /// what a write did.
    #[must_use]
    pub fn partnership(&self, id: u64) -> Option<serde_json::Value> {
        let data = server::lock(&self.shared.data);
        let p = data.partnership(id)?;
        serde_json::to_value(data.item(p, 1)).ok()
    }

    /// Contact ids, ascending.
    #[must_use]
    pub fn contact_ids(&self) -> Vec<u64> {
        let data = server::lock(&self.shared.data);
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
        server::lock(&self.shared.data)
            .leads
            .iter()
            .map(|l| l.id)
            .collect()
    }

    /// One lead as `GET /companies/{cid}/leads/{id}` answers it.
    #[must_use]
    pub fn lead(&self, id: u64) -> Option<serde_json::Value> {
        let data = server::lock(&self.shared.data);
        let l = data.lead(id)?;
        serde_json::to_value(leads::lead_out(&data, l, None)).ok()
    }

    /// Note ids of a lead, oldest first.
    #[must_use]
    pub fn note_ids(&self, lead_id: u64) -> Vec<u64> {
        server::lock(&self.shared.data)
            .notes
            .iter()
            .filter(|n| n.lead_id == lead_id)
            .map(|n| n.id)
            .collect()
    }

    /// Deal ids, newest first.
    #[must_use]
    pub fn deal_ids(&self) -> Vec<u64> {
        server::lock(&self.shared.data)
            .deals
            .iter()
            .map(|d| d.id)
            .collect()
    }

    /// One deal as `GET /companies/{cid}/lead-deals/{id}` answers it.
    #[must_use]
    pub fn deal(&self, id: u64) -> Option<serde_json::Value> {
        let data = server::lock(&self.shared.data);
        let d = data.deal(id)?;
        serde_json::to_value(deals::deal_out(&data, d, None)).ok()
    }

    /// Number of recorded requests with this method whose path is `path`
    /// (exact, without the query): how a test proves what reached upstream.
    #[must_use]
    pub fn requests_to(&self, method: &str, path: &str) -> usize {
        server::lock(&self.shared.recorded)
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
