//! The seeded tenant: everything a fresh simulator serves, generated
//! deterministically from the configured seed so that a test can rely on
//! the same ids, names and ordering on every run.
//!
//! Two random streams: the main one (seeded with the seed) draws the users,
//! the partner lookups and the partnerships ([`tenant`]); the extra one
//! draws everything added later ([`lookups`], [`leads`], [`deals`], in that
//! order), so that the partnerships stay exactly what they were for a seed.

mod common;
mod deals;
mod leads;
mod lookups;
mod tenant;

use crate::data::Dataset;

pub(crate) use tenant::GenParams;

/// Builds the tenant deterministically from `p.seed`.
pub(crate) fn generate(p: &GenParams<'_>) -> Dataset {
    let mut ds = tenant::generate(p);
    lookups::enrich(&mut ds);
    leads::generate(&mut ds);
    deals::generate(&mut ds);
    ds
}
