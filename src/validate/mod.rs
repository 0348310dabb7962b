//! Request validation: create bodies and list queries are checked before they spend upstream budget.
pub mod body;
mod custom_fields;
mod fields;
mod formats;
mod layer;
mod problems;
pub mod query;
pub mod references;
mod rules;
pub mod writes;

pub use layer::{Purpose, Read, Validate, ValidateLayer, Validated, ValidationSettings, Write};
pub use problems::FieldError;
