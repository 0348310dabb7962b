//! An answer of an API route before it becomes an HTTP response.

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

/// Message of the 429s (the rate limit and [`crate::Fault::RateLimited`]).
pub(crate) const MSG_TOO_MANY: &str = "Too many requests";

/// A reply: status, serialized JSON body (empty for 204) and an optional
/// `Retry-After`.
pub(crate) struct Reply {
    pub status: StatusCode,
    /// Serialized JSON; empty means no body and no `Content-Type`.
    pub body: Bytes,
    pub retry_after: Option<u64>,
}

impl Reply {
    /// `status` with `body` serialized as JSON.
    pub(crate) fn new(status: StatusCode, body: &impl serde::Serialize) -> Self {
        Self {
            status,
            // Serializing plain structs and maps cannot fail.
            body: serde_json::to_vec(body).unwrap_or_default().into(),
            retry_after: None,
        }
    }

    /// 200 with `body`.
    pub(crate) fn ok(body: &impl serde::Serialize) -> Self {
        Self::new(StatusCode::OK, body)
    }

    /// 201 with `body`.
    pub(crate) fn created(body: &impl serde::Serialize) -> Self {
        Self::new(StatusCode::CREATED, body)
    }

    /// 204 without a body (DELETE).
    pub(crate) fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            body: Bytes::new(),
            retry_after: None,
        }
    }

    /// The documented error shape `{"error": "..."}`.
    pub(crate) fn error(status: StatusCode, message: &str) -> Self {
        Self::new(status, &json!({ "error": message }))
    }

    /// 400 with `message`.
    pub(crate) fn bad(message: &str) -> Self {
        Self::error(StatusCode::BAD_REQUEST, message)
    }

    /// 404 with `message`.
    pub(crate) fn not_found(message: &str) -> Self {
        Self::error(StatusCode::NOT_FOUND, message)
    }

    /// 429 with `Retry-After`.
    pub(crate) fn too_many(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::error(StatusCode::TOO_MANY_REQUESTS, MSG_TOO_MANY)
        }
    }
}

/// `Ok` and `Err` are both answers; handlers use `?` on input errors.
pub(crate) type Answer = Result<Reply, Reply>;

/// Collapses an [`Answer`].
pub(crate) fn answer(a: Answer) -> Reply {
    a.unwrap_or_else(|e| e)
}

/// Maps an input error message to a 400 reply, for `?`.
pub(crate) fn bad_request(msg: String) -> Reply {
    Reply::bad(&msg)
}
