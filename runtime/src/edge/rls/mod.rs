//! Envoy's rate limit service (`envoy.service.ratelimit.v3.RateLimitService`)
//! on the client port, answered from the limiter slots.
//!
//! A `ShouldRateLimit` call names a domain and descriptors. Each descriptor
//! is matched to at most one rule ([`rules`]); a matched descriptor takes
//! its hits from the rule's slot with the limiters' `take-all` operation
//! (all the tokens or none), through the same forwarding and failover as
//! `Acquire`. If any descriptor is over its limit the request is refused
//! and the tokens the others took are given back (`release`), so a refused
//! request consumes nothing. Shadow rules count but never refuse.

pub mod rules;
mod service;

pub use service::RateLimiter;
