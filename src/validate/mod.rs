//! Request validation: create bodies and list queries are checked before they spend upstream budget.
pub mod body;
pub mod metrics;
pub mod query;
pub mod references;
pub mod writes;

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

mod layer;
mod validated;
pub use layer::{Validate, ValidateLayer, ValidationSettings};
pub use validated::{Purpose, Read, Validated, Write};
