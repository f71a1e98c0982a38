//! The registry's operations as the runtime sends them: `Request::Custom`
//! with one of the `OP_*` names and a payload in this module's binary form.
//! The runtime links this crate natively to encode and decode them.

use alloc::string::String;
use alloc::vec::Vec;
use vss_slot_sdk::codec::{DecodeError, Reader, Wire, Writer};

pub const OP_ANNOUNCE: &str = "announce";
pub const OP_WITHDRAW: &str = "withdraw";
pub const OP_LIST: &str = "list";

/// Payload of `announce`: adds or renews (heartbeat) an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub app: String,
    pub address: String,
    /// How long the entry lives unless renewed; None: the slot's
    /// `defaultTtl`. Some(0) is refused.
    pub ttl_ms: Option<u64>,
}

impl Wire for Announce {
    fn write(&self, w: &mut Writer) {
        w.str(&self.app).str(&self.address);
        match self.ttl_ms {
            Some(t) => w.u8(1).u64(t),
            None => w.u8(0),
        };
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            app: r.str()?,
            address: r.str()?,
            ttl_ms: match r.u8()? {
                0 => None,
                1 => Some(r.u64()?),
                _ => return Err(DecodeError("bad ttl tag")),
            },
        })
    }
}

/// Reply of `announce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announced {
    /// Wall-clock time (ms since the Unix epoch) the entry expires at on
    /// every instance unless renewed.
    pub expires_ms: u64,
    /// True if the entry was not live before (added, not renewed).
    pub added: bool,
}

impl Wire for Announced {
    fn write(&self, w: &mut Writer) {
        w.u64(self.expires_ms).bool(self.added);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            expires_ms: r.u64()?,
            added: r.bool()?,
        })
    }
}

/// Payload of `withdraw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdraw {
    pub app: String,
    pub address: String,
}

impl Wire for Withdraw {
    fn write(&self, w: &mut Writer) {
        w.str(&self.app).str(&self.address);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            app: r.str()?,
            address: r.str()?,
        })
    }
}

/// Reply of `withdraw`: whether a live entry was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Withdrawn {
    pub removed: bool,
}

impl Wire for Withdrawn {
    fn write(&self, w: &mut Writer) {
        w.bool(self.removed);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self { removed: r.bool()? })
    }
}

/// Payload of `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListApp {
    /// Only this app; empty: every app.
    pub app: String,
}

impl Wire for ListApp {
    fn write(&self, w: &mut Writer) {
        w.str(&self.app);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self { app: r.str()? })
    }
}

/// A live entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub app: String,
    pub address: String,
    /// When it was last announced (ms since the Unix epoch, the announcing
    /// instance's clock).
    pub updated_ms: u64,
    pub expires_ms: u64,
}

impl Wire for Service {
    fn write(&self, w: &mut Writer) {
        w.str(&self.app)
            .str(&self.address)
            .u64(self.updated_ms)
            .u64(self.expires_ms);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            app: r.str()?,
            address: r.str()?,
            updated_ms: r.u64()?,
            expires_ms: r.u64()?,
        })
    }
}

/// Reply of `list`: live entries, ordered by app then address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    pub services: Vec<Service>,
}

impl Wire for Services {
    fn write(&self, w: &mut Writer) {
        w.u64(self.services.len() as u64);
        for s in &self.services {
            s.write(w);
        }
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let n = r.count(32)?;
        let mut services = Vec::with_capacity(n);
        for _ in 0..n {
            services.push(Service::read(r)?);
        }
        Ok(Self { services })
    }
}
