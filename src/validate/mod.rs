//! Request validation: create bodies and list queries are checked before they spend upstream budget.
pub mod body;
mod custom_fields;
mod fields;
mod formats;
mod layer;
pub mod metrics;
mod problems;
pub mod query;
pub mod references;
mod rules;
mod validated;
pub mod writes;

pub use layer::{Validate, ValidateLayer, ValidationSettings};
pub use problems::FieldError;
pub use validated::{Purpose, Read, Validated, Write};
