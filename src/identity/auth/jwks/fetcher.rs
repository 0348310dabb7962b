//! How keys are fetched: the [`Fetcher`] the gateway supplies (so this module does not depend
//! on its HTTP client), and the bound on the documents it returns.

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;

/// What a [`Fetcher`] returns: the response body, or why there is none.
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send>>;

/// Fetches a URL's body — supplied by the gateway so this module does not depend on its HTTP
/// client. Implementations send a GET, treat any status but 2xx as an error, bound the body
/// size (see [`MAX_DOCUMENT_BYTES`]) and apply a timeout.
pub trait Fetcher: Send + Sync + 'static {
    /// GETs `url` and returns its body.
    fn get(&self, url: &http::Uri) -> FetchFuture;
}

/// Largest JWKS or discovery document accepted. Real ones are a few KiB; the fetcher should
/// stop reading well before this, and this module checks again so a fetcher that does not
/// cannot make it parse an arbitrarily large body.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Shortens `s` to at most `max` bytes on a char boundary, so messages built from a document
/// stay small.
pub(super) fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("ééé", 3), "é…");
    }
}
