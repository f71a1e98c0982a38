//! Token-bucket arithmetic, free of any I/O: the caller passes `now`.
//!
//! The bucket starts full. Refills are discrete: every whole `period` since
//! the bucket's refill clock started adds `refresh_rate` tokens, capped at
//! `bucket_size`. The refill clock advances by whole periods only, so the
//! schedule never drifts however irregularly requests arrive.

use vss_slot_sdk::keyed::Evictable;
use vss_slot_sdk::limiter::Taken;

/// A validated token-bucket configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub bucket_size: u64,
    pub period_ms: u64,
    pub refresh_rate: u64,
    pub tokens_per_req: u32,
}

/// What an acquire returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub granted: u32,
    pub remaining: u64,
    /// Milliseconds until the next refill.
    pub reset_ms: u64,
}

/// One bucket's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub tokens: u64,
    pub last_refill_ms: u64,
    pub last_used_ms: u64,
    /// Period of the bucket, copied from the limits so idleness can be
    /// judged without them.
    pub period_ms: u64,
    pub bucket_size: u64,
    pub refresh_rate: u64,
}

impl Bucket {
    /// A full bucket whose refill clock starts at `now_ms`.
    pub fn full(limits: &Limits, now_ms: u64) -> Self {
        Self {
            tokens: limits.bucket_size,
            last_refill_ms: now_ms,
            last_used_ms: now_ms,
            period_ms: limits.period_ms,
            bucket_size: limits.bucket_size,
            refresh_rate: limits.refresh_rate,
        }
    }

    /// Adds the tokens of every whole period elapsed since the last refill.
    /// A clock that went backwards adds nothing and moves nothing.
    pub fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_refill_ms);
        let periods = elapsed / self.period_ms;
        if periods == 0 {
            return;
        }
        let added = periods.saturating_mul(self.refresh_rate);
        self.tokens = self.tokens.saturating_add(added).min(self.bucket_size);
        self.last_refill_ms += periods * self.period_ms;
    }

    /// Takes up to `asked` tokens.
    pub fn take(&mut self, asked: u32, now_ms: u64) -> Grant {
        self.refill(now_ms);
        let granted = u64::from(asked).min(self.tokens);
        self.tokens -= granted;
        self.last_used_ms = self.last_used_ms.max(now_ms);
        Grant {
            granted: u32::try_from(granted).expect("granted <= asked, which is a u32"),
            remaining: self.tokens,
            reset_ms: self.ms_until_refill(now_ms),
        }
    }

    /// Takes exactly `asked` tokens if the bucket holds them, else nothing.
    pub fn take_all(&mut self, asked: u64, now_ms: u64) -> Taken {
        self.refill(now_ms);
        self.last_used_ms = self.last_used_ms.max(now_ms);
        let granted = self.tokens >= asked;
        if granted {
            self.tokens -= asked;
        }
        Taken {
            granted,
            remaining: self.tokens,
            reset_ms: self.ms_until_refill(now_ms),
        }
    }

    /// Puts back tokens taken earlier, never above `bucket_size`.
    pub fn give_back(&mut self, tokens: u64, now_ms: u64) -> Taken {
        self.refill(now_ms);
        self.tokens = self.tokens.saturating_add(tokens).min(self.bucket_size);
        Taken {
            granted: true,
            remaining: self.tokens,
            reset_ms: self.ms_until_refill(now_ms),
        }
    }

    fn ms_until_refill(&self, now_ms: u64) -> u64 {
        let into_period = now_ms.saturating_sub(self.last_refill_ms);
        self.period_ms - into_period.min(self.period_ms - 1)
    }

    /// Tokens the bucket would hold at `now_ms`, without changing it.
    pub fn tokens_at(&self, now_ms: u64) -> u64 {
        let mut copy = *self;
        copy.refill(now_ms);
        copy.tokens
    }
}

impl Evictable for Bucket {
    fn is_idle_at(&self, now_ms: u64) -> bool {
        self.tokens_at(now_ms) >= self.bucket_size
    }

