//! Authentication's metrics: 401s by reason, JWKS fetches and key-set age per issuer, and the
//! per-issuer key gauges (whether each trusted issuer can verify tokens, when its keys were
//! last loaded, how many fetches in a row failed). The gauges are set before each scrape from
//! the current generation's verifier, for every configured issuer (static-key issuers
//! included), so the series exist from the first scrape and an alert can watch them.

use crate::error::AuthFailure;
use crate::identity::auth::IssuerStatus;
use crate::observe::registry::Registry;
use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGaugeVec};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Authentication's handles.
pub struct AuthMetrics {
    failures: Vec<IntCounter>,
    jwks_fetches: IntCounterVec,
    jwks_age: GaugeVec,
    /// Per issuer: the fetch counts last published, so counters advance by the difference.
    jwks_seen: Mutex<HashMap<String, (u64, u64)>>,
    loaded: IntGaugeVec,
    last_success: GaugeVec,
    consecutive_failures: IntGaugeVec,
    /// Issuers with series, so those a reload removed lose theirs.
    known: Mutex<HashSet<String>>,
}

impl AuthMetrics {
    /// Registers authentication's metrics.
    pub fn new(registry: &Registry) -> Arc<AuthMetrics> {
        let auth_vec = registry.counter_vec(
            "auth_failures_total",
            "Requests refused with 401, by reason.",
            &["reason"],
        );
        Arc::new(AuthMetrics {
            failures: AuthFailure::ALL
                .iter()
                .map(|f| auth_vec.with_label_values(&[f.as_str()]))
                .collect(),
            jwks_fetches: registry.counter_vec(
                "jwks_fetches_total",
                "JWKS fetches from identity providers, by issuer and result (success, failure).",
                &["issuer", "result"],
            ),
            jwks_age: registry.float_gauge_vec(
                "jwks_key_set_age_seconds",
                "Age of the key set in use, by issuer (grows while the IdP is unreachable).",
                &["issuer"],
            ),
            jwks_seen: Mutex::new(HashMap::new()),
            loaded: registry.gauge_vec(
                "issuer_keys_loaded",
                "1 when the issuer can verify tokens (static keys or a usable JWKS key set), 0 when its tokens are refused for want of keys.",
                &["issuer"],
            ),
            consecutive_failures: registry.gauge_vec(
                "issuer_jwks_consecutive_failures",
                "JWKS (and discovery) fetches that failed in a row for the issuer; 0 after a success.",
                &["issuer"],
            ),
            last_success: registry.float_gauge_vec(
                "issuer_keys_last_success_timestamp_seconds",
                "When the issuer's keys were last loaded successfully (JWKS fetch, or config load for static keys), as a Unix time; 0 if never.",
                &["issuer"],
            ),
            known: Mutex::new(HashSet::new()),
        })
    }

    /// Records a 401.
    pub fn auth_failure(&self, failure: AuthFailure) {
        if let Some(i) = AuthFailure::ALL.iter().position(|f| *f == failure) {
            self.failures[i].inc();
        }
    }

    /// Publishes an issuer's JWKS statistics (called before each scrape): the fetch counters
    /// advance by what happened since the last scrape, so they stay counters across reloads.
    pub fn set_jwks(&self, issuer: &str, ok: u64, failed: u64, age: Option<Duration>) {
        let mut seen = crate::lock(&self.jwks_seen);
        let last = seen.entry(issuer.to_string()).or_insert((0, 0));
        // A reload builds a new source whose counts restart from zero.
        let (d_ok, d_failed) = (
            ok.checked_sub(last.0).unwrap_or(ok),
            failed.checked_sub(last.1).unwrap_or(failed),
        );
        *last = (ok, failed);
        self.jwks_fetches
            .with_label_values(&[issuer, "success"])
            .inc_by(d_ok);
        self.jwks_fetches
            .with_label_values(&[issuer, "failure"])
            .inc_by(d_failed);
        if let Some(age) = age {
            self.jwks_age
                .with_label_values(&[issuer])
                .set(age.as_secs_f64());
        }
    }

    /// Publishes every issuer's key state (called before each scrape).
    pub fn set_issuers(&self, issuers: &[IssuerStatus]) {
        let mut known = crate::lock(&self.known);
        let now: HashSet<String> = issuers.iter().map(|i| i.name.clone()).collect();
        for gone in known.difference(&now) {
            let _ = self.loaded.remove_label_values(&[gone]);
            let _ = self.last_success.remove_label_values(&[gone]);
            let _ = self.consecutive_failures.remove_label_values(&[gone]);
        }
        for i in issuers {
            self.loaded
                .with_label_values(&[&i.name])
                .set(i64::from(i.ready));
            let ts: &Gauge = &self.last_success.with_label_values(&[&i.name]);
            ts.set(i.last_success_unix.unwrap_or(0) as f64);
            self.consecutive_failures
                .with_label_values(&[&i.name])
                .set(i64::try_from(i.consecutive_failures).unwrap_or(i64::MAX));
        }
        *known = now;
    }
}
