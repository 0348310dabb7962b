//! What validation hands on: a checked read (for the cache) or a checked write (for
//! idempotency, audit and invalidation). The cache and the reference checks take these types
//! without depending on the layer that makes them.

use super::body::CreateSummary;
use crate::exchange::Ctx;
use crate::state::SettleTicket;
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method};

/// A read that passed validation: ready for the cache.
#[derive(Debug)]
pub struct Read {
    /// The request's context.
    pub ctx: Ctx,
    /// The path and canonical query to forward (the forced `userId` included): the cache key.
    pub target: PathAndQuery,
    /// The client's headers (the cache reads its `Cache-Control`; none is forwarded).
    pub headers: HeaderMap,
    /// Who the read is for.
    pub purpose: Purpose,
}

/// Who a read is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The client that asked for it.
    Client,
    /// A write's reference checks (a company lookup): cached whenever reference checks are
    /// on, even with `[cache] enabled = false`, and spent as the `lookup` budget class.
    References,
}

/// A write that passed validation: its body read in full and checked.
#[derive(Debug)]
pub struct Write {
    /// The request's context.
    pub ctx: Ctx,
    /// POST, PATCH or DELETE.
    pub method: Method,
    /// The path (a write's query is never forwarded).
    pub target: PathAndQuery,
    /// The client's headers.
    pub headers: HeaderMap,
    /// The body, exactly as the client sent it.
    pub body: Bytes,
    /// For a partnership create: what the audit event records.
    pub summary: Option<CreateSummary>,
    /// For a keyed write whose idempotency record this replica claimed (set by replay): what
    /// settling the record takes. The invalidation below settles it with an accepted write's
    /// generation bump, in one store call, and says so in the reply's facts
    /// (`Facts::settled`); otherwise replay settles it itself.
    pub settle: Option<SettleTicket>,
}

/// A validated request: reads and writes go separate ways from here.
#[derive(Debug)]
pub enum Validated {
    /// A read.
    Read(Read),
    /// A write.
    Write(Write),
}
