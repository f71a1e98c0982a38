//! Operations every limiter slot type answers besides `acquire`, as the
//! runtime sends them: `Request::Custom` with one of the `OP_*` names and a
//! payload in this module's binary form.
//!
//! They exist for callers that check several limits for one request (Envoy's
//! rate limit service): `take-all` takes the tokens only if every one of
//! them is there, and `release` gives back what a `take-all` took when
//! another limit of the same request refused, so a refused request consumes
//! nothing.

use alloc::string::String;

use crate::codec::{DecodeError, Reader, Wire, Writer};

/// Take exactly `tokens` from the key's bucket, or nothing.
pub const OP_TAKE_ALL: &str = "take-all";
/// Give back tokens a `take-all` took.
pub const OP_RELEASE: &str = "release";

/// Payload of `take-all` and `release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    /// The bucket; empty is the slot's single bucket.
    pub key: String,
    /// At least 1.
    pub tokens: u64,
}

impl Take {
    /// The key as `acquire` takes it: `None` for the single bucket.
    pub fn bucket(&self) -> Option<&str> {
        (!self.key.is_empty()).then_some(self.key.as_str())
    }
}

impl Wire for Take {
    fn write(&self, w: &mut Writer) {
        w.str(&self.key).u64(self.tokens);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            key: r.str()?,
            tokens: r.u64()?,
        })
    }
}

/// Reply of `take-all` and `release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Whether the tokens were taken (always true for `release`).
    pub granted: bool,
    /// Tokens left to take right after this call.
    pub remaining: u64,
    /// Milliseconds until the next refill (token bucket) or until one more
    /// token fits (leaky bucket).
    pub reset_ms: u64,
}

impl Wire for Taken {
    fn write(&self, w: &mut Writer) {
        w.bool(self.granted).u64(self.remaining).u64(self.reset_ms);
    }
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            granted: r.bool()?,
            remaining: r.u64()?,
            reset_ms: r.u64()?,
        })
    }
}

/// A limiter's own bucket arithmetic for the two operations.
pub trait Limiter {
    /// Takes exactly `take.tokens` from the key's bucket, or nothing.
    fn take_all(&mut self, take: &Take, now_ms: u64) -> Taken;
    /// Gives back tokens a `take_all` took.
    fn release(&mut self, take: &Take, now_ms: u64) -> Taken;
}

/// Answers a `Request::Custom` sent to a limiter slot of `type_name`.
pub fn handle(
    slot: &mut impl Limiter,
    type_name: &str,
    now_ms: u64,
    custom: crate::Custom,
) -> Result<crate::Reply, crate::SlotError> {
    let op = custom.op.as_str();
    let taken = match op {
        OP_TAKE_ALL => slot.take_all(&take_payload(op, &custom.payload)?, now_ms),
        OP_RELEASE => slot.release(&take_payload(op, &custom.payload)?, now_ms),
        other => {
            return Err(crate::SlotError::Unsupported(alloc::format!(
                "slot type {type_name} has no operation `{other}` (it has {OP_TAKE_ALL} and {OP_RELEASE})"
            )));
        }
    };
    Ok(crate::Reply::of(crate::Response::Custom(taken.to_bytes())))
}

/// The `Take` of a `take-all` or `release` payload, refused as
/// `InvalidArgument` when malformed or asking for no tokens.
pub fn take_payload(op: &str, bytes: &[u8]) -> Result<Take, crate::SlotError> {
    let take: Take = crate::codec::op_payload(op, bytes)?;
    if take.tokens == 0 {
        return Err(crate::SlotError::InvalidArgument(alloc::format!(
            "`{op}`: `tokens` must be at least 1"
        )));
    }
    Ok(take)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn take_and_taken_round_trip() {
        let t = Take {
            key: "edge|10.0.0.1".to_string(),
            tokens: 3,
        };
        assert_eq!(Take::from_bytes(&t.to_bytes()), Ok(t));
        let r = Taken {
            granted: true,
            remaining: 7,
            reset_ms: 250,
        };
        assert_eq!(Taken::from_bytes(&r.to_bytes()), Ok(r));
    }

    #[test]
    fn zero_tokens_and_garbage_are_refused() {
        let zero = Take {
            key: String::new(),
            tokens: 0,
        };
        assert!(take_payload(OP_TAKE_ALL, &zero.to_bytes()).is_err());
        assert!(take_payload(OP_RELEASE, &[1, 2, 3]).is_err());
    }
}
