//! Sets of routes: what a config enables, and what a user may call.

use super::table::{Route, TABLE};

/// A set of routes, as a bit mask over [`Route::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteSet(u64);

impl RouteSet {
    /// Every route in the table.
    pub const ALL: RouteSet = RouteSet((1u64 << TABLE.len()) - 1);
    /// No route.
    pub const NONE: RouteSet = RouteSet(0);

    /// Whether `route` is in the set.
    pub fn contains(self, route: Route) -> bool {
        route != Route::Unmatched && self.0 & (1 << route.index()) != 0
    }

    /// The set with `route` added.
    pub fn with(self, route: Route) -> RouteSet {
        RouteSet(self.0 | (1 << route.index()))
    }

    /// The set without `route`.
    pub fn without(self, route: Route) -> RouteSet {
        RouteSet(self.0 & !(1 << route.index()))
    }

    /// The routes of a config list such as `["GET /api/v1/tiers", "PATCH /api/v1/partnerships/{partnershipId}"]`;
    /// `Err` names the entries that are not in the table.
    pub fn parse(names: &[String]) -> Result<RouteSet, Vec<String>> {
        let mut set = RouteSet::NONE;
        let mut unknown = Vec::new();
        for name in names {
            let normalized = name.split_whitespace().collect::<Vec<_>>().join(" ");
            match TABLE.iter().find(|s| s.name() == normalized) {
                Some(spec) => set = set.with(spec.route),
                None => unknown.push(name.clone()),
            }
        }
        if unknown.is_empty() {
            Ok(set)
        } else {
            Err(unknown)
        }
    }
}
