//! The list cache (see [`ListCache`] for freshness, staleness and coalescing).

mod entry;
mod fetch;
mod flight;
mod generations;
mod headers;
mod invalidate;
mod key;
mod l2;
mod layer;
mod list;
pub mod metrics;
mod status;

pub use generations::PENDING_RETRY;
pub use invalidate::{Invalidate, InvalidateLayer};
pub use key::CacheKey;
pub use layer::{CacheLayer, Cached};
pub use list::ListCache;
