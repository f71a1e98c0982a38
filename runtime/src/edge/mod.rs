//! The transport: gRPC services that convert ([`convert`]) and call the
//! core's node, the gRPC implementation of the core's peer link, TLS,
//! connections, admission, probes and Envoy's rate limit service.

pub mod admission;
pub mod auth;
pub mod connections;
pub mod control_service;
pub mod convert;
pub mod events;
pub mod grpc_link;
pub mod http;
pub mod mesh_service;
pub mod rls;
pub mod status;
pub mod tls;
pub mod vss_service;
