//! Idempotency records: their identity ([`IdemId`]), the request's [`Fingerprint`], what
//! claiming one found ([`Claim`]), how it ends ([`Settle`], [`StoredOutcome`]) and what
//! settling one takes ([`SettleTicket`]).

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// The identity of an idempotency record: (upstream key, user, `Idempotency-Key`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdemId {
    /// The upstream key's name.
    pub key: Arc<str>,
    /// The mapped user's name.
    pub user: Arc<str>,
    /// The client's `Idempotency-Key`.
    pub idem: String,
}

/// SHA-256 of what a create asked for (path and body): comparable across replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `material`.
    pub fn of(material: &[u8]) -> Fingerprint {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, material);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Fingerprint(out)
    }

    /// Lower-case hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// A definitive upstream answer, as stored and replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOutcome {
    /// The HTTP status.
    pub status: u16,
    /// The content type, if any (the only header a replay needs).
    pub content_type: Option<String>,
    /// The response body.
    pub body: Bytes,
}

/// What claiming an idempotency record found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First use: the record is now in flight and ours; send, then settle it.
    Proceed,
    /// Completed with the same request: replay this.
    Replay(StoredOutcome),
    /// The key was used with another request (422).
    Mismatch,
    /// The same request is upstream right now (wait, then 409).
    InFlight,
    /// The request was sent but its outcome is unknown (the sender died or timed out):
    /// never sent again.
    Unknown,
}

/// How a claimed record ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Upstream gave a definitive answer: replay it for the record's TTL.
    Completed(StoredOutcome),
    /// Sent, but no definitive answer: repeats get the "may have been created" error.
    Unknown,
    /// Never sent (refused locally before leaving): the key is free again.
    Release,
}

/// A record this replica claimed, and how long a completed outcome is kept: what settling it
/// takes. The replay layer hands it down with a keyed write so that the layer which bumps the
/// write's generations settles the record in the same store call
/// ([`Store::settle_and_bump`](super::Store::settle_and_bump)): one round trip instead of two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleTicket {
    /// The record.
    pub id: IdemId,
    /// How long a completed outcome is replayed.
    pub ttl: Duration,
}
