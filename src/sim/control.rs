//! The simulator's control endpoints (`/__sim/...`, see [`super::SimConfig::control`]):
//! switch faults and read counters from outside the process, e.g. from a soak script.
//!
//! They are answered before API-key auth, the rate limit, fault handling and the request
//! recorder, so a fault can always be switched off and the recorder keeps meaning
//! "API requests received".

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::server::{lock, Shared};
use super::Fault;

/// Every control path starts with this.
pub(super) const PREFIX: &str = "/__sim/";

/// Whether `path` belongs to the control namespace.
pub(super) fn is_control_path(path: &str) -> bool {
    path.starts_with(PREFIX) || path == "/__sim"
}

/// A control answer before it is turned into a response.
pub(super) struct ControlReply {
    pub status: StatusCode,
    /// JSON body; `None` for 204.
    pub body: Option<Value>,
    /// `Allow` header value, for 405.
    pub allow: Option<&'static str>,
}

impl ControlReply {
    fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            allow: None,
        }
    }

    fn error(status: StatusCode, message: &str) -> Self {
        Self::json(status, json!({ "error": message }))
    }

    fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        }
    }
}

/// Answers one control request.
pub(super) fn handle(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> ControlReply {
    match path.strip_prefix(PREFIX) {
        Some("fault") => match *method {
            Method::PUT => match parse_fault(body) {
                Ok(fault) => {
                    tracing::info!(?fault, "simulator fault switched via control endpoint");
                    *lock(&shared.fault) = fault;
                    ControlReply {
                        status: StatusCode::NO_CONTENT,
                        body: None,
                        allow: None,
                    }
                }
                Err(msg) => ControlReply::error(StatusCode::BAD_REQUEST, &msg),
            },
            Method::GET => ControlReply::json(StatusCode::OK, fault_json(&lock(&shared.fault))),
            _ => ControlReply::method_not_allowed("GET, PUT"),
        },
        Some("stats") => match *method {
            Method::GET => {
                let requests = lock(&shared.recorded).total;
                let partnerships = lock(&shared.data).partnerships.len();
                ControlReply::json(
                    StatusCode::OK,
                    json!({ "requests": requests, "partnerships": partnerships }),
                )
            }
            _ => ControlReply::method_not_allowed("GET"),
        },
        _ => ControlReply::error(StatusCode::NOT_FOUND, "Not found"),
    }
}

/// The JSON form of a fault, as accepted by `PUT /__sim/fault`.
pub(super) fn fault_json(fault: &Fault) -> Value {
    match fault {
        Fault::None => json!({ "mode": "none" }),
        Fault::Slow(d) => {
            json!({ "mode": "slow", "ms": u64::try_from(d.as_millis()).unwrap_or(u64::MAX) })
        }
        Fault::Status(code) => json!({ "mode": "status", "status": code }),
        Fault::RateLimited { retry_after_secs } => {
            json!({ "mode": "rate_limited", "retry_after_secs": retry_after_secs })
        }
        Fault::ResetMidResponse => json!({ "mode": "reset" }),
        Fault::BlackHole => json!({ "mode": "black_hole" }),
    }
}

/// Parses a `PUT /__sim/fault` body. Strict: unknown modes, missing or extra fields and
/// out-of-range values are refused with a message saying which.
pub(super) fn parse_fault(body: &[u8]) -> Result<Fault, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("body must be a JSON object".into());
    };
    let Some(mode) = obj.get("mode").and_then(Value::as_str) else {
        return Err("\"mode\" (a string) is required".into());
    };
    let (fault, fields): (Fault, &[&str]) = match mode {
        "none" => (Fault::None, &[]),
        "slow" => {
            let ms = uint(&obj, "ms", 0, 3_600_000)?;
            (Fault::Slow(Duration::from_millis(ms)), &["ms"])
        }
        "status" => {
            let status = uint(&obj, "status", 100, 599)?;
            let status = u16::try_from(status).map_err(|_| "status out of range".to_string())?;
            (Fault::Status(status), &["status"])
        }
        "rate_limited" => {
            let retry_after_secs = uint(&obj, "retry_after_secs", 0, 86_400)?;
            (Fault::RateLimited { retry_after_secs }, &["retry_after_secs"])
        }
        "reset" => (Fault::ResetMidResponse, &[]),
        "black_hole" => (Fault::BlackHole, &[]),
        other => {
            return Err(format!(
                "unknown mode {other:?}; expected none, slow, status, rate_limited, reset or black_hole"
            ))
        }
    };
    if let Some(extra) = obj
        .keys()
        .find(|k| k.as_str() != "mode" && !fields.contains(&k.as_str()))
    {
        return Err(format!("unexpected field {extra:?} for mode {mode:?}"));
    }
    Ok(fault)
}

fn uint(obj: &Map<String, Value>, field: &str, min: u64, max: u64) -> Result<u64, String> {
    obj.get(field)
        .and_then(Value::as_u64)
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| format!("{field:?} must be an integer from {min} to {max}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let back = fault_json(&fault).to_string();
            assert_eq!(parse_fault(back.as_bytes()), Ok(fault), "{back}");
        }
    }

    #[test]
    fn refuses_bad_bodies() {
        for text in [
            "",
            "[]",
            "{}",
            r#"{"mode":1}"#,
            r#"{"mode":"explode"}"#,
            r#"{"mode":"slow"}"#,
            r#"{"mode":"slow","ms":-1}"#,
            r#"{"mode":"slow","ms":"300"}"#,
            r#"{"mode":"status","status":99}"#,
            r#"{"mode":"status","status":600}"#,
            r#"{"mode":"rate_limited"}"#,
            r#"{"mode":"none","ms":3}"#,
            r#"{"mode":"status","status":503,"code":1}"#,
        ] {
            assert!(parse_fault(text.as_bytes()).is_err(), "{text}");
        }
    }
}
