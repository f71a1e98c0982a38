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
