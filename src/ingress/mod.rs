//! Ingress: what a request meets first, before any credential is read: the request limits
//! (414, 431, load shedding), the route table and the router (404, 405, the parsed query), the
//! early answer to a request whose body is never read, and the OpenAPI document.

pub mod drain;
pub mod limits;
pub mod openapi;
pub mod route;
