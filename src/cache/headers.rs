//! What the cache reads from and writes into headers: `Cache-Control` and `Age` values, the
//! client's directives, what upstream forbids storing.

use http::header::{self, HeaderMap, HeaderValue};
use std::sync::OnceLock;
pub(super) const X_CACHE: header::HeaderName = header::HeaderName::from_static("x-cache");

/// Header values for a number of seconds, made once each: a hit answers `Cache-Control:
/// private, max-age=N` and `Age: N` without formatting them again. Beyond the table (an hour)
/// they are formatted per response.
pub(super) const SECONDS_CACHED: usize = 3601;
pub(super) static MAX_AGE: [OnceLock<HeaderValue>; SECONDS_CACHED] =
    [const { OnceLock::new() }; SECONDS_CACHED];
pub(super) static AGE: [OnceLock<HeaderValue>; SECONDS_CACHED] =
    [const { OnceLock::new() }; SECONDS_CACHED];

pub(super) fn seconds_value(
    table: &'static [OnceLock<HeaderValue>; SECONDS_CACHED],
    secs: u64,
    prefix: &str,
) -> HeaderValue {
    let make = || HeaderValue::from_str(&format!("{prefix}{secs}")).expect("ASCII header");
    match table.get(secs as usize) {
        Some(slot) => slot.get_or_init(make).clone(),
        None => make(),
    }
}

/// The client's cache directives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Directive {
    Normal,
    /// `no-cache`, `max-age=0` (or `Pragma: no-cache`): refetch, store the fresh answer.
    Revalidate,
    /// `no-store`: neither read nor write the cache.
    Bypass,
}

pub(super) fn client_directive(headers: &HeaderMap) -> Directive {
    let tokens = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .chain(headers.get_all(header::PRAGMA).iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    let mut d = Directive::Normal;
    for t in tokens {
        if t.eq_ignore_ascii_case("no-store") {
            return Directive::Bypass;
        }
        // `max-age=0` asks for nothing older than now: a real fetch, like `no-cache`.
        if t.eq_ignore_ascii_case("no-cache")
            || t.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("max-age") && v.trim().trim_matches('"') == "0"
            })
        {
            d = Directive::Revalidate;
        }
    }
    d
}

pub(super) fn upstream_forbids_storing(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| {
            t.eq_ignore_ascii_case("no-store")
                || t.eq_ignore_ascii_case("no-cache")
                || t.eq_ignore_ascii_case("private")
        })
}

pub(super) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}
