//! Every failure the gateway answers itself, and the one place it becomes HTTP.
//!
//! Layers return `Result<_, GatewayError>` internally and turn an error into a reply with
//! `Reply::from`; the match in [`GatewayError::into_response`] is the only status/body mapping in the
//! crate. The client gets a short message in JourneyBee's own shape (`{"error": "..."}`); the
//! detail (which check failed, the upstream's socket error) goes to the log only.

use crate::validate::body::BodyRejection;
use crate::validate::FieldError;
use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::StatusCode;
use http_body_util::Full;

/// The gateway's response body: always fully buffered (small JSON, or shared cached bytes).
pub type Body = Full<Bytes>;
/// The gateway's response type.
pub type Response = http::Response<Body>;

/// Why a bearer token was refused. Logged and counted, never shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// More than one credential (two headers, or a header plus `access_token`).
    MultipleCredentials,
    /// Not `Bearer <jwt>`, or not three base64url parts with a JSON header.
    Malformed,
    /// Longer than `auth.max_token_size`.
    TooLarge,
    /// `alg` is `none` or not in `auth.algorithms`.
    AlgorithmNotAllowed,
    /// No configured key may verify this token (unknown `kid`).
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iss` is not an accepted issuer.
    WrongIssuer,
    /// `aud` is not an accepted audience.
    WrongAudience,
    /// A required claim (`exp`, `iss`, `aud`, the subject) is absent or of the wrong type.
    MissingClaim,
    /// The `typ` header is not one the issuer's `token_types` accepts (an ID token where an
    /// access token is expected, RFC 9068 §4).
    WrongTokenType,
    /// The client certificate of the connection has expired since its handshake (a
    /// keep-alive connection, or a resumed session).
    CertificateExpired,
}

impl AuthFailure {
    /// Every reason, for pre-resolving metric label sets.
    pub const ALL: [AuthFailure; 14] = [
        AuthFailure::Missing,
        AuthFailure::MultipleCredentials,
        AuthFailure::Malformed,
        AuthFailure::TooLarge,
        AuthFailure::AlgorithmNotAllowed,
        AuthFailure::UnknownKey,
        AuthFailure::BadSignature,
        AuthFailure::Expired,
        AuthFailure::NotYetValid,
        AuthFailure::WrongIssuer,
        AuthFailure::WrongAudience,
        AuthFailure::MissingClaim,
        AuthFailure::WrongTokenType,
        AuthFailure::CertificateExpired,
    ];

    /// The metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::MultipleCredentials => "multiple_credentials",
            AuthFailure::Malformed => "malformed",
            AuthFailure::TooLarge => "too_large",
            AuthFailure::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::WrongIssuer => "wrong_issuer",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::MissingClaim => "missing_claim",
            AuthFailure::WrongTokenType => "wrong_token_type",
            AuthFailure::CertificateExpired => "certificate_expired",
        }
    }
}

/// Why an authenticated request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
    /// The token is valid but its subject is not in the identity table.
    UnmappedUser,
    /// A `read` user tried to create.
    WriteRequired,
    /// A list call named a `userId` other than the mapped one.
    ForeignUserId,
    /// The user's config restricts it to other routes.
    RouteNotAllowed,
    /// The client certificate and the bearer token name different users (or the certificate
    /// names several).
    CredentialMismatch,
}

impl Denial {
    /// Every reason, for pre-resolving metric label sets.
    pub const ALL: [Denial; 5] = [
        Denial::UnmappedUser,
        Denial::WriteRequired,
        Denial::ForeignUserId,
        Denial::RouteNotAllowed,
        Denial::CredentialMismatch,
    ];

    /// The metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::UnmappedUser => "unmapped_user",
            Denial::WriteRequired => "write_required",
            Denial::ForeignUserId => "foreign_user_id",
            Denial::RouteNotAllowed => "route_not_allowed",
            Denial::CredentialMismatch => "credential_mismatch",
        }
    }
}

/// Why a request was throttled locally (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Throttle {
    /// The user's fair share is used up.
    UserShare,
    /// The upstream key's budget is used up (or paused after an upstream 429).
    UpstreamBudget,
    /// The circuit breaker is open.
    CircuitOpen,
    /// No upstream connection slot freed in time.
    UpstreamConnections,
}

impl Throttle {
    /// Every reason, for pre-resolving metric label sets.
    pub const ALL: [Throttle; 4] = [
        Throttle::UserShare,
        Throttle::UpstreamBudget,
        Throttle::CircuitOpen,
        Throttle::UpstreamConnections,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Throttle::UserShare => "user_share",
            Throttle::UpstreamBudget => "upstream_budget",
            Throttle::CircuitOpen => "circuit_open",
            Throttle::UpstreamConnections => "upstream_connections",
        }
    }
}

/// Why a write body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyReason {
    /// Not JSON.
    InvalidJson,
    /// JSON, but not an object.
    NotAnObject,
    /// Schema problems.
    Schema,
    /// Well-formed, refused by the domain rules (406).
    Domain,
}

/// A failure the gateway answers itself.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route for the path.
    #[error("no route for this path")]
    NotFound,
    /// The route exists but not for this method.
    #[error("method not allowed (allow: {allow})")]
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: String,
    },
    /// A path id (`{partnershipId}`, ...) is not a positive integer.
    #[error("invalid path parameter {name}")]
    InvalidPathId {
        /// The template's name for the id.
        name: &'static str,
    },
    /// The bearer token was missing or refused.
    #[error("authentication failed: {}", .0.as_str())]
    Unauthenticated(AuthFailure),
    /// Authenticated, but not allowed.
    #[error("authorization denied: {}", .0.as_str())]
    Forbidden(Denial),
    /// A create without `Content-Type: application/json`.
    #[error("unsupported content type")]
    UnsupportedMediaType,
    /// The request body exceeds the limit.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// Reading the request body failed (client went away, malformed chunking).
    #[error("reading the request body failed: {0}")]
    BodyRead(String),
    /// The create body failed validation.
    #[error("invalid create body ({})", .0.reason())]
    InvalidBody(BodyRejection),
    /// A partnership create or update names tiers, stages, tags, users or custom fields the
    /// company does not have.
    #[error("unknown references ({} problem(s))", .0.len())]
    UnknownReferences(Vec<FieldError>),
    /// The list query failed validation.
    #[error("invalid list query ({} problem(s))", .0.len())]
    InvalidQuery(Vec<FieldError>),
    /// The upstream could not be reached (DNS, connect, TLS, reset before a response).
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    /// A write that was never handed to a connection: none could be made (refused, TCP or
    /// TLS not done within `upstream.connect_timeout`), or none was ready in time. Nothing
    /// was sent, so the client may retry, and its idempotency key is free.
    #[error("write not sent: {0}")]
    WriteNotSent(String),
    /// The upstream did not answer in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// A create was sent but its outcome is unknown (timeout or reset after the body was sent).
    #[error("create outcome unknown: {0}")]
    CreateOutcomeUnknown(String),
    /// The upstream answered with more than `upstream.max_response_size` bytes.
    #[error("upstream response larger than {limit} bytes")]
    UpstreamTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The whole request took longer than `server.request_timeout`.
    #[error("request timed out")]
    RequestTimeout,
    /// A write's deadline passed before it was sent: the client is told, truthfully, that
    /// nothing was applied (and the write is never sent after).
    #[error("write timed out before it was sent")]
    WriteTimedOutUnsent,
    /// The gateway is shedding load.
    #[error("overloaded")]
    Overloaded,
    /// The request target is longer than `server.max_uri_length`.
    #[error("request target longer than {limit} bytes")]
    UriTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// The header section is larger than `server.max_header_size`.
    #[error("header section larger than {limit} bytes")]
    HeadersTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// A local budget refused the request before it was sent (per-key upstream budget, the
    /// key paused by an upstream 429, or the user's fair share).
    #[error("throttled ({})", .reason.as_str())]
    Throttled {
        /// The budget that refused.
        reason: Throttle,
        /// Retry-After and the IETF RateLimit fields.
        headers: crate::resilience::RateLimitHeaders,
    },
    /// The circuit breaker is open: upstream failed repeatedly and is given time to recover.
    #[error("circuit open")]
    CircuitOpen {
        /// When the next probe may go through.
        retry_after: std::time::Duration,
    },
    /// The upstream connection bound is exhausted and no slot freed in time.
    #[error("upstream connections exhausted")]
    UpstreamBusy,
    /// `Idempotency-Key` is not 1–255 visible ASCII characters.
    #[error("invalid Idempotency-Key")]
    InvalidIdempotencyKey,
    /// The same `Idempotency-Key` was used with a different body.
    #[error("Idempotency-Key reused with a different body")]
    IdempotencyMismatch,
    /// A request with this `Idempotency-Key` is still in flight.
    #[error("Idempotency-Key in flight")]
    IdempotencyInFlight,
    /// The request with this `Idempotency-Key` was sent but its outcome is unknown: it is
    /// never sent again.
    #[error("Idempotency-Key outcome unknown")]
    IdempotencyOutcomeUnknown,
    /// The shared state backend is unreachable and the request cannot be answered safely
    /// without it (a create with an `Idempotency-Key`).
    #[error("state backend unavailable")]
    StateUnavailable {
        /// When to try again.
        retry_after: std::time::Duration,
    },
    /// The request body did not arrive within `server.body_read_timeout`.
    #[error("request body not received in time")]
    BodyTimeout,
    /// A bug or an impossible state; details in the log.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why the gateway answered a request itself: the [`GatewayError`] variant without its
/// payload. The access log, the metrics and the guard's retry decision read this, never a
/// label string; the labels are derived from it in one place ([`Rejection::kind`],
/// [`Rejection::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// No route for the path.
    NotFound,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// A path id is not a positive integer.
    InvalidPathId,
    /// The bearer token was missing or refused.
    Auth(AuthFailure),
    /// Authenticated, but not allowed.
    Denied(Denial),
    /// A write without `Content-Type: application/json`.
    UnsupportedMediaType,
    /// The body exceeds the limit.
    BodyTooLarge,
    /// Reading the body failed.
    BodyRead,
    /// The body did not arrive in time.
    BodyTimeout,
    /// The body failed validation.
    Body(BodyReason),
    /// The query failed validation.
    Query,
    /// The body names references the company does not have.
    References,
    /// Upstream could not be reached.
    UpstreamUnreachable,
    /// Upstream did not answer in time.
    UpstreamTimeout,
    /// A write was sent but its outcome is unknown.
    OutcomeUnknown,
    /// Upstream's answer was over the size limit.
    UpstreamTooLarge,
    /// The whole request took too long.
    RequestTimeout,
    /// Load shed at the in-flight limit.
    Shed,
    /// Request target too long.
    UriTooLong,
    /// Header section too large.
    HeadersTooLarge,
    /// A local budget, the breaker or the connection bound refused it.
    Throttled(Throttle),
    /// Malformed `Idempotency-Key`.
    IdempotencyInvalidKey,
    /// `Idempotency-Key` reused with another body.
    IdempotencyMismatch,
    /// `Idempotency-Key` still in flight.
    IdempotencyInFlight,
    /// `Idempotency-Key` whose outcome is unknown.
    IdempotencyOutcomeUnknown,
    /// The shared state backend is unavailable.
    StateUnavailable,
    /// A bug.
    Internal,
}

