//! The counter's operations as the runtime sends them: `Request::Custom`
//! with one of the `OP_*` names and a payload in this module's binary form.
//! The runtime links this crate natively to encode and decode them.

use vss_slot_sdk::codec::{DecodeError, Reader, Wire, Writer};

pub const OP_INCREMENT: &str = "increment";
pub const OP_DECREMENT: &str = "decrement";
pub const OP_READ: &str = "read";

/// Payload of `increment` and `decrement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// At least 1.
    pub amount: u64,
    /// Chosen by the client, the same on every retry of one change, so a
    /// retry on another instance is applied once. 0: no deduplication.
    pub request_id: u64,
}

impl Wire for Change {
    fn write(&self, w: &mut Writer) {
        w.u64(self.amount).u64(self.request_id);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            amount: r.u64()?,
            request_id: r.u64()?,
        })
    }
}

/// Reply of every counter operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    /// increments - decrements, clamped to the i64 range.
    pub value: i64,
    /// Sum of every instance's increments.
    pub increments: u64,
    /// Sum of every instance's decrements.
    pub decrements: u64,
    /// False when the change's `request_id` had been applied before (on
    /// any instance this one has heard from) and was not applied again.
    pub applied: bool,
}

impl Wire for Value {
    fn write(&self, w: &mut Writer) {
        w.u64(self.value as u64)
            .u64(self.increments)
            .u64(self.decrements)
            .bool(self.applied);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            value: r.u64()? as i64,
            increments: r.u64()?,
            decrements: r.u64()?,
            applied: r.bool()?,
        })
    }
}
