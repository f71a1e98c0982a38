//! Leaky-bucket arithmetic, free of any I/O: the caller passes `now`.
//!
//! Every request puts its tokens in the bucket if they fit; the bucket leaks
//! `refresh_rate` tokens per `period` at a constant rate. To stay exact
//! without floats, the level is kept in units of 1/period_ms token: one token
//! is `period_ms` units and the bucket leaks `refresh_rate` units per
//! millisecond.

use vss_slot_sdk::keyed::Evictable;
use vss_slot_sdk::limiter::Taken;

/// A validated leaky-bucket configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub bucket_size: u64,
    pub period_ms: u64,
    pub refresh_rate: u64,
}

/// What a request returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The tokens put in: all that were asked, or 0 if they did not fit.
    pub granted: u32,
    /// Whole tokens that still fit right now.
    pub remaining: u64,
    /// Milliseconds until one more token fits (0 if one fits now).
    pub reset_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub limits: Limits,
    /// Current content, in 1/period_ms token units.
    pub level: u128,
    pub last_leak_ms: u64,
    pub last_used_ms: u64,
}

impl Bucket {
    /// An empty bucket (all room available).
    pub fn empty(limits: &Limits, now_ms: u64) -> Self {
        Self {
            limits: *limits,
            level: 0,
            last_leak_ms: now_ms,
            last_used_ms: now_ms,
        }
    }

    fn capacity(&self) -> u128 {
        u128::from(self.limits.bucket_size) * u128::from(self.limits.period_ms)
    }

    fn token(&self) -> u128 {
        u128::from(self.limits.period_ms)
    }

    /// Drains what leaked since the last call. A clock that went backwards
    /// drains nothing.
    pub fn leak(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_leak_ms);
        let drained = u128::from(elapsed) * u128::from(self.limits.refresh_rate);
        self.level = self.level.saturating_sub(drained);
        self.last_leak_ms = self.last_leak_ms.max(now_ms);
    }

    /// Puts `tokens` in if they all fit.
    pub fn put(&mut self, tokens: u32, now_ms: u64) -> Admission {
        self.leak(now_ms);
        self.last_used_ms = self.last_used_ms.max(now_ms);
        let need = u128::from(tokens) * self.token();
        let granted = if self.level + need <= self.capacity() {
            self.level += need;
            tokens
        } else {
            0
        };
        Admission {
            granted,
            remaining: self.room(),
            reset_ms: self.ms_until_room(),
        }
    }

    /// Puts `tokens` in if they all fit, for `take-all`.
    pub fn put_all(&mut self, tokens: u64, now_ms: u64) -> Taken {
        self.leak(now_ms);
        self.last_used_ms = self.last_used_ms.max(now_ms);
        let need = u128::from(tokens) * self.token();
        let granted = self.level + need <= self.capacity();
        if granted {
            self.level += need;
        }
        Taken {
            granted,
            remaining: self.room(),
            reset_ms: self.ms_until_room(),
        }
    }

    /// Takes out tokens a `take-all` put in.
    pub fn take_out(&mut self, tokens: u64, now_ms: u64) -> Taken {
        self.leak(now_ms);
        self.level = self.level.saturating_sub(u128::from(tokens) * self.token());
        Taken {
            granted: true,
            remaining: self.room(),
            reset_ms: self.ms_until_room(),
        }
    }

    fn room(&self) -> u64 {
        let free = (self.capacity() - self.level) / self.token();
        u64::try_from(free).unwrap_or(u64::MAX)
    }

    fn ms_until_room(&self) -> u64 {
        let over = (self.level + self.token()).saturating_sub(self.capacity());
        let rate = u128::from(self.limits.refresh_rate);
        u64::try_from(over.div_ceil(rate)).unwrap_or(u64::MAX)
    }

    pub fn level_at(&self, now_ms: u64) -> u128 {
        let mut copy = *self;
        copy.leak(now_ms);
        copy.level
    }
}

