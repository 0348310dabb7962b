//! The request id: the client's `X-Request-Id` when it is sane, else a new random one. It is
//! echoed to the client, forwarded upstream and logged.

use http::HeaderValue;

/// The header that carries it both ways.
pub const X_REQUEST_ID: &str = "x-request-id";

/// The request's id: the client's `value` when it is 1–128 visible ASCII characters (so it
/// can go into logs and upstream headers without escaping), else a new one.
pub fn request_id(value: Option<&HeaderValue>) -> HeaderValue {
    match value {
        Some(v) if sane_request_id(v) => v.clone(),
        _ => new_request_id(),
    }
}

fn sane_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| (0x21..=0x7e).contains(c))
}

// Not tower-http's SetRequestId: it keeps any client id unchecked; ours travels in `Accepted`.
/// 128 random bits as 32 lowercase hex digits.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut out = [0u8; 32];
    for b in out.iter_mut().rev() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    HeaderValue::from_bytes(&out).expect("hex is a valid header value")
}
