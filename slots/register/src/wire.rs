//! The register's operations as the runtime sends them: `Request::Custom`
//! with one of the `OP_*` names and a payload in this module's binary form.
//! The runtime links this crate natively to encode and decode them.

use alloc::string::String;
use alloc::vec::Vec;
use vss_slot_sdk::codec::{DecodeError, Reader, Wire, Writer};
pub use vss_slot_sdk::lww::Version;

pub const OP_SET: &str = "set";
pub const OP_GET: &str = "get";
pub const OP_DELETE: &str = "delete";
pub const OP_LIST: &str = "list";

/// Payload of `set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub key: String,
    pub value: Vec<u8>,
}

impl Wire for Set {
    fn write(&self, w: &mut Writer) {
        w.str(&self.key).bytes(&self.value);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            key: r.str()?,
            value: r.bytes()?,
        })
    }
}

/// Payload of `get` and `delete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub key: String,
}

impl Wire for Key {
    fn write(&self, w: &mut Writer) {
        w.str(&self.key);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self { key: r.str()? })
    }
}

/// Payload of `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    /// Only keys starting with this; empty: every key.
    pub prefix: String,
    /// Most entries returned; 0: the module's own bound.
    pub limit: u64,
}

impl Wire for List {
    fn write(&self, w: &mut Writer) {
        w.str(&self.prefix).u64(self.limit);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            prefix: r.str()?,
            limit: r.u64()?,
        })
    }
}

/// Reply of `set` and `delete`: the version the write got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub version: Version,
    /// Whether the key held a live value before the write.
    pub existed: bool,
}

impl Wire for Written {
    fn write(&self, w: &mut Writer) {
        self.version.write(w);
        w.bool(self.existed);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            version: Version::read(r)?,
            existed: r.bool()?,
        })
    }
}

/// A live key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub version: Version,
}

impl Wire for Entry {
    fn write(&self, w: &mut Writer) {
        w.str(&self.key).bytes(&self.value);
        self.version.write(w);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            key: r.str()?,
            value: r.bytes()?,
            version: Version::read(r)?,
        })
    }
}

/// Reply of `get`: the entry, or the version of the tombstone (deleted
/// key) or None (never seen / tombstone expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Live(Entry),
    Deleted(Version),
    Absent,
}

impl Wire for Found {
    fn write(&self, w: &mut Writer) {
        match self {
            Found::Live(e) => {
                w.u8(1);
                e.write(w);
            }
            Found::Deleted(v) => {
                w.u8(2);
                v.write(w);
            }
            Found::Absent => {
                w.u8(0);
            }
        }
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(Found::Absent),
            1 => Ok(Found::Live(Entry::read(r)?)),
            2 => Ok(Found::Deleted(Version::read(r)?)),
            _ => Err(DecodeError("bad `get` reply tag")),
        }
    }
}

/// Reply of `list`, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub entries: Vec<Entry>,
    /// More keys matched than the limit allowed.
    pub truncated: bool,
}

impl Wire for Listed {
    fn write(&self, w: &mut Writer) {
        w.u64(self.entries.len() as u64);
        for e in &self.entries {
            e.write(w);
        }
        w.bool(self.truncated);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let n = r.count(24)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push(Entry::read(r)?);
        }
        Ok(Self {
            entries,
            truncated: r.bool()?,
        })
    }
}
