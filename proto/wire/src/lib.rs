//! What the VSS runtime, `vss-client` and the operator share on the wire,
//! beside the generated code of `vss-proto`: the TLS connector peers, the
//! operator and clients dial with ([`MeshConnector`]), and the lane that
//! coalesces concurrent acquires into `AcquireBatch` calls ([`AcquireLane`]),
//! used by clients and by instances forwarding acquires to a slot's owner,
//! and the function that puts a key in its partition ([`partition`]).
//!
//! It holds no client logic (routing, failover, subscriptions: those are
//! `vss-client`'s) and no server logic.

pub mod lane;
pub mod mesh_tls;
pub mod partition;

pub use lane::AcquireLane;
pub use mesh_tls::MeshConnector;
