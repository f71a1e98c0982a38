//! Why a request failed, and the class of each failure ([`Code`]). The
//! edge maps a [`Code`] to its transport's status in one place.

use vss_slot_host::{CallError, SlotError};

use crate::core::executor::QueueError;

/// The class of a failure: gRPC's canonical codes, which clients and
/// forwarding instances act on (an `Unavailable` instance is skipped, an
/// `InvalidArgument` is not retried elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

/// Why a client request failed. Messages name the field and the limit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    #[error("slot {0} is out of range: slot ids are 0-99")]
    SlotOutOfRange(u32),
    #[error("slot {0} is not configured")]
    SlotNotConfigured(u8),
    #[error("`{field}` is {len} bytes, at most {max} allowed")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error(
        "slot {slot} is a {type_name} slot; publish, register and deregister need a broadcast, multicast or random slot"
    )]
    NotASignalSlot { slot: u8, type_name: String },
    #[error("slot {slot} is a {type_name} slot; {verb} needs a {needs} slot")]
    WrongType {
        slot: u8,
        type_name: String,
        verb: &'static str,
        needs: &'static str,
    },
    #[error(
        "instance {instance} is taking the state of its replicated slots from its peers after a start; try another instance"
    )]
    Syncing { instance: String },
    #[error(
        "instance {instance} holds version {held} of `{key}`, older than the {asked} asked for; try another instance"
    )]
    Behind {
        instance: String,
        key: String,
        held: u64,
        asked: u64,
    },
    #[error("payload from slot {slot} could not be read: {reason}")]
    BadReply { slot: u8, reason: String },
    #[error("`client_id` must be 1-{max} bytes, got {len}")]
    BadClientId { len: usize, max: usize },
    #[error("the first message on an event stream must be a Hello")]
    NoHello,
    #[error("{0} clients are connected to this instance, the most allowed (--max-clients)")]
    TooManyClients(usize),
    #[error("slot {slot}: {source}")]
    Call { slot: u8, source: CallError },
    /// The slot's queue refused or dropped the request before it ran.
    #[error("slot {slot}: {source}")]
    Queue { slot: u8, source: QueueError },
    #[error(
        "this instance is joining the cluster and has no routing table yet; try another instance"
    )]
    Joining,
    #[error("slot {slot} has partitions 0-{}, not {partition}", .partitions.saturating_sub(1))]
    NoPartition {
        slot: u8,
        partition: u16,
        partitions: u16,
    },
    /// The instance a request was forwarded to refused it: its answer, as
    /// it gave it.
    #[error("{message}")]
    Remote { code: Code, message: String },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// A peer's message that contradicts what this instance holds (a
    /// stale table, state from an instance that does not own the slot).
    #[error("{0}")]
    Contradicts(String),
}

impl RequestError {
    /// What became of a request handed to `slot`'s worker.
    pub fn queue(slot: u8, e: QueueError) -> Self {
        match e {
            QueueError::Call(source) => Self::Call { slot, source },
            source => Self::Queue { slot, source },
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Self::SlotOutOfRange(_)
            | Self::TooLong { .. }
            | Self::BadClientId { .. }
            | Self::NoHello
            | Self::NoPartition { .. } => Code::InvalidArgument,
            Self::NotASignalSlot { .. } | Self::WrongType { .. } | Self::Contradicts(_) => {
                Code::FailedPrecondition
            }
            Self::Syncing { .. } | Self::Behind { .. } | Self::Joining => Code::Unavailable,
            Self::Remote { code, .. } => *code,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::BadReply { .. } => Code::Internal,
            Self::TooManyClients(_) => Code::ResourceExhausted,
            Self::SlotNotConfigured(_) => Code::NotFound,
            Self::Call { source, .. } => match source {
                CallError::Slot(SlotError::InvalidArgument(_)) => Code::InvalidArgument,
                CallError::Slot(SlotError::Unsupported(_)) => Code::FailedPrecondition,
                CallError::Slot(SlotError::ResourceExhausted(_)) => Code::ResourceExhausted,
                CallError::Slot(SlotError::Internal(_)) => Code::Internal,
                CallError::Timeout(_) | CallError::Trap(_) => Code::Internal,
                CallError::MemoryLimit(_) => Code::ResourceExhausted,
                CallError::Unavailable(_) => Code::Unavailable,
            },
            Self::Queue { source, .. } => match source {
                // Not DEADLINE_EXCEEDED: forwarders and clients take that for
                // an unreachable instance and would try the standby, which
                // would then grant from its copy of the state.
                QueueError::Full { .. } | QueueError::Expired { .. } => Code::ResourceExhausted,
                QueueError::Stopped | QueueError::Call(CallError::Unavailable(_)) => {
                    Code::Unavailable
                }
                QueueError::Call(_) => Code::Internal,
            },
        }
    }

    /// Short name of the code, for metrics labels.
    pub fn code_name(&self) -> &'static str {
        match self.code() {
            Code::InvalidArgument => "invalid_argument",
            Code::NotFound => "not_found",
            Code::FailedPrecondition => "failed_precondition",
            Code::ResourceExhausted => "resource_exhausted",
            Code::Unavailable => "unavailable",
            _ => "internal",
        }
    }
}
