//! The simulator's control endpoints (`/__sim/...`, see [`crate::SimConfig::control`]):
//! switch faults and read counters from outside the process, e.g. from a soak script.
//!
//! They are answered before API-key auth, the rate limit, fault handling and the request
//! recorder, so a fault can always be switched off and the recorder keeps meaning
//! "API requests received".
//!
//! Request and response bodies are typed ([`FaultSpec`], [`Stats`]) and go through serde: a
//! body of the wrong shape is refused with a 400 whose message names the problem (unknown
//! mode, missing or unexpected field, wrong type), an out-of-range value with one naming the
//! field and its range. This module uses the shared [`crate::state`] and never the server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::config::RateLimitMode;
use crate::state::{lock, Fault, RecordedRequest, Shared};

/// Every control path starts with this.
pub(crate) const PREFIX: &str = "/__sim/";

/// Whether `path` belongs to the control namespace.
pub(crate) fn is_control_path(path: &str) -> bool {
    path.starts_with(PREFIX) || path == "/__sim"
}

/// The wire form of a [`Fault`]: the body of `PUT /__sim/fault` and of `GET /__sim/fault`,
/// e.g. `{"mode":"slow","ms":300}`. Every mode is a struct variant, even those without
/// fields, so that `deny_unknown_fields` refuses `{"mode":"none","ms":3}` too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum FaultSpec {
    /// [`Fault::None`].
    None {},
    /// [`Fault::Slow`], in milliseconds.
    Slow { ms: u64 },
    /// [`Fault::Status`].
    Status { status: u16 },
    /// [`Fault::RateLimited`].
    RateLimited { retry_after_secs: u64 },
    /// [`Fault::ResetMidResponse`].
    Reset {},
    /// [`Fault::BlackHole`].
    BlackHole {},
}

/// Longest `slow` delay accepted: one hour.
const MAX_SLOW_MS: u64 = 3_600_000;
/// Longest `Retry-After` accepted: one day.
const MAX_RETRY_AFTER_SECS: u64 = 86_400;

impl FaultSpec {
    /// The fault this asks for; `Err` names a field whose value is out of range.
    fn into_fault(self) -> Result<Fault, String> {
        fn range(field: &str, v: u64, min: u64, max: u64) -> Result<u64, String> {
            if (min..=max).contains(&v) {
                Ok(v)
            } else {
                Err(format!(
                    "{field:?} must be an integer from {min} to {max}, got {v}"
                ))
            }
        }
        Ok(match self {
            FaultSpec::None {} => Fault::None,
            FaultSpec::Slow { ms } => {
                Fault::Slow(Duration::from_millis(range("ms", ms, 0, MAX_SLOW_MS)?))
            }
            FaultSpec::Status { status } => {
                range("status", u64::from(status), 100, 599)?;
                Fault::Status(status)
            }
            FaultSpec::RateLimited { retry_after_secs } => Fault::RateLimited {
                retry_after_secs: range(
                    "retry_after_secs",
                    retry_after_secs,
                    0,
                    MAX_RETRY_AFTER_SECS,
                )?,
            },
            FaultSpec::Reset {} => Fault::ResetMidResponse,
            FaultSpec::BlackHole {} => Fault::BlackHole,
        })
    }
}

impl From<&Fault> for FaultSpec {
    fn from(fault: &Fault) -> Self {
        match fault {
            Fault::None => FaultSpec::None {},
            Fault::Slow(d) => FaultSpec::Slow {
                ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            },
            Fault::Status(status) => FaultSpec::Status { status: *status },
            Fault::RateLimited { retry_after_secs } => FaultSpec::RateLimited {
                retry_after_secs: *retry_after_secs,
            },
            Fault::ResetMidResponse => FaultSpec::Reset {},
            Fault::BlackHole => FaultSpec::BlackHole {},
        }
    }
}

