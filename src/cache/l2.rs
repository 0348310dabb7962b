//! The shared L2 (in the state store): the name of a stored list, its wire format, and the
//! fetch lock a replica holds while it fetches.

use super::entry::Snapshot;
use super::CacheKey;
use crate::exchange::{Facts, UpstreamMeta};
use crate::state::SharedStore;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::StatusCode;
use http_body_util::Full;
use std::sync::Arc;
use std::time::Duration;
/// The L2 name of a cached read: its generation and a digest of the forwarded target, so the
/// user's id and the query never appear in the store in clear.
pub(super) fn l2_id(key: &CacheKey) -> String {
    let fp = crate::state::Fingerprint::of(key.target.as_str().as_bytes());
    format!("{}:{}", key.generation, &fp.hex()[..32])
}

/// The L2's layout of a stored list: raw bytes, no text encoding of the body. `JBL1`, the
/// status (u16), the header count (u16), each header as a u16 length and name then a u16
/// length and value, then the body to the end. The server stamps when it was stored (see
/// `state::redis`), so its age is the server's, the same for every replica.
pub(super) const WIRE_MAGIC: &[u8; 4] = b"JBL1";

pub(super) fn encode(snap: &Snapshot) -> Bytes {
    let body = crate::exchange::body_bytes(&snap.body);
    let mut out = Vec::with_capacity(snap.weight() + 16);
    out.extend_from_slice(WIRE_MAGIC);
    out.extend_from_slice(&snap.status.as_u16().to_be_bytes());
    let headers: Vec<_> = snap
        .headers
        .iter()
        .filter(|(n, v)| n.as_str().len() <= 0xffff && v.len() <= 0xffff)
        .collect();
    out.extend_from_slice(&(headers.len().min(0xffff) as u16).to_be_bytes());
    for (name, value) in headers.into_iter().take(0xffff) {
        out.extend_from_slice(&(name.as_str().len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(&body);
    Bytes::from(out)
}

pub(super) fn decode(bytes: &Bytes) -> Option<Snapshot> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (rest.len() >= n).then(|| rest.split_at(n))?;
        *rest = tail;
        Some(head)
    }
    fn u16_at(rest: &mut &[u8]) -> Option<u16> {
        take(rest, 2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    let mut rest: &[u8] = bytes;
    if take(&mut rest, 4)? != WIRE_MAGIC {
        return None;
    }
    let status = StatusCode::from_u16(u16_at(&mut rest)?).ok()?;
    let count = u16_at(&mut rest)? as usize;
    let mut headers = HeaderMap::with_capacity(count);
    for _ in 0..count {
        let len = u16_at(&mut rest)? as usize;
        let name = http::HeaderName::from_bytes(take(&mut rest, len)?).ok()?;
        let len = u16_at(&mut rest)? as usize;
        let value = HeaderValue::from_bytes(take(&mut rest, len)?).ok()?;
        headers.append(name, value);
    }
    let body = bytes.slice(bytes.len() - rest.len()..);
    Some(Snapshot {
        status,
        headers,
        body: Full::new(body),
        facts: Facts {
            upstream: Some(UpstreamMeta {
                status: Some(status.as_u16()),
                duration: std::time::Duration::ZERO,
                maybe_sent: true,
            }),
            ..Facts::default()
        },
    })
}

/// The L2 fetch lock this replica holds while it fetches a read. If that fetch is dropped
/// before it stores (its client hung up, the request timed out), the lock is released at once
/// instead of making every replica wait on it until it expires.
pub(super) struct L2Lease {
    pub(super) state: SharedStore,
    pub(super) key: Arc<str>,
    pub(super) entry: String,
    /// Cleared once the fetch has stored and unlocked.
    pub(super) armed: bool,
}

impl Drop for L2Lease {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (state, key, entry) = (
            self.state.clone(),
            self.key.clone(),
            std::mem::take(&mut self.entry),
        );
        runtime.spawn(async move {
            let _ = state.l2_put(&key, &entry, None, Duration::ZERO).await;
        });
    }
}
