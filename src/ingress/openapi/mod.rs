//! The OpenAPI document of the routes this gateway serves: built from the route table
//! ([`document()`]) and served by its own small layer in front of the router ([`service`]).

mod answers;
mod bodies;
mod components;
pub mod document;
mod operation;
mod schema;
pub mod service;

pub use document::{document, OPENAPI_PATH};
pub use service::{OpenApi, OpenApiLayer};