/// The answer of `GET /__sim/stats`.
#[derive(Debug, Serialize)]
pub(crate) struct Stats {
    /// API requests received (control requests are not counted).
    pub requests: usize,
    /// Current number of partnerships.
    pub partnerships: usize,
    /// 429s answered by the simulator's own rate limit.
    pub rate_limited: usize,
    /// The most API requests made with one key that arrived within one rate-limit window
    /// (`window_ms`), answered or refused: what a client fleet actually asked of the key, to
    /// compare with the limit. Counted over the recorded requests, so exact while `recorded`
    /// equals `requests` (raise `record_limit` for a long run).
    pub peak_per_window: usize,
    /// The window of `peak_per_window`: the sliding window's length, else one minute.
    pub window_ms: u64,
    /// Requests still held by the recorder.
    pub recorded: usize,
}

/// One minute: the fixed window, and the peak's window when the limit is not sliding.
const MINUTE: Duration = Duration::from_secs(60);

/// The most of `arrivals` (sorted) that fall within one `window`: two arrivals share a window
/// when the later one came less than `window` after the earlier, as the sliding limit counts.
fn peak_in_window(arrivals: &[Instant], window: Duration) -> usize {
    let mut first = 0;
    let mut peak = 0;
    for (i, t) in arrivals.iter().enumerate() {
        while t.saturating_duration_since(arrivals[first]) >= window {
            first += 1;
        }
        peak = peak.max(i + 1 - first);
    }
    peak
}

/// [`peak_in_window`] of each API key's recorded arrivals, the highest of them.
fn peak_per_key<'a>(
    recorded: impl Iterator<Item = &'a RecordedRequest>,
    window: Duration,
) -> usize {
    let mut per_key: HashMap<&str, Vec<Instant>> = HashMap::new();
    for r in recorded {
        if let Some(key) = r.api_key.as_deref() {
            per_key.entry(key).or_default().push(r.received_at);
        }
    }
    per_key
        .into_values()
        .map(|mut arrivals| {
            arrivals.sort_unstable();
            peak_in_window(&arrivals, window)
        })
        .max()
        .unwrap_or(0)
}

/// A control answer before it is turned into a response.
pub(crate) struct ControlReply {
    pub status: StatusCode,
    /// JSON body; `None` for 204.
    pub body: Option<Value>,
    /// `Allow` header value, for 405.
    pub allow: Option<&'static str>,
}

impl ControlReply {
    fn json(status: StatusCode, body: &impl Serialize) -> Self {
        match serde_json::to_value(body) {
            Ok(body) => Self {
                status,
                body: Some(body),
                allow: None,
            },
            Err(e) => Self::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    fn error(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            body: Some(json!({ "error": message })),
            allow: None,
        }
    }

    fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            body: None,
            allow: None,
        }
    }

    fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        }
    }
}