impl Rejection {
    /// The log's `rejected` field: the family of the reason.
    pub fn kind(self) -> &'static str {
        match self {
            Rejection::NotFound | Rejection::MethodNotAllowed => "routing",
            Rejection::Auth(_) => "auth",
            Rejection::Denied(_) => "denied",
            Rejection::InvalidPathId
            | Rejection::UnsupportedMediaType
            | Rejection::BodyTooLarge
            | Rejection::BodyRead
            | Rejection::BodyTimeout
            | Rejection::Body(_)
            | Rejection::Query
            | Rejection::References => "validation",
            Rejection::UpstreamUnreachable
            | Rejection::UpstreamTimeout
            | Rejection::OutcomeUnknown
            | Rejection::UpstreamTooLarge => "upstream",
            Rejection::RequestTimeout => "timeout",
            Rejection::Shed => "overload",
            Rejection::UriTooLong | Rejection::HeadersTooLarge => "limits",
            Rejection::Throttled(_) => "throttled",
            Rejection::IdempotencyInvalidKey
            | Rejection::IdempotencyMismatch
            | Rejection::IdempotencyInFlight
            | Rejection::IdempotencyOutcomeUnknown => "idempotency",
            Rejection::StateUnavailable => "state",
            Rejection::Internal => "internal",
        }
    }

    /// The log's `reason` field and the metrics' `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::NotFound => "not_found",
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::InvalidPathId => "path_id",
            Rejection::Auth(f) => f.as_str(),
            Rejection::Denied(d) => d.as_str(),
            Rejection::UnsupportedMediaType => "unsupported_media_type",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::BodyRead => "body_read",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::Body(BodyReason::InvalidJson) => "invalid_json",
            Rejection::Body(BodyReason::NotAnObject) => "not_object",
            Rejection::Body(BodyReason::Schema) => "schema",
            Rejection::Body(BodyReason::Domain) => "domain",
            Rejection::Query => "query",
            Rejection::References => "references",
            Rejection::UpstreamUnreachable => "unreachable",
            Rejection::UpstreamTimeout => "timeout",
            Rejection::OutcomeUnknown => "outcome_unknown",
            Rejection::UpstreamTooLarge => "too_large",
            Rejection::RequestTimeout => "request_timeout",
            Rejection::Shed => "shed",
            Rejection::UriTooLong => "uri_too_long",
            Rejection::HeadersTooLarge => "headers_too_large",
            Rejection::Throttled(t) => t.as_str(),
            Rejection::IdempotencyInvalidKey => "invalid_key",
            Rejection::IdempotencyMismatch => "mismatch",
            Rejection::IdempotencyInFlight => "in_flight",
            Rejection::IdempotencyOutcomeUnknown => "outcome_unknown",
            Rejection::StateUnavailable => "unavailable",
            Rejection::Internal => "internal",
        }
    }
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    details: &'a [FieldError],
}

