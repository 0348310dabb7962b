//! Validation's metrics: local rejections by route and reason, and how reference checks ended.

use crate::error::{BodyReason, Rejection};
use crate::ingress::route::Route;
use crate::observe::registry::Registry;
use prometheus::IntCounter;
use std::sync::Arc;

/// The validation rejections counted per route (their `reason` label is
/// [`Rejection::reason`]).
pub const VALIDATION_REASONS: [Rejection; 9] = [
    Rejection::UnsupportedMediaType,
    Rejection::BodyTooLarge,
    Rejection::BodyRead,
    Rejection::BodyTimeout,
    Rejection::Body(BodyReason::InvalidJson),
    Rejection::Body(BodyReason::NotAnObject),
    Rejection::Body(BodyReason::Schema),
    Rejection::Body(BodyReason::Domain),
    Rejection::Query,
];

/// How a write's reference check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceCheck {
    /// Every reference exists.
    Passed = 0,
    /// An unknown reference: refused with 400, nothing sent.
    Refused = 1,
    /// A lookup could not be read: checked by the schema alone and forwarded.
    Skipped = 2,
}

/// Validation's handles.
pub struct ValidationMetrics {
    rejections: Vec<IntCounter>,
    reference_checks: [IntCounter; 3],
}

impl ValidationMetrics {
    /// Registers validation's metrics.
    pub fn new(registry: &Registry) -> Arc<ValidationMetrics> {
        let val_vec = registry.counter_vec(
            "validation_rejections_total",
            "Requests refused by local validation, by route template and reason.",
            &["route", "reason"],
        );
        let mut rejections = Vec::new();
        for r in Route::ALL {
            for reason in VALIDATION_REASONS {
                rejections.push(val_vec.with_label_values(&[r.label(), reason.reason()]));
            }
        }
        let refs_vec = registry.counter_vec(
            "reference_checks_total",
            "Partnership creates and updates checked against the company's lookups, by result (passed, refused, skipped: a lookup could not be read, so the schema alone was checked).",
            &["result"],
        );
        Arc::new(ValidationMetrics {
            rejections,
            reference_checks: ["passed", "refused", "skipped"]
                .map(|r| refs_vec.with_label_values(&[r])),
        })
    }

    /// Records a validation rejection (those in [`VALIDATION_REASONS`]; the others are
    /// counted as rejections by the request metrics only).
    pub fn validation_rejection(&self, route: Route, rejection: Rejection) {
        let Some(i) = VALIDATION_REASONS.iter().position(|r| *r == rejection) else {
            return;
        };
        self.rejections[route.index() * VALIDATION_REASONS.len() + i].inc();
    }

    /// Counts a reference check.
    pub fn reference_check(&self, result: ReferenceCheck) {
        self.reference_checks[result as usize].inc();
    }
}
