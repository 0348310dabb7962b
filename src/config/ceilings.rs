//! What the process can hold: the ceilings every rate, size and count in the config is checked
//! against, so that `check-config` refuses what `serve` could not honour (with the option's
//! path and the reason) instead of the gateway aborting at start or growing until it is killed.
//!
//! Nothing is allocated up front in proportion to a limit: a budget log, the cache and the
//! idempotency records start empty and grow with traffic. These ceilings bound how far they,
//! and the buffers of the requests in progress, may grow:
//!
//! | what grows with traffic | bounded by | ceiling |
//! |---|---|---|
//! | a key's sliding log | `upstream.keys.*.requests_per_minute` entries of [`LOG_ENTRY_BYTES`] | [`MAX_REQUESTS_PER_MINUTE`] (or `"unlimited"`: no log) |
//! | a user's fair-share log | its key's log (every user admission is one of the key's) | as above |
//! | a buffered request body | `server.max_body_size` | [`MAX_BODY_SIZE`] |
//! | a buffered upstream response | `upstream.max_response_size` | [`MAX_RESPONSE_SIZE`] |
//! | a connection's header buffer | `server.max_header_size` + `server.max_uri_length` | [`MAX_HEADER_SIZE`] each |
//! | requests in progress | `server.max_in_flight` | [`MAX_IN_FLIGHT`] |
//! | upstream connections | `upstream.max_connections` | [`MAX_CONNECTIONS`] |
//!
//! and all of them together (`footprint::Footprint`) by [`MEMORY_CEILING`].

use super::Problems;

/// Largest finite `requests_per_minute` of a key or user: 1,000,000 a minute (about 16,700 a
/// second). A full window then holds 1,000,000 log entries: about 23 MiB for the key's log,
/// as much for its users' logs. Above it, `"unlimited"` says what is meant.
pub const MAX_REQUESTS_PER_MINUTE: u32 = 1_000_000;
/// Bytes of one entry of a sliding log (send time and id), checked against the store's own
/// type in `state::memory`.
pub const LOG_ENTRY_BYTES: u64 = 24;
/// Bytes one admission holds while it is in the window: its entry in the key's log and in its
/// user's fair-share log (a log's spare capacity, at most what it holds, comes on top: the
/// bench's gateway measured 32 MiB peak RSS after 84,000 admissions, 25 MiB with none).
pub const BUDGET_BYTES_PER_ADMISSION: u64 = 2 * LOG_ENTRY_BYTES;
/// Largest `server.max_body_size`: a create body is a few KiB of JSON, parsed in memory.
pub const MAX_BODY_SIZE: u64 = 64 << 20;
/// Largest `upstream.max_response_size`: a list page is buffered whole (and maybe cached).
pub const MAX_RESPONSE_SIZE: u64 = 256 << 20;
/// Largest `server.max_header_size` and `server.max_uri_length` (each connection's read buffer
/// may grow to twice their sum).
pub const MAX_HEADER_SIZE: u64 = 1 << 20;
/// Largest `server.max_in_flight`: each request in progress holds a client connection (a file
/// descriptor) and its buffers.
pub const MAX_IN_FLIGHT: usize = 1_000_000;
/// Largest `upstream.max_connections`: one TCP connection each, and a host has about 64 K
/// ephemeral ports per upstream address.
pub const MAX_CONNECTIONS: usize = 65_536;
/// Largest `Footprint::total`: what the settings together allow to grow with traffic.
pub const MEMORY_CEILING: u64 = 4 << 30;

/// A byte count as the config writes it: `64MiB`, `1.5GiB`, `512B`.
pub fn bytes(n: u64) -> String {
    for (unit, size) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if n >= size {
            return if n.is_multiple_of(size) {
                format!("{}{unit}", n / size)
            } else {
                format!("{:.1}{unit}", n as f64 / size as f64)
            };
        }
    }
    format!("{n}B")
}

/// Refuses a size above `max`, saying why the ceiling is there. Returns the size kept (the
/// ceiling when refused, so later checks do not report the same value again).
pub(super) fn size_at_most(p: &mut Problems, path: &str, value: u64, max: u64, why: &str) -> u64 {
    if value > max {
        p.push(
            path,
            format!(
                "{} is more than the {} this process can hold ({why})",
                bytes(value),
                bytes(max)
            ),
        );
        return max;
    }
    value
}

/// Refuses a count above `max`, saying why. Returns the count kept (the ceiling when refused).
pub(super) fn count_at_most(
    p: &mut Problems,
    path: &str,
    value: usize,
    max: usize,
    why: &str,
) -> usize {
    if value > max {
        p.push(path, format!("{value} is more than {max} ({why})"));
        return max;
    }
    value
}

/// A `requests_per_minute` a sliding log can hold, or the problem with it.
pub(super) fn requests_per_minute(n: i64) -> Result<u32, String> {
    if n <= 0 {
        return Err("must be greater than zero".into());
    }
    match u32::try_from(n) {
        Ok(n) if n <= MAX_REQUESTS_PER_MINUTE => Ok(n),
        _ => Err(format!(
            "{n} is more than a sliding log can hold: at most {MAX_REQUESTS_PER_MINUTE} a minute \
             ({LOG_ENTRY_BYTES} B per admission in the window, ≤ {} for a full window); set \
             \"unlimited\" for no local budget",
            bytes(u64::from(MAX_REQUESTS_PER_MINUTE) * LOG_ENTRY_BYTES)
        )),
    }
}
