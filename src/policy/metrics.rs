//! Local enforcement's metrics: 403s by reason (identity mapping and policy), and creates
//! answered from a stored outcome for a repeated `Idempotency-Key`.

use crate::error::Denial;
use crate::observe::registry::Registry;
use prometheus::IntCounter;
use std::sync::Arc;

/// Policy's handles.
pub struct PolicyMetrics {
    denials: Vec<IntCounter>,
    idempotent_replays: IntCounter,
}

impl PolicyMetrics {
    /// Registers policy's metrics.
    pub fn new(registry: &Registry) -> Arc<PolicyMetrics> {
        let denial_vec = registry.counter_vec(
            "authz_denials_total",
            "Authenticated requests refused with 403, by reason.",
            &["reason"],
        );
        Arc::new(PolicyMetrics {
            denials: Denial::ALL
                .iter()
                .map(|d| denial_vec.with_label_values(&[d.as_str()]))
                .collect(),
            idempotent_replays: registry.counter(
                "idempotent_replays_total",
                "Creates answered from a stored outcome for a repeated Idempotency-Key.",
            ),
        })
    }

    /// Records a 403.
    pub fn denial(&self, denial: Denial) {
        if let Some(i) = Denial::ALL.iter().position(|d| *d == denial) {
            self.denials[i].inc();
        }
    }

    /// Counts an idempotent replay.
    pub fn idempotent_replay(&self) {
        self.idempotent_replays.inc();
    }
}
