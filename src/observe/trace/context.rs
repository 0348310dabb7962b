//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): a request's `traceparent` and
//! `tracestate` are accepted when well-formed, or a trace is started; the gateway's span for
//! the request is the parent of its steps, and the upstream call's own span id is the parent
//! JourneyBee receives (`traceparent` forwarded, the caller's `tracestate` with it); the trace
//! id goes in the access and audit lines. With `[tracing] otlp_endpoint`, sampled requests'
//! spans are exported ([`export`](super::export)).
//!
//! The context is read where the connection hands a request to the stack (the listener), so
//! every request of the public listener has one, rejections included. A malformed
//! `traceparent` (or two of them) is not an error: a new trace is started and the caller's
//! `tracestate` dropped, as the specification asks. Nothing here is a secret, and nothing from
//! the headers is logged but the trace id, which is hex by construction.

use http::{HeaderMap, HeaderValue};
use std::fmt;

use super::recorder::{Recorder, Tracer};
use std::sync::Arc;

/// The header names.
pub const TRACEPARENT: &str = "traceparent";
/// The vendor-specific companion of `traceparent`.
pub const TRACESTATE: &str = "tracestate";

/// Longest `tracestate` forwarded (32 members of up to 256 bytes are allowed; 512 is what
/// the specification asks every vendor to propagate at least).
const MAX_TRACESTATE: usize = 512;

/// A trace id; displayed as the 32 lower-case hex digits of the log field (formatted when a
/// line is written: a request allocates nothing for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub [u8; 16]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// One request's trace context (a request extension, set by the listener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace id.
    pub trace_id: TraceId,
    /// The gateway's span for this request: the parent of the upstream call.
    pub span_id: [u8; 8],
    /// The caller's span, when the request came with a valid `traceparent`.
    pub parent_id: Option<[u8; 8]>,
    /// The caller's sampled flag (0 for a trace the gateway started: nothing records it).
    pub flags: u8,
    /// The caller's `tracestate`, forwarded as is (only with a valid `traceparent`).
    pub state: Option<HeaderValue>,
    /// Where the request's spans go: set when `[tracing]` exports and the request is sampled.
    pub recorder: Option<Recorder>,
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

/// Lower-case hex of exactly `N` bytes, not all zero.
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    (out != [0u8; N]).then_some(out)
}

pub(super) fn nonzero_span() -> [u8; 8] {
    fastrand::u64(1..).to_be_bytes()
}

impl TraceContext {
    /// Decides whether the request is recorded, parent-based: a caller's sampled flag is
    /// followed; a trace started here is sampled with `sample_ratio`. The decision goes
    /// upstream in the flags of `traceparent`.
    pub fn sample(&mut self, tracer: &Arc<Tracer>) {
        let sampled = match self.parent_id {
            Some(_) => self.flags & 1 == 1,
            None => tracer.ratio >= 1.0 || (tracer.ratio > 0.0 && fastrand::f64() < tracer.ratio),
        };
        self.flags = u8::from(sampled);
        self.recorder = sampled.then(|| Recorder(tracer.clone()));
    }

    /// The request's context: the caller's when its `traceparent` is valid, else a new trace.
    pub fn from_headers(headers: &HeaderMap) -> TraceContext {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let parent = match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok().and_then(parse_traceparent),
            _ => None,
        };
        match parent {
            Some((trace, parent, flags)) => TraceContext {
                trace_id: TraceId(trace),
                span_id: nonzero_span(),
                parent_id: Some(parent),
                flags,
                state: tracestate(headers),
                recorder: None,
            },
            None => TraceContext {
                trace_id: TraceId(fastrand::u128(1..).to_be_bytes()),
                span_id: nonzero_span(),
                parent_id: None,
                flags: 0,
                state: None,
                recorder: None,
            },
        }
    }

    /// The `traceparent` for the upstream call: this trace, the gateway's span as parent.
    pub fn traceparent(&self) -> HeaderValue {
        self.traceparent_for(self.span_id)
    }

    /// The `traceparent` naming `span_id` (the upstream call's own span) as the parent.
    pub fn traceparent_for(&self, span_id: [u8; 8]) -> HeaderValue {
        let text = format!("00-{}-{}-{:02x}", self.trace_id, hex(&span_id), self.flags);
        HeaderValue::try_from(text).expect("hex is a valid header value")
    }
}

