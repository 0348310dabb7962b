//! Routing: the request's method and path are matched against the route table ([`table`]);
//! everything not in it (or disabled by config) is answered locally and never forwarded.

mod layer;
mod matcher;
mod set;
pub mod table;

pub use layer::{RouteLayer, Routed, Router};
pub use matcher::match_route;
pub use set::RouteSet;
pub use table::{BodyKind, Caching, Group, Route, RouteSpec, Verb, TABLE};
