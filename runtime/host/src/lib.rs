//! Runs VSS slot modules: WebAssembly components implementing the slot world
//! in `slots/sdk/wit/`.
//!
//! The host compiles each slot type once ([`SlotEngine::compile`]) and runs
//! every configured slot in its own instance and store ([`SlotInstance`]).
//! Untrusted modules are contained: each call has a deadline (epoch
//! interruption), each instance a memory cap (a resource limiter), and a
//! call that traps, times out or runs out of memory fails with a
//! [`CallError`] naming what happened; the instance is then rebuilt from its
//! config, and no other slot notices.
//!
//! This crate knows nothing about gRPC, clusters or config files.

mod bindings;
mod engine;
mod instance;

pub use bindings::v0_1_0::vss::slot::types::{
    Acquire, Acquired, Context, Custom, Delivery, DeliveryReport, Effect, Publish, Recipients,
    Reply, Request, Response, SlotError,
};
pub use engine::{HostLimits, SlotEngine, SlotModule};
pub use instance::SlotInstance;

use std::time::Duration;

/// A module could not be loaded or started.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{name}: not a valid slot component: {reason}")]
    Invalid { name: String, reason: String },
    #[error("{name}: does not implement the slot world vss:slot@0.1.0: {reason}")]
    WrongWorld { name: String, reason: String },
    #[error("{name}: init failed: {reason}")]
    Init { name: String, reason: String },
    #[error("{name}: trapped while starting: {reason}")]
    Trapped { name: String, reason: String },
}

/// A call into a slot failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The module answered with an error for this request.
    #[error("{}", .0.message())]
    Slot(SlotError),
    /// The call ran past its deadline and was interrupted.
    #[error("slot module ran longer than its {}ms call deadline and was stopped", .0.as_millis())]
    Timeout(Duration),
    /// The module tried to grow its memory past the cap.
    #[error("slot module exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    /// The module trapped (a panic, an invalid access, ...).
    #[error("slot module trapped: {0}")]
    Trap(String),
    /// The instance could not be rebuilt after an earlier failure.
    #[error("slot is unavailable: {0}")]
    Unavailable(String),
}

impl SlotError {
    /// The module's message, without the variant name.
    pub fn message(&self) -> &str {
        match self {
            SlotError::InvalidArgument(m)
            | SlotError::Unsupported(m)
            | SlotError::ResourceExhausted(m)
            | SlotError::Internal(m) => m,
        }
    }
}
