//! [`KeyMemory`]: the last good JWKS document of each issuer and source, kept across config
//! generations.
//!
//! A reload builds a new verifier with new [`JwksSource`](super::source::JwksSource)s. Without this, a
//! reload during an IdP outage would start with no keys and refuse every token that worked a
//! second before. With it, the new source starts from the document the old one last fetched
//! (re-read with the new generation's algorithms and limits) and replaces it only with a
//! successful fetch.

use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use tokio::time::Instant;

/// Which remembered document: an issuer (by its config name) and where its keys come from
/// (a JWKS URL, or discovery from an issuer URL). A change of either starts afresh.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemoryKey {
    issuer: String,
    location: String,
}

impl MemoryKey {
    /// The key for `issuer`'s keys from `location` (see [`JwksLocation`](super::options::JwksLocation)).
    pub fn new(issuer: &str, location: &super::options::JwksLocation) -> MemoryKey {
        MemoryKey {
            issuer: issuer.to_string(),
            location: location.to_string(),
        }
    }
}

/// A last good document.
#[derive(Clone)]
pub(crate) struct Remembered {
    /// The JWKS document as fetched (public keys only: a JWKS with private members is never
    /// used, see the parser).
    pub(crate) body: Bytes,
    /// When it was fetched, for the key-set age and the refresh timer.
    pub(crate) fetched_at: Instant,
    /// The same moment as a Unix time, for the last-success metric.
    pub(crate) fetched_unix: u64,
}

/// Last good JWKS documents by [`MemoryKey`]; one per process, shared by every generation.
#[derive(Default)]
pub struct KeyMemory {
    entries: Mutex<HashMap<MemoryKey, Remembered>>,
}

impl fmt::Debug for KeyMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMemory")
            .field("entries", &self.len())
            .finish()
    }
}

impl KeyMemory {
    /// An empty memory.
    pub fn new() -> KeyMemory {
        KeyMemory::default()
    }

    /// How many documents are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every document whose key is not in `keep`: issuers or sources no longer in the
    /// config (a later config naming them again starts with a fresh fetch).
    pub fn retain(&self, keep: &HashSet<MemoryKey>) {
        self.lock().retain(|k, _| keep.contains(k));
    }

    pub(crate) fn get(&self, key: &MemoryKey) -> Option<Remembered> {
        self.lock().get(key).cloned()
    }

    pub(crate) fn put(&self, key: &MemoryKey, doc: Remembered) {
        self.lock().insert(key.clone(), doc);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MemoryKey, Remembered>> {
        // Every critical section is a map operation, so a poisoned map is still sound.
        crate::lock(&self.entries)
    }
}
