//! Per-issuer key gauges: whether each trusted issuer can verify tokens, when its keys were
//! last loaded, and how many JWKS fetches in a row have failed. Set before each scrape from
//! the current generation's verifier, for every configured issuer (static-key issuers
//! included), so the series exist from the first scrape and an alert can watch them.

use crate::identity::auth::IssuerStatus;
use prometheus::{Gauge, GaugeVec, IntGaugeVec, Opts, Registry};
use std::collections::HashSet;
use std::sync::Mutex;

pub(crate) struct IssuerGauges {
    loaded: IntGaugeVec,
    last_success: GaugeVec,
    failures: IntGaugeVec,
    /// Issuers with series, so those a reload removed lose theirs.
    known: Mutex<HashSet<String>>,
}

impl IssuerGauges {
    pub(crate) fn new(registry: &Registry) -> IssuerGauges {
        let int_vec = |n: &str, help: &str| {
            let v = IntGaugeVec::new(Opts::new(super::name(n), help), &["issuer"])
                .expect("valid metric");
            registry
                .register(Box::new(v.clone()))
                .expect("metric names are unique");
            v
        };
        let loaded = int_vec(
            "issuer_keys_loaded",
            "1 when the issuer can verify tokens (static keys or a usable JWKS key set), 0 when its tokens are refused for want of keys.",
        );
        let failures = int_vec(
            "issuer_jwks_consecutive_failures",
            "JWKS (and discovery) fetches that failed in a row for the issuer; 0 after a success.",
        );
        let last_success = GaugeVec::new(
            Opts::new(
                super::name("issuer_keys_last_success_timestamp_seconds"),
                "When the issuer's keys were last loaded successfully (JWKS fetch, or config load for static keys), as a Unix time; 0 if never.",
            ),
            &["issuer"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(last_success.clone()))
            .expect("metric names are unique");
        IssuerGauges {
            loaded,
            last_success,
            failures,
            known: Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn set(&self, issuers: &[IssuerStatus]) {
        let mut known = crate::lock(&self.known);
        let now: HashSet<String> = issuers.iter().map(|i| i.name.clone()).collect();
        for gone in known.difference(&now) {
            let _ = self.loaded.remove_label_values(&[gone]);
            let _ = self.last_success.remove_label_values(&[gone]);
            let _ = self.failures.remove_label_values(&[gone]);
        }
        for i in issuers {
            self.loaded
                .with_label_values(&[&i.name])
                .set(i64::from(i.ready));
            let ts: &Gauge = &self.last_success.with_label_values(&[&i.name]);
            ts.set(i.last_success_unix.unwrap_or(0) as f64);
            self.failures
                .with_label_values(&[&i.name])
                .set(i64::try_from(i.consecutive_failures).unwrap_or(i64::MAX));
        }
        *known = now;
    }
}