    fn last_used_ms(&self) -> u64 {
        self.last_used_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: Limits = Limits {
        bucket_size: 200,
        period_ms: 1_000,
        refresh_rate: 100,
        tokens_per_req: 1,
    };

    #[test]
    fn starts_full_and_grants_until_empty() {
        let mut b = Bucket::full(&SEED, 0);
        for i in 0..200 {
            let g = b.take(1, 5);
            assert_eq!(g.granted, 1, "request {i}");
            assert_eq!(g.remaining, 199 - i);
        }
        let g = b.take(1, 5);
        assert_eq!((g.granted, g.remaining), (0, 0));
        assert_eq!(g.reset_ms, 995);
    }

    #[test]
    fn refills_at_period_boundary_and_not_before() {
        let mut b = Bucket::full(&SEED, 0);
        assert_eq!(b.take(200, 0).granted, 200);
        assert_eq!(b.take(1, 999).granted, 0);
        let g = b.take(150, 1_000);
        assert_eq!(g.granted, 100, "one period adds refresh_rate tokens");
        assert_eq!(g.reset_ms, 1_000);
    }

    #[test]
    fn refill_is_capped_at_bucket_size() {
        let mut b = Bucket::full(&SEED, 0);
        b.take(50, 0);
        let g = b.take(1, 10_000);
        assert_eq!(g.remaining, 199, "ten periods refill only up to the cap");
    }

    #[test]
    fn asked_more_than_available_grants_what_is_left() {
        let mut b = Bucket::full(&SEED, 0);
        b.take(190, 0);
        let g = b.take(25, 0);
        assert_eq!((g.granted, g.remaining), (10, 0));
    }

    #[test]
    fn refill_clock_does_not_drift_with_irregular_requests() {
        let mut b = Bucket::full(&SEED, 0);
        b.take(200, 0);
        assert_eq!(b.take(100, 1_700).granted, 100);
        // The next refill is at 2_000, not 2_700.
        let g = b.take(100, 2_000);
        assert_eq!(g.granted, 100);
    }

    #[test]
    fn minute_and_hour_periods() {
        let minute = Limits {
            period_ms: 60_000,
            refresh_rate: 5,
            bucket_size: 10,
            tokens_per_req: 1,
        };
        let mut b = Bucket::full(&minute, 0);
        b.take(10, 0);
        assert_eq!(b.take(1, 59_999).granted, 0);
        assert_eq!(b.take(10, 60_000).granted, 5);
        assert_eq!(b.take(1, 60_001).reset_ms, 59_999);

        let hour = Limits {
            period_ms: 3_600_000,
            refresh_rate: 1,
            bucket_size: 3,
            tokens_per_req: 1,
        };
        let mut b = Bucket::full(&hour, 0);
        b.take(3, 0);
        assert_eq!(b.take(1, 3_599_999).granted, 0);
        assert_eq!(b.take(5, 7_200_000).granted, 2);
    }

    #[test]
    fn clock_going_backwards_grants_nothing_extra() {
        let mut b = Bucket::full(&SEED, 10_000);
        b.take(200, 10_000);
        assert_eq!(b.take(1, 5_000).granted, 0);
        assert_eq!(b.take(1, 10_999).granted, 0);
        assert_eq!(b.take(100, 11_000).granted, 100);
    }

    #[test]
    fn huge_gaps_do_not_overflow() {
        let big = Limits {
            bucket_size: u64::MAX,
            period_ms: 1_000,
            refresh_rate: u64::MAX,
            tokens_per_req: 1,
        };
        let mut b = Bucket::full(&big, 0);
        b.take(u32::MAX, 0);
        let g = b.take(u32::MAX, u64::MAX);
        assert_eq!(g.granted, u32::MAX);
    }

    #[test]
    fn full_buckets_are_idle() {
        let mut b = Bucket::full(&SEED, 0);
        assert!(b.is_idle_at(0));
        b.take(100, 0);
        assert!(!b.is_idle_at(999));
        assert!(b.is_idle_at(1_000));
    }

    #[test]
    fn take_all_takes_every_token_asked_or_none() {
        let mut b = Bucket::full(&SEED, 0);
        assert!(b.take_all(150, 1).granted);
        let refused = b.take_all(51, 2);
        assert!(!refused.granted);
        assert_eq!(refused.remaining, 50, "a refused take-all takes nothing");
        assert!(b.take_all(50, 3).granted);
        assert_eq!(b.tokens_at(3), 0);
    }

    #[test]
    fn give_back_restores_tokens_up_to_the_bucket_size() {
        let mut b = Bucket::full(&SEED, 0);
        b.take_all(30, 1);
        assert_eq!(b.give_back(30, 2).remaining, 200);
        assert_eq!(b.give_back(500, 3).remaining, 200, "never above bucketSize");
    }
}
