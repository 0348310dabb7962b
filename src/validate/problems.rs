//! The problems found in a request and how they are reported: one [`FieldError`] per problem,
//! addressed by its path, collected (bounded) by [`Errors`]; a refused body's
//! [`BodyRejection`].

/// One problem found in a request, addressed by a JSON-path-like field name (`emails[1].email`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}
impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// At most this many problems are listed; the rest are counted in one final entry. Without a
/// bound a body of a few hundred kilobytes of bad keys would produce a response many times its
/// size.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// Why a create body was refused. `Schema` and the JSON variants map to 400, `Domain` to 406.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRejection {
    /// 400: not JSON. The message gives serde_json's line and column but never echoes the body.
    InvalidJson(String),
    /// 400: JSON but not an object.
    NotAnObject,
    /// 400: schema problems (every one found).
    Schema(Vec<FieldError>),
    /// 406: the body is well-formed but the domain rules refuse it (every one found).
    Domain(Vec<FieldError>),
}

impl BodyRejection {
    /// A one-line message that reads well alone; for `Schema` and `Domain` it is JourneyBee's
    /// own error text, so clients that only know the upstream's `{"error": ...}` shape still
    /// understand it.
    pub fn summary(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "Request body is not valid JSON",
            Self::NotAnObject => "Request body must be a JSON object",
            Self::Schema(_) => "Invalid email format or missing required fields",
            Self::Domain(_) => "Invalid email domains or attempting to partner with self",
        }
    }

    /// The per-field problems (empty for the JSON-level rejections).
    pub fn details(&self) -> &[FieldError] {
        match self {
            Self::Schema(v) | Self::Domain(v) => v,
            Self::InvalidJson(_) | Self::NotAnObject => &[],
        }
    }

    /// A short, fixed label for metrics: `invalid_json`, `not_object`, `schema` or `domain`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::NotAnObject => "not_object",
            Self::Schema(_) => "schema",
            Self::Domain(_) => "domain",
        }
    }
}

/// Turns a serde_json error into a message with its position. Syntax and end-of-input messages
/// are fixed texts in serde_json; anything else gets a generic text, so no part of the body can
/// be echoed back.
pub(crate) fn json_error_message(err: serde_json::Error) -> BodyRejection {
    use serde_json::error::Category;
    let what = match err.classify() {
        Category::Syntax | Category::Eof => err.to_string(),
        Category::Data | Category::Io => format!(
            "invalid JSON at line {} column {}",
            err.line(),
            err.column()
        ),
    };
    BodyRejection::InvalidJson(what)
}

/// Collects problems up to [`MAX_REPORTED_ERRORS`] and counts the rest.
#[derive(Default)]
pub(crate) struct Errors {
    pub(super) list: Vec<FieldError>,
    pub(super) dropped: usize,
}

impl Errors {
    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.list.len() < MAX_REPORTED_ERRORS {
            self.list.push(FieldError::new(field, message));
        } else {
            self.dropped += 1;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn finish(mut self) -> Vec<FieldError> {
        if self.dropped > 0 {
            self.list.push(FieldError::new(
                "*",
                format!("{} more problem(s) not listed", self.dropped),
            ));
        }
        self.list
    }
}

/// Joins a parent path and a key (`emails[0]` + `email` → `emails[0].email`). Very long keys
/// are shortened so an error list cannot be used to reflect large amounts of input.
pub(crate) fn join(base: &str, key: &str) -> String {
    let key = shorten(key, 64);
    if base.is_empty() {
        key
    } else {
        format!("{base}.{key}")
    }
}

pub(crate) fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
