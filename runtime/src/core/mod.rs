//! The domain: slots, signals, data, access policy and the cluster, with
//! no transport in it.

pub mod access;
pub mod cluster;
pub mod data;
pub mod error;
pub mod executor;
pub mod hub;
pub mod signals;
pub mod slot_table;
