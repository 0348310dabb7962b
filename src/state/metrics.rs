//! The state backend's metrics: whether it answers, whether the generation watch is live,
//! command latency by operation, and failures by operation and kind.

use crate::observe::registry::{Registry, LATENCY_BUCKETS};
use prometheus::{HistogramVec, IntCounterVec, IntGauge};
use std::sync::Arc;
use std::time::Duration;

/// The state backend's handles.
pub struct StateMetrics {
    up: IntGauge,
    watch_up: IntGauge,
    command_duration: HistogramVec,
    errors: IntCounterVec,
}

/// Why a state command failed: the `kind` label of `jbgw_state_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateErrorKind {
    /// The server answered with an error for this command (a Lua runtime error, a key of
    /// the wrong type): a bug, not an outage. Only its own request fails.
    Script,
    /// No reply within `command_timeout`.
    Timeout,
    /// Refused, dropped or broken connection, or a server that cannot serve now (loading,
    /// read-only replica, out of memory, busy).
    Transport,
    /// Not sent: the local breaker is open after consecutive transport failures.
    Skipped,
}

impl StateErrorKind {
    /// Every kind, in label order.
    pub const ALL: [StateErrorKind; 4] = [
        StateErrorKind::Script,
        StateErrorKind::Timeout,
        StateErrorKind::Transport,
        StateErrorKind::Skipped,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StateErrorKind::Script => "script",
            StateErrorKind::Timeout => "timeout",
            StateErrorKind::Transport => "transport",
            StateErrorKind::Skipped => "skipped",
        }
    }
}

/// Every state operation, so their series exist from the start.
pub const STATE_OPS: &[&str] = &[
    "admit",
    "refund",
    "pause",
    "remaining",
    "claim",
    "settle",
    "generation",
    "generations",
    "bump",
    "settle_bump",
    "l2_lookup",
    "l2_put",
];

impl StateMetrics {
    /// Registers the state backend's metrics (every operation's series from the start).
    pub fn new(registry: &Registry) -> Arc<StateMetrics> {
        let up = registry.gauge(
            "state_backend_up",
            "1 while the state backend answers, 0 while the gateway runs degraded on local state.",
        );
        up.set(1);
        let command_duration = registry.histogram_vec(
            "state_command_duration_seconds",
            "State backend command latency, by operation.",
            &["op"],
            LATENCY_BUCKETS,
        );
        for op in STATE_OPS {
            command_duration.with_label_values(&[op]);
        }
        let errors = registry.counter_vec(
            "state_errors_total",
            "State backend commands that failed, by operation and kind (script: the server refused this command, a bug; timeout; transport; skipped: not sent while the breaker is open).",
            &["op", "kind"],
        );
        for op in STATE_OPS {
            for kind in StateErrorKind::ALL {
                errors.with_label_values(&[op, kind.as_str()]);
            }
        }
        let watch_up = registry.gauge(
            "state_generation_watch_up",
            "1 while this replica's subscription to generation bumps is live (cache hits then need no round trip to the state backend), 0 while hits read the generation from it.",
        );
        Arc::new(StateMetrics {
            up,
            watch_up,
            command_duration,
            errors,
        })
    }

    /// Sets the backend-up gauge.
    pub fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    /// Sets the generation-watch gauge (the bump channel's subscription is live).
    pub fn set_watch_up(&self, up: bool) {
        self.watch_up.set(i64::from(up));
    }

    /// Records one command's latency, and why it failed (`None`: it did not).
    pub fn command(&self, op: &'static str, elapsed: Duration, failed: Option<StateErrorKind>) {
        self.command_duration
            .with_label_values(&[op])
            .observe(elapsed.as_secs_f64());
        if let Some(kind) = failed {
            self.errors.with_label_values(&[op, kind.as_str()]).inc();
        }
    }
}
