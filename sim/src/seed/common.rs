//! Helpers the generators share.

use crate::data::Dataset;
use crate::records::Association;

/// Picks `0..=max` distinct items from `ids`, keeping their original order.
pub(crate) fn pick_some(rng: &mut fastrand::Rng, ids: &[u64], max: usize) -> Vec<u64> {
    let n = rng.usize(0..=max.min(ids.len()));
    let mut chosen: Vec<usize> = Vec::with_capacity(n);
    while chosen.len() < n {
        let i = rng.usize(0..ids.len());
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen.sort_unstable();
    chosen.into_iter().map(|i| ids[i]).collect()
}

/// The lower-cased ASCII letters and digits of `s` (for e-mail addresses
/// and domains).
pub(crate) fn slug(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The ids of the tags with this association, in the tenant's order.
pub(crate) fn tag_ids(ds: &Dataset, association: Association) -> Vec<u64> {
    ds.tags
        .iter()
        .filter(|t| t.association == association)
        .map(|t| t.id)
        .collect()
}
