//! A tiny binary codec for snapshots.
//!
//! Snapshots cross the Wasm boundary as bytes that only the module itself
//! reads back, so they need no self-description, just compactness and a
//! decoder that never panics on garbage (a peer may send anything).

use alloc::string::String;
use alloc::vec::Vec;

/// Appends fixed-width little-endian integers and length-prefixed strings.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn str(&mut self, v: &str) -> &mut Self {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v.as_bytes());
        self
    }

    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// A value with a fixed binary form: slot snapshots and the payloads of the
/// built-in slot types' operations, which the runtime and the module both
/// read.
pub trait Wire: Sized {
    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader) -> Result<Self, DecodeError>;

    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.finish()
    }

    /// Decodes all of `bytes`; trailing bytes are an error.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::read(&mut r)?;
        r.end()?;
        Ok(v)
    }
}

/// The payload of a custom operation `op`, refused as `InvalidArgument`
/// naming the op when it is not a whole `T`.
pub fn op_payload<T: Wire>(op: &str, bytes: &[u8]) -> Result<T, crate::SlotError> {
    T::from_bytes(bytes).map_err(|e| {
        crate::SlotError::InvalidArgument(alloc::format!("malformed `{op}` payload: {}", e.0))
    })
}

/// Reads what [`Writer`] wrote; every read fails cleanly on short or bad input.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

/// The snapshot bytes are not what this module wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "malformed snapshot: {}", self.0)
    }
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError("unexpected end of data"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(bytes))
    }

    pub fn str(&mut self) -> Result<String, DecodeError> {
        let len = usize::try_from(self.u64()?).map_err(|_| DecodeError("string too long"))?;
        let bytes = self.take(len)?;
        core::str::from_utf8(bytes)
            .map(String::from)
            .map_err(|_| DecodeError("string is not UTF-8"))
    }

    pub fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = usize::try_from(self.u64()?).map_err(|_| DecodeError("byte string too long"))?;
        Ok(self.take(len)?.to_vec())
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad boolean")),
        }
    }

    /// A count of items that follow, each at least `min_item_bytes` long:
    /// refuses counts the remaining input cannot hold, so a forged length
    /// never makes the reader reserve memory for it.
    pub fn count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.u64()?).map_err(|_| DecodeError("count too large"))?;
        if n.saturating_mul(min_item_bytes.max(1)) > self.buf.len() {
            return Err(DecodeError("count larger than the data"));
        }
        Ok(n)
    }

    /// Fails unless every byte was consumed.
    pub fn end(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_integers_and_strings() {
        let mut w = Writer::new();
        w.u8(7).u64(u64::MAX).str("user-42").str("");
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u64(), Ok(u64::MAX));
        assert_eq!(r.str().as_deref(), Ok("user-42"));
        assert_eq!(r.str().as_deref(), Ok(""));
        assert_eq!(r.end(), Ok(()));
    }

    #[test]
    fn rejects_truncated_and_oversized_input() {
        let mut w = Writer::new();
        w.str("hello");
        let bytes = w.finish();
        assert!(Reader::new(&bytes[..bytes.len() - 1]).str().is_err());
        let huge = u64::MAX.to_le_bytes();
        assert!(Reader::new(&huge).str().is_err());
        assert!(Reader::new(&[1, 2]).end().is_err());
    }
}