/// A JSON `{"error": ...}` response with the given status.
pub fn json_error(status: StatusCode, message: &str, details: &[FieldError]) -> Response {
    let body = serde_json::to_vec(&ErrorBody {
        error: message,
        details,
    })
    .unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec());
    let mut resp = http::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

impl GatewayError {
    /// What is recorded for logs and metrics.
    pub fn rejection(&self) -> Rejection {
        match self {
            GatewayError::NotFound => Rejection::NotFound,
            GatewayError::MethodNotAllowed { .. } => Rejection::MethodNotAllowed,
            GatewayError::InvalidPathId { .. } => Rejection::InvalidPathId,
            GatewayError::Unauthenticated(f) => Rejection::Auth(*f),
            GatewayError::Forbidden(d) => Rejection::Denied(*d),
            GatewayError::UnsupportedMediaType => Rejection::UnsupportedMediaType,
            GatewayError::PayloadTooLarge { .. } => Rejection::BodyTooLarge,
            GatewayError::BodyRead(_) => Rejection::BodyRead,
            GatewayError::InvalidBody(r) => Rejection::Body(match r {
                BodyRejection::InvalidJson(_) => BodyReason::InvalidJson,
                BodyRejection::NotAnObject => BodyReason::NotAnObject,
                BodyRejection::Schema(_) => BodyReason::Schema,
                BodyRejection::Domain(_) => BodyReason::Domain,
            }),
            GatewayError::InvalidQuery(_) => Rejection::Query,
            GatewayError::UnknownReferences(_) => Rejection::References,
            GatewayError::UpstreamUnreachable(_) | GatewayError::WriteNotSent(_) => {
                Rejection::UpstreamUnreachable
            }
            GatewayError::UpstreamTimeout => Rejection::UpstreamTimeout,
            GatewayError::CreateOutcomeUnknown(_) => Rejection::OutcomeUnknown,
            GatewayError::UpstreamTooLarge { .. } => Rejection::UpstreamTooLarge,
            GatewayError::RequestTimeout | GatewayError::WriteTimedOutUnsent => {
                Rejection::RequestTimeout
            }
            GatewayError::Overloaded => Rejection::Shed,
            GatewayError::UriTooLong { .. } => Rejection::UriTooLong,
            GatewayError::HeadersTooLarge { .. } => Rejection::HeadersTooLarge,
            GatewayError::BodyTimeout => Rejection::BodyTimeout,
            GatewayError::Throttled { reason, .. } => Rejection::Throttled(*reason),
            GatewayError::CircuitOpen { .. } => Rejection::Throttled(Throttle::CircuitOpen),
            GatewayError::UpstreamBusy => Rejection::Throttled(Throttle::UpstreamConnections),
            GatewayError::InvalidIdempotencyKey => Rejection::IdempotencyInvalidKey,
            GatewayError::IdempotencyMismatch => Rejection::IdempotencyMismatch,
            GatewayError::IdempotencyInFlight => Rejection::IdempotencyInFlight,
            GatewayError::IdempotencyOutcomeUnknown => Rejection::IdempotencyOutcomeUnknown,
            GatewayError::StateUnavailable { .. } => Rejection::StateUnavailable,
            GatewayError::Internal(_) => Rejection::Internal,
        }
    }

