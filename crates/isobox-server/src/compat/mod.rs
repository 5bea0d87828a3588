//! Compatibility APIs: other services' wire formats over our API layer, so that their clients
//! move to IsoBox by changing the base URL only. Each runs through the same admission, policy,
//! limits and dedup cache as `/api/v1/*` (they build our request and call [`crate::api`]),
//! and is mounted by [`crate::http::router`] under a configurable prefix.

pub mod piston;
