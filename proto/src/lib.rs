//! Generated gRPC types and stubs of the VSS APIs (`proto/vss/v1`).
//!
//! Generated code only: behaviour lives in `vss-runtime` (servers) and
//! `vss-client` (callers).
#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("vss.v1");
}

/// Encoded descriptors of every VSS service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("vss_descriptor");

/// Encoded descriptors of Envoy's `envoy.service.ratelimit.v3` and its
/// imports, for gRPC server reflection (the types are `envoy-types`').
pub const ENVOY_RLS_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("envoy_rls_descriptor");
