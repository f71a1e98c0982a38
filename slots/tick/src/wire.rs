//! The tick's operation as the runtime sends it: `Request::Custom` with
//! `OP_NEXT` and an empty payload; the reply is a [`Next`].

use vss_slot_sdk::codec::{DecodeError, Reader, Wire, Writer};

pub const OP_NEXT: &str = "next";

/// The first tick due strictly after the call's `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    /// Tick number: the same on every instance for the same due time.
    pub number: u64,
    /// Wall-clock due time, ms since the Unix epoch.
    pub due_ms: u64,
    /// The slot's interval, ms.
    pub interval_ms: u64,
}

impl Wire for Next {
    fn write(&self, w: &mut Writer) {
        w.u64(self.number).u64(self.due_ms).u64(self.interval_ms);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            number: r.u64()?,
            due_ms: r.u64()?,
            interval_ms: r.u64()?,
        })
    }
}
