//! The memory a config lets the process grow to, all limits together, against
//! [`MEMORY_CEILING`](super::ceilings::MEMORY_CEILING).

use super::ceilings::*;
use super::{CacheSettings, IdempotencySettings, Problems, ServerSettings, UpstreamSettings};

/// What the settings allow to grow with traffic, term by term (bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    /// `(option path, what it is, bytes)`.
    pub terms: Vec<(&'static str, String, u64)>,
}

impl Footprint {
    /// The terms of `settings`' sections (`upstream` may be missing from a broken config).
    pub fn of(
        server: &ServerSettings,
        upstream: Option<&UpstreamSettings>,
        cache: &CacheSettings,
        idempotency: &IdempotencySettings,
    ) -> Footprint {
        let mut terms = vec![(
            "server.max_body_size",
            format!(
                "request bodies (server.max_in_flight {} × server.max_body_size {})",
                server.max_in_flight,
                bytes(server.max_body_size as u64)
            ),
            (server.max_in_flight as u64).saturating_mul(server.max_body_size as u64),
        )];
        if let Some(up) = upstream {
            terms.push((
                "upstream.max_response_size",
                format!(
                    "upstream responses (upstream.max_connections {} × upstream.max_response_size {})",
                    up.max_connections,
                    bytes(up.max_response_size as u64)
                ),
                (up.max_connections as u64).saturating_mul(up.max_response_size as u64),
            ));
            let admissions: u64 = up
                .keys
                .iter()
                .filter_map(|k| k.requests_per_minute.limit())
                .map(u64::from)
                .sum();
            terms.push((
                "upstream.keys",
                format!(
                    "budget logs ({admissions} admissions a window × {BUDGET_BYTES_PER_ADMISSION} B)"
                ),
                admissions.saturating_mul(BUDGET_BYTES_PER_ADMISSION),
            ));
        }
        if cache.enabled {
            terms.push(("cache.capacity", "cache.capacity".into(), cache.capacity));
        }
        terms.push((
            "idempotency.capacity",
            "idempotency.capacity".into(),
            idempotency.capacity,
        ));
        Footprint { terms }
    }

    /// All the terms together.
    pub fn total(&self) -> u64 {
        self.terms
            .iter()
            .fold(0u64, |sum, (_, _, n)| sum.saturating_add(*n))
    }

    /// Refuses a total above [`MEMORY_CEILING`], at the path of the largest term.
    pub(super) fn check(&self, p: &mut Problems) {
        let total = self.total();
        if total <= MEMORY_CEILING {
            return;
        }
        let Some((path, _, _)) = self.terms.iter().max_by_key(|(_, _, n)| *n) else {
            return;
        };
        let breakdown: Vec<String> = self
            .terms
            .iter()
            .map(|(_, what, n)| format!("{what}: {}", bytes(*n)))
            .collect();
        p.push(
            *path,
            format!(
                "these settings let memory grow to {} with traffic, more than the {} this \
                 process can hold; lower the largest of: {}",
                bytes(total),
                bytes(MEMORY_CEILING),
                breakdown.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_the_config() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(64 << 10), "64KiB");
        assert_eq!(bytes(3 << 29), "1.5GiB");
        assert_eq!(bytes(4 << 30), "4GiB");
    }

    #[test]
    fn requests_per_minute_has_a_floor_and_a_ceiling() {
        assert_eq!(requests_per_minute(1), Ok(1));
        assert_eq!(
            requests_per_minute(i64::from(MAX_REQUESTS_PER_MINUTE)),
            Ok(MAX_REQUESTS_PER_MINUTE)
        );
        assert!(requests_per_minute(0).is_err());
        assert!(requests_per_minute(-5).is_err());
        let e = requests_per_minute(1_000_000_000).unwrap_err();
        assert!(e.contains("unlimited") && e.contains("1000000"), "{e}");
        assert!(requests_per_minute(i64::MAX).is_err());
    }
}
