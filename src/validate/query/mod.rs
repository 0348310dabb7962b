//! Query validation and normalization for every read route (`GET /api/v1/partnerships`, leads,
//! deals, the lookups), each described by a [`QuerySpec`] in the route table.
//!
//! The normalized form is both the cache key and what is forwarded upstream, so two queries
//! normalize to the same form only when JourneyBee must answer them identically:
//!
//! * parameters are ordered by name (order never matters to a query-string reader);
//! * id lists (`stages`, `tags`, `categories`, `tiers`, `users`) are filter *sets*: parsed as
//!   integers, sorted, de-duplicated and joined with `,`; ASCII spaces and tabs around items are
//!   tolerated (`1, 2`) because they carry no meaning once the items are integers;
//! * `customFields` filters are ANDed independently, so they are ordered by id and re-serialized
//!   compactly with a fixed key order; values inside a filter are kept as given;
//! * `sort` is a priority list: re-serialized compactly with a fixed key order, but its array
//!   order is kept;
//! * `search`, `cursor` and `view` are kept exactly as given after percent-decoding (the
//!   project's reading: case and spacing of `search` can change the answer; `cursor` is opaque);
//! * a missing `view` is not the same as `view=all` (the default depends on the company).
//!
//! Decoding follows `application/x-www-form-urlencoded` (`+` is a space); the output is encoded
//! with [`form_urlencoded::Serializer`], so `canonical()` parses back to the same query.
//! Values must be UTF-8 after percent-decoding: a lossy replacement would silently change what
//! upstream is asked.

mod canonical;
mod form;
mod json_params;
mod parse;
mod spec;

pub use canonical::ListQuery;
pub use parse::{parse_list_query, parse_query, ParsedQuery, QueryLimits};
pub use spec::{
    Kind, QuerySpec, CONTACTS, CUSTOM_FIELDS, LEADS, LEAD_DEALS, NONE, PARTNERSHIPS, TAGS, USERS,
};