/// `version-traceid-parentid-flags`. Version 00 is exactly 55 characters; a later version may
/// append fields after a `-`, which are ignored; version ff is invalid.
fn parse_traceparent(s: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let version = unhex_any::<1>(s.get(..2)?)?[0];
    if version == 0xff || (version == 0 && s.len() != 55) || s.len() < 55 {
        return None;
    }
    if version != 0 && s.len() > 55 && s.as_bytes()[55] != b'-' {
        return None;
    }
    let b = s.as_bytes();
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let trace = unhex::<16>(&s[3..35])?;
    let parent = unhex::<8>(&s[36..52])?;
    let flags = unhex_any::<1>(&s[53..55])?[0];
    // Only the sampled bit is defined; the others are not propagated.
    Some((trace, parent, flags & 0x01))
}

/// Lower-case hex of exactly `N` bytes, zero allowed.
fn unhex_any<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.bytes().all(|b| b == b'0') && s.len() == N * 2 {
        return Some([0u8; N]);
    }
    unhex::<N>(s)
}

/// The caller's `tracestate` (several header fields are one list), when it is short and
/// printable; otherwise none is forwarded.
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut joined = String::new();
    for v in headers.get_all(TRACESTATE) {
        let v = v.to_str().ok()?.trim();
        if v.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(v);
    }
    if joined.is_empty() || joined.len() > MAX_TRACESTATE {
        return None;
    }
    HeaderValue::try_from(joined).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued() {
        let t = TraceContext::from_headers(&headers(&[
            (TRACEPARENT, TP),
            (TRACESTATE, "congo=t61rcWkgMzE"),
        ]));
        assert_eq!(t.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_id,
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert_eq!(t.flags, 1);
        assert_eq!(t.state.as_ref().unwrap(), "congo=t61rcWkgMzE");
        let up = t.traceparent();
        let up = up.to_str().unwrap();
        assert!(
            up.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{up}"
        );
        assert!(up.ends_with("-01"));
        assert_ne!(
            &up[36..52],
            "00f067aa0ba902b7",
            "the gateway's own span is the parent"
        );
        assert_eq!(
            parse_traceparent(up).map(|p| p.0),
            parse_traceparent(TP).map(|p| p.0)
        );
    }

    #[test]
    fn anything_else_starts_a_new_trace_and_drops_tracestate() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "zz",
        ] {
            let t =
                TraceContext::from_headers(&headers(&[(TRACEPARENT, bad), (TRACESTATE, "a=b")]));
            assert_eq!(t.parent_id, None, "{bad}");
            assert_eq!(t.state, None, "{bad}");
            assert_eq!(t.trace_id.to_string().len(), 32);
            assert_ne!(t.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        }
        // A later version may add fields.
        let t = TraceContext::from_headers(&headers(&[(
            TRACEPARENT,
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever",
        )]));
        assert_eq!(t.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        // Two traceparents: which one? Neither.
        let t = TraceContext::from_headers(&headers(&[(TRACEPARENT, TP), (TRACEPARENT, TP)]));
        assert_eq!(t.parent_id, None);
        // Started here: not sampled, a valid traceparent.
        let t = TraceContext::from_headers(&HeaderMap::new());
        assert_eq!(t.flags, 0);
        assert!(parse_traceparent(t.traceparent().to_str().unwrap()).is_some());
    }

    #[test]
    fn tracestate_fields_are_one_list_and_bounded() {
        let t = TraceContext::from_headers(&headers(&[
            (TRACEPARENT, TP),
            (TRACESTATE, "a=1"),
            (TRACESTATE, "b=2"),
        ]));
        assert_eq!(t.state.unwrap(), "a=1,b=2");
        let long = format!("a={}", "x".repeat(600));
        let t = TraceContext::from_headers(&headers(&[(TRACEPARENT, TP), (TRACESTATE, &long)]));
        assert_eq!(t.state, None);
    }
}
