//! What a simulator is started with: its [`SimConfig`], the API keys it accepts and the
//! rate-limit modes. A leaf: it depends on no other module of the crate.

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
    /// `{"requests":N,"partnerships":M,"rate_limited":R,"peak_per_window":P,
    /// "window_ms":W,"recorded":K}`). Control requests need no API key,
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
