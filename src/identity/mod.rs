//! Identity: who is asking. The bearer JWT is verified against the trusted issuers' keys
//! ([`auth`]), then the verified subject (or a client certificate) is mapped to a JourneyBee
//! identity: upstream key, `userId`, access ([`map`]).

pub mod auth;
pub mod map;
pub mod metrics;
