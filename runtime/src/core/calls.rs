//! The requests a client (or a peer forwarding for one) makes of a slot,
//! and what a publish achieved: plain values shared by the node, the
//! signal slots and the peer link.

use std::time::Duration;

/// One acquire: tokens from a limiter slot's bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireCall {
    pub slot: u32,
    /// Per-caller bucket; empty: the slot's single bucket.
    pub key: String,
    /// Tokens asked for; None: the slot's `tokensPerReq`.
    pub tokens: Option<u32>,
}

/// A custom operation on a slot (`Call`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomCall {
    pub slot: u32,
    pub op: String,
    pub payload: Vec<u8>,
}

/// A message published on a signal slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishCall {
    pub slot: u32,
    pub message: Vec<u8>,
    /// The publisher's client id ("" if anonymous).
    pub publisher: String,
    /// The client's id for this message; 0: the instance picks one.
    pub message_id: u64,
}

/// Register (`join`) or deregister a client on a multicast or random slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipCall {
    pub slot: u32,
    pub client: String,
    pub join: bool,
}

/// What a publish achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    pub message_id: u64,
    pub delivered: u32,
    pub failed: u32,
    /// Random slots: the client that took the message.
    pub taken_by: Option<String>,
}

/// Who a delivery is for, as seen by one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every connected client taking the slot's broadcasts, but these.
    AllExcept(Vec<String>),
    /// These clients, wherever they are connected.
    Clients(Vec<String>),
}

/// One message to deliver to the clients connected to an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub slot: u32,
    pub message_id: u64,
    pub payload: Vec<u8>,
    pub publisher: String,
    pub targets: Targets,
    /// How long the instance waits for its clients' acknowledgements.
    pub timeout: Duration,
}