/// Answers one control request.
pub(crate) fn handle(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> ControlReply {
    match path.strip_prefix(PREFIX) {
        Some("fault") => match *method {
            Method::PUT => match parse_fault(body) {
                Ok(fault) => {
                    tracing::info!(?fault, "simulator fault switched via control endpoint");
                    *lock(&shared.fault) = fault;
                    ControlReply::no_content()
                }
                Err(msg) => ControlReply::error(StatusCode::BAD_REQUEST, &msg),
            },
            Method::GET => {
                let spec = FaultSpec::from(&*lock(&shared.fault));
                ControlReply::json(StatusCode::OK, &spec)
            }
            _ => ControlReply::method_not_allowed("GET, PUT"),
        },
        Some("stats") => match *method {
            Method::GET => {
                let window = match shared.config.rate_limit_mode {
                    RateLimitMode::Sliding { window, .. } => window,
                    RateLimitMode::FixedMinute => MINUTE,
                };
                let (requests, recorded, peak_per_window) = {
                    let rec = lock(&shared.recorded);
                    (
                        rec.total,
                        rec.kept.len(),
                        peak_per_key(rec.kept.iter(), window),
                    )
                };
                let stats = Stats {
                    requests,
                    partnerships: lock(&shared.data).partnerships.len(),
                    rate_limited: shared
                        .rate_limited
                        .load(std::sync::atomic::Ordering::SeqCst),
                    peak_per_window,
                    window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
                    recorded,
                };
                ControlReply::json(StatusCode::OK, &stats)
            }
            _ => ControlReply::method_not_allowed("GET"),
        },
        _ => ControlReply::error(StatusCode::NOT_FOUND, "Not found"),
    }
}

/// Parses a `PUT /__sim/fault` body. Strict: a body that is not a JSON object, an unknown
/// mode, a missing, extra or mistyped field and an out-of-range value are refused with a
/// message saying which.
pub(crate) fn parse_fault(body: &[u8]) -> Result<Fault, String> {
    // An object first: serde would also take a sequence (`["slow",300]`) for a tagged enum.
    let obj: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| format!("body must be a JSON object: {e}"))?;
    let spec =
        FaultSpec::deserialize(Value::Object(obj)).map_err(|e| format!("invalid fault: {e}"))?;
    spec.into_fault()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_counts_the_busiest_window_as_the_sliding_limit_does() {
        let t0 = Instant::now();
        let at = |ms: &[u64]| -> Vec<Instant> {
            ms.iter().map(|m| t0 + Duration::from_millis(*m)).collect()
        };
        let w = Duration::from_millis(1000);
        assert_eq!(peak_in_window(&[], w), 0);
        assert_eq!(peak_in_window(&at(&[5]), w), 1);
        // Exactly one window apart: no longer in the same window.
        assert_eq!(peak_in_window(&at(&[0, 1000, 2000]), w), 1);
        assert_eq!(peak_in_window(&at(&[0, 999, 1000]), w), 2);
        // The busiest window is in the middle of the run, not at its start or end.
        assert_eq!(
            peak_in_window(&at(&[0, 1500, 1600, 1700, 2400, 2600, 3700]), w),
            4
        );
    }

    #[test]
    fn parses_every_mode_and_round_trips() {
        let cases = [
            (r#"{"mode":"none"}"#, Fault::None),
            (
                r#"{"mode":"slow","ms":300}"#,
                Fault::Slow(Duration::from_millis(300)),
            ),
            (r#"{"mode":"status","status":503}"#, Fault::Status(503)),
            (
                r#"{"mode":"rate_limited","retry_after_secs":2}"#,
                Fault::RateLimited {
                    retry_after_secs: 2,
                },
            ),
            (r#"{"mode":"reset"}"#, Fault::ResetMidResponse),
            (r#"{"mode":"black_hole"}"#, Fault::BlackHole),
        ];
        for (text, fault) in cases {
            assert_eq!(parse_fault(text.as_bytes()), Ok(fault.clone()), "{text}");
            let back = serde_json::to_string(&FaultSpec::from(&fault)).unwrap();
            assert_eq!(back, text, "the wire form is unchanged");
            assert_eq!(parse_fault(back.as_bytes()), Ok(fault), "{back}");
        }
    }

    #[test]
    fn refuses_bad_bodies_naming_the_problem() {
        for (text, expect) in [
            ("", "JSON object"),
            ("not json", "JSON object"),
            ("[]", "JSON object"),
            (r#"["slow",300]"#, "JSON object"),
            ("{}", "missing field `mode`"),
            (r#"{"mode":1}"#, "invalid type"),
            (r#"{"mode":"explode"}"#, "unknown variant `explode`"),
            (r#"{"mode":"slow"}"#, "missing field `ms`"),
            (r#"{"mode":"slow","ms":-1}"#, "invalid value"),
            (r#"{"mode":"slow","ms":"300"}"#, "invalid type"),
            (r#"{"mode":"slow","ms":3600001}"#, "\"ms\" must be"),
            (r#"{"mode":"status","status":99}"#, "\"status\" must be"),
            (r#"{"mode":"status","status":600}"#, "\"status\" must be"),
            (r#"{"mode":"status","status":70000}"#, "invalid value"),
            (
                r#"{"mode":"rate_limited"}"#,
                "missing field `retry_after_secs`",
            ),
            (r#"{"mode":"none","ms":3}"#, "unknown field `ms`"),
            (
                r#"{"mode":"status","status":503,"code":1}"#,
                "unknown field `code`",
            ),
        ] {
            let err = parse_fault(text.as_bytes()).expect_err(text);
            assert!(err.contains(expect), "{text}: {err}");
        }
    }
}