    /// The one mapping from failure to HTTP. Exhaustive on purpose: a new variant must be given
    /// a status here before it compiles.
    pub fn into_response(self) -> Response {
        match &self {
            GatewayError::NotFound => json_error(StatusCode::NOT_FOUND, "Not found", &[]),
            GatewayError::MethodNotAllowed { allow } => {
                let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", &[]);
                if let Ok(v) = HeaderValue::from_str(allow) {
                    r.headers_mut().insert(ALLOW, v);
                }
                r
            }
            GatewayError::InvalidPathId { name } => json_error(
                StatusCode::BAD_REQUEST,
                "Invalid path parameter",
                &[FieldError::new(*name, "must be a positive integer")],
            ),
            GatewayError::Unauthenticated(failure) => {
                // RFC 6750 §3.1: no error code when the request carried no credential at all.
                let (msg, challenge) = match failure {
                    AuthFailure::Missing => ("Missing bearer token", "Bearer"),
                    AuthFailure::CertificateExpired => ("Client certificate expired", "Bearer"),
                    _ => ("Invalid bearer token", "Bearer error=\"invalid_token\""),
                };
                let mut r = json_error(StatusCode::UNAUTHORIZED, msg, &[]);
                r.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
                r
            }
            GatewayError::Forbidden(denial) => {
                let msg = match denial {
                    Denial::UnmappedUser => "User is not authorized to use this API",
                    Denial::WriteRequired => "Write access required for this operation",
                    Denial::ForeignUserId => "userId does not match the authenticated user",
                    Denial::RouteNotAllowed => "This operation is not allowed for this user",
                    Denial::CredentialMismatch => {
                        "Client certificate and bearer token name different users"
                    }
                };
                let mut r = json_error(StatusCode::FORBIDDEN, msg, &[]);
                // RFC 6750 §3.1: the token is fine but does not carry the access this
                // operation needs, which a client can fix by asking for a wider scope.
                if *denial == Denial::WriteRequired {
                    r.headers_mut().insert(
                        WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer error=\"insufficient_scope\""),
                    );
                }
                r
            }
            GatewayError::UnsupportedMediaType => json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
                &[],
            ),
            GatewayError::PayloadTooLarge { limit } => json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Request body exceeds the limit of {limit} bytes"),
                &[],
            ),
            GatewayError::BodyRead(_) => {
                json_error(StatusCode::BAD_REQUEST, "Request body could not be read", &[])
            }
            GatewayError::InvalidBody(rejection) => {
                let status = match rejection {
                    BodyRejection::Domain(_) => StatusCode::NOT_ACCEPTABLE,
                    BodyRejection::InvalidJson(_)
                    | BodyRejection::NotAnObject
                    | BodyRejection::Schema(_) => StatusCode::BAD_REQUEST,
                };
                json_error(status, rejection.summary(), rejection.details())
            }
            // JourneyBee's own text for this case (PATCH /partnerships/{id}).
            GatewayError::UnknownReferences(details) => json_error(
                StatusCode::BAD_REQUEST,
                "Invalid field values or stage UUID not found",
                details,
            ),
            GatewayError::InvalidQuery(details) => {
                json_error(StatusCode::BAD_REQUEST, "Invalid query parameters", details)
            }
            GatewayError::UpstreamUnreachable(_) => json_error(
                StatusCode::BAD_GATEWAY,
                "JourneyBee API is unreachable",
                &[],
            ),
            GatewayError::WriteNotSent(_) => json_error(
                StatusCode::BAD_GATEWAY,
                "JourneyBee API could not be reached: the request was not sent and nothing was \
                 applied; it is safe to retry",
                &[],
            ),
            GatewayError::UpstreamTimeout => json_error(
                StatusCode::GATEWAY_TIMEOUT,
                "JourneyBee API did not answer in time",
                &[],
            ),
            GatewayError::CreateOutcomeUnknown(_) => json_error(
                StatusCode::GATEWAY_TIMEOUT,
                "JourneyBee API did not confirm the write: it may have been applied (for a create: the partnership may have been created); check before retrying",
                &[],
            ),
            GatewayError::UpstreamTooLarge { .. } => json_error(
                StatusCode::BAD_GATEWAY,
                "JourneyBee API response too large",
                &[],
            ),
            GatewayError::RequestTimeout => json_error(
                StatusCode::GATEWAY_TIMEOUT,
                "Request timed out in the gateway",
                &[],
            ),
            GatewayError::WriteTimedOutUnsent => json_error(
                StatusCode::GATEWAY_TIMEOUT,
                "Request timed out in the gateway before it was sent to JourneyBee: nothing was \
                 applied, it is safe to retry",
                &[],
            ),
            GatewayError::Overloaded => {
                let mut r = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Gateway overloaded, retry later",
                    &[],
                );
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            GatewayError::UriTooLong { limit } => json_error(
                StatusCode::URI_TOO_LONG,
                &format!("Request URI exceeds the limit of {limit} bytes"),
                &[],
            ),
            GatewayError::HeadersTooLarge { limit } => json_error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                &format!("Request headers exceed the limit of {limit} bytes"),
                &[],
            ),
            GatewayError::Throttled { reason, headers } => {
                let msg = match reason {
                    Throttle::UserShare => "Rate limit exceeded for this user, retry later",
                    Throttle::UpstreamBudget
                    | Throttle::CircuitOpen
                    | Throttle::UpstreamConnections => "JourneyBee rate limit reached, retry later",
                };
                let mut r = json_error(StatusCode::TOO_MANY_REQUESTS, msg, &[]);
                headers.apply(r.headers_mut());
                r
            }
            GatewayError::CircuitOpen { retry_after } => {
                let mut r = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "JourneyBee API is failing; requests are paused briefly",
                    &[],
                );
                r.headers_mut().insert(
                    RETRY_AFTER,
                    HeaderValue::from(crate::resilience::retry_after_secs(*retry_after)),
                );
                r
            }
            GatewayError::UpstreamBusy => {
                let mut r = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many requests in progress to JourneyBee; nothing was sent, retry later",
                    &[],
                );
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            GatewayError::InvalidIdempotencyKey => json_error(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
                &[],
            ),
            GatewayError::IdempotencyMismatch => json_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency-Key was already used with a different request body",
                &[],
            ),
            GatewayError::IdempotencyInFlight => {
                let mut r = json_error(
                    StatusCode::CONFLICT,
                    "A request with this Idempotency-Key is still in progress, retry later",
                    &[],
                );
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            GatewayError::IdempotencyOutcomeUnknown => json_error(
                StatusCode::CONFLICT,
                "The request with this Idempotency-Key was sent to JourneyBee but its outcome is unknown: the partnership may have been created; list partnerships before retrying with a new key",
                &[],
            ),
            GatewayError::StateUnavailable { retry_after } => {
                let mut r = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Idempotency records are unavailable right now; retry later (nothing was sent)",
                    &[],
                );
                r.headers_mut().insert(
                    RETRY_AFTER,
                    HeaderValue::from(crate::resilience::retry_after_secs(*retry_after)),
                );
                r
            }
            GatewayError::BodyTimeout => json_error(
                StatusCode::REQUEST_TIMEOUT,
                "Request body was not received in time",
                &[],
            ),
            GatewayError::Internal(_) => json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal gateway error",
                &[],
            ),
        }
    }
}
