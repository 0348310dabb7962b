//! Policy: local decisions on whether a request may go out at all. Write permission, route
//! restrictions and `userId` ([`permission`]), and a repeated create answered from its stored
//! outcome instead of being sent again ([`replay`]).

pub mod metrics;
pub mod permission;
pub mod replay;
