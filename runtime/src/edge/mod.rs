//! The transport: gRPC services, TLS, connections, admission, probes and
//! Envoy's rate limit service.

pub mod admission;
pub mod connections;
pub mod events;
pub mod http;
pub mod mesh_service;
pub mod rls;
pub mod tls;
pub mod vss_service;