impl Evictable for Bucket {
    fn is_idle_at(&self, now_ms: u64) -> bool {
        self.level_at(now_ms) == 0
    }

    fn last_used_ms(&self) -> u64 {
        self.last_used_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_PER_SECOND: Limits = Limits {
        bucket_size: 10,
        period_ms: 1_000,
        refresh_rate: 10,
    };

    #[test]
    fn admits_a_burst_up_to_bucket_size_then_refuses() {
        let mut b = Bucket::empty(&TEN_PER_SECOND, 0);
        for i in 0..10 {
            let a = b.put(1, 0);
            assert_eq!(a.granted, 1, "request {i}");
            assert_eq!(a.remaining, 9 - i);
        }
        let a = b.put(1, 0);
        assert_eq!((a.granted, a.remaining), (0, 0));
        assert_eq!(a.reset_ms, 100, "one token leaks every 100 ms");
    }

    #[test]
    fn leaks_at_a_constant_rate() {
        let mut b = Bucket::empty(&TEN_PER_SECOND, 0);
        b.put(10, 0);
        assert_eq!(b.put(1, 99).granted, 0);
        assert_eq!(b.put(1, 99).reset_ms, 1);
        assert_eq!(b.put(1, 100).granted, 1);
        assert_eq!(b.put(1, 150).granted, 0);
        assert_eq!(b.put(1, 200).granted, 1);
        let a = b.put(5, 700);
        assert_eq!(a.granted, 5);
        assert_eq!(a.remaining, 0);
    }

    #[test]
    fn request_larger_than_room_is_refused_whole() {
        let mut b = Bucket::empty(&TEN_PER_SECOND, 0);
        b.put(8, 0);
        let a = b.put(3, 0);
        assert_eq!((a.granted, a.remaining), (0, 2));
        assert_eq!(a.reset_ms, 0, "one token still fits");
    }

    #[test]
    fn minute_and_hour_periods_leak_fractionally() {
        let per_minute = Limits {
            bucket_size: 2,
            period_ms: 60_000,
            refresh_rate: 1,
        };
        let mut b = Bucket::empty(&per_minute, 0);
        b.put(2, 0);
        let half_way = b.put(1, 30_000);
        assert_eq!((half_way.granted, half_way.reset_ms), (0, 30_000));
        assert_eq!(b.put(1, 59_999).granted, 0);
        assert_eq!(b.put(1, 60_000).granted, 1);

        let per_hour = Limits {
            bucket_size: 1,
            period_ms: 3_600_000,
            refresh_rate: 2,
        };
        let mut b = Bucket::empty(&per_hour, 0);
        b.put(1, 0);
        assert_eq!(b.put(1, 1_799_999).granted, 0);
        assert_eq!(b.put(1, 1_800_000).granted, 1);
    }

    #[test]
    fn drains_to_empty_and_becomes_idle() {
        let mut b = Bucket::empty(&TEN_PER_SECOND, 0);
        b.put(10, 0);
        assert!(!b.is_idle_at(999));
        assert!(b.is_idle_at(1_000));
        assert_eq!(b.put(1, 5_000).remaining, 9, "never drains below empty");
    }

    #[test]
    fn clock_going_backwards_drains_nothing() {
        let mut b = Bucket::empty(&TEN_PER_SECOND, 5_000);
        b.put(10, 5_000);
        assert_eq!(b.put(1, 1_000).granted, 0);
        assert_eq!(b.put(1, 5_099).granted, 0);
        assert_eq!(b.put(1, 5_100).granted, 1);
    }

    #[test]
    fn put_all_and_take_out_balance() {
        let mut b = Bucket::empty(&TEN_PER_SECOND, 0);
        assert!(b.put_all(8, 0).granted);
        let refused = b.put_all(3, 0);
        assert!(!refused.granted);
        assert_eq!(refused.remaining, 2, "a refused put takes no room");
        assert_eq!(b.take_out(8, 0).remaining, 10);
        assert_eq!(b.take_out(8, 0).remaining, 10, "never below empty");
    }
}
