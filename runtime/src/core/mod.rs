//! The domain: slots, signals, data, access policy and the cluster, with
//! no transport in it. Every operation a client, a peer or the operator
//! asks of an instance is a method of [`node::Node`]; the cluster talks to
//! its peers only through [`cluster::PeerLink`].

pub mod access;
pub mod calls;
pub mod cluster;
pub mod data;
pub mod denials;
pub mod error;
pub mod executor;
pub mod hub;
pub mod leases;
pub mod node;
pub mod signals;
pub mod slot_table;

#[cfg(test)]
pub mod harness;
#[cfg(test)]
mod tests;
