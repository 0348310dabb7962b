//! journeybee-gateway: an authenticating reverse proxy in front of the JourneyBee partnerships
//! API. Apps present their own JWT; the gateway verifies it, maps the user to an upstream API
//! key and JourneyBee `userId`, enforces write permission, validates, caches lists and forwards.
//!
//! The request path is one tower stack, built in [`stack::build_stack`].

#![forbid(unsafe_code)]

pub mod cache;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod exchange;
pub mod generation;
pub mod history;
pub mod identity;
pub mod ingress;
pub mod metrics;
pub mod observe;
pub mod policy;
pub mod resilience;
pub mod server;
pub mod stack;
pub mod state;
pub mod step;
pub mod timeouts;
pub mod upstream;
pub mod validate;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

/// The future a layer of the stack returns: rejections are replies, so the error type is
/// `Infallible`. Inside the stack a layer answers a [`exchange::Reply`] (the response and the
/// facts the log records); the outermost layer turns it into the HTTP response.
pub type BoxFuture<R = exchange::Reply> =
    Pin<Box<dyn Future<Output = Result<R, Infallible>> + Send>>;

/// A boxed error, as http-body's combinators use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Locks a mutex, ignoring poisoning. Every critical section in this crate leaves its state
/// consistent before anything that could panic (plain assignments, counters, map updates), so
/// a panic elsewhere in the holder's thread must not take rate limiting, the breaker, the
/// caches or the state store down with it.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
