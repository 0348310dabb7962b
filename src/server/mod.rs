//! The running gateway: generations of state and stack swapped by reloads, the listeners, the
//! admin endpoints and graceful shutdown.

mod admin;
mod current;
mod gateway;
pub mod idle;
mod listen;
pub mod reload;
pub mod signals;
pub mod tls;

pub use admin::{probe, readiness_url};
pub use current::{Stack, StackBuilder};
pub use gateway::{Gateway, Reloaded};
